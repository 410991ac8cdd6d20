"""Partial restore on a live algorithm: exact weights, everywhere, or nothing at all."""

from __future__ import annotations

import re

import numpy as np
import pytest

from builders import (
    STACKS,
    assert_differs,
    assert_weights_equal,
    env_runner_weights,
    first_layer,
    live_weights,
    ppo_config,
    restart_remote_env_runner,
)

from rllib_ext import PolicyNotFoundError, PPOPartialConfig, ShapeMismatchError

ALL3 = ("policy_0", "policy_1", "policy_2")




def snapshot(algo, pids=ALL3):
    return {p: live_weights(algo, p) for p in pids}


def subset(weights, names):
    """The entries of a full (learner) state that an inference-only runner holds."""
    return {n: weights[n] for n in names}


@pytest.fixture
def make_algo(ray_session):
    built = []

    def make(stack, **kw):
        algo = ppo_config(stack, config_cls=PPOPartialConfig, **kw).build_algo()
        built.append(algo)
        return algo

    yield make
    for algo in built:
        algo.stop()


@pytest.mark.parametrize("stack", STACKS)
def test_restore_one_policy_equals_checkpoint_everywhere(ckpts, make_algo, stack):
    path, saved = ckpts(stack)
    # policy_2 exists in the checkpoint too, but with another observation size here.
    algo = make_algo(stack, obs_dims=(4, 4, 6), num_env_runners=1)
    before = snapshot(algo)

    report = algo.restore(path, policies=["policy_0"])

    assert report.restored == {"policy_0": "policy_0"}
    assert report.skipped == ["policy_1", "policy_2"]
    assert_weights_equal(live_weights(algo, "policy_0"), saved["policy_0"], "learner policy_0", ordered=False)
    remote = env_runner_weights(algo, "policy_0", remote=True)
    local = env_runner_weights(algo, "policy_0", remote=False)
    assert_weights_equal(remote, subset(saved["policy_0"], remote), "remote env runner policy_0", ordered=False)
    assert_weights_equal(local, subset(saved["policy_0"], local), "local env runner policy_0", ordered=False)
    assert_differs(live_weights(algo, "policy_0"), before["policy_0"], "policy_0 vs fresh")
    for pid in ("policy_1", "policy_2"):
        assert_weights_equal(live_weights(algo, pid), before[pid], f"untouched {pid}", ordered=False)
    name, shape = first_layer(stack, 6)
    assert live_weights(algo, "policy_2")[name].shape == shape


@pytest.mark.parametrize("stack", STACKS)
def test_restore_renamed_and_frozen_stays_fixed_while_others_train(ckpts, make_algo, stack):
    path, saved = ckpts(stack)
    algo = make_algo(stack, obs_dims=(4, 4, 6))
    before = snapshot(algo)

    report = algo.restore(path, policies={"policy_1": "policy_0"}, freeze=True)

    assert report.renamed == {"policy_1": "policy_0"}  # {source: target}, as asked
    assert report.frozen == ["policy_0"]
    assert_weights_equal(live_weights(algo, "policy_0"), saved["policy_1"], "renamed", ordered=False)
    algo.train()
    algo.train()
    assert_weights_equal(live_weights(algo, "policy_0"), saved["policy_1"], "frozen after train", ordered=False)
    assert_weights_equal(env_runner_weights(algo, "policy_0", remote=False),
                         subset(saved["policy_1"], env_runner_weights(algo, "policy_0", remote=False)),
                         "frozen on the env runner after train", ordered=False)
    for pid in ("policy_1", "policy_2"):
        assert_differs(live_weights(algo, pid), before[pid], f"trained {pid}")


@pytest.mark.parametrize("stack", STACKS)
def test_restore_bad_input_raises_and_changes_nothing(ckpts, make_algo, stack):
    path, _ = ckpts(stack)
    algo = make_algo(stack, obs_dims=(4, 4, 6), num_env_runners=1)
    before = snapshot(algo)
    before_remote = {p: env_runner_weights(algo, p) for p in ALL3}
    layer, shape4 = first_layer(stack, 4)
    _, shape6 = first_layer(stack, 6)

    with pytest.raises(PolicyNotFoundError, match=re.escape(
        f"policy 'polcy_1' not in {path}; available: policy_0, policy_1, policy_2 (did you mean 'policy_1'?)"
    )):
        algo.restore(path, policies=["policy_0", "polcy_1"])
    with pytest.raises(PolicyNotFoundError, match=re.escape(
        "target policy 'hero' not in the algorithm (PPOPartial); available: policy_0, policy_1, policy_2"
    )):
        algo.restore(path, policies={"policy_0": "hero"})
    # policy_0 would fit; policy_2 does not: validation comes first, so neither is set.
    with pytest.raises(ShapeMismatchError, match=re.escape(
        f"policy 'policy_2': tensor '{layer}' is {shape4} in the checkpoint but {shape6} in the algorithm"
    )):
        algo.restore(path, policies=["policy_0", "policy_2"])
    with pytest.raises(ShapeMismatchError, match=re.escape(
        f"policy 'policy_1' -> 'policy_2': tensor '{layer}' is {shape4} in the checkpoint"
    )):
        algo.restore(path, policies={"policy_1": "policy_2"})

    for pid in ALL3:
        assert_weights_equal(live_weights(algo, pid), before[pid], f"unchanged {pid}", ordered=False)
        assert_weights_equal(env_runner_weights(algo, pid), before_remote[pid],
                             f"unchanged remote {pid}", ordered=False)


