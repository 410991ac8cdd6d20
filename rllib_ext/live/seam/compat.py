"""The Ray releases the live features support, and every difference between them.

The rest of the package never asks which Ray is installed: it calls the functions here.
:func:`require_supported_ray` is called where a live feature is first used (the
``...Partial`` names and configs, :func:`~rllib_ext.live.restore.policies.restore_policies`,
``build_policy``, ``migrate``), not as a side effect of an import, so a live feature on a
Ray outside :data:`SUPPORTED` refuses in one line instead of failing deep inside RLlib.
The Ray-free reader and the CLI do not need Ray.

Supported: Ray 2.45 to 2.60. CI runs the live tests of both stacks on 2.45.0 (tox cell
``torch-ray245``) and on 2.60.0 (the other cells). Between the two, RLlib changed:

* ``RunningStat``: Ray 2.47 (ray#53484) renamed its Welford sum of squared differences
  from ``std_array`` to ``sum_sq_diff_array`` and added ``*_delta`` buffers; its
  ``to_state()``/``from_state()`` (the new stack's MeanStdFilter connector state) follow:
  :func:`running_stat`. Checkpoints keep their release's names; the reader knows both
  (:mod:`rllib_ext.checkpoint.filters`, a file format, not a live API).
* ``Algorithm.compute_single_action`` (old stack) applies the policy's observation filter
  from Ray 2.57 (ray#64088); before, it acted on the raw observation:
  :func:`single_action_obs`.

* ``ray.rllib.env.external`` (RLlink, ``EnvRunnerServerForExternalInference``) arrived in
  Ray 2.49 (checked in the 2.46, 2.48, 2.49 and 2.50 wheels): :func:`rllink_server_class`.

Below 2.45 (measured on 2.40.0, not supported): ``EnvRunnerGroup.foreach_env_runner``,
``AlgorithmConfig.build_algo`` and ``tune.RunConfig`` arrived in 2.41,
``env_runners(create_local_env_runner=)`` in 2.45 (ray#52091); Ray 2.40's default
RLModules (``PPOTorchRLModule``) need their Catalog passed and its
``Default*RLModule`` classes do not exist. Its checkpoints are read all the same (torch
modules as ``module_state.pt`` pickles: :mod:`rllib_ext.checkpoint.format`).
"""

from __future__ import annotations

import re
import sys
from typing import TYPE_CHECKING, Tuple, Type, TypeVar

import numpy as np

from ...errors import MissingDependencyError, UnsupportedRayError

from .rllib_types import Algorithm

if TYPE_CHECKING:
    from ray.rllib.utils.filter import RunningStat

R = TypeVar("R", bound="RunningStat")

# The ``rllib`` extra of setup.py says the same (tests/test_compat.py checks both agree).
LOWEST = (2, 45)  # inclusive
BELOW = (2, 61)  # exclusive
SUPPORTED = ">=2.45,<2.61"
TESTED = ("2.45.0", "2.60.0")  # each has a tox cell running the live tests of both stacks


def version_tuple(text: str) -> Tuple[int, ...]:
    """'2.45.0' -> (2, 45, 0); '2.61.0.dev0' / '3.0.0rc1' keep their leading numbers."""
    parts = []
    for piece in str(text).split("."):
        m = re.match(r"\d+", piece)
        if not m:
            break
        parts.append(int(m.group()))
        if m.group() != piece:
            break
    return tuple(parts)


def installed_ray() -> "str | None":
    """The installed Ray's version string, without importing Ray (None if not installed)."""
    ray = sys.modules.get("ray")
    if ray is not None and isinstance(getattr(ray, "__version__", None), str):
        return ray.__version__
    from importlib import metadata

    try:
        return metadata.version("ray")
    except metadata.PackageNotFoundError:
        return None


def is_supported(version: str) -> bool:
    """Whether ``version`` is in :data:`SUPPORTED` (pre-releases count as their release)."""
    v = version_tuple(version)[:2]
    return len(v) == 2 and LOWEST <= v < BELOW


