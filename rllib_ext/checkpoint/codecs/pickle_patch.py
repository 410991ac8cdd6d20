"""Edit a pickle at byte level without re-pickling it: find the bytes, re-encode, patch.

RLlib's old-stack state files cloudpickle the whole config by value (env class,
callbacks, mapping functions), which we neither unpickle nor re-pickle. numpy pickles
arrays as ``_frombuffer(<raw bytes>, dtype, shape, order)``: :func:`decode_with_spans` walks the
pickle without executing it and records where each array's raw bytes and each int/str
opcode are, so a caller can overwrite them (:func:`array_edit` keeps the length;
:func:`atom_edit` re-encodes, and :func:`apply_edits` corrects the enclosing frame's
length). What to patch is decided in :mod:`rllib_ext.merge.state_patch`.
"""

from __future__ import annotations

import base64
import io
import pickle
import pickletools
import struct
import zlib
from typing import Any, Callable, Dict, Iterable, List, Self, Tuple

import numpy as np

from ...errors import CheckpointFormatError, malformed
from . import safe_pickle


class RawBytes(bytes):
    """The payload of the n-th raw-bytes opcode of a pickle, tagged with n.

    Still real bytes, so allowed builders that take bytes (numpy scalars in tf2 policy
    states, ``bytearray``) work as in a normal safe load.
    """

    nth: int  # not `index`: that would shadow bytes.index/str.index

    def __new__(cls, raw: "bytes | bytearray", index: int) -> "RawBytes":
        obj = super().__new__(cls, raw)
        obj.nth = index
        return obj

    @property
    def length(self) -> int:
        return len(self)


class _Tagged:
    """A value from the pickle, tagged with the index of its opcode among the atom opcodes."""

    nth: int  # not `index`: that would shadow bytes.index/str.index

    def __new__(cls, value: object, index: int) -> Self:
        obj = super().__new__(cls, value)  # type: ignore[call-arg]  # int's or str's
        obj.nth = index
        return obj


class _Int(_Tagged, int):
    """An int from the pickle, tagged (:class:`_Tagged`)."""


class _Str(_Tagged, str):
    """A str from the pickle, tagged (:class:`_Tagged`)."""


class ArrayAt:
    """What ``_frombuffer(buf, dtype, shape, order)`` would have built, and where its bytes are."""

    def __init__(self, buf: object, dtype: object, shape: Iterable[int], order: object = "C") -> None:
        self.buf, self.dtype, self.shape, self.order = buf, dtype, tuple(shape), order


_BYTES_OPS = {  # opcode -> size of its length field
    pickle.BINBYTES[0]: 4,
    pickle.SHORT_BINBYTES[0]: 1,
    pickle.BINBYTES8[0]: 8,
    pickle.BYTEARRAY8[0]: 8,
}


_ATOM_OPS = {
    pickle.BININT1[0], pickle.BININT2[0], pickle.BININT[0], pickle.LONG1[0],
    pickle.SHORT_BINUNICODE[0], pickle.BINUNICODE[0], pickle.BINUNICODE8[0],
}


class _Locator(safe_pickle.SafeUnpickler):  # the pure-Python unpickler: its opcodes can be hooked
    """Safe-mode unpickling that records where each numpy array's raw bytes are.

    Raw-bytes opcodes push a :class:`RawBytes` (their index in stream order) instead of the
    bytes; numpy's ``_frombuffer`` becomes :class:`ArrayAt`. Every other global is an
    inert placeholder, as in :mod:`.safe_pickle`.
    """

    dispatch = dict(safe_pickle.SafeUnpickler.dispatch)

    def __init__(self, data: bytes) -> None:
        super().__init__(data)
        self._count = 0
        self._atoms = 0

    def _bytes_op(self, load: Callable[["_Locator"], None]) -> None:
        load(self)
        raw = self.stack[-1]
        assert isinstance(raw, (bytes, bytearray))  # what every opcode in _BYTES_OPS pushes (no source: never lazy)
        self.stack[-1] = RawBytes(raw, self._count)
        self._count += 1

    def _stack_global(self) -> None:
        # The stock loader insists on exact str for module and name: untag them.
        name, module = self.stack.pop(), self.stack.pop()
        self.stack += [str(module) if isinstance(module, str) else module, str(name) if isinstance(name, str) else name]
        safe_pickle.SafeUnpickler.dispatch[pickle.STACK_GLOBAL[0]](self)

    def _atom_op(self, load: Callable[["_Locator"], None]) -> None:
        load(self)
        value = self.stack[-1]
        if type(value) is int:
            self.stack[-1] = _Int(value, self._atoms)
        elif type(value) is str:
            self.stack[-1] = _Str(value, self._atoms)
        self._atoms += 1

    def find_class(self, module: str, name: str) -> object:
        if name == "_frombuffer" and module in ("numpy.core.numeric", "numpy._core.numeric"):
            return ArrayAt
        return super().find_class(module, name)


