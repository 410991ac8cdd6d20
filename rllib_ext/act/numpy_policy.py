"""Act with numpy alone: a checkpoint's policy, its observation filter and its forward pass.

``NumpyPolicy.from_checkpoint(path, policy_id)`` reads one policy with the Ray-free reader,
checks that its model is one of RLlib's default models this module computes exactly, and
then gives action-distribution inputs, greedy or sampled actions, values and (for LSTM
models) the recurrent state, equal to RLlib's own forward pass to float32 rounding.

Supported (anything else is refused with an error naming the option or tensor):

* new stack: ``DefaultPPOTorchRLModule`` (and APPO's) with ``fcnet_hiddens``,
  ``fcnet_activation``, ``head_fcnet_hiddens``/``head_fcnet_activation``,
  ``vf_share_layers`` either way, ``use_lstm`` (one layer, ``lstm_cell_size``);
* old stack: the default ``FullyConnectedNetwork``, torch (state_dict names) and tf2
  (positional weights in Keras order, kernels ``[in, out]``), ``vf_share_layers`` either way;
* a 1-D Box observation; a Discrete (Categorical) or 1-D Box (DiagGaussian) action;
* an action-masking module (``rllib_ext.masking.MaskedPPOTorchRLModule``, or RLlib's
  example ``ActionMaskingTorchRLModule``): the observation is ``{"observations": x,
  "action_mask": m}``, the network acts on ``x`` and ``max(log m, FLOAT_MIN)`` is added to
  its logits, as the module does, so an illegal action has probability 0;
* the ``MeanStdFilter`` the policy acted through (old stack: the policy's; new stack: the
  agent's, see :meth:`NumpyPolicy.from_checkpoint`), applied as RLlib applies it.

Actions are the distribution's (a Box action is neither clipped nor unsquashed; RLlib's
env runners do that after the policy). Imports numpy and ``rllib_ext.checkpoint`` only.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any, Dict, List, Mapping, Optional, Sequence, Set, Tuple, Union, cast

import numpy as np
import numpy.typing as npt

from ..checkpoint.filters import FilterStats, filters_of
from ..checkpoint.inspection import read_policy_opened
from ..checkpoint.reader import open_checkpoint
from ..checkpoint.tensors import is_positional
from ..checkpoint.views import PolicyView, SpaceView
from ..errors import CheckpointFormatError, InvalidArgumentError, RecurrentStateError, UnsupportedModelError
from .filter_owner import agent_of
from .nets import (ACTIVATIONS, CATEGORICAL, DIAG_GAUSSIAN, ActorCritic, Dense, LSTMCell, State, Tower, greedy_actions,
                   sample_actions)

NEW_STACK_CLASSES = ("DefaultPPOTorchRLModule", "DefaultAPPOTorchRLModule")
# Default PPO networks on obs["observations"], logits masked by obs["action_mask"].
MASKED_CLASSES = ("MaskedPPOTorchRLModule", "ActionMaskingTorchRLModule")
OBSERVATIONS, ACTION_MASK = "observations", "action_mask"  # the masked observation's keys
FLOAT_MIN = -3.4e38  # RLlib's torch_utils.FLOAT_MIN: log(0) is clamped to it
# RLlib 2.60's DefaultModelConfig / MODEL_DEFAULTS for the keys read here (a checkpoint
# stores only what the user set).
NEW_DEFAULTS: Dict[str, Any] = {
    "fcnet_hiddens": [256, 256], "fcnet_activation": "tanh", "head_fcnet_hiddens": [],
    "head_fcnet_activation": "relu", "vf_share_layers": True, "use_lstm": False, "log_std_clip_param": 20.0,
}
OLD_DEFAULTS: Dict[str, Any] = {"fcnet_hiddens": [256, 256], "fcnet_activation": "tanh", "vf_share_layers": True}
# Options whose layers this module does not compute: refused, by name.
NEW_REFUSED = ("use_attention", "free_log_std", "fcnet_use_layernorm", "head_fcnet_use_layernorm",
               "lstm_use_prev_action", "lstm_use_prev_reward")
OLD_REFUSED = ("custom_model", "use_lstm", "use_attention", "free_log_std", "no_final_linear", "post_fcnet_hiddens")
Observations = Union[npt.ArrayLike, Mapping[str, npt.ArrayLike]]  # raw: an array, or a masked policy's dict of them


@dataclass(frozen=True)
class PolicyOutput:
    """One forward pass over a batch.

    Attributes:
        action_dist_inputs: ``[B, n]``: logits (Discrete) or mean and log-std (Box).
        values: ``[B]`` value estimates.
        state_out: the next recurrent state (None for feed-forward models).
    """

    action_dist_inputs: np.ndarray
    values: np.ndarray
    state_out: Optional[State]


class NumpyPolicy:
    """A policy that acts with numpy alone; see :meth:`from_checkpoint`.

    Attributes:
        policy_id: the policy / module id.
        network: the :class:`~rllib_ext.act.nets.ActorCritic` built from the weights.
        observation_space, action_space: as the checkpoint records them.
        masked: an action-masking policy: it acts on ``{"observations": [B, n],
            "action_mask": [B, actions]}`` and never picks an action whose mask is 0.
        obs_filter: the ``MeanStdFilter`` statistics applied to raw observations, or None.
        source: where it was read from (checkpoint path and, for a filter, whose).
    """

    def __init__(self, policy_id: str, network: ActorCritic, observation_space: SpaceView,
                 action_space: SpaceView, obs_filter: Optional[FilterStats] = None, source: str = "") -> None:
        self.policy_id, self.network, self.obs_filter, self.source = policy_id, network, obs_filter, source
        self.observation_space, self.action_space = observation_space, action_space
        self.masked = observation_space.type == "Dict"  # build_network accepts a Dict only for a masking module

    @classmethod
    def from_checkpoint(cls, path: "str | os.PathLike[str]", policy_id: Optional[str] = None, *,
                        agent_id: Optional[str] = None, filters: bool = True, trusted: bool = False) -> "NumpyPolicy":
        """Read one policy (any checkpoint the reader accepts, or a single-policy directory).

        Args:
            path: the checkpoint.
            policy_id: the policy / module id; optional when there is one.
            agent_id: new stack: whose ``MeanStdFilter`` statistics to apply. Without it,
                the one agent the checkpoint's ``policy_mapping_fn`` maps to the module
                (the function is called only if it is a module-level function of a module
                already imported, or with ``trusted=True``), or the only agent with a filter.
            filters: False ignores the observation filter (acts on raw observations).
            trusted: unpickle with plain pickle (imports whatever the files name).

        Raises:
            UnsupportedModelError: the model is not one computed here (names the option).
            PolicyNotFoundError: ``policy_id`` or ``agent_id`` is not in the checkpoint.
            CheckpointError: several agents play the module with different filters.
            UnsupportedFilterError: its observation filter keeps nested (Dict/Tuple)
                statistics (``filters=False`` acts without it).
        """
        ckpt, layout = open_checkpoint(path)
        view, weights = read_policy_opened(ckpt, layout, policy_id, trusted=trusted)
        ((pid, pview),) = view.policies.items()
        label = f"policy {pid!r} of {ckpt.uri}"
        network = build_network(label, view.stack, pview, weights)
        obs_space, act_space = pview.observation_space, pview.action_space
        assert obs_space is not None and act_space is not None  # build_network refuses a policy without them
        obs_filter, whose = None, ""
        if filters:
            found = filters_of(ckpt, layout)
            if found.keyed_by == "agent" and found.stats:
                key = agent_of(label, ckpt, pid, sorted(found.stats), agent_id, trusted)
                obs_filter, whose = found.stats[key], f", filter of agent {key!r}"
            elif pid in found.stats:
                obs_filter, whose = found.stats[pid], ", filter of the policy"
        if obs_filter is not None and tuple(obs_filter.shape) != input_space(obs_space).shape:
            raise CheckpointFormatError(f"{label}: the observation filter is of shape {obs_filter.shape} "
                                        f"but the observations of {input_space(obs_space).shape}")
        return cls(pid, network, obs_space, act_space, obs_filter, f"{ckpt.uri}{whose}")

    @property
    def recurrent(self) -> bool:
        return self.network.recurrent

    def initial_state(self, batch_size: int = 1) -> Optional[State]:
        """The recurrent state to start a batch of episodes from (zeros), or None."""
        return self.network.initial_state(batch_size)

    def filter_observations(self, obs: npt.ArrayLike) -> np.ndarray:
        """Raw observations (float32) through the policy's ``MeanStdFilter``, as RLlib does."""
        x = np.asarray(obs, np.float32)
        return x if self.obs_filter is None else self.obs_filter.apply(x).astype(np.float32)

    def forward(self, obs: Observations, state: Optional[State] = None) -> PolicyOutput:
        """Action-distribution inputs, values and next state for a batch ``[B, obs]`` of raw observations.

        A masked policy takes ``{"observations": [B, obs], "action_mask": [B, actions]}`` and
        gives an illegal action the logit ``FLOAT_MIN``. A recurrent policy takes one time
        step per call; ``state`` defaults to :meth:`initial_state`. Raises
        InvalidArgumentError unless ``obs`` is of those shapes.
        """
        mask = None
        if self.masked:
            if not isinstance(obs, Mapping) or set(obs) != {OBSERVATIONS, ACTION_MASK}:
                got = sorted(obs) if isinstance(obs, Mapping) else type(obs).__name__
                raise InvalidArgumentError(
                    f"policy {self.policy_id!r} masks its actions: obs must be a dict with {OBSERVATIONS!r} and "
                    f"{ACTION_MASK!r} (batches), got {got}")
            mask = self._batch(ACTION_MASK, obs[ACTION_MASK], (int(self.action_space.n or 0),))
            obs = obs[OBSERVATIONS]
        x = self._batch(OBSERVATIONS if self.masked else "obs", obs, input_space(self.observation_space).shape or ())
        x = self.filter_observations(x)
        out = PolicyOutput(*self.network.forward(x, state))
        if mask is None:
            return out
        if mask.shape[0] != x.shape[0]:
            raise InvalidArgumentError(f"policy {self.policy_id!r}: {ACTION_MASK} has {mask.shape[0]} rows but "
                                       f"{OBSERVATIONS} {x.shape[0]}")
        with np.errstate(divide="ignore"):
            penalty = np.maximum(np.log(mask), np.float32(FLOAT_MIN))
        return PolicyOutput((out.action_dist_inputs + penalty).astype(np.float32), out.values, out.state_out)

    def _batch(self, name: str, value: object, shape: Tuple[int, ...]) -> np.ndarray:
        x = np.asarray(value, np.float32)
        if x.ndim != 2 or x.shape[1:] != shape:
            raise InvalidArgumentError(
                f"policy {self.policy_id!r}: {name} must be a batch of "
                f"{'masks' if name == ACTION_MASK else 'observations'} of shape "
                f"[B, {', '.join(map(str, shape))}], got {list(x.shape)}"
            )
        return x

    def compute_actions(
        self, obs: Observations, state: Optional[State] = None, *, explore: bool = False, rng: Optional[np.random.Generator] = None
    ) -> Tuple[np.ndarray, Optional[State]]:
        """(actions, next state) for a batch; greedy unless ``explore`` (then drawn with ``rng``); raises as :meth:`forward`."""
        out = self.forward(obs, state)
        if not explore:
            return greedy_actions(out.action_dist_inputs, self.network.distribution), out.state_out
        rng = rng if rng is not None else np.random.default_rng()
        return sample_actions(out.action_dist_inputs, self.network.distribution, rng), out.state_out

    def compute_action(self, obs: Observations, *, explore: bool = False, rng: Optional[np.random.Generator] = None) -> Any:
        """One action for one observation of a feed-forward policy (recurrent: use compute_actions).

        Raises RecurrentStateError for a recurrent policy, InvalidArgumentError as :meth:`forward`."""
        if self.recurrent:
            raise RecurrentStateError(f"policy {self.policy_id!r} is recurrent: call compute_actions(obs_batch, state)")
        actions, _ = self.compute_actions(stack_observations([obs]), explore=explore, rng=rng)
        return actions[0]

    def __repr__(self) -> str:
        kind = "LSTM" if self.recurrent else "MLP"
        flt = self.obs_filter.describe() if self.obs_filter else "no filter"
        return f"NumpyPolicy({self.policy_id!r}, {kind}, {self.network.distribution}, {flt})"


