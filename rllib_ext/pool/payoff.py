"""The payoff table of a policy pool: games between snapshots, kept beside the index. Numpy only.

```
<pool>/payoff/<writer>.json   {"payoff_version": 1, "writer", "pairs": [{"a", "b", "wins", "draws",
                               "losses", "return_a", "return_b"}, ...]}: the games this writer recorded
```
``payoff_version`` history: 1 (rllib_ext 0.3.0) the first. A pool written before the table
existed has no ``payoff/`` directory and reads as an empty table.

Each record is one unordered pair of rows, stored with ``a < b``. A row is a pool entry, a
learning policy's games (:func:`live_row`) or an entry in one seat (:func:`seat_row`).
Per record: ``wins`` are the games ``a`` won against ``b``, ``return_a``/``return_b`` the
*sums* of each side's returns over those games. Sums, not means, so a writer adds a batch by addition and a reader merges
the writers' files by addition too: a writer rewrites only its own file (read, add, write:
under the pool's lock on a local path; on object storage each writer owns its file, as it
owns its index file), every file is replaced whole, and a reader sums them all.
"""

from __future__ import annotations

import dataclasses
import json
import math
from typing import Any, Dict, Iterable, List, Mapping, Optional, Sequence, Tuple, Type

import numpy as np

from ..errors import CheckpointFormatError, InvalidArgumentError
from .index import Store, parse_json

PAYOFF_DIR = "payoff"
PAYOFF_VERSION = 1  # of the payoff files; bump on an incompatible change
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
        return self.wins + self.draws + self.losses

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

    def to_dict(self) -> Dict[str, Any]:
        """Plain JSON-able lists (NaN as None)."""
        plain = lambda m: [[None if isinstance(x, float) and math.isnan(x) else x for x in row] for row in m.tolist()]  # noqa: E731
        return {"ids": list(self.ids), "games": self.games.tolist(), "wins": self.wins.tolist(),
                "draws": self.draws.tolist(), "losses": self.losses.tolist(),
                "value": plain(self.value), "score": plain(self.score)}


def check_games(a: str, b: str, counts: Mapping[str, Any],
                error: Type[Exception] = InvalidArgumentError) -> Dict[str, Any]:
    """The counts and return sums of one call, checked; the error names the pair, the field and what fits.

    Args:
        error: what to raise: an argument's mistake by default; a file's reader passes
            ValueError and reports the file.
    """
    if a == b:
        raise error(f"games of {a!r} against itself are not recorded: the table's diagonal stays empty")
    out: Dict[str, Any] = {}
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


def canonical(a: str, b: str, games: Mapping[str, Any]) -> Tuple[Pair, List[float]]:
    """``((a, b) with a < b, [wins, draws, losses, return_a, return_b] from that a's side)``."""
    row = [games["wins"], games["draws"], games["losses"], games["return_a"], games["return_b"]]
    if a < b:
        return (a, b), row
    return (b, a), [row[2], row[1], row[0], row[4], row[3]]


def read_shard(store: Store, writer: str) -> Dict[Pair, List[float]]:
    """One writer's records (empty when it has none yet)."""
    name = f"{PAYOFF_DIR}/{writer}.json"
    raw = store.read(name)
    return {} if raw is None else _parse(raw, store.where(name), writer)


def read_table(store: Store) -> Dict[Pair, List[float]]:
    """Every writer's records, summed per pair. Files are read whole, each checked."""
    total: Dict[Pair, List[float]] = {}
    for name in store.listdir(PAYOFF_DIR):
        if name.startswith(".") or not name.endswith(".json"):
            continue  # a killed writer's temporary file
        raw = store.read(f"{PAYOFF_DIR}/{name}")
        if raw is None:
            continue
        for pair, row in _parse(raw, store.where(f"{PAYOFF_DIR}/{name}"), name[:-len(".json")]).items():
            acc = total.setdefault(pair, [0, 0, 0, 0.0, 0.0])
            for k in range(5):
                acc[k] += row[k]
    return total


