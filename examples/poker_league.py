"""A league that converges on poker, judged by OpenSpiel: PSRO with an RLlib PPO oracle.

    python examples/poker_league.py [--game kuhn_poker|leduc_poker] [--steps 200000] [--pool DIR]

``--steps`` is the **total** budget in env steps: training (every learner's samples) plus
every evaluation game, which costs an env step per move exactly as training does. The
league stops once it has spent it, and plain self-play gets the same total.

1. ``main`` (PPO, new API stack) plays OpenSpiel's poker through RLlib's own ``OpenSpielEnv``
   against four frozen slots, two per seat. Each slot is drawn from the **Nash mixture of
   the pool's payoff table** over ``main``'s snapshots for the seat its opponent plays
   (``sample="nash"``, ``slot_seats=``), so ``main`` trains as a best response to it in
   each seat; it restarts from its initial weights every ``--phase`` env steps
   (``reset_every``): each phase is a fresh best response, as in PSRO, and by default its
   end is the one snapshot of the phase. Evaluation matches between the snapshots fill
   the table (least-played pairs first, ``--games`` per pair, each snapshot against itself
   too), in the driver, with numpy copies of the snapshots. They are duplicate matches:
   the two games of a pair are dealt the same cards with the seats swapped, so the deal's
   luck cancels (``bench/notes/kuhn_psro.md``). Every pair gets ``--floor-games``; only
   the pairs within the Nash support and the newest snapshot go on to ``--games``, and
   evaluation stops while it has spent more than ``--eval-share`` of all env steps.
   ``--remote-eval`` plays the matches as Ray tasks instead, overlapping training; on a
   2-core machine they then compete for the second core with plain self-play, so the
   comparison's timings mean little unless ``--no-selfplay`` is given.
2. The league's answer is its meta-strategy per seat: ``pool.meta_strategy_by_seat(of="main")``,
   a Nash mixture of the snapshots for the first player and one for the second (poker's
   seats differ), one snapshot drawn per episode from the mixture of the seat it sits in.
   OpenSpiel computes its exploitability exactly, that of the one mixture for both seats
   (``pool.meta_strategy``) and that of the final ``main`` alone. Plain self-play (one PPO
   policy in both seats, the same oracle settings) trains beside it on the other core, at
   the same total of env steps, for comparison; its snapshots go into a pool of its own,
   and those snapshots are what is judged.

It prints ``pool: PATH`` (the league's), ``selfplay pool: PATH`` and, at the end,
``budget: training=N evaluation=M total=T`` (the league's, as its pool records it).

The recipes that beat plain self-play's final policy at the same total on three seeds
(``bench/notes/league_budget.md``): self-play on disk answered by the average of what it
trained, ``--phase 0 --self-share 1.0 --entropy 0.01 --answer uniform --eval-share 0.01``
with ``--snapshot-every 2000`` on Kuhn (0.062 against 0.201) and ``--snapshot-every 20000
--game leduc_poker --steps 300000`` on Leduc (0.657 against 0.871).

Another recipe, self-play on disk: ``--sample latest --phase 0 --snapshot-every 5000``
trains ``main`` continuously against its latest snapshot and answers with the Nash
mixtures of its own snapshots. It depends much more on the seed (Kuhn, 100k training
steps and ~5000 evaluation games per pair, which were not counted then: from 0.055 to
0.125 on three runs), so it is not the default.

Uniform random play is 0.458 exploitable on Kuhn; the Nash equilibrium 0. Figures with
date and command: docs (benchmarks page), from ``python bench/league_quality.py``.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from typing import Any, Dict, Optional

ANSWERS = {"nash": "Nash mixture per seat", "uniform": "trained snapshots alike"}
SLOTS = ["opponent_0", "opponent_1", "opponent_2", "opponent_3"]
# The seat each slot's opponent plays: slots are drawn from the Nash mixture of their seat
# (league(slot_seats=...)), so main trains as a best response to the per-seat answer.
SLOT_SEATS = {"opponent_0": "0", "opponent_1": "1", "opponent_2": "0", "opponent_3": "1"}


def oracle(config: Any, args: argparse.Namespace) -> Any:
    """The PPO settings both runs share: many small updates (``--lr``, ``--epochs``,
    ``--entropy``), no discount (poker's only reward is at the end), separate value network; the legal actions masked in the
    policy (``--no-mask``: RLlib's substitution of a random legal action instead)."""
    from ray.rllib.core.rl_module.default_model_config import DefaultModelConfig
    from ray.rllib.core.rl_module.rl_module import RLModuleSpec

    from rllib_ext.envs import OpenSpielGame
    from rllib_ext.masking import MaskedPPOTorchRLModule

    if args.mask:  # the observation carries the legal actions; the module masks the rest
        config = config.rl_module(rl_module_spec=RLModuleSpec(module_class=MaskedPPOTorchRLModule))
    return (
        # No -0.1 for an illegal action (Leduc's extra raise): the payoffs stay zero-sum, as
        # the Nash meta-solver needs; unmasked, the env still substitutes a random legal action.
        config.environment(OpenSpielGame, env_config={"game": args.game, "illegal_penalty": False,
                                                      "action_mask": args.mask,
                                                      "information_state": args.information_state})
        # episodes_to_numpy=False: RLlib 2.60 numpy-izes finished episodes quadratically
        # (patches/0005); poker episodes are 2-5 steps, thousands per sample() call.
        .env_runners(num_env_runners=0, episodes_to_numpy=False)
        .learners(num_learners=0)
        .training(lr=args.lr, train_batch_size_per_learner=args.batch, minibatch_size=128, num_epochs=args.epochs,
                  gamma=1.0, entropy_coeff=args.entropy)
        .rl_module(model_config=DefaultModelConfig(fcnet_hiddens=[64, 64], vf_share_layers=False))
        .debugging(seed=args.seed)
    )


def report_every(args: argparse.Namespace) -> int:
    """Iterations between two reports, the same for both runs: a phase (20k env steps without one)."""
    return max(1, (args.phase or 20_000) // args.batch)


def env_steps(result: Dict[str, Any]) -> int:
    """Training env steps so far (plain self-play spends nothing else)."""
    return int(result["env_runners"]["num_env_steps_sampled_lifetime"])


def total_steps(result: Dict[str, Any]) -> int:
    """The league's env steps so far: training plus evaluation games."""
    return int(result["rllib_ext"]["league_budget"]["total_env_steps"])


def exploitability_of(game: str, mixture: Dict[str, Any], pool: Any, loaded: Optional[Dict[str, Any]] = None) -> float:
    """OpenSpiel's exact exploitability of ``{snapshot id: probability}`` from ``pool``, or of
    ``{seat: {snapshot id: probability}}`` (seats are the players ``"0"``, ``"1"``).
    ``loaded`` caches the snapshots read, across the calls that share it."""
    from rllib_ext import NumpyPolicy
    from rllib_ext import exploitability

    policies: Dict[str, Any] = {} if loaded is None else loaded

    def policy(i: str) -> Any:
        if i not in policies:
            policies[i] = NumpyPolicy.from_checkpoint(pool.get(i).path)
        return policies[i]

    def members(mix: Dict[str, float]) -> Dict[Any, float]:
        return {policy(i): p for i, p in mix.items() if p > 0}

    if all(isinstance(v, dict) for v in mixture.values()):
        return exploitability(game, [members(mixture[seat]) for seat in sorted(mixture, key=int)])
    return exploitability(game, members(mixture))


def answers(args: argparse.Namespace, pool: Any, untrained: str = "") -> Dict[str, Any]:
    """The league's answers: one Nash mixture for both seats and one per seat, solved from its
    table, and the snapshots training produced all alike (every one but ``untrained``, the
    initial ``main`` that seeds the population: PSRO's uniform meta-solver, fictitious play's
    average, of what was trained; self-play's pool holds no untrained snapshot either)."""
    from rllib_ext import MetaStrategyError

    one = pool.meta_strategy(of="main", solver="nash")
    try:
        per_seat = pool.meta_strategy_by_seat(of="main")
    except MetaStrategyError:  # no seat games yet (the first snapshots)
        per_seat = None
    loaded: Dict[str, Any] = {}  # each snapshot read once for the three answers
    nash = exploitability_of(args.game, per_seat or one, pool, loaded)
    trained = {i: p for i, p in pool.meta_strategy(of="main", solver="uniform").items() if i != untrained}
    uniform = exploitability_of(args.game, trained or {untrained: 1.0}, pool, loaded)
    return {"snapshots": len(one), "mixture": one, "per_seat": per_seat,
            "one_mixture": exploitability_of(args.game, one, pool, loaded), "nash": nash, "uniform": uniform,
            "meta_strategy": uniform if args.answer == "uniform" else nash}


def league(args: argparse.Namespace, log: Optional[Any]) -> Dict[str, float]:
    """Train the league; return the exploitability of its meta-strategy and of its final main."""
    from rllib_ext import PolicyPool, PPOPartialConfig
    from rllib_ext.envs import seat_mapping

    every = max(1, args.snapshot_every // args.batch)
    phase = max(every, args.phase // args.batch) if args.phase else None  # None: main is never reset
    report = report_every(args)
    seats = SLOT_SEATS if args.sample == "nash" and not args.one_mixture else None
    config = (
        oracle(PPOPartialConfig(), args)
        .multi_agent(policies={"main", *SLOTS}, policies_to_train=["main"],
                     policy_mapping_fn=seat_mapping("main", SLOTS, slot_seats=seats, self_share=args.self_share))
        .snapshot_policies(args.pool, ["main"], every=every)
        .league(args.pool, of="main", slots=SLOTS, sample=args.sample, refresh_every=1, seed=args.seed,
                reset_every=phase, slot_seats=seats,
                evaluation={"games": min(args.chunk, args.games), "min_games": args.games, "pairs": 10_000,
                            "focus": "support", "floor_games": min(args.floor_games, args.games),
                            "max_share": args.eval_share, "remote": args.remote_eval, "num_cpus": args.eval_cpus})
    )
    algo = config.build_algo()
    pool = PolicyPool(args.pool)
    untrained = algo.snapshot_policy("main", pool).id  # the population's first member
    t0, steps = time.time(), 0
    got: Optional[Dict[str, Any]] = None  # the last report's answers: the final ones
    try:
        while steps < args.steps:
            result = algo.train()
            steps = total_steps(result)
            if steps >= args.steps and not result["rllib_ext"].get("snapshots"):
                algo.snapshot_policy("main", pool)  # the last of the budget's training is in the pool too
            if algo.iteration % report == 0 or steps >= args.steps:
                got = answers(args, pool, untrained)
                budget = result["rllib_ext"]["league_budget"]
                row = {"run": "league", "steps": steps, "training": budget["training_env_steps"],
                       "evaluation": budget["evaluation_env_steps"], "seconds": round(time.time() - t0, 1),
                       "snapshots": got["snapshots"], "meta_strategy": got["meta_strategy"],
                       "one_mixture": got["one_mixture"], "nash": got["nash"], "uniform": got["uniform"]}
                print(f"league  {steps:7d} steps ({row['evaluation']:6d} of them evaluation)  {row['seconds']:6.0f} s  "
                      f"{row['snapshots']:3d} snapshots; exploitability of the Nash mixture per seat "
                      f"{row['nash']:.3f}, of one for both seats {row['one_mixture']:.3f}, of the trained alike "
                      f"{row['uniform']:.3f}", flush=True)
                if log:
                    log.write(json.dumps(row) + "\n")
    finally:
        algo.stop()
    if got is None:  # no iteration ran (--steps 0); otherwise the last one reported, and stop() adds nothing
        got = answers(args, pool, untrained)
    latest = max((e for e in pool.entries() if e.policy == "main"), key=lambda e: (e.iteration or 0, e.created))
    print("meta-strategy (snapshot: probability):")
    for seat, mix in (got["per_seat"] or {"both seats": got["mixture"]}).items():
        print(f"  player {seat}:" if got["per_seat"] else "  both seats:")
        for entry_id, p in mix.items():
            if p > 1e-3:
                print(f"    {entry_id}: {p:.3f}")
    return {"meta_strategy": got["meta_strategy"], "one_mixture": got["one_mixture"], "nash": got["nash"],
            "uniform": got["uniform"],
            "final_main": exploitability_of(args.game, {latest.id: 1.0}, pool)}


def self_play(args: argparse.Namespace) -> Dict[str, Any]:
    """Plain self-play at the same total: one PPO policy in both seats, all of the budget
    spent on training. Each report snapshots ``main`` into the self-play pool and judges that
    snapshot. Returns its final exploitability and one row per report (it runs as a Ray task
    beside the league, whose prints would not reach the driver)."""
    from rllib_ext import PolicyPool, PPOPartialConfig

    config = oracle(PPOPartialConfig(), args).multi_agent(policies={"main"}, policy_mapping_fn=lambda *a, **k: "main")
    algo = config.build_algo()
    pool = PolicyPool(args.selfplay_pool)
    t0, steps, final, rows = time.time(), 0, float("nan"), []
    try:
        while steps < args.steps:
            steps = env_steps(algo.train())
            if algo.iteration % report_every(args) == 0 or steps >= args.steps:
                entry = algo.snapshot_policy("main", pool)
                final = exploitability_of(args.game, {entry.id: 1.0}, pool)
                rows.append({"run": "selfplay", "steps": steps, "seconds": round(time.time() - t0, 1),
                             "snapshot": entry.id, "final_main": final})
    finally:
        algo.stop()
    return {"final_main": final, "rows": rows, "steps": steps}


def main(argv: Optional[list] = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--game", default="kuhn_poker", choices=["kuhn_poker", "leduc_poker"])
    parser.add_argument("--steps", type=int, default=200_000,
                        help="total env steps (training plus evaluation games), for the league and for self-play")
    parser.add_argument("--pool", default=None, help="the league pool's directory (default: a new temporary one)")
    parser.add_argument("--selfplay-pool", default=None,
                        help="plain self-play's pool (default: 'selfplay' beside the league's)")
    parser.add_argument("--phase", type=int, default=20_000,
                        help="env steps per best-response phase (0: main is never reset)")
    parser.add_argument("--self-share", type=float, default=0.0,
                        help="share of main's training episodes against itself (the rest against the slots)")
    parser.add_argument("--sample", default="nash", help="how the slots are drawn (the league's sample=)")
    parser.add_argument("--snapshot-every", type=int, default=20_000,
                        help="env steps between snapshots (default: one per phase, its best response)")
    parser.add_argument("--batch", type=int, default=1_000, help="env steps per training iteration")
    parser.add_argument("--lr", type=float, default=3e-3)
    parser.add_argument("--entropy", type=float, default=0.0, help="PPO's entropy_coeff (both runs)")
    parser.add_argument("--epochs", type=int, default=10, help="PPO's num_epochs per iteration (both runs)")
    parser.add_argument("--games", type=int, default=2_000,
                        help="evaluation games per pair within the Nash support (and the newest snapshot)")
    parser.add_argument("--floor-games", type=int, default=100, help="evaluation games of every other pair")
    parser.add_argument("--chunk", type=int, default=200, help="evaluation games per pair and round")
    parser.add_argument("--eval-share", type=float, default=0.3,
                        help="evaluation stops while it has spent more than this share of all env steps")
    parser.add_argument("--remote-eval", action="store_true",
                        help="play the evaluation matches as Ray tasks, overlapping training (default: in the "
                             "driver, between iterations); on 2 cores they compete with plain self-play, which "
                             "holds the other one (--no-selfplay frees it)")
    parser.add_argument("--eval-cpus", type=float, default=1.0, help="CPUs per remote evaluation match")
    parser.add_argument("--no-mask", dest="mask", action="store_false",
                        help="unmasked policies: an illegal action is replaced by a random legal one (RLlib's "
                             "OpenSpielEnv); by default the policies mask the illegal actions themselves")
    parser.add_argument("--information-state", action="store_true",
                        help="observe the information-state tensor (the player's whole history) instead of the "
                             "observation tensor, which on Leduc folds 936 information states into 516 observations")
    parser.add_argument("--answer", choices=sorted(ANSWERS), default="nash",
                        help="the league's answer: the Nash mixture of its snapshots per seat, or all of them alike")
    parser.add_argument("--one-mixture", action="store_true",
                        help="draw every slot from one Nash mixture for both seats (default: per seat)")
    parser.add_argument("--no-selfplay", action="store_true", help="skip the plain self-play comparison")
    parser.add_argument("--log", default=None, help="append one JSON line per phase here")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    args.pool = os.path.abspath(args.pool or os.path.join(tempfile.mkdtemp(prefix="poker-league-"), "pool"))
    args.selfplay_pool = os.path.abspath(args.selfplay_pool or os.path.join(os.path.dirname(args.pool), "selfplay"))
    # One thread per process (set before numpy, torch and Ray start; torch and the Ray task's
    # worker read it too): the league and the self-play baseline each own one core; BLAS
    # threads spinning on both halved the pace.
    for name in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ.setdefault(name, "1")

    import ray

    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False)
    log = open(args.log, "a") if args.log else None
    try:
        print(f"pool: {args.pool}", flush=True)
        if not args.no_selfplay:
            print(f"selfplay pool: {args.selfplay_pool}", flush=True)
        # Plain self-play trains beside the league, on the other core (a Ray task).
        baseline = None if args.no_selfplay else ray.remote(num_cpus=1)(self_play).remote(args)
        got = league(args, log)
        if baseline is not None:
            baseline = ray.get(baseline)
            for row in baseline["rows"]:
                print(f"selfplay {row['steps']:7d} steps  {row['seconds']:6.0f} s  main's exploitability "
                      f"{row['final_main']:.3f}")
                if log:
                    log.write(json.dumps(row) + "\n")
    finally:
        if log:
            log.close()
        ray.shutdown()
    from rllib_ext import PolicyPool

    spent = PolicyPool(args.pool).budget()
    print(f"\nexploitability on {args.game} after {spent.total_env_steps} env steps in all (OpenSpiel, exact; "
          f"uniform random {'0.458' if args.game == 'kuhn_poker' else '2.374'}, Nash 0):")
    print(f"  league meta-strategy ({ANSWERS[args.answer]:<33}) {got['meta_strategy']:.3f}")
    print(f"  league Nash mixture per seat                     {got['nash']:.3f}")
    print(f"  league Nash mixture for both seats               {got['one_mixture']:.3f}")
    print(f"  league trained snapshots alike                   {got['uniform']:.3f}")
    print(f"  league final main                                {got['final_main']:.3f}")
    if baseline is not None:
        print(f"  plain self-play final main ({baseline['steps']} env steps)  {baseline['final_main']:.3f}")
    print(spent.line())


if __name__ == "__main__":
    main()
