"""Draw the benchmarks page's plots from the page's own tables (one home per figure).

    python docs/plots.py        # writes docs/_static/league_memory.png (needs matplotlib)
"""

from __future__ import annotations

import os
import re

HERE = os.path.dirname(os.path.abspath(__file__))


def league_table(text: str):
    """(snapshots, rllib_ext MB, RLlib MB) rows of the table under 'A self-play league'."""
    section = text[text.index("## A self-play league"):]
    rows = re.findall(r"^\| (\d+) \| (\d+) MB[^|]*\| (\d+) MB \|$", section, re.M)
    return [(int(n), int(ours), int(theirs)) for n, ours, theirs in rows]


def main() -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    with open(os.path.join(HERE, "benchmarks.md"), encoding="utf-8") as f:
        rows = league_table(f.read())
    n, ours, theirs = zip(*rows)
    fig, ax = plt.subplots(figsize=(6.4, 3.6), dpi=100)
    ax.plot(n, theirs, "o-", color="#c44e52", label="RLlib's pattern (one add_module per snapshot)")
    ax.plot(n, ours, "o-", color="#4c72b0", label="rllib_ext (2 slots)")
    ax.set_xlabel("snapshots in the pool")
    ax.set_ylabel("driver peak RSS (MB)")
    ax.set_ylim(0, max(theirs) * 1.1)
    ax.set_title("Self-play league memory (bench/league.py, 2026-11-30)")
    ax.grid(alpha=0.3)
    ax.legend(loc="upper left", fontsize=8)
    fig.tight_layout()
    out = os.path.join(HERE, "_static", "league_memory.png")
    fig.savefig(out)
    print(out)


if __name__ == "__main__":
    main()
