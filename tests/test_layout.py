"""The package's shape: the folders are the layers, and each package says what it may import.

docs/layout.md lists the tree, generated from it at build time.

The rules are stated once, here, per package, and checked by an AST walk over
``rllib_ext/`` (imports at any depth, inside functions too):

* who may import whom is the :data:`ALLOWED` table, one line per package (``checkpoint``
  imports only itself and ``errors``; ``merge`` and ``pool`` add ``checkpoint``; ...);
  ``checkpoint/codecs`` import only the three modules below them (:data:`CODECS_MAY_IMPORT`);
* inside a package, the import graph has no cycle (found by a walk over the graph; no
  hand-kept order of modules);
* ray, gymnasium, torch and tensorflow appear only under ``live/``, in ``algorithms``,
  ``envs`` and ``masking``, and torch/onnx in the two writers of torch and ONNX files;
* a read is one pass, open -> layout -> locate -> decode, a module per step
  (:data:`READ_PASS`); no step reaches, through any chain of imports, a step after it;
* only ``live/seam/backends.py`` tells the API stacks apart: the config flags that name the
  stack (:data:`STACK_FLAGS`) appear nowhere else, read or set.

Also: no module over ~400 lines, every module's docstring says in its first line what
the module is for, no private name taken from another module, no public name that
shadows a module; and ``bench/`` imports only the public surface (:data:`PUBLIC_MODULES`).
Every rule is run once on a planted violation too.
"""

from __future__ import annotations

import ast
import os
from typing import Dict, Iterable, List, Mapping, Set

import pytest

import rllib_ext
import rllib_ext.checkpoint
import rllib_ext.merge
import rllib_ext.pool

pytestmark = pytest.mark.ray_free  # never imports Ray: tests/test_ray_free.py checks it

ROOT = os.path.dirname(os.path.abspath(rllib_ext.__file__))
MAX_LINES = 400
FRAMEWORKS = {"ray", "gymnasium", "gym", "torch", "tensorflow", "tf_keras", "onnx", "onnxscript", "onnxruntime", "tree"}

# The one statement of the layering: who may import whom, by package (a module's package:
# its first dotted part). Read top to bottom, each package imports only packages above it.
ALLOWED = {
    "_version": set(),
    "_lazy": set(),
    "errors": set(),
    "checkpoint": {"_lazy", "checkpoint", "errors"},
    "merge": {"_lazy", "merge", "checkpoint", "errors"},
    "pool": {"_lazy", "pool", "checkpoint", "errors"},
    "convert": {"convert", "checkpoint", "errors"},
    "act": {"act", "convert", "checkpoint", "errors", "_version"},
    "live": {"live", "pool", "act", "convert", "checkpoint", "errors", "_version"},
    "envs": {"errors"},
    "masking": {"errors"},
    "algorithms": {"live"},
    "formatting": {"checkpoint", "merge", "pool", "errors"},
    "cli": {"formatting", "checkpoint", "merge", "pool", "act", "live", "errors", "_version"},
    "": {"checkpoint", "merge", "pool", "errors", "_version"},  # rllib_ext/__init__.py: the rest by name, on first use
}
CODECS_MAY_IMPORT = {"checkpoint.storage", "checkpoint.lazy", "checkpoint.tensors", "errors"}
# Where a framework may be imported.
FRAMEWORK_HOMES = {"live", "algorithms", "envs", "masking"}
# The two writers of torch/ONNX files import them inside the function that writes.
FRAMEWORK_EXCEPTIONS = {"act.onnx_export": {"torch", "onnx", "onnxscript"}, "checkpoint.export": {"torch"}}

# Every API-stack difference sits behind live/seam/backends.py's Backend: only it reads (or sets) these.
STACK_FLAGS = {"enable_rl_module_and_learner", "enable_env_runner_and_connector_v2", "api_stack"}
STACK_HOME = "live.seam.backends"

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


def import_graph(modules: Dict[str, str]) -> Dict[str, Set[str]]:
    """``{module: the modules of its own package it imports}``."""
    return {
        name: {t for node in _imports(source) for t in _targets(name, node, modules) if _package(t) == _package(name)}
        for name, source in modules.items()
    }


