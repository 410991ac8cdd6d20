"""Drop-in ``...Partial`` subclasses of RLlib algorithms, made by one factory.

Each adds to its RLlib parent (see :mod:`rllib_ext.live.partial` for the methods):
  * ``algo.restore(ckpt, policies=[...], freeze=...)``: restore only some policies
    (without ``policies=`` it is RLlib's own restore, plus relative paths);
  * ``config.restore_policies(ckpt, policies=..., freeze=...)`` (or the plain-dict key
    ``"restore_policies"``): the same, applied once when the algorithm is set up. When
    Tune then restores the trial from its *own* checkpoint (resume after a crash), that
    later restore overwrites the initial one, so trained weights win.

The classes stay at this import path: checkpoints pickle them by reference.
"""

from __future__ import annotations

import sys
from typing import Dict, Optional, Type

# First: outside the supported Ray releases this refuses in one line (rllib_ext.live.compat)
# before RLlib's own imports below can fail deep inside.
from .live import tune  # isort: skip

from ray.rllib.algorithms.algorithm import Algorithm
from ray.rllib.algorithms.appo import APPO
from ray.rllib.algorithms.dqn import DQN
from ray.rllib.algorithms.impala import IMPALA
from ray.rllib.algorithms.ppo import PPO
from ray.rllib.algorithms.sac import SAC

from .live.league_mixins import LeagueAlgorithmMixin, LeagueConfigMixin
from .live.partial import ALGO_OF_CONFIG, PartialAlgorithmMixin, PartialConfigMixin


def partial(
    algo_cls: Type[Algorithm], config_cls: Optional[type] = None, name: Optional[str] = None
) -> Type[Algorithm]:
    """Make the ``<Algo>Partial`` subclass of ``algo_cls`` (and its config class).

    Assign the result to a module-level name of the same name, so Ray can pickle it
    by reference: ``MyAlgoPartial = rllib_ext.partial(MyAlgo)``.

    Args:
        algo_cls: an RLlib Algorithm class (PPO, APPO, ..., or your own).
        config_cls: its config class; defaults to the type of its default config.
        name: class name; defaults to ``algo_cls.__name__ + "Partial"``.

    Returns:
        The new Algorithm class; ``config_class_of(cls)`` is its config class.
    """
    name = name or f"{algo_cls.__name__}Partial"
    module = sys._getframe(1).f_globals.get("__name__", __name__)
    base_config = config_cls or type(algo_cls.get_default_config())
    cfg = type(
        f"{name}Config",
        (PartialConfigMixin, LeagueConfigMixin, base_config),
        {"__module__": module, "__qualname__": f"{name}Config", "__doc__": f"{base_config.__name__} + restore_policies()."},
    )

    def get_default_config(cls):  # noqa: ANN001 - RLlib's classmethod signature
        return cfg()

    algo = type(
        name,
        (LeagueAlgorithmMixin, PartialAlgorithmMixin, algo_cls),
        {
            "__module__": module,
            "__qualname__": name,
            "__doc__": f"{algo_cls.__name__} with policy-granular restore (see rllib_ext).",
            "get_default_config": classmethod(get_default_config),
        },
    )
    ALGO_OF_CONFIG[cfg] = algo
    return algo


def config_class_of(algo_cls: Type[Algorithm]) -> type:
    """The config class that :func:`partial` made for ``algo_cls``."""
    return type(algo_cls.get_default_config())


PPOPartial = partial(PPO)
PPOPartialConfig = config_class_of(PPOPartial)
APPOPartial = partial(APPO)
APPOPartialConfig = config_class_of(APPOPartial)
IMPALAPartial = partial(IMPALA)
IMPALAPartialConfig = config_class_of(IMPALAPartial)
DQNPartial = partial(DQN)
DQNPartialConfig = config_class_of(DQNPartial)
SACPartial = partial(SAC)
SACPartialConfig = config_class_of(SACPartial)

# Trainable name -> class, registered with Tune by register_trainables().
ALGORITHMS: Dict[str, Type[Algorithm]] = {
    cls.__name__: cls for cls in (PPOPartial, APPOPartial, IMPALAPartial, DQNPartial, SACPartial)
}


def register_trainables() -> None:
    """Register every ``...Partial`` algorithm with Tune under its class name (idempotent)."""
    tune.register(ALGORITHMS)
