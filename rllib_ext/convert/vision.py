"""The old stack's ``VisionNetwork`` -> the new stack's CNN encoder + heads (numpy only).

Old stack (torch, image observations ``[h, w, c]``, ``conv_filters=[[out, kernel, stride], ...]``):
every conv layer but the last pads RLlib's "same" way (``same_padding`` + ``ZeroPad2d``),
the last one is "valid"; all use ``conv_activation``. That last layer's output must be
``1 x 1`` (the old model raises otherwise); the logits are a ``1 x 1`` convolution on it,
the value either a linear layer on it (``vf_share_layers=True``) or a second conv tower of
the same filters ending in a ``1 x 1`` convolution to one channel.

New stack (``DefaultPPOTorchRLModule``): ``TorchCNN`` pads "same" with the same
``same_padding`` + ``ZeroPad2d`` and takes a padding per filter, then flattens; ``pi`` and
``vf`` are linear heads. So with ``conv_filters`` = the old filters with ``"same"`` on all
but the last (``"valid"``), the same ``conv_activation`` and ``head_fcnet_hiddens=[]``, the
two compute the same function; a ``1 x 1`` convolution on a ``1 x 1`` map is a linear layer
(weights ``[n, c, 1, 1]`` -> ``[n, c]``):

==========================================  ==========================================
new stack                                   old stack torch (state_dict names)
==========================================  ==========================================
encoder.{actor_,}encoder.net.0.cnn.{k}.*    _convs.{i}._model.{j}.* (the i-th conv)
encoder.critic_encoder.net.0.cnn.{k}.*      _value_branch_separate.{i}._model.{j}.*
pi.net.mlp.0.*                              _logits._model.{j}.* (reshaped to 2-D)
vf.net.mlp.0.*                              _value_branch._model.0.*, or the last
                                            _value_branch_separate conv (reshaped)
==========================================  ==========================================

Refused: ``post_fcnet_hiddens``, ``no_final_linear``, ``conv_filters`` not recorded in the
checkpoint, tf2 (the Keras weights list of the vision network is not mapped).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Dict, List, Mapping, Optional, Sequence, Set, Tuple

import numpy as np

_OLD_CONV = re.compile(r"(_convs|_value_branch_separate|_logits)\.?(\d*)\._model\.(\d+)\.weight")
_NEW_CONV = re.compile(r"encoder\.(encoder|actor_encoder|critic_encoder)\.net\.0\.cnn\.(\d+)\.weight")


@dataclass(frozen=True)
class VisionNet:
    """The shape of the old default VisionNetwork: what must agree on both sides."""

    filters: Tuple[Tuple[Any, ...], ...]
    activation: str
    vf_share_layers: bool

    def describe(self) -> str:
        return (f"VisionNetwork, conv_filters={[list(f) for f in self.filters]}, conv_activation={self.activation!r}, "
                f"vf_share_layers={self.vf_share_layers}")

    def new_filters(self) -> List[List[Any]]:
        last = len(self.filters) - 1
        return [[_plain(f[0]), _plain(f[1]), _plain(f[2]), "valid" if i == last else "same"] for i, f in enumerate(self.filters)]

    def model_config(self) -> Dict[str, Any]:
        """The new-stack model config that computes the same function."""
        return {"conv_filters": self.new_filters(), "conv_activation": self.activation,
                "vf_share_layers": self.vf_share_layers, "head_fcnet_hiddens": []}


def _plain(value: Any) -> object:
    return [int(v) for v in value] if isinstance(value, (list, tuple)) else int(value)


def old_vision(mc: Mapping[str, Any]) -> Tuple[Optional[VisionNet], List[str]]:
    """The :class:`VisionNet` of an old config for image observations, or why not."""
    reasons = []
    if not mc.get("conv_filters"):
        reasons.append("conv_filters not recorded in the checkpoint (RLlib's per-shape default is not mapped)")
    if mc.get("post_fcnet_hiddens"):
        reasons.append(f"post_fcnet_hiddens={list(mc['post_fcnet_hiddens'])} with a VisionNetwork")
    if mc.get("no_final_linear"):
        reasons.append("no_final_linear=True with a VisionNetwork")
    if reasons:
        return None, reasons
    filters = tuple(tuple(f) for f in mc["conv_filters"])
    if any(len(f) != 3 for f in filters):
        return None, [f"conv_filters={[list(f) for f in filters]} (the old VisionNetwork takes [out, kernel, stride])"]
    act = str(mc.get("conv_activation") or "relu").lower()
    return VisionNet(filters, act, bool(mc.get("vf_share_layers"))), []


def target_vision_reasons(mc: Mapping[str, Any], want: VisionNet) -> List[str]:
    """What of the target's model config keeps it from computing what ``want`` computed."""
    reasons = []
    got = [[_plain(x) if not isinstance(x, str) else x for x in f] for f in (mc.get("conv_filters") or [])]
    if got != want.new_filters():
        reasons.append(f"conv_filters={got}")
    if str(mc.get("conv_activation") or "relu").lower() != want.activation:
        reasons.append(f"conv_activation={mc.get('conv_activation')!r}")
    if bool(mc.get("vf_share_layers")) != want.vf_share_layers:
        reasons.append(f"vf_share_layers={bool(mc.get('vf_share_layers'))}")
    for key in ("use_lstm", "free_log_std", "conv_use_layernorm"):
        if mc.get(key):
            reasons.append(f"{key}=True")
    if mc.get("head_fcnet_hiddens"):
        reasons.append(f"head_fcnet_hiddens={list(mc['head_fcnet_hiddens'])}")
    return reasons


