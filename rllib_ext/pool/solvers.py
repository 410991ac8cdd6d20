"""Meta-solvers: a mixture over pool snapshots from their payoff table (PSRO's meta-strategy).

The table is read as a *symmetric* two-player game: both seats choose among the same
snapshots, and the row's payoff at ``(i, j)`` is ``value[i, j]``, the column's is
``value[j, i]``. Solvers:

* ``"nash"``: a Nash equilibrium of the two-player zero-sum game (``value[i, j] +
  value[j, i] == 0``), the maximin mixture from a linear program solved by scipy's HiGHS
  (``scipy.optimize.linprog(method="highs")``; the ``league`` extra). A table that is not
  zero-sum is refused: use ``"replicator"``.
* ``"replicator"``: projected replicator dynamics (OpenSpiel's PSRO meta-solver ``prd``),
  for any table, zero-sum or not; numpy only.
* ``"uniform"``: every snapshot alike (fictitious self-play's mixture); needs no game.

**Per seat.** :func:`seat_mixtures` reads the seat rows instead (a snapshot in one seat
against one in the other) as a two-player zero-sum game that need not be symmetric, and
solves a mixture for each seat (:func:`zero_sum_nash`, the same LP).

**Unplayed pairs.** ``"nash"`` and ``"replicator"`` solve the largest set of snapshots in
which every two have played each other (:meth:`.Payoff.fully_played`: greedily drops the
snapshot with the most unplayed partners, the oldest on a tie); the others get
probability 0. The diagonal (a snapshot against itself, never recorded) counts as 0: exact
in a symmetric zero-sum game.
"""

from __future__ import annotations

from typing import Callable, Dict, List, Mapping, Protocol, Sequence, Tuple

import numpy as np

from ..errors import InvalidArgumentError, MetaStrategyError, MissingDependencyError, did_you_mean
from .payoff import Pair, Payoff, build_payoff, seat_row, seats_of

SOLVERS = {
    "nash": "Nash equilibrium of the two-player zero-sum table (scipy HiGHS linprog)",
    "replicator": "projected replicator dynamics (any table, zero-sum or not)",
    "uniform": "every snapshot alike",
}
ZERO_SUM_TOL = 1e-6  # relative to the table's largest |value|
PRD_ITERATIONS, PRD_DT, PRD_GAMMA = 20_000, 5e-2, 1e-6  # OpenSpiel's prd: 1e5 steps of 1e-3, gamma 1e-6


class _LinprogResult(Protocol):
    """What :func:`maximin` reads of scipy's ``OptimizeResult``."""

    status: int
    message: str
    x: np.ndarray


def require_scipy() -> Callable[..., _LinprogResult]:
    """scipy's ``linprog``, which the ``"nash"`` solver needs, or a one-line install hint."""
    try:
        from scipy.optimize import linprog
    except ImportError as e:
        raise MissingDependencyError("solver 'nash' needs scipy (pip install 'rllib_ext[league]')") from e
    found: Callable[..., _LinprogResult] = linprog
    return found


def check_solver(solver: str) -> str:
    """``solver`` if known; else an InvalidArgumentError listing the known ones (with a near match)."""
    if solver not in SOLVERS:
        raise InvalidArgumentError(f"unknown solver {solver!r}; known: {', '.join(sorted(SOLVERS))}"
                         f"{did_you_mean(solver, SOLVERS)}")
    return solver


def mixture(payoff: Payoff, solver: str) -> Dict[str, float]:
    """``{id: probability}`` over ``payoff.ids`` (in that order) by ``solver``; sums to 1.

    Raises:
        InvalidArgumentError: an unknown solver.
        MetaStrategyError: ``"nash"`` on a table that is not zero-sum, or its LP failed (a ValueError too).
        MissingDependencyError: ``"nash"`` without scipy.
    """
    check_solver(solver)
    out = dict.fromkeys(payoff.ids, 0.0)
    if not payoff.ids:
        return out
    if solver == "uniform":
        return dict.fromkeys(payoff.ids, 1.0 / len(payoff.ids))
    played = payoff.restrict(payoff.fully_played())
    if len(played) == 1:
        return {**out, played.ids[0]: 1.0}
    matrix = np.nan_to_num(played.value, nan=0.0)  # only the diagonal is NaN here
    probs = nash(matrix, played.ids) if solver == "nash" else replicator(matrix)
    out.update({i: float(p) for i, p in zip(played.ids, probs)})
    return out


def zero_sum_gap(matrix: np.ndarray) -> Tuple[float, int, int]:
    """``(max |value[i, j] + value[j, i]|, i, j)``: 0 for a zero-sum table."""
    gap = np.abs(matrix + matrix.T)
    i, j = np.unravel_index(int(np.argmax(gap)), gap.shape) if gap.size else (0, 0)
    return (float(gap[i, j]) if gap.size else 0.0), int(i), int(j)


