"""Snapshots of a live policy into a :class:`~rllib_ext.pool.policy_pool.PolicyPool`.

The policy is written (weights + observation filter) by the same ``save_policy`` that
``algo.save_policy`` uses, into a temporary directory, and the pool copies it in: what a
pool holds is always an ordinary single-policy directory. The league and the population
both snapshot through here.
"""

from __future__ import annotations

import os
import tempfile
from typing import Any, Callable, List, Mapping, Optional

from ..checkpoint.storage import fspath, resolve_path
from ..pool.index import PoolEntry
from ..pool.policy_pool import PolicyPool
from ..pool.rules import DEFAULT_RATING
from .seam.backends import backend_for
from .seam.rllib_types import Algorithm
from .serving.policy_io import save_policy


def pool_path(pool: "PolicyPool | str | os.PathLike[str]") -> str:
    """A pool object or a path/URI -> the path (plain data travels to Tune trials)."""
    path = fspath(getattr(pool, "path", pool), "pool")
    return path if "://" in path else resolve_path(path)


def pool_for(algo: object, pool: "PolicyPool | str | os.PathLike[str]") -> PolicyPool:
    """``pool`` as a PolicyPool written to as this algorithm's Tune trial, when it runs in one.

    A pool made without ``writer=`` (say in the driver, then shipped to the trials) would
    otherwise write as the driver's process in every trial; the trial id keeps each
    trial's entries in its own namespace and names the trial that wrote them.
    """
    pool = pool if isinstance(pool, PolicyPool) else PolicyPool(pool)
    trial = getattr(algo, "trial_id", "default")
    if pool.writer_is_default and trial and trial != "default":
        return pool.with_writer(str(trial))
    return pool


def snapshot_policy(
    algo: Algorithm, policy_id: str, pool: "PolicyPool | str | os.PathLike[str]", *, rating: float = DEFAULT_RATING,
    iteration: "int | None" = None, training_state: bool = False, meta: "Mapping[str, Any] | None" = None,
) -> PoolEntry:
    """Add ``policy_id`` of the live ``algo`` to ``pool``, as it is now.

    Args:
        algo: a live algorithm (either API stack).
        policy_id: the policy (module) to snapshot.
        pool: a :class:`PolicyPool`, or its path / URI (made if missing).
        rating: the snapshot's starting Elo rating (a league: the learner's current one).
        iteration: what to record (default: the algorithm's iteration count; inside
            ``step()`` that is one less than the iteration being finished).
        training_state: also write its optimizer state, KL coefficient, alpha (format
            1.2), so that a restore with ``training_state=True`` continues from it.
        meta: plain JSON data kept with the entry (population-based training: its score
            and hyperparameters).

    Returns:
        The new entry, with the algorithm's iteration and lifetime env steps.

    Raises:
        PolicyNotFoundError: ``policy_id`` is not in the algorithm (the pool is unchanged).
    """
    pool = pool_for(algo, pool)
    with tempfile.TemporaryDirectory(prefix="rllib_ext-snapshot-") as tmp:
        local = save_policy(algo, policy_id, os.path.join(tmp, "policy"), training_state=training_state)
        it = int(algo.iteration) if iteration is None else int(iteration)
        return pool.add(local, policy=policy_id, iteration=it,
                        env_steps=backend_for(algo).env_steps(), rating=rating, meta=meta)


def drop_writer_entries_after(pool: PolicyPool, iteration: int,
                              where: Optional[Callable[[PoolEntry], object]] = None) -> List[str]:
    """Remove ``pool``'s entries by its own writer taken after ``iteration`` (and matching
    ``where(entry)``, if given); return their ids.

    A resume rewinds a run to its checkpoint: what the lost run wrote after it belongs to
    iterations about to be trained again, and left in the pool it would sit beside its
    re-run twin. Other writers' entries and this writer's earlier ones stay.
    """
    lost = [e.id for e in pool.entries(writer=pool.writer)
            if e.iteration is not None and e.iteration > iteration and (where is None or where(e))]
    for entry_id in lost:
        pool.remove(entry_id)
    return lost
