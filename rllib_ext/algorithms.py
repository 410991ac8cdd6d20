"""The drop-in ``...Partial`` classes: an RLlib algorithm and its config, each behind one base.

Each adds to its RLlib parent what :class:`~rllib_ext.live.partial.PartialAlgorithm` and
its features carry (:mod:`rllib_ext.live.features`):
  * ``algo.restore(ckpt, policies=[...], freeze=...)``: restore only some policies
    (without ``policies=`` it is RLlib's own restore, plus relative paths);
  * ``config.restore_policies(ckpt, policies=..., freeze=...)`` (or the plain-dict key
    ``"restore_policies"``): the same, applied once when the algorithm is set up;
  * ``config.snapshot_policies(...)`` and ``config.league(...)``: a self-play league.

The classes stay at this import path: checkpoints pickle them by reference. Tune knows
them by name once a ``...Partial`` name is first used (:func:`register_trainables`).

Your own algorithm gets the same two class statements, at module level of your own module
(Ray pickles the classes by reference), then a Tune name::

    class MyAlgoPartialConfig(PartialConfig, MyAlgoConfig): ...
    class MyAlgoPartial(PartialAlgorithm, MyAlgo, config=MyAlgoPartialConfig): ...
    tune.register_trainable("MyAlgoPartial", MyAlgoPartial)
"""

from __future__ import annotations

from typing import Dict, Type

# First: outside the supported Ray releases, the first use of a ...Partial name refuses in
# one line (rllib_ext.live.seam.compat) before RLlib's own imports below can fail deep inside.
from .live.seam.compat import require_supported_ray  # isort: skip

require_supported_ray()

from .live import tune  # noqa: E402

from ray.rllib.algorithms.algorithm import Algorithm
from ray.rllib.algorithms.appo import APPO, APPOConfig
from ray.rllib.algorithms.dqn import DQN, DQNConfig
from ray.rllib.algorithms.impala import IMPALA, IMPALAConfig
from ray.rllib.algorithms.ppo import PPO, PPOConfig
from ray.rllib.algorithms.sac import SAC, SACConfig

from .live.partial import PartialAlgorithm, PartialConfig


class PPOPartialConfig(PartialConfig, PPOConfig):
    """PPOConfig + the rllib_ext features (restore_policies(), league(), ...)."""


class PPOPartial(PartialAlgorithm, PPO, config=PPOPartialConfig):
    """PPO with policy-granular restore (see rllib_ext)."""


class APPOPartialConfig(PartialConfig, APPOConfig):
    """APPOConfig + the rllib_ext features (restore_policies(), league(), ...)."""


class APPOPartial(PartialAlgorithm, APPO, config=APPOPartialConfig):
    """APPO with policy-granular restore (see rllib_ext)."""


class IMPALAPartialConfig(PartialConfig, IMPALAConfig):
    """IMPALAConfig + the rllib_ext features (restore_policies(), league(), ...)."""


class IMPALAPartial(PartialAlgorithm, IMPALA, config=IMPALAPartialConfig):
    """IMPALA with policy-granular restore (see rllib_ext)."""


class DQNPartialConfig(PartialConfig, DQNConfig):
    """DQNConfig + the rllib_ext features (restore_policies(), league(), ...)."""


class DQNPartial(PartialAlgorithm, DQN, config=DQNPartialConfig):
    """DQN with policy-granular restore (see rllib_ext)."""


class SACPartialConfig(PartialConfig, SACConfig):
    """SACConfig + the rllib_ext features (restore_policies(), league(), ...)."""


class SACPartial(PartialAlgorithm, SAC, config=SACPartialConfig):
    """SAC with policy-granular restore (see rllib_ext)."""


# Trainable name -> class, registered with Tune by register_trainables().
ALGORITHMS: Dict[str, Type[Algorithm]] = {
    cls.__name__: cls for cls in (PPOPartial, APPOPartial, IMPALAPartial, DQNPartial, SACPartial)
}


def register_trainables() -> None:
    """Register every ``...Partial`` algorithm with Tune under its class name (idempotent)."""
    tune.register(ALGORITHMS)
