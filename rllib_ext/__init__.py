"""rllib_ext: the policy as the unit of checkpointing in multi-agent RLlib.

The public surface is the one table below, built from each package's ``PUBLIC`` table:
each name loads its module on first use, so reading one policy imports the reader's chain
and nothing else, and ``build_policy`` imports what building a policy needs (not the
``...Partial`` algorithms).

Tune looks ``tune.run("PPOPartial")`` up in its registry, so the ``...Partial`` names must be
registered before that call. Importing this package registers them when Ray Tune is already
imported (``from ray import tune; import rllib_ext``: the plain-dict Tune story), and never
imports Ray otherwise; the first use of a ``...Partial`` name or config registers them too,
and so does :func:`register_trainables`.

Rule: the packages are the layers, each importing only those above it: ``errors`` and
``_version``; ``checkpoint`` (numpy + stdlib); ``merge`` and ``pool`` (on ``checkpoint``);
``convert`` and ``act`` (numpy; torch only inside the ONNX writer); ``live`` (Ray);
``algorithms``, ``envs``; ``cli``. ``tests/test_layout.py`` holds the exact table.
"""

from __future__ import annotations

import importlib
import sys
import warnings
from typing import Any, Dict

from ._version import __version__
from .checkpoint import PUBLIC as _CHECKPOINT_PUBLIC
from .merge import PUBLIC as _MERGE_PUBLIC
from .pool import PUBLIC as _POOL_PUBLIC

# Public name -> the module (under rllib_ext) that defines it.
_HOME: Dict[str, str] = {
    **{name: f"checkpoint.{module}" for name, module in _CHECKPOINT_PUBLIC.items()},
    **{name: f"merge.{module}" for name, module in _MERGE_PUBLIC.items()},
    **{name: f"pool.{module}" for name, module in _POOL_PUBLIC.items()},
    **dict.fromkeys(
        ("CheckpointError", "CheckpointFormatError", "MigrationError", "MissingDependencyError",
         "NotACheckpointError", "NotAPoolError", "PolicyClassError", "PolicyNotFoundError", "PoolNamespaceError",
         "ShapeMismatchError", "UnsafePickleError", "UnsupportedFilterError", "UnsupportedModelError",
         "UnsupportedRayError", "TrainingStateError", "MissingTrainingStateError", "LearnerBusyError",
         "InvalidArgumentError", "RecurrentStateError", "MetaStrategyError",
         "LightweightAlgorithmError"),
        "errors",
    ),
    "NumpyPolicy": "act.numpy_policy",
    "PolicyOutput": "act.numpy_policy",
    "export_onnx": "act.onnx_export",
    "exploitability": "act.openspiel",
    "tabular_policy": "act.openspiel",
    "MaskedPPOTorchRLModule": "masking",
    "migrate": "live.restore.migration",
    "MigrateReport": "live.restore.migration",
    "build_policy": "live.serving.policy_io",
    "LoadedPolicy": "live.serving.policy_io",
    "PartialRestoreReport": "live.restore.policies",
    "RestoreOptions": "live.restore.options",
    "PartialAlgorithm": "live.partial",
    "PartialConfig": "live.partial",
    "rllink_server_class": "live.seam.compat",
    **dict.fromkeys(
        ("register_trainables", "PPOPartial", "PPOPartialConfig", "APPOPartial", "APPOPartialConfig",
         "IMPALAPartial", "IMPALAPartialConfig", "DQNPartial", "DQNPartialConfig", "SACPartial", "SACPartialConfig"),
        "algorithms",
    ),
}

__all__ = sorted([*_HOME, "__version__"])


def __getattr__(name: str) -> Any:
    if name not in _HOME:
        raise AttributeError(f"module 'rllib_ext' has no attribute {name!r}")
    module = importlib.import_module(f"{__name__}.{_HOME[name]}")
    if _HOME[name] == "algorithms":  # tune.run("PPOPartial") works once a Partial name is used
        module.register_trainables()
    value = getattr(module, name)
    globals()[name] = value  # once loaded, a plain attribute
    return value


def __dir__() -> "list[str]":
    return sorted(set(globals()) | set(_HOME))


def _register_if_tune_is_loaded() -> None:
    """Register the ``...Partial`` trainables now if Ray Tune is already imported.

    Without Tune in the process nothing happens, so the Ray-free reader stays Ray-free. On
    a Ray outside the supported releases the names are not registered and a warning says
    why: reading checkpoints must still work there.
    """
    if sys.modules.get("ray.tune") is None:
        return
    from .errors import UnsupportedRayError

    try:  # importing the module checks the Ray release; register_trainables() is the one registration
        importlib.import_module(f"{__name__}.algorithms").register_trainables()
    except UnsupportedRayError as e:
        warnings.warn(f"rllib_ext: the ...Partial trainables are not registered with Tune: {e}", stacklevel=3)


_register_if_tune_is_loaded()