def map_vision(source: Mapping[str, np.ndarray], target: Sequence[str], net: VisionNet) -> Tuple[Dict[str, np.ndarray], List[str]]:
    """``(produced, unmapped source names)`` for the torch VisionNetwork (see the table)."""
    old: Dict[str, List[str]] = {"_convs": [], "_value_branch_separate": [], "_logits": []}
    for name in source:
        m = _OLD_CONV.fullmatch(name)
        if m and np.ndim(source[name]) == 4:
            old[m.group(1)].append(name)
    key = lambda n: [int(x) for x in re.findall(r"\d+", n)]  # noqa: E731
    new: Dict[str, List[str]] = {"encoder": [], "actor_encoder": [], "critic_encoder": []}
    for name in target:
        m = _NEW_CONV.fullmatch(name)
        if m:
            new[m.group(1)].append(name)
    produced: Dict[str, np.ndarray] = {}
    used: Set[str] = set()

    def take(src: str, tgt: str, flatten: bool = False) -> None:
        b_src, b_tgt = src[: -len("weight")] + "bias", tgt[: -len("weight")] + "bias"
        if src not in source or b_src not in source:
            return
        w = np.asarray(source[src])
        produced[tgt] = w.reshape(w.shape[0], -1) if flatten else w
        produced[b_tgt] = np.asarray(source[b_src])
        used.update((src, b_src))

    actor = sorted(new["encoder"] or new["actor_encoder"], key=key)
    for s, t in zip(sorted(old["_convs"], key=key), actor):
        take(s, t)
    critic_src = sorted(old["_value_branch_separate"], key=key)
    if not net.vf_share_layers and critic_src:
        for s, t in zip(critic_src[:-1], sorted(new["critic_encoder"], key=key)):
            take(s, t)
        take(critic_src[-1], "vf.net.mlp.0.weight", flatten=True)
    elif "_value_branch._model.0.weight" in source:
        take("_value_branch._model.0.weight", "vf.net.mlp.0.weight")
    if old["_logits"]:
        take(old["_logits"][0], "pi.net.mlp.0.weight", flatten=True)
    return produced, [n for n in source if n not in used]
