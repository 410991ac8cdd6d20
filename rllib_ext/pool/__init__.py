"""A pool of policy snapshots on disk or object storage, for self-play. Ray-free.

Built on :mod:`rllib_ext.checkpoint` (single-policy files, atomic writes, storage) and
never imported by it. Bottom to top: ``store`` (a pool's bytes: local with a lock, or
object storage with one namespace per writer), ``journal`` (each writer's state as a base
file and appended records; the format's version and history), ``payoff`` (the games
between entries: :class:`Payoff`), ``table`` (the payoff table's journal), ``index``
(``pool.json`` and the index's journal), ``budget`` (the env steps the pool cost:
:class:`Budget`), ``rules`` (retention, outcomes, Elo), ``solvers``
(meta-strategies from the table: Nash, replicator dynamics, uniform), ``policy_pool``
(:class:`PolicyPool`), ``plot`` (the table as a picture; matplotlib).

```
<pool>/pool.json, index/<writer>...   the index: a journal per writer (see .index, .journal)
<pool>/snapshots/<id>/                one single-policy directory per entry (see .policy_file)
<pool>/payoff/<writer>...             the games between entries each writer recorded (see .table)
<pool>/budget/<writer>.json           the env steps each writer spent (see .budget)
<pool>/.lock, .tmp/                   local pools: the lock every writer takes, snapshots being built (.store)
```
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
    "zero_sum_nash": "solvers",
}

__all__ = sorted(PUBLIC)

__getattr__, __dir__ = lazy_names(__name__, PUBLIC, globals())