def nash(matrix: np.ndarray, ids: List[str]) -> np.ndarray:
    """The maximin mixture of the symmetric zero-sum game ``matrix``: an equilibrium ``(x, x)``
    (:func:`maximin`, after the zero-sum check)."""
    scale = max(1.0, float(np.max(np.abs(matrix)))) if matrix.size else 1.0
    gap, i, j = zero_sum_gap(matrix)
    if gap > ZERO_SUM_TOL * scale:
        raise MetaStrategyError(
            f"solver 'nash' solves two-player zero-sum tables, but value[{ids[i]!r}, {ids[j]!r}] + "
            f"value[{ids[j]!r}, {ids[i]!r}] = {matrix[i, j]:.6g} + {matrix[j, i]:.6g} = {matrix[i, j] + matrix[j, i]:.6g}, "
            f"not 0; use solver='replicator' (projected replicator dynamics), which does not assume zero-sum"
        )
    return maximin((matrix - matrix.T) / 2)  # exactly zero-sum: rounding in the sums cannot tilt it


def maximin(game: np.ndarray) -> np.ndarray:
    """The row player's maximin mixture of the zero-sum game ``game`` (n×m, the row's payoffs).

    Linear program: maximize ``v`` subject to ``x @ game[:, j] >= v`` for every column
    ``j``, ``sum(x) == 1``, ``x >= 0``; scipy's HiGHS. A solver failure: MetaStrategyError.
    """
    linprog = require_scipy()
    n, m = game.shape
    cost = np.zeros(n + 1)
    cost[-1] = -1.0  # maximize v
    a_ub = np.hstack([-game.T, np.ones((m, 1))])  # v - x @ game[:, j] <= 0
    a_eq = np.hstack([np.ones((1, n)), np.zeros((1, 1))])
    res = linprog(cost, A_ub=a_ub, b_ub=np.zeros(m), A_eq=a_eq, b_eq=[1.0],
                  bounds=[(0, None)] * n + [(None, None)], method="highs")
    if res.status != 0:  # a bounded, feasible LP: only a solver failure gets here
        raise MetaStrategyError(f"solver 'nash': linprog failed on a {n}x{m} table: {res.message}")
    x = np.clip(res.x[:n], 0.0, None)
    out: np.ndarray = x / x.sum()
    return out


def zero_sum_nash(matrix: "np.ndarray | Sequence[Sequence[float]]") -> Tuple[np.ndarray, np.ndarray]:
    """A Nash equilibrium ``(x, y)`` of the zero-sum game where the row player gets
    ``matrix[i, j]`` and the column player its negative (rectangular is fine): each side's
    maximin mixture, by scipy's HiGHS.

    For a table no pool recorded (exact values from OpenSpiel, another tool's results); a
    pool's own table is solved by ``PolicyPool.meta_strategy`` and ``meta_strategy_by_seat``.
    On a symmetric table (``matrix == -matrix.T``), ``x`` is the ``"nash"`` solver's mixture.

    Raises:
        InvalidArgumentError: ``matrix`` is not a non-empty 2-D table of finite numbers.
        MissingDependencyError: scipy is not installed.
    """
    allowed = "expected a non-empty 2-D table of finite numbers (the row player's payoffs)"
    try:
        table = np.asarray(matrix, dtype=np.float64)
    except (TypeError, ValueError):
        raise InvalidArgumentError(f"zero_sum_nash(matrix=...): a {type(matrix).__name__} of non-numbers; {allowed}") from None
    if table.ndim != 2 or not table.size:
        raise InvalidArgumentError(f"zero_sum_nash(matrix=...): an array of shape {table.shape}; {allowed}")
    if not np.all(np.isfinite(table)):
        raise InvalidArgumentError(f"zero_sum_nash(matrix=...): a value that is not finite; {allowed}")
    return maximin(table), maximin(-table.T)


