"""The Ray-free reader agrees with RLlib's own loaders and writers on the same files.

These tests import RLlib (its msgpack writer, its module and policy loaders, its space
serialisers) but start no Ray runtime: they read the committed checkpoints
(tests/fixtures/current) that the Ray-free test modules read.
"""

from __future__ import annotations

import json
import os

import gymnasium as gym
import numpy as np
import pytest

from builders import MODULES_DIR, assert_space_equal, assert_weights_equal

from rllib_ext import policy_ids, read_weights
from rllib_ext.checkpoint import inspect
from rllib_ext.checkpoint.export import extract_policy
from rllib_ext.checkpoint.spaces import space_from_object


@pytest.fixture(autouse=True)
def _no_ray_runtime():
    """RLlib's loaders and writers run here, never a Ray runtime: a test starts none (an
    xdist worker may hold one already, started by another module's tests)."""
    import ray

    before = ray.is_initialized()
    yield
    assert ray.is_initialized() == before, "this test started a Ray runtime"


def test_read_weights_msgpack_new_stack_matches_rllib_getters(stored, tmp_path):
    """RLlib's own msgpack writer (save_to_path(use_msgpack=True)) on the MultiRLModule."""
    from ray.rllib.core.rl_module.rl_module import RLModule

    path, expected = stored("new")
    multi = RLModule.from_checkpoint(os.path.join(path, MODULES_DIR))
    out = str(tmp_path / "rl_module_msgpack")
    multi.save_to_path(out, use_msgpack=True)
    assert os.path.isfile(os.path.join(out, "policy_1", "module_state.msgpack"))
    assert policy_ids(out) == ["policy_0", "policy_1", "policy_2"]
    for pid, want in expected.items():
        assert_weights_equal(read_weights(out, pid), want, pid)
    from rllib_ext.checkpoint import inspect

    view = inspect(out)  # spaces still come from the (pickled) class_and_ctor_args.pkl
    assert view.kind == "multi-module"
    assert view.policies["policy_1"].observation_space.describe() == "Box(-1.0, 1.0, (4,), float32)"
    assert view.policies["policy_1"].weights_file == "policy_1/module_state.msgpack"


def test_read_weights_msgpack_old_stack_matches_rllib_getters(stored, tmp_path):
    """RLlib's Policy.export_checkpoint(checkpoint_format='msgpack') for every policy.

    Ray 2.60 cannot msgpack a policy state as is: its config holds ``stats_cls_lookup``
    (a dict of classes) that ``AlgorithmConfig._serialize_dict`` leaves alone, so it is
    dropped here first (the same failure breaks ``convert_to_msgpack_checkpoint``).
    """
    import shutil

    from ray.rllib.policy.policy import Policy

    path, expected = stored("old")
    out = tmp_path / "old_msgpack"
    shutil.copytree(path, out)
    for pid in expected:
        pdir = out / "policies" / pid
        policy = Policy.from_checkpoint(str(pdir))
        state = policy.get_state()
        state["policy_spec"]["config"].pop("stats_cls_lookup", None)
        (pdir / "policy_state.pkl").unlink()
        policy.export_checkpoint(str(pdir), policy_state=state, checkpoint_format="msgpack")
        assert (pdir / "policy_state.msgpck").is_file()
    for pid, want in expected.items():
        assert_weights_equal(read_weights(str(out), pid), want, pid)
        # The policy directory alone is RLlib's single-policy checkpoint.
        assert_weights_equal(read_weights(str(out / "policies" / pid)), want, pid)


def test_export_torch_state_dict_loads_into_rllib_module(stored, tmp_path):
    import torch
    from ray.rllib.core.rl_module.rl_module import RLModule

    path, expected = stored("new")
    out = extract_policy(path, "policy_2", tmp_path / "p2.pt", format="torch")
    state = torch.load(out, weights_only=True)
    assert list(state) == list(expected["policy_2"])
    for name, want in expected["policy_2"].items():
        np.testing.assert_array_equal(state[name].numpy(), want, err_msg=name)
    module = RLModule.from_checkpoint(os.path.join(path, MODULES_DIR, "policy_1"))
    module.load_state_dict(state, strict=True)  # policy_1 and policy_2 share the architecture
    for name, tensor in module.state_dict().items():
        np.testing.assert_array_equal(tensor.numpy(), expected["policy_2"][name], err_msg=name)


