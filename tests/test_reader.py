"""The Ray-free reader returns exactly what RLlib's own getters return.

Ray-free: the checkpoints are committed (tests/fixtures/current), with the weights RLlib's
getters returned when they were made; tests that need RLlib itself are in test_rllib_agreement.py.
"""

from __future__ import annotations

import os
import sys
from typing import List

import numpy as np
import pytest

from builders import assert_imports_no_framework, assert_weights_equal

from rllib_ext import PolicyNotFoundError, read_weights, policy_ids
from rllib_ext.errors import NotACheckpointError

pytestmark = pytest.mark.ray_free  # never imports Ray: tests/test_ray_free.py checks it


@pytest.mark.parametrize("stack", ["new", "old"])
def test_read_weights_matches_rllib_getters(stored, stack):
    path, expected = stored(stack)
    assert policy_ids(path) == ["policy_0", "policy_1", "policy_2"]
    for pid, want in expected.items():
        assert_weights_equal(read_weights(path, pid), want, pid)


@pytest.mark.parametrize("stack", ["new", "old"])
def test_read_weights_missing_id_lists_available(stored, stack):
    path, _ = stored(stack)
    with pytest.raises(PolicyNotFoundError) as e:
        read_weights(path, "policy_9")
    msg = str(e.value)
    assert "policy 'policy_9' not in" in msg
    assert "available: policy_0, policy_1, policy_2" in msg
    assert "did you mean" in msg


def test_read_weights_not_a_checkpoint(tmp_path):
    (tmp_path / "notes.txt").write_text("hi")
    with pytest.raises(NotACheckpointError, match="not an RLlib checkpoint"):
        read_weights(str(tmp_path), "policy_0")


@pytest.mark.parametrize("stack", ["new", "old"])
def test_reader_imports_no_framework(stored, stack):
    path, _ = stored(stack)
    assert_imports_no_framework(
        "import rllib_ext\n"
        f"view = rllib_ext.inspect({path!r})\n"
        "assert view.policies['policy_1'].observation_space is not None\n"
        f"w = rllib_ext.read_weights({path!r}, 'policy_1')\n"
        "assert w, 'no weights'\n"
    )


# What reading one policy needs is json, pickle and numpy (numpy itself brings inspect, ctypes
# and platform); everything else of the package's is for writing, inspecting or other formats.
NOT_ON_THE_READ_PATH = (
    "difflib", "dataclasses", "shutil", "lzma", "bz2", "hashlib", "zlib", "zipfile", "tempfile",
    "rllib_ext.checkpoint.atomic", "rllib_ext.checkpoint.policy_file", "rllib_ext.checkpoint.views",
    "rllib_ext.checkpoint.inspection", "rllib_ext.checkpoint.codecs.msgpack", "rllib_ext.checkpoint.codecs.torch_zip",
    "rllib_ext.checkpoint.codecs.safetensors", "rllib_ext.merge.checkpoints", "rllib_ext.pool.policy_pool",
)


@pytest.mark.parametrize("stack", ["new", "old"])
def test_reading_one_policy_imports_only_what_reading_needs(stored, stack):
    path, _ = stored(stack)
    assert_imports_no_framework(f"import rllib_ext\nassert rllib_ext.read_weights({path!r}, 'policy_1')\n",
                                extra=NOT_ON_THE_READ_PATH)


# The read is one pass (open -> layout -> locate -> decode), each step a module of its own.
READ_PASS = ("storage", "format", "locate", "decode")  # as tests/test_layout.py's READ_PASS, without the reader


