"""Callbacks that Tune trial actors import by name (tests/ is on their PYTHONPATH)."""

from __future__ import annotations

import os

import numpy as np
from ray.rllib.callbacks.callbacks import RLlibCallback


def _weights(algorithm, pid):
    if algorithm.config.enable_rl_module_and_learner:
        w = algorithm.learner_group.get_weights(module_ids=[pid])[pid]
    else:
        w = algorithm.get_policy(pid).get_weights()
        if isinstance(w, (list, tuple)):
            w = {str(i): v for i, v in enumerate(w)}
    return {k: np.array(v, copy=True) for k, v in w.items()}


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
        np.savez(os.path.join(marker_dir, "after_resume.npz"), **_weights(algorithm, "policy_1"))
