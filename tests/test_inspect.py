"""inspect(path) reports what RLlib itself reports about a checkpoint, without Ray."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys

import gymnasium as gym
import numpy as np
import pytest

from builders import framework_for_cell
from rllib_ext.checkpoint import inspect
from rllib_ext.checkpoint.inspect import SpaceView, space_from_object
from rllib_ext.errors import NotACheckpointError

MODULES_DIR = "learner_group/learner/rl_module"


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
    code = (
        "import sys\n"
        "from rllib_ext.checkpoint import inspect\n"
        f"v = inspect({path!r})\n"
        "assert v.policies['policy_1'].observation_space.type == 'Box'\n"
        "bad = sorted(m for m in sys.modules if m.split('.')[0] in ('ray', 'torch', 'tensorflow', 'gymnasium'))\n"
        "print(bad)\n"
        "sys.exit(1 if bad else 0)\n"
    )
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=dict(os.environ))
    assert res.returncode == 0, res.stdout + res.stderr


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
