"""One policy out of a checkpoint: policy directory, npz, torch state_dict (Ray-free: committed checkpoints)."""

from __future__ import annotations

import re
import sys
from unittest import mock

import numpy as np
import pytest

from builders import assert_weights_equal, sample_weights

from rllib_ext.checkpoint import inspect
from rllib_ext.checkpoint.export import export_npz, export_torch_state_dict, extract_policy
from rllib_ext.checkpoint.policy_file import read_policy_dir
from rllib_ext.errors import PolicyNotFoundError

pytestmark = pytest.mark.ray_free  # never imports Ray: tests/test_ray_free.py checks it


@pytest.mark.parametrize("stack", ["new", "old"])
def test_extract_policy_matches_rllib_getters(stored, tmp_path, stack):
    path, expected = stored(stack)
    out = extract_policy(path, "policy_1", tmp_path / "p1")
    meta, weights = read_policy_dir(out)
    for name, want in expected["policy_1"].items():
        np.testing.assert_array_equal(weights[name], want, err_msg=name)
    assert list(weights) == list(expected["policy_1"])
    source = inspect(path)
    view = inspect(out)
    assert (view.kind, view.stack, view.framework, view.algorithm_class) == (
        "single-policy", stack, source.framework, "PPO"
    )
    src, got = source.policies["policy_1"], view.policies["policy_1"]
    assert got.observation_space == src.observation_space
    assert got.action_space == src.action_space
    assert (got.tensors, got.num_params, got.nbytes) == (src.tensors, src.num_params, src.nbytes)
    assert (got.model_config, got.policy_class) == (src.model_config, src.policy_class)
    assert meta["source"] == source.path


def test_extract_policy_missing_id_lists_available(stored, tmp_path):
    path, _ = stored("new")
    with pytest.raises(PolicyNotFoundError, match=re.escape("policy 'policy_7' not in")):
        extract_policy(path, "policy_7", tmp_path / "x")
    assert not (tmp_path / "x").exists()


def test_export_npz_loads_with_numpy(tmp_path):
    want = sample_weights()
    out = export_npz(want, tmp_path / "w.bin")  # no '.npz' appended
    assert out == str(tmp_path / "w.bin")
    with np.load(out, allow_pickle=False) as z:
        assert_weights_equal({k: z[k] for k in want}, want)


def test_export_torch_state_dict_without_torch(tmp_path):
    from rllib_ext.errors import MissingDependencyError

    with mock.patch.dict(sys.modules, {"torch": None}):
        with pytest.raises(MissingDependencyError, match=re.escape("exporting a torch state_dict needs torch: pip install torch")):
            export_torch_state_dict(sample_weights(), tmp_path / "x.pt")
    assert not (tmp_path / "x.pt").exists()
