"""The single-policy directory (policy.json + weights.safetensors): exact round trips, atomic replace, checks."""

from __future__ import annotations

import json
import os
import re
from collections import OrderedDict

import numpy as np
import pytest

from builders import assert_imports_no_framework, assert_weights_equal, sample_weights

from rllib_ext.checkpoint import policy_ids, read_weights
from rllib_ext.checkpoint import policy_file as pf
from rllib_ext.checkpoint import atomic
from rllib_ext.checkpoint.policy_file import read_policy_dir, write_policy_dir
from rllib_ext.errors import CheckpointError, CheckpointFormatError

pytestmark = pytest.mark.ray_free  # never imports Ray: tests/test_ray_free.py checks it


def test_write_policy_dir_roundtrips_weights_and_meta(tmp_path):
    want = sample_weights()
    out = write_policy_dir(tmp_path / "pol", "attacker", want, {"stack": "old", "framework": "tf2"})
    assert out == str(tmp_path / "pol")
    assert sorted(os.listdir(out)) == ["policy.json", "weights.safetensors"]
    meta, got = read_policy_dir(out)
    assert_weights_equal(got, want)
    assert (meta["format_version"], meta["policy_id"], meta["stack"], meta["framework"]) == ("1.1", "attacker", "old", "tf2")
    assert meta["tensors"]["pi.weight"] == {"shape": [3, 4], "dtype": "float32"}
    assert_weights_equal(read_weights(out), want)
    assert policy_ids(out) == ["attacker"]


def test_write_policy_dir_replaces_existing_policy_dir(tmp_path):
    first = sample_weights()
    write_policy_dir(tmp_path / "pol", "p", first, {"stack": "new"})
    second = OrderedDict(w=np.full(3, 2.0, np.float32))
    write_policy_dir(tmp_path / "pol", "p", second, {"stack": "new"})
    assert os.listdir(tmp_path) == ["pol"]  # no temp or backup sibling left
    assert_weights_equal(read_policy_dir(tmp_path / "pol")[1], second)


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
    assert_weights_equal(read_policy_dir(tmp_path / "pol")[1], old)


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
    assert_weights_equal(read_policy_dir(tmp_path / "pol")[1], old)


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
    with pytest.raises(CheckpointFormatError, match=re.escape(f"{meta_file}: format_version '9.0' is not supported (this reader knows 1.0, 1.1, 1.2)")):
        read_weights(out)


def test_policy_file_imports_no_framework(tmp_path):
    out = write_policy_dir(tmp_path / "pol", "p", sample_weights(), {"stack": "new"})
    assert_imports_no_framework(
        "from rllib_ext.checkpoint import inspect, read_weights\n"
        "from rllib_ext.checkpoint.policy_file import read_policy_dir\n"
        f"assert list(read_policy_dir({out!r})[1]) == list(read_weights({out!r}))\n"
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


def test_training_state_with_a_stray_tensor_is_malformed_naming_it():
    from rllib_ext.checkpoint.training_state import TrainingState

    doc = {"stack": "new", "optimizers": {"default_optimizer": {"kind": "adam", "param_shapes": [[2]]}}}
    with pytest.raises(CheckpointFormatError) as info:
        TrainingState.from_json(doc, {"scalars/kl": np.zeros(1)}, "p/weights.safetensors")
    assert str(info.value) == (
        "p/weights.safetensors: training state is malformed (tensor 'scalars/kl' is no buffer of the optimizers "
        "default_optimizer)"
    )
    with pytest.raises(CheckpointFormatError, match=re.escape("training state is malformed (KeyError: 'stack')")) as info:
        TrainingState.from_json({"optimizers": {}}, {}, "p/weights.safetensors")
    assert isinstance(info.value.__cause__, KeyError)  # the cause is kept
