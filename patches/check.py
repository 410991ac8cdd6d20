#!/usr/bin/env python3
"""Check that every upstream patch in patches/ still applies to the installed ray.

    python patches/check.py                 dry-run each patch against the installed ray
    python patches/check.py --apply-to DIR  copy the installed ray/rllib to DIR/rllib and
                                            apply every patch there (in order)
    python patches/check.py --test          --apply-to a temporary DIR, then run each
                                            patch's own upstream-style tests against it
    python patches/check.py --test --only NAME   the same, one patch's tests only

Why a copy: the installed ray stays untouched, so rllib_ext's tests still run against
stock RLlib. The patched copy is put first on ``ray.__path__`` of a fresh interpreter,
so ``import ray.rllib`` finds it while the rest of ray (core, tune) is the installed one.

Exit codes: 0 all fine, 1 a patch no longer applies or its tests fail, 2 bad usage or
missing tools (GNU patch, ray). Every failure is printed with the patch's name.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import List

HERE = Path(__file__).resolve().parent
EXPECTED_RAY = "2.60.0"

# Runs in the child interpreter: the patched copy shadows the installed ray.rllib.
_OVERLAY_RUNNER = """
import sys
import ray
ray.__path__.insert(0, sys.argv[1])
import ray.rllib
if not ray.rllib.__file__.startswith(sys.argv[1]):
    sys.exit(f"patched copy not picked up: ray.rllib is {ray.rllib.__file__}")
import pytest
sys.exit(pytest.main(sys.argv[2:]))
"""


def patches() -> List[Path]:
    """The patch files, in the order they apply."""
    return sorted(HERE.glob("*.patch"))


def installed_ray_dir() -> Path:
    """The installed ``ray`` package directory (found without importing ray)."""
    import importlib.util

    spec = importlib.util.find_spec("ray")
    if spec is None or not spec.submodule_search_locations:
        raise SystemExit("check.py: ray is not installed in this interpreter")
    return Path(list(spec.submodule_search_locations)[0])


def ray_version() -> str:
    from importlib.metadata import version

    return version("ray")


def new_test_files(patch: Path) -> List[str]:
    """Test files a patch adds (``rllib/.../tests/test_*.py``), relative to ray/."""
    text = patch.read_text()
    return re.findall(r"^\+\+\+ b/(rllib/\S*/tests/test_\S+\.py)$", text, flags=re.M)


def _patch(patch: Path, target: Path, dry_run: bool) -> subprocess.CompletedProcess:
    # --fuzz=0: a patch that only applies by fuzzing has drifted and must be refreshed.
    cmd = ["patch", "-p1", "--forward", "--batch", "--fuzz=0", "-d", str(target), "-i", str(patch)]
    if dry_run:
        cmd.insert(1, "--dry-run")
    return subprocess.run(cmd, capture_output=True, text=True)


def dry_run(ray_dir: Path) -> int:
    """Dry-run every patch against ``ray_dir``; print one line each, details on failure."""
    failed = 0
    for p in patches():
        res = _patch(p, ray_dir, dry_run=True)
        if res.returncode == 0:
            print(f"OK    {p.name} applies to {ray_dir}")
        else:
            failed += 1
            print(f"FAIL  {p.name} no longer applies to {ray_dir}:", file=sys.stderr)
            print(res.stdout + res.stderr, file=sys.stderr)
    return failed


def apply_to(dest: Path, ray_dir: Path) -> Path:
    """Copy ``ray_dir/rllib`` to ``dest/rllib`` and apply every patch there, in order."""
    dest.mkdir(parents=True, exist_ok=True)
    rllib = dest / "rllib"
    if rllib.exists():
        raise SystemExit(f"check.py: {rllib} exists already; pass an empty directory")
    shutil.copytree(ray_dir / "rllib", rllib, ignore=shutil.ignore_patterns("__pycache__"))
    for p in patches():
        res = _patch(p, dest, dry_run=False)
        if res.returncode != 0:
            raise SystemExit(f"FAIL  {p.name} did not apply to the copy:\n{res.stdout}{res.stderr}")
        print(f"applied {p.name} to {rllib}")
    return dest


def run_tests(overlay: Path, pytest_args: List[str], only: str | None = None) -> int:
    """Run each patch's own tests (or ``only`` that patch's) in a fresh interpreter that
    imports the patched copy."""
    failed = 0
    for p in patches():
        if only and p.name != only:
            continue
        tests = [str(overlay / t) for t in new_test_files(p)]
        if not tests:
            print(f"FAIL  {p.name} adds no test (a patch without a test is not upstream-ready)", file=sys.stderr)
            failed += 1
            continue
        start = time.time()
        # --noconftest: rllib's conftest.py imports ray.tests, which the wheel lacks.
        cmd = [sys.executable, "-c", _OVERLAY_RUNNER, str(overlay), "-q", "--noconftest",
               "-p", "no:cacheprovider", *pytest_args, *tests]
        res = subprocess.run(cmd, cwd=str(overlay))
        took = time.time() - start
        if res.returncode == 0:
            print(f"OK    {p.name}: its tests pass against the patched copy ({took:.0f}s)")
        else:
            failed += 1
            print(f"FAIL  {p.name}: its tests fail against the patched copy (exit {res.returncode}, {took:.0f}s)",
                  file=sys.stderr)
    return failed


def main(argv: List[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--apply-to", metavar="DIR", help="apply every patch to a copy of ray/rllib in DIR")
    ap.add_argument("--test", action="store_true", help="apply to a temporary copy and run the patches' tests")
    ap.add_argument("--only", metavar="NAME",
                    help="with --test: run only this patch's tests (every patch is still applied, in order)")
    ap.add_argument("--ray-dir", help="the ray package to check against (default: the installed one)")
    ap.add_argument("pytest_args", nargs="*", help="extra pytest arguments for --test")
    args = ap.parse_args(argv)
    if shutil.which("patch") is None:
        print("check.py: GNU patch is not installed (apt-get install patch)", file=sys.stderr)
        return 2
    if not patches():
        print(f"check.py: no *.patch files in {HERE}", file=sys.stderr)
        return 2
    if args.only and args.only not in {p.name for p in patches()}:
        print(f"check.py: --only {args.only}: no such patch; known: {', '.join(p.name for p in patches())}",
              file=sys.stderr)
        return 2
    ray_dir = Path(args.ray_dir) if args.ray_dir else installed_ray_dir()
    if not args.ray_dir and ray_version() != EXPECTED_RAY:
        print(f"note: the patches are made against ray=={EXPECTED_RAY}, installed is {ray_version()}")

    failed = dry_run(ray_dir)
    if failed:
        print(f"check.py: {failed} of {len(patches())} patches no longer apply", file=sys.stderr)
        return 1
    if args.apply_to:
        apply_to(Path(args.apply_to), ray_dir)
    if args.test:
        with tempfile.TemporaryDirectory(prefix="rllib-patched-") as tmp:
            apply_to(Path(tmp), ray_dir)
            failed = run_tests(Path(tmp), args.pytest_args, args.only)
        if failed:
            return 1
    print(f"check.py: all {len(patches())} patches OK against {ray_dir}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
