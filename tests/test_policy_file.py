"""The single-policy directory: exact round trips, atomic writes, interop, exports."""

from __future__ import annotations

import json
import os
import re
import struct
import sys
from collections import OrderedDict

import numpy as np
import pytest

from builders import MODULES_DIR, assert_imports_no_framework, assert_weights_equal

from rllib_ext.checkpoint import inspect, policy_ids, read_weights
from rllib_ext.checkpoint import policy_file as pf
from rllib_ext.checkpoint import atomic
from rllib_ext.checkpoint.export import export_npz, export_torch_state_dict, extract_policy
from rllib_ext.checkpoint.policy_file import read_policy_dir, write_policy_dir
from rllib_ext.checkpoint.safetensors import decode_safetensors
from rllib_ext.errors import CheckpointError, CheckpointFormatError, PolicyNotFoundError


def sample_weights():
    return OrderedDict(
        [
            ("pi.weight", np.arange(12, dtype=np.float32).reshape(3, 4) / 7),
            ("pi.bias", np.array([-1.5, 0.0, np.inf], dtype=np.float64)),
            ("steps", np.array(7, dtype=np.int64)),
            ("mask", np.array([[True, False]])),
            ("empty", np.zeros((0, 3), dtype=np.float16)),
            ("big_endian", np.arange(4, dtype=">i4")),
            ("a.first_name_last", np.ones(2, dtype=np.uint8)),
        ]
    )




def test_write_policy_dir_roundtrips_weights_and_meta(tmp_path):
    want = sample_weights()
    out = write_policy_dir(tmp_path / "pol", "attacker", want, {"stack": "old", "framework": "tf2"})
    assert out == str(tmp_path / "pol")
    assert sorted(os.listdir(out)) == ["policy.json", "weights.safetensors"]
    got, meta = read_policy_dir(out)
    assert_weights_equal(got, want)
    assert (meta["format_version"], meta["policy_id"], meta["stack"], meta["framework"]) == ("1.0", "attacker", "old", "tf2")
    assert meta["tensors"]["pi.weight"] == {"shape": [3, 4], "dtype": "float32"}
    assert_weights_equal(read_weights(out), want)
    assert policy_ids(out) == ["attacker"]


@pytest.mark.parametrize("stack", ["new", "old"])
def test_extract_policy_matches_rllib_getters(ckpts, tmp_path, stack):
    path, expected = ckpts(stack)
    out = extract_policy(path, "policy_1", tmp_path / "p1")
    weights, meta = read_policy_dir(out)
    for name, want in expected["policy_1"].items():
        np.testing.assert_array_equal(weights[name], want, err_msg=name)
    assert list(weights) == list(expected["policy_1"])
    source = inspect(path)
    view = inspect(out)
    assert (view.kind, view.stack, view.framework, view.algorithm_class) == (
        "single-policy", stack, source.framework, "PPO"
    )
    src, got = source.policies["policy_1"], view.policies["policy_1"]
    assert got.observation_space == src.observation_space
    assert got.action_space == src.action_space
    assert (got.tensors, got.num_params, got.nbytes) == (src.tensors, src.num_params, src.nbytes)
    assert (got.model_config, got.policy_class) == (src.model_config, src.policy_class)
    assert meta["source"] == source.path


def test_extract_policy_missing_id_lists_available(ckpts, tmp_path):
    path, _ = ckpts("new")
    with pytest.raises(PolicyNotFoundError, match=re.escape("policy 'policy_7' not in")):
        extract_policy(path, "policy_7", tmp_path / "x")
    assert not (tmp_path / "x").exists()


def test_safetensors_files_interoperate_with_reference_library(tmp_path):
    from safetensors.numpy import load_file, save_file

    want = sample_weights()
    out = write_policy_dir(tmp_path / "pol", "p", want, {"stack": "new"})
    theirs = load_file(os.path.join(out, "weights.safetensors"))
    assert sorted(theirs) == sorted(want)
    for name in want:
        np.testing.assert_array_equal(theirs[name], want[name], err_msg=name)
    native = OrderedDict((k, v.astype(v.dtype.newbyteorder("="))) for k, v in want.items())
    save_file(native, str(tmp_path / "ref.safetensors"))
    mine = decode_safetensors((tmp_path / "ref.safetensors").read_bytes(), "ref")
    assert sorted(mine) == sorted(native)
    for name in native:
        np.testing.assert_array_equal(mine[name], native[name], err_msg=name)