for _op in _BYTES_OPS:
    _Locator.dispatch[_op] = (lambda load: lambda self: self._bytes_op(load))(safe_pickle.SafeUnpickler.dispatch[_op])
for _op in _ATOM_OPS:
    _Locator.dispatch[_op] = (lambda load: lambda self: self._atom_op(load))(safe_pickle.SafeUnpickler.dispatch[_op])
_Locator.dispatch[pickle.STACK_GLOBAL[0]] = _Locator._stack_global


class SpanMap:
    """Where things are in one pickle: raw-bytes data offsets, atom opcode spans, frames."""

    def __init__(self, data: bytes) -> None:
        self.offsets: List[int] = []  # data offset of each raw-bytes opcode, in stream order
        self.atoms: List[Tuple[int, int]] = []  # (start, end) of each atom opcode
        self.frames: List[Tuple[int, int]] = []  # (FRAME opcode position, end of its frame)
        ops: List[Tuple[pickletools.OpcodeInfo, object, int]] = []
        for op, arg, pos in pickletools.genops(data):
            assert pos is not None  # genops on bytes reports every opcode's position
            ops.append((op, arg, pos))
        for k, (op, arg, pos) in enumerate(ops):
            code = op.code.encode("latin1")[0]
            end = ops[k + 1][2] if k + 1 < len(ops) else len(data)
            if code in _BYTES_OPS:
                self.offsets.append(pos + 1 + _BYTES_OPS[code])
            elif code in _ATOM_OPS:
                self.atoms.append((pos, end))
            elif code == pickle.FRAME[0] and isinstance(arg, int):  # a FRAME's argument is its length
                self.frames.append((pos, pos + 9 + arg))


# Any: the caller indexes the decoded pickle, catching what a wrong shape raises.
def decode_with_spans(data: bytes, where: str) -> Tuple[Any, SpanMap]:
    with malformed(where, "truncated or corrupt pickle"):
        return _Locator(data).load(), SpanMap(data)


def _encode_atom(value: "int | str") -> bytes:
    """One pickle opcode that pushes ``value`` (an int or a str)."""
    if isinstance(value, str):
        raw = value.encode("utf-8")
        if len(raw) < 256:
            return pickle.SHORT_BINUNICODE + bytes([len(raw)]) + raw
        return pickle.BINUNICODE + struct.pack("<I", len(raw)) + raw
    if 0 <= value < 256:
        return pickle.BININT1 + bytes([value])
    if 0 <= value < 65536:
        return pickle.BININT2 + struct.pack("<H", value)
    if -(2**31) <= value < 2**31:
        return pickle.BININT + struct.pack("<i", value)
    body = pickle.encode_long(value)
    return pickle.LONG1 + bytes([len(body)]) + body


def apply_edits(data: bytes, spans: SpanMap, edits: List[Tuple[int, int, bytes]]) -> bytes:
    """Replace ``data[start:end]`` by each edit's bytes; fix the lengths of enclosing frames."""
    growth: Dict[int, int] = {}
    for start, end, new in edits:
        for k, (fpos, fend) in enumerate(spans.frames):
            if fpos + 9 <= start and end <= fend:
                growth[k] = growth.get(k, 0) + len(new) - (end - start)
    out = bytearray(data)
    changes = [(start, end, new) for start, end, new in edits]
    for k, delta in growth.items():
        fpos, fend = spans.frames[k]
        changes.append((fpos + 1, fpos + 9, struct.pack("<Q", fend - fpos - 9 + delta)))
    for start, end, new in sorted(changes, key=lambda c: c[0], reverse=True):
        out[start:end] = new
    return bytes(out)


def array_edit(spans: SpanMap, at: object, value: np.ndarray, what: str, where: str) -> Tuple[int, int, bytes]:
    if (not isinstance(at, ArrayAt) or not isinstance(at.buf, RawBytes) or not isinstance(at.dtype, np.dtype)
            or at.shape != value.shape):
        raise CheckpointFormatError(f"{where}: {what} is not a raw numpy buffer of shape {value.shape}; cannot patch it")
    start = spans.offsets[at.buf.nth]
    chunk = np.ascontiguousarray(value, dtype=at.dtype).tobytes()
    return start, start + len(chunk), chunk


def atom_edit(spans: SpanMap, at: object, value: "int | str", what: str, where: str) -> Tuple[int, int, bytes]:
    if not isinstance(at, (_Int, _Str)):
        raise CheckpointFormatError(f"{where}: {what} is not a plain pickled int or string; cannot patch it")
    start, end = spans.atoms[at.nth]
    return start, end, _encode_atom(value)


def rllib_ndarray_text(array: np.ndarray) -> str:
    """RLlib's ``_serialize_ndarray``: base64 of zlib of ``np.save`` bytes."""
    buf = io.BytesIO()
    np.save(buf, array)
    return base64.b64encode(zlib.compress(buf.getvalue())).decode("ascii")