def stack_observations(observations: Sequence[Observations]) -> "np.ndarray | Dict[str, np.ndarray]":
    """A batch of raw observations: an array ``[B, ...]``, or for masked observations
    (dicts) a dict of such arrays, key by key."""
    if observations and isinstance(observations[0], Mapping):
        dicts = cast(Sequence[Mapping[str, npt.ArrayLike]], observations)  # like the first (else o[k] fails)
        return {k: np.stack([np.asarray(o[k], np.float32) for o in dicts]) for k in dicts[0]}
    return np.stack([np.asarray(o, np.float32) for o in observations])


def input_space(space: SpaceView) -> SpaceView:
    """What the network reads: the space itself, or a masked observation's ``observations``."""
    return (space.spaces or {}).get(OBSERVATIONS, space) if space.type == "Dict" else space


# ---------------------------------------------------------------- building the network


def build_network(label: str, stack: str, view: PolicyView, weights: Mapping[str, np.ndarray]) -> ActorCritic:
    """The :class:`ActorCritic` of one policy's weights, or :class:`UnsupportedModelError`."""
    obs, act = view.observation_space, view.action_space
    if obs is None or act is None:
        raise UnsupportedModelError(f"{label}: the checkpoint records no observation/action space")
    masking = str(view.policy_class).rsplit(".", 1)[-1] in MASKED_CLASSES
    if masking:
        keys = set(obs.spaces or {}) if obs.type == "Dict" else set()
        mask = (obs.spaces or {}).get(ACTION_MASK)
        if keys != {OBSERVATIONS, ACTION_MASK} or act.type != "Discrete" or mask is None or mask.shape != (act.n,):
            raise UnsupportedModelError(
                f"{label}: an action-masking module needs observation space Dict({{{OBSERVATIONS!r}: Box, "
                f"{ACTION_MASK!r}: Box(0, 1, (n,))}}) and action space Discrete(n); got {obs.describe()} and "
                f"{act.describe()}")
        obs = input_space(obs)
    if obs.type != "Box" or not obs.shape or len(obs.shape) != 1:
        raise UnsupportedModelError(f"{label}: observation space {obs.describe()}: only 1-D Box observations are supported")
    if act.type == "Discrete":
        distribution = CATEGORICAL
    elif act.type == "Box" and act.shape and len(act.shape) == 1:
        distribution = DIAG_GAUSSIAN
    else:
        raise UnsupportedModelError(f"{label}: action space {act.describe()}: only Discrete and 1-D Box actions are supported")
    weights = {k: np.asarray(v) for k, v in weights.items()}
    mc = view.model_config if isinstance(view.model_config, dict) else {}
    if stack == "new":
        net = _new_stack(label, view.policy_class, mc, weights, distribution)
    else:
        net = _old_stack(label, mc, weights, distribution)
    try:  # shapes chain up: one zero observation through every layer
        net.forward(np.zeros((1, obs.shape[0]), np.float32))
    except ValueError as e:
        raise CheckpointFormatError(f"{label}: the layers' shapes do not chain ({e})") from e
    return net


