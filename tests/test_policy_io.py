"""save_policy -> build_policy acts like the live policy; algo.load_policy adds or replaces."""

from __future__ import annotations

import os
import re

import numpy as np
import pytest

from builders import STACKS, assert_weights_equal, env_runner_weights, live_weights, ppo_config, stored_checkpoint

import rllib_ext
from rllib_ext import PPOPartialConfig


def live_actions(algo, pid, observations):
    if algo.config.enable_rl_module_and_learner:
        import torch

        module = algo.get_module(pid)
        with torch.no_grad():
            logits = module.forward_inference({"obs": torch.as_tensor(np.stack(observations))})["action_dist_inputs"]
        return [int(a) for a in logits.argmax(-1)]
    return [int(algo.compute_single_action(o, policy_id=pid, explore=False)) for o in observations]


@pytest.mark.parametrize("stack", STACKS)
def test_save_policy_then_build_policy_acts_like_the_live_policy(ray_session, tmp_path, stack):
    algo = ppo_config(stack, config_cls=PPOPartialConfig).build_algo()
    try:
        algo.train()
        path = algo.save_policy("policy_1", tmp_path / "p1")
        want_weights = live_weights(algo, "policy_1")
        rng = np.random.default_rng(0)
        # Wider than the env's [-1, 1], so that even a policy that learned to prefer one
        # action there still picks both somewhere (else the comparison proves little).
        observations = [rng.uniform(-4, 4, 4).astype(np.float32) for _ in range(500)]
        want = live_actions(algo, "policy_1", observations)
    finally:
        algo.stop()

    loaded = rllib_ext.build_policy(path)
    assert loaded.policy_id == "policy_1"
    for name, w in want_weights.items():
        np.testing.assert_array_equal(loaded.weights[name], w, err_msg=name)
    got = [int(loaded.compute_action(o)) for o in observations]
    assert got == want
    assert len(set(want)) == 2, "a policy that always picks one action proves little"


@pytest.mark.parametrize("stack", STACKS)
def test_algo_load_policy_replaces_and_adds_synced(ray_session, tmp_path, stack):
    src = ppo_config(stack, config_cls=PPOPartialConfig).debugging(seed=3).build_algo()
    try:
        path = src.save_policy("policy_1", tmp_path / "p1")
        saved = live_weights(src, "policy_1")
    finally:
        src.stop()
    algo = ppo_config(stack, config_cls=PPOPartialConfig, num_env_runners=1).build_algo()
    try:
        before = {p: live_weights(algo, p) for p in ("policy_1", "policy_2")}
        report = algo.load_policy(path, policy_id="policy_0")
        assert report.restored == {"policy_1": "policy_0"}  # {source: target}
        for name, w in saved.items():
            np.testing.assert_array_equal(live_weights(algo, "policy_0")[name], w, err_msg=name)
        remote = env_runner_weights(algo, "policy_0")
        for name, w in remote.items():
            np.testing.assert_array_equal(w, saved[name], err_msg=f"remote {name}")

        algo.load_policy(path, policy_id="extra")
        for name, w in saved.items():
            np.testing.assert_array_equal(live_weights(algo, "extra")[name], w, err_msg=f"extra {name}")
        remote = env_runner_weights(algo, "extra")
        for name, w in remote.items():
            np.testing.assert_array_equal(w, saved[name], err_msg=f"remote extra {name}")
        for pid, w in before.items():
            for name in w:
                np.testing.assert_array_equal(live_weights(algo, pid)[name], w[name], err_msg=f"{pid}/{name}")
    finally:
        algo.stop()


@pytest.mark.parametrize("stack", STACKS)
def test_algo_load_policy_new_id_that_fails_adds_nothing(ray_session, tmp_path, stack):
    """A new id is added before its weights are checked; a failure must take it out again."""
    import json

    from rllib_ext import ShapeMismatchError

    src = ppo_config(stack, config_cls=PPOPartialConfig).build_algo()
    try:
        path = src.save_policy("policy_1", tmp_path / "p1")
    finally:
        src.stop()
    meta_file = os.path.join(path, "policy.json")
    doc = json.load(open(meta_file))
    # A stored space that does not fit the stored weights (4 inputs): the policy built
    # for it takes 6, so the restore into it fails after the add.
    doc["observation_space"] = {"type": "Box", "shape": [6], "dtype": "float32", "low": -1.0, "high": 1.0}
    json.dump(doc, open(meta_file, "w"))

    algo = ppo_config(stack, config_cls=PPOPartialConfig, num_env_runners=1).build_algo()
    try:
        before = {p: live_weights(algo, p) for p in ("policy_0", "policy_1", "policy_2")}
        with pytest.raises(ShapeMismatchError, match="policy 'policy_1' -> 'newcomer'"):
            algo.load_policy(path, policy_id="newcomer")
        from rllib_ext.live.seam.backends import backend_for

        assert "newcomer" not in backend_for(algo).ids()
        assert "newcomer" not in algo.config.policies
        on_runner = algo.env_runner_group.foreach_env_runner(
            (lambda er: "newcomer" in er.module) if stack == "new" else (lambda er: "newcomer" in er.policy_map),
            local_env_runner=False,
        )
        assert on_runner == [False]
        for pid, w in before.items():
            for name in w:
                np.testing.assert_array_equal(live_weights(algo, pid)[name], w[name], err_msg=f"{pid}/{name}")
        algo.train()  # still trains with its own three policies
    finally:
        algo.stop()


