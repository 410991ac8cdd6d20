"""A restored policy acts as in its source run, observation filter included.

Source: a 3-policy PPO trained with a MeanStdFilter (old stack: ``observation_filter``,
one filter per policy; new stack: the MeanStdFilter connector, one per agent) on
observations around 5.0, so the filter's statistics matter. Its action-distribution
inputs on fixed raw observations, through RLlib's own filter, are the reference. Every
path that restores the policy must reproduce them within 1e-6 on the local and a remote
env runner; the same comparison with the filter dropped (``filters=False``) must differ
by more than 1e-3 (the negative control that shows the check can fail).
"""

from __future__ import annotations

import re

import numpy as np
import pytest

from builders import (
    OFFSET,
    STACKS,
    filtered_config,
    gap,
    install_nested_filter,
    live_weights,
    restart_remote_env_runner,
    runner_dist_inputs,
    train_then_save,
    unclipped_connector,
)

import rllib_ext
from rllib_ext import (
    CheckpointError,
    PPOPartial,
    PPOPartialConfig,
    ShapeMismatchError,
    UnsupportedFilterError,
    read_filters,
)

# The filter is numpy state beside the weights, whatever the framework: torch-old runs these,
# tf2-old does not.
pytestmark = pytest.mark.framework_neutral

TOL = 1e-6
NEGATIVE = 1e-3
# 16 sequences of 20 raw observations, far from zero.
OBS = np.random.default_rng(7).normal(OFFSET, 1.5, size=(16 * 20, 4)).astype(np.float32)


def _remote_dist_inputs(er, pid: str, agent: str):
    return runner_dist_inputs(er, pid, agent, OBS)


def dist_inputs(algo, pid: str, agent: str, remote: bool = False) -> np.ndarray:
    """RLlib's own filter + forward pass of ``pid`` on OBS, on the local or a remote env runner."""
    group = algo.env_runner_group
    if remote:
        [res] = group.foreach_env_runner(
            lambda er, _p=pid, _a=agent: _remote_dist_inputs(er, _p, _a), local_env_runner=False
        )[:1]
        return res
    return runner_dist_inputs(group.local_env_runner, pid, agent, OBS)


@pytest.fixture(scope="module")
def source(ray_session, tmp_path_factory):
    """``source(stack)`` -> (checkpoint path, {policy id: reference dist inputs})."""
    cache = {}

    def get(stack: str):
        if stack not in cache:
            path = str(tmp_path_factory.mktemp(f"filtered_{stack}"))
            ref = train_then_save(path, filtered_config(stack, num_env_runners=1),
                                  lambda algo: {f"policy_{i}": dist_inputs(algo, f"policy_{i}", f"agent_{i}") for i in range(3)})
            cache[stack] = (path, ref)
        return cache[stack]

    return get


@pytest.mark.parametrize("stack", STACKS)
def test_read_filters_reads_the_source_statistics(source, stack):
    path, _ = source(stack)
    found = read_filters(path)
    assert found.keyed_by == ("policy" if stack == "old" else "agent")
    assert sorted(found.stats) == ([f"policy_{i}" for i in range(3)] if stack == "old" else [f"agent_{i}" for i in range(3)])
    for stats in found.stats.values():
        assert stats.count >= 200 and abs(float(stats.mean[0]) - OFFSET) < 0.5
    view = rllib_ext.inspect(path)  # inspect says so too, per policy (old stack) or agent (new)
    assert view.filters_keyed_by == found.keyed_by and sorted(view.filters) == sorted(found.stats)
    assert all(p.recurrent is False for p in view.policies.values())
    if stack == "old":
        assert view.policies["policy_1"].observation_filter == found.stats["policy_1"].describe()


@pytest.mark.parametrize("stack", STACKS)
def test_restore_carries_the_filter_local_and_remote(source, stack):
    path, ref = source(stack)
    algo = filtered_config(stack, num_env_runners=1, config_cls=PPOPartialConfig).debugging(seed=3).build_algo()
    try:
        report = algo.restore(path, policies={"policy_1": "policy_0"})
        assert "policy_0" in report.filters
        local = gap(dist_inputs(algo, "policy_0", "agent_0"), ref["policy_1"])
        remote = gap(dist_inputs(algo, "policy_0", "agent_0", remote=True), ref["policy_1"])
        assert local <= TOL and remote <= TOL, (local, remote)
        # Negative control: the same restore without the filter acts differently.
        fresh = filtered_config(stack, num_env_runners=0, config_cls=PPOPartialConfig).debugging(seed=4).build_algo()
        try:
            fresh.restore(path, policies={"policy_1": "policy_0"}, filters=False)
            assert gap(dist_inputs(fresh, "policy_0", "agent_0"), ref["policy_1"]) > NEGATIVE
        finally:
            fresh.stop()
    finally:
        algo.stop()