def require_supported_ray(version: "str | None" = None) -> str:
    """Refuse, in one line, a missing Ray or one outside :data:`SUPPORTED`.

    Args:
        version: the version to check; default: the installed Ray's.

    Returns:
        The version checked.

    Raises:
        MissingDependencyError: Ray is not installed.
        UnsupportedRayError: it is outside the supported range.
    """
    version = installed_ray() if version is None else version
    if version is None:
        raise MissingDependencyError(
            "the live features of rllib_ext (restore into an algorithm, ...Partial classes, Tune, "
            "build_policy, migrate) need Ray: pip install \"torch==2.13.0\" \"rllib_ext[rllib]\"; the "
            "reader and the CLI work without it"
        )
    if not is_supported(version):
        raise UnsupportedRayError(
            f"rllib_ext's live features support Ray {SUPPORTED} (tested: {', '.join(TESTED)}); this "
            f"environment has ray {version}: pip install \"ray[rllib,tune]{SUPPORTED}\" (the reader and "
            "the CLI work with any Ray)"
        )
    return version


def require_release(feature: str, release: str, available: bool) -> None:
    """Refuse ``feature`` in one line when the installed Ray lacks it (``available`` False).

    Args:
        feature: what the user asked for, e.g. "serving a policy over RLlink".
        release: the first Ray release that has what it needs, e.g. "2.41".
        available: whether the installed Ray has it (asked of RLlib by the caller).
    """
    if not available:
        raise UnsupportedRayError(f"{feature} needs Ray >= {release}; this environment has ray {installed_ray()}")


# ---------------------------------------------------------------- API differences


def running_stat(running_stat_cls: Type[R], shape: Tuple[int, ...], count: int, mean: np.ndarray,
                 sum_sq_diff: np.ndarray) -> R:
    """A release's ``RunningStat`` holding these statistics (no pending deltas).

    Ray 2.47 (ray#53484) renamed the Welford sum ``std_array`` -> ``sum_sq_diff_array``
    (same meaning: the sum of squared differences from the mean) and added delta buffers,
    which a fresh instance already holds as zeros.
    """
    rs = running_stat_cls(shape)
    rs.num_pushes = count
    rs.mean_array = np.array(mean, dtype=np.float64, copy=True)
    name = "sum_sq_diff_array" if hasattr(rs, "sum_sq_diff_array") else "std_array"  # std_array: Ray <= 2.46
    setattr(rs, name, np.array(sum_sq_diff, dtype=np.float64, copy=True))
    return rs


def rllink_server_class() -> type:
    """RLlib's RLlink server, ``EnvRunnerServerForExternalInference``, to serve a policy.

    It arrived in Ray 2.49 (``ray.rllib.env.external``); 2.45 to 2.48 have only the older
    ``TcpClientInferenceEnvRunner``, which speaks another protocol. Asking for it here
    refuses in one line on those releases instead of an ImportError deep in a config.
    """
    require_release("serving a policy over RLlink (EnvRunnerServerForExternalInference)", "2.49",
                    _installed_at_least((2, 49)))
    from ray.rllib.env.external.env_runner_server_for_external_inference import (
        EnvRunnerServerForExternalInference,
    )

    return EnvRunnerServerForExternalInference


def _installed_at_least(release: Tuple[int, int]) -> bool:
    return version_tuple(installed_ray() or "0")[:2] >= release


def single_action_obs(algo: Algorithm, policy_id: str, obs: object) -> object:
    """What to hand the old stack's ``Algorithm.compute_single_action`` for raw ``obs``.

    From Ray 2.57 (ray#64088) it applies the policy's observation filter itself: ``obs``
    as it is. Before, it acted on the raw observation; here the local env runner's filter
    of ``policy_id`` (``update=False``, as in its rollouts) is applied first.
    """
    if _installed_at_least((2, 57)):
        return obs
    filters = getattr(algo.env_runner, "filters", None) or {}
    return filters[policy_id](obs, update=False) if policy_id in filters else obs
