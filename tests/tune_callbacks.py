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


class CrashLeagueOnceAndRecord(RLlibCallback):
    """Record each result's league draw (slot -> the drawn snapshot's iteration) in
    ``env_config["marker_dir"]/draws.jsonl``; crash the trial once at iteration 3, after
    the league has snapshotted and drawn for it (results reach callbacks after step())."""

    def on_train_result(self, *, algorithm, result, **kwargs):
        import json

        from rllib_ext import PolicyPool

        marker_dir = algorithm.config.env_config["marker_dir"]
        pool = PolicyPool(algorithm.league.spec.pool)
        iterations = {e.id: e.iteration for e in pool.entries()}
        drawn = {slot: iterations.get(sid) for slot, sid in result["rllib_ext"]["league"].items()}
        marker = os.path.join(marker_dir, "crashed")
        with open(os.path.join(marker_dir, "draws.jsonl"), "a") as f:
            f.write(json.dumps({"iteration": result["training_iteration"], "drawn": drawn,
                                "before_crash": not os.path.exists(marker)}) + "\n")
        if result["training_iteration"] == 3 and not os.path.exists(marker):
            open(marker, "w").close()
            raise RuntimeError("injected crash at iteration 3")