@pytest.mark.parametrize("stack", STACKS)
def test_filter_mismatch_raises_before_any_change(source, stack):
    path, _ = source(stack)
    algo = filtered_config(stack, num_env_runners=0, with_filter=False, config_cls=PPOPartialConfig).build_algo()
    try:
        before = {p: live_weights(algo, p) for p in ("policy_0", "policy_1")}
        with pytest.raises(ShapeMismatchError, match="carries an observation filter .*MeanStdFilter"):
            algo.restore(path, policies=["policy_0"])
        for pid, w in before.items():
            for name, value in w.items():
                np.testing.assert_array_equal(live_weights(algo, pid)[name], value, err_msg=f"{pid}/{name}")
        algo.restore(path, policies=["policy_0"], filters=False)  # weights alone: allowed
    finally:
        algo.stop()


@pytest.mark.parametrize("stack", STACKS)
def test_nested_live_filter_is_a_typed_error_and_changes_nothing(source, tmp_path, stack):
    """A live filter over a Dict observation keeps nested statistics: restore(policies=) and
    load_policy (replace, and add a new id) raise UnsupportedFilterError, a CheckpointError
    as restore promises, naming the policy (old stack) or agent (new stack); nothing changed.
    The Ray-free entry points are in test_nested_filters.py."""
    path, _ = source(stack)
    algo = filtered_config(stack, num_env_runners=0, config_cls=PPOPartialConfig).build_algo()
    try:
        saved = algo.save_policy("policy_1", tmp_path / "p1")  # flat statistics, before the nested filter
        install_nested_filter(algo, "policy_1", "agent_1")
        whose = "policy 'policy_1'" if stack == "old" else "agent 'agent_1'"
        message = f"the algorithm's observation filters: {whose}: its MeanStdFilter keeps nested statistics"
        before = {p: live_weights(algo, p) for p in ("policy_0", "policy_1", "policy_2")}
        ids = set(algo.config.policies)
        for call in (lambda: algo.restore(path, policies=["policy_1"]),
                     lambda: algo.load_policy(saved, policy_id="policy_1"),
                     lambda: algo.load_policy(saved, policy_id="policy_9")):
            with pytest.raises(UnsupportedFilterError, match=re.escape(message)) as e:
                call()
            assert isinstance(e.value, CheckpointError)
            assert set(algo.config.policies) == ids  # policy_9 was not left behind
            for pid, w in before.items():
                for name, value in w.items():
                    np.testing.assert_array_equal(live_weights(algo, pid)[name], value, err_msg=f"{pid}/{name}")
        report = algo.restore(path, policies=["policy_1"], filters=False)  # the weights alone: allowed
        assert "policy_1" in report.restored.values() and not report.filters
    finally:
        algo.stop()


@pytest.mark.parametrize("stack", STACKS)
def test_config_restore_policies_carries_the_filter(source, stack):
    """The setup() hook Tune's trials run: config.restore_policies(...), then build."""
    path, ref = source(stack)
    cfg = filtered_config(stack, num_env_runners=1, config_cls=PPOPartialConfig).restore_policies(path, ["policy_2"], freeze=True)
    algo = cfg.build_algo()
    try:
        assert gap(dist_inputs(algo, "policy_2", "agent_2", remote=True), ref["policy_2"]) <= TOL
    finally:
        algo.stop()


@pytest.mark.parametrize("stack", STACKS)
def test_lightweight_acts_through_the_filter(source, stack):
    path, ref = source(stack)
    algo = PPOPartial.from_checkpoint(path, lightweight=True, policies=["policy_1"])
    try:
        assert gap(dist_inputs(algo, "policy_1", "policy_1"), ref["policy_1"]) <= TOL
        greedy = np.argmax(ref["policy_1"], axis=-1)
        acts = np.array([algo.act(o, policy_id="policy_1") for o in OBS[:40]])
        np.testing.assert_array_equal(acts, greedy[:40])
    finally:
        algo.stop()


