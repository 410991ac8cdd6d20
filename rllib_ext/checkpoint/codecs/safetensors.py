"""The safetensors layout, read and written with numpy alone (no ``safetensors`` package).

An 8-byte little-endian header size N, N bytes of JSON ``{name: {"dtype": "F32", "shape":
[...], "data_offsets": [begin, end]}, "__metadata__": {...}}``, then the little-endian data
(https://github.com/huggingface/safetensors). The ``safetensors`` package reads our files
and we read its files; tests check both. Every header entry is checked with Python
integers before any array is built, so a lying header is an error, never an allocation.
"""

from __future__ import annotations

import json
import math
import os
import struct
from collections import OrderedDict
from typing import Any, BinaryIO, Dict, List, Mapping, Optional, Tuple

import numpy as np

from ...errors import CheckpointFormatError, malformed, unreadable
from ..lazy import LazyArray
from ..tensors import Weights

_DTYPES = {
    "F64": np.float64, "F32": np.float32, "F16": np.float16,
    "I64": np.int64, "I32": np.int32, "I16": np.int16, "I8": np.int8,
    "U64": np.uint64, "U32": np.uint32, "U16": np.uint16, "U8": np.uint8,
    "BOOL": np.bool_,
}
_CODES = {np.dtype(v): k for k, v in _DTYPES.items()}
MAX_HEADER = 100 * 1024 * 1024  # the safetensors reference limit


def write_safetensors(f: BinaryIO, weights: Mapping[str, object], metadata: Optional[Mapping[str, str]] = None) -> str:
    """Stream ``weights`` to ``f`` in the safetensors layout, one tensor at a time.

    Values may be :class:`~.lazy.LazyArray`: each is read just before it is written and
    dropped after, so the peak is about one tensor, whatever the policy's size.

    Returns:
        The hex sha256 of everything written (computed as it is written).

    Raises:
        CheckpointFormatError: a tensor's dtype has no safetensors code (e.g. object, complex).
    """
    header: Dict[str, Any] = OrderedDict()
    if metadata:
        header["__metadata__"] = {str(k): str(v) for k, v in metadata.items()}
    offset = 0
    for name, value in weights.items():
        shape, dtype = _shape_dtype(value)
        code = _CODES.get(dtype.newbyteorder("="))
        if code is None:
            raise CheckpointFormatError(
                f"tensor {name!r}: dtype {dtype} cannot be stored in safetensors "
                f"(supported: {', '.join(sorted(np.dtype(t).name for t in _DTYPES.values()))})"
            )
        size = math.prod(shape) * dtype.itemsize
        header[str(name)] = {"dtype": code, "shape": [int(d) for d in shape], "data_offsets": [offset, offset + size]}
        offset += size
    head = json.dumps(header, separators=(",", ":")).encode("utf-8")
    head += b" " * (-len(head) % 8)  # align the data to 8 bytes, as the reference writer does
    import hashlib  # writing only: reading a policy does not pay for it

    digest = hashlib.sha256()
    for chunk in (struct.pack("<Q", len(head)), head):
        digest.update(chunk)
        f.write(chunk)
    for value in weights.values():
        arr = value.materialize() if isinstance(value, LazyArray) else np.asarray(value)
        arr = np.ascontiguousarray(arr, dtype=arr.dtype.newbyteorder("<"))
        data = arr.reshape(-1).data.cast("B") if arr.size else b""
        digest.update(data)
        f.write(data)
        del arr, data
    return digest.hexdigest()


def _shape_dtype(value: object) -> Tuple[Tuple[int, ...], np.dtype]:
    if isinstance(value, (np.ndarray, LazyArray)):
        return tuple(int(d) for d in value.shape), value.dtype
    arr = np.asarray(value)
    return arr.shape, arr.dtype


