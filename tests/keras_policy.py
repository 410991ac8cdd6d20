"""A user's own Keras model as an old-stack tf2 policy model, pretrained outside RLlib.

This is the case from the original thread: someone trained a Keras network and wants its
weights as one policy of a multi-agent Tune run. Tune's trial actors and env runners
import this module by name (tests/ is on their PYTHONPATH); only the tf2 cell uses it.
"""

from __future__ import annotations

import os
from typing import List, Sequence

import numpy as np
import tensorflow as tf  # before RLlib (see README): RLlib would disable eager mode
from ray.rllib.callbacks.callbacks import RLlibCallback
from ray.rllib.models.tf.tf_modelv2 import TFModelV2

HIDDENS = (8,)


def build_keras_net(obs_dim: int, num_outputs: int, hiddens: Sequence[int] = HIDDENS) -> "tf.keras.Model":
    """obs -> (logits, value): a plain Keras functional model, usable without RLlib."""
    inp = tf.keras.layers.Input(shape=(obs_dim,), name="obs")
    x = inp
    for i, h in enumerate(hiddens):
        x = tf.keras.layers.Dense(h, activation="tanh", name=f"hidden_{i}")(x)
    logits = tf.keras.layers.Dense(num_outputs, name="logits")(x)
    value = tf.keras.layers.Dense(1, name="value")(x)
    return tf.keras.Model(inp, [logits, value])


class KerasPolicyModel(TFModelV2):
    """RLlib's documented way to use a Keras model in an old-stack tf2 policy."""

    def __init__(self, obs_space, action_space, num_outputs, model_config, name):
        super().__init__(obs_space, action_space, num_outputs, model_config, name)
        self.net = build_keras_net(int(np.prod(obs_space.shape)), num_outputs)
        self._value = None

    def forward(self, input_dict, state, seq_lens):
        logits, self._value = self.net(input_dict["obs_flat"])
        return logits, state

    def value_function(self):
        return tf.reshape(self._value, [-1])


def pretrain(obs_dim: int = 4, num_outputs: int = 2, seed: int = 7) -> List[np.ndarray]:
    """Supervised pretraining outside RLlib: prefer action 1 when the first obs is > 0."""
    tf.keras.utils.set_random_seed(seed)
    net = build_keras_net(obs_dim, num_outputs)
    x = np.random.default_rng(seed).uniform(-1, 1, size=(256, obs_dim)).astype(np.float32)
    y = (x[:, 0] > 0).astype(np.int64)
    net.compile(optimizer=tf.keras.optimizers.Adam(0.05),
                loss=[tf.keras.losses.SparseCategoricalCrossentropy(from_logits=True), None])
    net.fit(x, [y, np.zeros((len(x), 1), np.float32)], epochs=3, batch_size=64, verbose=0)
    return [np.array(w, copy=True) for w in net.get_weights()]


def worker_weights(algo, policy_ids: Sequence[str]) -> List[dict]:
    """Every env runner's weights (local first, then each remote), copied."""

    def get(worker):
        return {pid: [np.array(w, copy=True) for w in worker.get_policy(pid).get_weights()] for pid in policy_ids}

    return algo.env_runner_group.foreach_env_runner(get, local_env_runner=True)


class RecordEveryWorkerAfterFirstTrain(RLlibCallback):
    """After iteration 1, save every env runner's policy weights to ``marker_dir``."""

    def on_train_result(self, *, algorithm, result, **kwargs):
        if result["training_iteration"] != 1:
            return
        out = algorithm.config.env_config["marker_dir"]
        pids = sorted(algorithm.env_runner.policy_map.keys())
        for i, per_worker in enumerate(worker_weights(algorithm, pids)):
            np.savez(os.path.join(out, f"worker_{i}.npz"),
                     **{f"{pid}/{j}": w for pid, ws in per_worker.items() for j, w in enumerate(ws)})
