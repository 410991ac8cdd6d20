"""A pool of policy snapshots on disk or object storage, for self-play. Ray-free.

Built on :mod:`rllib_ext.checkpoint` (single-policy files, atomic writes, storage) and
never imported by it. Bottom to top: ``store`` (a pool's bytes: local with a lock, or
object storage with one namespace per writer), ``index`` (``pool.json`` and one index file
per writer), ``rules`` (retention, outcomes, Elo), ``payoff`` (the games between entries:
:class:`Payoff`), ``solvers`` (meta-strategies from the table: Nash, replicator dynamics,
uniform), ``policy_pool`` (:class:`PolicyPool`), ``plot`` (the table as a picture; matplotlib).
"""

from __future__ import annotations

import importlib
from typing import Any

# Public name -> the module (of this package) that defines it. rllib_ext/__init__ serves
# these too, from this one table.
PUBLIC = {
    "PolicyPool": "policy_pool",
    "PoolEntry": "index",
    "Outcome": "rules",
    "Retention": "rules",
    "Payoff": "payoff",
    "sample_mixture": "solvers",
}

__all__ = sorted(PUBLIC)


def __getattr__(name: str) -> Any:
    if name in PUBLIC:
        value = getattr(importlib.import_module(f"{__name__}.{PUBLIC[name]}"), name)
        globals()[name] = value  # once loaded, a plain attribute
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> "list[str]":
    return sorted(set(globals()) | set(PUBLIC))
