"""The payoff table of a policy pool: games between rows, as arrays (:class:`Payoff`). Numpy only.

Each record is one unordered pair of rows, stored with ``a < b``. A row is a pool entry, a
learning policy's games (:func:`live_row`) or an entry in one seat (:func:`seat_row`).
Per record: ``wins`` are the games ``a`` won against ``b``, ``return_a``/``return_b`` the
*sums* of each side's returns over those games. Sums, not means, so a writer adds a batch
by addition and a reader merges the writers' games by addition too. How the records live
on disk (one journal per writer) is :mod:`.table`'s.
"""

from __future__ import annotations

import dataclasses
import itertools
import math
from typing import Dict, Iterable, List, Mapping, Optional, Sequence, Tuple, Type, TypedDict

import numpy as np

from ..errors import InvalidArgumentError

COUNTS = ("wins", "draws", "losses")
SUMS = ("return_a", "return_b")
Pair = Tuple[str, str]
LIVE = ":live"  # ends a live row's id: "<policy>@<writer>:live" (see live_row)


def live_row(policy: str, writer: str) -> str:
    """The row of a *learning* policy of one writer: its games while it trains.

    A league credits ``main``'s training games here, not to a snapshot of it: ``main``
    moves during an iteration, and the snapshots' rows hold only what they played, so a
    meta-strategy over snapshots is solved from games those snapshots really played.
    """
    return f"{policy}@{writer}{LIVE}"


def is_live_row(row: str) -> bool:
    """Whether ``row`` is a :func:`live_row` id (not a pool entry)."""
    return row.endswith(LIVE)


SEAT = "#seat="  # joins a seat row's id: "<entry>#seat=<seat>" (see seat_row)


def seat_row(entry: str, seat: str) -> str:
    """The row of snapshot ``entry`` when it plays seat ``seat`` (the agent ids it played).

    Evaluation matches credit each game here too, beside the pair's own row: in a game
    whose seats differ (poker's first and second player), the best mixture for one seat
    need not be the best for the other, and :meth:`.PolicyPool.meta_strategy_by_seat`
    solves one per seat from these rows.
    """
    return f"{entry}{SEAT}{seat}"


def split_seat_row(row: str) -> Tuple[str, Optional[str]]:
    """``(entry, seat)`` of a :func:`seat_row`; ``(row, None)`` for any other row."""
    entry, sep, seat = row.rpartition(SEAT)
    return (entry, seat) if sep else (row, None)


def entries_named(rows: Iterable[str]) -> List[str]:
    """The pool entries that ``rows`` stand for: a seat row's entry; no entry for a live row."""
    return [split_seat_row(r)[0] for r in rows if not is_live_row(r)]


def seats_of(table: Mapping[Pair, Sequence[float]], ids: Sequence[str]) -> List[str]:
    """The seats that ``ids`` have seat rows for in ``table``, sorted."""
    wanted, seats = set(ids), set()
    for pair in table:
        for row in pair:
            entry, seat = split_seat_row(row)
            if seat is not None and entry in wanted:
                seats.add(seat)
    return sorted(seats)


@dataclasses.dataclass(frozen=True, eq=False)  # arrays: compare fields with numpy, not ==
class Payoff:
    """Games between pool snapshots, as n×n arrays over ``ids`` (row against column).

    Attributes:
        ids: the snapshot ids, in row (and column) order.
        wins, draws, losses: int arrays; ``wins[i, j]``: games ``ids[i]`` won against ``ids[j]``
            (so ``wins[i, j] == losses[j, i]``). The diagonal is 0: self-games are not recorded.
        returns: float array; ``returns[i, j]``: the sum of ``ids[i]``'s returns in those games.
    """

    ids: List[str]
    wins: np.ndarray
    draws: np.ndarray
    losses: np.ndarray
    returns: np.ndarray

    @property
    def games(self) -> np.ndarray:
        """``games[i, j]``: games played between ``ids[i]`` and ``ids[j]`` (symmetric)."""
        games: np.ndarray = self.wins + self.draws + self.losses
        return games

    @property
    def value(self) -> np.ndarray:
        """``value[i, j]``: ``ids[i]``'s mean return per game against ``ids[j]``; NaN if never played."""
        return self._per_game(self.returns)

    @property
    def score(self) -> np.ndarray:
        """``score[i, j]``: ``ids[i]``'s win share against ``ids[j]``, draws counting half; NaN if never played."""
        return self._per_game(self.wins + 0.5 * self.draws)

    def _per_game(self, total: np.ndarray) -> np.ndarray:
        games = self.games
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(games > 0, total / np.maximum(games, 1), np.nan)

    def __len__(self) -> int:
        return len(self.ids)

    def restrict(self, ids: Sequence[str]) -> "Payoff":
        """The table over ``ids`` (each one of ``self.ids``), in that order."""
        where = {i: k for k, i in enumerate(self.ids)}
        rows = [where[i] for i in ids]
        cut = np.ix_(rows, rows)
        return Payoff(list(ids), self.wins[cut], self.draws[cut], self.losses[cut], self.returns[cut])

    def fully_played(self) -> List[str]:
        """The largest set of ids (found greedily) in which every two have played each other.

        Repeatedly drops the id with the most unplayed partners (on a tie, the earliest in
        ``ids``, i.e. the oldest snapshot), so the newest stay. One id always remains
        (none for an empty table).
        """
        keep = list(range(len(self.ids)))
        played = self.games > 0
        np.fill_diagonal(played, True)
        while len(keep) > 1:
            missing = [int((~played[k, keep]).sum()) for k in keep]
            if max(missing) == 0:
                break
            keep.pop(missing.index(max(missing)))
        return [self.ids[k] for k in keep]

    def least_played(self) -> List[Tuple[str, str, int]]:
        """Every pair ``(a, b, games)`` with ``a`` before ``b`` in ``ids``, fewest games first.

        Ties keep the order of ``ids`` (oldest pairs first): an evaluation schedule takes
        from the front.
        """
        games = self.games
        pairs = [(self.ids[i], self.ids[j], int(games[i, j])) for i in range(len(self)) for j in range(i + 1, len(self))]
        return sorted(pairs, key=lambda p: p[2])

    def describe(self) -> str:
        """The snapshots numbered, then games, value and score as matrices over those numbers."""
        n = len(self)
        lines = [f"  payoff table: {n} snapshot{'s' if n != 1 else ''}, {int(self.games.sum()) // 2:,} games", ""]
        lines += _table(["#", "id"], [[str(k), i] for k, i in enumerate(self.ids)])
        for title, matrix, fmt in (("games (row vs column)", self.games, "{:.0f}"),
                                   ("value (row's mean return per game)", self.value, "{:.3f}"),
                                   ("score (row's win share, draws half)", self.score, "{:.3f}")):
            rows = [[str(i)] + ["-" if i == j or not math.isfinite(x) else fmt.format(x) for j, x in enumerate(row)]
                    for i, row in enumerate(matrix.tolist())]
            lines += ["", title] + _table(["#"] + [str(j) for j in range(n)], rows)
        return "\n".join(lines)

    def to_dict(self) -> "PayoffDict":
        """Plain JSON-able lists (NaN as None)."""
        def plain(m: np.ndarray) -> List[List[Optional[float]]]:
            return [[None if isinstance(x, float) and math.isnan(x) else x for x in row] for row in m.tolist()]

        return {"ids": list(self.ids), "games": self.games.tolist(), "wins": self.wins.tolist(),
                "draws": self.draws.tolist(), "losses": self.losses.tolist(),
                "value": plain(self.value), "score": plain(self.score)}


