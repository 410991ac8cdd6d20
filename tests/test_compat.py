"""The supported Ray releases: one range, one module that knows the differences, a clear refusal.

The live tests themselves run on the oldest supported release in the ``torch-ray245`` tox
cell and on Ray 2.60 in the others; here: the range is stated once (setup.py and
``rllib_ext.live.seam.compat`` agree, a cell tests its lower end), a Ray outside it is refused
in one line while the reader and the CLI keep working, and no module but ``compat`` uses
a name whose spelling depends on the release.
"""

from __future__ import annotations

import ast
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from builders import ROOT

from rllib_ext.errors import MissingDependencyError, UnsupportedRayError
from rllib_ext.live.seam import compat

FIXTURE = str(Path(ROOT) / "tests" / "fixtures" / "ray-2.45.0-old-torch" / "checkpoint")
# Ray attributes whose name depends on the release (RunningStat's Welford sum, Ray 2.47):
# only rllib_ext/live/seam/compat.py may use them.
RELEASE_DEPENDENT = {"sum_sq_diff_array", "std_array"}
COMPAT = os.path.join("live", "seam", "compat.py")


def test_setup_extra_tox_and_compat_state_one_range():
    setup = Path(ROOT, "setup.py").read_text()
    (extra,) = re.findall(r'"ray\[rllib,tune\]([^"]*)"', setup)
    assert extra == compat.SUPPORTED
    tox = Path(ROOT, "tox.ini").read_text()
    lowest = compat.TESTED[0]
    assert f"ray[rllib,tune]=={lowest}" in tox, f"no tox cell pins the oldest supported release {lowest}"
    assert compat.is_supported(lowest) and compat.is_supported(compat.TESTED[-1])
    assert re.search(r"^CELLS\s*\?=.*torch-ray245", Path(ROOT, "Makefile").read_text(), re.M)


@pytest.mark.parametrize(
    "version,ok",
    [("2.45.0", True), ("2.45.0rc1", True), ("2.50.1", True), ("2.60.0", True), ("2.60.1", True),
     ("2.40.0", False), ("2.44.1", False), ("2.30.0", False), ("2.61.0", False), ("2.61.0.dev0", False), ("3.0.0", False),
     ("3.0.0.dev0", False), ("garbage", False)],
)
def test_supported_range(version, ok):
    assert compat.is_supported(version) is ok
    if ok:
        assert compat.require_supported_ray(version) == version
    else:
        with pytest.raises(UnsupportedRayError) as e:
            compat.require_supported_ray(version)
        msg = str(e.value)
        assert "\n" not in msg
        assert f"this environment has ray {version}" in msg and compat.SUPPORTED in msg


def test_missing_ray_says_how_to_install(monkeypatch):
    monkeypatch.setattr(compat, "installed_ray", lambda: None)
    with pytest.raises(MissingDependencyError, match=re.escape('pip install "torch==2.13.0" "rllib_ext[rllib]"')):
        compat.require_supported_ray()


def test_refusal_names_the_release_a_feature_needs():
    compat.require_release("serving over RLlink", "2.41", available=True)
    with pytest.raises(UnsupportedRayError, match=r"^serving over RLlink needs Ray >= 2\.41; this environment has ray \S+$"):
        compat.require_release("serving over RLlink", "2.41", available=False)


@pytest.mark.all_cells
def test_serving_over_rllink_refuses_in_one_line_before_ray_2_49():
    """Ray 2.45 to 2.48 have no RLlink server: the refusal names the release; 2.49 on, the class."""
    import ray

    if compat.version_tuple(ray.__version__)[:2] >= (2, 49):
        assert compat.rllink_server_class().__name__ == "EnvRunnerServerForExternalInference"
        return
    with pytest.raises(UnsupportedRayError, match=(
            r"^serving a policy over RLlink \(EnvRunnerServerForExternalInference\) needs Ray >= 2\.49; "
            rf"this environment has ray {re.escape(ray.__version__)}$")):
        compat.rllink_server_class()


