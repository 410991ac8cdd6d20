"""Compose a checkpoint from policies of several checkpoints, by file operations alone. Ray-free.

Rule: imports :mod:`rllib_ext.checkpoint` and :mod:`rllib_ext.errors` only, and nothing
in :mod:`rllib_ext.checkpoint` imports it. Merge is the one writer that rewrites RLlib's
own state files (weights, optimizer buffers, filter statistics, byte-level patches of
old-stack pickles); reading a checkpoint never loads it.
"""

from __future__ import annotations

import importlib
from typing import Any

# Public name -> the module (of this package) that defines it. rllib_ext/__init__ serves
# these too, from this one table.
PUBLIC = {
    "MergeReport": "report",
    "merge_checkpoints": "checkpoints",
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
