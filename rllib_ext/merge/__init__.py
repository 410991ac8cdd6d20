"""Compose a checkpoint from policies of several checkpoints, by file operations alone. Ray-free.

Rule: imports :mod:`rllib_ext.checkpoint` and :mod:`rllib_ext.errors` only, and nothing
in :mod:`rllib_ext.checkpoint` imports it. Merge is the one writer that rewrites RLlib's
own state files (weights, optimizer buffers, filter statistics, byte-level patches of
old-stack pickles); reading a checkpoint never loads it.
"""

from __future__ import annotations

from .._lazy import lazy_names

# Public name -> the module (of this package) that defines it. rllib_ext/__init__ serves
# these too, from this one table.
PUBLIC = {
    "MergeReport": "report",
    "merge_checkpoints": "checkpoints",
}

__all__ = sorted(PUBLIC)

__getattr__, __dir__ = lazy_names(__name__, PUBLIC, globals())
