"""RLlib's default actor-critic networks as plain numpy arrays, and their forward pass.

The building blocks :class:`~rllib_ext.act.numpy_policy.NumpyPolicy` assembles from a
checkpoint's tensors: dense layers with RLlib's activations, torch's LSTM cell, the
actor/critic towers and the two action distributions of the default models. Everything
runs in float32, as RLlib's torch modules do, so outputs match to float rounding.

No Ray, torch or TensorFlow here; the ONNX exporter (:mod:`rllib_ext.act.onnx_export`) mirrors
these same structures op for op.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Dict, Optional, Tuple

import numpy as np

from ..errors import InvalidArgumentError, UnsupportedModelError

# RLlib's activation names (``ray.rllib.models.utils.get_activation_fn``) that have an
# exact elementwise definition here; "silu" is torch's name for "swish".
ACTIVATIONS = ("tanh", "relu", "linear", "swish", "silu", "elu")
CATEGORICAL = "Categorical"
DIAG_GAUSSIAN = "DiagGaussian"

State = Dict[str, Any]  # {"h": [B, H], "c": [B, H]} or {"actor": {...}, "critic": {...}}


def activate(x: np.ndarray, name: str) -> np.ndarray:
    """``name`` applied elementwise, as torch's ``nn.Tanh/ReLU/SiLU/ELU`` compute it."""
    out: np.ndarray
    if name == "tanh":
        out = np.tanh(x)
    elif name == "relu":
        out = np.maximum(x, np.float32(0))
    elif name in ("swish", "silu"):
        with np.errstate(over="ignore"):  # exp(-x) -> inf for very negative x: the result is -0, as in torch
            out = x / (np.float32(1) + np.exp(-x))
    elif name == "elu":
        out = np.where(x > 0, x, np.expm1(np.minimum(x, np.float32(0))))
    elif name == "linear":
        out = x
    else:
        raise UnsupportedModelError(f"activation {name!r} is not one of {', '.join(ACTIVATIONS)}")
    return out


def sigmoid(x: np.ndarray) -> np.ndarray:
    with np.errstate(over="ignore"):  # exp(-x) -> inf gives 0, the right limit
        out: np.ndarray = np.float32(1) / (np.float32(1) + np.exp(-x))
        return out


@dataclass(frozen=True)
class Dense:
    """``activation(x @ weight.T + bias)``; ``weight`` is torch-shaped ``[out, in]``."""

    weight: np.ndarray
    bias: np.ndarray
    activation: str

    def __call__(self, x: np.ndarray) -> np.ndarray:
        return activate(x @ self.weight.T + self.bias, self.activation)


