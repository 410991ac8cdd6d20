"""How good is the league's answer? OpenSpiel's exact exploitability over env steps, on poker.

    python bench/league_quality.py [--game kuhn_poker] [--steps 200000] [--seeds 0,1,2] [-- EXAMPLE ARGS]

Runs ``examples/poker_league.py`` once per seed (the league with its defaults and, beside it
on the other core, plain self-play at the same *total* of env steps: the league's counts its
evaluation games), prints each seed's figures, their mean ± standard error, both runs' env
steps per second, and draws the first seed's exploitability over env steps: the league's
meta-strategy (a Nash mixture of its snapshots per seat) and plain self-play's policy. Uniform random play is 0.458 on Kuhn and 2.374 on
Leduc; Nash is 0.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from typing import Any, Dict, List

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
UNIFORM = {"kuhn_poker": 0.458, "leduc_poker": 2.374}  # exploitability of uniform random play (OpenSpiel)


def run_seed(args: argparse.Namespace, seed: int) -> Dict[str, Any]:
    """One run of the example (league and self-play beside it) at ``seed``; its rows and figures."""
    log = os.path.join(tempfile.mkdtemp(prefix=f"league-quality-{seed}-"), "phases.jsonl")
    cmd = [sys.executable, os.path.join(HERE, "..", "examples", "poker_league.py"), "--game", args.game,
           "--steps", str(args.steps), "--log", log, "--seed", str(seed), *args.extra]
    print(f"seed {seed}: log {log}", flush=True)
    lines = []
    with subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True) as proc:  # progress shows as it runs
        for line in proc.stdout:
            print(line, end="", flush=True)
            lines.append(line)
    if proc.returncode:
        raise SystemExit(f"seed {seed}: {' '.join(cmd)} exited {proc.returncode}")
    return summarize(log, "".join(lines))


def summarize(log: str, out: str = "") -> Dict[str, Any]:
    """A run's rows and its final figures (the last league row, self-play's last row, the rates)."""
    rows = [json.loads(line) for line in open(log)]
    league = [r for r in rows if r["run"] == "league"]
    selfplay = [r for r in rows if r["run"] == "selfplay"]
    budget = re.search(r"^budget: training=(\d+) evaluation=(\d+) total=(\d+)$", out, re.M)
    last, sp = league[-1], selfplay[-1] if selfplay else None
    return {
        "league": league, "selfplay": selfplay, "answer": last["meta_strategy"], "one_mixture": last.get("one_mixture"),
        "selfplay_final": sp["final_main"] if sp else float("nan"),
        "training": int(budget.group(1)) if budget else last.get("training", last["steps"]),
        "evaluation": int(budget.group(2)) if budget else last.get("evaluation", 0),
        "league_rate": last["steps"] / max(last["seconds"], 1e-9),
        "selfplay_rate": sp["steps"] / max(sp["seconds"], 1e-9) if sp else float("nan"),
    }


def mean_se(values: List[float], digits: int = 3) -> str:
    """``mean ± standard error`` (the standard error of the mean over runs)."""
    a = np.asarray(values, float)
    se = a.std(ddof=1) / np.sqrt(len(a)) if len(a) > 1 else float("nan")
    return f"{a.mean():.{digits}f} ± {se:.{digits}f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--game", default="kuhn_poker", choices=sorted(UNIFORM))
    parser.add_argument("--steps", type=int, default=200_000, help="the total: training plus evaluation env steps")
    parser.add_argument("--seeds", default="0,1,2", help="comma-separated seeds, run one after the other")
    parser.add_argument("--out", default=os.path.join(HERE, "..", "docs", "_static", "league_quality.png"),
                        help="the PNG (default: the one the README and the docs show)")
    parser.add_argument("extra", nargs="*", help="more arguments for examples/poker_league.py (after --)")
    parser.add_argument("--replot", metavar="LOG", default=None,
                        help="print and draw a run's log again (its phases.jsonl) instead of running")
    args = parser.parse_args()
    t0 = time.time()
    seeds = [int(s) for s in args.seeds.split(",")]
    runs = [summarize(args.replot)] if args.replot else [run_seed(args, seed) for seed in seeds]
    took = "replotted" if args.replot else f"{time.time() - t0:.0f} s in all"
    print(f"\n{args.game}, a total of {args.steps} env steps per run, {took} "
          f"({time.strftime('%Y-%m-%d')}, {os.cpu_count()} cores)")
    print(f"{'seed':>5}  {'training':>9}  {'evaluation':>10}  {'league answer':>13}  {'one mixture':>11}  "
          f"{'self-play':>9}  {'league steps/s':>14}  {'self-play steps/s':>17}")
    for seed, r in zip(seeds if not args.replot else ["-"], runs):
        one = f"{r['one_mixture']:.3f}" if r["one_mixture"] is not None else "-"
        print(f"{seed:>5}  {r['training']:>9}  {r['evaluation']:>10}  {r['answer']:>13.3f}  {one:>11}  "
              f"{r['selfplay_final']:>9.3f}  {r['league_rate']:>14.0f}  {r['selfplay_rate']:>17.0f}")
    if len(runs) > 1:
        print(f"{'mean':>5}  {'':>9}  {'':>10}  {mean_se([r['answer'] for r in runs]):>13}  {'':>11}  "
              f"{mean_se([r['selfplay_final'] for r in runs]):>9}  "
              f"{mean_se([r['league_rate'] for r in runs], 0):>14}  {mean_se([r['selfplay_rate'] for r in runs], 0):>17}")
        print("(mean ± standard error over the seeds; rates: env steps per second, the league's counting "
              "its evaluation games)")
    plot(args, runs[0])


def plot(args: argparse.Namespace, run: Dict[str, Any]) -> None:
    """Exploitability over env steps (the league's total) for one run: the league's answer and self-play's."""
    league, selfplay = run["league"], run["selfplay"]
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("(no plot: pip install 'rllib_ext[plot]')")
        return
    fig, ax = plt.subplots(figsize=(7, 4))
    ax.plot([r["steps"] for r in league], [r["meta_strategy"] for r in league], "o-",
            label="league: meta-strategy (Nash mixture per seat)")
    ax.plot([r["steps"] for r in selfplay], [r["final_main"] for r in selfplay], "s--", label="plain self-play")
    ax.axhline(UNIFORM[args.game], color="grey", lw=0.8, label="uniform random")
    ax.set_xlabel("env steps, training plus evaluation")
    ax.set_ylabel("exploitability (OpenSpiel, exact)")
    ax.set_title(f"{args.game}: league vs plain self-play, PPO ({time.strftime('%Y-%m-%d')})")
    ax.set_ylim(0, UNIFORM[args.game] * 1.45)
    ax.legend(loc="upper right", fontsize="small")
    fig.tight_layout()
    fig.savefig(args.out, dpi=100)
    print(f"plot: {args.out}")


if __name__ == "__main__":
    main()
