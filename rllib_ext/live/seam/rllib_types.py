"""The types of RLlib objects that live/'s public functions take and return, named once.

RLlib's classes are imported for type checkers only (``TYPE_CHECKING``): importing this
module imports no Ray, and annotations stay strings at run time. Either API stack fits:
an ``Algorithm`` of the old stack holds ``Policy`` objects, one of the new stack
``RLModule`` objects in ``Learner`` objects.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Callable, Sequence, Tuple, TypeVar, Union, cast

if TYPE_CHECKING:
    import gymnasium as gym
    from ray.rllib.algorithms.algorithm import Algorithm
    from ray.rllib.algorithms.algorithm_config import AlgorithmConfig
    from ray.rllib.core.learner.learner import Learner
    from ray.rllib.core.learner.learner_group import LearnerGroup
    from ray.rllib.core.rl_module.rl_module import RLModule, RLModuleSpec
    from ray.rllib.env.env_runner_group import EnvRunnerGroup
    from ray.rllib.policy.policy import Policy
    from ray.rllib.policy.sample_batch import MultiAgentBatch
    from ray.rllib.utils.metrics.metrics_logger import MetricsLogger

    Space = gym.Space
else:  # at run time only the names exist (no Ray, no gymnasium imported here)
    Algorithm = AlgorithmConfig = EnvRunnerGroup = Learner = LearnerGroup = MetricsLogger = MultiAgentBatch = Any
    RLModule = RLModuleSpec = Policy = Space = Any

# (observation space, action space) of one policy.
SpacePair = Tuple["Space", "Space"]

# RLlib's ``policies_to_train``: every policy (None), these ids, or ``(policy id, batch) -> bool``.
PoliciesToTrain = Union[None, Sequence[str], Callable[..., bool]]

# A config method (``config.league(...)``) returns the config it was called on, for chaining.
ConfigT = TypeVar("ConfigT", bound="AlgorithmConfig")

# What acts: a new-stack RLModule or an old-stack Policy.
Model = Union["RLModule", "Policy"]


def config_of(algo: "Algorithm") -> "AlgorithmConfig":
    """``algo.config``: RLlib declares it Optional, but ``Algorithm.__init__`` always sets it."""
    return cast("AlgorithmConfig", algo.config)


__all__ = [
    "Algorithm", "AlgorithmConfig", "EnvRunnerGroup", "Learner", "LearnerGroup", "MetricsLogger", "MultiAgentBatch",
    "RLModule", "RLModuleSpec", "Policy", "Space",
    "SpacePair", "PoliciesToTrain", "Model", "ConfigT", "config_of",
]
