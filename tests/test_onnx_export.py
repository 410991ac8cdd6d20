"""An exported ONNX file acts as RLlib's own forward pass does, under onnxruntime alone.

Same sources of truth as tests/test_numpy_policy.py: RLlib's default models built directly
(every supported model, LSTMs over 16 sequences of 20 steps with the state fed back), and
a PPO run trained with a MeanStdFilter (its env runner's filter + forward pass). The file
is written by ``export_onnx`` / ``rllib-ext export`` and run by onnxruntime; action-
distribution inputs agree within 1e-5, and the file exported without the filter differs.
"""

from __future__ import annotations

import json
import sys
from unittest import mock

import numpy as np
import pytest

from builders import ACT_OBS, STACKS, assert_imports_no_framework
from test_numpy_policy import NEW_MODELS, OLD_MODELS, RAW, SEQS, gap, new_module, new_reference, old_policy

from rllib_ext import MissingDependencyError, NumpyPolicy, export_onnx
from rllib_ext.cli import main
from rllib_ext.act.onnx_export import flatten_state, unflatten_state

ort = pytest.importorskip("onnxruntime")

TOL = 1e-5
NEGATIVE = 1e-3
QUICK = {"mlp-separate-relu-box-clip", "lstm-separate-box"}


def run(path, obs, state=None):
    """{output name: array} of the ONNX file at ``path``."""
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    feeds = {"obs": np.asarray(obs, np.float32), **(state or {})}
    return dict(zip([o.name for o in sess.get_outputs()], sess.run(None, feeds)))


@pytest.mark.stack("new")
@pytest.mark.parametrize(
    "name", [n if n in QUICK else pytest.param(n, marks=pytest.mark.slow) for n in NEW_MODELS]
)
def test_new_stack_onnx_equals_forward_inference(tmp_path, name):
    import torch

    module = new_module(name)
    module.save_to_path(str(tmp_path / "module"))
    out = export_onnx(str(tmp_path / "module"), tmp_path / "policy.onnx")
    policy = NumpyPolicy.from_checkpoint(str(tmp_path / "module"))
    if not policy.recurrent:
        want_dist, want_values, _ = new_reference(module, RAW)
        got = run(out, RAW)
        assert gap(got["action_dist_inputs"], want_dist) <= TOL and gap(got["value"], want_values) <= TOL
        greedy = np.argmax(want_dist, -1) if want_dist.shape[1] == 3 else want_dist[:, :2]
        assert gap(got["greedy_action"], greedy) <= TOL
        return
    init = torch.utils._pytree.tree_map(lambda s: s[None].repeat(16, 1, 1), module.get_initial_state())
    want_dist, want_values, _ = new_reference(module, SEQS, init)
    state, dists, values = flatten_state(policy.network, policy.initial_state(16)), [], []
    for t in range(SEQS.shape[1]):
        got = run(out, SEQS[:, t], state)
        dists.append(got["action_dist_inputs"])
        values.append(got["value"])
        state = {k.replace("state_out_", "state_in_"): v for k, v in got.items() if k.startswith("state_out_")}
    assert gap(np.stack(dists, 1), want_dist) <= TOL and gap(np.stack(values, 1), want_values) <= TOL
    nested = unflatten_state(policy.network, list(state.values()))
    assert sorted(nested) == (["actor", "critic"] if "separate" in name else ["c", "h"])


@pytest.mark.slow
@pytest.mark.parametrize("stack", ["old"])
@pytest.mark.parametrize("name", list(OLD_MODELS))
def test_old_stack_onnx_equals_compute_actions(tmp_path, stack, name):
    policy = old_policy(name)
    _, _, info = policy.compute_actions(RAW, explore=False)
    policy.export_checkpoint(str(tmp_path / "policy"))
    got = run(export_onnx(str(tmp_path / "policy"), tmp_path / "p.onnx"), RAW)
    assert gap(got["action_dist_inputs"], info["action_dist_inputs"]) <= TOL
    assert gap(got["value"], info["vf_preds"]) <= TOL


