"""Replace the weights inside an old-stack ``policy_state.pkl`` at byte level.

The file cloudpickles the whole config by value (env class, callbacks, mapping
functions), which we neither unpickle nor re-pickle. Arrays in it are pickled by numpy
as ``_frombuffer(<raw bytes>, dtype, shape, order)``, so every ``weights`` array is
located at its raw-bytes opcode (a non-executing walk of the pickle) and overwritten with
new bytes of the same length. Nothing else in the file changes.

Observation-filter statistics are patched the same way, in both places the old stack
keeps them: the worker's filter in ``algorithm_state.pkl`` (arrays in place, the count as
a re-encoded int) and the policy's agent connector in ``policy_state.pkl`` (RLlib's
base64 array strings, re-encoded). A re-encoded value may change length; the enclosing
pickle frame's length is corrected. Every patched file is decoded again and compared with
what was meant before it is returned.
"""

from __future__ import annotations

import base64
import io
import pickle
import pickletools
import struct
import zlib
from collections import OrderedDict
from typing import Any, Dict, List, Optional, Tuple

import numpy as np

from ..errors import CheckpointFormatError
from . import format as fmt
from . import safe_pickle
from .filters import FilterStats, connector_stats, stats_from_filter
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


class _Int(int):
    """An int from the pickle, tagged with the index of its opcode among the atom opcodes."""

    index: int

    def __new__(cls, value: int, index: int) -> "_Int":
        obj = super().__new__(cls, value)
        obj.index = index
        return obj


class _Str(str):
    """A str from the pickle, tagged like :class:`_Int`."""

    index: int

    def __new__(cls, value: str, index: int) -> "_Str":
        obj = super().__new__(cls, value)
        obj.index = index
        return obj


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


