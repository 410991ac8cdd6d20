"""Safe mode runs no code from a checkpoint: no file written, no module imported.

Each malicious payload is also loaded with ``trusted=True`` to prove it *would* act,
so a passing safe-mode assertion means something.
"""

from __future__ import annotations

import builtins
import os
import pickle
import re
import sys
import uuid

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rllib_ext.checkpoint import read_weights
from rllib_ext.checkpoint.codecs import safe_pickle
from rllib_ext.checkpoint.codecs.safe_pickle import Placeholder, is_allowed
from rllib_ext.errors import CheckpointFormatError, UnsafePickleError

pytestmark = pytest.mark.ray_free  # never imports Ray: tests/test_ray_free.py checks it

DANGEROUS_BUILTINS = (
    "getattr", "setattr", "delattr", "eval", "exec", "compile", "__import__", "open",
    "globals", "locals", "vars", "input", "breakpoint", "memoryview", "type", "object",
)


class _Reduce:
    """Pickles as ``func(*args)``: what an attacker writes into a checkpoint."""

    def __init__(self, func, *args):
        self.func, self.args = func, args

    def __reduce__(self):
        return self.func, self.args


def evil_module(tmp_path, monkeypatch):
    """A module on sys.path that creates a marker file when imported."""
    name = f"evil_{uuid.uuid4().hex[:8]}"
    marker = tmp_path / f"{name}.imported"
    (tmp_path / f"{name}.py").write_text(f"open({str(marker)!r}, 'w').close()\ndef boom(*a):\n    return a\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    return name, marker


def test_safe_loads_does_not_run_os_system(tmp_path):
    marker = tmp_path / "pwned"
    data = pickle.dumps(_Reduce(os.system, f"touch {marker}"))
    obj = safe_pickle.loads(data)
    assert isinstance(obj, Placeholder)
    assert not marker.exists()
    safe_pickle.loads(data, trusted=True)
    assert marker.exists()


def test_safe_loads_does_not_open_files(tmp_path):
    target = tmp_path / "written"
    data = pickle.dumps(_Reduce(builtins.open, str(target), "w"))
    assert isinstance(safe_pickle.loads(data), Placeholder)
    assert not target.exists()
    safe_pickle.loads(data, trusted=True).close()
    assert target.exists()


def test_safe_loads_imports_nothing(tmp_path, monkeypatch):
    name, marker = evil_module(tmp_path, monkeypatch)
    data = f"c{name}\nboom\n(S'x'\ntR.".encode()  # protocol 0: GLOBAL, MARK, STRING, TUPLE, REDUCE
    before = set(sys.modules)
    obj = safe_pickle.loads(data)
    assert set(sys.modules) == before
    assert not marker.exists()
    assert repr(obj) == f"<not loaded: {name}.boom>"
    assert safe_pickle.loads(data, trusted=True) == ("x",)
    assert name in sys.modules and marker.exists()
    del sys.modules[name]


def test_safe_loads_getattr_chain_stays_inert(tmp_path):
    """getattr(os, 'system')('touch ...'): the classic chained-reduce escape."""
    marker = tmp_path / "chained"
    data = f"cbuiltins\ngetattr\n(cos\nsystem\nS'__call__'\ntR(S'touch {marker}'\ntR.".encode()
    obj = safe_pickle.loads(data)
    assert isinstance(obj, Placeholder)
    assert not marker.exists()


@pytest.mark.parametrize("module", ["builtins", "__builtin__"])
@pytest.mark.parametrize("name", DANGEROUS_BUILTINS)
def test_safe_unpickler_never_allows_dangerous_builtins(module, name):
    assert not is_allowed(module, name)
    data = f"c{module}\n{name}\n.".encode()
    obj = safe_pickle.loads(data)
    assert isinstance(obj, type) and issubclass(obj, Placeholder)
    assert (obj.module, obj.name) == (module, name)


@pytest.mark.parametrize(
    "module, name",
    [("os", "system"), ("posix", "system"), ("subprocess", "Popen"), ("importlib", "import_module"),
     ("pickle", "loads"), ("numpy", "load"), ("numpy.lib.npyio", "load"), ("_codecs", "decode"),
     ("torch", "load"), ("ray.cloudpickle", "loads"), ("numpy", "core.multiarray._reconstruct")],
)
def test_safe_unpickler_refuses_code_runners(module, name):
    assert not is_allowed(module, name)


def test_safe_unpickler_allow_list_is_data_only():
    allowed_modules = {m for m, _ in safe_pickle.ALLOWED}
    assert allowed_modules <= {
        "builtins", "__builtin__", "collections", "numpy", "numpy.core.multiarray",
        "numpy._core.multiarray", "numpy.core.numeric", "numpy._core.numeric", "_codecs",
    }
    for (module, name), obj in safe_pickle.ALLOWED.items():
        if module in ("builtins", "__builtin__"):
            assert name in {"set", "frozenset", "slice", "complex", "bytearray", "range", "list", "dict", "tuple"}


def test_safe_latin1_codec_refuses_other_encodings():
    data = b"c_codecs\nencode\n(Vabc\nVrot13\ntR."
    with pytest.raises(pickle.UnpicklingError, match=re.escape("refusing _codecs.encode(str, 'rot13')")):
        safe_pickle.loads(data)
    assert safe_pickle.loads(b"c_codecs\nencode\n(Vabc\nVlatin1\ntR.") == b"abc"


def test_read_weights_malicious_module_state_raises_and_runs_nothing(tmp_path):
    marker = tmp_path / "pwned"
    (tmp_path / "metadata.json").write_text('{"checkpoint_version": "2.1"}')
    state = {"w": np.ones(2, np.float32), "evil": _Reduce(os.system, f"touch {marker}")}
    (tmp_path / "module_state.pkl").write_bytes(pickle.dumps(state, protocol=5))
    where = tmp_path / "module_state.pkl"
    with pytest.raises(
        UnsafePickleError,
        match=re.escape(
            f"{where}: tensor 'evil' is a {os.system.__module__}.system object, which safe mode does not build; "
            "pass trusted=True only if you trust this file"
        ),
    ):
        read_weights(str(tmp_path))
    assert not marker.exists()


def test_read_weights_msgpack_object_array_is_not_pickle_loaded(tmp_path):
    """msgpack-numpy stores object arrays as a pickle; even after RLlib's
    msgpack_numpy.patch() it goes through the safe unpickler, not pickle.loads."""
    import msgpack
    import msgpack_numpy

    msgpack_numpy.patch()  # what ray.rllib.utils.checkpoints.try_import_msgpack does
    marker = tmp_path / "pwned"
    payload = pickle.dumps(_Reduce(os.system, f"touch {marker}"))
    evil = {b"nd": True, b"type": "|O", b"kind": b"O", b"shape": [1], b"data": payload}
    (tmp_path / "metadata.json").write_text('{"checkpoint_version": "2.1"}')
    (tmp_path / "module_state.msgpack").write_bytes(msgpack.packb({"evil": evil}, use_bin_type=True))
    with pytest.raises(UnsafePickleError, match=re.escape(f"tensor 'evil' is a {os.system.__module__}.system object")):
        read_weights(str(tmp_path))
    assert not marker.exists()


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=200))
def test_safe_loads_random_bytes_never_imports(data):
    before = set(sys.modules)
    try:
        safe_pickle.loads(b"\x80\x04" + data)
    except Exception:
        pass
    assert set(sys.modules) == before


def test_read_weights_corrupt_pickle_is_format_error(tmp_path):
    (tmp_path / "metadata.json").write_text('{"checkpoint_version": "2.1"}')
    (tmp_path / "module_state.pkl").write_bytes(pickle.dumps({"w": np.ones(3)})[:-5])
    with pytest.raises(CheckpointFormatError, match=re.escape(f"{tmp_path / 'module_state.pkl'}: truncated or corrupt pickle")):
        read_weights(str(tmp_path))
