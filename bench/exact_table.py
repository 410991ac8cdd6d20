"""How much does the sampled payoff table cost the league's answer? The same snapshots, exact.

    python bench/exact_table.py POOL [--game kuhn_poker] [--of main]

For the pool a ``examples/poker_league.py`` run wrote (it prints ``pool: PATH``), computes
OpenSpiel's expected value for every pair of ``of``'s snapshots (both seats, averaged),
solves the Nash mixture of that exact table, and prints its exact exploitability beside
that of the pool's own answer (the Nash mixture of the sampled table) and the largest gap
between the sampled and the exact entries; then the same for one mixture per seat
(``meta_strategy_by_seat``: the sampled seat rows against the exact seat game).
"""

from __future__ import annotations

import argparse

import numpy as np


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("pool")
    parser.add_argument("--game", default="kuhn_poker")
    parser.add_argument("--of", default="main")
    args = parser.parse_args()
    import pyspiel
    from open_spiel.python.algorithms import expected_game_score

    # The exact tables are no pool's payoff table: zero_sum_nash solves them as the pool solves its own.
    from rllib_ext import MetaStrategyError, NumpyPolicy, PolicyPool, exploitability, tabular_policy, zero_sum_nash

    pool = PolicyPool(args.pool)
    game = pyspiel.load_game(args.game)
    entries = sorted(pool.entries(policy=args.of), key=lambda e: (e.iteration or 0, e.created))
    ids = [e.id for e in entries]
    policies = [NumpyPolicy.from_checkpoint(e.path) for e in entries]
    tables = [tabular_policy(game, p) for p in policies]
    n = len(ids)
    seat0 = np.array([[expected_game_score.policy_value(game.new_initial_state(), [tables[i], tables[j]])[0]
                       for j in range(n)] for i in range(n)])  # i as player 0 against j as player 1
    exact = (seat0 - seat0.T) / 2  # both seats, averaged (zero-sum: player 1 gets -seat0)
    sampled = pool.payoff(ids)
    gap = np.abs(sampled.value - exact)
    np.fill_diagonal(gap, 0.0)
    answer = pool.meta_strategy(of=args.of, solver="nash")
    mixtures = {"sampled table (the pool's answer)": np.array([answer.get(i, 0.0) for i in ids]),
                "exact table": zero_sum_nash(exact)[0]}  # symmetric: the row's mixture is the "nash" answer
    print(f"{n} snapshots of {args.of!r}; fewest games in a pair {int(np.min(sampled.games + np.eye(n) * 1e12))}; "
          f"largest |sampled - exact| entry {np.nanmax(gap):.3f}")
    for label, x in mixtures.items():
        mix = {policies[i]: float(p) for i, p in enumerate(x) if p > 1e-6}
        print(f"  Nash mixture of the {label:<34} support {int((x > 1e-3).sum()):2d}, "
              f"exploitability {exploitability(args.game, mix):.3f}")
    try:
        by_seat = pool.meta_strategy_by_seat(of=args.of)
    except MetaStrategyError as e:  # a pool without seat rows (written before them)
        print(f"  per seat: {e}")
        return
    seats = {"sampled seat rows (the pool's answer)": [np.array([by_seat[s].get(i, 0.0) for i in ids]) for s in sorted(by_seat, key=int)],
             "exact seat game": list(zero_sum_nash(seat0))}
    for label, (x, y) in seats.items():
        per_player = [{policies[i]: float(p) for i, p in enumerate(w) if p > 1e-6} for w in (x, y)]
        print(f"  per-seat Nash of the {label:<32} supports {int((x > 1e-3).sum())}, {int((y > 1e-3).sum())}, "
              f"exploitability {exploitability(args.game, per_player):.3f}")


if __name__ == "__main__":
    main()