def _loaded_dist_inputs(loaded, obs: np.ndarray, use_filter: bool = True) -> np.ndarray:
    """A LoadedPolicy's action-distribution inputs on raw ``obs`` (filtered as compute_action does)."""
    x = loaded.observation_filter.apply(obs) if use_filter else obs
    if loaded.meta["stack"] == "old":
        _, _, info = loaded.model.compute_actions(x, explore=False)
        return np.asarray(info["action_dist_inputs"], dtype=np.float64)
    import torch

    with torch.no_grad():
        out = loaded.model.forward_inference({"obs": torch.as_tensor(np.asarray(x, dtype=np.float32))})
    return out["action_dist_inputs"].numpy().astype(np.float64)


@pytest.mark.parametrize("stack", STACKS)
def test_policy_file_carries_the_filter_to_build_policy_and_load_policy(source, tmp_path, stack):
    import rllib_ext

    path, ref = source(stack)
    algo = filtered_config(stack, num_env_runners=0, config_cls=PPOPartialConfig).build_algo()
    try:
        algo.restore(path, policies=["policy_1"])
        saved = algo.save_policy("policy_1", tmp_path / "p1")
    finally:
        algo.stop()
    assert read_filters(saved).stats["policy_1"].count >= 200  # in policy.json, as data

    loaded = rllib_ext.build_policy(saved)
    assert gap(_loaded_dist_inputs(loaded, OBS), ref["policy_1"]) <= TOL
    assert gap(_loaded_dist_inputs(loaded, OBS, use_filter=False), ref["policy_1"]) > NEGATIVE
    np.testing.assert_array_equal(
        np.array([loaded.compute_action(o) for o in OBS[:40]]), np.argmax(ref["policy_1"][:40], axis=-1)
    )

    target = filtered_config(stack, num_env_runners=1, config_cls=PPOPartialConfig).debugging(seed=5).build_algo()
    try:
        report = target.load_policy(saved, policy_id="policy_2")
        assert "policy_2" in report.filters
        assert gap(dist_inputs(target, "policy_2", "agent_2", remote=True), ref["policy_1"]) <= TOL
    finally:
        target.stop()


def test_policy_file_of_format_1_0_still_loads(tmp_path):
    import json

    from rllib_ext.checkpoint import read_policy_dir, write_policy_dir

    out = write_policy_dir(tmp_path / "p", "p", {"w": np.ones(3, np.float32)}, {"stack": "new"})
    meta_file = tmp_path / "p" / "policy.json"
    doc = json.loads(meta_file.read_text())
    assert doc["format_version"] == "1.1" and doc["observation_filter"] is None
    doc["format_version"] = "1.0"
    del doc["observation_filter"]
    meta_file.write_text(json.dumps(doc))
    meta, weights = read_policy_dir(out)
    np.testing.assert_array_equal(weights["w"], np.ones(3, np.float32))
    assert read_filters(out).stats == {}


@pytest.mark.parametrize("stack", STACKS)
def test_restarted_remote_env_runner_keeps_the_restored_filter(source, stack):
    path, ref = source(stack)
    algo = filtered_config(stack, num_env_runners=1, config_cls=PPOPartialConfig).build_algo()
    try:
        algo.restore(path, policies=["policy_0"])
        restart_remote_env_runner(algo)
        assert gap(dist_inputs(algo, "policy_0", "agent_0", remote=True), ref["policy_0"]) <= TOL
    finally:
        algo.stop()


@pytest.mark.slow
@pytest.mark.parametrize("stack", STACKS)
def test_tune_restore_policies_carries_the_filter(source, tmp_path, stack):
    """In a Tune trial the restored filter keeps counting from the source's statistics; with
    ``filters=False`` (the negative control) it starts from zero."""
    from ray import tune

    path, _ = source(stack)
    key = "policy_0" if stack == "old" else "agent_0"
    counts = {}
    for carry in (True, False):
        cfg = filtered_config(stack, num_env_runners=0, config_cls=PPOPartialConfig).restore_policies(
            path, ["policy_0"], freeze=True, filters=carry
        )
        result = tune.run(
            "PPOPartial", config=cfg, stop={"training_iteration": 1}, storage_path=str(tmp_path / str(carry)),
            checkpoint_at_end=True, verbose=0,
        )
        counts[carry] = read_filters(result.trials[0].checkpoint.path).stats[key].count
    source_count = read_filters(path).stats[key].count
    assert counts[True] == source_count + counts[False], (source_count, counts)


