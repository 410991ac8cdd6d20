"""The package's shape stays as the README's Layout section draws it.

The folders are the layers. A few rules per package, checked by an AST walk over
``rllib_ext/`` (imports at any depth, inside functions too):

* ``checkpoint`` imports only itself and ``errors``; its ``codecs`` import only the
  three modules below them (``storage``, ``lazy``, ``tensors``);
* ``convert`` and ``act`` import only ``checkpoint``, ``errors``, ``_version`` and
  themselves (``act`` may use ``convert``; ``convert`` not ``act``);
* ``live`` imports nothing above it (``algorithms``, ``envs``, ``cli``, the package);
* ray, gymnasium, torch and tensorflow appear only under ``live/``, in ``algorithms``
  and ``envs``, and torch/onnx in the two writers of torch and ONNX files;
* inside a package, modules import one way (:data:`ORDER`), so there is no cycle;
* only ``live/backends.py`` tells the API stacks apart: the config flags that name the
  stack (:data:`STACK_FLAGS`) appear nowhere else, read or set.

Also: no module over ~400 lines, no private name taken from another module, no public
name that shadows a module. Every rule is run once on a planted violation too.
"""

from __future__ import annotations

import ast
import os
from typing import Dict, Iterable, List, Set

import pytest

import rllib_ext
import rllib_ext.checkpoint

ROOT = os.path.dirname(os.path.abspath(rllib_ext.__file__))
MAX_LINES = 400
FRAMEWORKS = {"ray", "gymnasium", "gym", "torch", "tensorflow", "tf_keras", "onnx", "onnxscript", "onnxruntime", "tree"}

# Who may import whom, by package (a module's package: its first dotted part).
ALLOWED = {
    "_version": set(),
    "errors": set(),
    "checkpoint": {"checkpoint", "errors"},
    "pool": {"pool", "checkpoint", "errors"},
    "convert": {"convert", "checkpoint", "errors"},
    "act": {"act", "convert", "checkpoint", "errors", "_version"},
    "live": {"live", "pool", "act", "convert", "checkpoint", "errors", "_version"},
    "envs": set(),
    "algorithms": {"live"},
    "cli": {"checkpoint", "pool", "act", "live", "errors", "_version"},
    "": {"checkpoint", "pool", "_version"},  # rllib_ext/__init__.py: the rest by name, on first use
}
CODECS_MAY_IMPORT = {"checkpoint.storage", "checkpoint.lazy", "checkpoint.tensors", "errors"}
# Where a framework may be imported.
FRAMEWORK_HOMES = {"live", "algorithms", "envs"}
# The two writers of torch/ONNX files import them inside the function that writes.
FRAMEWORK_EXCEPTIONS = {"act.onnx_export": {"torch", "onnx", "onnxscript"}, "checkpoint.export": {"torch"}}

# Every API-stack difference sits behind live/backends.py's Backend: only it reads (or sets) these.
STACK_FLAGS = {"enable_rl_module_and_learner", "enable_env_runner_and_connector_v2", "api_stack"}
STACK_HOME = "live.backends"

# Inside a package, bottom to top: a module imports only modules before it.
ORDER = [
    "checkpoint.storage", "checkpoint.lazy", "checkpoint.tensors",
    "checkpoint.codecs.safe_pickle", "checkpoint.codecs.safetensors", "checkpoint.codecs.msgpack",
    "checkpoint.codecs.torch_zip", "checkpoint.codecs.pickle_patch", "checkpoint.codecs",
    "checkpoint.atomic", "checkpoint.upload", "checkpoint.format", "checkpoint.views", "checkpoint.spaces",
    "checkpoint.policy_file", "checkpoint.reader", "checkpoint.optimizer_data", "checkpoint.training_state", "checkpoint.filters", "checkpoint.inspection",
    "checkpoint.export", "checkpoint.state_patch", "checkpoint.merge_filters", "checkpoint.merge_training", "checkpoint.merge",
    "checkpoint.diff", "checkpoint",
    "pool.store", "pool.index", "pool.rules", "pool.payoff", "pool.solvers", "pool.policy_pool", "pool.plot", "pool",
    "convert.lstm", "convert.vision", "convert.families", "convert.mapping", "convert",
    "act.nets", "act.numpy_policy", "act.onnx_export", "act.openspiel", "act",
    "live.compat", "live.quiesce", "live.bridge", "live.filter_state", "live.training_state", "live.backend_base", "live.backends", "live.filters",
    "live.restore", "live.policy_io", "live.lightweight", "live.snapshot", "live.hyperparams", "live.migration",
    "live.matchmaking", "live.league_play", "live.league_eval", "live.exploiters", "live.league",
    "live.features.base", "live.features.restore", "live.features.training_scalars", "live.features.league",
    "live.features.population",
    "live.features", "live.tune", "live.partial", "live",
]


