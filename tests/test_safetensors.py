"""The safetensors layout with numpy alone: interop with the reference library, typed errors."""

from __future__ import annotations

import json
import os
import re
import struct
from collections import OrderedDict

import numpy as np
import pytest

from builders import sample_weights

from rllib_ext.checkpoint import read_weights
from rllib_ext.checkpoint.policy_file import write_policy_dir
from rllib_ext.checkpoint.codecs.safetensors import decode_safetensors
from rllib_ext.errors import CheckpointFormatError

pytestmark = pytest.mark.ray_free  # never imports Ray: tests/test_ray_free.py checks it


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


@pytest.mark.parametrize("entry", [{"dtype": "F32", "shape": [2], "data_offsets": [0]}, [1, 2], {"dtype": "F32"},
                                   {"dtype": "F32", "shape": [-1], "data_offsets": [0, 8]}],
                         ids=["one-offset", "not-an-object", "no-shape", "negative-dim"])
def test_decode_safetensors_malformed_header_entry_names_it(entry):
    head = json.dumps({"w": entry}).encode()
    data = struct.pack("<Q", len(head)) + head + b"\0" * 8
    with pytest.raises(CheckpointFormatError) as info:
        decode_safetensors(data, "ckpt/weights.safetensors")
    assert str(info.value) == (
        f"ckpt/weights.safetensors: tensor 'w' has a malformed header entry: {entry!r} "
        "(expected dtype, shape: [non-negative ints], data_offsets: [begin, end])"
    )
    assert info.value.__cause__ is None  # an explicit check, not a caught exception
