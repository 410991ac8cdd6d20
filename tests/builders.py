"""Tiny multi-agent configs and checkpoints, shared by the tests (and benches).

Everything is sized for a 2-core CI box: 8-unit layers, 200-step batches, one epoch.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from typing import Dict, Iterable, Optional, Sequence

from collections import OrderedDict

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
STACKS = ("new", "old")
POLICIES3 = ("policy_0", "policy_1", "policy_2")
MODULES_DIR = "learner_group/learner/rl_module"  # a new-stack checkpoint's RLModule directory
FRAMEWORKS = ("ray", "torch", "tensorflow")


def framework_for_cell() -> str:
    """'tf2' in the tf2-old tox cell, else 'torch'."""
    return os.environ.get("RLLIB_EXT_FRAMEWORK", "torch")


def ppo_config(
    stack: str = "new",
    obs_dims: Sequence[int] = (4, 4, 4),
    policies: Optional[Iterable[str]] = None,
    framework: Optional[str] = None,
    num_env_runners: int = 0,
    hiddens: Sequence[int] = (8, 8),
    config_cls=None,
):
    """A PPO(-Partial) config on SignGame: agent_<i> -> policy_<i> unless ``policies`` differ."""
    from ray.rllib.algorithms.ppo import PPOConfig

    from rllib_ext.envs import SignGame, agent_to_policy

    cls = config_cls or PPOConfig
    framework = framework or ("torch" if stack == "new" else framework_for_cell())
    pols = set(policies) if policies is not None else {f"policy_{i}" for i in range(len(obs_dims))}
    cfg = (
        cls()
        .environment(SignGame, env_config={"obs_dims": list(obs_dims), "episode_len": 10})
        .framework(framework)
        .env_runners(num_env_runners=num_env_runners, rollout_fragment_length="auto")
        .training(train_batch_size=200, minibatch_size=50, num_epochs=1, lr=1e-3)
        .multi_agent(policies=pols, policy_mapping_fn=agent_to_policy)
        .debugging(seed=0)
    )
    if stack == "old":
        cfg = cfg.api_stack(
            enable_rl_module_and_learner=False, enable_env_runner_and_connector_v2=False
        ).training(model={"fcnet_hiddens": list(hiddens)})
    else:
        cfg = cfg.rl_module(model_config={"fcnet_hiddens": list(hiddens)})
    return cfg


def async_config(algo: str = "APPO", num_env_runners: int = 1, partial: bool = True):
    """:func:`ppo_config` (new stack) on APPO or IMPALA: a learner thread, RLlib's default remote learner."""
    import rllib_ext

    if partial:
        cls = getattr(rllib_ext, f"{algo}PartialConfig")
    else:
        from ray.rllib.algorithms.registry import ALGORITHMS

        cls = type(ALGORITHMS[algo]()[0].get_default_config())
    return (
        ppo_config("new", num_env_runners=num_env_runners, config_cls=cls)
        .env_runners(rollout_fragment_length=50)  # no "auto" fragments for APPO/IMPALA
        .resources(num_gpus=0)
        .reporting(min_time_s_per_iteration=2)  # IMPALA's default: 10 s per train()
    )


def first_layer(stack: str, obs_dim: int) -> "tuple[str, tuple]":
    """Name and shape of the first actor layer's weight for an ``obs_dim``-float input."""
    if stack == "new":
        return "encoder.actor_encoder.net.mlp.0.weight", (8, obs_dim)
    if framework_for_cell() == "tf2":
        return "0", (obs_dim, 8)  # fc_1/kernel: tf kernels are [in, out]
    return "_hidden_layers.0._model.0.weight", (8, obs_dim)


def live_weights(algo, policy_id: str) -> Dict[str, np.ndarray]:
    """RLlib's own getter for one policy, copied (torch's .numpy() shares memory)."""
    if algo.config.enable_rl_module_and_learner:
        w = algo.learner_group.get_weights(module_ids=[policy_id])[policy_id]
    else:
        w = algo.get_policy(policy_id).get_weights()
        if isinstance(w, (list, tuple)):
            w = {str(i): v for i, v in enumerate(w)}
    return {k: np.array(v, copy=True) for k, v in w.items()}


