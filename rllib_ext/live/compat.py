"""The Ray releases the live features support, and every difference between them.

The rest of the package never asks which Ray is installed: it calls the functions here.
:func:`require_supported_ray` runs when :mod:`rllib_ext.live` is first imported, so a
live feature on a Ray outside :data:`SUPPORTED` refuses in one line instead of failing
deep inside RLlib. The Ray-free reader and the CLI do not import this package.

Each branch below names the release that changed the API; where the code can ask RLlib
whether the new spelling exists it does (so a patched or backported Ray works too), and
the comment says which release that is. Release by release (tested: 2.40.0 and 2.60.0 in
CI; 2.45.0, 2.50.1 and 2.55.1 by hand):

* ``EnvRunnerGroup.foreach_env_runner``: Ray 2.41 renamed ``foreach_worker`` to it
  (the old name is a deprecated alias there, gone later): :func:`foreach_env_runner`.
* ``AlgorithmConfig.build_algo``: added in Ray 2.41 beside ``build`` (deprecated later):
  :func:`build_algo`.
* ``RunningStat``: Ray 2.47 (ray#53484) renamed its Welford sum of squared differences
  from ``std_array`` to ``sum_sq_diff_array`` and added ``*_delta`` buffers; its
  ``to_state()``/``from_state()`` (the new stack's MeanStdFilter connector state) follow:
  :func:`running_stat`. Checkpoints keep the release's names; the reader knows both
  (:mod:`rllib_ext.checkpoint.filters`).
* ``Algorithm.compute_single_action`` (old stack) applies the policy's observation filter
  from Ray 2.57 (ray#64088); before, it acted on the raw observation:
  :func:`single_action_obs`.
* Default RLModules: Ray 2.41's ``Default*RLModule`` classes pick their own Catalog;
  Ray 2.40's (e.g. ``PPOTorchRLModule``) fail without one from the spec:
  :func:`module_kwargs`. Ray 2.40 also saved torch modules as ``module_state.pt``
  (a file format: :mod:`rllib_ext.checkpoint.format` reads it).
"""

from __future__ import annotations

import re
import sys
from typing import Any, Callable, List, Tuple

import numpy as np

from ..errors import MissingDependencyError, UnsupportedRayError

# The ``rllib`` extra of setup.py says the same (tests/test_compat.py checks both agree).
LOWEST = (2, 40)  # inclusive
BELOW = (2, 61)  # exclusive
SUPPORTED = ">=2.40,<2.61"
TESTED = ("2.40.0", "2.60.0")  # each has a tox cell running the live tests of both stacks


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


def foreach_env_runner(group: Any, fn: Callable[[Any], Any], *, local_env_runner: bool = True) -> List[Any]:
    """``fn`` on every env runner of ``group`` (the local one too unless told not to).

    Ray 2.41 renamed ``EnvRunnerGroup.foreach_worker`` to ``foreach_env_runner``.
    """
    if hasattr(group, "foreach_env_runner"):
        return group.foreach_env_runner(fn, local_env_runner=local_env_runner)
    return group.foreach_worker(fn, local_env_runner=local_env_runner)  # Ray 2.40


def build_algo(config: Any) -> Any:
    """``config.build_algo()``; Ray 2.40 has only ``config.build()`` (2.41 added build_algo)."""
    return config.build_algo() if hasattr(config, "build_algo") else config.build()


def running_stat(running_stat_cls: Any, shape: Tuple[int, ...], count: int, mean: np.ndarray,
                 sum_sq_diff: np.ndarray) -> Any:
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


def _installed_at_least(release: Tuple[int, int]) -> bool:
    return version_tuple(installed_ray() or "0")[:2] >= release


def single_action_obs(algo: Any, policy_id: str, obs: Any) -> Any:
    """What to hand the old stack's ``Algorithm.compute_single_action`` for raw ``obs``.

    From Ray 2.57 (ray#64088) it applies the policy's observation filter itself: ``obs``
    as it is. Before, it acted on the raw observation; here the local env runner's filter
    of ``policy_id`` (``update=False``, as in its rollouts) is applied first.
    """
    if _installed_at_least((2, 57)):
        return obs
    filters = getattr(algo.env_runner, "filters", None) or {}
    return filters[policy_id](obs, update=False) if policy_id in filters else obs


def module_kwargs(module_cls: Any, algorithm: str, framework: str) -> dict:
    """Extra constructor arguments ``module_cls`` needs on this release (``{}`` from Ray 2.41).

    Ray 2.40's default RLModules (``PPOTorchRLModule``, ...) take their Catalog from the
    spec and fail in ``setup()`` without one; Ray 2.41's ``Default*RLModule`` classes pick
    it themselves. On 2.40: the catalog of ``algorithm``'s default module spec, when
    ``module_cls`` is (a subclass of) that spec's module class.
    """
    if _installed_at_least((2, 41)):
        return {}
    from ray.rllib.algorithms.registry import ALGORITHMS

    if algorithm not in ALGORITHMS:
        return {}
    algo_cls, _ = ALGORITHMS[algorithm]()
    spec = algo_cls.get_default_config().framework(framework).get_default_rl_module_spec()
    default_cls = getattr(spec, "module_class", None)
    if isinstance(module_cls, type) and isinstance(default_cls, type) and issubclass(module_cls, default_cls):
        return {"catalog_class": spec.catalog_class} if spec.catalog_class is not None else {}
    return {}