def _modules() -> Dict[str, str]:
    """``{dotted name relative to rllib_ext ('' for the package): source}``."""
    out = {}
    for d, _, files in os.walk(ROOT):
        for f in files:
            if f.endswith(".py"):
                rel = os.path.relpath(os.path.join(d, f), ROOT)[:-3].replace(os.sep, ".")
                name = rel[: -len("__init__")].rstrip(".") if rel.endswith("__init__") else rel
                out[name] = open(os.path.join(d, f)).read()
    return out


MODULES = _modules()
PACKAGES = {n for n in MODULES if any(m.startswith(n + ".") for m in MODULES)} | {""}


def _package(name: str) -> str:
    return name.split(".")[0]


def _imports(source: str) -> List[ast.AST]:
    return [n for n in ast.walk(ast.parse(source)) if isinstance(n, (ast.Import, ast.ImportFrom))]


def _targets(name: str, node: ast.AST, modules: Iterable[str]) -> Set[str]:
    """Package modules an import statement reaches (relative to rllib_ext)."""
    modules = set(modules)
    here = name.split(".") if name else []
    if name not in PACKAGES:  # a module: relative imports start from its package
        here = here[:-1]
    found = set()
    if isinstance(node, ast.ImportFrom):
        if node.level:
            base = here[: len(here) - (node.level - 1)] + (node.module.split(".") if node.module else [])
        elif (node.module or "").split(".")[0] == "rllib_ext":
            base = node.module.split(".")[1:]
        else:
            return set()
        for alias in node.names:
            sub = ".".join(base + [alias.name])
            found.add(sub if sub in modules else ".".join(base))
    else:
        for alias in node.names:
            parts = alias.name.split(".")
            if parts[0] == "rllib_ext":
                found.add(".".join(parts[1:]))
    return {t for t in found if t in modules and t != name}


def _frameworks(node: ast.AST) -> Set[str]:
    if isinstance(node, ast.ImportFrom):
        return {(node.module or "").split(".")[0]} & FRAMEWORKS if not node.level else set()
    return {a.name.split(".")[0] for a in node.names} & FRAMEWORKS


def package_violations(modules: Dict[str, str]) -> List[str]:
    """Imports that cross packages the wrong way (the ALLOWED table, and the codecs' floor)."""
    bad = []
    for name, source in modules.items():
        for node in _imports(source):
            for target in _targets(name, node, modules):
                if name.startswith("checkpoint.codecs") and not target.startswith("checkpoint.codecs"):
                    if target not in CODECS_MAY_IMPORT:
                        bad.append(f"{name} (line {node.lineno}) imports {target}: codecs stand below it")
                elif _package(target) != _package(name) and _package(target) not in ALLOWED[_package(name)]:
                    bad.append(f"{name or 'rllib_ext'} (line {node.lineno}) imports {target}")
    return bad


def framework_violations(modules: Dict[str, str]) -> List[str]:
    """Ray, gymnasium, torch, tensorflow and onnx imported outside their homes."""
    bad = []
    for name, source in modules.items():
        if _package(name) in FRAMEWORK_HOMES:
            continue
        for node in _imports(source):
            extra = _frameworks(node) - FRAMEWORK_EXCEPTIONS.get(name, set())
            if extra:
                bad.append(f"{name or 'rllib_ext'} (line {node.lineno}) imports {', '.join(sorted(extra))}")
    return bad


def order_violations(modules: Dict[str, str]) -> List[str]:
    """Inside a package, an import of a module at or above the importer in ORDER."""
    rank = {m: i for i, m in enumerate(ORDER)}
    bad = []
    for name, source in modules.items():
        for node in _imports(source):
            for target in _targets(name, node, modules):
                if _package(target) == _package(name) and name in rank and target in rank and rank[target] >= rank[name]:
                    bad.append(f"{name} (line {node.lineno}) imports {target}, which stands above it")
    return bad


