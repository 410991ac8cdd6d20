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
        pool = PolicyPool(algorithm.feature("league").engine.spec.pool)
        iterations = {e.id: e.iteration for e in pool.entries()}
        drawn = {slot: iterations.get(sid) for slot, sid in result["rllib_ext"]["league"].items()}
        marker = os.path.join(marker_dir, "crashed")
        with open(os.path.join(marker_dir, "draws.jsonl"), "a") as f:
            f.write(json.dumps({"iteration": result["training_iteration"], "drawn": drawn,
                                "before_crash": not os.path.exists(marker)}) + "\n")
        if result["training_iteration"] == 3 and not os.path.exists(marker):
            open(marker, "w").close()
            raise RuntimeError("injected crash at iteration 3")


def score_worst(result, policy_id):
    """A population score that keeps this trial at the bottom (trial actors import it by name)."""
    return 0.0


class CrashPopulationOnceAndRecord(RLlibCallback):
    """Record each result's population report for ``policy_0``, the lr its optimizer holds
    and the feature's state (hyperparameters, exploits, the draws' RNG) in
    ``env_config["marker_dir"]/rounds.jsonl``; crash the trial once at iteration 4, after
    that iteration's round (snapshot, exploit, perturb) ran. After Tune's restore, record
    the restored lr and state in ``after_resume.json``."""

    def on_train_result(self, *, algorithm, result, **kwargs):
        import json

        from rllib_ext.live.population.hyperparams import live_hyperparams

        marker_dir = algorithm.config.env_config["marker_dir"]
        marker = os.path.join(marker_dir, "crashed")
        row = {"iteration": result["training_iteration"], "before_crash": not os.path.exists(marker),
               "report": result["rllib_ext"]["population"]["policy_0"],
               "live_lr": live_hyperparams(algorithm, "policy_0", ["lr"])["lr"], "state": population_state(algorithm)}
        with open(os.path.join(marker_dir, "rounds.jsonl"), "a") as f:
            f.write(json.dumps(row) + "\n")
        if result["training_iteration"] == 4 and not os.path.exists(marker):
            open(marker, "w").close()
            raise RuntimeError("injected crash at iteration 4")

    def on_checkpoint_loaded(self, *, algorithm, **kwargs):
        import json

        from rllib_ext.live.population.hyperparams import live_hyperparams

        marker_dir = algorithm.config.env_config["marker_dir"]
        with open(os.path.join(marker_dir, "after_resume.json"), "w") as f:
            json.dump({**live_hyperparams(algorithm, "policy_0", ["lr"]), "state": population_state(algorithm)}, f)


def population_state(algorithm):
    """The population feature's state, as its checkpoint holds it."""
    feature = next(f for f in algorithm.features if f.state_key == "rllib_ext_population")
    return feature.state(algorithm)
