"""How much do duplicate evaluation matches save? The error of a pair's value, with and without.

    python bench/duplicate_matches.py POOL [--games 1000] [--repeats 12]

For three pairs of the pool's ``main`` snapshots (an early and a late one, two late ones,
the first and the last), plays ``--repeats`` matches of ``--games`` games each way the
league can (``evaluation={"duplicate": True}``, the default: the two games of a pair dealt
the same cards with the seats swapped; ``False``: independent games) and prints the mean
and the standard deviation of the pair's value, and the games per second. The ratio of
the variances is how many times fewer games duplicate matches need for the same error.
Kuhn poker through ``rllib_ext.envs.OpenSpielGame``; no Ray cluster.
"""

from __future__ import annotations

import argparse
import time

import numpy as np


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("pool")
    parser.add_argument("--games", type=int, default=1000)
    parser.add_argument("--repeats", type=int, default=12)
    args = parser.parse_args()
    from rllib_ext import PolicyPool
    from rllib_ext.envs import OpenSpielGame, seat_mapping
    # TODO(public API): playing evaluation matches between two pool entries outside a
    # running league (what league(evaluation=...) does each iteration) is not public yet.
    from rllib_ext.live.league.evaluation import EvaluationSpec, Matches

    pool = PolicyPool(args.pool)
    ids = [e.id for e in sorted(pool.entries(policy="main"), key=lambda e: (e.iteration or 0, e.created))]

    class Config:  # what Matches reads of an algorithm
        policy_mapping_fn = staticmethod(seat_mapping("main", ["opponent_0"]))
        env_config = {"game": "kuhn_poker", "illegal_penalty": False}

    class Algo:
        config = Config()
        env_creator = staticmethod(OpenSpielGame)

    n = len(ids)
    print(f"{n} snapshots; {args.repeats} matches of {args.games} games per pair and mode")
    print(f"{'pair':<12} {'mode':<12} {'mean':>8} {'sd':>8} {'games/s':>8}  variance ratio")
    for i, j in ((min(3, n - 1), n // 2), (n - 1, max(0, n - 5)), (0, n - 1)):
        sds = {}
        for duplicate in (False, True):
            matches = Matches(Algo(), EvaluationSpec(duplicate=duplicate), "main", None, seed=0)
            t0, values = time.time(), []
            for _ in range(args.repeats):
                _, _, _, ret_a, _ = matches.match(pool, ids[i], ids[j], args.games).tallies[(ids[i], ids[j])]
                values.append(ret_a / args.games)
            rate = args.repeats * args.games / (time.time() - t0)
            sds[duplicate] = float(np.std(values, ddof=1))
            mode = "duplicate" if duplicate else "independent"
            ratio = f"  x{(sds[False] / sds[True]) ** 2:.1f}" if duplicate else ""
            print(f"{i:>2} vs {j:<6} {mode:<12} {np.mean(values):8.4f} {sds[duplicate]:8.4f} {rate:8.0f}{ratio}")


if __name__ == "__main__":
    main()