def add_games(store: Store, writer: str, batches: Iterable[Tuple[str, str, Mapping[str, Any]]]) -> None:
    """Add checked batches to ``writer``'s file: read, add, replace whole (the caller holds the lock)."""
    mine = read_shard(store, writer)  # a garbled file raises here, before anything is written
    batches = [(a, b, games) for a, b, games in batches if any(games[k] for k in COUNTS)]
    if not batches:
        return  # no game: nothing to write
    for a, b, games in batches:
        pair, row = canonical(a, b, games)
        acc = mine.setdefault(pair, [0, 0, 0, 0.0, 0.0])
        for k in range(5):
            acc[k] += row[k]
    write_shard(store, writer, mine)


def shard_doc(writer: str, records: Mapping[Pair, Sequence[float]]) -> Dict[str, Any]:
    """A writer's file as plain data (what :func:`read_shard` reads back)."""
    pairs = [{"a": a, "b": b, **dict(zip(COUNTS + SUMS, row))} for (a, b), row in sorted(records.items())]
    return {"payoff_version": PAYOFF_VERSION, "writer": writer, "pairs": pairs}


def write_shard(store: Store, writer: str, records: Mapping[Pair, Sequence[float]]) -> None:
    """Replace ``writer``'s file whole."""
    doc = shard_doc(writer, records)
    store.write(f"{PAYOFF_DIR}/{writer}.json", (json.dumps(doc, indent=1) + "\n").encode())


def parse_shard(doc: Any, where: str, writer: str) -> Dict[Pair, List[float]]:
    """A writer's records from plain data (e.g. a checkpoint's copy), checked like its file."""
    try:
        raw = json.dumps(doc).encode()
    except (TypeError, ValueError) as e:
        raise CheckpointFormatError(f"{where}: not a payoff table ({type(e).__name__}: {e})") from e
    return _parse(raw, where, writer)


def build_payoff(table: Mapping[Pair, Sequence[float]], ids: Sequence[str]) -> Payoff:
    """The n×n arrays over ``ids`` from merged records (pairs naming other ids are left out)."""
    n = len(ids)
    where = {i: k for k, i in enumerate(ids)}
    wins, draws, losses = (np.zeros((n, n), dtype=np.int64) for _ in range(3))
    returns = np.zeros((n, n), dtype=np.float64)
    for (a, b), (w, d, l, ra, rb) in table.items():
        if a in where and b in where:
            i, j = where[a], where[b]
            wins[i, j], draws[i, j], losses[i, j], returns[i, j] = w, d, l, ra
            wins[j, i], draws[j, i], losses[j, i], returns[j, i] = l, d, w, rb
    return Payoff(list(ids), wins, draws, losses, returns)


def _parse(raw: bytes, where: str, writer: str) -> Dict[Pair, List[float]]:
    doc = parse_json(raw, where, "the pool's payoff table")
    try:
        if doc["payoff_version"] != PAYOFF_VERSION:
            raise CheckpointFormatError(
                f"{where}: payoff_version {doc['payoff_version']!r} is not supported (this reader knows {PAYOFF_VERSION})")
        if doc["writer"] != writer:
            raise CheckpointFormatError(f"{where}: holds writer {doc['writer']!r}'s games, not {writer!r}'s")
        out: Dict[Pair, List[float]] = {}
        for p in doc["pairs"]:
            a, b = str(p["a"]), str(p["b"])
            checked = check_games(a, b, {k: p[k] for k in COUNTS + SUMS}, error=ValueError)
            if not a < b or (a, b) in out:
                raise ValueError(f"pair {a!r}, {b!r} is out of order or twice")
            out[(a, b)] = [checked[k] for k in COUNTS + SUMS]
        return out
    except CheckpointFormatError:
        raise
    except (KeyError, TypeError, ValueError, AttributeError) as e:
        raise CheckpointFormatError(f"{where}: not a payoff table ({type(e).__name__}: {e})") from e


def _table(headers: List[str], rows: List[List[str]]) -> List[str]:
    widths = [max(len(c) for c in col) for col in zip(headers, *rows)]
    line = lambda r: "  " + "  ".join(c.rjust(w) if k else c.ljust(w) for k, (c, w) in enumerate(zip(r, widths)))  # noqa: E731
    return [line(headers).rstrip(), line(["-" * w for w in widths]).rstrip()] + [line(r).rstrip() for r in rows]