def _checked(label: str, mc: Mapping[str, Any], refused: Tuple[str, ...], where: str) -> None:
    on = [k for k in refused if mc.get(k)]
    if on:
        shown = ", ".join(f"{k}={mc[k]!r}" for k in on)
        raise UnsupportedModelError(f"{label}: model option {shown} is not supported by NumpyPolicy ({where})")
    for key in ("fcnet_activation", "head_fcnet_activation"):
        if key in mc and _activation(mc[key]) not in ACTIVATIONS:
            raise UnsupportedModelError(
                f"{label}: model option {key}={mc[key]!r} is not supported; supported: {', '.join(ACTIVATIONS)}"
            )


def _activation(value: object) -> str:
    return "linear" if value in (None, "", "linear") else str(value).lower()


def _linear_layers(weights: Mapping[str, np.ndarray], prefix: str, used: Set[str]) -> List[Tuple[np.ndarray, np.ndarray]]:
    """``prefix.{k}.weight/bias`` pairs of a torch Sequential, in index order."""
    idx = sorted(
        int(n[len(prefix) + 1: -len(".weight")]) for n in weights
        if n.startswith(prefix + ".") and n.endswith(".weight") and n[len(prefix) + 1: -len(".weight")].isdigit()
    )
    out = []
    for k in idx:
        w, b = f"{prefix}.{k}.weight", f"{prefix}.{k}.bias"
        used.update((w, b))
        out.append((weights[w].astype(np.float32), weights[b].astype(np.float32)))
    return out


