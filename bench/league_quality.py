"""How good is the league's answer? OpenSpiel's exact exploitability over env steps, on poker.

    python bench/league_quality.py [--game kuhn_poker] [--steps 100000] [--out docs/_static/league_quality.png]

Runs ``examples/poker_league.py`` (the league with its defaults and, beside it on the other
core, plain self-play at the same env-step budget), keeps one line per phase (``--log``), prints the figures side by side
and draws exploitability over env steps: the league's meta-strategy (a Nash mixture of its
snapshots per seat) and plain self-play's policy. Uniform random play is 0.458 on Kuhn and 2.374 on
Leduc; Nash is 0.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
UNIFORM = {"kuhn_poker": 0.458, "leduc_poker": 2.374}  # exploitability of uniform random play (OpenSpiel)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--game", default="kuhn_poker", choices=sorted(UNIFORM))
    parser.add_argument("--steps", type=int, default=100_000)
    parser.add_argument("--out", default=os.path.join(HERE, "..", "docs", "_static", "league_quality.png"),
                        help="the PNG (default: the one the README and the docs show)")
    parser.add_argument("extra", nargs="*", help="more arguments for examples/poker_league.py (after --)")
    parser.add_argument("--replot", metavar="LOG", default=None,
                        help="print and draw a run's log again (its phases.jsonl) instead of running")
    args = parser.parse_args()
    log = args.replot or os.path.join(tempfile.mkdtemp(prefix="league-quality-"), "phases.jsonl")
    t0 = time.time()
    if not args.replot:
        cmd = [sys.executable, os.path.join(HERE, "..", "examples", "poker_league.py"), "--game", args.game,
               "--steps", str(args.steps), "--log", log, *args.extra]
        print(f"log: {log}", flush=True)
        subprocess.run(cmd, check=True)
    rows = [json.loads(line) for line in open(log)]
    league = [r for r in rows if r["run"] == "league"]
    selfplay = [r for r in rows if r["run"] == "selfplay"]
    took = "replotted" if args.replot else f"{time.time() - t0:.0f} s in all"
    print(f"\n{args.game}, {args.steps} env steps, {took} "
          f"({time.strftime('%Y-%m-%d')}, {os.cpu_count()} cores)")
    print(f"{'env steps':>10}  {'league meta-strategy':>21}  {'one mixture, both seats':>24}  {'self-play main':>15}")
    by_steps = {r["steps"]: r["final_main"] for r in selfplay}
    for r in league:
        near = min(by_steps, key=lambda s: abs(s - r["steps"])) if by_steps else None
        sp = f"{by_steps[near]:.3f}" if near is not None else "-"
        one = f"{r['one_mixture']:.3f}" if "one_mixture" in r else "-"  # logs before the per-seat answer
        print(f"{r['steps']:>10}  {r['meta_strategy']:>21.3f}  {one:>24}  {sp:>15}")
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
    ax.set_xlabel("env steps")
    ax.set_ylabel("exploitability (OpenSpiel, exact)")
    ax.set_title(f"{args.game}: league vs plain self-play, PPO ({time.strftime('%Y-%m-%d')})")
    ax.set_ylim(0, UNIFORM[args.game] * 1.45)
    ax.legend(loc="upper right", fontsize="small")
    fig.tight_layout()
    fig.savefig(args.out, dpi=100)
    print(f"plot: {args.out}")


if __name__ == "__main__":
    main()