_ATOM_OPS = {
    pickle.BININT1[0], pickle.BININT2[0], pickle.BININT[0], pickle.LONG1[0],
    pickle.SHORT_BINUNICODE[0], pickle.BINUNICODE[0], pickle.BINUNICODE8[0],
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
        self._atoms = 0

    def _bytes_op(self, load: Any) -> None:
        load(self)
        raw = self.stack[-1]
        self.stack[-1] = _Buf(raw, self._count)
        self._count += 1

    def _stack_global(self) -> None:
        # The stock loader insists on exact str for module and name: untag them.
        name, module = self.stack.pop(), self.stack.pop()
        self.stack += [str(module) if isinstance(module, str) else module, str(name) if isinstance(name, str) else name]
        safe_pickle.SafeUnpickler.dispatch[pickle.STACK_GLOBAL[0]](self)

    def _atom_op(self, load: Any) -> None:
        load(self)
        value = self.stack[-1]
        if type(value) is int:
            self.stack[-1] = _Int(value, self._atoms)
        elif type(value) is str:
            self.stack[-1] = _Str(value, self._atoms)
        self._atoms += 1

    def find_class(self, module: str, name: str) -> Any:
        if name == "_frombuffer" and module in ("numpy.core.numeric", "numpy._core.numeric"):
            return _ArrayAt
        return super().find_class(module, name)


for _op in _BYTES_OPS:
    _Locator.dispatch[_op] = (lambda load: lambda self: self._bytes_op(load))(safe_pickle.SafeUnpickler.dispatch[_op])
for _op in _ATOM_OPS:
    _Locator.dispatch[_op] = (lambda load: lambda self: self._atom_op(load))(safe_pickle.SafeUnpickler.dispatch[_op])
_Locator.dispatch[pickle.STACK_GLOBAL[0]] = _Locator._stack_global


class _Map:
    """Where things are in one pickle: raw-bytes data offsets, atom opcode spans, frames."""

    def __init__(self, data: bytes) -> None:
        self.offsets: List[int] = []  # data offset of each raw-bytes opcode, in stream order
        self.atoms: List[Tuple[int, int]] = []  # (start, end) of each atom opcode
        self.frames: List[Tuple[int, int]] = []  # (FRAME opcode position, end of its frame)
        ops = list(pickletools.genops(data))
        for k, (op, arg, pos) in enumerate(ops):
            code = op.code.encode("latin1")[0]
            end = ops[k + 1][2] if k + 1 < len(ops) else len(data)
            if code in _BYTES_OPS:
                self.offsets.append(pos + 1 + _BYTES_OPS[code])
            elif code in _ATOM_OPS:
                self.atoms.append((pos, end))
            elif code == pickle.FRAME[0]:
                self.frames.append((pos, pos + 9 + int(arg)))


def locate_arrays(data: bytes, where: str) -> Tuple[Any, List[int]]:
    """Safe-load ``data`` with arrays as :class:`_ArrayAt`; return it and each raw-bytes opcode's data offset."""
    payload, where_map = _locate(data, where)
    return payload, where_map.offsets


def _locate(data: bytes, where: str) -> Tuple[Any, _Map]:
    try:
        return _Locator(data).load(), _Map(data)
    except Exception as e:
        raise CheckpointFormatError(f"{where}: truncated or corrupt pickle ({type(e).__name__}: {e})") from e


def _encode_atom(value: Any) -> bytes:
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


def _apply(data: bytes, spans: _Map, edits: List[Tuple[int, int, bytes]]) -> bytes:
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


def _array_edit(spans: _Map, at: Any, value: np.ndarray, what: str, where: str) -> Tuple[int, int, bytes]:
    if not isinstance(at, _ArrayAt) or not isinstance(at.buf, _Buf) or at.shape != value.shape:
        raise CheckpointFormatError(f"{where}: {what} is not a raw numpy buffer of shape {value.shape}; cannot patch it")
    start = spans.offsets[at.buf.index]
    chunk = np.ascontiguousarray(value, dtype=at.dtype).tobytes()
    return start, start + len(chunk), chunk


def _atom_edit(spans: _Map, at: Any, value: Any, what: str, where: str) -> Tuple[int, int, bytes]:
    if not isinstance(at, (_Int, _Str)):
        raise CheckpointFormatError(f"{where}: {what} is not a plain pickled int or string; cannot patch it")
    start, end = spans.atoms[at.index]
    return start, end, _encode_atom(value)


def rllib_ndarray_text(array: np.ndarray) -> str:
    """RLlib's ``_serialize_ndarray``: base64 of zlib of ``np.save`` bytes."""
    buf = io.BytesIO()
    np.save(buf, array)
    return base64.b64encode(zlib.compress(buf.getvalue())).decode("ascii")


def patch_worker_filter(data: bytes, where: str, label: str, policy_id: str, stats: FilterStats) -> bytes:
    """``algorithm_state.pkl`` bytes (old stack) with ``policy_id``'s worker filter holding ``stats``.

    Raises:
        CheckpointFormatError: no such filter, or it is not stored as plain arrays and ints.
    """
    payload, spans = _locate(data, where)
    try:
        flt = payload["worker"]["filters"][policy_id]
        rs = flt.state["running_stats"].state
    except (KeyError, TypeError, AttributeError):
        raise CheckpointFormatError(f"{where}: no MeanStdFilter for {policy_id!r} under worker/filters") from None
    edits = [
        _atom_edit(spans, rs["num_pushes"], int(stats.count), "num_pushes", where),
        _array_edit(spans, rs["mean_array"], stats.mean, "mean_array", where),
        _array_edit(spans, rs["sum_sq_diff_array"], stats.sum_sq_diff, "sum_sq_diff_array", where),
    ]
    patched = _apply(data, spans, edits)
    got = stats_from_filter(safe_pickle.loads(patched)["worker"]["filters"][policy_id], policy_id)
    _check_same(got, stats, label, where)
    return patched


def _connector_filter_edits(payload: Any, spans: _Map, stats: FilterStats, where: str) -> List[Tuple[int, int, bytes]]:
    """Edits that put ``stats`` into a policy state's MeanStdObservationFilterAgentConnector."""
    pipeline = (payload.get("connector_configs") or {}).get("agent") if isinstance(payload, dict) else None
    found = [
        state for name, state in (pipeline[1] if isinstance(pipeline, (list, tuple)) and len(pipeline) == 2 else [])
        if name == "MeanStdObservationFilterAgentConnector"
    ]
    if not found:
        return []
    rs = found[0]["running_stats"][0]
    return [
        _atom_edit(spans, rs["num_pushes"], int(stats.count), "connector num_pushes", where),
        _atom_edit(spans, rs["mean_array"], rllib_ndarray_text(stats.mean), "connector mean_array", where),
        _atom_edit(spans, rs["sum_sq_diff_array"], rllib_ndarray_text(stats.sum_sq_diff), "connector sum_sq_diff_array", where),
    ]


def connector_filter_of(payload: Any, where: str) -> Optional[FilterStats]:
    """The statistics of a decoded old-stack policy state's filter connector, if it has one."""
    pipeline = (payload.get("connector_configs") or {}).get("agent") if isinstance(payload, dict) else None
    for name, state in (pipeline[1] if isinstance(pipeline, (list, tuple)) and len(pipeline) == 2 else []):
        if name == "MeanStdObservationFilterAgentConnector":
            doc = {"shape": state["shape"], "de_mean_to_zero": state["demean"], "de_std_to_one": state["destd"],
                   "clip_by_value": state["clip"], "running_stats": state["running_stats"]}
            return connector_stats({"p": doc}, where)["p"]
    return None


def _check_same(got: Optional[FilterStats], want: FilterStats, label: str, where: str) -> None:
    if got is None or got.count != want.count or not np.array_equal(got.mean, want.mean) or not np.array_equal(
        got.sum_sq_diff, want.sum_sq_diff
    ):
        raise CheckpointFormatError(f"{where}: {label}: patching the observation filter did not round-trip")


def patch_policy_state(
    ckpt: CheckpointDir, rel: str, label: str, source: Weights, filter_stats: Optional[FilterStats] = None
) -> bytes:
    """The bytes of the base's ``policy_state.pkl`` with its weights' raw bytes replaced
    (and, given ``filter_stats``, its filter connector's statistics).

    Raises:
        ShapeMismatchError: ``source`` does not fit the base's weights.
        CheckpointFormatError: the base does not store its weights as raw numpy buffers.
    """
    data = ckpt.read_bytes(rel)
    where = ckpt.child(rel)
    payload, spans = _locate(data, where)
    offsets = spans.offsets
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
    edits = []
    for name, at in slots.items():
        start = offsets[at.buf.index]
        chunk = ready[name].tobytes(order="F" if at.order == "F" else "C")
        edits.append((start, start + len(chunk), chunk))
    if filter_stats is not None:
        edits += _connector_filter_edits(payload, spans, filter_stats, where)
    patched = _apply(data, spans, edits)
    decoded = safe_pickle.loads(patched)
    check = extract_weights(decoded, fmt.Layout(fmt.Kind.POLICY, fmt.Stack.OLD, "1.1", "", {}), where)
    for name, want in ready.items():
        if not np.array_equal(check[name], want):  # our locating went wrong: write nothing
            raise CheckpointFormatError(f"{where}: patching tensor {name!r} in place did not round-trip")
    if filter_stats is not None and _connector_filter_edits(payload, spans, filter_stats, where):
        _check_same(connector_filter_of(decoded, where), filter_stats, label, where)
    return patched