def assert_weights_equal(got, want, label="", ordered: bool = True):
    """Same tensor names, same shapes and dtypes (any byte order), equal values.

    ``ordered=False`` compares the names as a set: for getters whose order is not part of
    what the test checks (a live algorithm's weights against a checkpoint's, say).
    """
    if ordered:
        assert list(got) == list(want), label
    else:
        assert sorted(got) == sorted(want), label
    for name in want:
        assert got[name].shape == want[name].shape, f"{label}/{name}"
        assert got[name].dtype.newbyteorder("=") == want[name].dtype.newbyteorder("="), f"{label}/{name}"
        np.testing.assert_array_equal(got[name], want[name], err_msg=f"{label}/{name}")


def assert_differs(got, want, label=""):
    """At least one tensor differs (e.g. training changed the policy)."""
    assert any(not np.array_equal(got[n], want[n]) for n in want), f"{label}: no tensor changed"


def env_runner_weights(algo, policy_id: str, remote: bool = True) -> Dict[str, np.ndarray]:
    """Weights as the (first remote, else local) env runner acting for ``policy_id`` sees them."""
    group = algo.env_runner_group
    new = algo.config.enable_env_runner_and_connector_v2

    def get(er):
        if new:
            st = er.module[policy_id].get_state()
        else:
            st = er.get_policy(policy_id).get_weights()
            if isinstance(st, (list, tuple)):
                st = {str(i): v for i, v in enumerate(st)}
        return {k: np.array(v, copy=True) for k, v in st.items()}

    if remote and group.num_remote_env_runners() > 0:
        [result] = list(group._worker_manager.foreach_actor(get, healthy_only=False))[:1]
        return result.get()  # raises the remote error instead of dropping it
    return get(group.local_env_runner)


def build_checkpoint(path: str, stack: str, train_iters: int = 1, **kw) -> Dict[str, Dict[str, np.ndarray]]:
    """Train a tiny 3-policy PPO, save it to ``path``; return each policy's saved weights."""
    algo = ppo_config(stack, **kw).build_algo()
    try:
        for _ in range(train_iters):
            algo.train()
        algo.save(path)
        return {pid: live_weights(algo, pid) for pid in sorted(algo.config.policies)}
    finally:
        algo.stop()


def assert_imports_no_framework(code: str, forbidden: Sequence[str] = FRAMEWORKS, extra: Sequence[str] = ()):
    """Run ``code`` in a fresh interpreter; fail if it left any ``forbidden``/``extra`` module imported.

    A fresh process because this one has imported them all already. PYTHONPATH puts this
    checkout first, so the package under test is imported, not an installed copy.
    Returns the finished process (its stdout and stderr), for callers that check more.
    """
    names = tuple(forbidden) + tuple(extra)
    check = (
        "\nimport json as _json, sys as _sys\n"
        f"_bad = sorted(m for m in _sys.modules if m.split('.')[0] in {names!r})\n"
        "print('imported modules: ' + _json.dumps(_bad), file=_sys.stderr)\n"
        "_sys.exit(3 if _bad else 0)\n"
    )
    path = os.pathsep.join(p for p in (ROOT, os.environ.get("PYTHONPATH")) if p)
    res = subprocess.run([sys.executable, "-c", code + check], capture_output=True, text=True,
                         env=dict(os.environ, PYTHONPATH=path))
    lines = [ln for ln in res.stderr.splitlines() if ln.startswith("imported modules: ")]
    if res.returncode == 3 and lines:
        bad = json.loads(lines[-1][len("imported modules: "):])
        top = sorted({m.split(".")[0] for m in bad})
        raise AssertionError(
            f"the code imported {', '.join(top)} (forbidden: {', '.join(names)}); "
            f"modules: {', '.join(bad[:20])}{' ...' if len(bad) > 20 else ''}"
        )
    assert res.returncode == 0, f"the code failed (exit {res.returncode}):\n{res.stdout[-3000:]}{res.stderr[-3000:]}"
    return res


