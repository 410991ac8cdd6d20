"""A long league stays cheap (issue 35 point 7): per-call cost of the pool as it grows.

One pool per size in ``--sizes`` (default 30, 120, 600) of a tiny policy, built as a league
builds it: each new snapshot is added, then its games against the ``--against`` snapshots
before it are recorded (default 50). Each pool is first built untimed to its size less
``--window`` snapshots, its games recorded in one call per snapshot (``record_games_batch``),
which only makes the build quicker. Then
the last ``--window`` snapshots of every pool are added and recorded call by call, timed:
``add`` once each, ``record_games`` once per pair, the pools taking turns snapshot by
snapshot, so a change in the disk's speed during the run (fsync times here vary by 5x
from minute to minute) falls on every size alike.

At each full size, ``payoff()`` (every entry, the whole table) is timed: *cold* in a fresh
Python process (the call alone, not the interpreter's start or imports; the median of 3),
and *warm* as the second call in this process.

Runs against whichever ``rllib_ext`` is imported (``PYTHONPATH``); public API only, so a
version before ``record_games_batch`` (the "before" figures of issue 35 point 7) no longer
runs it: ``git show b6ca750:bench/pool_scale.py`` does.

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
import rllib_ext
rllib_ext.Payoff, rllib_ext.sample_mixture  # their modules' imports (numpy) are not the call's time
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
    """One call for a snapshot's games."""
    pool.record_games_batch(batch)


def cold_payoff(path: str) -> Tuple[float, int, int]:
    """``payoff()`` timed in a fresh process: (seconds, snapshots, games)."""
    out = subprocess.run([sys.executable, "-c", COLD, path, os.environ.get("PYTHONPATH", "")],
                         capture_output=True, text=True, check=True).stdout.split()
    return float(out[0]), int(out[1]), int(out[2])


def run(sizes: Sequence[int], against: int, window: int, root: str) -> List[Dict[str, Any]]:
    import rllib_ext
    from rllib_ext import write_policy_dir

    weights = {"pi.weight": np.arange(12, dtype=np.float32).reshape(3, 4) / 7, "pi.bias": np.ones(3, np.float32)}
    src = write_policy_dir(os.path.join(root, "src"), "main", weights, {"stack": "new"})
    pools = {n: rllib_ext.PolicyPool(os.path.join(root, f"pool-{n}"), writer="bench") for n in sizes}
    ids: Dict[int, List[str]] = {n: [] for n in sizes}
    adds: Dict[int, List[float]] = {n: [] for n in sizes}
    records: Dict[int, List[float]] = {n: [] for n in sizes}
    rng = random.Random(35)
    start = time.perf_counter()

    def grow(n: int, timed: bool) -> None:
        pool = pools[n]
        t = time.perf_counter()
        entry = pool.add(src, iteration=len(ids[n]))
        if timed:
            adds[n].append(time.perf_counter() - t)
        batch = [(entry.id, b, games_of(rng)) for b in ids[n][-against:]]
        if timed:
            for a, b, g in batch:
                t = time.perf_counter()
                pool.record_games(a, b, **g)
                records[n].append(time.perf_counter() - t)
        elif batch:
            record_untimed(pool, batch)
        ids[n].append(entry.id)

    for n in sizes:  # untimed, to the size less the window
        while len(ids[n]) < n - window:
            grow(n, timed=False)
        print(f"pool of {n}: {len(ids[n])} snapshots built untimed [{time.perf_counter() - start:.0f} s]", flush=True)
    for _ in range(window):  # the timed windows, the pools taking turns
        for n in sizes:
            grow(n, timed=True)
    rows = []
    for n in sizes:
        path = os.path.join(root, f"pool-{n}")
        cold, played = [], 0
        for _ in range(3):
            seconds, snapshots, played = cold_payoff(path)
            cold.append(seconds)
        assert snapshots == n
        pools[n].payoff()
        t = time.perf_counter()
        pools[n].payoff()
        warm = time.perf_counter() - t
        row = {"snapshots": n, "games": played, "add_ms": 1e3 * statistics.mean(adds[n]),
               "add_p50_ms": 1e3 * statistics.median(adds[n]), "add_max_ms": 1e3 * max(adds[n]),
               "record_ms": 1e3 * statistics.mean(records[n]), "record_p50_ms": 1e3 * statistics.median(records[n]),
               "record_max_ms": 1e3 * max(records[n]), "timed_adds": len(adds[n]), "timed_records": len(records[n]),
               "payoff_cold_s": statistics.median(cold), "payoff_warm_s": warm}
        rows.append(row)
        print(f"{n:5d} snapshots  add {row['add_ms']:7.2f} ms (p50 {row['add_p50_ms']:6.2f}, max {row['add_max_ms']:6.2f})"
              f"  record_games {row['record_ms']:7.2f} ms (p50 {row['record_p50_ms']:6.2f}, max "
              f"{row['record_max_ms']:6.2f})  payoff() cold {row['payoff_cold_s']:6.3f} s, warm {warm:6.3f} s", flush=True)
    print(f"[{time.perf_counter() - start:.0f} s in all]")
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
    print(f"sizes {sizes}, each snapshot against the {args.against} before it, last {args.window} timed per size, "
          "the pools taking turns")
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
