"""Old-API-stack tensor names -> new-API-stack module tensor names, with numpy alone.

:func:`convert_policy` decides which old tensor becomes which new tensor, transposed or
not, checked against the target's model config. No Ray, torch or TensorFlow: both
cross-stack partial restore (:mod:`rllib_ext.restore`) and the writer
(:func:`rllib_ext.migration.migrate`) call it.

Built in (no user mapping needed): RLlib's default fully connected model
(``FullyConnectedNetwork``, torch and tf2) on a 1-D Box observation, with
``vf_share_layers`` either way, into ``DefaultPPOTorchRLModule`` with the same
``fcnet_hiddens`` / ``fcnet_activation`` / ``vf_share_layers``:

=====================================  ==================================  =================================
new stack (DefaultPPOTorchRLModule)    old stack torch (state_dict names)  old stack tf2 (weights list)
=====================================  ==================================  =================================
encoder.actor_encoder.net.mlp.{2i}.*   _hidden_layers.{i}._model.0.*       fc_{i+1}/kernel (transposed), bias
encoder.critic_encoder.net.mlp.{2i}.*  _value_branch_separate.{i}._model.0  fc_value_{i+1}/kernel, bias
encoder.encoder.net.mlp.{2i}.*         _hidden_layers.{i}._model.0.*        fc_{i+1}/* (vf_share_layers=True)
pi.net.mlp.0.*                         _logits._model.0.*                   fc_out/*
vf.net.mlp.0.*                         _value_branch._model.0.*             value_out/*
*.log_std_clip_param_const             (kept from the target: a constant)   (same)
=====================================  ==================================  =================================

The tf2 list is in Keras variable order: by depth, the actor layer before the value layer
of the same depth (``fc_1, fc_value_1, fc_2, fc_value_2, ..., fc_out, value_out``); TF
kernels are ``[in, out]``, torch weights ``[out, in]``. (The encoder's linear layers are
found by name in the target, so ``{2i}`` is only the usual index with an activation.)

Any other model (``custom_model``, LSTM/attention wrappers, ``free_log_std``,
``post_fcnet_hiddens``, ...) needs ``mapping=``: ``{old name: new name}`` (``None`` drops
an old tensor) or a callable ``old weights -> new weights``. Without one the error lists
the old tensors with no mapped target and the new tensors left unset.
"""

from __future__ import annotations

import re
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence, Tuple, Union

import numpy as np

from .checkpoint.tensors import Weights, is_constant_buffer
from .errors import MigrationError

NameMapping = Union[Mapping[str, Optional[str]], Callable[[Weights], Weights]]
Slot = Tuple[str, int]  # ("actor" | "critic" | "pi" | "vf", layer index)


# RLlib 2.60's MODEL_DEFAULTS for the keys we read, where an old config leaves one out.
_OLD_DEFAULTS: Dict[str, Any] = {"fcnet_hiddens": [256, 256], "fcnet_activation": "tanh", "vf_share_layers": True}
# RLlib 2.60's DefaultModelConfig for the keys we read (the live code merges the real one).
_NEW_DEFAULTS: Dict[str, Any] = {"fcnet_hiddens": [256, 256], "fcnet_activation": "tanh", "vf_share_layers": True}

TARGET_CLASS = "DefaultPPOTorchRLModule"


@dataclass(frozen=True)
class FCNet:
    """The shape of a plain fully connected actor-critic: what must agree on both sides."""

    hiddens: Tuple[int, ...]
    activation: str
    vf_share_layers: bool

    def describe(self) -> str:
        return (
            f"fcnet_hiddens={list(self.hiddens)}, fcnet_activation={self.activation!r}, "
            f"vf_share_layers={self.vf_share_layers}"
        )


def _activation(value: Any) -> str:
    return "linear" if value in (None, "", "linear") else str(value).lower()


def old_fcnet(model_config: Optional[Mapping[str, Any]]) -> Tuple[FCNet, List[str]]:
    """The old model config as an :class:`FCNet`, and why it is *not* the default FCNet (if so)."""
    mc = dict(_OLD_DEFAULTS, **dict(model_config or {}))
    reasons = []
    if mc.get("custom_model"):
        reasons.append(f"custom_model {mc['custom_model']!r}")
    for key in ("use_lstm", "use_attention", "free_log_std", "no_final_linear"):
        if mc.get(key):
            reasons.append(f"{key}=True")
    if mc.get("post_fcnet_hiddens"):
        reasons.append(f"post_fcnet_hiddens={list(mc['post_fcnet_hiddens'])}")
    if not mc.get("fcnet_hiddens"):
        reasons.append("fcnet_hiddens=[] (no hidden layers)")
    net = FCNet(tuple(int(h) for h in mc.get("fcnet_hiddens") or ()), _activation(mc.get("fcnet_activation")), bool(mc.get("vf_share_layers")))
    return net, reasons