# live/ by concern: its rooms (a sub-package, or a module at its top) and whom each may
# import. The seam knows Ray; each feature (restore, league, population) and serving sit
# above it; the base (``partial``) reaches the features only through ``features``, their
# one registration list; league and population never import each other.
LIVE_ALLOWED = {
    "": set(),
    "seam": set(),
    "hooks": {"seam"},  # RLlib's Algorithm, named for the checker (seam/rllib_types.py)
    "tune": set(),
    "restore": {"seam", "hooks"},
    "serving": {"seam", "restore", "hooks"},
    "snapshot": {"seam", "serving"},
    "league": {"seam", "restore", "serving", "snapshot", "hooks"},
    "population": {"seam", "restore", "snapshot", "hooks"},
    "features": {"hooks", "restore", "serving", "league", "population"},
    "partial": {"seam", "restore", "serving", "snapshot", "hooks", "features", "tune"},
}
LIVE_TOP_MAX = 12  # modules at live/'s top, __init__ included


def _live_room(name: str) -> str:
    return name.split(".")[1] if name.count(".") >= 1 else ""


def live_room_violations(modules: Dict[str, str]) -> List[str]:
    """Imports between live/'s rooms that :data:`LIVE_ALLOWED` does not list."""
    bad = []
    for name, source in modules.items():
        if _package(name) != "live":
            continue
        for node in _imports(source):
            for target in _targets(name, node, modules):
                if _package(target) == "live" and _live_room(target) != _live_room(name):
                    if _live_room(target) not in LIVE_ALLOWED[_live_room(name)]:
                        bad.append(f"{name} (line {node.lineno}) imports {target}")
    return bad


def test_live_is_by_concern():
    rooms = {_live_room(n) for n in MODULES if _package(n) == "live"}
    assert rooms <= set(LIVE_ALLOWED), "a new room of live/ needs its line in LIVE_ALLOWED"
    top = [n for n in MODULES if _package(n) == "live" and n.count(".") <= 1 and n not in PACKAGES]
    assert len(top) + 1 <= LIVE_TOP_MAX, top
    assert find_cycles({r: a - {r} for r, a in LIVE_ALLOWED.items()}) == []


def find_cycles(graph: Mapping[str, Iterable[str]]) -> List[List[str]]:
    """One cycle (``[a, b, ..., a]``) per back edge of a depth-first walk; ``[]`` when there is none."""
    state: Dict[str, int] = {}  # 1: on the current path, 2: done
    path: List[str] = []
    cycles = []

    def visit(node: str) -> None:
        state[node] = 1
        path.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                cycles.append(path[path.index(nxt):] + [nxt])
            elif nxt not in state:
                visit(nxt)
        path.pop()
        state[node] = 2

    for node in sorted(graph):
        if node not in state:
            visit(node)
    return cycles


def cycle_violations(modules: Dict[str, str]) -> List[str]:
    """Inside a package, modules that import each other round a loop."""
    return [" -> ".join(c) for c in find_cycles(import_graph(modules))]


# One read of a policy's weights, in the order reader.read_weights calls the steps.
READ_PASS = ["checkpoint.storage", "checkpoint.format", "checkpoint.locate", "checkpoint.decode", "checkpoint.reader"]


def read_pass_violations(modules: Dict[str, str]) -> List[str]:
    """A step of the read that imports (directly or through other modules) a later step: a call back up."""
    graph = import_graph(modules)
    bad = []
    for i, step in enumerate(READ_PASS):
        seen, todo = set(), [step]
        while todo:
            for nxt in graph.get(todo.pop(), ()):
                if nxt not in seen:
                    seen.add(nxt)
                    todo.append(nxt)
        bad += [f"{step} reaches {later}" for later in READ_PASS[i + 1:] if later in seen]
    return bad


def stack_test_violations(modules: Dict[str, str]) -> List[str]:
    """A stack flag read, set or passed outside live/seam/backends.py (attribute, keyword or name)."""
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


def test_every_module_is_in_a_known_package():
    assert {_package(n) for n in MODULES} <= set(ALLOWED), "a new package needs its line in ALLOWED"


def package_cycles(allowed: Dict[str, Set[str]]) -> List[str]:
    """Packages that the ALLOWED table lets import each other round a loop."""
    return [" -> ".join(c) for c in find_cycles({p: a - {p} for p, a in allowed.items()})]


def silent_modules(modules: Dict[str, str]) -> List[str]:
    """Modules whose docstring does not open with a line saying what the module is for."""
    return [n or "rllib_ext" for n, s in modules.items() if not (ast.get_docstring(ast.parse(s)) or "").strip()]


