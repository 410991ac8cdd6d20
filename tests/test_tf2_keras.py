"""tf2: a Keras model pretrained outside RLlib becomes one policy of a multi-agent run.

Through ``restore(..., policies=...)`` (from an RLlib checkpoint holding the Keras
weights) and through the single-policy format (written straight from ``net.get_weights()``,
then ``restore_policies`` in Tune or ``load_policy`` on a live algorithm). After the first
``train()`` the restored (frozen) weights are on every env runner, local and remote.
"""

from __future__ import annotations

import glob
import os

import numpy as np
import pytest

from builders import framework_for_cell, ppo_config

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        framework_for_cell() != "tf2",
        reason="a Keras model is tf2: runs in the tf2-old cell (RLlib 2.60 has no tf2 on the new stack)",
    ),
]


def keras_config(tmp_path, num_env_runners=0, partial=True):
    from keras_policy import KerasPolicyModel

    from rllib_ext import PPOPartial

    cfg = ppo_config("old", obs_dims=(4, 4, 4), num_env_runners=num_env_runners,
                     config_cls=PPOPartial.get_default_config().__class__ if partial else None)
    # Two remote runners at half a CPU each: with the trial's own CPU that is the 2 we have.
    return (
        cfg.training(model={"custom_model": KerasPolicyModel})
        .env_runners(num_cpus_per_env_runner=0.5)
        .environment(env_config={"obs_dims": [4, 4, 4], "episode_len": 10, "marker_dir": str(tmp_path)})
    )


def assert_list_equal(got, want, label):
    assert len(got) == len(want), label
    for i, (g, w) in enumerate(zip(got, want)):
        np.testing.assert_array_equal(g, w, err_msg=f"{label}[{i}]")


@pytest.fixture(scope="module")
def pretrained():
    from keras_policy import pretrain

    return pretrain()


def write_keras_policy_dir(path, weights):
    """What a Keras user writes: the model's weight list as a single-policy directory."""
    from rllib_ext import write_policy_dir

    return write_policy_dir(path, "keras", {str(i): w for i, w in enumerate(weights)},
                            {"stack": "old", "framework": "tf2"})


@pytest.mark.stack("old")
def test_tune_restores_keras_weights_onto_every_worker(ray_session, tmp_path, pretrained):
    from keras_policy import RecordEveryWorkerAfterFirstTrain
    from ray import tune

    # An earlier RLlib run whose policy_0 holds the Keras weights (tf2 list, Keras order).
    src = keras_config(tmp_path, partial=False).build_algo()
    try:
        initial = [np.array(w, copy=True) for w in src.get_policy("policy_0").get_weights()]
        assert any(not np.array_equal(a, b) for a, b in zip(initial, pretrained)), "pretraining changed nothing"
        src.get_policy("policy_0").set_weights(pretrained)
        ckpt = src.save(str(tmp_path / "src")).checkpoint.path
    finally:
        src.stop()
    policy_dir = write_keras_policy_dir(tmp_path / "keras_policy", pretrained)

    config = (
        keras_config(tmp_path, num_env_runners=2)
        .callbacks(RecordEveryWorkerAfterFirstTrain)
        .restore_policies(ckpt, ["policy_0"], freeze=True)
        .restore_policies(policy_dir, {"keras": "policy_1"}, freeze=True)
    )
    tune.run("PPOPartial", config=config, stop={"training_iteration": 1}, storage_path=str(tmp_path / "tune"),
             verbose=0, raise_on_failed_trial=True)

    files = sorted(glob.glob(os.path.join(tmp_path, "worker_*.npz")))
    assert len(files) == 3, f"expected the local + 2 remote env runners, got {files}"
    for f in files:
        got = np.load(f)
        for pid in ("policy_0", "policy_1"):
            n = len([k for k in got.files if k.startswith(pid + "/")])
            assert_list_equal([got[f"{pid}/{j}"] for j in range(n)], pretrained, f"{os.path.basename(f)} {pid}")


@pytest.mark.stack("old")
def test_load_policy_keras_file_reaches_every_worker_after_first_train(ray_session, tmp_path, pretrained):
    from keras_policy import worker_weights

    policy_dir = write_keras_policy_dir(tmp_path / "keras_policy", pretrained)
    cfg = keras_config(tmp_path, num_env_runners=2).multi_agent(policies_to_train=["policy_1", "policy_2"])
    algo = cfg.build_algo()
    try:
        before = worker_weights(algo, ["policy_0"])
        assert any(not np.array_equal(a, b) for a, b in zip(before[0]["policy_0"], pretrained))
        algo.load_policy(policy_dir, "policy_0")
        trained_before = [np.array(w, copy=True) for w in algo.get_policy("policy_1").get_weights()]
        algo.train()
        per_worker = worker_weights(algo, ["policy_0", "policy_1"])
        assert len(per_worker) == 3
        for i, weights in enumerate(per_worker):
            assert_list_equal(weights["policy_0"], pretrained, f"worker {i} policy_0")
        # policy_1 did train, and the trained weights reached the remote runners too.
        assert any(not np.array_equal(a, b) for a, b in zip(per_worker[0]["policy_1"], trained_before))
        for i, weights in enumerate(per_worker[1:], 1):
            assert_list_equal(weights["policy_1"], per_worker[0]["policy_1"], f"worker {i} policy_1")
    finally:
        algo.stop()
