"""rllib_ext: the policy as the unit of checkpointing in multi-agent RLlib.

The checkpoint reader (``inspect``, ``read_weights``, single-policy files) needs only numpy.
Everything that touches a live algorithm loads Ray lazily, on first attribute access,
and registers the ``...Partial`` trainables with Tune at that moment.
"""

from __future__ import annotations

import sys
from typing import Any

from ._version import __version__
from .checkpoint import (
    CheckpointView,
    MergeReport,
    PolicyView,
    SpaceView,
    export_npz,
    export_torch_state_dict,
    extract_policy,
    FilterStats,
    ObservationFilters,
    inspect,
    merge_checkpoints,
    policy_ids,
    read_filters,
    read_policy,
    read_policy_dir,
    read_weights,
    write_policy_dir,
)
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
from .numpy_policy import NumpyPolicy, PolicyOutput
from .onnx_export import export_onnx  # torch and onnx are imported inside export_onnx(), not here
from .migration import MigrateReport, migrate  # Ray is imported inside migrate(), not here

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
    if name in _ALGORITHM_NAMES:
        from . import algorithms

        register_trainables()
        if name in ("build_policy", "LoadedPolicy"):
            from . import policy_io

            return getattr(policy_io, name)
        return getattr(algorithms, name)
    raise AttributeError(f"module 'rllib_ext' has no attribute {name!r}")
