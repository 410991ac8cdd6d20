"""Checkpoint files as plain data: find, read, inspect, extract and compare policies. Ray-free.

Rule: imports numpy, the standard library and :mod:`rllib_ext.errors`, nothing else of
ours; ``codecs/`` (the byte formats) import only the storage, lazy-array and tensor
modules beside them. Everything that builds on checkpoints (:mod:`rllib_ext.merge`,
:mod:`rllib_ext.pool`, :mod:`rllib_ext.live`, ...) imports this package, never the reverse.

The names below load their module on first use: ``read_weights`` then imports only the
reader's chain, so a process that reads one policy pays for nothing else.
"""

from __future__ import annotations

import importlib
from typing import Any

# Public name -> the module (of this package) that defines it. rllib_ext/__init__ serves
# these too, from this one table.
PUBLIC = {
    "CheckpointView": "views",
    "PolicyView": "views",
    "SpaceView": "views",
    "FilterStats": "filters",
    "ObservationFilters": "filters",
    "read_filters": "filters",
    "export_npz": "export",
    "export_torch_state_dict": "export",
    "extract_policy": "export",
    "inspect": "inspection",
    "read_policy": "inspection",
    "read_policy_dir": "policy_file",
    "write_policy_dir": "policy_file",
    "policy_ids": "reader",
    "read_weights": "reader",
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