def stack_test_violations(modules: Dict[str, str]) -> List[str]:
    """A stack flag read, set or passed outside live/backends.py (attribute, keyword or name)."""
    bad = []
    for name, source in modules.items():
        if name == STACK_HOME:
            continue
        for node in ast.walk(ast.parse(source)):
            found = (
                node.attr if isinstance(node, ast.Attribute)
                else node.arg if isinstance(node, ast.keyword)
                else node.id if isinstance(node, ast.Name)
                else node.value if isinstance(node, ast.Constant) and isinstance(node.value, str)
                else None
            )
            if found in STACK_FLAGS:
                bad.append(f"{name or 'rllib_ext'} (line {node.lineno}): {found}")
    return bad


def private_name_violations(modules: Dict[str, str]) -> List[str]:
    found = []
    for name, source in modules.items():
        tree = ast.parse(source)
        aliases = set()
        for node in ast.walk(tree):
            if isinstance(node, (ast.Import, ast.ImportFrom)) and _targets(name, node, modules):
                for alias in node.names:
                    if isinstance(node, ast.ImportFrom) and alias.name.startswith("_") and not alias.name.startswith("__"):
                        found.append(f"{name}: from ... import {alias.name}")
                    aliases.add(alias.asname or alias.name.split(".")[0])
        for node in ast.walk(tree):
            if (
                isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id in aliases
                and node.attr.startswith("_") and not node.attr.startswith("__")
            ):
                found.append(f"{name} (line {node.lineno}): {node.value.id}.{node.attr}")
    return found


def test_every_module_is_in_a_known_package_and_ordered():
    assert {_package(n) for n in MODULES} <= set(ALLOWED)
    inside = {n for n in MODULES if "." in n or n in {"checkpoint", "pool", "convert", "act", "live"}}
    assert sorted(inside) == sorted(ORDER), "add new package modules to ORDER (and to the README's Layout)"


@pytest.mark.parametrize("rule", [package_violations, framework_violations, order_violations, private_name_violations,
                                  stack_test_violations], ids=lambda r: r.__name__)
def test_the_package_keeps_the_rule(rule):
    assert not rule(MODULES)


PLANTED = {
    package_violations: [
        ("checkpoint.reader", "from ..live import restore\n"),
        ("checkpoint.codecs.safe_pickle", "from ..reader import read_weights\n"),
        ("convert.lstm", "from ..act import nets\n"),
        ("act.nets", "from ..live.backends import Backend\n"),
        ("live.restore", "from .. import algorithms\n"),
    ],
    framework_violations: [
        ("checkpoint.reader", "def f():\n    import ray\n"),
        ("convert.mapping", "import torch\n"),
        ("act.numpy_policy", "from gymnasium import spaces\n"),
        ("cli", "import ray.rllib\n"),
    ],
    order_violations: [("live.backends", "from .restore import restore_policies\n"),
                       ("checkpoint.storage", "from .reader import read_weights\n")],
    private_name_violations: [("live.restore", "from .backends import _secret\n")],
    stack_test_violations: [
        ("live.restore", "def f(algo):\n    return algo.config.enable_rl_module_and_learner\n"),
        ("live.lightweight", "def f(config):\n    return config.api_stack(enable_env_runner_and_connector_v2=False)\n"),
        ("live.policy_io", "def f(config):\n    return getattr(config, 'enable_rl_module_and_learner')\n"),
        ("cli", "def f(c):\n    return c.to_dict()['enable_env_runner_and_connector_v2']\n"),
    ],
}


@pytest.mark.parametrize(
    "rule,module,planted", [(r, m, p) for r, cases in PLANTED.items() for m, p in cases],
    ids=lambda v: getattr(v, "__name__", None) or (v if isinstance(v, str) and "\n" not in v else None),
)
def test_each_rule_fails_on_a_planted_violation(rule, module, planted):
    modules = dict(MODULES)
    modules[module] = modules[module] + "\n" + planted
    assert rule(modules), f"{rule.__name__} did not see: {planted!r} in {module}"


def test_no_module_is_over_400_lines():
    big = {n: s.count("\n") for n, s in MODULES.items()}
    assert not {n: k for n, k in big.items() if k > MAX_LINES}


@pytest.mark.parametrize("package", [rllib_ext, rllib_ext.checkpoint], ids=lambda p: p.__name__)
def test_no_public_name_shadows_a_module(package):
    here = os.path.dirname(package.__file__)
    modules = {f[:-3] for f in os.listdir(here) if f.endswith(".py")} | {
        d for d in os.listdir(here) if os.path.isfile(os.path.join(here, d, "__init__.py"))
    }
    assert not modules & set(package.__all__)


def test_every_public_name_loads_from_its_one_table():
    for name in rllib_ext.__all__:
        assert getattr(rllib_ext, name) is not None, name
