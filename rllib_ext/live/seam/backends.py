"""The one place the API stacks differ: a :class:`Backend` per stack.

Everything the rest of the package asks of a live algorithm, or of a stack, goes through
a Backend (the interface: :mod:`.backend_base`): list a live algorithm's policy ids, get
and set their weights (synced to every learner and env runner), freeze them, add and
remove one, act with one, read and set observation filters; cut a config down before it
is built; build a stored policy and act with it. :func:`backend_for` is the one test of
which stack an algorithm is on (``tests/test_layout.py`` checks that the config flags
naming the stack appear only in this module). Per-stack work that needs no algorithm
lives below, in :mod:`.bridge` and :mod:`.filter_state`. Ray, RLlib and torch are
imported inside the functions that need them, so importing this module stays Ray-free. While it does, :meth:`Backend.quiesced` holds training still
(asynchronous learners: see :mod:`.quiesce`).
"""

from __future__ import annotations

import functools
from contextlib import contextmanager
from typing import Any, Callable, Dict, Iterator, List, Mapping, Optional, Sequence, Type, cast

from ...checkpoint.filters import FilterStats, ObservationFilters
from ...checkpoint.format import Stack
from ...checkpoint.tensors import Weights, by_position, positional
from ...checkpoint.training_state import TrainingState
from ...errors import CheckpointError, not_found
from . import quiesce
from . import carry_training as ts
from .backend_base import Backend
from .bridge import (
    State,
    build_module,
    build_policy_object,
    effective_model_config,
    initial_state,
    keep_module_specs,
    module_action,
    one_callbacks_class,
    policy_action,
)
from .compat import single_action_obs
from .ray_internals import is_multi_module, old_stack_counters, raise_weights_seq_no
from .rllib_types import (Algorithm, AlgorithmConfig, ConfigT, Learner, LearnerGroup, MetricsLogger, Model,
                          PoliciesToTrain, Policy, RLModule, RLModuleSpec, Space, SpacePair, config_of)
from .filter_state import (
    agent_filter_of,
    agents_of,
    connector_filters,
    set_connector_filters,
    set_worker_filters,
    worker_filters,
)


