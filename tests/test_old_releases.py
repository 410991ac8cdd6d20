"""Checkpoints written by older Ray releases (tests/fixtures/ray-*): read and restored exactly.

Each fixture was written by that release itself (tests/fixtures/make_fixtures.py), with
``expected.npz`` holding every policy's weights as that release's own API reported them.
Tests are parametrized by ``stack`` so each runs in its matrix cell; a fixture of another
framework than the cell's (tf2 vs torch) is skipped there.
"""

from __future__ import annotations

import json
from collections import OrderedDict
from pathlib import Path

import numpy as np
import pytest

from builders import (
    assert_imports_no_framework,
    assert_weights_equal,
    env_runner_weights,
    framework_for_cell,
    live_weights,
    ppo_config,
)

import rllib_ext
from rllib_ext import PPOPartialConfig, read_weights

FIXTURES = Path(__file__).parent / "fixtures"
RELEASE_DIRS = sorted(
    (d for d in FIXTURES.glob("ray-*") if (d / "meta.json").is_file()),
    key=lambda d: (tuple(int(x) for x in d.name.split("-")[1].split(".")), d.name),
)


def _meta(d: Path) -> dict:
    return json.loads((d / "meta.json").read_text())


CASES = [pytest.param(d, _meta(d)["stack"], id=d.name) for d in RELEASE_DIRS]


def load(fixture: Path):
    """(checkpoint path, meta, {policy id: {tensor name: array}} in the release's order)."""
    meta = _meta(fixture)
    if meta["framework"] != framework_for_cell():
        pytest.skip(f"{meta['framework']} fixture; runs in the {meta['framework']} cell, not {framework_for_cell()}")
    expected = {pid: OrderedDict() for pid in meta["policies"]}
    with np.load(fixture / "expected.npz") as npz:
        for key in npz.files:  # zip order = the order the release's getter returned
            pid, name = key.split("/", 1)
            expected[pid][name] = npz[key]
    return str(fixture / "checkpoint"), meta, expected


def test_fixtures_cover_three_releases_both_stacks_and_tf2():
    metas = [_meta(d) for d in RELEASE_DIRS]
    assert len({m["ray_version"] for m in metas}) >= 3
    assert {(m["stack"], m["framework"]) for m in metas} >= {("old", "torch"), ("new", "torch"), ("old", "tf2")}
    size = sum(f.stat().st_size for d in RELEASE_DIRS for f in d.rglob("*") if f.is_file())
    assert size < 5 * 1024 * 1024, f"fixtures are {size} bytes; keep them under 5 MB"


@pytest.mark.parametrize("fixture,stack", CASES)
def test_inspect_old_release(fixture, stack):
    path, meta, expected = load(fixture)
    view = rllib_ext.inspect(path)
    assert view.kind == "algorithm"
    assert view.stack == stack
    assert view.ray_version == meta["ray_version"]
    assert view.algorithm_class == "PPO"
    assert list(view.policies) == meta["policies"]
    for pid, pview in view.policies.items():
        assert pview.observation_space.describe() == "Box(-1.0, 1.0, (4,), float32)", pid
        assert pview.action_space.describe() == "Discrete(2)", pid
        assert {n: shape for n, (shape, _) in pview.tensors.items()} == {
            n: a.shape for n, a in expected[pid].items()
        }, pid


@pytest.mark.parametrize("fixture,stack", CASES)
def test_read_weights_old_release_equals_its_own_getter(fixture, stack):
    path, meta, expected = load(fixture)
    assert rllib_ext.policy_ids(path) == meta["policies"]
    for pid, want in expected.items():
        assert_weights_equal(read_weights(path, pid), want, f"{fixture.name}/{pid}")


def test_reading_every_old_release_imports_no_framework():
    """tf2 fixtures pickle TF variables (optimizer state): reading weights still needs no TF."""
    assert_imports_no_framework(
        "import rllib_ext\n"
        f"for path in {[str(d / 'checkpoint') for d in RELEASE_DIRS]!r}:\n"
        "    for pid in rllib_ext.inspect(path).policies:\n"
        "        assert rllib_ext.read_weights(path, pid)\n"
    )


@pytest.fixture(scope="module")
def live_algo(ray_session):
    """One 2-policy PPOPartial per stack, like the fixtures' (obs 4 floats, hiddens [8, 8])."""
    built = {}

    def get(stack: str):
        if stack not in built:
            cfg = ppo_config(stack, obs_dims=(4, 4), hiddens=(8, 8), config_cls=PPOPartialConfig)
            built[stack] = cfg.build_algo()
        return built[stack]

    yield get
    for algo in built.values():
        algo.stop()