def _steps_of_a_read(path: str, policy_id: str) -> List[str]:
    """Run read_weights under a profiler: the steps the reader calls, in order, and every
    call into a step made while a later step runs (a call back up) as an error."""
    import rllib_ext.checkpoint.reader as reader

    home = os.path.dirname(reader.__file__)
    index = {os.path.join(home, f"{m}.py"): i for i, m in enumerate(READ_PASS)}
    called: List[str] = []
    back_up: List[str] = []
    entered = []

    def profile(frame, event, arg):
        if event != "call":
            return
        here = frame.f_code.co_filename
        if here == reader.__file__:
            entered.append(frame.f_code.co_name)
        if here not in index:
            return
        caller = frame.f_back
        if caller is not None and caller.f_code.co_filename == reader.__file__:
            called.append(READ_PASS[index[here]])
        running = caller
        while running is not None and running.f_code.co_filename != reader.__file__:
            if index.get(running.f_code.co_filename, len(READ_PASS)) < index[here]:
                back_up.append(f"{frame.f_code.co_name} ({READ_PASS[index[here]]}) called from "
                               f"{running.f_code.co_name} ({READ_PASS[index[running.f_code.co_filename]]})")
            running = running.f_back

    sys.setprofile(profile)
    try:
        reader.read_weights(path, policy_id)
    finally:
        sys.setprofile(None)
    assert not back_up, back_up
    assert entered == ["read_weights"], entered  # the reader is entered once, at the top
    return [s for i, s in enumerate(called) if i == 0 or called[i - 1] != s]


@pytest.mark.parametrize("stack", ["new", "old"])
def test_reading_one_policy_is_one_pass_in_order(stored, stack):
    path, _ = stored(stack)
    assert _steps_of_a_read(path, "policy_1") == list(READ_PASS)


# --- msgpack and torch-zip state files -------------------------------------------------


def test_read_weights_legacy_pt_layout(tmp_path):
    """Layout 1.2 (Ray ~2.30): module_state.pt is a torch.save zip of numpy arrays."""
    import json
    from collections import OrderedDict

    import torch

    want = OrderedDict(
        [("pi.net.mlp.0.weight", np.arange(6, dtype=np.float32).reshape(2, 3)), ("pi.net.mlp.0.bias", np.ones(2, np.float64))]
    )
    (tmp_path / "rllib_checkpoint.json").write_text(
        json.dumps({"type": "Algorithm", "checkpoint_version": "1.2", "format": "cloudpickle", "policy_ids": []})
    )
    mdir = tmp_path / "learner" / "module_state" / "default_policy" / "module_state_dir"
    mdir.mkdir(parents=True)
    torch.save(want, mdir / "module_state.pt")
    (tmp_path / "learner" / "module_state" / "rl_module_metadata.json").write_text("{}")
    assert policy_ids(str(tmp_path)) == ["default_policy"]
    got = read_weights(str(tmp_path), "default_policy")
    assert_weights_equal(got, want)
    assert got["pi.net.mlp.0.bias"].dtype == np.float64


def test_read_weights_msgpack_without_msgpack_installed(tmp_path):
    from unittest import mock

    import msgpack

    from rllib_ext.errors import MissingDependencyError

    (tmp_path / "metadata.json").write_text('{"checkpoint_version": "2.1"}')
    (tmp_path / "module_state.msgpack").write_bytes(msgpack.packb({"w": 1}))
    with mock.patch.dict(sys.modules, {"msgpack": None}):
        with pytest.raises(MissingDependencyError) as e:
            read_weights(str(tmp_path))
    where = tmp_path / "module_state.msgpack"
    assert str(e.value) == f"{where}: reading msgpack checkpoints needs the msgpack package: pip install msgpack"


def test_read_weights_msgpack_numpy_dtypes_roundtrip(tmp_path):
    """Arrays written by msgpack_numpy itself come back equal, dtype and shape included."""
    import msgpack_numpy

    want = {
        "f16": np.linspace(-1, 1, 6, dtype=np.float16).reshape(3, 2),
        "i8": np.arange(-3, 3, dtype=np.int8),
        "bool": np.array([True, False]),
        "scalar_shape": np.array(3.5, dtype=np.float32),
        "transposed": np.arange(6, dtype=np.float32).reshape(2, 3).T,
        "big_endian": np.arange(3, dtype=">i4"),
    }
    (tmp_path / "metadata.json").write_text('{"checkpoint_version": "2.1"}')
    (tmp_path / "module_state.msgpack").write_bytes(msgpack_numpy.packb(want))
    got = read_weights(str(tmp_path))
    assert_weights_equal(got, want)
    for name in want:
        assert got[name].dtype == want[name].dtype, name
        assert got[name].flags.writeable, name
