"""The reader at scale: one big policy costs about its own bytes (issue 14).

Files with tensors above the lazy threshold (64 KiB), written without Ray: every format
reads back exactly what ``pickle.load`` / ``msgpack_numpy`` give, the arrays are writable,
and the bytes actually read from disk are counted: tensor data nobody asked for (the
optimizer state beside old-stack weights, every tensor under ``inspect``) is never read.
"""

from __future__ import annotations

import json
import os
import pickle
import zipfile
from collections import OrderedDict

import numpy as np
import pytest

from builders import assert_weights_equal

from rllib_ext import CheckpointFormatError, inspect, read_weights
from rllib_ext.checkpoint import extract_policy, read_policy_dir
from rllib_ext.checkpoint.lazy import LAZY_MIN
from rllib_ext.checkpoint.storage import FileSource

pytestmark = pytest.mark.ray_free  # never imports Ray: tests/test_ray_free.py checks it


def big_weights() -> "OrderedDict[str, np.ndarray]":
    rng = np.random.default_rng(0)
    w = OrderedDict()
    w["enc.0.weight"] = rng.standard_normal((256, 96)).astype(np.float32)  # 96 KiB: lazy
    w["enc.0.bias"] = rng.standard_normal(256).astype(np.float32)  # 1 KiB: read at once
    w["pi.weight"] = np.asfortranarray(rng.standard_normal((200, 100)))  # float64, F order
    w["vf.big_endian"] = np.arange(40000, dtype=">i4")
    return w


def tensor_bytes(w) -> int:
    return sum(v.nbytes for v in w.values())


@pytest.fixture
def bytes_read(monkeypatch):
    """Total tensor bytes the lazy reader fetched from local files."""
    count = {"n": 0}
    real = FileSource.readinto_at

    def counting(self, offset, buf):
        count["n"] += memoryview(buf).nbytes
        return real(self, offset, buf)

    monkeypatch.setattr(FileSource, "readinto_at", counting)
    return count


def module_dir(tmp_path, name="m"):
    d = tmp_path / name
    d.mkdir()
    (d / "metadata.json").write_text('{"checkpoint_version": "2.1"}')
    return d


@pytest.mark.parametrize("protocol", [2, 4, 5])
def test_read_weights_big_pickle_matches_pickle_load(tmp_path, protocol, bytes_read):
    w = big_weights()
    w["shared"] = w["enc.0.weight"]  # one array referenced twice (memo)
    d = module_dir(tmp_path)
    (d / "module_state.pkl").write_bytes(pickle.dumps(w, protocol=protocol))
    got = read_weights(str(d))
    want = pickle.loads((d / "module_state.pkl").read_bytes())
    assert_weights_equal(got, want)
    for name, arr in got.items():
        assert arr.dtype == want[name].dtype and arr.flags.writeable, name
    assert bytes_read["n"] <= tensor_bytes(w) * (1 if protocol >= 4 else 2)


@pytest.mark.parametrize("protocol", [2, 5])
def test_read_weights_old_stack_leaves_optimizer_state_unread(tmp_path, protocol, bytes_read):
    w = big_weights()
    opt = [{"state": {i: {"exp_avg": v * 0.5, "exp_avg_sq": v * 0.25} for i, v in enumerate(w.values())}}]
    d = tmp_path / "policy"
    d.mkdir()
    (d / "rllib_checkpoint.json").write_text('{"type": "Policy", "checkpoint_version": "1.1"}')
    state = {"weights": w, "_optimizer_variables": opt, "policy_spec": {"policy_class": "X"}}
    (d / "policy_state.pkl").write_bytes(pickle.dumps(state, protocol=protocol))
    assert_weights_equal(read_weights(str(d)), w)
    assert 0 < bytes_read["n"] <= tensor_bytes(w) * (1 if protocol >= 4 else 2)


def test_inspect_big_pickle_reads_no_tensor_data(tmp_path, bytes_read):
    w = big_weights()
    d = module_dir(tmp_path)
    (d / "module_state.pkl").write_bytes(pickle.dumps(w, protocol=5))
    view = inspect(str(d))
    (pv,) = view.policies.values()
    assert pv.tensors == OrderedDict((k, (v.shape, v.dtype.name)) for k, v in w.items())
    assert pv.nbytes == tensor_bytes(w)
    assert bytes_read["n"] == 0


