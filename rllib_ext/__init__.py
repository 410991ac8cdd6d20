"""rllib_ext: the policy as the unit of checkpointing in multi-agent RLlib.

The checkpoint reader (``inspect``, ``read_weights``, single-policy files) needs only numpy.
Everything that touches a live algorithm loads Ray lazily, on first attribute access,
and registers the ``...Partial`` trainables with Tune at that moment.
"""

from __future__ import annotations

import importlib
import sys
from typing import Any

from ._version import __version__
from .errors import (
    CheckpointError,
    CheckpointFormatError,
    MigrationError,
    MissingDependencyError,
    NotACheckpointError,
    PolicyNotFoundError,
    ShapeMismatchError,
    UnsafePickleError,
    UnsupportedModelError,
)

# Names that load their module on first use (numpy-only modules; nothing imports Ray here):
# reading one policy then imports the reader's chain and nothing else.
_HOME = {name: "checkpoint" for name in (
    "CheckpointView", "PolicyView", "SpaceView", "FilterStats", "ObservationFilters", "read_filters",
    "MergeReport", "merge_checkpoints", "export_npz", "export_torch_state_dict", "extract_policy",
    "inspect", "read_policy", "read_policy_dir", "write_policy_dir", "policy_ids", "read_weights",
)}
_HOME.update({"NumpyPolicy": "numpy_policy", "PolicyOutput": "numpy_policy", "export_onnx": "onnx_export",
              "migrate": "migration", "MigrateReport": "migration"})

# Names served by rllib_ext.algorithms (imports Ray; loaded on first use).
_ALGORITHM_NAMES = {
    "partial",
    "build_policy",
    "LoadedPolicy",
    "PartialRestoreReport",
    "PPOPartial",
    "PPOPartialConfig",
    "APPOPartial",
    "APPOPartialConfig",
    "IMPALAPartial",
    "IMPALAPartialConfig",
    "DQNPartial",
    "DQNPartialConfig",
    "SACPartial",
    "SACPartialConfig",
}

__all__ = sorted(
    {
        "policy_ids",
        "read_weights",
        "read_policy",
        "read_filters",
        "FilterStats",
        "ObservationFilters",
        "inspect",
        "merge_checkpoints",
        "MergeReport",
        "CheckpointView",
        "PolicyView",
        "SpaceView",
        "write_policy_dir",
        "read_policy_dir",
        "extract_policy",
        "export_npz",
        "export_torch_state_dict",
        "MissingDependencyError",
        "migrate",
        "MigrateReport",
        "NumpyPolicy",
        "export_onnx",
        "PolicyOutput",
        "UnsupportedModelError",
        "MigrationError",
        "CheckpointError",
        "CheckpointFormatError",
        "NotACheckpointError",
        "PolicyNotFoundError",
        "ShapeMismatchError",
        "UnsafePickleError",
        "register_trainables",
        "__version__",
    }
    | _ALGORITHM_NAMES
)


def register_trainables() -> None:
    """Register every ``...Partial`` algorithm with Tune (idempotent)."""
    from . import tune as _tune

    _tune.register_all()


if "ray" in sys.modules:  # a Ray process anyway: make tune.run("PPOPartial") just work
    register_trainables()


def __getattr__(name: str) -> Any:
    if name in _HOME:
        value = getattr(importlib.import_module(f"{__name__}.{_HOME[name]}"), name)
        globals()[name] = value  # once loaded, a plain attribute
        return value
    if name in _ALGORITHM_NAMES:
        from . import algorithms

        register_trainables()
        if name in ("build_policy", "LoadedPolicy"):
            from . import policy_io

            return getattr(policy_io, name)
        return getattr(algorithms, name)
    raise AttributeError(f"module 'rllib_ext' has no attribute {name!r}")


def __dir__() -> "list[str]":
    return sorted(set(globals()) | set(_HOME) | _ALGORITHM_NAMES)
