"""Tiny multi-agent configs and checkpoints, shared by the tests (and benches).

Everything is sized for a 2-core CI box: 8-unit layers, 200-step batches, one epoch.
"""

from __future__ import annotations

import ast
import functools
import json
import os
import subprocess
import sys
from typing import Any, Dict, Iterable, List, Optional, Sequence, Tuple

from collections import OrderedDict

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
STACKS = ("new", "old")
POLICIES3 = ("policy_0", "policy_1", "policy_2")
MODULES_DIR = "learner_group/learner/rl_module"  # a new-stack checkpoint's RLModule directory
FRAMEWORKS = ("ray", "torch", "tensorflow")


def ray_release() -> "tuple[int, int]":
    """The installed Ray as (major, minor), e.g. (2, 45) in the torch-ray245 cell."""
    from importlib import metadata

    major, minor = metadata.version("ray").split(".")[:2]
    return int(major), int(minor)


def framework_for_cell() -> str:
    """'tf2' in the tf2-old tox cell, else 'torch'."""
    return os.environ.get("RLLIB_EXT_FRAMEWORK", "torch")


# ---------------------------------------------------------------- committed checkpoints (no Ray)
STORED = os.path.join(ROOT, "tests", "fixtures", "current")  # made by tests/fixtures/make_current.py


@functools.lru_cache(maxsize=None)
def stored_checkpoint(name: str) -> Tuple[str, Dict[str, Dict[str, np.ndarray]]]:
    """A committed checkpoint and each policy's weights as RLlib's getter returned them.

    ``name`` is a directory of ``tests/fixtures/current`` (see make_current.py there).
    The arrays are shared between callers: copy before changing one.
    """
    base = os.path.join(STORED, name)
    expected: Dict[str, Dict[str, np.ndarray]] = {}
    with np.load(os.path.join(base, "expected.npz"), allow_pickle=False) as z:
        for key in z.files:  # in the getter's order
            pid, tensor = key.split("/", 1)
            expected.setdefault(pid, OrderedDict())[tensor] = z[key]
    return os.path.join(base, "checkpoint"), expected


def stored_meta(name: str) -> Dict[str, Any]:
    """meta.json of a committed checkpoint: the Ray version, stack, framework that made it."""
    with open(os.path.join(STORED, name, "meta.json")) as f:
        return json.load(f)


# Test modules that read only committed checkpoints and never import Ray (tests/test_ray_free.py).
def marked_ray_free(tests_dir: str) -> Tuple[str, ...]:
    """The test modules that say ``pytestmark = pytest.mark.ray_free`` (alone or in a list), sorted.

    Read from the source (not imported), so the list costs no import and cannot go stale.
    """
    found = []
    for name in sorted(os.listdir(tests_dir)):
        if not (name.startswith("test_") and name.endswith(".py")):
            continue
        with open(os.path.join(tests_dir, name)) as f:
            tree = ast.parse(f.read())
        for node in tree.body:
            if isinstance(node, ast.Assign) and any(getattr(t, "id", None) == "pytestmark" for t in node.targets):
                if any(isinstance(n, ast.Attribute) and n.attr == "ray_free" for n in ast.walk(node.value)):
                    found.append(name)
    return tuple(found)


# Modules that read committed checkpoints and never import Ray (tests/test_ray_free.py checks them).
RAY_FREE = marked_ray_free(os.path.join(ROOT, "tests"))


class NoRay:
    """A meta-path finder that refuses ``ray``: the import fails where it happens."""

    def find_spec(self, name, path=None, target=None):
        if name == "ray" or name.startswith("ray."):
            raise ImportError(f"a Ray-free test run imported {name!r} (see RAY_FREE in tests/builders.py)")
        return None


def stored_name(stack: str) -> str:
    """The committed 3-policy checkpoint of ``stack`` for this cell: new-torch, old-torch or old-tf2."""
    return "new-torch" if stack == "new" else f"old-{framework_for_cell()}"


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


