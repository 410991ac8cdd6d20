"""A policy pool as a picture: its payoff table as a heatmap, its ratings over iterations.

matplotlib (the ``plot`` extra) is imported inside :func:`plot_pool`, without pyplot (no
global figure state, no display needed).
"""

from __future__ import annotations

import os
from typing import Dict, List, Protocol, Tuple

import numpy as np

from ..errors import MissingDependencyError
from .index import PoolEntry
from .payoff import Payoff

MAX_LABELLED = 16  # cells get their value written in when the table is at most this wide


class _Pool(Protocol):
    """What a plot reads of a :class:`~.policy_pool.PolicyPool`."""

    def payoff(self) -> Payoff: ...
    def entries(self) -> List[PoolEntry]: ...


def plot_pool(pool: _Pool, out: "str | os.PathLike[str]") -> str:
    """Write a PNG (or any format matplotlib infers from ``out``) of ``pool``; returns its path.

    Left: ``value`` (the row's mean return per game against the column), unplayed pairs
    grey. Right: each snapshot's Elo rating by the iteration it was taken at (its order
    in the pool when it has no iteration), one line per policy.

    Raises:
        MissingDependencyError: matplotlib is not installed.
    """
    try:
        from matplotlib.figure import Figure
    except ImportError as e:
        raise MissingDependencyError("rllib-ext pool --plot needs matplotlib (pip install 'rllib_ext[plot]')") from e
    payoff, entries = pool.payoff(), pool.entries()
    n = len(payoff)
    table_width = 3.5 + 0.4 * n  # inches: the labels, the cells, the colour bar
    fig = Figure(figsize=(table_width + 5, max(4.5, 2.5 + 0.4 * n)), layout="constrained")
    heat, ratings = fig.subplots(1, 2, width_ratios=[table_width, 5])
    value = payoff.value
    finite = value[np.isfinite(value)]
    vmax = float(np.max(np.abs(finite))) if finite.size else 1.0
    cmap = _cmap()
    image = heat.imshow(np.ma.masked_invalid(value), cmap=cmap, vmin=-(vmax or 1.0), vmax=vmax or 1.0)
    fig.colorbar(image, ax=heat, shrink=0.8, label="row's mean return per game")
    heat.set_xticks(range(n), payoff.ids, rotation=90, fontsize=7)
    heat.set_yticks(range(n), payoff.ids, fontsize=7)
    heat.set_title(f"payoff table ({int(payoff.games.sum()) // 2:,} games)")
    if n <= MAX_LABELLED:
        for i in range(n):
            for j in range(n):
                if np.isfinite(value[i, j]):
                    dark = abs(value[i, j]) > 0.6 * (vmax or 1.0)
                    heat.text(j, i, f"{value[i, j]:.2g}", ha="center", va="center", fontsize=6,
                              color="white" if dark else "black")
    for policy, (xs, ys) in sorted(_ratings(entries).items()):
        ratings.plot(xs, ys, marker="o", label=policy)
    ratings.set_xlabel("iteration")
    ratings.set_ylabel("Elo rating")
    ratings.set_title("ratings over iterations")
    if entries:
        ratings.legend(fontsize=7)
    path = os.fspath(out)
    fig.savefig(path, dpi=100)
    return path


def _cmap() -> object:
    from matplotlib import colormaps

    cmap = colormaps["RdBu"].copy()
    cmap.set_bad("lightgrey")
    return cmap


def _ratings(entries: List[PoolEntry]) -> Dict[str, Tuple[List[float], List[float]]]:
    """Per policy: (iteration or order, rating) of each snapshot, by iteration."""
    out: Dict[str, Tuple[List[float], List[float]]] = {}
    for k, e in enumerate(entries):
        xs, ys = out.setdefault(e.policy, ([], []))
        xs.append(float(k if e.iteration is None else e.iteration))
        ys.append(float(e.rating))
    for policy, (xs, ys) in out.items():
        order = np.argsort(xs, kind="stable")
        out[policy] = ([xs[i] for i in order], [ys[i] for i in order])
    return out
