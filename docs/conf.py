"""Sphinx configuration: MyST Markdown pages, furo, an API reference from the docstrings.

Built strictly (``make docs``: ``sphinx-build -nW --keep-going``): a broken reference, a
missing page or a bad docstring fails the build. No network: intersphinx would need to
fetch Ray's, numpy's and torch's inventories, so external types in signatures are listed
in ``nitpick_ignore_regex`` below; our own names never are.
"""

from __future__ import annotations

import os
import re
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, ROOT)  # this checkout's rllib_ext, before any installed copy
sys.path.insert(0, os.path.join(HERE, "_ext"))

import rllib_ext  # noqa: E402

project = "rllib_ext"
author = "rllib_ext contributors"
copyright = "2026, rllib_ext contributors"
release = version = rllib_ext.__version__

extensions = [
    "myst_parser",
    "sphinx.ext.autodoc",
    "sphinx.ext.autosummary",
    "sphinx.ext.napoleon",
    "sphinxarg.ext",
    "package_layout",
]

source_suffix = {".md": "markdown", ".rst": "restructuredtext"}  # .rst: autosummary stubs
root_doc = "index"
exclude_patterns = ["_build"]
html_theme = "furo"
html_title = f"rllib_ext {release}"
html_static_path = ["_static"]
pygments_style = "friendly"

myst_enable_extensions = ["colon_fence", "deflist"]
myst_heading_anchors = 3

autosummary_generate = True
autodoc_default_options = {"members": True}
autodoc_member_order = "bysource"
autodoc_typehints = "signature"
autodoc_preserve_defaults = True
napoleon_google_docstring = True
napoleon_numpy_docstring = False

# External types only (no network for intersphinx): Ray, RLlib, gymnasium, numpy, torch,
# pyarrow and the standard library's typing names. Never one of ours.
nitpicky = True
nitpick_ignore_regex = [
    (r"py:.*", r"(ray|gymnasium|gym|numpy|np|torch|tf|tensorflow|pyarrow|onnx|onnxruntime|safetensors)(\..*)?"),
    (r"py:.*", r"(typing|collections|pathlib|os|argparse|io|enum|dataclasses|abc|types|contextlib|random)\..*"),
    (r"py:class", r"(Any|Optional|Union|Callable|Sequence|Mapping|Iterable|Iterator|Dict|List|Tuple|Set|"
                  r"FrozenSet|Type|Path|PathLike|ndarray|NDArray|DType|Self|NoneType|ellipsis|\.\.\.)"),
    (r"py:class", r"(int|float|str|bytes|bool|dict|list|tuple|set|object|type|None|Exception|ValueError|"
                  r"KeyError|TypeError|OSError|RuntimeError|ImportError|FileNotFoundError)"),
    # rllib_ext.live.seam.rllib_types: names for RLlib's own classes in annotations (no Ray at import).
    (r"py:class", r"(Model|RLModule|Policy|Learner|Algorithm|AlgorithmConfig)"),
]

templates_path = ["_templates"]


def _public_target(target: str):
    """``rllib_ext.errors.CheckpointError`` or ``pool.PolicyPool.prune`` -> ``rllib_ext.<Public>...``."""
    parts = target.lstrip(".~").split(".")
    for i in range(len(parts)):
        if parts[i] in rllib_ext.__all__:
            return ".".join(["rllib_ext", *parts[i:]])
    return None


def _suffix_match(env, target: str):
    """A relative name in a docstring (``lazy.LazyArray``, ``save_policy``): the one documented
    object whose full name ends with it; if that is one method on every ``...Partial`` class,
    the PPOPartial one. Anything else ambiguous stays unresolved."""
    suffix = "." + target.lstrip(".~")
    found = sorted(n for n in env.get_domain("py").objects if n.endswith(suffix))
    partial = re.compile(r"rllib_ext\.\w+Partial(Config)?\.")
    if len(found) > 1 and all(partial.match(n) for n in found):  # one method, on every ...Partial class
        found = [n for n in found if n.startswith(("rllib_ext.PPOPartial.", "rllib_ext.PPOPartialConfig."))]
    return found[0] if len(found) == 1 else None


def _internal_target(env, node):
    """An internal name (``rllib_ext.live.filters.ask_source_agents``, or ``lazy.LazyArray``
    relative to the docstring's module): if it exists, the module that defines it, whose
    entry on the layout page is its home. Names that do not exist stay unresolved."""
    import importlib

    target = node["reftarget"].lstrip(".~")
    module = node.get("py:module") or ""
    cls = node.get("py:class")
    candidates = [target]
    source = node.source or ""
    if "docstring of rllib_ext." in source:  # autodoc: the object whose docstring this is
        module = source.split("docstring of ", 1)[1].strip()
        cls = None
    if module.startswith("rllib_ext"):
        parts = module.split(".")
        if cls:
            candidates.append(f"{module}.{cls}.{target}")
        candidates += [".".join(parts[:i] + [target]) for i in range(len(parts), 0, -1)]
    modules = env.get_domain("py").modules
    for name in candidates:
        if not name.startswith("rllib_ext"):
            continue
        parts = name.split(".")
        for i in range(len(parts), 0, -1):
            modname = ".".join(parts[:i])
            if modname not in modules:
                continue
            try:
                obj = importlib.import_module(modname)
                for attr in parts[i:]:
                    obj = getattr(obj, attr)
            except (ImportError, AttributeError):
                break
            return modname
    return None


def _resolve_public(app, env, node, contnode):
    """Signatures and bases name our classes by their defining module, docstrings often by a
    relative name; the API reference documents public ones as ``rllib_ext.X``, the layout
    page is the home of every module (and so of the internal names they define)."""
    if node.get("refdomain") != "py":
        return None
    domain = env.get_domain("py")
    for target in (_public_target(node["reftarget"]), _suffix_match(env, node["reftarget"])):
        if target and target != node["reftarget"]:
            found = domain.resolve_xref(env, node["refdoc"], app.builder, node["reftype"], target, node, contnode)
            if found is not None:
                return found
    if node["refdoc"] == "api" and "." not in node["reftarget"]:
        # A summary line in an autosummary table of api.md, out of its class's context
        # (``to_dict``): plain text here; its own page checks the same reference in context.
        return contnode
    module = _internal_target(env, node)
    if module is not None:
        return domain.resolve_xref(env, node["refdoc"], app.builder, "mod", module, node, contnode)
    return None


def _check_api_page(app, docname, source):
    """The API page lists every name in rllib_ext.__all__ and nothing else."""
    if docname != "api":
        return

    listed = set(re.findall(r"^   (\w+)$", source[0], re.M))
    public = set(rllib_ext.__all__) - {"__version__"}
    from sphinx.util import logging

    log = logging.getLogger(__name__)
    for name in sorted(public - listed):
        log.warning("api.md does not list rllib_ext.%s (in rllib_ext.__all__)", name, location="api")
    for name in sorted(listed - public):
        log.warning("api.md lists %s, which is not in rllib_ext.__all__", name, location="api")


def _drop_object_base(app, name, obj, options, bases):
    """"Bases: object" says nothing; other bases (an error's parent) stay."""
    bases[:] = [b for b in bases if b is not object]


def setup(app):
    app.connect("autodoc-process-bases", _drop_object_base)
    app.connect("missing-reference", _resolve_public)
    app.connect("source-read", _check_api_page)