def _new_stack(label: str, policy_class: Optional[str], mc: Mapping[str, Any], weights: Mapping[str, np.ndarray],
               distribution: str) -> ActorCritic:
    if str(policy_class).rsplit(".", 1)[-1] not in NEW_STACK_CLASSES + MASKED_CLASSES:  # single-policy files: dotted
        raise UnsupportedModelError(
            f"{label}: module class {policy_class!r} is not one of RLlib's default models "
            f"({', '.join(NEW_STACK_CLASSES + MASKED_CLASSES)})"
        )
    mc = dict(NEW_DEFAULTS, **mc)
    _checked(label, mc, NEW_REFUSED, "new API stack")
    act, head_act = _activation(mc["fcnet_activation"]), _activation(mc["head_fcnet_activation"])
    used: Set[str] = set()

    def tower(prefix: str) -> Tower:
        lstm = None
        mlp_prefix = f"{prefix}.net.mlp"
        if f"{prefix}.lstm.weight_ih_l0" in weights:
            if f"{prefix}.lstm.weight_ih_l1" in weights:
                raise UnsupportedModelError(f"{label}: {prefix}.lstm has more than one layer")
            names = [f"{prefix}.lstm.{p}_l0" for p in ("weight_ih", "weight_hh", "bias_ih", "bias_hh")]
            used.update(names)
            lstm = LSTMCell(*(weights[n].astype(np.float32) for n in names))
            mlp_prefix = f"{prefix}.tokenizer.net.mlp"
        layers = tuple(Dense(w, b, act) for w, b in _linear_layers(weights, mlp_prefix, used))
        if len(layers) != len(mc["fcnet_hiddens"]):
            raise UnsupportedModelError(
                f"{label}: {mlp_prefix} has {len(layers)} linear layers but fcnet_hiddens={list(mc['fcnet_hiddens'])}"
            )
        return Tower(layers, lstm)

    def head(prefix: str) -> Tuple[Dense, ...]:
        pairs = _linear_layers(weights, prefix, used)
        return tuple(Dense(w, b, head_act if i < len(pairs) - 1 else "linear") for i, (w, b) in enumerate(pairs))

    shared = any(n.startswith("encoder.encoder.") for n in weights)
    actor = tower("encoder.encoder" if shared else "encoder.actor_encoder")
    critic = None if shared else tower("encoder.critic_encoder")
    if bool(mc["use_lstm"]) != (actor.lstm is not None):
        raise UnsupportedModelError(f"{label}: use_lstm={mc['use_lstm']} but the encoder's tensors say otherwise")
    pi, vf = head("pi.net.mlp"), head("vf.net.mlp")
    clip = weights.get("pi.log_std_clip_param_const")
    used.update(n for n in weights if n.endswith(".log_std_clip_param_const"))
    _no_leftovers(label, weights, used)
    log_std_clip = float(np.ravel(clip)[0]) if clip is not None else float(mc["log_std_clip_param"])
    return ActorCritic(actor, critic, pi, vf, distribution, log_std_clip)