def test_decode_safetensors_bf16_names_the_tensor(tmp_path):
    header = json.dumps({"w": {"dtype": "BF16", "shape": [1], "data_offsets": [0, 2]}}).encode()
    data = struct.pack("<Q", len(header)) + header + b"\0\0"
    with pytest.raises(
        CheckpointFormatError,
        match=re.escape("f.safetensors: tensor 'w' has dtype 'BF16', which numpy cannot hold"),
    ):
        decode_safetensors(data, "f.safetensors")


def test_decode_safetensors_truncated_file(tmp_path):
    out = write_policy_dir(tmp_path / "pol", "p", sample_weights(), {"stack": "new"})
    wfile = os.path.join(out, "weights.safetensors")
    with open(wfile, "rb+") as f:
        f.truncate(os.path.getsize(wfile) - 4)
    with pytest.raises(CheckpointFormatError, match=re.escape(f"{wfile}: tensor ")):
        read_weights(out)


def test_write_policy_dir_replaces_existing_policy_dir(tmp_path):
    first = sample_weights()
    write_policy_dir(tmp_path / "pol", "p", first, {"stack": "new"})
    second = OrderedDict(w=np.full(3, 2.0, np.float32))
    write_policy_dir(tmp_path / "pol", "p", second, {"stack": "new"})
    assert os.listdir(tmp_path) == ["pol"]  # no temp or backup sibling left
    assert_weights_equal(read_policy_dir(tmp_path / "pol")[0], second)


def test_write_policy_dir_failure_keeps_old_dir(tmp_path, monkeypatch):
    old = sample_weights()
    write_policy_dir(tmp_path / "pol", "p", old, {"stack": "new"})
    real = atomic.write_synced

    def fail_on_meta(path, data):
        if path.endswith("policy.json"):
            raise OSError(28, "No space left on device")
        real(path, data)

    monkeypatch.setattr(pf, "write_synced", fail_on_meta)  # as policy_file calls it
    with pytest.raises(OSError, match="No space left"):
        write_policy_dir(tmp_path / "pol", "p", OrderedDict(w=np.zeros(1)), {"stack": "new"})
    assert os.listdir(tmp_path) == ["pol"]
    assert_weights_equal(read_policy_dir(tmp_path / "pol")[0], old)


def test_write_policy_dir_failed_swap_restores_old_dir(tmp_path, monkeypatch):
    old = sample_weights()
    write_policy_dir(tmp_path / "pol", "p", old, {"stack": "new"})
    real_rename = os.rename
    calls = []

    def rename(src, dst):
        calls.append((src, dst))
        if len(calls) == 2:  # moving the new dir into place
            raise OSError(5, "Input/output error")
        real_rename(src, dst)

    monkeypatch.setattr(atomic.os, "rename", rename)
    monkeypatch.setattr(atomic, "_exchange", lambda a, b: False)  # the two-rename fallback (no renameat2)
    with pytest.raises(OSError, match="Input/output error"):
        write_policy_dir(tmp_path / "pol", "p", OrderedDict(w=np.zeros(1)), {"stack": "new"})
    monkeypatch.undo()
    assert os.listdir(tmp_path) == ["pol"]
    assert_weights_equal(read_policy_dir(tmp_path / "pol")[0], old)


def test_write_policy_dir_refuses_to_replace_foreign_dir(tmp_path):
    target = tmp_path / "results"
    target.mkdir()
    (target / "notes.txt").write_text("keep me")
    with pytest.raises(
        CheckpointError,
        match=re.escape(f"{target}: exists and is not an rllib_ext policy directory (no policy.json); refusing to replace it"),
    ):
        write_policy_dir(target, "p", sample_weights(), {"stack": "new"})
    assert (target / "notes.txt").read_text() == "keep me"
    assert os.listdir(tmp_path) == ["results"]


def test_write_policy_dir_unknown_meta_key(tmp_path):
    with pytest.raises(ValueError, match=re.escape("meta key 'framwork' is not part of policy.json; allowed: stack, framework")) as e:
        write_policy_dir(tmp_path / "p", "p", sample_weights(), {"stack": "new", "framwork": "torch"})
    assert str(e.value).endswith("(did you mean 'framework'?)")
    assert not (tmp_path / "p").exists()


