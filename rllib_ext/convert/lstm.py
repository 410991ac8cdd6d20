"""The old stack's LSTM wrapper -> the new stack's LSTM encoder, tensor by tensor (numpy only).

Old stack (``use_lstm=True`` around RLlib's default ``FullyConnectedNetwork``, torch):
observation -> the fully connected hidden layers (``fcnet_hiddens``, ``fcnet_activation``,
no output layer) -> one ``nn.LSTM(lstm_cell_size)`` -> a linear logits branch and a
linear value branch, both on the LSTM output.

New stack (``DefaultPPOTorchRLModule`` with ``use_lstm=True``): the LSTM encoder's
tokenizer is an MLP with the same ``fcnet_hiddens`` / ``fcnet_activation`` (activation on
every layer), then one ``nn.LSTM(lstm_cell_size)``, then the ``pi`` and ``vf`` heads. With
``vf_share_layers=True`` and ``head_fcnet_hiddens=[]`` the two compute the same function:

=======================================  =====================================
new stack                                old stack torch (state_dict names)
=======================================  =====================================
encoder.encoder.tokenizer.net.mlp.{2i}.*  _hidden_layers.{i}._model.0.*
encoder.encoder.lstm.{weight,bias}_*_l0   lstm.{weight,bias}_*_l0 (same gate order)
pi.net.mlp.0.*                            _logits_branch._model.0.*
vf.net.mlp.0.*                            _value_branch._model.0.*
=======================================  =====================================

Not carried: the wrapped network's ``_value_branch_separate.*`` (built when
``vf_share_layers=False`` but never used: the wrapper's value comes from the LSTM output).
``max_seq_len`` does not change what one step computes; it is written into the target
config so training chunks sequences as before. Refused: ``lstm_use_prev_action`` /
``lstm_use_prev_reward`` (the old wrapper concatenates them *after* the fully connected
layers; the new stack's connector puts them before the tokenizer), tf2 (the Keras
weights list of the wrapper is not mapped), attention.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple

import numpy as np

LSTM_TENSORS = ("weight_ih_l0", "weight_hh_l0", "bias_ih_l0", "bias_hh_l0")
UNUSED_PREFIX = "_value_branch_separate."


@dataclass(frozen=True)
class LSTMNet:
    """The shape of the old LSTM wrapper around the default FCNet: what must agree."""

    hiddens: Tuple[int, ...]
    activation: str
    cell_size: int

    def describe(self) -> str:
        return f"fcnet_hiddens={list(self.hiddens)}, fcnet_activation={self.activation!r}, lstm_cell_size={self.cell_size}"

    def model_config(self, max_seq_len: int) -> Dict[str, Any]:
        """The new-stack model config that computes the same function."""
        return {
            "fcnet_hiddens": list(self.hiddens),
            "fcnet_activation": self.activation,
            "use_lstm": True,
            "lstm_cell_size": self.cell_size,
            "max_seq_len": int(max_seq_len),
            "vf_share_layers": True,
        }


def linear_layers(names: Sequence[str], prefix: str) -> List[Tuple[str, str]]:
    """``[(weight, bias), ...]`` of ``<prefix>.<k>.weight`` layers, by ``k``."""
    pattern = re.compile(re.escape(prefix) + r"\.(\d+)\.weight")
    idx = sorted(int(m.group(1)) for m in (pattern.fullmatch(n) for n in names) if m)
    return [(f"{prefix}.{k}.weight", f"{prefix}.{k}.bias") for k in idx]


def lstm_reasons(mc: Mapping[str, object]) -> List[str]:
    """Why an old ``use_lstm`` config is not the built-in wrapper (empty: it is)."""
    reasons = []
    for key in ("lstm_use_prev_action", "lstm_use_prev_reward"):
        if mc.get(key):
            reasons.append(
                f"{key}=True (the old wrapper feeds it to the LSTM after the fully connected layers; "
                "the new stack's connector adds it to the observation, before them)"
            )
    if mc.get("_time_major"):
        reasons.append("_time_major=True")
    return reasons


def target_lstm_reasons(mc: Mapping[str, Any], want: LSTMNet) -> List[str]:
    """What of the target's model config keeps it from computing what ``want`` computed."""
    got = LSTMNet(tuple(int(h) for h in mc.get("fcnet_hiddens") or ()), _act(mc.get("fcnet_activation")), int(mc.get("lstm_cell_size") or 0))
    reasons = []
    if not mc.get("use_lstm"):
        reasons.append("use_lstm=False")
    elif got != want:
        reasons.append(got.describe())
    if not mc.get("vf_share_layers"):
        reasons.append("vf_share_layers=False (a second LSTM for the value function; the old wrapper shares one)")
    for key in ("free_log_std", "fcnet_use_layernorm", "lstm_use_prev_action", "lstm_use_prev_reward"):
        if mc.get(key):
            reasons.append(f"{key}=True")
    if mc.get("head_fcnet_hiddens"):
        reasons.append(f"head_fcnet_hiddens={list(mc['head_fcnet_hiddens'])}")
    return reasons


def _act(value: object) -> str:
    return "linear" if value in (None, "", "linear") else str(value).lower()


def map_lstm(source: Mapping[str, np.ndarray], target: Sequence[str], net: LSTMNet) -> Tuple[Dict[str, np.ndarray], List[str]]:
    """``(produced, unmapped source names)`` for the torch LSTM wrapper (see the table)."""
    produced: Dict[str, np.ndarray] = {}
    used = set()

    def take(src: str, tgt: str) -> None:
        if src in source and tgt in target:
            produced[tgt] = np.asarray(source[src])
            used.add(src)

    tokenizer = linear_layers(target, "encoder.encoder.tokenizer.net.mlp")
    for i, (tw, tb) in enumerate(tokenizer):
        take(f"_hidden_layers.{i}._model.0.weight", tw)
        take(f"_hidden_layers.{i}._model.0.bias", tb)
    for name in LSTM_TENSORS:
        take(f"lstm.{name}", f"encoder.encoder.lstm.{name}")
    for old, new in (("_logits_branch", "pi"), ("_value_branch", "vf")):
        layers = linear_layers(target, f"{new}.net.mlp")
        if len(layers) == 1:
            take(f"{old}._model.0.weight", layers[0][0])
            take(f"{old}._model.0.bias", layers[0][1])
    unmapped = [n for n in source if n not in used and not n.startswith(UNUSED_PREFIX)]
    return produced, unmapped


def old_lstm(mc: Mapping[str, Any], hiddens: Sequence[int], activation: str) -> Optional[LSTMNet]:
    """The :class:`LSTMNet` of an old config with ``use_lstm`` (None without it)."""
    if not mc.get("use_lstm"):
        return None
    return LSTMNet(tuple(int(h) for h in hiddens), activation, int(mc.get("lstm_cell_size") or 256))