@pytest.mark.parametrize("fixture,stack", CASES)
def test_restore_one_policy_of_old_release(fixture, stack, live_algo):
    """Each policy in turn: exactly its weights in learner and env runner, the other kept."""
    path, meta, expected = load(fixture)
    algo = live_algo(stack)
    for pid in meta["policies"]:
        before = {p: live_weights(algo, p) for p in meta["policies"]}

        report = algo.restore(path, policies=[pid])

        assert report.restored == {pid: pid}
        got = live_weights(algo, pid)
        # Ray 2.60's module may hold constant buffers an older release did not save
        # (e.g. '*.log_std_clip_param_const' vs Ray 2.30); they keep their values.
        assert_weights_equal({n: got[n] for n in expected[pid]}, expected[pid], f"{fixture.name}/{pid}", ordered=False)
        assert_weights_equal({n: got[n] for n in got if n not in expected[pid]},
                             {n: before[pid][n] for n in before[pid] if n not in expected[pid]},
                             f"{pid} extras", ordered=False)
        runner = env_runner_weights(algo, pid, remote=False)
        assert_weights_equal(runner, {n: expected[pid].get(n, before[pid].get(n)) for n in runner},
                             f"env runner {pid}", ordered=False)
        for other in meta["policies"]:
            if other != pid:
                assert_weights_equal(live_weights(algo, other), before[other], f"untouched {other}", ordered=False)


OLD_STACK_CASES = [c for c in CASES if c.values[1] == "old"]


def load_outputs(fixture: Path):
    """(obs, {policy id: (action_dist_inputs, vf_preds)}) the release computed."""
    with np.load(fixture / "outputs.npz") as npz:
        pids = sorted({k.split("/", 1)[0] for k in npz.files if "/" in k})
        return npz["obs"], {p: (npz[f"{p}/action_dist_inputs"], npz[f"{p}/vf_preds"]) for p in pids}


def tolerance() -> float:
    """float32 arithmetic of another release / framework build; tf2 -> torch differs more."""
    return 1e-4 if framework_for_cell() == "tf2" else 1e-5


def max_diff(want, got) -> float:
    """max |diff| of logits and values; printed, so ``pytest -s`` shows the measured tolerance."""
    d = max(float(np.max(np.abs(np.asarray(w) - np.asarray(g)))) for w, g in zip(want, got))
    print(f"max|Δ| {d:.3g}")
    return d


@pytest.mark.parametrize("fixture,stack", OLD_STACK_CASES)
def test_restored_old_release_policy_acts_as_in_that_release(fixture, stack, live_algo):
    path, meta, _ = load(fixture)
    obs, want = load_outputs(fixture)
    algo = live_algo(stack)
    for pid in meta["policies"]:
        algo.restore(path, policies=[pid])
        _, _, extra = algo.get_policy(pid).compute_actions(obs, explore=False)
        got = (extra["action_dist_inputs"], extra["vf_preds"])
        assert max_diff(want[pid], got) < tolerance(), pid


@pytest.fixture(scope="module")
def new_stack_algo(ray_session):
    """A 2.60 new-stack PPOPartial shaped like the old fixtures' policies (separate value net)."""
    holder = []

    def get():
        if not holder:
            cfg = ppo_config("new", obs_dims=(4, 4), hiddens=(8, 8), config_cls=PPOPartialConfig)
            holder.append(cfg.rl_module(model_config={"fcnet_hiddens": [8, 8], "vf_share_layers": False}).build_algo())
        return holder[0]

    yield get
    for algo in holder:
        algo.stop()


@pytest.mark.parametrize("fixture,stack", OLD_STACK_CASES)
def test_old_release_policy_into_new_stack_acts_as_in_that_release(fixture, stack, new_stack_algo):
    """Old-stack policy of an older release -> 2.60 new-stack module (converted), same outputs."""
    import torch

    path, meta, _ = load(fixture)
    obs, want = load_outputs(fixture)
    algo = new_stack_algo()
    pid, other = meta["policies"]
    before_other = live_weights(algo, other)

    report = algo.restore(path, policies=[pid])

    assert report.converted_from == f"old-API-stack {meta['framework']}"
    module = algo.learner_group._learner.module[pid]
    batch = {"obs": torch.from_numpy(obs)}
    with torch.no_grad():
        got = (module.forward_inference(batch)["action_dist_inputs"].numpy(), module.compute_values(batch).numpy())
    assert max_diff(want[pid], got) < tolerance()
    assert_weights_equal(live_weights(algo, other), before_other, f"untouched {other}", ordered=False)


def test_check_tensors_keeps_missing_constant_buffers_only():
    """A checkpoint without a module constant (Ray 2.30) keeps the target's; any other gap is an error."""
    from rllib_ext.checkpoint.tensors import check_tensors
    from rllib_ext.errors import ShapeMismatchError

    target = {"pi.w": np.zeros((2, 2), np.float32), "pi.log_std_clip_param_const": np.array([20.0], np.float32)}
    ready = check_tensors("policy 'p'", {"pi.w": np.ones((2, 2), np.float32)}, target)
    assert list(ready) == ["pi.w", "pi.log_std_clip_param_const"]
    np.testing.assert_array_equal(ready["pi.w"], np.ones((2, 2), np.float32))
    np.testing.assert_array_equal(ready["pi.log_std_clip_param_const"], [20.0])
    with pytest.raises(ShapeMismatchError, match="missing in the checkpoint: pi.w; only in the checkpoint: -"):
        check_tensors("policy 'p'", {"pi.log_std_clip_param_const": np.array([20.0], np.float32)}, target)
