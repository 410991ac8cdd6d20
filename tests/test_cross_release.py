"""A filtered policy crosses Ray releases, both ways, through our reader.

The fixtures in ``tests/fixtures/filtered/`` were written by Ray 2.40.0, 2.45.0 (the oldest
supported release) and 2.60.0 (the newest) with ``tests/fixtures/make_fixtures.py``: a
2-policy PPO trained one iteration on observations around 5.0 through a MeanStdFilter
(old stack: per policy; new stack: the connector, per agent), with ``filters.json`` (each
filter's statistics as that release's own ``RunningStat`` holds them) and ``outputs.npz``
(each policy's action-distribution inputs on 64 raw observations through that release's
own filter). Every test restores one policy into the Ray running the tests: in the
``torch-ray245`` tox cell the 2.60 fixtures go into 2.45, in the other cells the 2.40 and
2.45 fixtures go into 2.60, so each direction is run.

Checked per policy: the weights equal the writing release's getter, tensor by tensor; the
filter statistics equal its ``RunningStat`` exactly (count, mean, Welford sum), as read by
the Ray-free reader and as set on the live env runner; RLlib's own filter + forward pass on
the same raw observations give the recorded action-distribution inputs (within 1e-6); and
the same restore with ``filters=False`` differs by more than 1e-3 (the negative control).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from builders import OFFSET, assert_weights_equal, framework_for_cell, gap, live_weights, mean_std_connector, ppo_config, runner_dist_inputs

from rllib_ext import PPOPartialConfig, read_filters

FILTERED = Path(__file__).parent / "fixtures" / "filtered"
TOL = 1e-6
NEGATIVE = 1e-3


def _meta(d: Path) -> dict:
    return json.loads((d / "meta.json").read_text())


DIRS = sorted(d for d in FILTERED.glob("ray-*") if (d / "meta.json").is_file())
CASES = [pytest.param(d, _meta(d)["stack"], id=d.name) for d in DIRS]


def test_fixtures_cover_the_oldest_and_newest_supported_release_both_stacks():
    from rllib_ext.live.seam.compat import TESTED

    got = {(_meta(d)["ray_version"], _meta(d)["stack"]) for d in DIRS}
    assert {(r, s) for r in TESTED for s in ("old", "new")} <= got
    size = sum(f.stat().st_size for d in DIRS for f in d.rglob("*") if f.is_file())
    assert size < 2 * 1024 * 1024, f"filtered fixtures are {size} bytes; keep them under 2 MB"


def target(stack: str):
    """A live 2-policy PPOPartial like the fixtures': obs 4 floats around OFFSET, hiddens [8, 8], MeanStdFilter."""
    from rllib_ext.envs import SignGame

    cfg = ppo_config(stack, obs_dims=(4, 4), hiddens=(8, 8), config_cls=PPOPartialConfig).environment(
        SignGame, env_config={"obs_dims": [4, 4], "episode_len": 10, "obs_offset": OFFSET}
    )
    if stack == "old":
        return cfg.env_runners(observation_filter="MeanStdFilter").build_algo()
    return cfg.env_runners(env_to_module_connector=mean_std_connector).build_algo()


@pytest.mark.parametrize("fixture,stack", CASES)
def test_filtered_policy_of_another_release_acts_as_there(fixture, stack, ray_session):
    if framework_for_cell() != "torch":
        pytest.skip("torch fixtures; the tf2 cell restores tf2 policies")
    meta = _meta(fixture)
    path = str(fixture / "checkpoint")
    want_filters = json.loads((fixture / "filters.json").read_text())
    with np.load(fixture / "outputs.npz") as npz:
        obs = npz["obs"]
        want_out = {pid: npz[f"{pid}/action_dist_inputs"] for pid in meta["policies"]}
    expected = {pid: {} for pid in meta["policies"]}
    with np.load(fixture / "expected.npz") as npz:
        for key in npz.files:
            pid, name = key.split("/", 1)
            expected[pid][name] = npz[key]
    # Ray-free: the reader gives the writing release's statistics, bit for bit.
    found = read_filters(path)
    assert found.keyed_by == ("agent" if stack == "new" else "policy")
    for key, want in want_filters.items():
        _assert_same_stats(found.stats[key], want, f"{fixture.name} reader {key}")

    agent_of = {p: a for a, p in meta["agent_to_policy"].items()}
    agents = {a: a for a in agent_of.values()} if stack == "new" else None
    algo = target(stack)
    try:
        for pid in meta["policies"]:
            agent = agent_of[pid]
            key = agent if stack == "new" else pid
            # Negative control: the weights alone, the target's fresh filter: acts differently.
            algo.restore(path, policies=[pid], filters=False)
            assert gap(runner_dist_inputs(algo.env_runner_group.local_env_runner, pid, agent, obs), want_out[pid]) > NEGATIVE

            report = algo.restore(path, policies=[pid], agents=agents)

            assert pid in report.filters
            got = live_weights(algo, pid)
            assert_weights_equal({n: got[n] for n in expected[pid]}, expected[pid], f"{fixture.name}/{pid}", ordered=False)
            from rllib_ext.live.seam.backends import backend_for

            _assert_same_stats(backend_for(algo).live_filters().stats[key], want_filters[key], f"{fixture.name} live {key}")
            assert gap(runner_dist_inputs(algo.env_runner_group.local_env_runner, pid, agent, obs), want_out[pid]) <= TOL
    finally:
        algo.stop()


def _assert_same_stats(stats, want: dict, label: str) -> None:
    assert stats.count == want["count"], label
    np.testing.assert_array_equal(stats.mean, np.asarray(want["mean"], dtype=np.float64), err_msg=f"{label} mean")
    np.testing.assert_array_equal(stats.sum_sq_diff, np.asarray(want["sum_sq_diff"], dtype=np.float64),
                                  err_msg=f"{label} sum_sq_diff")
