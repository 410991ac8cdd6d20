"""The rules a policy pool applies: which snapshots to keep, and Elo ratings from games.

Plain data and arithmetic, apart from the pool's storage, so a league (and its tests)
can reason about them without a pool on disk.
"""

from __future__ import annotations

import dataclasses
from typing import Dict, Iterable, Mapping, Sequence, Tuple

from ..errors import InvalidArgumentError

DEFAULT_RATING = 1200.0


@dataclasses.dataclass(frozen=True)
class Retention:
    """Which snapshots :meth:`~.pool.PolicyPool.prune` keeps, per writer and policy.

    A snapshot stays when *any* given rule keeps it:

    Attributes:
        last: the ``last`` newest snapshots.
        every: each snapshot whose number ``n`` (its id's ``<policy>-<n>@...``: 0 for the
            first, never reused) is a multiple of ``every``; so the first always stays,
            and pruning twice removes nothing more.

    Raises:
        InvalidArgumentError: ``last`` or ``every`` is not a positive int or None, or both are None.
    """

    last: "int | None" = None
    every: "int | None" = None

    def __post_init__(self) -> None:
        for name in ("last", "every"):
            value = getattr(self, name)
            if value is not None and (not isinstance(value, int) or isinstance(value, bool) or value < 1):
                raise InvalidArgumentError(f"Retention({name}={value!r}): a positive int or None")
        if self.last is None and self.every is None:
            raise InvalidArgumentError("Retention() keeps nothing: give last=N and/or every=K (remove() deletes one entry)")

    def keeps(self, n: int, group: Sequence[int]) -> bool:
        """Whether snapshot number ``n`` stays, among the numbers ``group`` of its writer and policy."""
        if self.every is not None and n % self.every == 0:
            return True
        return self.last is not None and n in sorted(group)[-self.last:]

    def to_dict(self) -> Dict[str, "int | None"]:
        return dataclasses.asdict(self)


def to_keep(value: "Retention | Mapping[str, int]") -> Retention:
    """A :class:`Retention` from itself or its plain-dict form ``{"last": 10, "every": 5}``; else InvalidArgumentError."""
    if isinstance(value, Retention):
        return value
    if isinstance(value, Mapping):
        unknown = sorted(set(value) - {"last", "every"})
        if unknown:
            raise InvalidArgumentError(f"keep: unknown key(s) {', '.join(unknown)}; a retention rule takes last= and every=")
        return Retention(**value)
    raise InvalidArgumentError(f"keep must be a Retention or a dict with last=/every=, got {type(value).__name__}")


@dataclasses.dataclass(frozen=True)
class Outcome:
    """Games against one snapshot, counted from its opponent's side (the learning policy).

    Attributes:
        id: the snapshot's pool id.
        wins: games the opponent won (the snapshot lost).
        draws: drawn games.
        losses: games the opponent lost (the snapshot won).
    """

    id: str
    wins: int = 0
    draws: int = 0
    losses: int = 0

    @property
    def games(self) -> int:
        return self.wins + self.draws + self.losses

    def check(self) -> None:
        """Raise InvalidArgumentError naming the snapshot unless every count is a non-negative int."""
        for name in ("wins", "draws", "losses"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 0:
                raise InvalidArgumentError(f"outcome for snapshot {self.id!r}: {name}={value!r}, expected a non-negative int")


def expected_score(rating: float, other: float) -> float:
    """Elo's expected score of a player rated ``rating`` against one rated ``other``."""
    return 1.0 / (1.0 + float(10.0 ** ((other - rating) / 400.0)))


def elo_update(
    learner: float, ratings: Mapping[str, float], outcomes: Iterable[Outcome], k: float = 32.0,
    *, match: bool = False,
) -> Tuple[float, Dict[str, float]]:
    """Elo for a batch of games played at once (one training iteration).

    Every game is scored against the ratings *before* the batch, K per game; what the
    learner gains, the snapshots lose, so ratings stay zero-sum. With ``match=True`` each
    snapshot's games count as one match scored by the learner's share of points (K per
    match): a league iteration plays hundreds of games against the same ratings, and K
    per game would then move a rating by thousands and oscillate.

    Returns:
        ``(the learner's new rating, {snapshot id: new rating})`` for the ids in ``outcomes``.
    """
    new = {}
    gained = 0.0
    totals: Dict[str, Tuple[float, int]] = {}
    for o in outcomes:
        score, games = totals.get(o.id, (0.0, 0))
        totals[o.id] = (score + o.wins + 0.5 * o.draws, games + o.games)
    for sid, (score, games) in totals.items():
        if match:
            score, games = (score / games, 1) if games else (0.0, 0)
        delta = k * (score - games * expected_score(learner, ratings[sid]))
        gained += delta
        new[sid] = ratings[sid] - delta
    return learner + gained, new
