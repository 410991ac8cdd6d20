"""The payoff table on disk: each writer's games as a journal (see .journal), summed over writers on read.

```
<pool>/payoff/<writer>.json    base: {"pool_version": 2, "writer", "seq", "pairs": [[a, b, wins, draws, losses,
                               return_a, return_b], ...]}, one pair a line, a < b, each pair once
<pool>/payoff/<writer>@<s>.jsonl  records since base s (local), one a line: {"seq", "games": [[a, b, wins,
                                  draws, losses, return_a, return_b], ...]}, added to the base; object stores:
                                  payoff/<writer>/<seq>.jsonl, one record each (see .journal)
```
Version-1 files (``{"payoff_version": 1, "writer", "pairs": [{"a", "b", "wins", "draws",
"losses", "return_a", "return_b"}, ...]}``, rllib_ext 0.4.0 before issue 35) read as a
base. A pool written before the table existed has no ``payoff/`` and reads as an empty table.

Counts are from ``a``'s side and returns are *sums*, so records add up and a reader
sums the writers' tables by addition too; each writer appends only to its own journal.
The same version-1 document is what :meth:`.PolicyPool.writer_games` hands a league's
checkpoint (:func:`games_doc`) and what :func:`parse_games` reads back.
"""

from __future__ import annotations

import math
import operator
from typing import Any, Dict, Iterable, List, Mapping, Sequence, Set, Tuple, TypedDict

from ..errors import CheckpointFormatError, InvalidArgumentError, malformed
from .journal import CONTENT_ERRORS, POOL_VERSION, json_list, json_object
from .payoff import COUNTS, SUMS, Pair, check_games

PAYOFF_DIR = "payoff"
PAYOFF_VERSION = 1  # of the games document (writer_games) and of version-1 table files
Row = List["str | float"]  # [a, b, wins, draws, losses, return_a, return_b], a < b
Games = Tuple[str, str, Mapping[str, object]]  # (a, b, {"wins", "draws", "losses", "return_a", "return_b"})
CheckedGames = Tuple[str, str, Dict[str, float]]  # Games, every count there and checked (check_batch)


class PayoffBody(TypedDict):
    """A writer's payoff base beside its header (:meth:`PayoffKind.body`)."""

    pairs: List[Row]


class PayoffKind:
    """The payoff table as a :class:`.journal.Kind`: ``{(a, b): [wins, draws, losses, return_a, return_b]}``."""

    folder, what, not_a, holds = PAYOFF_DIR, "the pool's payoff table", "not a payoff table", "games"

    def empty(self, writer: str) -> Dict[Pair, List[float]]:
        return {}

    def check_header(self, doc: Mapping[str, object], where: str) -> int:
        if "payoff_version" in doc:
            if doc["payoff_version"] != PAYOFF_VERSION:
                raise CheckpointFormatError(f"{where}: payoff_version {doc['payoff_version']!r} is not supported "
                                            f"(this reader knows {PAYOFF_VERSION})")
            return 1
        if doc.get("pool_version") != POOL_VERSION:
            raise CheckpointFormatError(f"{where}: pool_version {doc.get('pool_version')!r} is not supported "
                                        f"(this reader knows {POOL_VERSION})")
        return POOL_VERSION

    def load(self, doc: Mapping[str, object], version: int, writer: str) -> Dict[Pair, List[float]]:
        pairs = json_list(doc["pairs"], "pairs")
        rows = pairs if version > 1 else [
            [p["a"], p["b"], *(p[k] for k in COUNTS + SUMS)] for p in (json_object(d, "a pair") for d in pairs)]
        out = dict(checked_rows(rows))
        if len(out) != len(rows):
            seen: Set[Pair] = set()
            twice = next(pair for pair, _ in checked_rows(rows) if pair in seen or seen.add(pair))  # type: ignore[func-returns-value]
            raise ValueError(f"pair {twice[0]!r}, {twice[1]!r} is there twice")
        return out

    def apply(self, state: Dict[Pair, List[float]], record: Mapping[str, object]) -> Dict[Pair, List[float]]:
        for pair, values in checked_rows(json_list(record["games"], "games")):
            acc = state.get(pair)
            if acc is None:
                state[pair] = values
            else:
                for k in range(5):
                    acc[k] += values[k]
        return state

    def body(self, state: Mapping[Pair, Sequence[float]]) -> PayoffBody:
        return {"pairs": [[a, b, *values] for (a, b), values in sorted(state.items())]}


