"""Who plays next: the league's sampler, in plain Python.

Ray-free on purpose: the draw must be the same after a resume, so the sampler's whole state
(the kind, and numpy's bit-generator state) is plain JSON that goes into the algorithm's
checkpoint (see :mod:`.league`). Ratings are the pool's (:mod:`rllib_ext.pool.rules`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import List, Mapping, Sequence, TypedDict

import numpy as np

from ..errors import InvalidArgumentError
from .rules import expected_score
from .solvers import sample_mixture

SAMPLERS = ("latest", "uniform", "pfsp", "nash")


class SamplerState(TypedDict):
    """:meth:`Sampler.state`: what a league's checkpoint keeps of its sampler."""

    kind: str
    rng: Mapping[str, object]  # numpy's bit_generator.state: {"bit_generator": "PCG64", "state": {...}, ...}


@dataclass(frozen=True)
class Candidate:
    """What the sampler needs of one pool entry."""

    id: str
    created: float  # seconds since the epoch: "latest" means the newest
    rating: float


class Sampler:
    """Draws snapshots for the slots: ``latest``, ``uniform``, ``pfsp`` or ``nash``.

    ``nash`` is PSRO's meta-strategy: the slots are drawn from the Nash equilibrium
    mixture of the pool's payoff table over the population (see :meth:`draw_mixture`),
    so the learner trains as a best response to it.

    ``pfsp`` is prioritized fictitious self-play as in AlphaStar: each snapshot is weighted
    ``(1 - p) ** 2``, where ``p`` is main's expected win rate against it, read from the
    Elo ratings the pool keeps (a new snapshot, rated like main, weighs 0.25). Snapshots
    are drawn without replacement while the pool has enough of them.

    Raises:
        InvalidArgumentError: ``kind`` is not one of ``SAMPLERS``.
        MissingDependencyError: ``nash`` without scipy.
    """

    def __init__(self, kind: str, seed: int = 0) -> None:
        if kind not in SAMPLERS:
            raise InvalidArgumentError(f"sample={kind!r}: use one of {', '.join(SAMPLERS)}")
        if kind == "nash":  # scipy is what solves it: say so in the driver, before the run
            from .solvers import require_scipy

            require_scipy()
        self.kind = kind
        self.rng = np.random.Generator(np.random.PCG64(seed))

    def draw(self, candidates: Sequence[Candidate], k: int, main_rating: float) -> List[str]:
        """``k`` snapshot ids, one per slot (slot order). ``candidates`` must not be empty (InvalidArgumentError)."""
        if not candidates:
            raise InvalidArgumentError("Sampler.draw(candidates=[]): no snapshot to draw from; give at least one")
        ordered = sorted(candidates, key=lambda c: (c.created, c.id))
        if self.kind == "latest":
            newest = ordered[::-1]
            return [newest[i % len(newest)].id for i in range(k)]
        if self.kind == "uniform":
            weights = np.ones(len(ordered))
        else:
            weights = np.array([(1.0 - expected_score(main_rating, c.rating)) ** 2 for c in ordered])
            if not weights.sum() > 0:  # main beats every snapshot for sure: fall back to uniform
                weights = np.ones(len(ordered))
        picks = self.rng.choice(len(ordered), size=k, replace=len(ordered) < k, p=weights / weights.sum())
        return [ordered[int(i)].id for i in picks]

    def draw_mixture(self, mixture: Mapping[str, float], k: int) -> List[str]:
        """``k`` snapshot ids drawn (with replacement) from ``{id: probability}``."""
        return sample_mixture(mixture, self.rng, k)

    def state(self) -> SamplerState:
        """JSON-able: the kind and the bit generator's state (its ints are exact in JSON)."""
        return {"kind": self.kind, "rng": self.rng.bit_generator.state}

    @classmethod
    def from_state(cls, state: Mapping[str, object]) -> "Sampler":
        kind, rng = state["kind"], state["rng"]
        if not isinstance(kind, str) or not isinstance(rng, Mapping):
            raise InvalidArgumentError(
                f"sampler state {dict(state)!r}: expected Sampler.state()'s {{'kind': str, 'rng': dict}}")
        sampler = cls(kind)
        sampler.rng.bit_generator.state = dict(rng)
        return sampler