def new_fcnet(model_config: Optional[Mapping[str, Any]]) -> Tuple[FCNet, List[str]]:
    """The target module's model config as an :class:`FCNet`, and what the mapping cannot fill."""
    mc = dict(_NEW_DEFAULTS, **dict(model_config or {}))
    reasons = []
    for key in ("use_lstm", "free_log_std", "fcnet_use_layernorm"):
        if mc.get(key):
            reasons.append(f"{key}=True")
    if mc.get("head_fcnet_hiddens"):
        reasons.append(f"head_fcnet_hiddens={list(mc['head_fcnet_hiddens'])}")
    net = FCNet(tuple(int(h) for h in mc.get("fcnet_hiddens") or ()), _activation(mc.get("fcnet_activation")), bool(mc.get("vf_share_layers")))
    return net, reasons


# ---------------------------------------------------------------- name tables


def _source_slots(names: Sequence[str], net: FCNet) -> Tuple[Dict[Slot, Tuple[str, str]], bool, Dict[str, str]]:
    """``{slot: (weight name, bias name)}`` of the old default FCNet, whether it is tf
    (positional names, kernels to transpose), and display names for tf positions."""
    n = len(net.hiddens)
    if names and all(name.isdigit() for name in names):  # tf2: a list in Keras variable order
        order: List[Tuple[Slot, str]] = []
        for i in range(n):
            order.append((("actor", i), f"fc_{i + 1}"))
            if not net.vf_share_layers:
                order.append((("critic", i), f"fc_value_{i + 1}"))
        order += [(("pi", 0), "fc_out"), (("vf", 0), "value_out")]
        slots, shown = {}, {}
        for k, (slot, layer) in enumerate(order):
            slots[slot] = (str(2 * k), str(2 * k + 1))
            shown[str(2 * k)], shown[str(2 * k + 1)] = f"{layer}/kernel", f"{layer}/bias"
        return slots, True, shown
    slots = {("actor", i): f"_hidden_layers.{i}._model.0" for i in range(n)}
    if not net.vf_share_layers:
        slots.update({("critic", i): f"_value_branch_separate.{i}._model.0" for i in range(n)})
    slots[("pi", 0)] = "_logits._model.0"
    slots[("vf", 0)] = "_value_branch._model.0"
    return {s: (f"{p}.weight", f"{p}.bias") for s, p in slots.items()}, False, {}


def _linear_layers(names: Sequence[str], prefix: str) -> List[Tuple[str, str]]:
    pattern = re.compile(re.escape(prefix) + r"\.(\d+)\.weight")
    idx = sorted(int(m.group(1)) for m in (pattern.fullmatch(n) for n in names) if m)
    return [(f"{prefix}.{k}.weight", f"{prefix}.{k}.bias") for k in idx]


def _target_slots(names: Sequence[str], vf_share_layers: bool) -> Dict[Slot, Tuple[str, str]]:
    """``{slot: (weight name, bias name)}`` of a DefaultPPOTorchRLModule state, found by name."""
    slots: Dict[Slot, Tuple[str, str]] = {}
    actor = "encoder.encoder.net.mlp" if vf_share_layers else "encoder.actor_encoder.net.mlp"
    for i, wb in enumerate(_linear_layers(names, actor)):
        slots[("actor", i)] = wb
    if not vf_share_layers:
        for i, wb in enumerate(_linear_layers(names, "encoder.critic_encoder.net.mlp")):
            slots[("critic", i)] = wb
    for head in ("pi", "vf"):
        for i, wb in enumerate(_linear_layers(names, f"{head}.net.mlp")):
            slots[(head, i)] = wb
    return slots


# ---------------------------------------------------------------- conversion


def convert_policy(
    label: str,
    source: Mapping[str, np.ndarray],
    target: Mapping[str, np.ndarray],
    source_model_config: Optional[Mapping[str, Any]],
    target_model_config: Optional[Mapping[str, Any]],
    *,
    observation_space: Any = None,
    mapping: Optional[NameMapping] = None,
    target_name: str = "the target module",
) -> Weights:
    """Old-stack weights -> a full new-stack module state (named and shaped as ``target``).

    Args:
        label: starts every message, e.g. ``policy 'a'``.
        source: the old policy's weights as the reader returns them (torch names, or tf2
            positions "0", "1", ...).
        target: the target module's current state; gives the names, and the constants
            (``*.log_std_clip_param_const``) that are kept.
        source_model_config: the old policy's ``config["model"]`` (``inspect`` gives it).
        target_model_config: the target module's model config, RLlib defaults merged in.
        observation_space: the old policy's observation space (a :class:`SpaceView`), if known.
        mapping: ``{old name: new name or None}`` or a callable ``old weights -> new
            weights``, for models the built-in table does not cover. Overrides it.
        target_name: how messages call the target (``the algorithm's module``, ...).

    Returns:
        ``{target name: array}`` for every target tensor, in the target's order.
        Shapes and dtypes are left to the caller's tensor check (``checkpoint.tensors.check_tensors``).

    Raises:
        MigrationError: the models do not agree, or tensors stay unmapped (both listed).
    """
    source = {str(k): np.asarray(v) for k, v in source.items()}
    if mapping is not None:
        produced, unmapped, shown, why = _user_mapping(label, source, target, mapping), [], {}, "the given mapping"
        if isinstance(mapping, Mapping):
            unmapped = [n for n in source if n not in mapping]
    else:
        produced, unmapped, shown, why = _default_mapping(label, source, target, source_model_config, target_model_config, observation_space, target_name)
    unset = [n for n in target if n not in produced and not is_constant_buffer(n)]
    if unmapped or unset:
        raise MigrationError(
            f"{label}: cannot map the old-stack model onto {target_name} ({why}); "
            "pass mapping={old name: new name} or a callable (old weights -> new weights). "
            f"source tensors with no mapped target: {_listing(unmapped, source, shown)}; "
            f"target tensors left unset: {_listing(unset, target, {})}"
        )
    return OrderedDict((n, np.asarray(produced[n] if n in produced else t)) for n, t in target.items())