def test_the_packages_themselves_import_one_way():
    assert package_cycles(ALLOWED) == []
    planted = {**ALLOWED, "checkpoint": ALLOWED["checkpoint"] | {"merge"}}
    assert package_cycles(planted) == ["checkpoint -> merge -> checkpoint"]


def test_every_module_says_what_it_is_for():
    """The docs page is generated from the tree: each module's first docstring line is its entry."""
    assert silent_modules(MODULES) == []
    assert silent_modules({**MODULES, "merge.report": "from __future__ import annotations\n"}) == ["merge.report"]


@pytest.mark.parametrize("rule", [package_violations, framework_violations, cycle_violations, private_name_violations,
                                  live_room_violations, stack_test_violations, read_pass_violations], ids=lambda r: r.__name__)
def test_the_package_keeps_the_rule(rule):
    assert not rule(MODULES)


PLANTED = {
    package_violations: [
        ("checkpoint.reader", "from ..live import restore\n"),
        ("checkpoint.codecs.safe_pickle", "from ..reader import read_weights\n"),
        ("convert.lstm", "from ..act import nets\n"),
        ("act.nets", "from ..live.seam.backends import Backend\n"),
        ("live.restore.policies", "from ... import algorithms\n"),
        ("checkpoint.reader", "from ..merge.checkpoints import merge_checkpoints\n"),
        ("merge.filters", "from ..pool.store import open_store\n"),
    ],
    framework_violations: [
        ("checkpoint.reader", "def f():\n    import ray\n"),
        ("convert.mapping", "import torch\n"),
        ("act.numpy_policy", "from gymnasium import spaces\n"),
        ("cli", "import ray.rllib\n"),
    ],
    cycle_violations: [("live.seam.ray_internals", "from .backends import backend_for\n"),
                       ("checkpoint.storage", "from .reader import read_weights\n"),
                       ("merge.state_patch", "def f():\n    from .checkpoints import merge_checkpoints\n")],
    private_name_violations: [("live.restore.policies", "from ..seam.backends import _secret\n")],
    read_pass_violations: [("checkpoint.locate", "from .decode import decode_file\n"),
                           ("checkpoint.format", "def f():\n    from .locate import ids_in\n"),
                           ("checkpoint.lazy", "from .reader import read_weights\n")],
    live_room_violations: [
        ("live.population.feature", "from ..league.engine import League\n"),
        ("live.league.feature", "def f():\n    from ..population import feature\n"),
        ("live.seam.backends", "from ..restore.policies import restore_policies\n"),
        ("live.partial", "from .league.feature import LeagueFeature\n"),
    ],
    stack_test_violations: [
        ("live.restore.policies", "def f(algo):\n    return algo.config.enable_rl_module_and_learner\n"),
        ("live.serving.lightweight", "def f(config):\n    return config.api_stack(enable_env_runner_and_connector_v2=False)\n"),
        ("live.serving.policy_io", "def f(config):\n    return getattr(config, 'enable_rl_module_and_learner')\n"),
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


@pytest.mark.parametrize("package", [rllib_ext, rllib_ext.checkpoint, rllib_ext.merge, rllib_ext.pool], ids=lambda p: p.__name__)
def test_no_public_name_shadows_a_module(package):
    here = os.path.dirname(package.__file__)
    modules = {f[:-3] for f in os.listdir(here) if f.endswith(".py")} | {
        d for d in os.listdir(here) if os.path.isfile(os.path.join(here, d, "__init__.py"))
    }
    assert not modules & set(package.__all__)


def _defines(source: str, name: str) -> bool:
    tree = ast.parse(source)
    return any(
        getattr(n, "name", None) == name or any(getattr(t, "id", None) == name for t in getattr(n, "targets", ()))
        for n in tree.body
    )


# The public surface (docs/api.md): the names of rllib_ext, those of the packages that serve
# theirs through it (the same names), and rllib_ext.envs, the documented example envs (None:
# every name without a leading underscore). bench/ may import nothing else of ours.
PUBLIC_MODULES = {
    "rllib_ext": {*rllib_ext.__all__, "__version__"},
    "rllib_ext.checkpoint": set(rllib_ext.checkpoint.__all__),
    "rllib_ext.merge": set(rllib_ext.merge.__all__),
    "rllib_ext.pool": set(rllib_ext.pool.__all__),
    "rllib_ext.envs": None,
}
BENCH = os.path.join(os.path.dirname(ROOT), "bench")


def _bench_files() -> Dict[str, str]:
    """``{file name: source}`` of the scripts in ``bench/``."""
    return {f: open(os.path.join(BENCH, f)).read() for f in sorted(os.listdir(BENCH)) if f.endswith(".py")}


def private_use(dotted: str) -> bool:
    """Does ``rllib_ext.a.b...`` (an import, or an attribute chain off ``rllib_ext``) reach past the
    public surface? A public name's own attributes (``rllib_ext.PolicyPool.entries``) are its API,
    and so are a module's dunders (``rllib_ext.__file__``)."""
    parts = dotted.split(".")
    module = parts[0]
    for part in parts[1:]:
        names = PUBLIC_MODULES[module]
        if part.startswith("__") and part.endswith("__"):  # a module's own metadata: __file__, __version__
            return False
        if f"{module}.{part}" in PUBLIC_MODULES:
            module = f"{module}.{part}"
        elif names is None:
            return part.startswith("_")
        else:
            return part not in names
    return False


def _dotted(node: ast.AST) -> str:
    """``a.b.c`` of an attribute chain on a name; "" for anything else."""
    parts = []
    while isinstance(node, ast.Attribute):
        parts.append(node.attr)
        node = node.value
    return ".".join([node.id, *reversed(parts)]) if isinstance(node, ast.Name) else ""


def bench_violations(files: Dict[str, str]) -> List[str]:
    """Imports of ``rllib_ext`` in bench/ scripts (at any depth) that are not public, and
    attribute chains off an imported ``rllib_ext`` that reach a private module or name."""
    bad = []
    for name, source in files.items():
        tree = ast.parse(source)
        roots = {}  # local name -> the rllib_ext module it is bound to
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and not node.level and (node.module or "").split(".")[0] == "rllib_ext":
                used = [f"{node.module}.{a.name}" for a in node.names]
                roots.update({a.asname or a.name: f"{node.module}.{a.name}" for a in node.names
                              if f"{node.module}.{a.name}" in PUBLIC_MODULES})
            elif isinstance(node, ast.Import):
                used = [a.name for a in node.names if a.name.split(".")[0] == "rllib_ext"]
                roots.update({a.asname or "rllib_ext": a.name if a.asname else "rllib_ext" for a in node.names
                              if a.name.split(".")[0] == "rllib_ext"})
            else:
                continue
            bad += [f"{name} (line {node.lineno}) imports {u}" for u in used if private_use(u)]
        for node in ast.walk(tree):
            dotted = _dotted(node) if isinstance(node, ast.Attribute) else ""
            head, _, rest = dotted.partition(".")
            if head in roots and rest and private_use(f"{roots[head]}.{rest}"):
                bad.append(f"{name} (line {node.lineno}) uses {roots[head]}.{rest}")
    return sorted(set(bad))


def test_bench_imports_the_public_api_only():
    assert not bench_violations(_bench_files())


@pytest.mark.parametrize("file,planted", [
    ("population.py", "from rllib_ext.live.league.evaluation import Matches\n"),
    ("exact_table.py", "def f():\n    from rllib_ext.pool.solvers import nash\n"),
    ("pool_scale.py", "import rllib_ext.pool.payoff\n"),
    ("pool_scale.py", "from rllib_ext.pool import payoff\n"),
    ("act.py", "import rllib_ext\nx = rllib_ext.live.seam.backends.backend_for\n"),
    ("act.py", "import rllib_ext as rx\nx = rx.pool.solvers.nash\n"),
    ("league.py", "from rllib_ext.envs import _private\n"),
    ("lightweight.py", "from rllib_ext import _HOME\n"),
    ("lightweight.py", "from rllib_ext import checkpoint\nx = checkpoint.reader.read_weights\n"),
])
def test_the_bench_rule_fails_on_a_planted_private_import(file, planted):
    files = _bench_files()
    assert not bench_violations({file: files[file]})
    assert bench_violations({file: files[file] + "\n" + planted}), planted


def test_every_public_name_loads_from_its_one_table():
    """Ray-free names load; the others (live/, algorithms) are found defined in their module's source,
    so this module never imports Ray (it is ray_free)."""
    homes = rllib_ext._HOME  # noqa: SLF001 -- the table under test
    for name in rllib_ext.__all__:
        home = homes.get(name)
        if home is not None and _package(home) in FRAMEWORK_HOMES:
            assert _defines(MODULES[home], name), f"{name} is not defined in {home}"
        else:
            assert getattr(rllib_ext, name) is not None, name