class PayoffDict(TypedDict):
    """:meth:`Payoff.to_dict`: n×n lists over ``ids`` (``rllib-ext pool --payoff --json``)."""

    ids: List[str]
    games: List[List[int]]
    wins: List[List[int]]
    draws: List[List[int]]
    losses: List[List[int]]
    value: List[List[Optional[float]]]  # NaN (never played) as None
    score: List[List[Optional[float]]]


def check_games(a: str, b: str, counts: Mapping[str, object],
                error: Type[Exception] = InvalidArgumentError) -> Dict[str, float]:
    """The counts and return sums of one call, checked; the error names the pair, the field and what fits.

    Args:
        error: what to raise: an argument's mistake by default; a file's reader passes
            ValueError and reports the file.
    """
    if a == b:
        raise error(f"games of {a!r} against itself are not recorded: the table's diagonal stays empty")
    out: Dict[str, float] = {}  # the counts are ints
    for name in COUNTS:
        value = counts[name]
        if not isinstance(value, (int, np.integer)) or isinstance(value, bool) or value < 0:
            raise error(f"games {a!r} vs {b!r}: {name}={value!r}, expected a non-negative int")
        out[name] = int(value)
    for name in SUMS:
        value = counts[name]
        if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)) or not math.isfinite(value):
            raise error(f"games {a!r} vs {b!r}: {name}={value!r}, expected a finite number (the sum over the games)")
        out[name] = float(value)
    if sum(out[n] for n in COUNTS) == 0 and any(out[n] for n in SUMS):
        raise error(f"games {a!r} vs {b!r}: returns {out['return_a']}, {out['return_b']} but no game")
    return out


def build_payoff(table: Mapping[Pair, Sequence[float]], ids: Sequence[str]) -> Payoff:
    """The n×n arrays over ``ids`` from merged records (pairs naming other ids are left out)."""
    n = len(ids)
    where = {i: k for k, i in enumerate(ids)}
    wins, draws, losses = (np.zeros((n, n), dtype=np.int64) for _ in range(3))
    returns = np.zeros((n, n), dtype=np.float64)
    if table:  # column by column (C loops, one fancy assignment per array): many thousand pairs stay quick
        a, b = zip(*table)
        i = np.fromiter(map(where.get, a, itertools.repeat(-1)), dtype=np.intp, count=len(a))
        j = np.fromiter(map(where.get, b, itertools.repeat(-1)), dtype=np.intp, count=len(b))
        values = np.fromiter(itertools.chain.from_iterable(table.values()), dtype=np.float64,
                             count=5 * len(a)).reshape(len(a), 5)
        keep = (i >= 0) & (j >= 0)
        i, j, values = i[keep], j[keep], values[keep]
        counts = values[:, :3].astype(np.int64)
        wins[i, j], draws[i, j], losses[i, j], returns[i, j] = counts[:, 0], counts[:, 1], counts[:, 2], values[:, 3]
        wins[j, i], draws[j, i], losses[j, i], returns[j, i] = counts[:, 2], counts[:, 1], counts[:, 0], values[:, 4]
    return Payoff(list(ids), wins, draws, losses, returns)


def _table(headers: List[str], rows: List[List[str]]) -> List[str]:
    widths = [max(len(c) for c in col) for col in zip(headers, *rows)]
    def line(r: List[str]) -> str:
        return "  " + "  ".join(c.rjust(w) if k else c.ljust(w) for k, (c, w) in enumerate(zip(r, widths)))

    return [line(headers).rstrip(), line(["-" * w for w in widths]).rstrip()] + [line(r).rstrip() for r in rows]
