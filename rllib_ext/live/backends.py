"""Ray-facing adapters: the few things the rest of the package asks of a live algorithm.

Per API stack, a :class:`Backend` lists a live algorithm's policy ids, gets and sets their
weights (synced to every learner and env runner) and freezes them. Beside it, the other
bridges between plain data and RLlib objects: the effective model config of a module,
a gymnasium space from a :class:`~rllib_ext.checkpoint.views.SpaceView`, and one action
from an RLModule. Ray, RLlib, gymnasium and torch are imported inside the functions that
need them, so importing this module stays cheap and Ray-free.
"""

from __future__ import annotations

from typing import Any, Callable, Dict, List, Optional, Sequence, Union

import numpy as np

from ..checkpoint.tensors import Weights, by_position, positional
from ..checkpoint.views import SpaceView
from ..errors import CheckpointError

State = Union[Dict[str, Any], List[np.ndarray]]  # a recurrent policy's state (maybe nested), no batch dimension


class Backend:
    """The handful of operations partial restore needs, per API stack."""

    def __init__(self, algo: Any) -> None:
        self.algo = algo

    def ids(self) -> List[str]:
        raise NotImplementedError

    def get_weights(self, ids: Sequence[str]) -> Dict[str, Weights]:
        raise NotImplementedError

    def set_and_sync(self, weights: Dict[str, Weights]) -> None:
        raise NotImplementedError

    def freeze(self, ids: Sequence[str], all_ids: Sequence[str]) -> None:
        """Remove ``ids`` from ``policies_to_train``; ``all_ids`` is :meth:`ids` (already asked)."""
        raise NotImplementedError

    def model_configs(self, ids: Sequence[str]) -> Dict[str, Dict[str, Any]]:
        """Each module's model config, defaults merged in (new stack only: conversion targets)."""
        raise NotImplementedError

    def eval_group(self) -> Any:
        return getattr(self.algo, "eval_env_runner_group", None)


def frozen_fn(current: Any, frozen: Sequence[str], all_ids: Sequence[str]) -> Any:
    """``policies_to_train`` with ``frozen`` removed, in the same form as ``current``."""
    frozen = set(frozen)
    if current is None:
        return [p for p in all_ids if p not in frozen]
    if callable(current):
        orig = current

        def should_train(pid: str, batch: Any = None) -> bool:
            return pid not in frozen and bool(orig(pid, batch))

        return should_train
    return [p for p in current if p not in frozen]


class NewStackBackend(Backend):
    """RLModules live in the learner group; env runners hold inference-only copies."""

    def _learner_results(self, fn: Callable) -> List[Any]:
        results = self.algo.learner_group.foreach_learner(fn)
        return [r.get() for r in results]

    def ids(self) -> List[str]:
        return sorted(self._learner_results(lambda l: list(l.module.keys()))[0])

    def get_weights(self, ids: Sequence[str]) -> Dict[str, Weights]:
        state = self.algo.learner_group.get_weights(module_ids=list(ids))
        return {mid: dict(state[mid]) for mid in ids}

    def set_and_sync(self, weights: Dict[str, Weights]) -> None:
        import ray
        from ray.rllib.core import DEFAULT_MODULE_ID

        lg = self.algo.learner_group
        lg.set_weights(weights)  # local learner, or every remote learner
        # Env runners built by RLlib hold inference-only modules (no critic); modules
        # added later with add_module() may be full. Send both views; each module takes
        # the one that matches it.
        comps = [f"learner/rl_module/{mid}" for mid in weights]
        inference = lg.get_state(components=comps, inference_only=True)["learner"]["rl_module"]
        ref = ray.put((dict(weights), inference))

        def _set(er: Any, _ref: Any = ref) -> None:
            full, inf = ray.get(_ref)
            # A single-agent runner (e.g. the RLlink server) holds one RLModule, not a
            # MultiRLModule: it is the default module.
            modules = er.module if hasattr(er.module, "_rl_modules") else {DEFAULT_MODULE_ID: er.module}
            state = {
                mid: (inf if modules[mid].inference_only else full)[mid]
                for mid in full
                if mid in modules
            }
            # No WEIGHTS_SEQ_NO in the state: env runners apply it unconditionally.
            er.set_state({"rl_module": state})

        for group in (self.algo.env_runner_group, self.eval_group()):
            if group is not None:
                group.foreach_env_runner(_set, local_env_runner=True)

    def model_configs(self, ids: Sequence[str]) -> Dict[str, Dict[str, Any]]:
        """Each module's model config with RLlib's defaults merged in (what its catalog used)."""
        import dataclasses

        def _get(learner: Any, _ids: Sequence[str] = tuple(ids)) -> Dict[str, Any]:
            out = {}
            for mid in _ids:
                mc = learner.module[mid].model_config
                out[mid] = dataclasses.asdict(mc) if dataclasses.is_dataclass(mc) else dict(mc or {})
            return out

        return {mid: effective_model_config(mc) for mid, mc in self._learner_results(_get)[0].items()}

    def freeze(self, ids: Sequence[str], all_ids: Sequence[str]) -> None:
        def _freeze(learner: Any, _ids: Sequence[str] = tuple(ids)) -> None:
            learner.config.multi_agent(
                policies_to_train=frozen_fn(learner.config.policies_to_train, _ids, all_ids)
            )

        self._learner_results(_freeze)