def sample_weights():
    """Tensors of every dtype and shape corner a policy file must round-trip exactly."""
    return OrderedDict(
        [
            ("pi.weight", np.arange(12, dtype=np.float32).reshape(3, 4) / 7),
            ("pi.bias", np.array([-1.5, 0.0, np.inf], dtype=np.float64)),
            ("steps", np.array(7, dtype=np.int64)),
            ("mask", np.array([[True, False]])),
            ("empty", np.zeros((0, 3), dtype=np.float16)),
            ("big_endian", np.arange(4, dtype=">i4")),
            ("a.first_name_last", np.ones(2, dtype=np.uint8)),
        ]
    )


# 1,000 raw observations around 5.0 (where a MeanStdFilter matters), for acting comparisons.
ACT_OBS = np.random.default_rng(11).normal(5.0, 1.5, size=(1000, 4)).astype(np.float32)


OFFSET = 5.0  # observations around it: an observation filter's statistics matter


def filtered_config(stack: str, num_env_runners: int = 1, with_filter: bool = True, **kw):
    """ppo_config on SignGame with observations around OFFSET, with or without a MeanStdFilter
    (old stack: ``observation_filter``, one per policy; new stack: the connector, one per agent)."""
    from rllib_ext.envs import SignGame

    cfg = ppo_config(stack, num_env_runners=num_env_runners, **kw).environment(
        SignGame, env_config={"obs_dims": [4, 4, 4], "episode_len": 10, "obs_offset": OFFSET}
    )
    if not with_filter:
        return cfg
    if stack == "old":
        return cfg.env_runners(observation_filter="MeanStdFilter")
    return cfg.env_runners(env_to_module_connector=mean_std_connector)


def mean_std_connector(env=None, spaces=None, device=None):
    """The new stack's MeanStdFilter connector, per agent (RLlib's default clip of 10)."""
    from ray.rllib.connectors.env_to_module import MeanStdFilter

    return MeanStdFilter(multi_agent=True)


def unclipped_connector(env=None, spaces=None, device=None):
    """The MeanStdFilter connector without clipping, as old-stack filters filter."""
    from ray.rllib.connectors.env_to_module import MeanStdFilter

    return MeanStdFilter(multi_agent=True, clip_by_value=float("inf"))


def runner_dist_inputs(er, policy_id: str, agent_id: str, obs: np.ndarray) -> np.ndarray:
    """RLlib's own acting path on one env runner for raw ``obs``: its filter, then the policy.

    New stack: the MeanStdFilter connector's statistics of ``agent_id``, then the module's
    ``forward_inference``; old stack: the worker's filter of ``policy_id``, then
    ``compute_actions``. Returns the action-distribution inputs (float64).
    """
    if hasattr(er, "policy_map"):
        filtered = er.filters[policy_id](obs, update=False)
        _, _, info = er.policy_map[policy_id].compute_actions(filtered, explore=False)
        return np.asarray(info["action_dist_inputs"], dtype=np.float64)
    import torch

    conn = next((c for c in er._env_to_module.connectors if type(c).__name__ == "MeanStdFilter"), None)
    if conn is not None and conn._filters is None:  # never called yet: fresh statistics
        conn.get_state()
    filtered = obs if conn is None else conn._filters[agent_id](obs, update=False)
    with torch.no_grad():
        out = er.module[policy_id].forward_inference({"obs": torch.as_tensor(np.asarray(filtered, dtype=np.float32))})
    return out["action_dist_inputs"].numpy().astype(np.float64)


def rllib_dist_inputs(algo, policy_id: str, agent_id: str, obs: np.ndarray) -> np.ndarray:
    """:func:`runner_dist_inputs` on the algorithm's local env runner."""
    return runner_dist_inputs(algo.env_runner_group.local_env_runner, policy_id, agent_id, obs)


