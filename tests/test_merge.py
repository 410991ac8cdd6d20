"""merge_checkpoints: compose a checkpoint from policies of others; RLlib loads the result."""

from __future__ import annotations

import json
import os
import pickle
import re

import numpy as np
import pytest

from builders import (
    MODULES_DIR,
    all_weights,
    assert_differs,
    assert_imports_no_framework,
    assert_weights_equal,
    env_runner_weights,
    live_weights,
    ppo_config,
    train_then_save,
)

from rllib_ext import PolicyNotFoundError, ShapeMismatchError, read_weights
from rllib_ext.checkpoint import write_policy_dir
from rllib_ext.checkpoint.codecs import safe_pickle
from rllib_ext.merge.checkpoints import LEARNER_STATE, merge_checkpoints
from rllib_ext.merge.state_patch import patch_policy_state
from rllib_ext.checkpoint.storage import CheckpointDir
from rllib_ext.errors import CheckpointError, CheckpointFormatError


@pytest.fixture(scope="module")
def seeded(ray_session, tmp_path_factory):
    """A second 3-policy checkpoint per stack, trained from another seed: ``seeded('old')``."""
    cache = {}

    def get(stack: str):
        if stack not in cache:
            path = str(tmp_path_factory.mktemp(f"seed7_{stack}"))
            cache[stack] = (path, train_then_save(path, ppo_config(stack).debugging(seed=7), all_weights))
        return cache[stack]

    return get


@pytest.mark.parametrize("stack", ["new", "old"])
def test_merge_loads_in_rllib_with_taken_and_kept_policies(ckpts, seeded, tmp_path, stack):
    from ray.rllib.algorithms.algorithm import Algorithm

    base, base_w = ckpts(stack)
    source, source_w = seeded(stack)
    assert_differs(source_w["policy_1"], base_w["policy_1"], "seed 7 vs seed 0")
    out = tmp_path / "merged"

    report = merge_checkpoints(base, [("policy_1", source, None), ("policy_2", source, "policy_0")], out)

    assert report.taken == {"policy_1": f"{source}:policy_1", "policy_2": f"{source}:policy_0"}
    assert report.kept == ["policy_0"]
    assert report.optimizer == {t: ("source" if stack == "new" else "base") for t in ("policy_1", "policy_2")}
    algo = Algorithm.from_checkpoint(str(out))
    try:
        want = {"policy_0": base_w["policy_0"], "policy_1": source_w["policy_1"], "policy_2": source_w["policy_0"]}
        for pid, w in want.items():
            assert_weights_equal(live_weights(algo, pid), w, pid, ordered=False)
            acting = env_runner_weights(algo, pid, remote=False)  # new stack: inference-only subset
            for name, value in acting.items():
                np.testing.assert_array_equal(value, w[name], err_msg=f"env runner {pid}: {name}")
    finally:
        algo.stop()
    assert_weights_equal(read_weights(base, "policy_1"), base_w["policy_1"], "base unchanged", ordered=False)
    assert [n for n in os.listdir(tmp_path) if n != "merged"] == []  # no temporary leftovers


def test_merge_new_stack_takes_optimizer_buffers_keeps_hyperparameters(ckpts, seeded, tmp_path):
    base, _ = ckpts("new")
    source, _ = seeded("new")
    merge_checkpoints(base, [("policy_2", source, "policy_0")], tmp_path / "m")

    def optim(path):
        return safe_pickle.loads(open(os.path.join(path, LEARNER_STATE), "rb").read())["optimizer"]

    got, b, s = optim(tmp_path / "m"), optim(base), optim(source)
    assert list(got) == list(b)
    assert got["policy_2_default_optimizer"]["module_id"] == "policy_2"
    assert got["policy_2_default_optimizer"]["state"]["param_groups"] == b["policy_2_default_optimizer"]["state"]["param_groups"]
    for name, want in (("policy_2", s["policy_0_default_optimizer"]), ("policy_0", b["policy_0_default_optimizer"])):
        for idx, bufs in want["state"]["state"].items():
            for key, value in bufs.items():
                np.testing.assert_array_equal(got[f"{name}_default_optimizer"]["state"]["state"][idx][key], value)


