"""Old-API-stack tensor names -> new-API-stack module tensor names, with numpy alone.

:func:`convert_policy` decides which old tensor becomes which new tensor, transposed or
not, checked against the target's model config. No Ray, torch or TensorFlow: both
cross-stack partial restore (:mod:`rllib_ext.live.restore.policies`) and the writer
(:func:`rllib_ext.live.restore.migration.migrate`) call it.

Built in (no user mapping needed): RLlib's default fully connected model
(``FullyConnectedNetwork``, torch and tf2) on a 1-D Box observation, with
``vf_share_layers`` either way, into ``DefaultPPOTorchRLModule`` (PPO, IMPALA) or
``DefaultAPPOTorchRLModule`` (APPO) with the same ``fcnet_hiddens`` / ``fcnet_activation``
/ ``vf_share_layers`` / ``free_log_std``; and (torch) the LSTM wrapper around it
(:mod:`rllib_ext.convert.lstm`) and the vision network (:mod:`rllib_ext.convert.vision`):

=====================================  ==================================  =================================
new stack (DefaultPPOTorchRLModule)    old stack torch (state_dict names)  old stack tf2 (weights list)
=====================================  ==================================  =================================
encoder.actor_encoder.net.mlp.{2i}.*   _hidden_layers.{i}._model.0.*       fc_{i+1}/kernel (transposed), bias
encoder.critic_encoder.net.mlp.{2i}.*  _value_branch_separate.{i}._model.0  fc_value_{i+1}/kernel, bias
encoder.encoder.net.mlp.{2i}.*         _hidden_layers.{i}._model.0.*        fc_{i+1}/* (vf_share_layers=True)
pi.net.mlp.0.*                         _logits._model.0.*                   fc_out/*
vf.net.mlp.0.*                         _value_branch._model.0.*             value_out/*
pi.log_std (free_log_std=True)         _append_free_log_std.log_std        (refused: not mapped for tf2)
*.log_std_clip_param_const             (kept from the target: a constant)   (same)
_old_encoder.*, _old_pi.* (APPO)       copies of encoder.*, pi.*            (same)
=====================================  ==================================  =================================

The tf2 list is in Keras variable order: by depth, the actor layer before the value layer
of the same depth (``fc_1, fc_value_1, fc_2, fc_value_2, ..., fc_out, value_out``); TF
kernels are ``[in, out]``, torch weights ``[out, in]``. (The encoder's linear layers are
found by name in the target, so ``{2i}`` is only the usual index with an activation.)

Every mapping is exact or refused. The new stack clips the log-std to
``+-log_std_clip_param`` (20); a free log-std outside that range is refused (a state-dependent
log-std cannot be checked ahead: it is clipped only where it exceeds 20). APPO's target
networks are copies of the networks they follow, as the old stack's target model is after
weights are set. RLlib's torch ``VisionNetwork`` (image observations) is built in too
(:mod:`rllib_ext.convert.vision`).

Any other model (``custom_model``, attention wrappers, ``post_fcnet_hiddens``, ...) needs ``mapping=``: ``{old name: new name}`` (``None`` drops
an old tensor) or a callable ``old weights -> new weights``. Without one the error lists
the old tensors with no mapped target and the new tensors left unset.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence, Set, Tuple, Union

import numpy as np

from ..checkpoint.tensors import Weights, is_constant_buffer, is_positional
from ..errors import MigrationError
from .families import NEW_DEFAULTS, TARGET_NETWORKS, FCNet, new_fcnet, source_model
from .lstm import linear_layers, map_lstm, target_lstm_reasons
from .vision import map_vision, target_vision_reasons

NameMapping = Union[Mapping[str, Optional[str]], Callable[[Weights], Weights]]
Slot = Tuple[str, int]  # ("actor" | "critic" | "pi" | "vf", layer index)
FREE_LOG_STD = "_append_free_log_std.log_std"  # the old torch FCNet's free log-std (free_log_std=True)


# ---------------------------------------------------------------- name tables


def _source_slots(names: Sequence[str], net: FCNet) -> Tuple[Dict[Slot, Tuple[str, str]], bool, Dict[str, str]]:
    """``{slot: (weight name, bias name)}`` of the old default FCNet, whether it is tf
    (positional names, kernels to transpose), and display names for tf positions."""
    n = len(net.hiddens)
    if is_positional(names):  # tf2: a list in Keras variable order
        order: List[Tuple[Slot, str]] = []
        for i in range(n):
            order.append((("actor", i), f"fc_{i + 1}"))
            if not net.vf_share_layers:
                order.append((("critic", i), f"fc_value_{i + 1}"))
        order += [(("pi", 0), "fc_out"), (("vf", 0), "value_out")]
        slots: Dict[Slot, Tuple[str, str]] = {}
        shown: Dict[str, str] = {}
        for k, (slot, layer) in enumerate(order):
            slots[slot] = (str(2 * k), str(2 * k + 1))
            shown[str(2 * k)], shown[str(2 * k + 1)] = f"{layer}/kernel", f"{layer}/bias"
        return slots, True, shown
    prefixes: Dict[Slot, str] = {("actor", i): f"_hidden_layers.{i}._model.0" for i in range(n)}
    if not net.vf_share_layers:
        prefixes.update({("critic", i): f"_value_branch_separate.{i}._model.0" for i in range(n)})
    prefixes[("pi", 0)] = "_logits._model.0"
    prefixes[("vf", 0)] = "_value_branch._model.0"
    return {s: (f"{p}.weight", f"{p}.bias") for s, p in prefixes.items()}, False, {}


def _target_slots(names: Sequence[str], vf_share_layers: bool) -> Dict[Slot, Tuple[str, str]]:
    """``{slot: (weight name, bias name)}`` of a DefaultPPOTorchRLModule state, found by name."""
    slots: Dict[Slot, Tuple[str, str]] = {}
    actor = "encoder.encoder.net.mlp" if vf_share_layers else "encoder.actor_encoder.net.mlp"
    for i, wb in enumerate(linear_layers(names, actor)):
        slots[("actor", i)] = wb
    if not vf_share_layers:
        for i, wb in enumerate(linear_layers(names, "encoder.critic_encoder.net.mlp")):
            slots[("critic", i)] = wb
    for head in ("pi", "vf"):
        for i, wb in enumerate(linear_layers(names, f"{head}.net.mlp")):
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
    observation_space: object = None,
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
    unmapped: List[str]
    shown: Dict[str, str]
    if mapping is not None:
        produced, unmapped, shown, why = _user_mapping(label, source, target, mapping), [], {}, "the given mapping"
        if isinstance(mapping, Mapping):
            unmapped = [n for n in source if n not in mapping]
    else:
        produced, unmapped, shown, why = _default_mapping(label, source, target, source_model_config, target_model_config, observation_space, target_name)
    produced = with_target_networks(produced, target)
    unset = [n for n in target if n not in produced and not is_constant_buffer(n)]
    if unmapped or unset:
        raise MigrationError(
            f"{label}: cannot map the old-stack model onto {target_name} ({why}); "
            "pass mapping={old name: new name} or a callable (old weights -> new weights). "
            f"source tensors with no mapped target: {_listing(unmapped, source, shown)}; "
            f"target tensors left unset: {_listing(unset, target, {})}"
        )
    return OrderedDict((n, np.asarray(produced[n] if n in produced else t)) for n, t in target.items())


def with_target_networks(produced: Mapping[str, np.ndarray], target: Mapping[str, object]) -> Weights:
    """``produced`` plus the target's target networks (APPO's ``_old_encoder`` / ``_old_pi``),
    copied from the networks they follow, as the old stack syncs its target model when
    weights are set. Names the target lacks, or already produced, are left alone."""
    out = dict(produced)
    for name in target:
        for copy, main in TARGET_NETWORKS.items():
            if name.startswith(copy) and name not in out and main + name[len(copy):] in out:
                out[name] = np.array(out[main + name[len(copy):]], copy=True)
    return out


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
    observation_space: object,
    target_name: str,
) -> Tuple[Weights, List[str], Dict[str, str], str]:
    """The built-in tables: (produced, unmapped source names, display names, what was mapped)."""
    is_tf = is_positional(source)
    kind = "tf2" if is_tf else "torch"
    model = source_model(source_model_config, observation_space, kind)
    if model.reasons:  # not a built-in model: map nothing, list everything
        return {}, list(source), {}, "; ".join(model.reasons)
    tmc = dict(NEW_DEFAULTS, **dict(target_model_config or {}))
    if model.vision is not None:
        _refuse_other_target(label, target_name, model, "a", target_vision_reasons(tmc, model.vision))
        produced, unmapped = map_vision(source, list(target), model.vision)
        return produced, unmapped, {}, f"torch {model.describe()}"
    if model.lstm is not None:
        _refuse_other_target(label, target_name, model, "an", target_lstm_reasons(tmc, model.lstm))
        produced, unmapped = map_lstm(source, list(target), model.lstm)
        return produced, unmapped, {}, f"torch {model.describe()}"
    old = model.fc
    new, target_reasons = new_fcnet(tmc)
    if target_reasons:
        raise MigrationError(
            f"{label}: {target_name} has {', '.join(target_reasons)}, which the old-stack "
            "fully connected model has no weights for; pass mapping= to fill it yourself"
        )
    if old != new:
        raise MigrationError(
            f"{label}: the checkpoint's model has {old.describe()} but {target_name} has "
            f"{new.describe()}; configure the new stack with the checkpoint's values, e.g. "
            f"config.rl_module(model_config={model.target_config()!r})"
        )
    produced, used, shown = _map_fcnet(source, target, old, new.vf_share_layers)
    if old.free_log_std and FREE_LOG_STD in source and "pi.log_std" in target:
        produced["pi.log_std"] = _free_log_std(label, source[FREE_LOG_STD], tmc)
        used.add(FREE_LOG_STD)
    return produced, [n for n in source if n not in used], shown, f"{kind} {model.describe()}"


def _refuse_other_target(label: str, target_name: str, model: Any, article: str, differs: List[str]) -> None:
    """A vision or LSTM model maps only onto a target configured like it."""
    if differs:
        raise MigrationError(
            f"{label}: the checkpoint's model is {article} {model.describe()} but {target_name} has "
            f"{', '.join(differs)}; configure the new stack with config.rl_module(model_config="
            f"{model.target_config()!r})"
        )


def _map_fcnet(
    source: Weights, target: Mapping[str, np.ndarray], old: FCNet, vf_share_layers: bool
) -> Tuple[Weights, set, Dict[str, str]]:
    """The default FCNet's layers, slot by slot: (produced, source names used, display names)."""
    src_slots, is_tf, shown = _source_slots(list(source), old)
    tgt_slots = _target_slots(list(target), vf_share_layers)
    produced: Weights = {}
    used: Set[str] = set()
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
    return produced, used, shown


def _free_log_std(label: str, value: Any, tmc: Mapping[str, Any]) -> np.ndarray:
    """The old free log-std, refused where the new stack's clip would change it."""
    log_std = np.asarray(value)
    clip = float(tmc.get("log_std_clip_param") or 20.0)
    if np.any(np.abs(log_std) > clip):
        raise MigrationError(
            f"{label}: the free log-std {np.round(log_std, 3).tolist()} lies outside the new stack's "
            f"clip range +-{clip:g} (log_std_clip_param), so the new module would act differently; "
            "not migrated"
        )
    return log_std


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