@pytest.mark.parametrize("stack", STACKS)
def test_restore_without_policies_is_rllibs_full_restore_with_relative_path(
    ckpts, make_algo, stack, monkeypatch
):
    path, saved = ckpts(stack)
    algo = make_algo(stack)
    monkeypatch.chdir(path.rsplit("/", 1)[0])
    assert algo.restore(path.rsplit("/", 1)[1]) is None
    for pid in ALL3:
        assert_weights_equal(live_weights(algo, pid), saved[pid], pid, ordered=False)


@pytest.mark.parametrize("stack", STACKS)
def test_restarted_env_runner_acts_with_restored_then_trained_weights(ckpts, make_algo, stack):
    path, saved = ckpts(stack)
    algo = make_algo(stack, num_env_runners=1)
    algo.restore(path, policies=["policy_1"])
    algo.train()
    current = live_weights(algo, "policy_1")  # restored, then trained once
    assert_differs(current, saved["policy_1"], "policy_1 after one train()")
    restart_remote_env_runner(algo)
    remote = env_runner_weights(algo, "policy_1", remote=True)
    assert_weights_equal(remote, subset(current, remote), "restarted runner", ordered=False)


def test_restore_reaches_remote_learner_and_evaluation_runners(ckpts, ray_session):
    path, saved = ckpts("new")
    cfg = (
        ppo_config("new", config_cls=PPOPartialConfig)
        .learners(num_learners=1)
        .evaluation(evaluation_num_env_runners=1, evaluation_interval=1)
    )
    algo = cfg.build_algo()
    try:
        algo.restore(path, policies=["policy_2"])
        learners = algo.learner_group.foreach_learner(
            lambda l: {k: np.array(v, copy=True) for k, v in l.module["policy_2"].get_state().items()}
        )
        assert_weights_equal([r.get() for r in learners][0], saved["policy_2"], "remote learner", ordered=False)
        ev = algo.eval_env_runner_group.foreach_env_runner(
            lambda er: {k: np.array(v, copy=True) for k, v in er.module["policy_2"].get_state().items()},
            local_env_runner=False,
        )[0]
        assert_weights_equal(ev, subset(saved["policy_2"], ev), "evaluation env runner", ordered=False)
    finally:
        algo.stop()


def trained_ids(algo):
    """Per place that decides it (the learner; old stack: every env runner), the ids it would train."""
    if algo.config.enable_rl_module_and_learner:
        results = algo.learner_group.foreach_learner(lambda l: [p for p in ALL3 if l.should_module_be_updated(p)])
        return [r.get() for r in results]
    return algo.env_runner_group.foreach_env_runner(
        lambda w: [p for p in ALL3 if w.is_policy_to_train is None or w.is_policy_to_train(p)],
        local_env_runner=True,
    )


@pytest.mark.parametrize("stack", STACKS)
def test_restore_whose_freeze_fails_rolls_back_weights_and_frozen_set(ckpts, make_algo, stack, monkeypatch):
    """The freeze is part of the restore: when it fails after taking effect (injected below, once
    the new policies_to_train is set everywhere), weights, env runners and the trained set are
    all put back. (The algorithm trains once first: until then RLlib has not synced its env
    runners, and a rollback puts back the learner's weights, not a runner's unsynced ones.)"""
    from rllib_ext.live.seam.backends import backend_for

    path, saved = ckpts(stack)
    algo = make_algo(stack, num_env_runners=1)
    algo.train()
    before = snapshot(algo)
    before_remote = {p: env_runner_weights(algo, p) for p in ALL3}
    before_local = {p: env_runner_weights(algo, p, remote=False) for p in ALL3}
    assert trained_ids(algo) == [list(ALL3)] * len(trained_ids(algo))
    backend_cls = type(backend_for(algo))
    real = backend_cls.set_trainable
    seen = []

    def set_then_fail(self, value):
        real(self, value)
        if not seen:  # the freeze: it took effect, with the weights already applied
            seen.append((trained_ids(algo), live_weights(algo, "policy_0")))
            raise RuntimeError("injected: freeze failed")

    monkeypatch.setattr(backend_cls, "set_trainable", set_then_fail)
    with pytest.raises(RuntimeError, match="injected: freeze failed"):
        algo.restore(path, policies=["policy_0", "policy_1"], freeze=True)

    frozen_then, applied_then = seen[0]
    assert all(ids == ["policy_2"] for ids in frozen_then), frozen_then  # the freeze had happened
    assert_weights_equal(applied_then, saved["policy_0"], "applied before the freeze", ordered=False)
    assert all(ids == list(ALL3) for ids in trained_ids(algo)), trained_ids(algo)
    for pid in ALL3:
        assert_weights_equal(live_weights(algo, pid), before[pid], f"learner {pid}", ordered=False)
        assert_weights_equal(env_runner_weights(algo, pid), before_remote[pid], f"remote {pid}", ordered=False)
        assert_weights_equal(env_runner_weights(algo, pid, remote=False), before_local[pid],
                             f"local env runner {pid}", ordered=False)


@pytest.mark.parametrize(
    "policies,message",
    [("policy_0", "policies must be a list or a dict of ids, not the string 'policy_0'"),
     ([], "policies is empty: name at least one policy to restore"),
     ({"policy_0": "hero", "policy_1": "hero"}, "several checkpoint policies map to the same target id(s): hero")],
    ids=["string", "empty", "two-onto-one"],
)
def test_a_selection_that_does_not_fit_is_a_typed_error(policies, message):
    from rllib_ext.errors import CheckpointError, InvalidArgumentError
    from rllib_ext.live.restore.policies import normalize_selection

    with pytest.raises(InvalidArgumentError, match=f"^{re.escape(message)}$") as e:
        normalize_selection(policies)
    assert isinstance(e.value, CheckpointError) and isinstance(e.value, ValueError)
    assert isinstance(e.value, TypeError)  # the string case raised TypeError before: old except clauses still catch
