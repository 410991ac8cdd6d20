"""How good is the league's answer? OpenSpiel's exact exploitability over env steps, on poker.

    python bench/league_quality.py [--game kuhn_poker] [--steps 100000] [--out bench/league_quality.png]

Runs ``examples/poker_league.py`` (the league with its defaults, then plain self-play at the
same env-step budget), keeps one line per phase (``--log``), prints the figures side by side
and draws exploitability over env steps: the league's meta-strategy (the Nash mixture of its
pool) and plain self-play's policy. Uniform random play is 0.458 on Kuhn; Nash is 0.
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--game", default="kuhn_poker")
    parser.add_argument("--steps", type=int, default=100_000)
    parser.add_argument("--out", default=os.path.join(HERE, "league_quality.png"))
    parser.add_argument("extra", nargs="*", help="more arguments for examples/poker_league.py (after --)")
    args = parser.parse_args()
    log = os.path.join(tempfile.mkdtemp(prefix="league-quality-"), "phases.jsonl")
    t0 = time.time()
    cmd = [sys.executable, os.path.join(HERE, "..", "examples", "poker_league.py"), "--game", args.game,
           "--steps", str(args.steps), "--log", log, *args.extra]
    subprocess.run(cmd, check=True)
    rows = [json.loads(line) for line in open(log)]
    league = [r for r in rows if r["run"] == "league"]
    selfplay = [r for r in rows if r["run"] == "selfplay"]
    print(f"\n{args.game}, {args.steps} env steps, {time.time() - t0:.0f} s in all "
          f"({time.strftime('%Y-%m-%d')}, {os.cpu_count()} cores)")
    print(f"{'env steps':>10}  {'league meta-strategy':>21}  {'self-play main':>15}")
    by_steps = {r["steps"]: r["final_main"] for r in selfplay}
    for r in league:
        near = min(by_steps, key=lambda s: abs(s - r["steps"])) if by_steps else None
        sp = f"{by_steps[near]:.3f}" if near is not None else "-"
        print(f"{r['steps']:>10}  {r['meta_strategy']:>21.3f}  {sp:>15}")
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("(no plot: pip install 'rllib_ext[plot]')")
        return
    fig, ax = plt.subplots(figsize=(7, 4))
    ax.plot([r["steps"] for r in league], [r["meta_strategy"] for r in league], "o-",
            label="league: meta-strategy (Nash mixture of the pool)")
    ax.plot([r["steps"] for r in selfplay], [r["final_main"] for r in selfplay], "s--", label="plain self-play")
    ax.axhline(0.458 if args.game == "kuhn_poker" else float("nan"), color="grey", lw=0.8, label="uniform random")
    ax.set_xlabel("env steps")
    ax.set_ylabel("exploitability (OpenSpiel, exact)")
    ax.set_title(f"{args.game}: PSRO league vs self-play, PPO oracle")
    ax.set_ylim(bottom=0)
    ax.legend()
    fig.tight_layout()
    fig.savefig(args.out, dpi=100)
    print(f"plot: {args.out}")


if __name__ == "__main__":
    main()
