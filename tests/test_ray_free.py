"""The Ray-free test modules never import Ray (conftest.RAY_FREE).

They read committed checkpoints (tests/fixtures/current, made by make_current.py) instead
of training them, so a 2-core CI box runs them without starting a Ray instance per
worker. Two proofs: no import of ray and no Ray fixture anywhere in their source, and a
run of just those modules in a fresh process, where conftest refuses any import of ray.
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


@pytest.mark.parametrize("module", RAY_FREE)
def test_ray_free_module_imports_no_ray_and_uses_no_ray_fixture(module):
    tree = ast.parse(open(os.path.join(TESTS, module)).read())
    imported = {a.name.split(".")[0] for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
    imported |= {(n.module or "").split(".")[0] for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)}
    assert "ray" not in imported, module
    args = {a.arg for n in ast.walk(tree) if isinstance(n, ast.FunctionDef) for a in n.args.args}
    assert not args & RAY_FIXTURES, f"{module} asks for {', '.join(sorted(args & RAY_FIXTURES))}"


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
