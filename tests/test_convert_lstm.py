"""The old stack's LSTM wrapper becomes a new-stack LSTM module that computes the same.

8 sequences of 20 random raw observations, state carried on both sides: the old policy one
step at a time (``compute_actions`` with its state outputs fed back), the new module both
over the whole sequence in one call and one step at a time (its ``state_out`` fed back).
Action-distribution inputs, values and the final LSTM state must agree within 1e-5.
"""

from __future__ import annotations

import re

import numpy as np
import pytest

from builders import assert_weights_equal, live_weights, max_diffs, new_outputs, old_outputs, ppo_config, remote_outputs

from rllib_ext import PPOPartialConfig
from rllib_ext.convert.mapping import convert_policy
from rllib_ext.errors import MigrationError
from rllib_ext.live.restore.migration import migrate

B, T, CELL = 8, 20, 16
LSTM = {"fcnet_hiddens": [8, 8], "use_lstm": True, "lstm_cell_size": CELL, "max_seq_len": T}
TOL = 1e-5
pytestmark = pytest.mark.torch_only  # tf2 LSTM sources are refused (see test_model_families)


@pytest.fixture(scope="module")
def lstm_run(ray_session, tmp_path_factory):
    """An old-stack PPO with the LSTM wrapper (vf_share_layers=False: PPO's old default),
    trained one iteration, saved; and its outputs on B x T observations, state carried."""
    path = str(tmp_path_factory.mktemp("old_lstm"))
    algo = ppo_config("old", obs_dims=(4, 4)).training(model=dict(LSTM, vf_share_layers=False)).build_algo()
    try:
        algo.train()
        algo.save(path)
        obs = np.random.default_rng(3).uniform(-1, 1, (B, T, 4)).astype(np.float32)
        policy = algo.get_policy("policy_0")
        state = [np.tile(np.asarray(s)[None], (B, 1)) for s in policy.get_initial_state()]
        logits, values = [], []
        for t in range(T):
            (lg, vf), state = old_outputs(policy, obs[:, t], state=state)
            logits.append(lg)
            values.append(vf)
        want = (np.stack(logits, axis=1), np.stack(values, axis=1))
    finally:
        algo.stop()
    return path, obs, want, state


def zero_state():
    return {"h": np.zeros((B, 1, CELL), np.float32), "c": np.zeros((B, 1, CELL), np.float32)}


def stepwise(module, obs):
    state, logits, values = zero_state(), [], []
    for t in range(T):
        (lg, vf), state = new_outputs(module, obs[:, t:t + 1], state=state)
        logits.append(lg[:, 0])
        values.append(vf[:, 0])
    return (np.stack(logits, axis=1), np.stack(values, axis=1)), state


def assert_same_as_old(module, obs, want, final_state, what):
    (whole, state) = new_outputs(module, obs, state=zero_state())
    assert max(max_diffs(want, whole, f"{what}, whole sequences")) < TOL
    steps, state = stepwise(module, obs)
    assert max(max_diffs(want, steps, f"{what}, step by step")) < TOL
    for k, old in zip(("h", "c"), final_state):
        assert float(np.max(np.abs(state[k][:, 0] - old))) < TOL, k


@pytest.mark.stack("old")
def test_migrate_lstm_module_computes_what_the_old_policy_did(lstm_run, tmp_path):
    from ray.rllib.core.rl_module.multi_rl_module import MultiRLModule

    path, obs, want, final_state = lstm_run

    report = migrate(path, tmp_path / "new", policies=["policy_0"])

    assert report.model_configs["policy_0"] == dict(LSTM, fcnet_activation="tanh", vf_share_layers=True)
    assert any(n.startswith("_value_branch_separate") for n in report.policies["policy_0"].not_carried)
    module = MultiRLModule.from_checkpoint(str(tmp_path / "new"))["policy_0"]
    assert module.model_config["max_seq_len"] == T
    assert_same_as_old(module, obs, want, final_state, "LSTM migrate")


@pytest.mark.stack("old")
def test_restore_lstm_into_new_stack_algorithm_learner_and_remote_runner(lstm_run):
    path, obs, want, _ = lstm_run
    cfg = ppo_config("new", obs_dims=(4, 4), num_env_runners=1, config_cls=PPOPartialConfig)
    algo = cfg.rl_module(model_config=dict(LSTM, vf_share_layers=True)).build_algo()
    try:
        learner_module = algo.learner_group._learner.module["policy_0"]
        fresh = new_outputs(learner_module, obs, state=zero_state())[0]
        assert max_diffs(want, fresh, "fresh (negative control)")[0] > 1e-3

        algo.restore(path, policies=["policy_0"])

        whole, _ = new_outputs(algo.learner_group._learner.module["policy_0"], obs, state=zero_state())
        assert max(max_diffs(want, whole, "LSTM learner")) < TOL
        remote = remote_outputs(algo, "policy_0", obs, state=zero_state())
        assert max_diffs(want, (remote[0], None), "LSTM remote runner")[0] < TOL
        algo.train()
    finally:
        algo.stop()


@pytest.mark.stack("old")
def test_restore_lstm_into_a_separate_value_lstm_is_refused_with_the_config_to_use(lstm_run):
    path, _, _, _ = lstm_run
    cfg = ppo_config("new", obs_dims=(4, 4), config_cls=PPOPartialConfig)
    algo = cfg.rl_module(model_config=dict(LSTM, vf_share_layers=False)).build_algo()
    try:
        before = live_weights(algo, "policy_0")
        with pytest.raises(MigrationError, match=re.escape(
            "policy 'policy_0': the checkpoint's model is an LSTM wrapper around FullyConnectedNetwork, "
            "fcnet_hiddens=[8, 8], fcnet_activation='tanh', lstm_cell_size=16, max_seq_len=20 but the "
            "algorithm's module has vf_share_layers=False (a second LSTM for the value function; the old wrapper "
            "shares one); configure the new stack with config.rl_module(model_config={'fcnet_hiddens': [8, 8], "
            "'fcnet_activation': 'tanh', 'use_lstm': True, 'lstm_cell_size': 16, 'max_seq_len': 20, "
            "'vf_share_layers': True})"
        )):
            algo.restore(path, policies=["policy_0"])
        assert_weights_equal(live_weights(algo, "policy_0"), before, "after the refused restore", ordered=False)
    finally:
        algo.stop()


# ---------------------------------------------------------------- the table alone (numpy only)


def test_convert_lstm_prev_action_is_refused_with_the_tensors_listed():
    src = {"lstm.weight_ih_l0": np.zeros((64, 10), np.float32)}
    target = {"encoder.encoder.lstm.weight_ih_l0": np.zeros((64, 8), np.float32)}
    with pytest.raises(MigrationError) as err:
        convert_policy("policy 'p'", src, target, dict(LSTM, lstm_use_prev_action=True), None)
    assert str(err.value).startswith(
        "policy 'p': cannot map the old-stack model onto the target module (lstm_use_prev_action=True (the old "
        "wrapper feeds it to the LSTM after the fully connected layers; the new stack's connector adds it to "
        "the observation, before them)); pass mapping="
    )
    assert "source tensors with no mapped target: lstm.weight_ih_l0 (64, 10)" in str(err.value)
