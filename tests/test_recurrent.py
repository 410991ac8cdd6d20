"""Recurrent policies act with their state carried: lightweight algorithms, policy files.

Source: a 3-policy PPO with an LSTM (new stack: ``use_lstm``; old stack: the
``LSTMWrapper``), trained one iteration and saved. Reference: the source's own
action-distribution inputs on 16 sequences of 20 raw observations, state carried step by
step through RLlib's own inference path (new stack: the env runner's module,
``forward_inference`` with ``state_in``/``state_out``; old stack: ``compute_single_action``
with ``state=``). What is restored must reproduce them within 1e-6 with the state carried
by our ``act``/``compute_action`` API; the negative control resets the state every step
and must differ by more than 1e-3.
"""

from __future__ import annotations

import numpy as np
import pytest

from builders import STACKS, gap, ppo_config, train_then_save

import rllib_ext
from rllib_ext import PPOPartial, PPOPartialConfig
from rllib_ext.errors import RecurrentStateError

TOL = 1e-6
NEGATIVE = 1e-3
SEQS, STEPS = 16, 20
OBS = np.random.default_rng(3).uniform(-1, 1, size=(SEQS, STEPS, 4)).astype(np.float32)


def lstm_config(stack: str, **kw):
    cfg = ppo_config(stack, num_env_runners=0, **kw)
    if stack == "old":
        return cfg.training(model={"fcnet_hiddens": [8], "use_lstm": True, "lstm_cell_size": 8, "max_seq_len": 20})
    return cfg.rl_module(model_config={"fcnet_hiddens": [8], "use_lstm": True, "lstm_cell_size": 8, "max_seq_len": 20})


def step_dist_inputs(step, initial, carry: bool = True) -> np.ndarray:
    """``step(obs, state) -> (dist inputs, next state)`` over every sequence; [SEQS, STEPS, n]."""
    out = []
    for seq in OBS:
        state, row = initial(), []
        for obs in seq:
            logits, nxt = step(obs, state)
            row.append(np.asarray(logits, dtype=np.float64).reshape(-1))
            state = nxt if carry else initial()
        out.append(row)
    return np.array(out)


def algo_stepper(algo, pid: str):
    """RLlib's own one-step inference with state, and the initial state, for ``pid``."""
    if not algo.config.enable_rl_module_and_learner:
        policy = algo.get_policy(pid)

        def step(obs, state):
            _, nxt, info = policy.compute_single_action(obs, state=state, explore=False)
            return info["action_dist_inputs"], nxt

        return step, policy.get_initial_state
    import torch
    import tree

    module = algo.env_runner_group.local_env_runner.module[pid]

    def step(obs, state):
        batch = {"obs": torch.as_tensor(obs[None, None]), "state_in": tree.map_structure(lambda v: torch.as_tensor(v)[None], state)}
        with torch.no_grad():
            out = module.forward_inference(batch)
        return out["action_dist_inputs"][0, 0].numpy(), tree.map_structure(lambda v: v[0].numpy(), out["state_out"])

    def initial():
        return tree.map_structure(np.asarray, module.get_initial_state())

    return step, initial


@pytest.fixture(scope="module")
def source(ray_session, tmp_path_factory):
    cache = {}

    def get(stack: str):
        if stack not in cache:
            path = str(tmp_path_factory.mktemp(f"lstm_{stack}"))
            ref = train_then_save(path, lstm_config(stack), lambda algo: step_dist_inputs(*algo_stepper(algo, "policy_1")))
            cache[stack] = (path, ref)
        return cache[stack]

    return get


@pytest.mark.parametrize("stack", STACKS)
def test_lightweight_act_carries_recurrent_state(source, stack):
    path, ref = source(stack)
    assert rllib_ext.inspect(path).policies["policy_1"].recurrent is True
    algo = PPOPartial.from_checkpoint(path, lightweight=True, policies=["policy_1"])
    try:
        assert gap(step_dist_inputs(*algo_stepper(algo, "policy_1")), ref) <= TOL
        assert gap(step_dist_inputs(*algo_stepper(algo, "policy_1"), carry=False), ref) > NEGATIVE
        with pytest.raises(RecurrentStateError, match="policy 'policy_1' is recurrent: pass state=") as e:
            algo.act(OBS[0, 0], policy_id="policy_1")
        assert isinstance(e.value, ValueError) and isinstance(e.value.__cause__, RecurrentStateError)  # kept
        greedy = np.argmax(ref, axis=-1)
        for s in range(2):
            state = algo.initial_state("policy_1")
            for t in range(STEPS):
                action, state = algo.act(OBS[s, t], policy_id="policy_1", state=state)
                assert int(action) == greedy[s, t], (s, t)
    finally:
        algo.stop()


@pytest.mark.parametrize("stack", STACKS)
def test_recurrent_policy_file_round_trips_and_acts_with_state(source, tmp_path, stack):
    path, ref = source(stack)
    algo = lstm_config(stack, config_cls=PPOPartialConfig).build_algo()
    try:
        algo.restore(path, policies=["policy_1"])
        saved = algo.save_policy("policy_1", tmp_path / "p1")
        assert gap(step_dist_inputs(*algo_stepper(algo, "policy_1")), ref) <= TOL
    finally:
        algo.stop()
    loaded = rllib_ext.build_policy(saved)
    greedy = np.argmax(ref, axis=-1)
    for s in range(2):
        state = loaded.initial_state()
        assert state is not None
        for t in range(STEPS):
            action, state = loaded.compute_action(OBS[s, t], state=state)
            assert int(action) == greedy[s, t], (s, t)