# A process whose Ray says it is 2.30.0 (a stand-in module: what the package asks of it).
FAKE_RAY = "import sys, types\nsys.modules['ray'] = types.ModuleType('ray')\nsys.modules['ray'].__version__ = '2.30.0'\n"
REFUSAL = (
    f"rllib_ext's live features support Ray {compat.SUPPORTED} (tested: {', '.join(compat.TESTED)}); this "
    f"environment has ray 2.30.0: pip install \"ray[rllib,tune]{compat.SUPPORTED}\" (the reader and the CLI "
    "work with any Ray)"
)


def _run(code: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", FAKE_RAY + code], capture_output=True, text=True,
                          env=dict(os.environ, PYTHONPATH=ROOT), timeout=120)


@pytest.mark.parametrize(
    "use",
    ["rllib_ext.PPOPartial", f"rllib_ext.build_policy({FIXTURE!r})", f"rllib_ext.migrate({FIXTURE!r}, '/nonexistent')",
     f"__import__('rllib_ext.live.restore.policies').live.restore.policies.restore_policies(None, {FIXTURE!r}, ['policy_0'])"],
)
def test_outside_the_range_a_live_feature_refuses_in_one_line(use):
    """Importing rllib_ext checks nothing; the first use of a live feature (a ...Partial
    name, or a call) refuses in one line."""
    res = _run(
        "import rllib_ext\n"
        f"assert list(rllib_ext.inspect({FIXTURE!r}).policies) == ['policy_0', 'policy_1']\n"
        "try:\n"
        f"    {use}\n"
        "except rllib_ext.UnsupportedRayError as e:\n"
        "    print('REFUSED ' + str(e))\n"
    )
    assert res.returncode == 0, res.stderr[-3000:]
    assert res.stdout.strip() == f"REFUSED {REFUSAL}"


def test_outside_the_range_the_cli_reads_and_refuses_migrate_in_one_line(tmp_path):
    code = "from rllib_ext.cli import main\nraise SystemExit(main(sys.argv[1:]))\n"
    res = subprocess.run([sys.executable, "-c", FAKE_RAY + code, "inspect", FIXTURE], capture_output=True,
                         text=True, env=dict(os.environ, PYTHONPATH=ROOT), timeout=120)
    assert res.returncode == 0 and "policy_1" in res.stdout, res.stderr[-3000:]
    res = subprocess.run([sys.executable, "-c", FAKE_RAY + code, "migrate", FIXTURE, "--out", str(tmp_path / "out")],
                         capture_output=True, text=True, env=dict(os.environ, PYTHONPATH=ROOT), timeout=120)
    assert res.returncode == 1, res.stdout + res.stderr
    assert res.stderr.strip() == f"rllib-ext: error: {REFUSAL}"
    assert not (tmp_path / "out").exists()


