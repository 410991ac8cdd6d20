"""A pool of policy snapshots on disk or object storage, for self-play. Ray-free.

Built on :mod:`rllib_ext.checkpoint` (single-policy files, atomic writes, storage) and
never imported by it. Bottom to top: ``store`` (a pool's bytes: local with a lock, or
object storage with one namespace per writer), ``index`` (``pool.json`` and one index file
per writer), ``rules`` (retention, outcomes, Elo), ``payoff`` (the games between entries:
:class:`Payoff`), ``budget`` (the env steps the pool cost: :class:`Budget`), ``solvers`` (meta-strategies from the table: Nash, replicator dynamics,
uniform), ``policy_pool`` (:class:`PolicyPool`), ``plot`` (the table as a picture; matplotlib).
"""

from __future__ import annotations

from .._lazy import lazy_names

# Public name -> the module (of this package) that defines it. rllib_ext/__init__ serves
# these too, from this one table.
PUBLIC = {
    "PolicyPool": "policy_pool",
    "PoolEntry": "index",
    "Outcome": "rules",
    "Retention": "rules",
    "Payoff": "payoff",
    "Budget": "budget",
    "sample_mixture": "solvers",
}

__all__ = sorted(PUBLIC)

__getattr__, __dir__ = lazy_names(__name__, PUBLIC, globals())