def on_stack(cfg, stack: str, hiddens: Sequence[int] = (8,)):
    """``cfg`` on the given API stack with an MLP of ``hiddens``: the old stack's model
    config, or the new stack's RLModule config."""
    if stack == "old":
        return cfg.api_stack(enable_rl_module_and_learner=False, enable_env_runner_and_connector_v2=False).training(
            model={"fcnet_hiddens": list(hiddens)})
    return cfg.rl_module(model_config={"fcnet_hiddens": list(hiddens)})


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
    return train_then_save(path, ppo_config(stack, **kw), all_weights, train_iters)


def all_weights(algo: Any) -> Dict[str, Dict[str, np.ndarray]]:
    """``{policy id: weights}`` of every policy of a live algorithm."""
    return {pid: live_weights(algo, pid) for pid in sorted(algo.config.policies)}


def assert_imports_no_framework(code: str, forbidden: Sequence[str] = FRAMEWORKS, extra: Sequence[str] = ()):
    """Run ``code`` in a fresh interpreter; fail if it left any ``forbidden``/``extra`` module imported.

    A name matches a module and everything under it (``ray`` matches ``ray.rllib``).

    A fresh process because this one has imported them all already. PYTHONPATH puts this
    checkout first, so the package under test is imported, not an installed copy.
    Returns the finished process (its stdout and stderr), for callers that check more.
    """
    names = tuple(forbidden) + tuple(extra)
    check = (
        "\nimport json as _json, sys as _sys\n"
        f"_bad = sorted(m for m in _sys.modules if any(m == n or m.startswith(n + '.') for n in {names!r}))\n"
        "print('imported modules: ' + _json.dumps(_bad), file=_sys.stderr)\n"
        "_sys.exit(3 if _bad else 0)\n"
    )
    path = os.pathsep.join(p for p in (ROOT, os.environ.get("PYTHONPATH")) if p)
    res = subprocess.run([sys.executable, "-c", code + check], capture_output=True, text=True,
                         env=dict(os.environ, PYTHONPATH=path))
    lines = [ln for ln in res.stderr.splitlines() if ln.startswith("imported modules: ")]
    if res.returncode == 3 and lines:
        bad = json.loads(lines[-1][len("imported modules: "):])
        top = sorted({n for n in names for m in bad if m == n or m.startswith(n + ".")})
        raise AssertionError(
            f"the code imported {', '.join(top)} (forbidden: {', '.join(names)}); "
            f"modules: {', '.join(bad[:20])}{' ...' if len(bad) > 20 else ''}"
        )
    assert res.returncode == 0, f"the code failed (exit {res.returncode}):\n{res.stdout[-3000:]}{res.stderr[-3000:]}"
    return res


def assert_space_equal(view, space) -> None:
    """Field-by-field comparison of a SpaceView with a real gymnasium space."""
    import gymnasium as gym

    assert view.type == type(space).__name__
    assert view.describe() == repr(space)
    if isinstance(space, gym.spaces.Box):
        assert view.shape == space.shape
        assert view.dtype == space.dtype.name
        np.testing.assert_array_equal(np.broadcast_to(np.reshape(view.low, (-1,)), space.low.size), space.low.ravel())
        np.testing.assert_array_equal(np.broadcast_to(np.reshape(view.high, (-1,)), space.high.size), space.high.ravel())
    elif isinstance(space, gym.spaces.Discrete):
        assert (view.n, view.start) == (int(space.n), int(space.start))


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
        algo.restore_env_runners(group)  # the restored ids on Ray 2.60; None on 2.45
        if actor_id in group.healthy_env_runner_ids() and remote_pid() not in (None, old_pid):
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


def gap(a, b, *, common: bool = False) -> float:
    """max |a - b| of two outputs, in float64; printed, so ``pytest -s`` shows each measured figure.

    ``a`` and ``b`` are arrays, or ``{name: array}`` compared name by name: the names must be
    the same, or with ``common`` only the names of ``b`` that ``a`` also has are compared.
    """
    if isinstance(b, dict):
        names = [n for n in b if n in a] if common else sorted(b)
        assert common or sorted(a) == names, f"names differ: {sorted(a)} vs {names}"
        values = [_max_abs(a[n], b[n]) for n in names]
        value = float("nan") if any(np.isnan(values)) else max(values, default=0.0)
    else:
        value = _max_abs(a, b)
    print(f"max|Δ| {value:.3g}")
    return value