def rllib_spaces(path: str, stack: str, pid: str):
    """The spaces RLlib reports after loading the policy/module from the checkpoint."""
    if stack == "new":
        from ray.rllib.core.rl_module.rl_module import RLModule

        module = RLModule.from_checkpoint(os.path.join(path, MODULES_DIR, pid))
        return module.observation_space, module.action_space
    from ray.rllib.policy.policy import Policy

    policy = Policy.from_checkpoint(os.path.join(path, "policies", pid))
    return policy.observation_space, policy.action_space


@pytest.mark.parametrize("stack", ["new", "old"])
def test_inspect_spaces_match_rllib(stored, stack):
    path, _ = stored(stack)
    view = inspect(path)
    for pid in ("policy_0", "policy_2"):
        obs, act = rllib_spaces(path, stack, pid)
        assert_space_equal(view.policies[pid].observation_space, obs)
        assert_space_equal(view.policies[pid].action_space, act)


def test_inspect_legacy_layout_reads_module_metadata(tmp_path):
    """Layout 1.2 (Ray ~2.30): spaces in <mid>/rl_module_metadata.json, serialised by
    RLlib's gym_space_to_dict. The nesting below mimics a SingleAgentRLModuleSpec dict;
    the reader looks the keys up wherever they are."""
    from collections import OrderedDict

    import torch
    from ray.rllib.utils.serialization import gym_space_to_dict

    obs = gym.spaces.Box(np.array([-1.0, -5.0], np.float32), np.array([1.0, 5.0], np.float32))
    act = gym.spaces.MultiDiscrete([3, 2])
    (tmp_path / "rllib_checkpoint.json").write_text(json.dumps({"type": "Algorithm", "checkpoint_version": "1.2"}))
    mdir = tmp_path / "learner" / "module_state" / "agent"
    (mdir / "module_state_dir").mkdir(parents=True)
    torch.save(OrderedDict(w=np.ones((2, 2), np.float32)), mdir / "module_state_dir" / "module_state.pt")
    spec = {
        "module_spec_class": "ray.rllib.core.rl_module.rl_module.SingleAgentRLModuleSpec",
        "module_spec_dict": {
            "module_class": "ray.rllib.algorithms.ppo.torch.ppo_torch_rl_module.PPOTorchRLModule",
            "module_config": {
                "observation_space": gym_space_to_dict(obs),
                "action_space": gym_space_to_dict(act),
                "model_config_dict": {"fcnet_hiddens": [4]},
            },
        },
    }
    (mdir / "rl_module_metadata.json").write_text(json.dumps(spec))
    view = inspect(tmp_path)
    pv = view.policies["agent"]
    assert (view.stack, view.checkpoint_version, view.framework) == ("new", "1.2", "torch")
    assert_space_equal(pv.observation_space, obs)
    assert pv.action_space.nvec == (3, 2)
    assert (pv.policy_class, pv.model_config, pv.tensors) == ("PPOTorchRLModule", {"fcnet_hiddens": [4]}, {"w": ((2, 2), "float32")})


def test_inspect_old_stack_space_dicts_match_rllib_deserialiser():
    """Our decoding of RLlib's serialised spaces agrees with RLlib's own space_from_dict."""
    from ray.rllib.utils.serialization import space_from_dict, space_to_dict

    from rllib_ext.checkpoint.spaces import space_from_rllib_dict

    spaces = [
        gym.spaces.Box(-np.inf, 3.0, (2, 3), np.float64),
        gym.spaces.Discrete(4, start=1),
        gym.spaces.Tuple((gym.spaces.Discrete(2), gym.spaces.Box(0, 1, (2,), np.float32))),
        gym.spaces.Dict({"pos": gym.spaces.Box(-1, 1, (2,), np.float32), "id": gym.spaces.Discrete(3)}),
    ]
    for space in spaces:
        serialised = space_to_dict(space)
        view = space_from_rllib_dict(serialised, "test")
        theirs = space_from_dict(serialised)
        assert view == space_from_object(theirs, "test"), space
