"""The ...Partial trainables inside Tune: config-driven restore, resume, checkpoint exchange."""

from __future__ import annotations

import glob
import os

import numpy as np
import pytest

from builders import STACKS, assert_differs, assert_weights_equal, first_layer, live_weights, ppo_config

from rllib_ext import PPOPartial, read_weights

# Tune's plumbing is framework-neutral; tf2 policies in Tune: tests/test_tf2_keras.py.
pytestmark = [pytest.mark.slow, pytest.mark.framework_neutral]



def run(config, tmp_path, name, **kw):
    from ray import tune

    return tune.run(
        "PPOPartial", config=config, storage_path=str(tmp_path / "tune"), name=name, verbose=0,
        raise_on_failed_trial=True, **kw,
    )


def checkpoints(analysis):
    trial_dir = analysis.trials[0].path
    return sorted(glob.glob(os.path.join(trial_dir, "checkpoint_*")))


# The plain-dict Tune story exactly as a user writes it, in a fresh process: Tune's names
# come from `import rllib_ext` alone (no other rllib_ext name is touched before tune.run).
PLAIN_DICT_RUN = """
import pickle, sys
from ray import tune
import rllib_ext

config = pickle.load(open(sys.argv[1], "rb"))
config["restore_policies"] = {"checkpoint": sys.argv[2], "policies": ["policy_0"], "freeze": True}
import ray
ray.init(address="local", num_cpus=1, include_dashboard=False, log_to_driver=False)
analysis = tune.run("PPOPartial", config=config, storage_path=sys.argv[3], name="dict", verbose=0,
                    raise_on_failed_trial=True, stop={"training_iteration": 1}, checkpoint_at_end=True)
print(analysis.trials[0].path)
"""


@pytest.mark.parametrize("stack", STACKS)
def test_tune_run_plain_dict_restores_one_policy_frozen(ckpts, tmp_path, stack):
    import pickle
    import subprocess
    import sys

    path, saved = ckpts(stack)
    config_file = tmp_path / "config.pkl"
    config_file.write_bytes(pickle.dumps(ppo_config(stack, obs_dims=(4, 4, 6)).to_dict()))
    # The restore path is relative to the directory the run starts in.
    res = subprocess.run(
        [sys.executable, "-c", PLAIN_DICT_RUN, str(config_file), os.path.basename(path), str(tmp_path / "tune")],
        cwd=os.path.dirname(path), capture_output=True, text=True, timeout=600,
    )
    assert res.returncode == 0, res.stderr[-3000:]
    final = sorted(glob.glob(os.path.join(res.stdout.strip().splitlines()[-1], "checkpoint_*")))[-1]
    assert_weights_equal(read_weights(final, "policy_0"), saved["policy_0"], "frozen restored policy_0", ordered=False)
    assert_differs(read_weights(final, "policy_1"), saved["policy_1"], "fresh policy_1")
    name, shape = first_layer(stack, 6)
    assert read_weights(final, "policy_2")[name].shape == shape


@pytest.mark.parametrize("stack", STACKS)
def test_tune_resume_after_crash_keeps_trained_weights(ckpts, tmp_path, stack):

    path, saved = ckpts(stack)
    config = (
        ppo_config(stack, config_cls=PPOPartial.get_default_config().__class__)
        .environment(env_config={"obs_dims": [4, 4, 4], "episode_len": 10, "marker_dir": str(tmp_path)})
        .callbacks(_callback_class())
        .restore_policies(path, ["policy_0"], freeze=True)
        .restore_policies(path, ["policy_1"])
    )
    analysis = run(
        config, tmp_path, "resume", stop={"training_iteration": 3}, checkpoint_freq=1, max_failures=1,
    )

    assert os.path.exists(tmp_path / "crashed"), "the crash was not injected"
    ckpt_iter1 = checkpoints(analysis)[0]
    after_resume = dict(np.load(tmp_path / "after_resume.npz"))
    # What Tune restored is the trained iteration-1 state, not the initial restore.
    assert_weights_equal(after_resume, read_weights(ckpt_iter1, "policy_1"),
                         "policy_1 right after resume", ordered=False)
    assert_differs(after_resume, saved["policy_1"], "policy_1 after resume vs source")
    final = checkpoints(analysis)[-1]
    assert analysis.trials[0].last_result["training_iteration"] == 3
    assert_weights_equal(read_weights(final, "policy_0"), saved["policy_0"], "still frozen after resume", ordered=False)


def _callback_class():
    from tune_callbacks import CrashOnceAndRecord

    return CrashOnceAndRecord


@pytest.mark.parametrize("stack", STACKS)
def test_tune_restore_accepts_standalone_checkpoint_and_back(ckpts, tmp_path, stack):
    path, saved = ckpts(stack)  # written by a plain PPO's algo.save()
    # Relative to the directory Tune (and Ray) started in; upstream needs absolute paths.
    analysis = run(
        ppo_config(stack).to_dict(), tmp_path, "from_standalone", restore=os.path.relpath(path),
        stop={"training_iteration": 2}, checkpoint_at_end=True,
    )
    assert analysis.trials[0].last_result["training_iteration"] == 2  # 1 restored + 1 trained
    trial_ckpt = checkpoints(analysis)[-1]

    # ...and the Tune trial's checkpoint goes back into standalone algorithms.
    algo = ppo_config(stack, config_cls=PPOPartial.get_default_config().__class__).build_algo()
    try:
        algo.restore(trial_ckpt, policies={"policy_2": "policy_0"})
        assert_weights_equal(live_weights(algo, "policy_0"), read_weights(trial_ckpt, "policy_2"),
                             "partial", ordered=False)
        algo.restore(trial_ckpt)
        for pid in ("policy_0", "policy_1", "policy_2"):
            assert_weights_equal(live_weights(algo, pid), read_weights(trial_ckpt, pid), f"full {pid}", ordered=False)
    finally:
        algo.stop()


def test_tuner_runs_registered_partial_trainable(ckpts, tmp_path):
    from ray import tune

    path, saved = ckpts("new")
    config = ppo_config("new", config_cls=PPOPartial.get_default_config().__class__).restore_policies(
        path, {"policy_2": "policy_0"}, freeze=True
    )
    tuner = tune.Tuner(
        "PPOPartial",
        param_space=config,
        run_config=tune.RunConfig(
            stop={"training_iteration": 1}, storage_path=str(tmp_path), name="tuner", verbose=0,
            checkpoint_config=tune.CheckpointConfig(checkpoint_at_end=True),
        ),
    )
    [result] = list(tuner.fit())
    assert result.error is None
    assert result.metrics["rllib_ext"]["frozen"] == "policy_0"
    assert result.metrics["rllib_ext"]["restored"] == {"policy_0": f"{path}:policy_2"}
    assert_weights_equal(read_weights(result.checkpoint.path, "policy_0"), saved["policy_2"],
                         "frozen, renamed", ordered=False)
