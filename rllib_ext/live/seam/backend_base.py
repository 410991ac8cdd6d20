"""What the rest of the package asks of an API stack: the :class:`Backend` interface.

The two implementations, and the one test of which stack an algorithm is on, are in
:mod:`rllib_ext.live.seam.backends` (``backend_for(algo)``); code above it calls these methods
and never tests the stack itself. Importing this module imports no framework.
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import Any, Callable, Dict, Iterator, List, Mapping, Optional, Sequence, Type

from ...checkpoint.filters import FilterStats, ObservationFilters
from ...checkpoint.format import Stack
from ...checkpoint.tensors import Weights
from ...checkpoint.training_state import TrainingState
from .bridge import State, initial_state
from .rllib_types import Algorithm, AlgorithmConfig, EnvRunnerGroup, Model, PoliciesToTrain, Space, SpacePair


class Backend:
    """What the rest of the package asks of an API stack; one subclass per stack.

    Instance methods act on a live algorithm. Static methods need none: they cut a
    config down before it is built, or build a stored policy (``policy.json``'s ``stack``
    names the class: :func:`rllib_ext.live.seam.backends.backend_named`).
    """

    stack = ""  # "new" or "old": what policy.json's "stack" records

    def __init__(self, algo: Algorithm) -> None:
        self.algo = algo

    def ids(self) -> List[str]:
        """The live algorithm's policy (module) ids, sorted."""
        raise NotImplementedError

    def get_weights(self, ids: Sequence[str]) -> Dict[str, Weights]:
        raise NotImplementedError

    def set_and_sync(self, weights: Dict[str, Weights], training: Optional[Dict[str, TrainingState]] = None) -> None:
        """Set ``{id: weights}`` (and, given, each policy's ``training`` state) where training
        happens, then on every env runner."""
        raise NotImplementedError

    @contextmanager
    def quiesced(self, ids: Sequence[str]) -> Iterator[None]:
        """Hold training still while the weights of ``ids`` are set (and maybe frozen) inside.

        Every path that sets weights on a running algorithm goes through here. When the block
        ends without an error, data sampled before it no longer trains ``ids``. Synchronous
        training (PPO, the old stack's learners) changes nothing between calls: nothing to hold.
        """
        yield

    def env_steps(self) -> int:
        """Env steps sampled over the algorithm's lifetime (what a snapshot records)."""
        raise NotImplementedError

    def training_states(self, ids: Sequence[str]) -> Dict[str, TrainingState]:
        """Each policy's current training state (optimizers, KL coefficient, alpha, counters)."""
        raise NotImplementedError

    def freeze(self, ids: Sequence[str], all_ids: Sequence[str]) -> None:
        """Remove ``ids`` from ``policies_to_train``; ``all_ids`` is :meth:`ids` (already asked)."""
        self.set_trainable(frozen_fn(self.trainable(), ids, all_ids))

    def trainable(self) -> PoliciesToTrain:
        """The current ``policies_to_train`` as :meth:`freeze` changes it (None, ids or a callable)."""
        raise NotImplementedError

    def set_trainable(self, value: PoliciesToTrain) -> None:
        """Set what :meth:`trainable` returns, everywhere it is asked (rollback of a freeze)."""
        raise NotImplementedError

    def model_configs(self, ids: Sequence[str]) -> Dict[str, Dict[str, Any]]:
        """Each module's model config, defaults merged in (new stack only: conversion targets)."""
        raise NotImplementedError

    def eval_group(self) -> Optional[EnvRunnerGroup]:
        return getattr(self.algo, "eval_env_runner_group", None)

    def on_every_env_runner(self, fn: Callable[[Any], Any]) -> None:
        """``fn`` on every env runner: local, remote and evaluation."""
        for group in (self.algo.env_runner_group, self.eval_group()):
            if group is not None:
                group.foreach_env_runner(fn, local_env_runner=True)

    def converts_from(self, checkpoint_stack: Stack, path: str) -> bool:
        """Whether a checkpoint of ``checkpoint_stack`` is converted to fit (raises if it cannot)."""
        raise NotImplementedError

    def policy(self, policy_id: str) -> Optional[Model]:
        """The RLModule (new stack) or Policy (old stack) of ``policy_id`` (None if absent)."""
        raise NotImplementedError

    def model_config(self, policy_id: str) -> object:
        """The model config ``policy_id`` was built with, as the user and algorithm set it."""
        raise NotImplementedError

    def add(self, policy_id: str, cls: type, obs_space: Space, act_space: Space, model_config: object) -> None:
        """Add a policy of class ``cls`` (RLlib's ``add_module`` / ``add_policy``)."""
        raise NotImplementedError

    def remove(self, policy_id: str) -> None:
        raise NotImplementedError

    def act(self, policy_id: str, obs: object, explore: bool, state: Optional[State], agent_id: Optional[str]) -> object:
        """One action for one raw observation, through the policy's observation filter.

        Raises:
            RecurrentStateError: ``state`` does not fit the policy (the message continues
                "policy 'x' ...").
        """
        raise NotImplementedError

    def initial_state(self, policy_id: str) -> Optional[State]:
        model = self.policy(policy_id)
        assert model is not None, policy_id  # asked only for a policy the algorithm holds
        return initial_state(model)

    def live_filters(self) -> ObservationFilters:
        """The current filter statistics: per policy (old stack) or per agent (new stack)."""
        raise NotImplementedError

    def filter_keys(self, policy_id: str, live: ObservationFilters) -> List[str]:
        """The keys of ``live`` (:meth:`live_filters`) whose statistics ``policy_id`` acts through."""
        return [policy_id] if policy_id in live.stats else []  # per policy; per agent: overridden

    def set_filters(self, updates: Mapping[str, FilterStats]) -> None:
        """Set ``{policy or agent id: statistics}`` on every env runner (local, remote, evaluation)."""
        raise NotImplementedError

    def observation_filter(self, policy_id: str, agent_id: Optional[str] = None) -> Optional[FilterStats]:
        """The statistics ``policy_id``'s observations go through (for ``agent_id``), or None.

        Raises:
            CheckpointError: new stack, without ``agent_id``: several agents with
                different statistics play the module.
        """
        return self.live_filters().stats.get(policy_id)  # per policy; per agent: overridden

    @staticmethod
    def zero_resources(config: AlgorithmConfig) -> None:
        """Add to ``config``'s cut to zero resources what this stack needs cut too."""
        raise NotImplementedError

    @staticmethod
    def only_policies(config: AlgorithmConfig, spaces: Mapping[str, SpacePair], mapping_fn: Callable[..., object]) -> None:
        """Make ``config`` hold exactly the policies in ``spaces`` (none trained)."""
        raise NotImplementedError

    @staticmethod
    def callbacks_class(callbacks: Any) -> Any:
        """``config.callbacks_class`` as this stack instantiates it (the new stack: a list as it is)."""
        return callbacks

    @staticmethod
    def policy_base() -> type:
        """The class every policy class of this stack derives from (RLModule / Policy)."""
        raise NotImplementedError

    @staticmethod
    def default_class(algo_cls: Type[Algorithm], framework: str) -> Optional[type]:
        """``algo_cls``'s default policy class on this stack."""
        raise NotImplementedError

    @staticmethod
    def build(cls: type, obs_space: Space, act_space: Space, meta: Mapping[str, object], weights: Weights,
              defaults: Callable[[], AlgorithmConfig]) -> Model:
        """A stored policy, built and set to ``weights`` (``defaults()``: the algorithm's config)."""
        raise NotImplementedError

    @staticmethod
    def model_action(model: Model, obs: object, explore: bool, state: Optional[State]) -> object:
        """One action from a built stored policy for one (already filtered) observation."""
        raise NotImplementedError


def frozen_fn(current: PoliciesToTrain, frozen: Sequence[str], all_ids: Sequence[str]) -> PoliciesToTrain:
    """``policies_to_train`` with ``frozen`` removed, in the same form as ``current``."""
    frozen_set = set(frozen)
    if current is None:
        return [p for p in all_ids if p not in frozen_set]
    if callable(current):
        orig = current

        def should_train(pid: str, batch: object = None) -> bool:
            return pid not in frozen_set and bool(orig(pid, batch))

        return should_train
    return [p for p in current if p not in frozen_set]
