"""Which old-API-stack model and algorithm a policy is, and which new-stack module computes the same.

Numpy and stdlib only. :func:`source_model` reads an old policy's ``config["model"]`` (and
observation space) into a :class:`SourceModel`: the fully connected network, the LSTM
wrapper around it, or the reasons the built-in tables refuse it; its
:meth:`SourceModel.target_config` is the new-stack model config with the same function.
:func:`source_algorithm` and :data:`TARGET_MODULES` pick the new-stack module class:
PPO -> ``DefaultPPOTorchRLModule``, APPO -> ``DefaultAPPOTorchRLModule`` (the PPO module
plus target networks), IMPALA -> ``DefaultPPOTorchRLModule`` (RLlib 2.60's IMPALA default).
The tensor tables themselves are in :mod:`rllib_ext.convert.mapping` and :mod:`rllib_ext.convert.lstm`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Dict, List, Mapping, Optional, Tuple

from .lstm import LSTMNet, lstm_reasons, old_lstm
from .vision import VisionNet, old_vision

# RLlib 2.60's MODEL_DEFAULTS for the keys we read, where an old config leaves one out.
OLD_DEFAULTS: Dict[str, Any] = {
    "fcnet_hiddens": [256, 256], "fcnet_activation": "tanh", "vf_share_layers": True, "lstm_cell_size": 256, "max_seq_len": 20,
}
# RLlib 2.60's DefaultModelConfig for the keys we read (the live code merges the real one).
NEW_DEFAULTS: Dict[str, Any] = {
    "fcnet_hiddens": [256, 256], "fcnet_activation": "tanh", "vf_share_layers": True, "lstm_cell_size": 256,
    "log_std_clip_param": 20.0,
}

TARGET_CLASS = "DefaultPPOTorchRLModule"
# The new stack's default torch module per algorithm (RLlib 2.60: IMPALA uses PPO's).
TARGET_MODULES: Dict[str, str] = {
    "PPO": "DefaultPPOTorchRLModule",
    "APPO": "DefaultAPPOTorchRLModule",
    "IMPALA": "DefaultPPOTorchRLModule",
}
# Old-stack policy class name prefixes -> algorithm (PPOTorchPolicy, APPOTF2Policy, ImpalaTorchPolicy, ...).
_POLICY_PREFIXES = (("APPO", "APPO"), ("PPO", "PPO"), ("Impala", "IMPALA"), ("VTrace", "IMPALA"))
# APPO's target networks (``make_target_networks``) are copies of these; the old stack
# syncs its target model from the model whenever weights are set, so they start equal.
TARGET_NETWORKS = {"_old_encoder.": "encoder.", "_old_pi.": "pi."}


def source_algorithm(policy_class: Optional[str]) -> Optional[str]:
    """'PPO' / 'APPO' / 'IMPALA' for an old-stack policy class name; None for any other."""
    for prefix, algo in _POLICY_PREFIXES:
        if policy_class and policy_class.startswith(prefix):
            return algo
    return None


@dataclass(frozen=True)
class FCNet:
    """The shape of a plain fully connected actor-critic: what must agree on both sides."""

    hiddens: Tuple[int, ...]
    activation: str
    vf_share_layers: bool
    free_log_std: bool = False

    def describe(self) -> str:
        return (
            f"fcnet_hiddens={list(self.hiddens)}, fcnet_activation={self.activation!r}, "
            f"vf_share_layers={self.vf_share_layers}" + (", free_log_std=True" if self.free_log_std else "")
        )


@dataclass(frozen=True)
class SourceModel:
    """What an old-stack policy's model is, as far as the built-in tables go.

    Attributes:
        fc: the fully connected part (the whole model unless ``lstm``).
        lstm: the LSTM wrapper around it, if ``use_lstm``.
        vision: the VisionNetwork, for image observations (then ``fc`` is unused).
        max_seq_len: the old ``max_seq_len`` (carried into the target config).
        reasons: why the built-in tables do not cover it (empty: they do).
    """

    fc: FCNet
    lstm: Optional[LSTMNet]
    max_seq_len: int
    reasons: Tuple[str, ...]
    vision: Optional[VisionNet] = None

    def describe(self) -> str:
        if self.vision is not None:
            return self.vision.describe()
        if self.lstm is not None:
            return f"LSTM wrapper around FullyConnectedNetwork, {self.lstm.describe()}, max_seq_len={self.max_seq_len}"
        return f"FullyConnectedNetwork, {self.fc.describe()}"

    def target_config(self) -> Dict[str, Any]:
        """The new-stack model config that computes the same function."""
        if self.vision is not None:
            return self.vision.model_config()
        if self.lstm is not None:
            return self.lstm.model_config(self.max_seq_len)
        cfg: Dict[str, Any] = {"fcnet_hiddens": list(self.fc.hiddens), "fcnet_activation": self.fc.activation,
                               "vf_share_layers": self.fc.vf_share_layers}
        if self.fc.free_log_std:
            cfg["free_log_std"] = True
        return cfg


def _activation(value: object) -> str:
    return "linear" if value in (None, "", "linear") else str(value).lower()


def source_model(
    model_config: Optional[Mapping[str, Any]], observation_space: object = None, framework: str = "torch"
) -> SourceModel:
    """The old model config (and observation space) as a :class:`SourceModel`."""
    mc = dict(OLD_DEFAULTS, **dict(model_config or {}))
    reasons = []
    if model_config is None:
        reasons.append("the checkpoint records no model config")
    if mc.get("custom_model"):
        reasons.append(f"custom_model {mc['custom_model']!r}")
    if mc.get("use_attention"):
        reasons.append("use_attention=True")
    free = bool(mc.get("free_log_std"))
    fc = FCNet(tuple(int(h) for h in mc.get("fcnet_hiddens") or ()), _activation(mc.get("fcnet_activation")),
               bool(mc.get("vf_share_layers")), free)
    lstm = old_lstm(mc, fc.hiddens, fc.activation)
    kind = _obs_kind(observation_space)
    vision = None
    if kind == "image":
        vision, why = old_vision(mc)
        reasons += why
        for flag, what in ((framework == "tf2", "tf2 (the Keras VisionNetwork's weights list is not mapped; torch only)"),
                           (lstm is not None, "use_lstm=True"), (free, "free_log_std=True")):
            if flag:
                reasons.append(f"a VisionNetwork with {what}")
        return SourceModel(fc, None, int(mc.get("max_seq_len") or 20), tuple(reasons), vision)
    if kind is not None:
        reasons.append(f"observation space {kind} (only 1-D Box and image observations are built in)")
    if mc.get("no_final_linear"):
        reasons.append("no_final_linear=True")
    if mc.get("post_fcnet_hiddens"):
        reasons.append(f"post_fcnet_hiddens={list(mc['post_fcnet_hiddens'])}")
    if not mc.get("fcnet_hiddens"):
        reasons.append("fcnet_hiddens=[] (no hidden layers)")
    if lstm is not None:
        reasons += lstm_reasons(mc)
        if free:
            reasons.append("free_log_std=True with use_lstm=True (the LSTM wrapper has no free log-std)")
        if framework == "tf2":
            reasons.append("use_lstm=True with tf2 (the Keras LSTM wrapper's weights list is not mapped; torch only)")
    elif free and framework == "tf2":
        reasons.append("free_log_std=True with tf2 (the log-std variable's place in the Keras weights list is not mapped; torch only)")
    return SourceModel(fc, lstm, int(mc.get("max_seq_len") or 20), tuple(reasons))


def _obs_kind(observation_space: object) -> Optional[str]:
    """None for a 1-D Box (or unknown), 'image' for a 3-D Box, else the space described."""
    if observation_space is None:
        return None
    obs_type = getattr(observation_space, "type", None)
    shape = getattr(observation_space, "shape", None)
    if obs_type == "Box" and shape is not None and len(shape) == 1:
        return None
    if obs_type == "Box" and shape is not None and len(shape) == 3:
        return "image"
    return getattr(observation_space, "describe", lambda: repr(observation_space))()


def new_fcnet(model_config: Optional[Mapping[str, Any]]) -> Tuple[FCNet, List[str]]:
    """The target module's model config as an :class:`FCNet`, and what the mapping cannot fill."""
    mc = dict(NEW_DEFAULTS, **dict(model_config or {}))
    reasons = []
    for key in ("use_lstm", "fcnet_use_layernorm"):
        if mc.get(key):
            reasons.append(f"{key}=True")
    if mc.get("head_fcnet_hiddens"):
        reasons.append(f"head_fcnet_hiddens={list(mc['head_fcnet_hiddens'])}")
    net = FCNet(tuple(int(h) for h in mc.get("fcnet_hiddens") or ()), _activation(mc.get("fcnet_activation")),
                bool(mc.get("vf_share_layers")), bool(mc.get("free_log_std")))
    return net, reasons
