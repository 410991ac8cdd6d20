"""The Ray-free test modules never import Ray (those marked ``ray_free``: builders.RAY_FREE).

They read committed checkpoints (tests/fixtures/current, made by make_current.py) instead
of training them, so a 2-core CI box runs them without starting a Ray instance per
worker. Two proofs: no import of ray and no Ray fixture anywhere in their source, and a
run of just those modules in a fresh process, where conftest refuses any import of ray.
And the list is whole: every module whose source looks Ray-free carries the mark, or
says here why not (:data:`NOT_MARKED`).
"""

from __future__ import annotations

import ast
import os
import subprocess
import sys

import pytest

from builders import RAY_FREE, ROOT, NoRay

TESTS = os.path.join(ROOT, "tests")
RAY_FIXTURES = {"ray_session", "ckpts", "acting_source", "live_algo", "s3_server", "s3_bucket"}
RAY_PACKAGES = ("ray", "rllib_ext.live", "rllib_ext.algorithms", "rllib_ext.envs", "rllib_ext.masking", "rllib_ext.act.onnx_export")
# Modules whose source imports no Ray, and why they are not run with Ray refused all the same.
NOT_MARKED = {
    "test_examples.py": "runs the examples, which start Ray, in subprocesses",
    "test_packaging.py": "builds and installs into fresh venvs (slow); it checks its own imports there",
    "test_ray_free.py": "the guard itself: it runs the marked modules",
    "test_docs.py": "builds the docs site, whose API pages import the ...Partial classes (Ray), in a subprocess",
    "test_typecheck.py": "runs mypy over the package in a subprocess (slow; it imports nothing of ours)",
}


def _imports_and_fixtures(module: str):
    tree = ast.parse(open(os.path.join(TESTS, module)).read())
    imported = {a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
    imported |= {n.module or "" for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)}
    imported |= {f"{n.module}.{a.name}" for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) for a in n.names}
    args = {a.arg for n in ast.walk(tree) if isinstance(n, ast.FunctionDef) for a in n.args.args}
    return imported, args


def _ray_in(imported) -> list:
    return sorted(m for m in imported for p in RAY_PACKAGES if m == p or m.startswith(p + "."))


@pytest.mark.parametrize("module", RAY_FREE)
def test_ray_free_module_imports_no_ray_and_uses_no_ray_fixture(module):
    imported, args = _imports_and_fixtures(module)
    assert not _ray_in(imported), f"{module} imports {', '.join(_ray_in(imported))}"
    assert not args & RAY_FIXTURES, f"{module} asks for {', '.join(sorted(args & RAY_FIXTURES))}"


def test_every_module_that_looks_ray_free_is_marked_or_says_why_not():
    looks_free = set()
    for module in sorted(f for f in os.listdir(TESTS) if f.startswith("test_") and f.endswith(".py")):
        imported, args = _imports_and_fixtures(module)
        if not _ray_in(imported) and not args & RAY_FIXTURES:
            looks_free.add(module)
    assert sorted(looks_free - set(RAY_FREE) - set(NOT_MARKED)) == [], "mark them: pytestmark = pytest.mark.ray_free"
    assert sorted(set(NOT_MARKED) - looks_free) == [], "no longer Ray-free-looking: drop them from NOT_MARKED"
    assert len(RAY_FREE) >= 13


def test_the_guard_refuses_ray():
    with pytest.raises(ImportError, match="a Ray-free test run imported 'ray.rllib'"):
        NoRay().find_spec("ray.rllib")
    assert NoRay().find_spec("rayleigh") is None


@pytest.mark.slow
def test_ray_free_modules_pass_with_ray_refused():
    """All of them in one fresh pytest process: conftest puts the guard in, any ``import
    ray`` fails the test that made it, and the process ends without ray imported."""
    code = (
        "import sys, pytest\n"
        f"rc = pytest.main(['-p', 'no:xdist', '-p', 'no:cacheprovider', '-q', *{list(RAY_FREE)!r}])\n"
        "print('RAY IMPORTED' if 'ray' in sys.modules else 'ray not imported')\n"
        "sys.exit(int(rc))\n"
    )
    path = os.pathsep.join(p for p in (ROOT, TESTS, os.environ.get("PYTHONPATH")) if p)
    res = subprocess.run([sys.executable, "-c", code], cwd=TESTS, capture_output=True, text=True,
                         env=dict(os.environ, PYTHONPATH=path))
    assert res.returncode == 0, res.stdout[-4000:] + res.stderr[-2000:]
    assert res.stdout.rstrip().endswith("ray not imported"), res.stdout[-2000:]
