"""Old-stack tensor names -> new-stack module names, with numpy alone (no Ray, torch, tf)."""

from __future__ import annotations

import re

import numpy as np
import pytest

from rllib_ext.convert.mapping import convert_policy
from rllib_ext.errors import MigrationError

pytestmark = pytest.mark.ray_free  # never imports Ray: tests/test_ray_free.py checks it


def _torch_fcnet(hiddens=(8, 8), obs=4, n_out=2, share=False, seed=0):
    rng = np.random.default_rng(seed)
    w, sizes = {}, [obs] + list(hiddens)
    branches = [("_hidden_layers", sizes)] + ([] if share else [("_value_branch_separate", sizes)])
    for prefix, dims in branches:
        for i in range(len(hiddens)):
            w[f"{prefix}.{i}._model.0.weight"] = rng.normal(size=(dims[i + 1], dims[i])).astype(np.float32)
            w[f"{prefix}.{i}._model.0.bias"] = rng.normal(size=dims[i + 1]).astype(np.float32)
    w["_logits._model.0.weight"] = rng.normal(size=(n_out, hiddens[-1])).astype(np.float32)
    w["_logits._model.0.bias"] = rng.normal(size=n_out).astype(np.float32)
    w["_value_branch._model.0.weight"] = rng.normal(size=(1, hiddens[-1])).astype(np.float32)
    w["_value_branch._model.0.bias"] = rng.normal(size=1).astype(np.float32)
    return w


def _target(share=False):
    enc = ["encoder.encoder"] if share else ["encoder.actor_encoder", "encoder.critic_encoder"]
    t = {}
    for e in enc:
        t[f"{e}.net.mlp.0.weight"], t[f"{e}.net.mlp.0.bias"] = np.zeros((8, 4), np.float32), np.zeros(8, np.float32)
        t[f"{e}.net.mlp.2.weight"], t[f"{e}.net.mlp.2.bias"] = np.zeros((8, 8), np.float32), np.zeros(8, np.float32)
    t["pi.log_std_clip_param_const"] = np.array([20.0], np.float32)
    t["pi.net.mlp.0.weight"], t["pi.net.mlp.0.bias"] = np.zeros((2, 8), np.float32), np.zeros(2, np.float32)
    t["vf.log_std_clip_param_const"] = np.array([20.0], np.float32)
    t["vf.net.mlp.0.weight"], t["vf.net.mlp.0.bias"] = np.zeros((1, 8), np.float32), np.zeros(1, np.float32)
    return t


OLD_MC = {"fcnet_hiddens": [8, 8], "fcnet_activation": "tanh", "vf_share_layers": False}


def test_convert_torch_fcnet_takes_every_tensor_and_keeps_constants():
    src = _torch_fcnet()
    out = convert_policy("policy 'p'", src, _target(), OLD_MC, OLD_MC)
    assert list(out) == list(_target())
    np.testing.assert_array_equal(out["encoder.critic_encoder.net.mlp.2.weight"], src["_value_branch_separate.1._model.0.weight"])
    np.testing.assert_array_equal(out["pi.net.mlp.0.bias"], src["_logits._model.0.bias"])
    np.testing.assert_array_equal(out["pi.log_std_clip_param_const"], [20.0])


def test_convert_tf2_positions_in_keras_order_transposed():
    t = _torch_fcnet(share=True)
    order = ["_hidden_layers.0", "_hidden_layers.1", "_logits", "_value_branch"]
    src = {}
    for k, layer in enumerate(order):
        src[str(2 * k)] = t[f"{layer}._model.0.weight"].T.copy()
        src[str(2 * k + 1)] = t[f"{layer}._model.0.bias"]
    mc = dict(OLD_MC, vf_share_layers=True)
    out = convert_policy("policy 'p'", src, _target(share=True), mc, mc)
    np.testing.assert_array_equal(out["encoder.encoder.net.mlp.2.weight"], t["_hidden_layers.1._model.0.weight"])
    np.testing.assert_array_equal(out["vf.net.mlp.0.weight"], t["_value_branch._model.0.weight"])


def test_convert_other_activation_names_both_configs():
    with pytest.raises(MigrationError, match=re.escape(
        "policy 'p': the checkpoint's model has fcnet_hiddens=[8, 8], fcnet_activation='relu', vf_share_layers=False "
        "but the algorithm's module has fcnet_hiddens=[8, 8], fcnet_activation='tanh', vf_share_layers=False"
    )):
        convert_policy("policy 'p'", _torch_fcnet(), _target(), dict(OLD_MC, fcnet_activation="relu"), OLD_MC,
                       target_name="the algorithm's module")


def test_convert_custom_model_without_mapping_lists_both_sides():
    src = {"trunk.weight": np.zeros((8, 4), np.float32), "head.weight": np.zeros((2, 8), np.float32)}
    with pytest.raises(MigrationError) as err:
        convert_policy("policy 'p'", src, _target(), dict(OLD_MC, custom_model="my_model"), OLD_MC)
    assert str(err.value) == (
        "policy 'p': cannot map the old-stack model onto the target module (custom_model 'my_model'); "
        "pass mapping={old name: new name} or a callable (old weights -> new weights). "
        "source tensors with no mapped target: trunk.weight (8, 4), head.weight (2, 8); "
        "target tensors left unset: " + ", ".join(
            f"{n} {v.shape}" for n, v in _target().items() if not n.endswith("log_std_clip_param_const"))
    )


def test_convert_dict_mapping_partial_lists_what_is_left():
    src = _torch_fcnet()
    mapping = {"_logits._model.0.weight": "pi.net.mlp.0.weight", "_logits._model.0.bias": "pi.net.mlp.0.bias"}
    mapping.update({n: None for n in src if n.startswith("_value_branch")})  # dropped on purpose
    with pytest.raises(MigrationError, match=re.escape(
        "source tensors with no mapped target: _hidden_layers.0._model.0.weight (8, 4), "
        "_hidden_layers.0._model.0.bias (8,), _hidden_layers.1._model.0.weight (8, 8), "
        "_hidden_layers.1._model.0.bias (8,); target tensors left unset: encoder.actor_encoder.net.mlp.0.weight"
    )):
        convert_policy("policy 'p'", src, _target(), None, None, mapping=mapping)