def seat_mixtures(table: Mapping[Pair, Sequence[float]], ids: List[str]) -> Dict[str, Dict[str, float]]:
    """``{seat: {id: probability}}`` from the seat rows (:func:`.payoff.seat_row`) of ``ids``
    in ``table`` (merged records): a Nash equilibrium of the zero-sum game "``ids`` in the
    first seat against ``ids`` in the second", by the LP of :func:`nash`. Only the largest
    set of snapshots whose every seat pairing (itself included) was played is solved; the
    rest get 0.

    Raises:
        MetaStrategyError: the seat rows do not name exactly two seats, or they are not zero-sum (a ValueError too).
        MissingDependencyError: scipy is not installed.
    """
    seats = seats_of(table, ids)
    if len(seats) != 2:
        raise MetaStrategyError(f"a meta-strategy per seat needs games of the snapshots in exactly two seats; the payoff "
                         f"table has {len(seats)} ({', '.join(seats) or 'none'}): evaluation matches fill them "
                         "(league(evaluation=...)); use meta_strategy() otherwise")
    payoff = build_payoff(table, [seat_row(i, s) for s in seats for i in ids])
    n = len(ids)
    out = {seat: dict.fromkeys(ids, 0.0) for seat in seats}
    games = payoff.games[:n, n:]
    keep = list(range(n))
    while len(keep) > 1 and not np.all(games[np.ix_(keep, keep)] > 0):
        missing = [int((games[k, keep] == 0).sum() + (games[keep, k] == 0).sum()) for k in keep]
        keep.pop(missing.index(max(missing)))
    if not np.all(games[np.ix_(keep, keep)] > 0):
        raise MetaStrategyError(f"a meta-strategy per seat: no snapshot has played in seat {seats[0]!r} against one in "
                         f"seat {seats[1]!r} yet; evaluation matches play them")
    first, second = payoff.value[:n, n:][np.ix_(keep, keep)], payoff.value[n:, :n].T[np.ix_(keep, keep)]
    gap = np.abs(first + second)
    scale = max(1.0, float(np.max(np.abs(first))))
    if float(gap.max()) > ZERO_SUM_TOL * scale:
        i, j = np.unravel_index(int(np.argmax(gap)), gap.shape)
        raise MetaStrategyError(f"a meta-strategy per seat solves zero-sum games, but {ids[keep[i]]!r} in seat {seats[0]!r} "
                         f"and {ids[keep[j]]!r} in seat {seats[1]!r} got {first[i, j]:.6g} and {second[i, j]:.6g}, "
                         "not summing to 0; use meta_strategy(solver='replicator')")
    x, y = zero_sum_nash((first - second) / 2)  # exactly zero-sum: rounding cannot tilt it
    out[seats[0]].update({ids[k]: float(p) for k, p in zip(keep, x)})
    out[seats[1]].update({ids[k]: float(p) for k, p in zip(keep, y)})
    return out


def replicator(matrix: np.ndarray, iterations: int = PRD_ITERATIONS, dt: float = PRD_DT,
               gamma: float = PRD_GAMMA) -> np.ndarray:
    """Projected replicator dynamics on the symmetric game ``matrix`` (one population).

    From the uniform mixture, ``x += dt * x * (matrix @ x - x @ matrix @ x)``, then every
    probability is clipped to at least ``gamma`` and renormalized (OpenSpiel's
    ``_simplex_projection``). Payoffs are scaled to at most 1 in size first (equilibria do
    not change). Returns the mean of the second half of the steps, which also settles
    where the dynamics cycle around an equilibrium. An approximation: where it converges
    (chicken, hawk-dove) to about 1e-3; on random zero-sum tables of 3 to 50 snapshots a
    best response gained up to 1e-2 against it, so use ``nash`` for zero-sum tables.
    """
    n = len(matrix)
    scale = float(np.max(np.abs(matrix))) if matrix.size else 0.0
    game = matrix / scale if scale > 0 else matrix
    x = np.full(n, 1.0 / n)
    tail = max(1, iterations // 2)
    total = np.zeros(n)
    for step in range(iterations):
        u = game @ x
        x = np.clip(x + dt * x * (u - x @ u), gamma, 1.0)
        x /= x.sum()
        if step >= iterations - tail:
            total += x
    out: np.ndarray = total / total.sum()
    return out


def sample_mixture(mixture: Mapping[str, float], rng: np.random.Generator, size: int = 1) -> List[str]:
    """Draw ``size`` ids (with replacement) from ``{id: probability}`` with ``rng``.

    The same mixture (same key order) and the same Generator state give the same draw:
    a league that keeps its Generator's state in its checkpoint resumes with the same
    next draw.

    Raises:
        InvalidArgumentError: an empty mixture, a negative or non-finite probability, or all zero;
            ``size`` not an int >= 0.
    """
    ids = list(mixture)
    p = np.array([mixture[i] for i in ids], dtype=np.float64)
    if not ids or not np.all(np.isfinite(p)) or np.any(p < 0) or p.sum() <= 0:
        raise InvalidArgumentError(f"sample_mixture(mixture=...): not a mixture (non-negative probabilities, not all 0): "
                                   f"{dict(mixture)!r}")
    if not isinstance(size, int) or isinstance(size, bool) or size < 0:
        raise InvalidArgumentError(f"sample_mixture(size={size!r}): size must be a non-negative int")
    picks = rng.choice(len(ids), size=size, p=p / p.sum())
    return [ids[k] for k in picks]
