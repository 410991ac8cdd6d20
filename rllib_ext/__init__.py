"""rllib_ext: the policy as the unit of checkpointing in multi-agent RLlib.

The public surface is the one table below: each name loads its module on first use, so
reading one policy imports the reader's chain and nothing else, and ``build_policy``
imports what building a policy needs (not the ``...Partial`` algorithms). The first use
of a ``...Partial`` name registers those algorithms with Tune; so does importing this
package in a process that already imported Ray.

Layers, bottom to top (each imports only those before it): ``errors`` and ``_version``;
``checkpoint`` (numpy + stdlib); ``convert`` and ``act`` (numpy; torch only inside the
ONNX writer); ``live`` (Ray); ``algorithms``, ``envs``; ``cli``.
"""

from __future__ import annotations

import importlib
import sys
from typing import Any, Dict

from ._version import __version__
from .checkpoint import PUBLIC as _CHECKPOINT_PUBLIC
from .pool import PUBLIC as _POOL_PUBLIC

# Public name -> the module (under rllib_ext) that defines it.
_HOME: Dict[str, str] = {
    **{name: f"checkpoint.{module}" for name, module in _CHECKPOINT_PUBLIC.items()},
    **{name: f"pool.{module}" for name, module in _POOL_PUBLIC.items()},
    **dict.fromkeys(
        ("CheckpointError", "CheckpointFormatError", "MigrationError", "MissingDependencyError",
         "NotACheckpointError", "NotAPoolError", "PolicyClassError", "PolicyNotFoundError", "PoolNamespaceError",
         "ShapeMismatchError", "UnsafePickleError", "UnsupportedFilterError", "UnsupportedModelError",
         "UnsupportedRayError", "TrainingStateError", "MissingTrainingStateError", "LearnerBusyError",
         "InvalidArgumentError", "RecurrentStateError"),
        "errors",
    ),
    "NumpyPolicy": "act.numpy_policy",
    "PolicyOutput": "act.numpy_policy",
    "export_onnx": "act.onnx_export",
    "migrate": "live.migration",
    "MigrateReport": "live.migration",
    "build_policy": "live.policy_io",
    "LoadedPolicy": "live.policy_io",
    "PartialRestoreReport": "live.restore",
    "rllink_server_class": "live.compat",
    **dict.fromkeys(
        ("partial", "register_trainables", "PPOPartial", "PPOPartialConfig", "APPOPartial", "APPOPartialConfig",
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


if "ray" in sys.modules:  # a Ray process anyway: make tune.run("PPOPartial") just work
    try:
        __getattr__("register_trainables")
    except ImportError:  # an unsupported Ray (UnsupportedRayError): the reader still works
        pass