def _max_abs(a, b) -> float:
    """max |a - b|; a NaN on both sides at the same place is equal (RLlib keeps some NaN
    placeholders), a NaN on one side only is a difference (NaN)."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    diff = np.where(np.isnan(a) & np.isnan(b), 0.0, np.abs(a - b))
    return float(np.max(diff)) if diff.size else 0.0


def train_then_save(path: str, config: Any, observe: Any = None, iters: int = 1) -> Any:
    """Build ``config``, train ``iters`` iterations, save to ``path``, stop; ``observe(algo)``
    (what a test compares against: weights, outputs) is taken after the save, before the stop."""
    algo = config.build_algo()
    try:
        for _ in range(iters):
            algo.train()
        algo.save(path)
        return observe(algo) if observe is not None else None
    finally:
        algo.stop()


def kill_at_a_mark(argv: Sequence[str], pause_at: Optional[str], stop_at: int, label: str, wait: float) -> int:
    """Start the writing child ``argv``, SIGKILL it, and return how many writes it finished.

    The child prints ``ready``, then one number per finished write. With ``pause_at`` it also
    prints that mark where it stops, and waits there the ``stop_at``-th time: the kill lands
    exactly there. Without, it is killed ``wait`` seconds after ``ready``.
    """
    import signal
    import threading
    import time

    child = subprocess.Popen(list(argv), stdout=subprocess.PIPE, text=True)
    watchdog = threading.Timer(60, child.kill)  # a child that never pauses must not hang the test
    watchdog.start()
    try:
        assert child.stdout.readline().strip() == "ready"
        finished = 0
        if pause_at:
            for _ in range(stop_at):  # read up to the stop_at-th mark: the child now waits there
                line = child.stdout.readline().strip()
                while line.isdigit():  # a write finished on the way
                    finished += 1
                    line = child.stdout.readline().strip()
                assert line == pause_at, f"{label}: the child ended before pausing at {pause_at}"
        else:
            time.sleep(wait)
        child.send_signal(signal.SIGKILL)
        child.wait()
    finally:
        watchdog.cancel()
    finished += sum(line.isdigit() for line in child.stdout.read().split())
    child.stdout.close()
    return finished


# ---------------------------------------------------------------- training state (issue 20)
TRAIN_ALGOS = ("PPO", "SAC", "DQN")


def map_agents_to(ids: Sequence[str]):
    """A mapping function ``agent_<i>`` -> ``ids[i]`` (both API stacks' signatures)."""
    ids = list(ids)

    def fn(agent_id, *args, **kwargs):
        return ids[int(str(agent_id).split("_", 1)[1])]

    return fn


def train_config(name: str, stack: str, policies: Sequence[str] = ("policy_0", "policy_1"), seed: int = 0,
                 config_cls=None, **training):
    """A tiny ``<name>PartialConfig`` (or ``config_cls``) on SignGame (``agent_<i>`` -> ``policies[i]``),
    one local learner, no remote runners: PPO, APPO, SAC or DQN, either stack (tf2 in the tf2 cell)."""
    import rllib_ext
    from rllib_ext.envs import SignGame

    cfg = (
        (config_cls or getattr(rllib_ext, f"{name}PartialConfig"))()
        .environment(SignGame, env_config={"obs_dims": [4] * len(policies), "episode_len": 10})
        .env_runners(num_env_runners=0, rollout_fragment_length="auto" if name == "PPO" else 1)
        .multi_agent(policies=set(policies), policy_mapping_fn=map_agents_to(policies))
        .debugging(seed=seed)
    )
    if name == "PPO":
        cfg = cfg.training(train_batch_size=200, minibatch_size=200, num_epochs=1, lr=1e-3)
    elif name == "APPO":  # 2 s per train(), not IMPALA's default 10 s
        cfg = cfg.training(use_kl_loss=True, train_batch_size=200).reporting(min_time_s_per_iteration=2)
    elif name in ("SAC", "DQN"):
        cfg = cfg.training(train_batch_size=32).reporting(min_sample_timesteps_per_iteration=100)
        cfg = cfg.training(num_steps_sampled_before_learning_starts=50)
    if stack == "new":
        cfg = cfg.rl_module(model_config={"fcnet_hiddens": [8]})
        if name in ("SAC", "DQN"):
            cfg = cfg.training(replay_buffer_config={"type": "MultiAgentEpisodeReplayBuffer", "capacity": 2000})
    else:
        cfg = cfg.api_stack(enable_rl_module_and_learner=False, enable_env_runner_and_connector_v2=False)
        cfg = cfg.framework(framework_for_cell()).training(model={"fcnet_hiddens": [8]})
        if name == "SAC":  # tau=1: the target network equals the weights (old-stack checkpoints keep no target)
            cfg = cfg.training(tau=1.0, replay_buffer_config={"type": "MultiAgentPrioritizedReplayBuffer"},
                               q_model_config={"fcnet_hiddens": [8]}, policy_model_config={"fcnet_hiddens": [8]},
                               optimization_config={"actor_learning_rate": 3e-3, "critic_learning_rate": 3e-3,
                                                    "entropy_learning_rate": 3e-3})
        elif name == "DQN":
            cfg = cfg.training(replay_buffer_config={"type": "MultiAgentPrioritizedReplayBuffer"})
    return cfg.training(**training) if training else cfg


def fixed_batch(name: str, n: int = 64, seed: int = 5) -> Dict[str, np.ndarray]:
    """One learner batch of ``n`` rows with every column ``name``'s loss reads (Discrete(2), 4 floats)."""
    rng = np.random.default_rng(seed)
    obs = rng.uniform(-1, 1, (n, 4)).astype(np.float32)
    actions = rng.integers(0, 2, n).astype(np.int64)
    if name in ("PPO", "APPO"):
        logits = rng.normal(size=(n, 2)).astype(np.float32)
        logp = logits - np.log(np.exp(logits).sum(-1, keepdims=True))
        return {"obs": obs, "actions": actions, "action_dist_inputs": logits,
                "action_logp": logp[np.arange(n), actions].astype(np.float32),
                "advantages": rng.normal(size=n).astype(np.float32), "value_targets": rng.normal(size=n).astype(np.float32),
                "vf_preds": rng.normal(size=n).astype(np.float32)}
    return {"obs": obs, "new_obs": rng.uniform(-1, 1, (n, 4)).astype(np.float32), "actions": actions,
            "rewards": rng.normal(size=n).astype(np.float32), "terminateds": np.zeros(n, bool),
            "truncateds": np.zeros(n, bool), "weights": np.ones(n, np.float32), "n_step": np.ones(n, np.float32)}


def one_update(algo, policy_id: str, batch: Dict[str, np.ndarray]) -> Dict[str, np.ndarray]:
    """One learner update of ``policy_id`` alone on ``batch`` (one minibatch); returns its weights
    after, plus ``__kl_coeff`` / ``__log_alpha`` where the learner keeps them."""
    if algo.config.enable_rl_module_and_learner:
        from ray.rllib.policy.sample_batch import MultiAgentBatch, SampleBatch

        from rllib_ext.live.seam.carry_training import learner_scalars

        learner = algo.learner_group._learner
        # A lifetime step count far beyond both runs: target-network updates (SAC, DQN) are due
        # on both sides alike (their timing follows each run's own counters).
        learner.update(batch=MultiAgentBatch({policy_id: SampleBatch(dict(batch))}, env_steps=len(batch["obs"])),
                       timesteps={"num_env_steps_sampled_lifetime": 10**9}, num_epochs=1, minibatch_size=None)
        extra = learner_scalars(learner, [policy_id]).get(policy_id, {})
    else:
        from ray.rllib.policy.sample_batch import SampleBatch

        policy = algo.get_policy(policy_id)
        policy.learn_on_batch(SampleBatch(dict(batch)))
        extra = {"kl_coeff": float(np.asarray(getattr(policy, "kl_coeff_val", getattr(policy, "kl_coeff", np.nan))))}
    out = live_weights(algo, policy_id)
    out.update({f"__{k}": np.array(v, dtype=np.float64) for k, v in extra.items()})
    return out


# ---------------------------------------------------------------- nested (Dict) filter statistics
NESTED_SHAPE = {"pos": (2,), "vel": (2,)}  # what a MeanStdFilter over Dict(pos: Box(2,), vel: Box(2,)) keeps


def nested_filter(clip=None):
    """RLlib's own ``MeanStdFilter`` as it is for a Dict observation: one ``RunningStat`` per key.

    Ray 2.60 cannot make one itself (its constructor turns a nested shape into an object
    array; the connector's output space breaks on a multi-agent Dict), so a flat one gets
    the nested shape and statistics afterwards, as older releases built them.
    """
    from ray.rllib.utils.filter import MeanStdFilter, RunningStat

    f = MeanStdFilter((2,), clip=clip)
    f.shape = {k: np.array(v) for k, v in NESTED_SHAPE.items()}
    f.running_stats = {k: RunningStat(v) for k, v in NESTED_SHAPE.items()}
    f.buffer = {k: RunningStat(v) for k, v in NESTED_SHAPE.items()}
    return f


def install_nested_filter(algo, policy_id: str, agent_id: str) -> None:
    """Give ``algo``'s local env runner a :func:`nested_filter` for ``policy_id`` (old stack)
    or, in its MeanStdFilter connector, for ``agent_id`` (new stack)."""
    er = algo.env_runner_group.local_env_runner
    if not algo.config.enable_env_runner_and_connector_v2:
        er.filters[policy_id] = nested_filter()
        return
    conn = next(c for c in er._env_to_module.connectors if type(c).__name__ == "MeanStdFilter")
    conn.get_state()  # builds its per-agent filters
    conn._filters[agent_id] = nested_filter(clip=10.0)


# ---------------------------------------------------------------- policy pools (no Ray)
POOL_WEIGHTS = {"pi.weight": np.arange(12, dtype=np.float32).reshape(3, 4) / 7, "pi.bias": np.ones(3, np.float32)}


def pool_policy_dir(tmp_path, name: str = "src", policy_id: str = "main", scale: float = 1.0) -> str:
    """A single-policy directory of :data:`POOL_WEIGHTS` (times ``scale``), written without Ray."""
    from rllib_ext.checkpoint import write_policy_dir

    return write_policy_dir(os.path.join(tmp_path, name), policy_id,
                            {k: v * scale for k, v in POOL_WEIGHTS.items()}, {"stack": "new"})


def pool_files(pool_path) -> Dict[str, bytes]:
    """Every file of the pool but the lock, by content: 'nothing changed' compares these."""
    from pathlib import Path

    root = Path(pool_path)
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*"))
            if p.is_file() and p.name != ".lock"}


