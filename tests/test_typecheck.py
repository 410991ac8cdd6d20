"""The type checker's gate (issue #36 point 5): mypy with the repo's mypy.ini passes on the
tree, and a type error planted in ``checkpoint/`` fails it, naming the line.

The planted error goes in through ``--shadow-file`` (mypy reads the copy in the module's
place), so the tree is never edited. Cell-independent: runs in torch-new only.
"""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

pytestmark = pytest.mark.slow

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CONFIG = os.path.join(ROOT, "mypy.ini")
TARGET = os.path.join("rllib_ext", "checkpoint", "diff.py")


def _mypy(tmp_path, *args: str) -> subprocess.CompletedProcess:
    pytest.importorskip("mypy", reason="mypy is not installed (pip install -e '.[test]' installs it)")
    cmd = [sys.executable, "-m", "mypy", "--config-file", CONFIG, "--cache-dir", str(tmp_path / "cache"), *args]
    return subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=600)


def test_the_tree_passes(tmp_path):
    out = _mypy(tmp_path)
    assert out.returncode == 0, out.stdout + out.stderr


def test_a_planted_error_in_checkpoint_fails(tmp_path):
    with open(os.path.join(ROOT, TARGET), encoding="utf-8") as f:
        source = f.read()
    line = source.count("\n") + 3  # after the blank lines below
    shadow = tmp_path / "diff.py"
    shadow.write_text(source + "\n\ndef planted() -> int:\n    return 'x'\n", encoding="utf-8")
    out = _mypy(tmp_path, "--shadow-file", TARGET, str(shadow))
    assert out.returncode == 1, out.stdout + out.stderr
    assert f"{TARGET}:{line + 1}: error: Incompatible return value type" in out.stdout, out.stdout
