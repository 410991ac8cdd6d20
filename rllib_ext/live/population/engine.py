"""Per-policy PBT's decisions, in plain Python: rank the writers, pick a donor, perturb.

No Ray here: the feature (:mod:`.feature`) feeds these the pool's entries and applies
what they decide to the live algorithm.
"""

from __future__ import annotations

import math
import random
from typing import Dict, List, Mapping, Optional, Sequence, Union

from ...pool.index import PoolEntry

META_TAG = "population"  # entries with meta["population"] take part in the ranking

#: ``{name: (factor, factor, ...)}`` (multiply by one of them) or ``{name: [value, ...]}`` (resample).
Perturb = Mapping[str, Union[Sequence[float], List[float]]]


def perturbed(values: Mapping[str, float], perturb: Perturb, rng: random.Random) -> Dict[str, float]:
    """``values`` with each ``perturb`` entry applied: a tuple multiplies, a list resamples."""
    out = {k: float(v) for k, v in values.items()}
    for name, choice in perturb.items():
        pick = rng.choice(list(choice))
        out[name] = float(pick) * out[name] if isinstance(choice, tuple) else float(pick)
    return out


def latest_by_writer(entries: Sequence[PoolEntry]) -> List[PoolEntry]:
    """The newest scored population snapshot of each writer."""
    latest: Dict[str, PoolEntry] = {}
    for e in entries:  # oldest first
        meta = e.meta or {}
        if meta.get(META_TAG) and meta.get("score") is not None:
            latest[e.writer] = e
    return list(latest.values())


def donor_for(mine: str, entries: Sequence[PoolEntry], quantile: float, rng: random.Random) -> Optional[PoolEntry]:
    """A top-``quantile`` entry to take when ``mine`` (a writer) is in the bottom ``quantile``, else None.

    Ranks the newest scored snapshot of each writer (ties by writer name); with ``n``
    writers the bottom and top are ``ceil(n * quantile)`` each. A donor must score higher.
    """
    ranked = sorted(latest_by_writer(entries), key=lambda e: (_score(e), e.writer))
    if len(ranked) < 2 or mine not in {e.writer for e in ranked}:
        return None
    k = max(1, math.ceil(len(ranked) * quantile))
    bottom, top = ranked[:k], ranked[-k:]
    me = next(e for e in ranked if e.writer == mine)
    if me not in bottom or me in top:
        return None
    donors = [e for e in top if _score(e) > _score(me)]
    return rng.choice(donors) if donors else None


def _score(entry: PoolEntry) -> float:
    """A scored entry's score (:func:`latest_by_writer` keeps only scored ones)."""
    return float((entry.meta or {})["score"])