def test_merge_old_stack_changes_only_weight_bytes(ckpts, seeded, tmp_path):
    base, _ = ckpts("old")
    source, _ = seeded("old")
    merge_checkpoints(base, [("policy_1", source, None)], tmp_path / "m")
    rel = "policies/policy_1/policy_state.pkl"
    before = open(os.path.join(base, rel), "rb").read()
    after = open(os.path.join(tmp_path / "m", rel), "rb").read()
    assert len(after) == len(before)
    weight_bytes = sum(w.nbytes for w in read_weights(base, "policy_1").values())
    assert 0 < sum(a != b for a, b in zip(before, after)) <= weight_bytes
    a, b = safe_pickle.loads(after), safe_pickle.loads(before)
    assert (a["global_timestep"], a["num_grad_updates"]) == (b["global_timestep"], b["num_grad_updates"])
    meta = json.loads((tmp_path / "m" / "rllib_checkpoint.json").read_text())
    assert meta["state_file"] == str(tmp_path / "m" / "algorithm_state.pkl")  # not the base's stale path
    for same in ("policies/policy_0/policy_state.pkl", "policies/policy_2/policy_state.pkl", "algorithm_state.pkl"):
        assert open(os.path.join(base, same), "rb").read() == open(os.path.join(tmp_path / "m", same), "rb").read()


@pytest.mark.parametrize("stack", ["new", "old"])
def test_merge_shape_mismatch_raises_before_writing(ckpts, tmp_path, stack):
    base, base_w = ckpts(stack)
    bad = {k: np.array(v, copy=True) for k, v in base_w["policy_1"].items()}
    name = next(k for k, v in bad.items() if v.ndim == 2)
    bad[name] = np.zeros((bad[name].shape[0], bad[name].shape[1] + 2), bad[name].dtype)
    src = write_policy_dir(tmp_path / "bad", "policy_1", bad, {"stack": stack})
    out = tmp_path / "out"
    want = (
        f"policy 'policy_1': tensor {name!r} is {bad[name].shape} in the checkpoint "
        f"but {base_w['policy_1'][name].shape} in the base"
    )
    with pytest.raises(ShapeMismatchError, match=re.escape(want)):
        merge_checkpoints(base, [("policy_0", base, None), ("policy_1", src, None)], out)
    assert not out.exists()
    assert sorted(os.listdir(tmp_path)) == ["bad"]


