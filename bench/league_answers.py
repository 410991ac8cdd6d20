"""Which answer would a finished league have given? Its snapshots judged several ways, after the run.

    python bench/league_answers.py --game leduc_poker POOL [SELFPLAY_POOL]

For the ``main`` snapshots of ``POOL`` (what ``examples/poker_league.py`` prints as
``pool: PATH``), OpenSpiel's exact exploitability of:

- the Nash mixture per seat solved from the pool's own (sampled) table: the league's answer;
- the Nash mixture per seat of the restricted game with *exact* payoffs, computed by
  OpenSpiel over the whole game tree (no sampling, no env steps charged: a bound on what a
  perfect table could give with these snapshots, not a recipe);
- all snapshots alike (``meta_strategy(solver="uniform")``), the trained ones alike (all but
  the untrained ``main`` of iteration 0 that seeds the population: the example's
  ``--answer uniform``), and the newer half alike;
- each snapshot alone.

With ``SELFPLAY_POOL`` (``selfplay pool: PATH``), also plain self-play's final snapshot
and its snapshots all alike (fictitious play's average). Ray-free; one core, seconds on
Kuhn, about a minute on Leduc.
"""

from __future__ import annotations

import argparse
import json
import time
from typing import Dict, List, Sequence

import numpy as np

from rllib_ext import MetaStrategyError, NumpyPolicy, PolicyPool, exploitability, tabular_policy, zero_sum_nash


def mixture(policies: Sequence[NumpyPolicy], weights: Sequence[float]) -> Dict[NumpyPolicy, float]:
    return {p: float(w) for p, w in zip(policies, weights) if w > 1e-9}


def exact_payoffs(game: str, policies: Sequence[NumpyPolicy]) -> np.ndarray:
    """``[i, j]``: player 0's expected return with snapshot i in seat 0 and j in seat 1 (OpenSpiel)."""
    import pyspiel
    from open_spiel.python.algorithms import expected_game_score

    loaded = pyspiel.load_game(game)
    tables = [tabular_policy(loaded, p) for p in policies]
    root = loaded.new_initial_state()
    return np.array([[expected_game_score.policy_value(root, [a, b])[0] for b in tables] for a in tables])


def judge(game: str, pool_dir: str, selfplay_dir: str = "") -> Dict[str, object]:
    pool = PolicyPool(pool_dir, create=False)
    entries = sorted((e for e in pool.entries() if e.policy == "main"), key=lambda e: (e.iteration or 0, e.created))
    ids = [e.id for e in entries]
    policies = [NumpyPolicy.from_checkpoint(e.path) for e in entries]
    n, out = len(ids), {"snapshots": len(ids)}  # type: Dict[str, object]
    t0 = time.time()
    x, y = zero_sum_nash(exact_payoffs(game, policies))
    out["exact_payoffs_seconds"] = round(time.time() - t0, 1)
    out["exact_nash_per_seat"] = exploitability(game, [mixture(policies, x), mixture(policies, y)])
    try:
        seats = pool.meta_strategy_by_seat(of="main")
        out["table_nash_per_seat"] = exploitability(
            game, [mixture(policies, [seats[s].get(i, 0.0) for i in ids]) for s in sorted(seats, key=int)])
    except MetaStrategyError as e:  # a pool without seat games
        out["table_nash_per_seat"] = f"none: {e}"
    out["all_alike"] = exploitability(game, mixture(policies, np.ones(n)))
    trained = [(e.iteration or 0) > 0 for e in entries]
    out["trained_alike"] = exploitability(game, mixture(policies, np.array(trained, dtype=float)))
    out["newer_half_alike"] = exploitability(game, mixture(policies, np.r_[np.zeros(n - n // 2), np.ones(n // 2)]))
    out["each_alone"] = [round(exploitability(game, {p: 1.0}), 3) for p in policies]
    if selfplay_dir:
        own: List[NumpyPolicy] = [NumpyPolicy.from_checkpoint(e.path) for e in sorted(
            PolicyPool(selfplay_dir, create=False).entries(), key=lambda e: (e.iteration or 0, e.created))]
        out["selfplay_final"] = exploitability(game, {own[-1]: 1.0})
        out["selfplay_all_alike"] = exploitability(game, mixture(own, np.ones(len(own))))
        out["selfplay_snapshots"] = len(own)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--game", default="kuhn_poker", choices=["kuhn_poker", "leduc_poker"])
    parser.add_argument("pool", help="the league's pool (examples/poker_league.py prints it as 'pool: PATH')")
    parser.add_argument("selfplay", nargs="?", default="", help="plain self-play's pool ('selfplay pool: PATH')")
    args = parser.parse_args()
    got = judge(args.game, args.pool, args.selfplay)
    print(json.dumps({k: round(v, 3) if isinstance(v, float) else v for k, v in got.items()}, indent=1))


if __name__ == "__main__":
    main()
