"""Bridges between plain data and RLlib objects, below :mod:`rllib_ext.live.seam.backends`.

A gymnasium space from a :class:`~rllib_ext.checkpoint.views.SpaceView`, the effective
model config of a module, one action from an RLModule or an old-stack Policy, a
stored policy built from its class, spaces and weights, and one callbacks class from a list. Functions that differ per API
stack come in pairs; :class:`rllib_ext.live.seam.backends.Backend` picks one, so nothing here
asks which stack an algorithm is on. Ray, RLlib, gymnasium and torch are imported inside
the functions that need them, so importing this module stays cheap and Ray-free.
"""

from __future__ import annotations

from typing import Any, Callable, Collection, Dict, List, Mapping, Optional, Union, cast

import numpy as np

from ...checkpoint.tensors import Weights, positional
from ...checkpoint.views import SpaceView
from ...errors import CheckpointError, RecurrentStateError
from .ray_internals import config_module_spec
from .rllib_types import AlgorithmConfig, Model, Policy, RLModule, Space

State = Union[Dict[str, Any], List[np.ndarray]]  # a recurrent policy's state (maybe nested), no batch dimension


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


def to_gym_space(view: SpaceView) -> Space:
    """A gymnasium space from its plain description."""
    import gymnasium as gym

    def bound(b: object) -> Any:
        return np.asarray(b, dtype=view.dtype or np.float32).reshape(view.shape) if isinstance(b, tuple) else b

    if view.type == "Box":
        return gym.spaces.Box(bound(view.low), bound(view.high), view.shape, np.dtype(view.dtype or "float32").type)
    if view.type == "Discrete" and view.n is not None:  # without n: the CheckpointError below
        return gym.spaces.Discrete(int(view.n), start=int(view.start or 0))
    if view.type == "MultiDiscrete":
        return gym.spaces.MultiDiscrete(np.asarray(view.nvec).reshape(view.shape or (-1,)))
    if view.type == "MultiBinary" and (view.shape or view.n is not None):
        return gym.spaces.MultiBinary(view.shape or int(view.n or 0))
    if view.type == "Tuple":
        return gym.spaces.Tuple([to_gym_space(s) for s in (view.spaces or {}).values()])
    if view.type == "Dict":
        return gym.spaces.Dict({k: to_gym_space(s) for k, s in (view.spaces or {}).items()})
    raise CheckpointError(f"cannot rebuild a {view.type} space from policy.json")


def module_action(module: RLModule, obs: object, explore: bool = False, state: Optional[State] = None) -> object:
    """One action from a torch RLModule for one (already filtered) observation.

    No connector pipeline. Deterministic (the distribution's mode) unless ``explore``.
    A recurrent (stateful) module needs ``state`` (start from :func:`initial_state`) and
    returns ``(action, next_state)``; others return the action.

    Raises:
        RecurrentStateError: ``state`` given for a stateless module, or missing for a
            stateful one (the message continues "policy 'x' ...": callers prefix the id).
    """
    import torch
    import tree  # dm-tree, an RLlib dependency: states nest (actor/critic encoders)

    stateful = bool(module.is_stateful())
    check_state(stateful, state)
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
    action = cast("torch.Tensor", dist.sample())[0].numpy()
    if not stateful:
        return action
    return action, tree.map_structure(lambda v: np.array(v[0].numpy(), copy=True), out["state_out"])


def policy_action(compute: Callable[..., Any], recurrent: bool, obs: object, explore: bool,
                  state: Optional[State]) -> object:
    """One action from an old-stack ``compute_single_action`` (a Policy's, or the Algorithm's
    with ``full_fetch=True``: both return ``(action, state_out, info)``).

    A recurrent policy needs ``state`` and returns ``(action, next_state)``; others return
    the action. Raises RecurrentStateError as :func:`module_action` does.
    """
    check_state(recurrent, state)
    if not recurrent:
        return compute(obs, explore=explore)[0]
    action, next_state, _ = compute(obs, state=state, explore=explore)
    return action, [np.array(s, copy=True) for s in next_state]


def check_state(recurrent: bool, state: Optional[State]) -> None:
    """``state`` goes with a recurrent policy and only with one (callers prefix the id).

    Raises:
        RecurrentStateError: it does not (a ``ValueError`` too).
    """
    if recurrent != (state is not None):
        raise RecurrentStateError(
            "is recurrent: pass state= (start from initial_state()) and get (action, next_state) back"
            if recurrent else "is not recurrent: it takes no state="
        )


def initial_state(module_or_policy: Model) -> Optional[State]:
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


def build_module(cls: type, obs_space: Space, act_space: Space, model_config: Mapping[str, object], weights: Weights) -> RLModule:
    """New stack: an RLModule of ``cls`` set to ``weights``, in eval mode."""
    model = cls(observation_space=obs_space, action_space=act_space, inference_only=False, model_config=model_config)
    model.set_state(weights)
    model.eval()
    return model


def build_policy_object(cls: type, obs_space: Space, act_space: Space, config: Mapping[str, object], weights: Weights) -> Policy:
    """Old stack: a Policy of ``cls`` with the policy ``config``, set to ``weights``."""
    model = cls(obs_space, act_space, config)
    tf2 = isinstance(model.get_weights(), (list, tuple))  # tf2: a list in variable order
    model.set_weights(positional(weights, len(weights)) if tf2 else weights)
    return model


def keep_module_specs(config: AlgorithmConfig, ids: Collection[str]) -> None:
    """New stack: drop the module specs a config was given for ids outside ``ids``."""
    spec = config_module_spec(config)
    if spec is not None and hasattr(spec, "rl_module_specs") and isinstance(spec.rl_module_specs, dict):
        spec.rl_module_specs = {k: v for k, v in spec.rl_module_specs.items() if k in ids}



def one_callbacks_class(callbacks: Any) -> Any:
    """A callbacks list as one class (RLlib's ``make_multi_callbacks``), for a stack that
    instantiates ``config.callbacks_class`` itself (the old stack's RolloutWorker)."""
    from ray.rllib.algorithms.callbacks import make_multi_callbacks

    return make_multi_callbacks(list(callbacks)) if isinstance(callbacks, (list, tuple)) else callbacks
