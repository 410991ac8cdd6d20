"""The Ray-free reader returns exactly what RLlib's own getters return."""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest

from rllib_ext import PolicyNotFoundError, read_weights, policy_ids
from rllib_ext.errors import NotACheckpointError


@pytest.mark.parametrize("stack", ["new", "old"])
def test_read_weights_matches_rllib_getters(ckpts, stack):
    path, expected = ckpts(stack)
    assert policy_ids(path) == ["policy_0", "policy_1", "policy_2"]
    for pid, want in expected.items():
        got = read_weights(path, pid)
        assert list(got) == list(want), pid
        for name in want:
            assert got[name].shape == want[name].shape
            np.testing.assert_array_equal(got[name], want[name], err_msg=f"{pid}/{name}")


@pytest.mark.parametrize("stack", ["new", "old"])
def test_read_weights_missing_id_lists_available(ckpts, stack):
    path, _ = ckpts(stack)
    with pytest.raises(PolicyNotFoundError) as e:
        read_weights(path, "policy_9")
    msg = str(e.value)
    assert "policy 'policy_9' not in" in msg
    assert "available: policy_0, policy_1, policy_2" in msg
    assert "did you mean" in msg


def test_read_weights_not_a_checkpoint(tmp_path):
    (tmp_path / "notes.txt").write_text("hi")
    with pytest.raises(NotACheckpointError, match="not an RLlib checkpoint"):
        read_weights(str(tmp_path), "policy_0")


@pytest.mark.parametrize("stack", ["new", "old"])
def test_reader_imports_no_framework(ckpts, stack):
    path, _ = ckpts(stack)
    code = (
        "import sys, rllib_ext\n"
        f"w = rllib_ext.read_weights({path!r}, 'policy_1')\n"
        "assert w, 'no weights'\n"
        "bad = sorted(m for m in sys.modules if m.split('.')[0] in ('ray', 'torch', 'tensorflow'))\n"
        "print(bad)\n"
        "sys.exit(1 if bad else 0)\n"
    )
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=dict(os.environ))
    assert res.returncode == 0, res.stdout + res.stderr