def restart_remote_env_runner(algo, timeout: float = 90.0) -> None:
    """Kill the algorithm's one remote env runner and wait until RLlib has restarted and
    re-synced it (a new process), as ``Algorithm.training_step`` does after a failure."""
    import os
    import time

    import pytest
    import ray

    group = algo.env_runner_group
    [actor_id] = group.healthy_env_runner_ids()

    def remote_pid():
        [r] = group._worker_manager.foreach_actor(lambda er: os.getpid(), healthy_only=False)
        return r.get() if r.ok else None

    old_pid = remote_pid()
    ray.kill(group._worker_manager._actors[actor_id], no_restart=False)
    deadline = time.time() + timeout
    while time.time() < deadline:
        time.sleep(0.5)
        group._worker_manager.set_actor_state(actor_id, healthy=False)  # probe, and sync the restored
        if algo.restore_env_runners(group) == [actor_id] and remote_pid() not in (None, old_pid):
            return
    pytest.fail(f"the killed env runner did not come back within {timeout:.0f} s")


# ---------------------------------------------------------------- old policy vs new module, same raw observations


def tolerance() -> float:
    """1e-4 when the old policies are tf2 (the tf2-old cell), else 1e-5."""
    return 1e-4 if framework_for_cell() == "tf2" else 1e-5


def old_outputs(policy, obs, state=None):
    """The old policy's action-distribution inputs and value predictions (no exploration);
    with ``state`` (a recurrent policy's state batches) also its state outputs."""
    _, state_out, extra = policy.compute_actions(obs, state_batches=state, explore=False)
    out = (np.array(extra["action_dist_inputs"], copy=True), np.array(extra["vf_preds"], copy=True))
    return out if state is None else (out, [np.array(s, copy=True) for s in state_out])


def new_outputs(module, obs, values=True, state=None):
    """A new-stack module's action-distribution inputs and values; ``state`` (``{"h", "c"}``
    arrays) for recurrent modules, whose ``obs`` is ``[batch, time, ...]``."""
    import torch

    batch = {"obs": torch.from_numpy(np.asarray(obs))}
    if state is not None:
        batch["state_in"] = {k: torch.from_numpy(np.asarray(v)) for k, v in state.items()}
    with torch.no_grad():
        out = module.forward_inference(batch)
        logits = out["action_dist_inputs"].numpy()
        vf = module.compute_values(batch).numpy() if values else None
    result = (np.array(logits, copy=True), (None if vf is None else np.array(vf, copy=True)))
    if state is None:
        return result
    return result, {k: v.numpy().copy() for k, v in out["state_out"].items()}


def remote_outputs(algo, policy_id, obs, state=None):
    """:func:`new_outputs` (logits only) on the first remote env runner's inference module."""
    def run(er, _pid=policy_id, _obs=obs, _state=state):
        from builders import new_outputs as outputs

        res = outputs(er.module[_pid], _obs, values=False, state=_state)
        return res if _state is None else res[0]

    [res] = algo.env_runner_group.foreach_env_runner(run, local_env_runner=False)[:1]
    return res


def max_diffs(want, got, what=""):
    """max |diff| of logits and values; printed, so ``pytest -s`` shows the measured tolerance."""
    d_logits = float(np.max(np.abs(want[0] - got[0])))
    d_values = float(np.max(np.abs(want[1] - got[1]))) if got[1] is not None else 0.0
    print(f"max|Δ| logits {d_logits:.3g}, values {d_values:.3g} ({framework_for_cell()} -> torch) {what}")
    return d_logits, d_values


def learner_outputs(algo, policy_id, obs, state=None):
    """:func:`new_outputs` on the (first) learner's module, local or remote (APPO/IMPALA learners are remote)."""
    def run(learner, _pid=policy_id, _obs=obs, _state=state):
        from builders import new_outputs as outputs

        res = outputs(learner.module[_pid], _obs, state=_state)
        return res if _state is None else res[0]

    return [r.get() for r in algo.learner_group.foreach_learner(run)][0]


def gap(a, b) -> float:
    """max |a - b| of two outputs; printed, so ``pytest -s`` shows each measured figure."""
    value = float(np.max(np.abs(np.asarray(a) - np.asarray(b))))
    print(f"max|Δ| {value:.3g}")
    return value