@pytest.mark.stack("new")
def test_metadata_records_spaces_policy_and_source(tmp_path):
    import onnx

    new_module("lstm-shared").save_to_path(str(tmp_path / "m"))
    path = export_onnx(str(tmp_path / "m"), tmp_path / "p.onnx")
    meta = {p.key: p.value for p in onnx.load(path).metadata_props}
    assert meta["rllib_ext.policy_id"] == "m" and meta["rllib_ext.source"].startswith(str(tmp_path / "m"))
    assert json.loads(meta["rllib_ext.observation_space"])["shape"] == [4]
    assert json.loads(meta["rllib_ext.action_space"]) == {"type": "Discrete", "shape": [], "dtype": "int64", "n": 3, "start": 0}
    assert json.loads(meta["rllib_ext.state"]) == ["h", "c"] and meta["rllib_ext.observation_filter"] == "none"
    sess = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
    assert [i.name for i in sess.get_inputs()] == ["obs", "state_in_h", "state_in_c"]
    assert sess.get_inputs()[0].shape[0] == "batch"  # the batch axis is dynamic


@pytest.mark.stack("new")
def test_export_without_onnx_says_what_to_install(tmp_path):
    new_module("mlp-shared-tanh").save_to_path(str(tmp_path / "m"))
    with mock.patch.dict(sys.modules, {"onnx": None}):
        with pytest.raises(MissingDependencyError, match=r'needs onnx: pip install "rllib_ext\[onnx\]"'):
            export_onnx(str(tmp_path / "m"), tmp_path / "p.onnx")
    assert not (tmp_path / "p.onnx").exists()


# ---------------------------------------------------------------- trained with a MeanStdFilter


@pytest.mark.slow
@pytest.mark.parametrize("stack", STACKS)
def test_cli_export_of_a_filtered_policy_equals_the_source_run(acting_source, tmp_path, stack, capsys):
    path, ref = acting_source(stack)
    out = tmp_path / "policy_2.onnx"
    assert main(["export", path, "--policy", "policy_2", "--format", "onnx", "--out", str(out)]) == 0
    assert capsys.readouterr().out.strip().splitlines()[-1] == str(out)
    got = run(out, ACT_OBS)
    assert gap(got["action_dist_inputs"], ref["policy_2"]) <= TOL
    np.testing.assert_array_equal(got["greedy_action"], np.argmax(ref["policy_2"], -1))
    # Negative control: the same policy exported without its filter acts differently.
    raw = export_onnx(NumpyPolicy.from_checkpoint(path, "policy_2", filters=False), tmp_path / "raw.onnx")
    assert gap(run(raw, ACT_OBS)["action_dist_inputs"], ref["policy_2"]) > NEGATIVE
    # The file runs with onnxruntime + numpy alone (no rllib_ext, torch or Ray).
    code = (
        "import numpy as np, onnxruntime as ort\n"
        f"s = ort.InferenceSession({str(out)!r}, providers=['CPUExecutionProvider'])\n"
        "print('GREEDY', s.run(['greedy_action'], {'obs': np.full((3, 4), 5.0, np.float32)})[0].tolist())\n"
    )
    res = assert_imports_no_framework(code, extra=("rllib_ext", "gymnasium"))
    assert "GREEDY [" in res.stdout


@pytest.mark.slow
@pytest.mark.stack("new")
def test_cli_export_unknown_policy_exits_1_naming_the_ids(acting_source, tmp_path, capsys):
    path, _ = acting_source("new")
    assert main(["export", path, "--policy", "policy_9", "--out", str(tmp_path / "x.onnx")]) == 1
    err = capsys.readouterr().err
    assert "'policy_9' not in" in err and "available: policy_0, policy_1, policy_2" in err
