"""The type checker's gate (issue #36 point 5): mypy with the repo's mypy.ini passes on the
tree, and a type error planted in ``checkpoint/`` fails it, naming the line.

The planted error goes in through ``--shadow-file`` (mypy reads the copy in the module's
place), so the tree is never edited. Both runs share one cache, so the second rechecks only
the planted module and what depends on it; under tox the cache starts from the one the cell's
own ``mypy`` command just wrote (``MYPY_CACHE_DIR``, copied: the tree is checked once, not
three times). Cell-independent: runs in torch-new only.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys

import pytest

pytestmark = pytest.mark.slow

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CONFIG = os.path.join(ROOT, "mypy.ini")
TARGET = os.path.join("rllib_ext", "checkpoint", "diff.py")


def test_the_tree_passes_and_a_planted_error_in_checkpoint_fails(tmp_path):
    pytest.importorskip("mypy", reason="mypy is not installed (pip install -e '.[test]' installs it)")
    cache = tmp_path / "cache"
    warm = os.environ.get("MYPY_CACHE_DIR", "")
    if warm and os.path.isdir(warm):
        shutil.copytree(warm, cache)
    env = {k: v for k, v in os.environ.items() if k != "MYPY_CACHE_DIR"}

    def mypy(*args: str) -> subprocess.CompletedProcess:
        cmd = [sys.executable, "-m", "mypy", "--config-file", CONFIG, "--cache-dir", str(cache), *args]
        return subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)

    clean = mypy()
    assert clean.returncode == 0, clean.stdout + clean.stderr

    with open(os.path.join(ROOT, TARGET), encoding="utf-8") as f:
        source = f.read()
    line = source.count("\n") + 3  # after the blank lines below
    shadow = tmp_path / "diff.py"
    shadow.write_text(source + "\n\ndef planted() -> int:\n    return 'x'\n", encoding="utf-8")
    planted = mypy("--shadow-file", TARGET, str(shadow))
    assert planted.returncode == 1, planted.stdout + planted.stderr
    assert f"{TARGET}:{line + 1}: error: Incompatible return value type" in planted.stdout, planted.stdout
