"""A long league stays cheap (issue 35 point 7): per-call cost of the pool as it grows.

Builds one pool of ``--sizes`` snapshots (default 30, 120, 600) of a tiny policy, one
after the other, as a league does: each new snapshot is added, then its games against the
``--against`` snapshots before it are recorded (default 50). Around each size, the last
``--window`` snapshots are timed call by call: ``add`` once each, ``record_games`` once
per pair. The other snapshots' games go in one call per snapshot, untimed
(``record_games_batch``, or on a version without it the same read-add-write of the
writer's table file that ``record_games`` does, under the pool's lock), which only makes
the build quicker.

At each size, ``payoff()`` (every entry, the whole table) is timed twice: *cold* in a
fresh Python process (the time of the call alone, not the interpreter's start), and
*warm* as the second call in this process.

Runs against whichever ``rllib_ext`` is imported (``PYTHONPATH``), so one script gives
the before and the after figures:

    PYTHONPATH=. python bench/pool_scale.py [--sizes 30,120,600] [--against 50] [--window 5]
        [--dir DIR] [--json OUT.json]
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from typing import Any, Dict, List, Mapping, Sequence, Tuple

import numpy as np

COLD = r"""
import sys, time
sys.path[:0] = [p for p in sys.argv[2].split(":") if p]
from rllib_ext import PolicyPool
import rllib_ext.pool.payoff, rllib_ext.pool.solvers  # imports (numpy) are not the call's time
t = time.perf_counter()
table = PolicyPool(sys.argv[1], create=False).payoff()
print(time.perf_counter() - t, len(table), int(table.games.sum()) // 2)
"""


def games_of(rng: random.Random) -> Dict[str, Any]:
    """A few games from ``a``'s side: counts and the sums of each side's returns."""
    wins, draws, losses = rng.randint(0, 3), rng.randint(0, 1), rng.randint(0, 3)
    wins += not (wins or draws or losses)
    return {"wins": wins, "draws": draws, "losses": losses, "return_a": float(wins - losses),
            "return_b": float(losses - wins)}


def record_untimed(pool: Any, batch: Sequence[Tuple[str, str, Mapping[str, Any]]]) -> None:
    """One call for a snapshot's games: the batch call, or the old read-add-write of the writer's file."""
    if hasattr(pool, "record_games_batch"):
        pool.record_games_batch(batch)
        return
    from rllib_ext.pool import payoff as old  # a version without the batch call

    with pool._store.lock():
        old.add_games(pool._store, pool.writer, [(a, b, old.check_games(a, b, g)) for a, b, g in batch])


def cold_payoff(path: str) -> Tuple[float, int, int]:
    """``payoff()`` timed in a fresh process: (seconds, snapshots, games)."""
    out = subprocess.run([sys.executable, "-c", COLD, path, os.environ.get("PYTHONPATH", "")],
                         capture_output=True, text=True, check=True).stdout.split()
    return float(out[0]), int(out[1]), int(out[2])


def run(sizes: Sequence[int], against: int, window: int, root: str) -> List[Dict[str, Any]]:
    import rllib_ext
    from rllib_ext.checkpoint import write_policy_dir

    weights = {"pi.weight": np.arange(12, dtype=np.float32).reshape(3, 4) / 7, "pi.bias": np.ones(3, np.float32)}
    src = write_policy_dir(os.path.join(root, "src"), "main", weights, {"stack": "new"})
    path = os.path.join(root, "pool")
    pool = rllib_ext.PolicyPool(path, writer="bench")
    rng = random.Random(35)
    ids: List[str] = []
    rows: List[Dict[str, Any]] = []
    adds: List[float] = []
    records: List[float] = []
    start = time.perf_counter()
    for k in range(1, max(sizes) + 1):
        target = min(s for s in sizes if s >= k)
        timed = k > target - window
        t = time.perf_counter()
        entry = pool.add(src, iteration=k)
        if timed:
            adds.append(time.perf_counter() - t)
        batch = [(entry.id, b, games_of(rng)) for b in ids[-against:]]
        if timed:
            for a, b, g in batch:
                t = time.perf_counter()
                pool.record_games(a, b, **g)
                records.append(time.perf_counter() - t)
        elif batch:
            record_untimed(pool, batch)
        ids.append(entry.id)
        if k == target:
            cold, n, played = cold_payoff(path)
            pool.payoff()
            t = time.perf_counter()
            pool.payoff()
            warm = time.perf_counter() - t
            row = {"snapshots": n, "games": played, "add_ms": 1e3 * statistics.mean(adds),
                   "add_max_ms": 1e3 * max(adds), "record_ms": 1e3 * statistics.mean(records),
                   "record_p50_ms": 1e3 * statistics.median(records), "record_max_ms": 1e3 * max(records),
                   "timed_adds": len(adds), "timed_records": len(records), "payoff_cold_s": cold,
                   "payoff_warm_s": warm, "elapsed_s": time.perf_counter() - start}
            rows.append(row)
            print(f"{n:5d} snapshots  add {row['add_ms']:7.2f} ms (max {row['add_max_ms']:7.2f})  "
                  f"record_games {row['record_ms']:7.2f} ms (p50 {row['record_p50_ms']:7.2f}, max "
                  f"{row['record_max_ms']:7.2f})  payoff() cold {cold:6.3f} s, warm {warm:6.3f} s  "
                  f"[{row['elapsed_s']:.0f} s so far]", flush=True)
            adds, records = [], []
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="30,120,600", help="pool sizes to measure at, comma-separated")
    parser.add_argument("--against", type=int, default=50, help="each new snapshot's games: against this many before it")
    parser.add_argument("--window", type=int, default=5, help="snapshots timed before each size")
    parser.add_argument("--dir", default=None, help="where to build the pool (default: a temporary directory)")
    parser.add_argument("--json", default=None, help="write the figures here too")
    args = parser.parse_args()
    sizes = sorted({int(s) for s in args.sizes.split(",")})
    import rllib_ext

    print(f"rllib_ext {rllib_ext.__version__} from {os.path.dirname(rllib_ext.__file__)}; "
          f"{datetime.date.today()}; {os.cpu_count()} cores; python {platform.python_version()}")
    print(f"sizes {sizes}, each snapshot against the {args.against} before it, last {args.window} timed per size")
    root = args.dir or tempfile.mkdtemp(prefix="pool-scale-")
    try:
        rows = run(sizes, args.against, args.window, root)
    finally:
        if args.dir is None:
            shutil.rmtree(root, ignore_errors=True)
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"argv": sys.argv[1:], "rllib_ext": os.path.dirname(rllib_ext.__file__), "rows": rows}, f, indent=1)


if __name__ == "__main__":
    main()