@pytest.mark.parametrize("stack", STACKS)
def test_merged_checkpoint_carries_the_filter_into_rllibs_own_load(source, tmp_path, stack):
    from ray.rllib.algorithms.algorithm import Algorithm

    from rllib_ext import merge_checkpoints

    path, ref = source(stack)
    base = str(tmp_path / "base")
    algo = filtered_config(stack, num_env_runners=0).debugging(seed=11).build_algo()
    try:
        # Old stack untrained: the base's own statistics are fresh, so keeping them must show.
        # New stack trained: a merge takes the source's Adam buffers, which the base must have.
        if stack == "new":
            algo.train()
        algo.save(base)
    finally:
        algo.stop()
    agents = {"policy_0": {"agent_0": "agent_1"}} if stack == "new" else None
    report = merge_checkpoints(base, [("policy_0", path, "policy_1")], tmp_path / "merged", agents=agents)
    assert "policy_0" in report.filters
    merge_checkpoints(base, [("policy_0", path, "policy_1")], tmp_path / "weights_only", filters=False)
    merged = Algorithm.from_checkpoint(str(tmp_path / "merged"))
    try:
        assert gap(dist_inputs(merged, "policy_0", "agent_0"), ref["policy_1"]) <= TOL
        if stack == "old":  # the policy's own filter connector (what sampling uses) too
            conn = merged.env_runner.policy_map["policy_0"].agent_connectors
            from rllib_ext.checkpoint.filters import stats_from_filter

            [flt] = [c.filter for c in conn.connectors if hasattr(c, "filter")]
            assert stats_from_filter(flt).count == read_filters(path).stats["policy_1"].count
    finally:
        merged.stop()
    weights_only = Algorithm.from_checkpoint(str(tmp_path / "weights_only"))
    try:
        assert gap(dist_inputs(weights_only, "policy_0", "agent_0"), ref["policy_1"]) > NEGATIVE
    finally:
        weights_only.stop()


def test_new_stack_merge_without_agents_names_the_option(source, tmp_path):
    from rllib_ext import CheckpointError, merge_checkpoints

    path, _ = source("new")
    with pytest.raises(CheckpointError, match=r"pass agents=\{'policy_0': \{base agent: source agent\}\}"):
        merge_checkpoints(path, [("policy_0", path, "policy_1")], tmp_path / "m")
    assert not (tmp_path / "m").exists()


@pytest.mark.stack("old")
def test_cross_stack_restore_carries_the_old_policy_filter_to_the_agents(source):
    """An old-stack policy trained with a filter, restored into a new-stack algorithm: its
    statistics go to the MeanStdFilter connector of the agents mapped to the module."""
    from builders import framework_for_cell

    path, ref = source("old")
    cfg = filtered_config("new", num_env_runners=1, config_cls=PPOPartialConfig).rl_module(
        model_config={"fcnet_hiddens": [8, 8], "vf_share_layers": False}
    )
    with pytest.raises(ShapeMismatchError, match=r"clip_by_value=float\('inf'\)"):  # the default clips at 10
        clipping = cfg.build_algo()
        try:
            clipping.restore(path, policies={"policy_2": "policy_1"})
        finally:
            clipping.stop()
    algo = cfg.env_runners(env_to_module_connector=unclipped_connector).build_algo()
    try:
        report = algo.restore(path, policies={"policy_2": "policy_1"})
        assert report.converted_from and "policy_1" in report.filters
        tol = 1e-5 if framework_for_cell() == "tf2" else TOL
        assert gap(dist_inputs(algo, "policy_1", "agent_1", remote=True), ref["policy_2"]) <= tol
    finally:
        algo.stop()
    plain = filtered_config("new", num_env_runners=0, with_filter=False, config_cls=PPOPartialConfig).rl_module(
        model_config={"fcnet_hiddens": [8, 8], "vf_share_layers": False}
    ).build_algo()
    try:
        with pytest.raises(ShapeMismatchError, match="carries an observation filter"):
            plain.restore(path, policies=["policy_2"])
    finally:
        plain.stop()


@pytest.fixture(scope="module")
def lambda_source(ray_session, tmp_path_factory):
    """A new-stack checkpoint with MeanStdFilter statistics whose policy_mapping_fn is a lambda
    (pickled by value: the usual case), trained once so the statistics exist."""
    path = str(tmp_path_factory.mktemp("filtered_lambda"))
    algo = filtered_config("new", num_env_runners=0).multi_agent(
        policy_mapping_fn=lambda agent_id, *a, **k: "policy_" + str(agent_id).split("_", 1)[1]
    ).build_algo()
    try:
        algo.train()
        algo.save(path)
    finally:
        algo.stop()
    return path