def _listing(names: Sequence[str], weights: Mapping[str, Any], shown: Mapping[str, str]) -> str:
    if not names:
        return "-"
    return ", ".join(
        f"{n}{' (' + shown[n] + ')' if n in shown else ''} {tuple(np.shape(weights[n]))}" for n in names
    )


def _default_mapping(
    label: str,
    source: Weights,
    target: Mapping[str, np.ndarray],
    source_model_config: Optional[Mapping[str, Any]],
    target_model_config: Optional[Mapping[str, Any]],
    observation_space: Any,
    target_name: str,
) -> Tuple[Weights, List[str], Dict[str, str], str]:
    """The built-in table: (produced, unmapped source names, display names, what was mapped)."""
    old, reasons = old_fcnet(source_model_config)
    if source_model_config is None:
        reasons.append("the checkpoint records no model config")
    obs_type = getattr(observation_space, "type", None)
    obs_shape = getattr(observation_space, "shape", None)
    if observation_space is not None and not (obs_type == "Box" and obs_shape is not None and len(obs_shape) == 1):
        describe = getattr(observation_space, "describe", lambda: repr(observation_space))
        reasons.append(f"observation space {describe()} (only 1-D Box observations are built in)")
    if reasons:  # not the default FCNet: map nothing, list everything
        return {}, list(source), {}, "; ".join(reasons)
    new, target_reasons = new_fcnet(target_model_config)
    if target_reasons:
        raise MigrationError(
            f"{label}: {target_name} has {', '.join(target_reasons)}, which the old-stack "
            "fully connected model has no weights for; pass mapping= to fill it yourself"
        )
    if old != new:
        raise MigrationError(
            f"{label}: the checkpoint's model has {old.describe()} but {target_name} has "
            f"{new.describe()}; configure the new stack with the checkpoint's values, e.g. "
            f"config.rl_module(model_config={{'fcnet_hiddens': {list(old.hiddens)}, "
            f"'fcnet_activation': {old.activation!r}, 'vf_share_layers': {old.vf_share_layers}}})"
        )
    src_slots, is_tf, shown = _source_slots(list(source), old)
    tgt_slots = _target_slots(list(target), new.vf_share_layers)
    produced: Weights = {}
    used = set()
    for slot, (tw, tb) in tgt_slots.items():
        if slot not in src_slots:
            continue
        sw, sb = src_slots[slot]
        if sw not in source or sb not in source:
            continue
        w = source[sw]
        produced[tw] = w.T if is_tf and w.ndim == 2 else w
        produced[tb] = source[sb]
        used.update((sw, sb))
    kind = "tf2" if is_tf else "torch"
    return produced, [n for n in source if n not in used], shown, f"{kind} FullyConnectedNetwork, {old.describe()}"


def _user_mapping(label: str, source: Weights, target: Mapping[str, np.ndarray], mapping: NameMapping) -> Weights:
    if callable(mapping) and not isinstance(mapping, Mapping):
        produced = mapping(dict(source))
        if not isinstance(produced, Mapping):
            raise MigrationError(f"{label}: the mapping callable returned {type(produced).__name__}, not a dict of arrays")
        unknown = [n for n in produced if n not in target]
        if unknown:
            raise MigrationError(
                f"{label}: the mapping callable returned names the target does not have: {', '.join(unknown)}; "
                f"target tensors: {', '.join(target)}"
            )
        return {str(k): np.asarray(v) for k, v in produced.items()}
    bad_src = [s for s in mapping if s not in source]
    bad_tgt = [t for t in mapping.values() if t is not None and t not in target]
    if bad_src or bad_tgt:
        raise MigrationError(
            f"{label}: the mapping names tensors that do not exist; not in the checkpoint: "
            f"{', '.join(bad_src) or '-'}; not in the target: {', '.join(bad_tgt) or '-'}"
        )
    targets = [t for t in mapping.values() if t is not None]
    dupes = sorted({t for t in targets if targets.count(t) > 1})
    if dupes:
        raise MigrationError(f"{label}: the mapping sets target tensor(s) more than once: {', '.join(dupes)}")
    return {t: source[s] for s, t in mapping.items() if t is not None}