class NewStackBackend(Backend):
    """RLModules live in the learner group; env runners hold inference-only copies."""

    stack = "new"
    _version: Optional[int] = None  # inside quiesced(): the weights version the restore makes

    @property
    def _learners(self) -> LearnerGroup:
        return cast(LearnerGroup, self.algo.learner_group)  # built by setup() on the new stack

    def _learner_results(self, fn: Callable) -> List[Any]:
        results = self._learners.foreach_learner(fn)
        return [r.get() for r in results]

    def ids(self) -> List[str]:
        return sorted(self._learner_results(lambda l: list(l.module.keys()))[0])

    def get_weights(self, ids: Sequence[str]) -> Dict[str, Weights]:
        state = self._learners.get_weights(module_ids=list(ids))
        return {mid: dict(state[mid]) for mid in ids}

    def training_states(self, ids: Sequence[str]) -> Dict[str, TrainingState]:
        return self._learner_results(lambda l, _ids=tuple(ids): ts.learner_training_state(l, _ids))[0]

    def set_and_sync(self, weights: Dict[str, Weights], training: Optional[Dict[str, TrainingState]] = None) -> None:
        import ray
        from ray.rllib.core import DEFAULT_MODULE_ID

        lg = self._learners
        lg.set_weights(weights)  # local learner, or every remote learner
        if training:
            self._learner_results(lambda l, _t=training: ts.set_learner_training_state(l, _t))
        # Env runners built by RLlib hold inference-only modules (no critic); modules
        # added later with add_module() may be full. Send both views; each module takes
        # the one that matches it.
        comps = [f"learner/rl_module/{mid}" for mid in weights]
        inference = lg.get_state(components=comps, inference_only=True)["learner"]["rl_module"]
        ref = ray.put((dict(weights), inference))

        def _set(er: Any, _ref: Any = ref, _version: Optional[int] = self._version) -> None:
            full, inf = ray.get(_ref)
            # A single-agent runner (e.g. the RLlink server) holds one RLModule, not a
            # MultiRLModule: it is the default module.
            modules = er.module if is_multi_module(er.module) else {DEFAULT_MODULE_ID: er.module}
            state = {
                mid: (inf if modules[mid].inference_only else full)[mid]
                for mid in full
                if mid in modules
            }
            # No WEIGHTS_SEQ_NO in the state: env runners apply it unconditionally.
            er.set_state({"rl_module": state})
            if _version is not None:  # older learner states (in flight, cached) are now refused,
                raise_weights_seq_no(er, _version)  # new samples: "after"

        self.on_every_env_runner(_set)

    def env_steps(self) -> int:
        from ray.rllib.utils.metrics import (
            ENV_RUNNER_RESULTS,
            NUM_ENV_STEPS_SAMPLED_LIFETIME,
        )

        metrics = cast(MetricsLogger, self.algo.metrics)  # built by setup() on the new stack
        return int(metrics.peek((ENV_RUNNER_RESULTS, NUM_ENV_STEPS_SAMPLED_LIFETIME), default=0))

    @contextmanager
    def quiesced(self, ids: Sequence[str]) -> Iterator[None]:
        """APPO/IMPALA: pause the learner's update thread (see :mod:`.quiesce`), then resume.

        Two calls before the block (hold, settle) and one after (resume, marking ``ids``
        when the block succeeded). The weights version the restore makes goes to the env
        runners in :meth:`set_and_sync`.

        Raises:
            CheckpointError: several learners with update threads (DDP) that have trained:
                not held, nothing changed.
        """
        held = [n for n in self._learner_results(quiesce.hold) if n is not None]
        if not held:
            yield  # synchronous learners
            return
        try:
            if len(held) > 1 and max(held) > 0:
                raise CheckpointError(
                    f"cannot hold {len(held)} learners of a running {type(self.algo).__name__} still: "
                    "with num_learners > 1, DDP updates them in lockstep; restore before the first "
                    "train(), or run with num_learners <= 1"
                )
            self._version = max(v for v in self._learner_results(quiesce.settle) if v is not None)
        except BaseException:
            self._learner_results(quiesce.resume)
            raise
        done = False
        try:
            yield
            done = True
        finally:
            version, self._version = self._version, None
            # Several learners get here untrained: nothing sampled before, nothing to filter.
            restored = tuple(ids) if done and len(held) == 1 else ()
            self._learner_results(lambda l, _ids=restored, _v=version: quiesce.resume(l, _ids, _v))

    def model_configs(self, ids: Sequence[str]) -> Dict[str, Dict[str, Any]]:
        """Each module's model config with RLlib's defaults merged in (what its catalog used)."""
        import dataclasses

        def _get(learner: Any, _ids: Sequence[str] = tuple(ids)) -> Dict[str, Any]:
            out = {}
            for mid in _ids:
                mc = learner.module[mid].model_config
                out[mid] = dataclasses.asdict(mc) if dataclasses.is_dataclass(mc) and not isinstance(mc, type) else dict(mc or {})
            return out

        return {mid: effective_model_config(mc) for mid, mc in self._learner_results(_get)[0].items()}

    def trainable(self) -> PoliciesToTrain:
        return self._learner_results(lambda learner: learner.config.policies_to_train)[0]

    def set_trainable(self, value: PoliciesToTrain) -> None:
        def _set(learner: Learner, _value: PoliciesToTrain = value) -> None:
            learner.config.multi_agent(policies_to_train=_value)

        self._learner_results(_set)

    def converts_from(self, checkpoint_stack: Stack, path: str) -> bool:
        return checkpoint_stack is Stack.OLD

    def policy(self, policy_id: str) -> Optional[RLModule]:
        return self.algo.get_module(policy_id)

    def model_config(self, policy_id: str) -> object:
        module = self.policy(policy_id)
        assert module is not None, policy_id  # asked only for a module the algorithm holds
        return module.model_config

    def add(self, policy_id: str, cls: type, obs_space: Space, act_space: Space, model_config: Any) -> None:
        from ray.rllib.core.rl_module.rl_module import RLModuleSpec

        spec = RLModuleSpec(module_class=cls, observation_space=obs_space, action_space=act_space,
                            model_config=model_config)
        self.algo.add_module(policy_id, spec)

    def remove(self, policy_id: str) -> None:
        self.algo.remove_module(policy_id)

    def act(self, policy_id: str, obs: object, explore: bool, state: Optional[State], agent_id: Optional[str]) -> object:
        module = self.policy(policy_id)
        if module is None:
            raise not_found("policy", policy_id, f"the algorithm ({type(self.algo).__name__})", self.ids())
        stats = self.observation_filter(policy_id, agent_id)
        return module_action(module, obs if stats is None else stats.apply(obs), explore, state)

    def live_filters(self) -> ObservationFilters:
        return connector_filters(self.algo)

    def set_filters(self, updates: Mapping[str, FilterStats]) -> None:
        set_connector_filters(self.algo, updates)

    def filter_keys(self, policy_id: str, live: ObservationFilters) -> List[str]:
        return agents_of(self.algo, live.stats, policy_id)

    def observation_filter(self, policy_id: str, agent_id: Optional[str] = None) -> Optional[FilterStats]:
        return agent_filter_of(self.algo, self.live_filters(), policy_id, agent_id)

    @staticmethod
    def zero_resources(config: AlgorithmConfig) -> None:
        config.learners(num_learners=0, num_cpus_per_learner=0, num_gpus_per_learner=0)
        config.env_runners(create_local_env_runner=True)

    @staticmethod
    def only_policies(config: AlgorithmConfig, spaces: Mapping[str, SpacePair], mapping_fn: Callable[..., Any]) -> None:
        config.multi_agent(policies=set(spaces), policy_mapping_fn=mapping_fn, policies_to_train=[])
        keep_module_specs(config, spaces)

    @staticmethod
    def policy_base() -> type:
        from ray.rllib.core.rl_module.rl_module import RLModule

        return RLModule

    @staticmethod
    def default_class(algo_cls: Type[Algorithm], framework: str) -> Optional[type]:
        spec = algo_cls.get_default_config().framework(framework).get_default_rl_module_spec()
        return cast(RLModuleSpec, spec).module_class  # a single-agent spec for the default module

    @staticmethod
    def build(cls: type, obs_space: Space, act_space: Space, meta: Mapping[str, Any], weights: Weights,
              defaults: Callable[[], AlgorithmConfig]) -> Model:
        return build_module(cls, obs_space, act_space, meta.get("model_config") or {}, weights)

    @staticmethod
    def model_action(model: Model, obs: object, explore: bool, state: Optional[State]) -> object:
        return module_action(cast(RLModule, model), obs, explore, state)  # this stack builds RLModules