# A crash-test child's first lines. argv: ROOT, the pause's name ("" for none), the mark to
# stop at, then the child's own. mark() prints the pause's name and, at the stop_at-th
# mark, sleeps until the parent kills it; pause_before_replace(folder) calls mark() when a
# file is written and fsynced into ``folder``'s temporary sibling, not yet renamed into place.
MARK_PRELUDE = r"""
import os, sys, time
sys.path.insert(0, sys.argv[1])
pause, stop_at, args = sys.argv[2], int(sys.argv[3]), sys.argv[4:]
seen = [0]
def mark():
    seen[0] += 1
    print(pause, flush=True)
    if seen[0] == stop_at:
        time.sleep(60)  # the parent kills us here
def pause_before_replace(folder):
    replace = os.replace
    def os_replace(a, b):
        if os.path.basename(os.path.dirname(b)) == folder:
            mark()
        replace(a, b)
    os.replace = os_replace
"""


# Where a pool's crash-test child stops (after MARK_PRELUDE; ``folder``: "index" or "payoff"):
# "torn": half of a journal record's line is written to its log <folder>/<writer>@<seq>.jsonl (and fsynced),
# the rest not (a kill there leaves a torn last line); "compact": every record is followed by a
# compaction, and the child stops once the new base is renamed into place and the records it
# holds are not deleted yet (a kill there leaves both).
JOURNAL_PAUSES = r"""
def pause_in_journal(folder, kind):
    from rllib_ext.pool import journal, store
    if kind == "torn":
        append = store.LocalStore.append
        def torn_append(self, rel, data, keep=None):
            if not rel.startswith(folder + "/"):
                return append(self, rel, data, keep)
            append(self, rel, data[: len(data) // 2], keep)
            mark()
            return append(self, rel, data[len(data) // 2:])
        store.LocalStore.append = torn_append
    elif kind == "compact":
        journal_append, delete = journal.Journal.append, store.LocalStore.delete
        journal.Journal.append = lambda self, writer, record, compact=False: journal_append(self, writer, record, True)
        def paused_delete(self, rel):
            if rel.startswith(folder + "/") and rel.endswith(".jsonl"):
                mark()
            delete(self, rel)
        store.LocalStore.delete = paused_delete
"""