def _old_stack(label: str, mc: Mapping[str, Any], weights: Mapping[str, np.ndarray], distribution: str) -> ActorCritic:
    mc = dict(OLD_DEFAULTS, **mc)
    _checked(label, mc, OLD_REFUSED, "old API stack: only the default FullyConnectedNetwork")
    hiddens, act, share = list(mc["fcnet_hiddens"] or ()), _activation(mc["fcnet_activation"]), bool(mc["vf_share_layers"])
    if not hiddens:
        raise UnsupportedModelError(f"{label}: model option fcnet_hiddens=[] (no hidden layers) is not supported")
    # slot -> (weight, bias) in torch layout [out, in]
    slots: Dict[Tuple[str, int], Tuple[np.ndarray, np.ndarray]] = {}
    if is_positional(weights):  # tf2: Keras variable order, kernels [in, out]
        order = []
        for i in range(len(hiddens)):
            order.append(("actor", i))
            if not share:
                order.append(("critic", i))
        order += [("pi", 0), ("vf", 0)]
        if len(weights) != 2 * len(order):
            raise UnsupportedModelError(
                f"{label}: {len(weights)} tf2 weights, but the default FullyConnectedNetwork with "
                f"fcnet_hiddens={hiddens}, vf_share_layers={share} has {2 * len(order)}"
            )
        for k, slot in enumerate(order):
            slots[slot] = (weights[str(2 * k)].T.astype(np.float32), weights[str(2 * k + 1)].astype(np.float32))
    else:
        names = {("actor", i): f"_hidden_layers.{i}._model.0" for i in range(len(hiddens))}
        if not share:
            names.update({("critic", i): f"_value_branch_separate.{i}._model.0" for i in range(len(hiddens))})
        names.update({("pi", 0): "_logits._model.0", ("vf", 0): "_value_branch._model.0"})
        used: Set[str] = set()
        for slot, prefix in names.items():
            w, b = f"{prefix}.weight", f"{prefix}.bias"
            if w not in weights or b not in weights:
                raise UnsupportedModelError(f"{label}: tensor {w!r} of the default FullyConnectedNetwork is missing")
            used.update((w, b))
            slots[slot] = (weights[w].astype(np.float32), weights[b].astype(np.float32))
        _no_leftovers(label, weights, used)

    def dense(kind: str, n: int, activation: str) -> Tuple[Dense, ...]:
        return tuple(Dense(*slots[(kind, i)], activation) for i in range(n))

    actor = Tower(dense("actor", len(hiddens), act))
    critic = None if share else Tower(dense("critic", len(hiddens), act))
    return ActorCritic(actor, critic, dense("pi", 1, "linear"), dense("vf", 1, "linear"), distribution, None)


def _no_leftovers(label: str, weights: Mapping[str, np.ndarray], used: Set[str]) -> None:
    left = [n for n in weights if n not in used]
    if left:
        raise UnsupportedModelError(
            f"{label}: tensor(s) {', '.join(left)} belong to layers NumpyPolicy does not compute"
        )