class OldStackBackend(Backend):
    """Policies live on every rollout worker; the local worker is the source of truth."""

    @staticmethod
    def _as_dict(w: Any) -> Weights:
        return by_position(w) if isinstance(w, (list, tuple)) else dict(w)  # tf2: a list

    def ids(self) -> List[str]:
        return sorted(self.algo.env_runner.policy_map.keys())

    def get_weights(self, ids: Sequence[str]) -> Dict[str, Weights]:
        return {pid: self._as_dict(self.algo.get_policy(pid).get_weights()) for pid in ids}

    def set_and_sync(self, weights: Dict[str, Weights]) -> None:
        import ray

        native = {}
        for pid, w in weights.items():
            current = self.algo.get_policy(pid).get_weights()
            if isinstance(current, (list, tuple)):
                native[pid] = positional(w, len(current))
            else:
                native[pid] = w
        ref = ray.put(native)

        def _set(worker: Any, _ref: Any = ref) -> None:
            worker.set_weights(ray.get(_ref))

        for group in (self.algo.env_runner_group, self.eval_group()):
            if group is not None:
                group.foreach_env_runner(_set, local_env_runner=True)

    def freeze(self, ids: Sequence[str], all_ids: Sequence[str]) -> None:
        local = self.algo.env_runner
        new = frozen_fn(local.is_policy_to_train, ids, all_ids)
        if not callable(new):
            new = list(new)

        for group in (self.algo.env_runner_group, self.eval_group()):
            if group is not None:
                group.foreach_env_runner(
                    lambda w, _new=new: w.set_is_policy_to_train(_new), local_env_runner=True
                )


def backend_for(algo: Any) -> Backend:
    """The backend for ``algo``'s API stack."""
    return NewStackBackend(algo) if algo.config.enable_rl_module_and_learner else OldStackBackend(algo)


def effective_model_config(model_config: Any) -> Dict[str, Any]:
    """RLlib's ``DefaultModelConfig`` with ``model_config`` on top, as a plain dict.

    A module's ``model_config`` holds only what the user (and the algorithm) set; the
    catalog fills the rest from ``DefaultModelConfig``. Imports RLlib.
    """
    import dataclasses

    from ray.rllib.core.rl_module.default_model_config import DefaultModelConfig

    if dataclasses.is_dataclass(model_config) and not isinstance(model_config, type):
        model_config = dataclasses.asdict(model_config)
    return {**dataclasses.asdict(DefaultModelConfig()), **dict(model_config or {})}


def to_gym_space(view: SpaceView) -> Any:
    """A gymnasium space from its plain description."""
    import gymnasium as gym

    def bound(b: Any) -> Any:
        return np.asarray(b, dtype=view.dtype or np.float32).reshape(view.shape) if isinstance(b, tuple) else b

    if view.type == "Box":
        return gym.spaces.Box(bound(view.low), bound(view.high), view.shape, np.dtype(view.dtype or "float32"))
    if view.type == "Discrete":
        return gym.spaces.Discrete(int(view.n), start=int(view.start or 0))
    if view.type == "MultiDiscrete":
        return gym.spaces.MultiDiscrete(np.asarray(view.nvec).reshape(view.shape or (-1,)))
    if view.type == "MultiBinary":
        return gym.spaces.MultiBinary(view.shape or int(view.n))
    if view.type == "Tuple":
        return gym.spaces.Tuple([to_gym_space(s) for s in (view.spaces or {}).values()])
    if view.type == "Dict":
        return gym.spaces.Dict({k: to_gym_space(s) for k, s in (view.spaces or {}).items()})
    raise CheckpointError(f"cannot rebuild a {view.type} space from policy.json")


def module_action(module: Any, obs: Any, explore: bool = False, state: Optional[State] = None) -> Any:
    """One action from a torch RLModule for one (already filtered) observation.

    No connector pipeline. Deterministic (the distribution's mode) unless ``explore``.
    A recurrent (stateful) module needs ``state`` (start from :func:`initial_state`) and
    returns ``(action, next_state)``; others return the action.

    Raises:
        ValueError: ``state`` given for a stateless module, or missing for a stateful one
            (the message continues "policy 'x' ...": callers prefix the id).
    """
    import torch
    import tree  # dm-tree, an RLlib dependency: states nest (actor/critic encoders)

    stateful = bool(module.is_stateful())
    if stateful != (state is not None):
        raise ValueError(
            "is recurrent: pass state= (start from initial_state()) and get (action, next_state) back"
            if stateful else "is not recurrent: it takes no state="
        )
    x = torch.as_tensor(np.asarray(obs, dtype=np.float32)[None])
    batch: Dict[str, Any] = {"obs": x[:, None] if stateful else x}  # recurrent: [batch, time=1, ...]
    if stateful:
        batch["state_in"] = tree.map_structure(lambda v: torch.as_tensor(np.asarray(v))[None], state)
    with torch.no_grad():
        out = module.forward_inference(batch)
    logits = out["action_dist_inputs"][:, 0] if stateful else out["action_dist_inputs"]
    dist = module.get_inference_action_dist_cls().from_logits(logits)
    if not explore:
        dist = dist.to_deterministic()
    action = dist.sample()[0].numpy()
    if not stateful:
        return action
    return action, tree.map_structure(lambda v: np.array(v[0].numpy(), copy=True), out["state_out"])


def initial_state(module_or_policy: Any) -> Optional[State]:
    """A recurrent policy's initial state (numpy, no batch dimension), else None.

    New stack: ``{name: array}`` of the RLModule; old stack: the Policy's list of arrays.
    """
    if hasattr(module_or_policy, "is_stateful"):
        import tree

        if not module_or_policy.is_stateful():
            return None
        return tree.map_structure(lambda v: np.array(v, copy=True), module_or_policy.get_initial_state())
    state = module_or_policy.get_initial_state()
    return [np.array(s, copy=True) for s in state] if state else None
