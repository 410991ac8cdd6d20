"""inspect(path) reports what RLlib itself reports about a checkpoint, without Ray.

Ray-free: the checkpoints are committed (tests/fixtures/current); the comparisons with
RLlib's own loaders are in test_rllib_agreement.py.
"""

from __future__ import annotations

import json
import os
import re

import gymnasium as gym
import numpy as np
import pytest

from builders import (
    MODULES_DIR, assert_imports_no_framework, assert_space_equal, framework_for_cell, stored_checkpoint, stored_meta, stored_name,
)
from rllib_ext.checkpoint import inspect
from rllib_ext.checkpoint.spaces import space_from_object
from rllib_ext.checkpoint.views import SpaceView
from rllib_ext.errors import NotACheckpointError

pytestmark = pytest.mark.ray_free  # never imports Ray: tests/test_ray_free.py checks it


@pytest.mark.parametrize("stack", ["new", "old"])
def test_inspect_reports_algorithm_framework_and_version(stored, stack):
    path, _ = stored(stack)
    view = inspect(path)
    assert (view.kind, view.stack) == ("algorithm", stack)
    assert view.checkpoint_version == ("2.1" if stack == "new" else "1.1")
    assert view.framework == ("torch" if stack == "new" else framework_for_cell())
    assert view.ray_version == stored_meta(stored_name(stack))["ray_version"]  # the Ray that wrote it
    assert view.algorithm_class == "PPO"
    assert list(view.policies) == ["policy_0", "policy_1", "policy_2"]


@pytest.mark.parametrize("stack", ["new", "old"])
def test_inspect_tensors_match_rllib_weights(stored, stack):
    path, expected = stored(stack)
    view = inspect(path)
    for pid, want in expected.items():
        pv = view.policies[pid]
        assert pv.tensors == {k: (v.shape, v.dtype.name) for k, v in want.items()}
        assert list(pv.tensors) == list(want)
        assert pv.num_params == sum(v.size for v in want.values())
        assert pv.nbytes == sum(v.nbytes for v in want.values())
        assert pv.model_config["fcnet_hiddens"] == [8, 8]


def test_inspect_module_checkpoint_has_no_algorithm(stored):
    path, expected = stored("new")
    view = inspect(os.path.join(path, MODULES_DIR, "policy_1"))
    assert (view.kind, view.algorithm_class, view.framework) == ("module", None, "torch")
    (pv,) = view.policies.values()
    assert pv.policy_class == "DefaultPPOTorchRLModule"
    assert pv.tensors == {k: (v.shape, v.dtype.name) for k, v in expected["policy_1"].items()}


@pytest.mark.parametrize("stack", ["new", "old"])
def test_inspect_view_is_json_serialisable(stored, stack):
    path, _ = stored(stack)
    d = json.loads(json.dumps(inspect(path).to_dict()))
    assert d["policies"]["policy_1"]["observation_space"]["type"] == "Box"
    assert SpaceView.from_dict(d["policies"]["policy_1"]["action_space"]).n == 2


@pytest.mark.parametrize("stack", ["new", "old"])
def test_inspect_imports_no_framework(stored, stack):
    path, _ = stored(stack)
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


def test_inspect_old_stack_policy_checkpoint(stored):
    path, expected = stored("old")
    view = inspect(os.path.join(path, "policies", "policy_2"))
    assert (view.kind, view.stack, view.algorithm_class, view.framework) == ("policy", "old", None, framework_for_cell())
    (pv,) = view.policies.values()
    assert pv.observation_space.describe() == "Box(-1.0, 1.0, (4,), float32)"
    assert pv.tensors == {k: (v.shape, v.dtype.name) for k, v in expected["policy_2"].items()}


# --- checkpoints written by Tune ----------------------------------------------------------
# A Tune trial runs as a subclass Ray makes of the trainable (its actor class); cloudpickle
# stores that class by value, as the call _make_skeleton_class(type, name, bases, ...).
TUNE = [("tune-new", "PPO", "PPO"), ("tune-old", "PPO", "PPO"),
        ("tune-partial-new", "PPOPartial", "PPO"), ("tune-partial-old", "PPOPartial", "PPO")]


@pytest.mark.parametrize("name,cls,base", TUNE, ids=[t[0] for t in TUNE])
def test_inspect_tune_trial_names_the_real_algorithm_and_its_base(name, cls, base, capsys):
    from rllib_ext.checkpoint import format as fmt
    from rllib_ext.checkpoint.codecs.safe_pickle import Placeholder
    from rllib_ext.checkpoint.decode import decode_file
    from rllib_ext.checkpoint.storage import CheckpointDir
    from rllib_ext.cli import main

    path, expected = stored_checkpoint(name)
    new = stored_meta(name)["stack"] == "new"
    doc = decode_file(CheckpointDir(path), fmt.CTOR_ARGS_FILE if new else "algorithm_state.pkl")
    pickled = doc["class"] if new else doc["algorithm_class"]
    assert isinstance(pickled, Placeholder) and pickled.name == "_make_skeleton_class"  # stored by value

    view = inspect(path)
    assert (view.algorithm_class, view.algorithm_base) == (cls, base)
    assert view.to_dict()["algorithm_base"] == base
    assert list(view.policies) == sorted(expected)
    assert main(["inspect", path]) == 0
    facts = capsys.readouterr().out.splitlines()[1]
    assert f"algorithm {cls}" + ("" if cls == base else f" (on {base})") + "," in facts


def test_algorithm_names_by_reference_and_by_value():
    from rllib_ext.checkpoint.codecs.safe_pickle import _placeholder_class
    from rllib_ext.checkpoint.inspection import algorithm_names

    ppo = _placeholder_class("ray.rllib.algorithms.ppo.ppo", "PPO")
    partial = _placeholder_class("rllib_ext.algorithms", "APPOPartial")
    mine = _placeholder_class("my_project.algos", "MyPPO")
    skeleton = _placeholder_class("ray.cloudpickle.cloudpickle", "_make_skeleton_class")
    assert algorithm_names(ppo) == ("PPO", "PPO")
    assert algorithm_names(partial) == ("APPOPartial", "APPO")
    assert algorithm_names(mine) == ("MyPPO", None)  # by reference, not ours: its base is not in the file
    assert algorithm_names("ray.rllib.algorithms.dqn.dqn.DQN") == ("DQN", "DQN")
    assert algorithm_names(skeleton(type, "MyPPO", (ppo,), {}, "id", None)) == ("MyPPO", "PPO")
    nested = skeleton(type, "Outer", (skeleton(type, "Inner", (partial,), {}, "id", None),), {}, "id", None)
    assert algorithm_names(nested) == ("Outer", "APPO")
    assert algorithm_names(skeleton(type, "Lonely", (mine,), {}, "id", None)) == ("Lonely", None)
    assert algorithm_names(None) == (None, None)
