"""inspect(path) reports what RLlib itself reports about a checkpoint, without Ray."""

from __future__ import annotations

import json
import os
import re

import gymnasium as gym
import numpy as np
import pytest

from builders import MODULES_DIR, assert_imports_no_framework, framework_for_cell
from rllib_ext.checkpoint import inspect
from rllib_ext.checkpoint.spaces import space_from_object
from rllib_ext.checkpoint.views import SpaceView
from rllib_ext.errors import NotACheckpointError


def assert_space_equal(view: SpaceView, space: gym.Space) -> None:
    """Field-by-field comparison of a SpaceView with a real gymnasium space."""
    assert view.type == type(space).__name__
    assert view.describe() == repr(space)
    if isinstance(space, gym.spaces.Box):
        assert view.shape == space.shape
        assert view.dtype == space.dtype.name
        np.testing.assert_array_equal(np.broadcast_to(np.reshape(view.low, (-1,)), space.low.size), space.low.ravel())
        np.testing.assert_array_equal(np.broadcast_to(np.reshape(view.high, (-1,)), space.high.size), space.high.ravel())
    elif isinstance(space, gym.spaces.Discrete):
        assert (view.n, view.start) == (int(space.n), int(space.start))


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
def test_inspect_spaces_match_rllib(ckpts, stack):
    path, _ = ckpts(stack)
    view = inspect(path)
    for pid in ("policy_0", "policy_2"):
        obs, act = rllib_spaces(path, stack, pid)
        assert_space_equal(view.policies[pid].observation_space, obs)
        assert_space_equal(view.policies[pid].action_space, act)


@pytest.mark.parametrize("stack", ["new", "old"])
def test_inspect_reports_algorithm_framework_and_version(ckpts, stack):
    import ray

    path, _ = ckpts(stack)
    view = inspect(path)
    assert (view.kind, view.stack) == ("algorithm", stack)
    assert view.checkpoint_version == ("2.1" if stack == "new" else "1.1")
    assert view.framework == ("torch" if stack == "new" else framework_for_cell())
    assert view.ray_version == ray.__version__
    assert view.algorithm_class == "PPO"
    assert list(view.policies) == ["policy_0", "policy_1", "policy_2"]


@pytest.mark.parametrize("stack", ["new", "old"])
def test_inspect_tensors_match_rllib_weights(ckpts, stack):
    path, expected = ckpts(stack)
    view = inspect(path)
    for pid, want in expected.items():
        pv = view.policies[pid]
        assert pv.tensors == {k: (v.shape, v.dtype.name) for k, v in want.items()}
        assert list(pv.tensors) == list(want)
        assert pv.num_params == sum(v.size for v in want.values())
        assert pv.nbytes == sum(v.nbytes for v in want.values())
        assert pv.model_config["fcnet_hiddens"] == [8, 8]


def test_inspect_module_checkpoint_has_no_algorithm(ckpts):
    path, expected = ckpts("new")
    view = inspect(os.path.join(path, MODULES_DIR, "policy_1"))
    assert (view.kind, view.algorithm_class, view.framework) == ("module", None, "torch")
    (pv,) = view.policies.values()
    assert pv.policy_class == "DefaultPPOTorchRLModule"
    assert pv.tensors == {k: (v.shape, v.dtype.name) for k, v in expected["policy_1"].items()}


@pytest.mark.parametrize("stack", ["new", "old"])
def test_inspect_view_is_json_serialisable(ckpts, stack):
    path, _ = ckpts(stack)
    d = json.loads(json.dumps(inspect(path).to_dict()))
    assert d["policies"]["policy_1"]["observation_space"]["type"] == "Box"
    assert SpaceView.from_dict(d["policies"]["policy_1"]["action_space"]).n == 2


@pytest.mark.parametrize("stack", ["new", "old"])
def test_inspect_imports_no_framework(ckpts, stack):
    path, _ = ckpts(stack)
    assert_imports_no_framework(
        "from rllib_ext.checkpoint import inspect\n"
        f"v = inspect({path!r})\n"
        "assert v.policies['policy_1'].observation_space.type == 'Box'\n",
        extra=("gymnasium",),
    )


def test_inspect_not_a_checkpoint(tmp_path):
    (tmp_path / "notes.txt").write_text("hi")
    with pytest.raises(NotACheckpointError, match=re.escape(f"{tmp_path}: not an RLlib checkpoint")):
        inspect(tmp_path)


@pytest.mark.parametrize(
    "space",
    [
        gym.spaces.Box(-np.inf, np.inf, (3,), np.float32),
        gym.spaces.Box(np.array([-1.0, -2.0]), np.array([1.0, 0.5]), dtype=np.float64),
        gym.spaces.Box(0, 255, (2, 2), np.uint8),
        gym.spaces.Discrete(5, start=-2),
    ],
    ids=["inf", "per-entry", "uint8", "discrete-start"],
)
def test_space_view_roundtrips_through_json(space):
    view = space_from_object(space, "test")
    assert_space_equal(view, space)
    again = SpaceView.from_dict(json.loads(json.dumps(view.to_dict(), allow_nan=False)))
    assert again == view


def test_space_view_describes_nested_spaces():
    space = gym.spaces.Dict({"a": gym.spaces.Discrete(3), "b": gym.spaces.Tuple((gym.spaces.MultiDiscrete([2, 4]),))})
    view = space_from_object(space, "test")
    assert view.type == "Dict"
    assert list(view.spaces) == ["a", "b"]
    assert view.spaces["b"].spaces["0"].nvec == (2, 4)
    assert SpaceView.from_dict(json.loads(json.dumps(view.to_dict()))) == view


def test_inspect_old_stack_policy_checkpoint(ckpts):
    path, expected = ckpts("old")
    view = inspect(os.path.join(path, "policies", "policy_2"))
    assert (view.kind, view.stack, view.algorithm_class, view.framework) == ("policy", "old", None, framework_for_cell())
    (pv,) = view.policies.values()
    assert pv.observation_space.describe() == "Box(-1.0, 1.0, (4,), float32)"
    assert pv.tensors == {k: (v.shape, v.dtype.name) for k, v in expected["policy_2"].items()}


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