class OldStackBackend(Backend):
    """Policies live on every rollout worker; the local worker is the source of truth."""

    stack = "old"
    callbacks_class = staticmethod(one_callbacks_class)

    @staticmethod
    def _as_dict(w: Any) -> Weights:
        return by_position(w) if isinstance(w, (list, tuple)) else dict(w)  # tf2: a list

    def ids(self) -> List[str]:
        return sorted(self.algo.env_runner.policy_map.keys())

    def get_weights(self, ids: Sequence[str]) -> Dict[str, Weights]:
        return {pid: self._as_dict(self.algo.get_policy(pid).get_weights()) for pid in ids}

    def training_states(self, ids: Sequence[str]) -> Dict[str, TrainingState]:
        return {pid: ts.policy_training_state(self.algo.get_policy(pid)) for pid in ids}

    def set_and_sync(self, weights: Dict[str, Weights], training: Optional[Dict[str, TrainingState]] = None) -> None:
        import ray

        native = {}
        for pid, w in weights.items():
            current = self.algo.get_policy(pid).get_weights()
            if isinstance(current, (list, tuple)):
                native[pid] = positional(w, len(current))
            else:
                native[pid] = w
        ref = ray.put((native, training or {}))

        def _set(worker: Any, _ref: Any = ref) -> None:
            w, train = ray.get(_ref)
            worker.set_weights(w)
            for pid, state in train.items():  # after the weights: set_weights resets target networks
                ts.set_policy_training_state(worker.policy_map[pid], state)

        self.on_every_env_runner(_set)

    def trainable(self) -> PoliciesToTrain:
        return self.algo.env_runner.is_policy_to_train

    def env_steps(self) -> int:
        from ray.rllib.utils.metrics import NUM_ENV_STEPS_SAMPLED

        return int(old_stack_counters(self.algo)[NUM_ENV_STEPS_SAMPLED])  # what RLlib reports as timesteps_total

    def set_trainable(self, value: PoliciesToTrain) -> None:
        if value is not None and not callable(value):
            value = list(value)

        def _set(worker: Any, _value: PoliciesToTrain = value) -> None:
            if _value is None:  # RLlib's setter refuses None, which a worker may start with
                worker.is_policy_to_train = None
            else:
                worker.set_is_policy_to_train(_value)

        self.on_every_env_runner(_set)

    def converts_from(self, checkpoint_stack: Stack, path: str) -> bool:
        if checkpoint_stack is Stack.NEW:
            raise CheckpointError(
                f"{path}: a new-API-stack checkpoint cannot be restored into an old-API-stack "
                "algorithm: tensor names differ (conversion only goes old -> new stack)"
            )
        return False

    def policy(self, policy_id: str) -> Optional[Policy]:
        return self.algo.get_policy(policy_id)

    def model_config(self, policy_id: str) -> object:
        policy = self.policy(policy_id)
        assert policy is not None, policy_id  # asked only for a policy the algorithm holds
        return policy.config.get("model", {})

    def add(self, policy_id: str, cls: type, obs_space: Space, act_space: Space, model_config: object) -> None:
        self.algo.add_policy(policy_id, cls, observation_space=obs_space, action_space=act_space)

    def remove(self, policy_id: str) -> None:
        self.algo.remove_policy(policy_id)

    def act(self, policy_id: str, obs: object, explore: bool, state: Optional[State], agent_id: Optional[str]) -> object:
        # Algorithm.compute_single_action applies the worker's preprocessor and filter.
        compute = functools.partial(self.algo.compute_single_action, policy_id=policy_id, full_fetch=True)
        obs = single_action_obs(self.algo, policy_id, obs)  # Ray < 2.57 does not filter there: compat does
        return policy_action(compute, self.initial_state(policy_id) is not None, obs, explore, state)

    def live_filters(self) -> ObservationFilters:
        return worker_filters(self.algo)

    def set_filters(self, updates: Mapping[str, FilterStats]) -> None:
        set_worker_filters(self.algo, updates)

    @staticmethod
    def zero_resources(config: AlgorithmConfig) -> None:
        config.resources(num_gpus=0)

    @staticmethod
    def only_policies(config: AlgorithmConfig, spaces: Mapping[str, SpacePair], mapping_fn: Callable[..., Any]) -> None:
        from ray.rllib.policy.policy import PolicySpec

        config.multi_agent(
            policies={pid: PolicySpec(observation_space=o, action_space=a) for pid, (o, a) in spaces.items()},
            policy_mapping_fn=mapping_fn,
            policies_to_train=[],
        )

    @staticmethod
    def policy_base() -> type:
        from ray.rllib.policy.policy import Policy

        return Policy

    @staticmethod
    def default_class(algo_cls: Type[Algorithm], framework: str) -> Optional[type]:
        return algo_cls.get_default_policy_class(_old_stack(algo_cls.get_default_config()).framework(framework))

    @staticmethod
    def build(cls: type, obs_space: Space, act_space: Space, meta: Mapping[str, Any], weights: Weights,
              defaults: Callable[[], AlgorithmConfig]) -> Model:
        """``defaults()``: the stored algorithm's default config; the stored model config on top."""
        config = (
            _old_stack(defaults())
            .framework(meta.get("framework") or "torch")
            .training(model={k: v for k, v in (meta.get("model_config") or {}).items() if v is not None})
        )
        return build_policy_object(cls, obs_space, act_space, config.to_dict(), weights)

    @staticmethod
    def model_action(model: Model, obs: object, explore: bool, state: Optional[State]) -> object:
        policy = cast(Policy, model)  # this stack builds Policies
        return policy_action(policy.compute_single_action, initial_state(policy) is not None, obs, explore, state)


def _old_stack(config: ConfigT) -> ConfigT:
    return config.api_stack(enable_rl_module_and_learner=False, enable_env_runner_and_connector_v2=False)


def backend_class(config: AlgorithmConfig) -> Type[Backend]:
    """The Backend class of an AlgorithmConfig's API stack (nothing built yet)."""
    return NewStackBackend if config.enable_rl_module_and_learner else OldStackBackend


def backend_named(stack: str) -> Type[Backend]:
    """The Backend class for policy.json's ``stack`` ("new" or "old")."""
    return OldStackBackend if stack == OldStackBackend.stack else NewStackBackend


def backend_for(algo: Algorithm) -> Backend:
    """The backend for ``algo``'s API stack."""
    return backend_class(config_of(algo))(algo)

