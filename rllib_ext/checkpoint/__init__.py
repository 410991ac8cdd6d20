"""Checkpoint files as plain data. Imports neither ray nor torch nor tensorflow.

Modules, bottom to top (each imports only those above it in this list):
storage, lazy, safe_pickle, tensors, atomic, safetensors, format, views, spaces, policy_file,
reader, inspection, filters, export, pickle_patch, merge_filters, merge, diff, upload.

The names below load their module on first use: ``read_weights`` then imports only the
reader's chain, so a process that reads one policy pays for nothing else.
"""

from __future__ import annotations

import importlib
from typing import Any

# Public name -> the module (of this package) that defines it.
_HOME = {
    "CheckpointView": "views",
    "PolicyView": "views",
    "SpaceView": "views",
    "FilterStats": "filters",
    "ObservationFilters": "filters",
    "read_filters": "filters",
    "MergeReport": "merge",
    "merge_checkpoints": "merge",
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

__all__ = sorted(_HOME)


def __getattr__(name: str) -> Any:
    if name in _HOME:
        value = getattr(importlib.import_module(f"{__name__}.{_HOME[name]}"), name)
        globals()[name] = value  # once loaded, a plain attribute
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> "list[str]":
    return sorted(set(globals()) | set(_HOME))