@dataclass(frozen=True)
class LSTMCell:
    """One step of torch's ``nn.LSTM`` (one layer, gates in the order i, f, g, o)."""

    w_ih: np.ndarray
    w_hh: np.ndarray
    b_ih: np.ndarray
    b_hh: np.ndarray

    @property
    def hidden(self) -> int:
        return int(self.w_hh.shape[1])

    def __call__(self, x: np.ndarray, h: np.ndarray, c: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
        gates = x @ self.w_ih.T + self.b_ih + h @ self.w_hh.T + self.b_hh
        i, f, g, o = np.split(gates, 4, axis=-1)
        c_new = sigmoid(f) * c + sigmoid(i) * np.tanh(g)
        return sigmoid(o) * np.tanh(c_new), c_new


@dataclass(frozen=True)
class Tower:
    """An encoder: dense layers (the LSTM's tokenizer, if any), then an optional LSTM."""

    layers: Tuple[Dense, ...]
    lstm: Optional[LSTMCell] = None

    def __call__(self, x: np.ndarray, state: Optional[State]) -> Tuple[np.ndarray, Optional[State]]:
        for layer in self.layers:
            x = layer(x)
        if self.lstm is None:
            return x, None
        if state is None:
            raise InvalidArgumentError("a recurrent network needs a state (see initial_state)")
        h, c = self.lstm(x, np.asarray(state["h"], np.float32), np.asarray(state["c"], np.float32))
        return h, {"h": h, "c": c}

    def initial_state(self, batch: int) -> Optional[State]:
        if self.lstm is None:
            return None
        zeros = np.zeros((batch, self.lstm.hidden), np.float32)
        return {"h": zeros, "c": zeros.copy()}


def mlp(x: np.ndarray, layers: Tuple[Dense, ...]) -> np.ndarray:
    for layer in layers:
        x = layer(x)
    return x


@dataclass(frozen=True)
class ActorCritic:
    """RLlib's default actor-critic: encoder(s), a policy head and a value head.

    Attributes:
        actor: the actor encoder, or the one shared encoder when ``critic`` is None.
        critic: the separate value encoder (``vf_share_layers=False``), else None.
        pi, vf: the heads' dense layers (the last one linear).
        distribution: :data:`CATEGORICAL` or :data:`DIAG_GAUSSIAN`.
        log_std_clip: the new stack clips a Gaussian's log-std to ``±log_std_clip``
            inside the policy head; None on the old stack (no clipping).
    """

    actor: Tower
    critic: Optional[Tower]
    pi: Tuple[Dense, ...]
    vf: Tuple[Dense, ...]
    distribution: str
    log_std_clip: Optional[float] = None

    @property
    def recurrent(self) -> bool:
        return self.actor.lstm is not None

    def initial_state(self, batch: int = 1) -> Optional[State]:
        """Zeros shaped as RLlib's ``get_initial_state()``, batched; None if not recurrent."""
        if not self.recurrent:
            return None
        if self.critic is None:
            return self.actor.initial_state(batch)
        return {"actor": self.actor.initial_state(batch), "critic": self.critic.initial_state(batch)}

    def forward(self, x: np.ndarray, state: Optional[State] = None) -> Tuple[np.ndarray, np.ndarray, Optional[State]]:
        """(action-distribution inputs ``[B, n]``, values ``[B]``, state out) for a batch ``[B, obs]``."""
        x = np.asarray(x, np.float32)
        if self.recurrent and state is None:
            state = self.initial_state(x.shape[0])
        if self.critic is None:
            features, state_out = self.actor(x, state)
            critic_features = features
        else:
            features, actor_state = self.actor(x, state["actor"] if self.recurrent and state is not None else None)
            critic_features, critic_state = self.critic(x, state["critic"] if self.recurrent and state is not None else None)
            state_out = {"actor": actor_state, "critic": critic_state} if self.recurrent else None
        dist_inputs = mlp(features, self.pi)
        if self.distribution == DIAG_GAUSSIAN and self.log_std_clip is not None:
            mean, log_std = np.split(dist_inputs, 2, axis=-1)
            clip = np.float32(self.log_std_clip)
            dist_inputs = np.concatenate([mean, np.clip(log_std, -clip, clip)], axis=-1)
        values = mlp(critic_features, self.vf)[..., 0]
        return dist_inputs, values, state_out


def greedy_actions(dist_inputs: np.ndarray, distribution: str) -> np.ndarray:
    """The distribution's mode: argmax of the logits, or the Gaussian's mean."""
    mode: np.ndarray = (np.argmax(dist_inputs, axis=-1) if distribution == CATEGORICAL
                        else np.split(dist_inputs, 2, axis=-1)[0])
    return mode


def sample_actions(dist_inputs: np.ndarray, distribution: str, rng: np.random.Generator) -> np.ndarray:
    """One draw per row from the action distribution, with ``rng``."""
    if distribution == CATEGORICAL:
        logits = np.asarray(dist_inputs, np.float64)
        probs = np.exp(logits - logits.max(axis=-1, keepdims=True))
        cdf = np.cumsum(probs / probs.sum(axis=-1, keepdims=True), axis=-1)
        u = rng.random((cdf.shape[0], 1))
        picked: np.ndarray = np.minimum((cdf < u).sum(axis=-1), cdf.shape[-1] - 1)
        return picked
    mean, log_std = np.split(np.asarray(dist_inputs, np.float32), 2, axis=-1)
    drawn: np.ndarray = (mean + np.exp(log_std) * rng.standard_normal(mean.shape)).astype(np.float32)
    return drawn
