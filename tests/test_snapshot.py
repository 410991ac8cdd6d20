"""algo.snapshot_policy: a pool entry that holds the live policy as it was, and acts like it elsewhere."""

from __future__ import annotations

import numpy as np
import pytest

from builders import (
    ACT_OBS, STACKS, assert_differs, assert_weights_equal, filtered_config, live_weights, rllib_dist_inputs,
)

from rllib_ext import PolicyNotFoundError, PolicyPool, PPOPartialConfig, read_weights


@pytest.mark.parametrize("stack", STACKS)
def test_snapshot_holds_the_live_policy_and_loads_into_another_algorithm(ray_session, tmp_path, stack):
    pool = PolicyPool(tmp_path / "pool", writer="trial_a")
    algo = filtered_config(stack, num_env_runners=0, config_cls=PPOPartialConfig).build_algo()
    try:
        first = algo.train()
        entry = algo.snapshot_policy("policy_1", pool)
        at_snapshot = live_weights(algo, "policy_1")
        want = rllib_dist_inputs(algo, "policy_1", "agent_1", ACT_OBS)  # filter + policy, RLlib's own path
        result = algo.train()  # the live policy moves on; the snapshot must not
        assert_differs(live_weights(algo, "policy_1"), at_snapshot, "trained after the snapshot")
        with pytest.raises(PolicyNotFoundError, match="policy 'policy_9' not in the algorithm"):
            algo.snapshot_policy("policy_9", pool)
    finally:
        algo.stop()
    assert [e.id for e in pool.entries()] == [entry.id] == ["policy_1-0000@trial_a"]
    assert (entry.policy, entry.iteration, entry.writer) == ("policy_1", 1, "trial_a")
    assert 0 < entry.env_steps == first["num_env_steps_sampled_lifetime"] < result["num_env_steps_sampled_lifetime"]
    assert_weights_equal(read_weights(entry.path), at_snapshot, "snapshot vs live at that moment", ordered=False)

    other = filtered_config(stack, num_env_runners=0, config_cls=PPOPartialConfig).debugging(seed=7).build_algo()
    try:
        before = rllib_dist_inputs(other, "policy_1", "agent_1", ACT_OBS)
        other.load_policy(entry.path, "policy_1", filters=False)
        weights_only = rllib_dist_inputs(other, "policy_1", "agent_1", ACT_OBS)
        other.load_policy(entry.path, "policy_1")
        got = rllib_dist_inputs(other, "policy_1", "agent_1", ACT_OBS)
    finally:
        other.stop()
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-5)
    # Negative controls: a fresh policy, and the snapshot's weights without its filter, act otherwise.
    assert np.abs(before - want).max() > 1e-2
    assert np.abs(weights_only - want).max() > 1e-2


@pytest.mark.slow
def test_snapshots_in_a_tune_sweep_say_which_trial_wrote_them(ray_session, tmp_path):
    """Two trials share one pool path; each writes as its trial id, in its own namespace."""
    from ray import tune

    from builders import ppo_config
    from tune_callbacks import SnapshotEachResult

    config = (ppo_config("new", config_cls=PPOPartialConfig).callbacks(SnapshotEachResult)
              .environment(env_config={"obs_dims": [4, 4, 4], "episode_len": 10, "pool": str(tmp_path / "pool")}))
    analysis = tune.run("PPOPartial", config=config, num_samples=2, stop={"training_iteration": 2},
                        storage_path=str(tmp_path / "tune"), verbose=0, raise_on_failed_trial=True)
    entries = PolicyPool(tmp_path / "pool").entries()
    trials = sorted(t.trial_id for t in analysis.trials)
    assert sorted({e.writer for e in entries}) == trials
    assert sorted(e.id for e in entries) == sorted(f"policy_1-000{n}@{t}" for t in trials for n in (0, 1))
    assert sorted((e.writer, e.iteration) for e in entries) == [(t, i) for t in trials for i in (1, 2)]
