"""Restore one policy into a running new-stack APPO/IMPALA: is it exact, and what does it cost?

A 3-policy APPO (or IMPALA) on SignGame, 8-unit layers, 1 remote env runner and RLlib's
default remote learner, trains once and is saved; then, per round, it trains ``--train``
more iterations and ``algo.restore(ckpt, policies=["policy_0"], freeze=True)`` runs. Each
round prints the restore's wall time and the largest |learner policy_0 - checkpoint|:
right after the restore, after ``--idle`` seconds of idling, and after two ``train()``
calls (frozen: must stay 0). A thaw (``policies_to_train`` back to all) ends each round.
Public API only: the hold of the learner thread inside the restore (an internal step that
``--hold`` used to time alone, 0.014 s median on 2026-11-30) is no longer timed apart.

    python bench/restore_running.py [--algo APPO|IMPALA] [--rounds N] [--train N] [--idle S]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(os.path.dirname(HERE), "tests"))

import numpy as np  # noqa: E402

from builders import async_config, live_weights  # noqa: E402


def gap(algo, want) -> float:
    """max |learner policy_0 - checkpoint| over the main (not ``_old_*`` target) tensors."""
    got = live_weights(algo, "policy_0")
    return max(float(np.max(np.abs(got[n] - want[n]))) for n in want if not n.startswith("_old_"))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--algo", default="APPO", choices=("APPO", "IMPALA"))
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--train", type=int, default=3, help="train() calls before each restore")
    ap.add_argument("--idle", type=float, default=3.0)
    args = ap.parse_args()

    import ray

    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False)
    algo = async_config(args.algo).build_algo()
    rows = []
    try:
        with tempfile.TemporaryDirectory() as ckpt:
            algo.train()
            algo.save(ckpt)
            want = live_weights(algo, "policy_0")
            for r in range(args.rounds):
                for _ in range(args.train):
                    algo.train()
                t0 = time.perf_counter()
                algo.restore(ckpt, policies=["policy_0"], freeze=True)
                seconds = time.perf_counter() - t0
                after = gap(algo, want)
                time.sleep(args.idle)
                idle = gap(algo, want)
                algo.train()
                algo.train()
                trained = gap(algo, want)
                rows.append({"round": r, "restore_s": round(seconds, 4), "after": after, "idle": idle,
                             "trained": trained})
                print(json.dumps(rows[-1]), flush=True)
                thaw = sorted(algo.config.policies)
                algo.learner_group.foreach_learner(lambda l, p=thaw: l.config.multi_agent(policies_to_train=p))
    finally:
        algo.stop()
        ray.shutdown()
    if not rows:
        return
    times = [row["restore_s"] for row in rows]
    bad = sum(1 for row in rows if max(row["after"], row["idle"], row["trained"]) > 0)
    print(f"{args.algo}: restore median {statistics.median(times):.3f} s (min {min(times):.3f}, max {max(times):.3f}) "
          f"over {len(rows)} rounds; inexact rounds: {bad}")


if __name__ == "__main__":
    main()