@pytest.mark.stack("new")
def test_config_restore_policies_asks_for_agents_in_the_driver(lambda_source, source):
    """Which source agents' statistics to carry is asked by config.restore_policies itself, in
    the driver (before any tune.run), not when a trial builds its algorithm; a by-reference
    mapping function, agents=, trusted=True or filters=False answer it."""
    from rllib_ext import CheckpointError
    from rllib_ext.live.restore.feature import specs_of

    cfg = filtered_config("new", num_env_runners=0, config_cls=PPOPartialConfig)
    with pytest.raises(CheckpointError, match=re.escape(
        f"policy 'policy_0': cannot tell which agents of {lambda_source} played it, so whose "
        "observation-filter statistics to carry: its policy_mapping_fn is pickled by value (a lambda or a "
        "function of __main__); pass agents={target agent: source agent}, trusted=True to unpickle the "
        "source config, or filters=False"
    )):
        cfg.restore_policies(lambda_source, ["policy_0"])
    assert specs_of(cfg) == []  # nothing recorded for the trial
    cfg.restore_policies(lambda_source, ["policy_0"], agents={"agent_0": "agent_0"})
    cfg.restore_policies(lambda_source, ["policy_1"], filters=False)
    cfg.restore_policies(source("new")[0], ["policy_0"])  # agent_to_policy: pickled by reference
    assert len(specs_of(cfg)) == 3


# ---------------------------------------------------------------- old stack -> new stack


def cross_tol() -> float:
    from builders import tolerance

    return max(TOL, tolerance())  # tf2 -> torch conversion: 1e-4


@pytest.mark.stack("old")
def test_migrate_writes_the_filter_beside_the_module_as_plain_json(source, tmp_path):
    import json

    import torch
    from ray.rllib.core.rl_module.multi_rl_module import MultiRLModule

    from rllib_ext.live.restore.migration import migrate

    path, ref = source("old")
    out = tmp_path / "new"

    report = migrate(path, out, policies=["policy_1", "policy_2"])

    assert report.policies["policy_1"].observation_filter.startswith("MeanStdFilter(4,) over ")
    doc = json.loads((out / "policy_1" / "observation_filter.json").read_text())
    assert doc["type"] == "MeanStdFilter" and doc["shape"] == [4]
    found = read_filters(str(out))
    assert found.keyed_by == "policy" and sorted(found.stats) == ["policy_1", "policy_2"]
    assert found.stats["policy_1"].to_dict() == read_filters(path).stats["policy_1"].to_dict()  # exact
    module = MultiRLModule.from_checkpoint(str(out))["policy_1"]
    with torch.no_grad():
        filtered = found.stats["policy_1"].apply(OBS)
        got = module.forward_inference({"obs": torch.as_tensor(filtered)})["action_dist_inputs"].numpy()
        raw = module.forward_inference({"obs": torch.as_tensor(OBS)})["action_dist_inputs"].numpy()
    assert gap(got.astype(np.float64), ref["policy_1"]) <= cross_tol()
    assert gap(raw.astype(np.float64), ref["policy_1"]) > NEGATIVE  # without the filter: different


@pytest.mark.stack("old")
def test_restore_old_stack_filter_into_new_stack_without_filter_is_refused_before_any_change(source):
    path, _ = source("old")
    algo = filtered_config("new", num_env_runners=0, with_filter=False, config_cls=PPOPartialConfig).build_algo()
    try:
        before = live_weights(algo, "policy_0")
        with pytest.raises(ShapeMismatchError, match=(
            r"^policy 'policy_0': .* carries an observation filter \(MeanStdFilter\(4,\) over \d+ observations, no clip\) "
            r"but the algorithm has none for 'policy_0'"
        )):
            algo.restore(path, policies=["policy_0"])
        for name, value in before.items():
            np.testing.assert_array_equal(live_weights(algo, "policy_0")[name], value, err_msg=name)
    finally:
        algo.stop()


@pytest.mark.xfail(strict=True, raises=TypeError, reason="ray 2.60: MeanStdFilter(clip_by_value=None) builds Box(-None, None)")
def test_stock_unclipped_mean_std_connector_cannot_be_built():
    """Why the error for an old-stack filter names clip_by_value=float('inf'), not None."""
    import gymnasium as gym
    from ray.rllib.connectors.env_to_module import MeanStdFilter

    space = gym.spaces.Box(-1.0, 1.0, (4,), np.float32)
    MeanStdFilter(multi_agent=True, clip_by_value=None).recompute_output_observation_space(space, gym.spaces.Discrete(2))