@pytest.mark.parametrize("stack", STACKS)
def test_extracted_policy_builds_and_acts_like_the_checkpoint(stored, tmp_path, stack):
    """extract records the class name the checkpoint names (no module path): build_policy
    rebuilds the stored algorithm's default class of that name."""
    from rllib_ext import extract_policy

    path, saved = stored(stack)
    out = extract_policy(path, "policy_1", tmp_path / "p1")
    loaded = rllib_ext.build_policy(out)
    assert_weights_equal(loaded.weights, saved["policy_1"], "extracted", ordered=False)
    obs = np.random.default_rng(0).uniform(-1, 1, (20, 4)).astype(np.float32)
    assert all(loaded.action_space.contains(loaded.compute_action(o)) for o in obs)


class _Recorded(Exception):
    pass


def _crafted_policy_dir(tmp_path, stack: str, policy_class: str) -> str:
    """A well-formed policy directory whose policy.json names ``policy_class``."""
    import gymnasium as gym

    from rllib_ext.checkpoint.policy_file import write_policy_dir
    from rllib_ext.checkpoint.spaces import space_from_object

    meta = {
        "stack": stack, "framework": "torch", "algorithm_class": "PPO", "policy_class": policy_class,
        "observation_space": space_from_object(gym.spaces.Box(-1.0, 1.0, (4,), np.float32), "p"),
        "action_space": space_from_object(gym.spaces.Discrete(2), "p"),
    }
    return write_policy_dir(tmp_path / f"crafted_{stack}", "p", {"w": np.zeros(2, np.float32)}, meta)


@pytest.mark.parametrize("stack", STACKS)
@pytest.mark.parametrize("kind", ["function", "plain class", "other stack's class"])
def test_build_policy_refuses_a_policy_class_that_is_not_one_before_calling_it(tmp_path, monkeypatch, stack, kind):
    """policy.json's policy_class is imported (under ray.rllib.) and then called with data from
    the file: anything that is not an RLModule (new stack) / Policy (old stack) subclass is
    refused with a typed error naming it, and the target is never called."""
    import ray.rllib.core.rl_module.rl_module as rl_module_module
    import ray.rllib.policy.policy as policy_module
    import ray.rllib.policy.sample_batch as sample_batch_module
    import ray.rllib.utils.numpy as numpy_module
    from ray.rllib.core.rl_module.rl_module import RLModule
    from ray.rllib.policy.policy import Policy

    from rllib_ext import CheckpointFormatError, PolicyClassError

    calls = []

    def recording_function(*args, **kwargs):
        calls.append(args)
        raise _Recorded

    class Recording:  # calling it records
        def __init__(self, *args, **kwargs):
            calls.append(args)
            raise _Recorded

    # Real names under ray.rllib., each patched to record a call: a function, a class that is
    # no policy, and the other stack's policy base (a Policy is no RLModule, and back).
    module, attr, stand_in = {
        "function": (numpy_module, "convert_to_numpy", recording_function),
        "plain class": (sample_batch_module, "SampleBatch", Recording),
        "other stack's class": {
            "new": (policy_module, "Policy", type("RecordingPolicy", (Recording, Policy), {})),
            "old": (rl_module_module, "RLModule", type("RecordingModule", (Recording, RLModule), {})),
        }[stack],
    }[kind]
    monkeypatch.setattr(module, attr, stand_in)
    name = f"{module.__name__}.{attr}"
    path = _crafted_policy_dir(tmp_path, stack, name)

    with pytest.raises(PolicyClassError, match=re.escape(f"policy_class {name!r} is a")) as info:
        rllib_ext.build_policy(path)
    base = {"new": "RLModule", "old": "Policy"}[stack]
    assert f"not a subclass of {base}" in str(info.value)
    assert isinstance(info.value, CheckpointFormatError)
    assert calls == []


TUNE = [pytest.param("tune-new", marks=pytest.mark.stack("new")),
        pytest.param("tune-old", marks=[pytest.mark.stack("old"), pytest.mark.torch_only]),
        pytest.param("tune-partial-new", marks=pytest.mark.stack("new")),
        pytest.param("tune-partial-old", marks=[pytest.mark.stack("old"), pytest.mark.torch_only])]


@pytest.mark.parametrize("name", TUNE)
def test_policy_extracted_from_a_tune_trial_builds_and_acts_like_the_checkpoint(tmp_path, name):
    """A Tune trial's algorithm class is stored by value; extract still records the RLlib
    algorithm ('PPO', also for a PPOPartial trial), whose default class build_policy rebuilds.
    The committed checkpoint was written by tune.run (tests/fixtures/make_current.py)."""
    from rllib_ext import NumpyPolicy, extract_policy, inspect, read_policy_dir

    path, saved = stored_checkpoint(name)
    out = extract_policy(path, "policy_0", tmp_path / "p0")
    assert read_policy_dir(out)[0]["algorithm_class"] == "PPO" == inspect(path).algorithm_base
    loaded = rllib_ext.build_policy(out)
    assert_weights_equal(loaded.weights, saved["policy_0"], "extracted", ordered=False)
    obs = np.random.default_rng(0).uniform(-4, 4, (200, 4)).astype(np.float32)
    want, _ = NumpyPolicy.from_checkpoint(path, "policy_0").compute_actions(obs)
    got = np.array([loaded.compute_action(o) for o in obs])
    np.testing.assert_array_equal(got, want)
    assert len(set(want.tolist())) == 2  # both actions occur: the comparison can fail
