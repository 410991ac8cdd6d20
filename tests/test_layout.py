"""The package's shape stays as the README's Layout section draws it.

An AST walk over ``rllib_ext/`` (imports at any depth, inside functions too): every module
imports only modules listed below it in :data:`LAYERS`, so there is no cycle and the
checkpoint reader cannot reach Ray-facing code; no module is over ~400 lines; no module
imports another module's private names; no public name of a package shadows one of its
modules.
"""

from __future__ import annotations

import ast
import os
from typing import Dict, List, Set

import pytest

import rllib_ext
import rllib_ext.checkpoint

ROOT = os.path.dirname(os.path.abspath(rllib_ext.__file__))
MAX_LINES = 400

# Bottom to top: a module may import only modules before it in this list.
LAYERS = [
    "_version",
    "errors",
    # checkpoint/: plain data, numpy + stdlib only
    "checkpoint.storage",
    "checkpoint.lazy",
    "checkpoint.safe_pickle",
    "checkpoint.tensors",
    "checkpoint.atomic",
    "checkpoint.safetensors",
    "checkpoint.format",
    "checkpoint.views",
    "checkpoint.spaces",
    "checkpoint.upload",
    "checkpoint.policy_file",
    "checkpoint.reader",
    "checkpoint.filters",
    "checkpoint.inspection",
    "checkpoint.export",
    "checkpoint.pickle_patch",
    "checkpoint.merge_filters",
    "checkpoint.merge",
    "checkpoint.diff",
    "checkpoint",
    # acting with numpy alone, and its ONNX mirror (torch/onnx imported inside export_onnx)
    "numpy_nets",
    "numpy_policy",
    "onnx_export",
    # numpy-only conversion, then the Ray-facing adapters and what stands on them
    "convert_lstm",
    "convert_vision",
    "model_families",
    "convert",
    "backends",
    "live_filters",
    "envs",
    "restore",
    "policy_io",
    "migration",
    "lightweight",
    "algorithms",
    "tune",
    "cli",
    "",  # rllib_ext/__init__.py
]


def _modules() -> Dict[str, str]:
    """``{dotted name relative to rllib_ext ('' for the package): file path}``."""
    out = {}
    for d, _, files in os.walk(ROOT):
        for f in files:
            if f.endswith(".py"):
                rel = os.path.relpath(os.path.join(d, f), ROOT)[:-3].replace(os.sep, ".")
                out[rel[: -len("__init__")].rstrip(".") if rel.endswith("__init__") else rel] = os.path.join(d, f)
    return out


MODULES = _modules()


def _imports(name: str) -> List[ast.AST]:
    tree = ast.parse(open(MODULES[name]).read())
    return [n for n in ast.walk(tree) if isinstance(n, (ast.Import, ast.ImportFrom))]


def _targets(name: str, node: ast.AST) -> Set[str]:
    """Package modules an import statement reaches (relative to rllib_ext)."""
    is_pkg = MODULES[name].endswith("__init__.py")
    here = name.split(".") if name else []
    if not is_pkg:
        here = here[:-1]
    found = set()
    if isinstance(node, ast.ImportFrom):
        if node.level:
            base = here[: len(here) - (node.level - 1)] + (node.module.split(".") if node.module else [])
        elif (node.module or "").split(".")[0] == "rllib_ext":
            base = node.module.split(".")[1:]
        else:
            return set()
        base_name = ".".join(base)
        for alias in node.names:
            sub = ".".join(base + [alias.name])
            found.add(sub if sub in MODULES else base_name)
    else:
        for alias in node.names:
            parts = alias.name.split(".")
            if parts[0] == "rllib_ext":
                found.add(".".join(parts[1:]))
    return {t for t in found if t in MODULES and t != name}


def test_every_module_has_a_place_in_the_layers():
    assert sorted(MODULES) == sorted(LAYERS), "add new modules to LAYERS (and to the README's Layout)"


def test_imports_flow_one_way_with_no_cycle():
    rank = {m: i for i, m in enumerate(LAYERS)}
    upward = []
    for name in MODULES:
        for node in _imports(name):
            for target in _targets(name, node):
                if rank[target] >= rank[name]:
                    upward.append(f"{name or 'rllib_ext'} (line {node.lineno}) imports {target}")
    assert not upward, "imports that go up or sideways:\n" + "\n".join(upward)


def test_checkpoint_package_imports_only_itself_and_errors():
    outside = []
    for name in MODULES:
        if name.split(".")[0] != "checkpoint":
            continue
        for node in _imports(name):
            for target in _targets(name, node):
                if target != "errors" and target.split(".")[0] != "checkpoint":
                    outside.append(f"{name} imports {target}")
    assert not outside


def test_no_module_is_over_400_lines():
    big = {n: sum(1 for _ in open(p)) for n, p in MODULES.items()}
    assert not {n: k for n, k in big.items() if k > MAX_LINES}


def test_no_private_name_crosses_modules():
    found = []
    for name in MODULES:
        tree = ast.parse(open(MODULES[name]).read())
        aliases = set()
        for node in ast.walk(tree):
            if isinstance(node, (ast.Import, ast.ImportFrom)) and _targets(name, node):
                for alias in node.names:
                    if isinstance(node, ast.ImportFrom) and alias.name.startswith("_") and not alias.name.startswith("__"):
                        found.append(f"{name}: from ... import {alias.name}")
                    aliases.add(alias.asname or alias.name.split(".")[0])
        for node in ast.walk(tree):
            if (
                isinstance(node, ast.Attribute)
                and isinstance(node.value, ast.Name)
                and node.value.id in aliases
                and node.attr.startswith("_")
                and not node.attr.startswith("__")
            ):
                found.append(f"{name} (line {node.lineno}): {node.value.id}.{node.attr}")
    assert not found


@pytest.mark.parametrize("package", [rllib_ext, rllib_ext.checkpoint], ids=lambda p: p.__name__)
def test_no_public_name_shadows_a_module(package):
    here = os.path.dirname(package.__file__)
    modules = {f[:-3] for f in os.listdir(here) if f.endswith(".py")} | {
        d for d in os.listdir(here) if os.path.isfile(os.path.join(here, d, "__init__.py"))
    }
    assert not modules & set(package.__all__)