def checked_rows(rows: Sequence[Any]) -> List[Tuple[Pair, List[float]]]:  # Any: JSON rows, checked here
    """``[((a, b), [wins, draws, losses, return_a, return_b])]`` of stored rows; a ValueError says what is wrong.

    A base holds one row per pair, tens of thousands in a long league: they are checked
    column by column (C loops), and only a table that fails that is checked row by row,
    for the message (:func:`.payoff.check_games`'s).
    """
    if rows and set(map(type, rows)) == {list} and set(map(len, rows)) == {7}:
        a, b, w, d, l, ra, rb = zip(*rows)
        if (_all_types(a, str) and _all_types(b, str) and all(map(operator.lt, a, b))
                and _all_types(w + d + l, int) and min(w + d + l) >= 0 and _all_types(ra + rb, (int, float))
                and all(map(math.isfinite, ra + rb))
                and all(ra[k] == rb[k] == 0 for k, n in enumerate(map(operator.add, map(operator.add, w, d), l))
                        if not n)):  # returns without a game: the row by row check says which
            if not _all_types(ra + rb, float):
                ra, rb = tuple(map(float, ra)), tuple(map(float, rb))
            return list(zip(zip(a, b), map(list, zip(w, d, l, ra, rb))))
    out = []
    for row in rows:
        if type(row) is not list or len(row) != 7:
            raise ValueError(f"a row is {str(row)[:80]}; expected [a, b, wins, draws, losses, return_a, return_b]")
        a_, b_, *values = row
        games = check_games(str(a_), str(b_), dict(zip(COUNTS + SUMS, values)), error=ValueError)
        if type(a_) is not str or type(b_) is not str or not a_ < b_:
            raise ValueError(f"pair {a_!r}, {b_!r} is out of order")
        out.append(((a_, b_), [games[k] for k in COUNTS + SUMS]))
    return out


def _all_types(values: Sequence[object], types: object) -> bool:
    kinds = set(map(type, values))
    return kinds <= (set(types) if isinstance(types, tuple) else {types})


def check_batch(games: Iterable[Games]) -> List[CheckedGames]:
    """``games`` (:meth:`.PolicyPool.record_games_batch`'s argument) with every count checked;
    a missing count is 0. InvalidArgumentError names the item, what it holds and what fits."""
    checked: List[CheckedGames] = []
    for k, item in enumerate(games):
        if not (isinstance(item, (tuple, list)) and len(item) == 3 and isinstance(item[2], Mapping)):
            raise InvalidArgumentError(
                f"games[{k}] is {item!r}; expected (a, b, {{'wins', 'draws', 'losses', 'return_a', 'return_b'}})")
        a, b, counts = item
        if set(counts) - set(COUNTS + SUMS) or not set(SUMS) <= set(counts):
            raise InvalidArgumentError(f"games[{k}] ({a!r} vs {b!r}) has keys {sorted(counts)}; expected "
                                       "return_a and return_b, and any of wins, draws, losses")
        checked.append((a, b, check_games(a, b, {"wins": 0, "draws": 0, "losses": 0, **counts})))
    return checked


def rows_of(batches: Iterable[CheckedGames]) -> List[Row]:
    """Checked games as stored rows (``a < b``, counts flipped to the new ``a``'s side); no-game batches left out."""
    out: List[Row] = []
    for a, b, games in batches:
        if any(games[k] for k in COUNTS):
            row = [games[k] for k in COUNTS + SUMS]
            out.append([a, b, *row] if a < b else [b, a, row[2], row[1], row[0], row[4], row[3]])
    return out


def merged(states: Mapping[str, Mapping[Pair, Sequence[float]]]) -> Mapping[Pair, Sequence[float]]:
    """Every writer's games summed per pair, to read only (one writer's: its journal's own, not copied)."""
    if len(states) == 1:
        return next(iter(states.values()))
    total: Dict[Pair, List[float]] = {}
    for state in states.values():
        for pair, values in state.items():
            acc = total.get(pair)
            if acc is None:
                total[pair] = list(values)
            else:
                for k in range(5):
                    acc[k] += values[k]
    return total


class GamesPair(TypedDict):
    """One pair in a :class:`GamesDoc` (counts from ``a``'s side, returns summed)."""

    a: str
    b: str
    wins: float  # the counts are ints (typed float as the table's rows are)
    draws: float
    losses: float
    return_a: float
    return_b: float


class GamesDoc(TypedDict):
    """A writer's games in the version-1 form (:func:`games_doc`, :meth:`.PolicyPool.writer_games`)."""

    payoff_version: int
    writer: str
    pairs: List[GamesPair]


def games_doc(writer: str, state: Mapping[Pair, Sequence[float]]) -> GamesDoc:
    """A writer's games as plain data, in the version-1 form a league's checkpoint keeps."""
    pairs = [GamesPair(a=a, b=b, wins=w, draws=d, losses=l, return_a=ra, return_b=rb)
             for (a, b), (w, d, l, ra, rb) in sorted(state.items())]
    return {"payoff_version": PAYOFF_VERSION, "writer": writer, "pairs": pairs}


def parse_games(doc: object, where: str, writer: str) -> Dict[Pair, List[float]]:
    """A writer's games from :func:`games_doc`'s form, checked like a table file."""
    kind = PayoffKind()
    with malformed(where, kind.not_a, catch=CONTENT_ERRORS):
        if not isinstance(doc, dict):
            raise TypeError(f"expected a dict, got {type(doc).__name__}")
        version = kind.check_header(doc, where)
        if doc["writer"] != writer:
            raise CheckpointFormatError(f"{where}: holds writer {doc['writer']!r}'s games, not {writer!r}'s")
        return kind.load(doc, version, writer)
