"""Replace the weights inside an old-stack ``policy_state.pkl`` at byte level.

The file cloudpickles the whole config by value (env class, callbacks, mapping
functions), which we neither unpickle nor re-pickle. Arrays in it are pickled by numpy
as ``_frombuffer(<raw bytes>, dtype, shape, order)``, so every ``weights`` array is
located at its raw-bytes opcode (a non-executing walk of the pickle) and overwritten with
new bytes of the same length. Nothing else in the file changes.
"""

from __future__ import annotations

import pickle
import pickletools
from collections import OrderedDict
from typing import Any, List, Tuple

import numpy as np

from ..errors import CheckpointFormatError
from . import format as fmt
from . import safe_pickle
from .reader import extract_weights
from .storage import CheckpointDir
from .tensors import Weights, by_position, check_tensors

class _Buf(bytes):
    """The payload of the n-th raw-bytes opcode of a pickle, tagged with n.

    Still real bytes, so allowed builders that take bytes (numpy scalars in tf2 policy
    states, ``bytearray``) work as in a normal safe load.
    """

    index: int

    def __new__(cls, raw: Any, index: int) -> "_Buf":
        obj = super().__new__(cls, raw)
        obj.index = index
        return obj

    @property
    def length(self) -> int:
        return len(self)


class _ArrayAt:
    """What ``_frombuffer(buf, dtype, shape, order)`` would have built, and where its bytes are."""

    def __init__(self, buf: Any, dtype: Any, shape: Any, order: Any = "C") -> None:
        self.buf, self.dtype, self.shape, self.order = buf, dtype, tuple(shape), order


_BYTES_OPS = {  # opcode -> size of its length field
    pickle.BINBYTES[0]: 4,
    pickle.SHORT_BINBYTES[0]: 1,
    pickle.BINBYTES8[0]: 8,
    pickle.BYTEARRAY8[0]: 8,
}


class _Locator(safe_pickle.SafeUnpickler):  # the pure-Python unpickler: its opcodes can be hooked
    """Safe-mode unpickling that records where each numpy array's raw bytes are.

    Raw-bytes opcodes push a :class:`_Buf` (their index in stream order) instead of the
    bytes; numpy's ``_frombuffer`` becomes :class:`_ArrayAt`. Every other global is an
    inert placeholder, as in :mod:`safe_pickle`.
    """

    dispatch = dict(safe_pickle.SafeUnpickler.dispatch)

    def __init__(self, data: bytes) -> None:
        super().__init__(data)
        self._count = 0

    def _bytes_op(self, load: Any) -> None:
        load(self)
        raw = self.stack[-1]
        self.stack[-1] = _Buf(raw, self._count)
        self._count += 1

    def find_class(self, module: str, name: str) -> Any:
        if name == "_frombuffer" and module in ("numpy.core.numeric", "numpy._core.numeric"):
            return _ArrayAt
        return super().find_class(module, name)


for _op in _BYTES_OPS:
    _Locator.dispatch[_op] = (lambda load: lambda self: self._bytes_op(load))(safe_pickle.SafeUnpickler.dispatch[_op])


def locate_arrays(data: bytes, where: str) -> Tuple[Any, List[int]]:
    """Safe-load ``data`` with arrays as :class:`_ArrayAt`; return it and each raw-bytes opcode's data offset."""
    try:
        payload = _Locator(data).load()
        offsets = []
        for op, arg, pos in pickletools.genops(data):
            code = op.code.encode("latin1")[0]
            if code in _BYTES_OPS:
                offsets.append(pos + 1 + _BYTES_OPS[code])
    except Exception as e:
        raise CheckpointFormatError(f"{where}: truncated or corrupt pickle ({type(e).__name__}: {e})") from e
    return payload, offsets


def patch_policy_state(ckpt: CheckpointDir, rel: str, label: str, source: Weights) -> bytes:
    """The bytes of the base's ``policy_state.pkl`` with its weights' raw bytes replaced.

    Raises:
        ShapeMismatchError: ``source`` does not fit the base's weights.
        CheckpointFormatError: the base does not store its weights as raw numpy buffers.
    """
    data = ckpt.read_bytes(rel)
    where = ckpt.child(rel)
    payload, offsets = locate_arrays(data, where)
    raw = payload.get("weights") if isinstance(payload, dict) else None
    if isinstance(raw, (list, tuple)):  # tf2: a list in variable order, named by position
        raw = by_position(raw)
    if not isinstance(raw, dict):
        raise CheckpointFormatError(f"{where}: policy state has no 'weights' mapping")
    slots: "OrderedDict[str, _ArrayAt]" = OrderedDict()
    used = set()
    for name, at in raw.items():
        if not isinstance(at, _ArrayAt) or not isinstance(at.buf, _Buf) or not isinstance(at.dtype, np.dtype):
            raise CheckpointFormatError(
                f"{where}: tensor {name!r} is not pickled as a raw numpy buffer; this file cannot be patched in place"
            )
        nbytes = int(np.prod(at.shape, dtype=np.int64)) * at.dtype.itemsize
        if at.buf.length != nbytes or at.buf.index in used or at.buf.index >= len(offsets):
            raise CheckpointFormatError(f"{where}: tensor {name!r}: its raw bytes are shared or do not match its shape")
        used.add(at.buf.index)
        slots[str(name)] = at
    base_like = OrderedDict((n, np.empty(at.shape, at.dtype)) for n, at in slots.items())
    ready = check_tensors(label, source, base_like, target_name="base")
    out = bytearray(data)
    for name, at in slots.items():
        start = offsets[at.buf.index]
        chunk = ready[name].tobytes(order="F" if at.order == "F" else "C")
        out[start : start + len(chunk)] = chunk
    patched = bytes(out)
    check = extract_weights(safe_pickle.loads(patched), fmt.Layout(fmt.Kind.POLICY, fmt.Stack.OLD, "1.1", "", {}), where)
    for name, want in ready.items():
        if not np.array_equal(check[name], want):  # our locating went wrong: write nothing
            raise CheckpointFormatError(f"{where}: patching tensor {name!r} in place did not round-trip")
    return patched
