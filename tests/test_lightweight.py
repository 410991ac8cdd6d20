"""Lightweight algorithms: zero CPUs, only the asked-for policies, same actions as the full one."""

from __future__ import annotations

import os
import threading
import time

import numpy as np
import pytest

from builders import STACKS, assert_weights_equal, live_weights, ppo_config

from rllib_ext import PPOPartial, PPOPartialConfig
from rllib_ext.live.seam.bridge import module_action


def cpus_free():
    import ray

    return ray.available_resources().get("CPU", 0.0)


def idle_cpus(timeout: float = 60.0) -> float:
    """Free CPUs once earlier tests' Tune trials have given theirs back (a stable baseline)."""
    import ray

    total = ray.cluster_resources().get("CPU", 0.0)
    deadline = time.time() + timeout
    while cpus_free() < total and time.time() < deadline:
        time.sleep(0.2)
    return cpus_free()


@pytest.fixture
def no_training_env(monkeypatch):
    """Call it to make constructing the training env (SignGame) an error, in this process."""
    from rllib_ext import envs

    def refuse(self, config=None):
        raise AssertionError("the training env was built")

    return lambda: monkeypatch.setattr(envs.SignGame, "__init__", refuse)


@pytest.mark.parametrize("stack", STACKS)
def test_lightweight_reserves_no_cpu_and_holds_only_asked_policies(ckpts, stack, no_training_env):
    path, saved = ckpts(stack)
    no_training_env()
    before = idle_cpus()
    algo = PPOPartial.from_checkpoint(path, lightweight=True, policies=["policy_1"])
    try:
        assert cpus_free() == before
        from rllib_ext.live.seam.backends import backend_for

        assert backend_for(algo).ids() == ["policy_1"]
        assert_weights_equal(live_weights(algo, "policy_1"), saved["policy_1"], "lightweight policy_1", ordered=False)
        assert algo.env_runner_group.num_remote_env_runners() == 0
        assert algo.eval_env_runner_group is None
    finally:
        algo.stop()


@pytest.mark.parametrize("stack", STACKS)
def test_lightweight_acts_like_the_full_algorithm(ckpts, stack):
    from ray.rllib.algorithms.algorithm import Algorithm

    path, _ = ckpts(stack)
    rng = np.random.default_rng(1)
    observations = [rng.uniform(-1, 1, 4).astype(np.float32) for _ in range(100)]
    full = Algorithm.from_checkpoint(path)
    try:
        if stack == "new":
            want = [int(module_action(full.get_module("policy_2"), o)) for o in observations]
        else:
            want = [int(full.compute_single_action(o, policy_id="policy_2", explore=False)) for o in observations]
    finally:
        full.stop()
    light = PPOPartial.from_checkpoint(path, lightweight=True, policies=["policy_2"])
    try:
        got = [int(light.act(o, policy_id="policy_2")) for o in observations]
    finally:
        light.stop()
    assert got == want
    assert len(set(want)) == 2, "a policy that always picks one action proves little"


def _hold_cpus(config):
    """A Tune trial that holds its CPUs until the marker file appears (max 120 s)."""
    deadline = time.time() + 120
    while not os.path.exists(config["release"]) and time.time() < deadline:
        time.sleep(0.2)
    return {"done": 1}


@pytest.mark.slow
@pytest.mark.parametrize("stack", STACKS)
def test_lightweight_builds_while_tune_holds_every_cpu(ckpts, tmp_path, stack):
    import ray
    from ray import tune

    path, saved = ckpts(stack)
    total = ray.cluster_resources()["CPU"]
    release = str(tmp_path / "release")
    tuner = tune.Tuner(
        tune.with_resources(_hold_cpus, {"cpu": total}),
        param_space={"release": release},
        run_config=tune.RunConfig(storage_path=str(tmp_path / "tune"), name="hold", verbose=0),
    )
    runner = threading.Thread(target=tuner.fit, daemon=True)
    runner.start()
    try:
        deadline = time.time() + 60
        while cpus_free() > 0 and time.time() < deadline:
            time.sleep(0.2)
        assert cpus_free() == 0, "the Tune run did not take every CPU"
        t0 = time.perf_counter()
        algo = PPOPartial.from_checkpoint(path, lightweight=True, policies=["policy_0"])
        try:
            assert time.perf_counter() - t0 < 60
            assert cpus_free() == 0
            algo.act(np.zeros(4, np.float32), policy_id="policy_0")
            assert_weights_equal(live_weights(algo, "policy_0"), saved["policy_0"],
                                 "built while CPUs are held", ordered=False)
        finally:
            algo.stop()
    finally:
        open(release, "w").close()
        runner.join(timeout=120)
        idle_cpus()  # leave the cluster as we found it for the next test


@pytest.mark.parametrize("stack", STACKS)
def test_config_lightweight_after_restore_policies_then_save_policy(ckpts, tmp_path, stack, no_training_env):
    import rllib_ext

    path, saved = ckpts(stack)
    no_training_env()
    before = idle_cpus()
    config = (
        ppo_config(stack, num_env_runners=2, config_cls=PPOPartialConfig)
        .evaluation(evaluation_num_env_runners=1, evaluation_interval=1)
        .restore_policies(path, {"policy_0": "hero"})
        .lightweight()
    )
    algo = config.build_algo()
    try:
        assert cpus_free() == before
        assert_weights_equal(live_weights(algo, "hero"), saved["policy_0"], "hero", ordered=False)
        out = algo.save_policy("hero", tmp_path / "hero")
    finally:
        algo.stop()
    loaded = rllib_ext.build_policy(out)
    assert_weights_equal(loaded.weights, saved["policy_0"], "saved hero", ordered=False)


def test_lightweight_saves_a_checkpoint_rllib_reads(ckpts, tmp_path):
    import rllib_ext

    path, saved = ckpts("new")
    algo = PPOPartial.from_checkpoint(path, lightweight=True, policies=["policy_2"])
    try:
        algo.save(str(tmp_path / "light"))
    finally:
        algo.stop()
    assert rllib_ext.policy_ids(str(tmp_path / "light")) == ["policy_2"]
    assert_weights_equal(rllib_ext.read_weights(str(tmp_path / "light"), "policy_2"), saved["policy_2"],
                         "saved", ordered=False)


@pytest.mark.slow
def test_lightweight_without_a_cluster_starts_one_and_reserves_no_cpu(ckpts):
    import subprocess
    import sys

    path, _ = ckpts("new")
    code = (
        "import numpy as np, ray\n"
        "from rllib_ext import PPOPartial\n"
        "assert not ray.is_initialized()\n"
        f"algo = PPOPartial.from_checkpoint({path!r}, lightweight=True, policies=['policy_0'])\n"
        "algo.act(np.zeros(4, np.float32), policy_id='policy_0')\n"
        "total, free = ray.cluster_resources()['CPU'], ray.available_resources()['CPU']\n"
        "print('CPUS', total, free)\n"
        "algo.stop()\n"
    )
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300,
                         env={**os.environ, "RAY_ADDRESS": ""})
    assert res.returncode == 0, res.stderr[-3000:]
    total, free = map(float, res.stdout.split("CPUS", 1)[1].split())
    assert total > 0 and free == total