def pool_add_child(add_kwargs: str = "") -> str:
    """The child of the pool's SIGKILL tests (run by :func:`kill_child_at`; its args: the
    pool's path and a policy directory): add the directory to the pool as writer ``"w"``
    until killed, ``pool.add(src, iteration=n<add_kwargs>)``, one printed line per add. Its
    pause ``"data"`` marks once the snapshot's directory is in place and the index does not
    name it yet; ``"index"`` (the new index record is half written: not in place yet, as the
    whole-file index was once written and not yet renamed) is :data:`JOURNAL_PAUSES`' ``"torn"``
    in ``index/``; ``"compact"`` is its ``"compact"`` there."""
    return JOURNAL_PAUSES + r"""
pool_path, src = args
from rllib_ext.pool import store as pool_store
from rllib_ext import PolicyPool
if pause == "data":
    put = pool_store.LocalStore.put_dir
    def put_dir(self, *a, **k):
        put(self, *a, **k)
        mark()
    pool_store.LocalStore.put_dir = put_dir
elif pause:
    pause_in_journal("index", "torn" if pause == "index" else pause)
pool = PolicyPool(pool_path, writer="w")
print("ready", flush=True)
n = 0
while True:
    pool.add(src, iteration=n""" + add_kwargs + """)
    n += 1
    print(n, flush=True)
"""


def kill_child_at(script: str, args: Sequence[str], pause: str, stop_at: int, wait: float) -> int:
    """:func:`kill_at_a_mark` for a child that is ``MARK_PRELUDE + script``."""
    argv = [sys.executable, "-c", MARK_PRELUDE + script, ROOT, pause, str(stop_at), *args]
    return kill_at_a_mark(argv, pause or None, stop_at, f"kill at {pause or 'a random time'}", wait)


def start_together(script: str, arg_lists: Sequence[Sequence[str]], go, timeout: float = 120) -> List[Tuple[int, str]]:
    """Start one ``python -c script ROOT GO *args`` per ``arg_lists`` item, let them all go at
    once (the child waits for the file ``go``), and return each one's ``(exit code, stderr)``."""
    import time

    procs = [subprocess.Popen([sys.executable, "-c", script, ROOT, str(go), *map(str, args)],
                              stderr=subprocess.PIPE, text=True) for args in arg_lists]
    time.sleep(1.0)  # let every child import and wait
    open(go, "w").close()
    errors = [p.communicate(timeout=timeout)[1] for p in procs]
    return [(p.returncode, err) for p, err in zip(procs, errors)]
