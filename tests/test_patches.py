"""patches/: each upstream diff applies to the installed ray, and its own tests pass on a patched copy."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
CHECK = ROOT / "patches" / "check.py"
PATCHES = sorted((ROOT / "patches").glob("*.patch"))


def _check(*args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(CHECK), *args], capture_output=True, text=True, timeout=timeout)


def test_patches_exist_for_partial_restore_and_zero_resource_build():
    names = [p.name for p in PATCHES]
    assert any("restore-policies" in n for n in names), names
    assert any("lightweight" in n for n in names), names


@pytest.mark.parametrize("patch", PATCHES, ids=lambda p: p.name)
def test_patch_has_header_and_adds_a_test(patch):
    text = patch.read_text()
    header = text.split("\ndiff --git ", 1)[0]
    for part in ("Subject:", "Against: ray==2.60.0", "Problem:", "Behaviour:", "Test:"):
        assert part in header, f"{patch.name}: header lacks {part!r}"
    added_tests = re.findall(r"^\+\+\+ b/(rllib/\S*/tests/test_\S+\.py)$", text, flags=re.M)
    assert added_tests, f"{patch.name} adds no upstream-style test"
    for t in added_tests:
        assert t in header, f"{patch.name}: header does not name its test {t}"


def test_check_dry_runs_every_patch_against_installed_ray():
    res = _check()
    assert res.returncode == 0, res.stdout + res.stderr
    for p in PATCHES:
        assert f"OK    {p.name} applies" in res.stdout


def test_check_fails_loudly_when_a_patch_no_longer_applies(tmp_path):
    import ray

    # A ray whose algorithm.py drifted: one context line of every hunk region changed.
    src = Path(ray.__file__).parent / "rllib" / "algorithms" / "algorithm.py"
    drifted = tmp_path / "rllib" / "algorithms" / "algorithm.py"
    drifted.parent.mkdir(parents=True)
    text = src.read_text()
    assert "    def restore_from_path(self, path, *args, **kwargs):" in text
    assert "        return Algorithm.from_state(state)" in text
    text = text.replace("    def restore_from_path(self, path, *args, **kwargs):",
                        "    def restore_from_path(self, path, *args, **kw):")
    text = text.replace("        return Algorithm.from_state(state)", "        return cls.from_state(state)")
    drifted.write_text(text)

    res = _check("--ray-dir", str(tmp_path))
    assert res.returncode == 1
    for p in PATCHES:
        assert f"FAIL  {p.name} no longer applies" in res.stderr
    assert f"{len(PATCHES)} of {len(PATCHES)} patches no longer apply" in res.stderr
    assert drifted.read_text() == text, "a dry run must not touch the target"


@pytest.mark.slow
@pytest.mark.parametrize("patch", PATCHES, ids=lambda p: p.name)
def test_patched_rllib_copy_passes_the_patch_own_tests(patch):
    """Apply every patch to a copy of ray/rllib, then run this patch's upstream-style test
    (one test per patch, so the two workers share them)."""
    res = _check("--test", "--only", patch.name, "--", "-p", "no:xdist", "-x", timeout=600)
    assert res.returncode == 0, res.stdout[-4000:] + res.stderr[-4000:]
    assert f"OK    {patch.name}: its tests pass against the patched copy" in res.stdout
    import ray

    installed = Path(ray.__file__).parent / "rllib" / "algorithms" / "algorithm.py"
    assert "def restore_policies" not in installed.read_text(), "the installed ray must stay stock"


def test_check_only_refuses_an_unknown_patch():
    res = _check("--test", "--only", "0099-nope.patch")
    assert res.returncode == 2
    assert "no such patch" in res.stderr and PATCHES[0].name in res.stderr