def test_read_policy_dir_index_mismatch(tmp_path):
    out = write_policy_dir(tmp_path / "pol", "p", sample_weights(), {"stack": "new"})
    meta_file = os.path.join(out, "policy.json")
    meta = json.load(open(meta_file))
    meta["tensors"]["pi.weight"]["shape"] = [4, 3]
    json.dump(meta, open(meta_file, "w"))
    with pytest.raises(
        CheckpointFormatError,
        match=re.escape(f"{meta_file}: tensor 'pi.weight' is (4, 3) float32 in the index but (3, 4) float32 in weights.safetensors"),
    ):
        read_policy_dir(out)


def test_read_policy_dir_unsupported_version(tmp_path):
    out = write_policy_dir(tmp_path / "pol", "p", sample_weights(), {"stack": "new"})
    meta_file = os.path.join(out, "policy.json")
    meta = json.load(open(meta_file))
    meta["format_version"] = "9.0"
    json.dump(meta, open(meta_file, "w"))
    with pytest.raises(CheckpointFormatError, match=re.escape(f"{meta_file}: format_version '9.0' is not supported (this reader knows 1.0)")):
        read_weights(out)


def test_export_npz_loads_with_numpy(tmp_path):
    want = sample_weights()
    out = export_npz(want, tmp_path / "w.bin")  # no '.npz' appended
    assert out == str(tmp_path / "w.bin")
    with np.load(out, allow_pickle=False) as z:
        assert_weights_equal({k: z[k] for k in want}, want)


def test_export_torch_state_dict_loads_into_rllib_module(ckpts, tmp_path):
    import torch
    from ray.rllib.core.rl_module.rl_module import RLModule

    path, expected = ckpts("new")
    out = extract_policy(path, "policy_2", tmp_path / "p2.pt", format="torch")
    state = torch.load(out, weights_only=True)
    assert list(state) == list(expected["policy_2"])
    for name, want in expected["policy_2"].items():
        np.testing.assert_array_equal(state[name].numpy(), want, err_msg=name)
    module = RLModule.from_checkpoint(os.path.join(path, MODULES_DIR, "policy_1"))
    module.load_state_dict(state, strict=True)  # policy_1 and policy_2 share the architecture
    for name, tensor in module.state_dict().items():
        np.testing.assert_array_equal(tensor.numpy(), expected["policy_2"][name], err_msg=name)


def test_export_torch_state_dict_without_torch(tmp_path):
    from unittest import mock

    from rllib_ext.errors import MissingDependencyError

    with mock.patch.dict(sys.modules, {"torch": None}):
        with pytest.raises(MissingDependencyError, match=re.escape("exporting a torch state_dict needs torch: pip install torch")):
            export_torch_state_dict(sample_weights(), tmp_path / "x.pt")
    assert not (tmp_path / "x.pt").exists()


def test_policy_file_imports_no_framework(tmp_path):
    out = write_policy_dir(tmp_path / "pol", "p", sample_weights(), {"stack": "new"})
    assert_imports_no_framework(
        "from rllib_ext.checkpoint import inspect, read_weights\n"
        "from rllib_ext.checkpoint.policy_file import read_policy_dir\n"
        f"assert list(read_policy_dir({out!r})[0]) == list(read_weights({out!r}))\n"
        f"assert inspect({out!r}).policies['p'].num_params == 24\n",
        extra=("safetensors",),
    )


def test_flipped_value_bit_is_caught_by_the_recorded_sha256(tmp_path):
    """A flip inside tensor data still parses; only policy.json's digest can tell."""
    want = sample_weights()
    out = write_policy_dir(tmp_path / "pol", "p", want, {"stack": "new"})
    wfile = os.path.join(out, "weights.safetensors")
    data = bytearray(open(wfile, "rb").read())
    data[-1] ^= 0x01  # last byte: inside the last tensor's values
    open(wfile, "wb").write(bytes(data))
    for read in (lambda: read_policy_dir(out), lambda: read_weights(out)):
        with pytest.raises(CheckpointFormatError, match=re.escape(f"{wfile}: contents do not match the sha256")):
            read()