def test_merge_unknown_ids_name_what_exists(ckpts, tmp_path):
    base, _ = ckpts("new")
    with pytest.raises(PolicyNotFoundError, match=re.escape(
        f"policy 'polcy_1' not in the base {base}; available: policy_0, policy_1, policy_2 (did you mean 'policy_1'?)"
    )):
        merge_checkpoints(base, [("polcy_1", base, "policy_1")], tmp_path / "out")
    with pytest.raises(PolicyNotFoundError, match=re.escape(f"policy 'hero' not in {base}; available:")):
        merge_checkpoints(base, [("policy_1", base, "hero")], tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_merge_refuses_mixed_stacks_and_foreign_out(ckpts, tmp_path):
    new, _ = ckpts("new")
    old, _ = ckpts("old")
    with pytest.raises(CheckpointError, match="cannot be merged into the new-API-stack base"):
        merge_checkpoints(new, [("policy_1", old, None)], tmp_path / "out")
    foreign = tmp_path / "notes"
    foreign.mkdir()
    (foreign / "todo.txt").write_text("mine")
    with pytest.raises(CheckpointError, match=re.escape(f"{foreign}: exists and is not an RLlib checkpoint")):
        merge_checkpoints(new, [("policy_1", new, "policy_0")], foreign)
    assert (foreign / "todo.txt").read_text() == "mine"
    with pytest.raises(CheckpointError, match="must not be"):
        merge_checkpoints(new, [("policy_1", new, "policy_0")], new)


def test_merge_replaces_existing_checkpoint_out(ckpts, tmp_path):
    base, base_w = ckpts("new")
    out = tmp_path / "m"
    merge_checkpoints(base, [("policy_1", base, "policy_0")], out)
    merge_checkpoints(base, [("policy_1", base, "policy_2")], out)
    assert_weights_equal(read_weights(out, "policy_1"), base_w["policy_2"], "second merge wins", ordered=False)
    assert sorted(os.listdir(tmp_path)) == ["m"]


def test_merge_imports_no_framework(ckpts, seeded, tmp_path):
    base, _ = ckpts("old")
    source, _ = seeded("old")
    assert_imports_no_framework(
        "from rllib_ext.merge import merge_checkpoints\n"
        f"merge_checkpoints({base!r}, [('policy_1', {source!r}, None)], {str(tmp_path / 'm')!r})\n"
    )
    assert_weights_equal(read_weights(tmp_path / "m", "policy_1"), read_weights(source, "policy_1"),
                         "policy_1", ordered=False)


def _policy_state_dir(tmp_path, weights, protocol=5):
    d = tmp_path / "pol"
    d.mkdir()
    state = {"weights": weights, "global_timestep": 7, "blob": pickle.dumps({"nested": 1})}
    (d / "policy_state.pkl").write_bytes(pickle.dumps(state, protocol=protocol))
    return CheckpointDir(d)


def test_patch_policy_state_list_weights_and_fortran_order(tmp_path):
    weights = [np.asfortranarray(np.arange(6, dtype=np.float32).reshape(2, 3)), np.zeros(3, np.float64)]
    ckpt = _policy_state_dir(tmp_path, weights)
    source = {"0": np.full((2, 3), 5, np.float32) + np.arange(3), "1": np.array([1, 2, 3], np.int32)}
    patched = safe_pickle.loads(patch_policy_state(ckpt, "policy_state.pkl", "policy 'p'", source))
    np.testing.assert_array_equal(patched["weights"][0], source["0"])
    assert patched["weights"][0].flags.f_contiguous
    np.testing.assert_array_equal(patched["weights"][1], source["1"].astype(np.float64))
    assert (patched["global_timestep"], pickle.loads(patched["blob"])) == (7, {"nested": 1})


def test_patch_policy_state_refuses_arrays_without_raw_buffer(tmp_path):
    ckpt = _policy_state_dir(tmp_path, {"w": np.ones(2, np.float32)}, protocol=2)
    with pytest.raises(CheckpointFormatError, match="tensor 'w' is not pickled as a raw numpy buffer"):
        patch_policy_state(ckpt, "policy_state.pkl", "policy 'p'", {"w": np.zeros(2, np.float32)})


def test_merge_new_stack_from_module_dir_keeps_base_optimizer_and_trains(ckpts, seeded, tmp_path):
    from ray.rllib.algorithms.algorithm import Algorithm

    base, _ = ckpts("new")
    source, source_w = seeded("new")
    module_dir = os.path.join(source, MODULES_DIR, "policy_0")  # no optimizer state here
    report = merge_checkpoints(base, [("policy_1", module_dir, None)], tmp_path / "m")
    assert report.optimizer == {"policy_1": "base"}
    assert report.taken == {"policy_1": f"{module_dir}:policy_0"}
    algo = Algorithm.from_checkpoint(str(tmp_path / "m"))
    try:
        assert_weights_equal(live_weights(algo, "policy_1"), source_w["policy_0"], "policy_1", ordered=False)
        algo.train()  # the base's Adam state for policy_1 fits the taken weights
        assert_differs(live_weights(algo, "policy_1"), source_w["policy_0"], "policy_1 after training")
    finally:
        algo.stop()
