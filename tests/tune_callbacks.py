"""Callbacks that Tune trial actors import by name (tests/ is on their PYTHONPATH)."""

from __future__ import annotations

import os

import numpy as np
from builders import live_weights
from ray.rllib.callbacks.callbacks import RLlibCallback


class CrashOnceAndRecord(RLlibCallback):
    """Crash the trial once at iteration 2; record policy_1 right after Tune's restore.

    Both write into ``env_config["marker_dir"]``.
    """

    def on_train_result(self, *, algorithm, result, **kwargs):
        marker_dir = algorithm.config.env_config["marker_dir"]
        marker = os.path.join(marker_dir, "crashed")
        if result["training_iteration"] == 2 and not os.path.exists(marker):
            open(marker, "w").close()
            raise RuntimeError("injected crash at iteration 2")

    def on_checkpoint_loaded(self, *, algorithm, **kwargs):
        marker_dir = algorithm.config.env_config["marker_dir"]
        np.savez(os.path.join(marker_dir, "after_resume.npz"), **live_weights(algorithm, "policy_1"))


class SnapshotEachResult(RLlibCallback):
    """Snapshot policy_1 into the pool at ``env_config["pool"]`` after every iteration."""

    def on_train_result(self, *, algorithm, result, **kwargs):
        algorithm.snapshot_policy("policy_1", algorithm.config.env_config["pool"])