def parse_header(data: "bytes | bytearray", where: str) -> Tuple[Dict[str, Any], int]:
    if not data:
        raise CheckpointFormatError(f"{where}: file is empty")
    if len(data) < 8:
        raise CheckpointFormatError(f"{where}: too short for a safetensors file ({len(data)} bytes)")
    (n,) = struct.unpack("<Q", data[:8])
    if n > MAX_HEADER or 8 + n > len(data):
        raise CheckpointFormatError(f"{where}: safetensors header size {n} does not fit a {len(data)}-byte file")
    with malformed(where, "safetensors header is not valid JSON", catch=(UnicodeDecodeError, json.JSONDecodeError)):
        header = json.loads(data[8 : 8 + n].decode("utf-8"))
    if not isinstance(header, dict):
        raise CheckpointFormatError(f"{where}: safetensors header is not a JSON object")
    return header, 8 + n


def tensor_entries(header: Mapping[str, object], body: int, where: str) -> List[Tuple[int, str, np.dtype, Tuple[int, ...], int]]:
    """Check every header entry against a ``body``-byte data section; ``(begin, name, dtype, shape, end)``.

    Sizes are computed with Python integers, so a header cannot overflow them.
    """
    entries = []
    for name, info in header.items():
        if name == "__metadata__":
            continue
        code, shape, offsets = (info.get(k) for k in ("dtype", "shape", "data_offsets")) if isinstance(info, dict) else (None,) * 3
        if not (
            isinstance(shape, list) and all(type(d) is int and d >= 0 for d in shape)
            and isinstance(offsets, list) and len(offsets) == 2 and all(type(o) is int for o in offsets)
        ):
            raise CheckpointFormatError(
                f"{where}: tensor {name!r} has a malformed header entry: {info!r} "
                "(expected dtype, shape: [non-negative ints], data_offsets: [begin, end])"
            )
        if not isinstance(code, str) or code not in _DTYPES:
            raise CheckpointFormatError(
                f"{where}: tensor {name!r} has dtype {code!r}, which numpy cannot hold "
                f"(supported: {', '.join(sorted(_DTYPES))})"
            )
        dtype = np.dtype(_DTYPES[code]).newbyteorder("<")
        begin, end = offsets
        expected = math.prod(shape) * dtype.itemsize
        if not (0 <= begin <= end <= body) or end - begin != expected:
            raise CheckpointFormatError(
                f"{where}: tensor {name!r} of shape {tuple(shape)} {dtype.name} needs {expected} bytes, "
                f"its offsets [{begin}, {end}] do not fit the {body}-byte data section"
            )
        entries.append((begin, str(name), dtype, tuple(shape), end))
    return sorted(entries, key=lambda e: e[0])


def decode_safetensors(data: "bytes | bytearray", where: str) -> Weights:
    """Parse safetensors bytes into ``{name: array}``, ordered by position in the file.

    The arrays are views on ``data`` (no copy; writable when ``data`` is a bytearray),
    except where the file's byte order is not the machine's.

    Raises:
        CheckpointFormatError: truncated file, bad header, unknown dtype, or offsets that
            do not match the shapes or point outside the data.
    """
    header, start = parse_header(data, where)
    out: Weights = OrderedDict()
    for begin, name, dtype, shape, end in tensor_entries(header, len(data) - start, where):
        arr = np.frombuffer(data, dtype=dtype, count=(end - begin) // dtype.itemsize, offset=start + begin)
        if not dtype.isnative:
            arr = arr.astype(dtype.newbyteorder("="))
        elif not isinstance(data, bytearray):  # read-only bytes: arrays the caller may write to
            arr = arr.copy()
        out[name] = arr.reshape(shape)
    return out


def read_header(file_path: str) -> Tuple[Dict[str, Any], int]:
    """Only the JSON header of a safetensors file (the tensor data is not read), and the
    size of the data section after it (from the file size)."""
    with unreadable(file_path), open(file_path, "rb") as f:
        head = f.read(8)
        size = struct.unpack("<Q", head)[0] if len(head) == 8 else 0
        data = head + f.read(min(size, MAX_HEADER + 1))
        total = os.fstat(f.fileno()).st_size
    header, start = parse_header(data, file_path)
    return header, total - start