def test_read_weights_big_pickle_truncated_is_format_error(tmp_path):
    d = module_dir(tmp_path)
    data = pickle.dumps(big_weights(), protocol=5)
    (d / "module_state.pkl").write_bytes(data[: len(data) // 3])
    with pytest.raises(CheckpointFormatError, match="truncated or corrupt pickle"):
        read_weights(str(d))
    with pytest.raises(CheckpointFormatError, match="truncated or corrupt pickle"):
        inspect(str(d))


def _torch_like_zip(path, w, *, flip: bool = False) -> None:
    """What ``torch.save`` writes for a dict of numpy arrays: a stored zip, protocol-2 data.pkl."""
    payload = pickle.dumps(w, protocol=2)
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_STORED) as z:
        z.writestr("archive/data.pkl", payload)
        z.writestr("archive/version", "3\n")
    if flip:
        data = bytearray(open(path, "rb").read())
        data[data.index(payload[:64]) + len(payload) // 2] ^= 1
        open(path, "wb").write(bytes(data))


def _layout_12(tmp_path):
    root = tmp_path / "ckpt12"
    mod = root / "learner/module_state/policy_1/module_state_dir"
    mod.mkdir(parents=True)
    (root / "rllib_checkpoint.json").write_text('{"type": "Algorithm", "checkpoint_version": "1.2", "policy_ids": []}')
    return root, mod / "module_state.pt"


def test_read_weights_torch_zip_big_tensors(tmp_path, bytes_read):
    w = big_weights()
    root, pt = _layout_12(tmp_path)
    _torch_like_zip(pt, w)
    assert_weights_equal(read_weights(str(root), "policy_1"), w)
    before = bytes_read["n"]
    view = inspect(str(root))
    assert view.policies["policy_1"].nbytes == tensor_bytes(w)
    assert bytes_read["n"] - before <= os.path.getsize(pt) + (1 << 20)  # the CRC pass only


def test_read_weights_torch_zip_bad_crc_is_format_error(tmp_path):
    root, pt = _layout_12(tmp_path)
    _torch_like_zip(pt, big_weights(), flip=True)
    with pytest.raises(CheckpointFormatError, match="Bad CRC-32"):
        read_weights(str(root), "policy_1")


def test_read_weights_msgpack_big_bins(tmp_path, bytes_read):
    import msgpack_numpy

    w = big_weights()
    w["pi.weight"] = np.ascontiguousarray(w["pi.weight"])
    d = module_dir(tmp_path)
    (d / "module_state.msgpack").write_bytes(msgpack_numpy.packb(w))
    got = read_weights(str(d))
    assert all(got[k].flags.writeable for k in w)
    assert_weights_equal(got, w)
    before = bytes_read["n"]
    view = inspect(str(d))
    assert bytes_read["n"] == before
    assert view.policies[d.name].tensors["enc.0.weight"] == ((256, 96), "float32")


@pytest.mark.parametrize("fmt", ["safetensors", "npz"])
def test_extract_big_policy_streams_same_numbers(tmp_path, fmt):
    w = big_weights()
    d = module_dir(tmp_path)
    (d / "module_state.pkl").write_bytes(pickle.dumps(w, protocol=5))
    out = tmp_path / ("out" if fmt == "safetensors" else "out.npz")
    extract_policy(str(d), None, str(out), format=fmt)
    if fmt == "npz":
        with np.load(out) as z:
            got = OrderedDict((k, z[k]) for k in z.files)
        assert got["pi.weight"].flags.f_contiguous
    else:
        meta, got = read_policy_dir(out)  # checks the sha256 computed while streaming
        assert json.loads((out / "policy.json").read_text())["tensors"]["vf.big_endian"]["dtype"] == "int32"
    assert_weights_equal(got, w)


def test_lazy_threshold_is_pickle_frame_size():
    # Pickle writes byte strings of 64 KiB or more outside its frames, so a lazy
    # string's offset in the file is where the unpickler stands.
    assert LAZY_MIN == 64 * 1024 == pickle._Framer._FRAME_SIZE_TARGET


def test_msgpack_walk_matches_msgpack_on_nested_data(tmp_path):
    import msgpack

    from rllib_ext.checkpoint.decode import decode_file
    from rllib_ext.checkpoint.reader import open_checkpoint

    doc = {"a": [1, 2.5, None, True, {"b": b"x" * (LAZY_MIN + 3), 7: [[], {}]}], "s": "t" * 70000, "n": -(2**40)}
    d = module_dir(tmp_path)
    (d / "module_state.msgpack").write_bytes(msgpack.packb(doc))
    ckpt, _ = open_checkpoint(str(d))
    assert decode_file(ckpt, "module_state.msgpack") == doc
    lazy = decode_file(ckpt, "module_state.msgpack", lazy=True)
    assert bytes(lazy["a"][4]["b"].read()) == doc["a"][4]["b"]
    (d / "module_state.msgpack").write_bytes(msgpack.packb(doc) + b"\x00")
    with pytest.raises(CheckpointFormatError, match="extra data"):
        decode_file(ckpt, "module_state.msgpack")