def release_dependent_uses(source: str) -> list:
    """Attribute names of :data:`RELEASE_DEPENDENT` used in ``source``, and version comparisons."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Attribute) and node.attr in RELEASE_DEPENDENT:
            found.append(node.attr)
        if isinstance(node, ast.Compare) and "__version__" in ast.dump(node):
            found.append("a comparison with __version__")
    return found


def test_only_compat_uses_release_dependent_names():
    root = os.path.join(ROOT, "rllib_ext")
    bad = {}
    for d, _, files in os.walk(root):
        for f in files:
            rel = os.path.relpath(os.path.join(d, f), root)
            if f.endswith(".py") and rel != COMPAT:
                uses = release_dependent_uses(open(os.path.join(d, f)).read())
                if uses:
                    bad[rel] = uses
    assert not bad, f"release-dependent Ray names outside live/seam/compat.py: {bad}"
    assert all(name in open(os.path.join(root, COMPAT)).read() for name in RELEASE_DEPENDENT)  # compat does


@pytest.mark.parametrize(
    "planted",
    ["rs.sum_sq_diff_array = mean", "getattr(rs, 'x').std_array", "if ray.__version__ < '2.47': pass"],
)
def test_release_dependent_check_fails_on_a_planted_use(planted):
    assert release_dependent_uses(planted)


# ---------------------------------------------------------------- the seam to RLlib internals

SEAM = os.path.join("live", "seam", "ray_internals.py")
# Private names of numpy and the pickle module, not Ray's: the safe unpickler must name what
# numpy's pickles name, and its own class's helper. They stay with the codecs.
NOT_RAY = {
    (os.path.join("checkpoint", "codecs", "safe_pickle.py"), name) for name in ("_Unpickler", "_core", "_reconstruct", "_frombuffer")
} | {(os.path.join("checkpoint", "codecs", "pickle_patch.py"), "_stack_global")}
# RLlib's documented override points of an RLModule (its docs: "override _forward_inference,
# _forward_exploration and _forward_train"): a subclass calls its base's through super().
NOT_RAY |= {("masking.py", name) for name in ("_forward_inference", "_forward_exploration", "_forward_train")}


def _private(name: object) -> bool:
    return isinstance(name, str) and name.startswith("_") and not name.startswith("__")


def _on_self(node: ast.AST) -> bool:
    return isinstance(node, ast.Name) and node.id in ("self", "cls")


def seam_names() -> set:
    """The private attribute names the seam touches (flagged elsewhere even on ``self``)."""
    return {name for _, name in private_accesses(open(os.path.join(ROOT, "rllib_ext", SEAM)).read())}


def private_accesses(source: str, known: frozenset = frozenset()) -> list:
    """``(line, name)`` of each private attribute read, set or tested on an object not ``self``.

    ``x._foo`` and ``getattr/setattr/hasattr/delattr(x, "_foo")`` count; so does any use of
    a ``known`` name (one the seam reads: a Ray private), on ``self`` too (a subclass of a
    Ray class reaching into its base).
    """
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Attribute) and _private(node.attr):
            if not _on_self(node.value) or node.attr in known:
                found.append((node.lineno, node.attr))
        elif (isinstance(node, ast.Call) and isinstance(node.func, ast.Name)
              and node.func.id in ("getattr", "setattr", "hasattr", "delattr") and len(node.args) >= 2):
            name = node.args[1].value if isinstance(node.args[1], ast.Constant) else None
            if _private(name) and (not _on_self(node.args[0]) or name in known):
                found.append((node.lineno, name))
    return found


def test_private_attributes_of_ray_are_touched_only_in_the_seam():
    root = os.path.join(ROOT, "rllib_ext")
    known = frozenset(seam_names())
    bad = []
    for d, _, files in os.walk(root):
        for f in files:
            rel = os.path.relpath(os.path.join(d, f), root)
            if not f.endswith(".py") or rel == SEAM:
                continue
            for line, name in private_accesses(open(os.path.join(d, f)).read(), known):
                if (rel, name) not in NOT_RAY:
                    bad.append(f"{rel}:{line}: {name}")
    assert not bad, f"private attributes outside {SEAM} (add a function there): {bad}"
    assert {"_learner_thread", "_update_method", "_weights_seq_no", "_trial_info"} <= known


@pytest.mark.parametrize(
    "planted",
    ["learner._learner_thread.join()", "getattr(er, '_env_to_module', None)", "algo._counters['x'] += 1",
     "hasattr(module, '_rl_modules')", "class A:\n    def f(self):\n        return self._trial_info"],
)
def test_the_seam_check_fails_on_a_planted_private_access(planted):
    assert private_accesses(planted, frozenset(seam_names()))


def test_the_seam_check_leaves_an_objects_own_private_state_alone():
    assert not private_accesses("class A:\n    def f(self):\n        self._n = getattr(self, '_m', 0)\n")
