"""Read policy ids and weights out of any RLlib checkpoint, without Ray or torch.

``read_weights`` returns ``{name: numpy array}`` named exactly as RLlib's own getters
name them: ``module.get_state()`` on the new stack, ``policy.get_weights()`` on the old
stack (tf2 policies return a list there; its positions become the names "0", "1", ...).
Reading one policy touches only that policy's files. State files may be pickles
(``.pkl``), msgpack (``.msgpack``/``.msgpck``), a ``torch.save`` zip (``.pt``, layout 1.2)
or rllib_ext's ``weights.safetensors``; none of them needs Ray or torch to read.
"""

from __future__ import annotations

import os
import struct
import zlib
from collections import OrderedDict
from typing import Any, Callable, Dict, List, Optional, Tuple

import numpy as np

from ..errors import CheckpointFormatError, MissingDependencyError, UnsafePickleError, not_found
from . import format as fmt
from . import safe_pickle
from .lazy import LAZY_MIN, LazyArray, LazyBytes
from .policy_file import read_checked
from .safetensors import decode_safetensors
from .storage import CheckpointDir, MemorySource, Source, WindowSource
from .tensors import Weights, by_position


def open_checkpoint(path: "str | os.PathLike[str]") -> "tuple[CheckpointDir, fmt.Layout]":
    """Open ``path`` and detect its layout (shared by every reader entry point)."""
    ckpt = CheckpointDir(path)
    return ckpt, fmt.detect(ckpt)


def policy_ids(path: "str | os.PathLike[str]") -> List[str]:
    """The policy (old stack) or module (new stack) ids stored at ``path``, sorted."""
    ckpt, layout = open_checkpoint(path)
    return ids_in(ckpt, layout)


def ids_in(ckpt: CheckpointDir, layout: fmt.Layout) -> List[str]:
    """:func:`policy_ids` of a checkpoint already opened with :func:`open_checkpoint`."""
    if layout.kind is fmt.Kind.SINGLE_POLICY:
        return [str(layout.metadata.get("policy_id") or os.path.basename(ckpt.uri.rstrip("/")))]
    if layout.kind in (fmt.Kind.POLICY, fmt.Kind.MODULE):
        return [os.path.basename(ckpt.uri.rstrip("/"))]
    base = layout.policies_dir
    if base and not ckpt.is_dir(base):
        return []
    return [d for d in ckpt.listdir(base) if ckpt.is_dir(f"{base}/{d}" if base else d)]


def read_weights(
    path: "str | os.PathLike[str]", policy_id: Optional[str] = None, *, trusted: bool = False
) -> Weights:
    """Return one policy's weights as ``{tensor name: numpy array}``.

    Args:
        path: checkpoint directory (algorithm, multi-module, module or policy checkpoint).
        policy_id: which policy/module; may be omitted when the checkpoint holds one.
        trusted: unpickle with plain pickle, which imports and runs whatever the file
            names; only for files you trust (safe mode turns foreign objects into
            inert placeholders).

    Raises:
        PolicyNotFoundError: ``policy_id`` is not in the checkpoint (lists what is).
        CheckpointFormatError: the weights file is missing, truncated or not understood.
        UnsafePickleError: a tensor is an object safe mode does not build.
        MissingDependencyError: a msgpack checkpoint without the msgpack package.
    """
    ckpt, layout = open_checkpoint(path)
    return read_opened(ckpt, layout, policy_id, trusted=trusted)


def read_opened(
    ckpt: CheckpointDir, layout: fmt.Layout, policy_id: Optional[str] = None, *, trusted: bool = False
) -> Weights:
    """:func:`read_weights` on a checkpoint already opened (no second metadata read)."""
    _, rel = locate(ckpt, layout, policy_id)
    if layout.kind is fmt.Kind.SINGLE_POLICY:  # checked against policy.json's digest and index
        return read_checked(ckpt, layout)
    payload = decode_file(ckpt, rel, trusted=trusted, lazy=True)  # the optimizer state beside the weights stays unread
    return extract_weights(payload, layout, ckpt.child(rel))


def locate(ckpt: CheckpointDir, layout: fmt.Layout, policy_id: Optional[str]) -> Tuple[Optional[str], str]:
    """Resolve ``policy_id`` to ``(policy_id, weights file relative to the root)``.

    For a checkpoint that *is* one policy, any ``policy_id`` names it (its directory
    name is only a guess at the id) and ``None`` is returned as the id.

    Raises:
        PolicyNotFoundError: ``policy_id`` is not in the checkpoint (lists what is).
    """
    if layout.kind in (fmt.Kind.POLICY, fmt.Kind.MODULE, fmt.Kind.SINGLE_POLICY):
        return None, fmt.weights_file(ckpt, layout, None)
    ids = ids_in(ckpt, layout)
    if policy_id is None:
        if len(ids) != 1:
            raise not_found("policy", "<none given>", ckpt.uri, ids)
        policy_id = ids[0]
    if policy_id not in ids:
        raise not_found("policy", policy_id, ckpt.uri, ids)
    return policy_id, fmt.weights_file(ckpt, layout, policy_id)


def decode_file(ckpt: CheckpointDir, rel: str, *, trusted: bool = False, lazy: bool = False) -> Any:
    """Decode one state file by its extension, wrapping every failure in a typed error.

    ``.pkl`` (pickle), ``.msgpack``/``.msgpck`` (msgpack + msgpack-numpy arrays), ``.pt``
    (a ``torch.save`` zip; its ``data.pkl`` is read without torch) and ``.safetensors``.
    The file is read as it is decoded, never copied whole.

    Args:
        lazy: leave large tensors in the file as :class:`~.lazy.LazyArray` objects
            (shape and dtype known; ``materialize()`` reads one). Safe mode only.

    Raises:
        CheckpointFormatError: empty, truncated or corrupt file, or an unknown extension.
        MissingDependencyError: a msgpack file but the ``msgpack`` package is not installed.
    """
    where = ckpt.child(rel)
    ext = os.path.splitext(rel)[1]
    if ext == ".safetensors":
        data = ckpt.read_buffer(rel)
        if not data:
            raise CheckpointFormatError(f"{where}: file is empty")
        return decode_safetensors(data, where)
    source = ckpt.open_source(rel)
    if source.size == 0:
        raise CheckpointFormatError(f"{where}: file is empty")
    lazy = lazy and not trusted
    if ext == ".pkl":
        return _unpickle(source, where, trusted, lazy)
    if ext in (".msgpack", ".msgpck"):
        return _unpack_msgpack(source, where, trusted, lazy)
    if ext == ".pt":
        return _unpickle(_torch_zip_payload(source, where), where, trusted, lazy)
    raise CheckpointFormatError(f"{where}: this reader cannot decode {ext!r} files")


def _unpickle(source: Source, where: str, trusted: bool, lazy: bool) -> Any:
    with source.stream() as f:  # an unreadable file is said so, not called corrupt
        try:
            return safe_pickle.load_stream(f, source, trusted=trusted, lazy=lazy)
        except Exception as e:  # any unpickling failure means a damaged file
            raise CheckpointFormatError(
                f"{where}: truncated or corrupt pickle ({type(e).__name__}: {e})"
            ) from e


def _torch_zip_payload(source: Source, where: str) -> Source:
    """The pickle inside a ``torch.save`` zip archive (``<archive>/data.pkl``).

    torch stores members uncompressed, so the pickle is a byte range of the file: tensor
    data inside it can stay unread. Its CRC is still checked, a chunk at a time.
    """
    import zipfile  # only for Ray ~2.30's .pt files: kept out of every other read's start-up

    try:
        with source.stream() as f, zipfile.ZipFile(f) as z:
            names = [n for n in z.namelist() if n == "data.pkl" or n.endswith("/data.pkl")]
            if len(names) != 1:
                raise CheckpointFormatError(
                    f"{where}: expected one data.pkl in the torch archive, found {len(names)} "
                    f"among {', '.join(z.namelist()[:8])}"
                )
            info = z.getinfo(names[0])
            if info.compress_type == zipfile.ZIP_STORED:
                f.seek(info.header_offset)
                head = f.read(30)
                if len(head) == 30 and head[:4] == b"PK\x03\x04":
                    n, m = struct.unpack("<HH", head[26:30])
                    start = info.header_offset + 30 + n + m
                    if start + info.file_size <= source.size:
                        window = WindowSource(source, start, info.file_size, where)
                        if _crc32(window) != info.CRC:
                            raise zipfile.BadZipFile(f"Bad CRC-32 for file {names[0]!r}")
                        return window
            return MemorySource(z.read(names[0]), where)
    except zipfile.BadZipFile as e:
        raise CheckpointFormatError(
            f"{where}: not a torch.save zip archive (legacy pre-1.6 torch format?): {e}"
        ) from e


def _crc32(source: Source) -> int:
    crc, chunk = 0, bytearray(1 << 20)
    for pos in range(0, source.size, len(chunk)):
        view = memoryview(chunk)[: min(len(chunk), source.size - pos)]
        source.readinto_at(pos, view)
        crc = zlib.crc32(view, crc)
        view.release()
    return crc


def _unpack_msgpack(source: Source, where: str, trusted: bool, lazy: bool) -> Any:
    """msgpack with msgpack-numpy array maps decoded by numpy alone.

    We decode the array maps ourselves rather than through ``msgpack_numpy``: it would
    ``pickle.loads`` object arrays, and safe mode runs no pickle outside our unpickler.
    Map keys can be ints (optimizer state), hence ``strict_map_key=False``. msgpack
    decodes every value; we walk the maps and lists so that large binary values (tensor
    data) are left in the file when ``lazy``.
    """
    unpacker_cls = _plain_msgpack_unpacker(where)

    def hook(obj: Dict[Any, Any]) -> Any:
        return _decode_msgpack_numpy(obj, trusted, lazy)

    with source.stream() as f, source.stream() as peek:
        try:
            return _MsgpackWalker(source, f, peek, unpacker_cls, hook, lazy).document()
        except Exception as e:
            raise CheckpointFormatError(
                f"{where}: truncated or corrupt msgpack ({type(e).__name__}: {e})"
            ) from e


class _MsgpackWalker:
    """Maps and arrays by their headers, big ``bin`` values as LazyBytes, the rest by msgpack."""

    def __init__(self, source: Source, f: Any, peek: Any, unpacker_cls: Any, hook: Callable[[Dict[Any, Any]], Any], lazy: bool) -> None:
        self.source, self.f, self.peek, self.cls, self.hook, self.lazy = source, f, peek, unpacker_cls, hook, lazy
        self.restart(0)

    def restart(self, offset: int) -> None:
        self.f.seek(offset)
        self.base = offset
        self.unpacker = self.cls(self.f, raw=False, strict_map_key=False, read_size=64 * 1024, max_buffer_size=2**31 - 1)

    def pos(self) -> int:
        return self.base + self.unpacker.tell()

    def document(self) -> Any:
        value = self.value()
        if self.pos() != self.source.size:
            raise ValueError(f"extra data after the msgpack object (at byte {self.pos()} of {self.source.size})")
        return value

    def value(self) -> Any:
        pos = self.pos()
        self.peek.seek(pos)
        head = self.peek.read(5)
        if not head:
            raise ValueError("msgpack data was truncated")
        t = head[0]
        if 0x80 <= t <= 0x8F or t in (0xDE, 0xDF):
            n = self.count(self.unpacker.read_map_header())
            out: Dict[Any, Any] = {}
            for _ in range(n):
                key = self.value()
                out[key] = self.value()
            return self.hook(out)
        if 0x90 <= t <= 0x9F or t in (0xDC, 0xDD):
            return [self.value() for _ in range(self.count(self.unpacker.read_array_header()))]
        if self.lazy and t in (0xC5, 0xC6) and len(head) == 5:
            width = 2 if t == 0xC5 else 4
            n = int.from_bytes(head[1 : 1 + width], "big")
            if n >= LAZY_MIN:
                data = LazyBytes(self.source, pos + 1 + width, n)
                self.restart(pos + 1 + width + n)
                return data
        return self.unpacker.unpack()

    def count(self, n: int) -> int:
        if n > self.source.size - self.pos():  # every entry takes at least one byte
            raise ValueError(f"a container of {n} entries cannot fit the rest of the file")
        return n


def _plain_msgpack_unpacker(where: str) -> Any:
    """msgpack's own ``Unpacker``, even after ``msgpack_numpy.patch()``.

    RLlib patches the ``msgpack`` module globally (``try_import_msgpack``); the patched
    functions decode arrays first and ``pickle.loads`` object arrays, bypassing safe
    mode. The implementation modules are never patched, so we take it from them.
    """
    try:
        import msgpack  # noqa: F401  (the install check; its attributes may be patched)

        try:
            from msgpack._cmsgpack import Unpacker
        except ImportError:  # pure-Python build of msgpack
            from msgpack.fallback import Unpacker
    except ImportError:
        raise MissingDependencyError(
            f"{where}: reading msgpack checkpoints needs the msgpack package: pip install msgpack"
        ) from None
    return Unpacker


def _decode_msgpack_numpy(obj: Dict[Any, Any], trusted: bool, lazy: bool = False) -> Any:
    """One msgpack-numpy map -> numpy array (or LazyArray) / scalar / complex; other maps unchanged."""
    if b"nd" in obj and b"data" in obj and b"type" in obj:
        kind = obj.get(b"kind", b"")
        data = obj[b"data"]
        if obj[b"nd"] is True:
            if kind == b"O":  # object arrays are stored as a pickle
                return safe_pickle.loads(data.read() if isinstance(data, LazyBytes) else data, trusted=trusted)
            dtype = _msgpack_dtype(obj[b"type"])
            shape = tuple(obj[b"shape"])
            if isinstance(data, LazyBytes):
                if not dtype.hasobject and dtype.itemsize and all(type(d) is int and d >= 0 for d in shape):
                    return LazyArray(data, dtype, shape)
                data = bytes(data.read())
            return np.frombuffer(data, dtype=dtype).reshape(shape).copy()
        if isinstance(data, LazyBytes):
            data = bytes(data.read())
        return np.frombuffer(data, dtype=_msgpack_dtype(obj[b"type"]))[0]
    if obj.get(b"complex") is True and b"data" in obj:
        text = obj[b"data"]
        return complex(text.decode() if isinstance(text, bytes) else text)
    return obj


def _msgpack_dtype(descr: Any) -> np.dtype:
    """Rebuild a dtype from ``dtype.str`` or a structured ``dtype.descr`` list."""
    if isinstance(descr, (list, tuple)):
        fields = []
        for field in descr:
            name, sub, *shape = field
            name = name.decode() if isinstance(name, bytes) else name
            fields.append((name, _msgpack_dtype(sub), *shape))
        return np.dtype(fields)
    return np.dtype(descr.decode() if isinstance(descr, bytes) else descr)


def extract_weights(payload: Any, layout: fmt.Layout, where: str, *, materialize: bool = True) -> Weights:
    """The ``{name: array}`` weights inside a decoded state file, each checked to be an array.

    Tensors :func:`decode_file` left in the file are read here, one at a time
    (``materialize=False`` keeps them as :class:`~.lazy.LazyArray`: shapes for ``inspect``,
    or one tensor at a time for a streaming export).

    Raises:
        CheckpointFormatError: no weights entry, or a tensor that is not an array.
        UnsafePickleError: a tensor is an object safe mode did not build.
    """
    if layout.stack is fmt.Stack.OLD and layout.kind is not fmt.Kind.SINGLE_POLICY:
        if not isinstance(payload, dict) or "weights" not in payload:
            raise CheckpointFormatError(f"{where}: policy state has no 'weights' entry")
        raw = payload["weights"]
    else:
        raw = payload
    if isinstance(raw, (list, tuple)):  # tf2 policies: a list in variable order
        raw = by_position(raw)
    if not isinstance(raw, dict):
        raise CheckpointFormatError(
            f"{where}: expected a mapping of tensor names to arrays, got {type(raw).__name__}"
        )
    out: Weights = OrderedDict()
    for name, value in raw.items():
        if isinstance(value, safe_pickle.Placeholder):
            kind = type(value)
            raise UnsafePickleError(
                f"{where}: tensor {name!r} is a {kind.module}.{kind.name} object, which safe mode "
                "does not build; pass trusted=True only if you trust this file"
            )
        if isinstance(value, LazyArray):
            out[str(name)] = value.materialize() if materialize else value
            continue
        if not isinstance(value, np.ndarray):
            raise CheckpointFormatError(
                f"{where}: tensor {name!r} is a {type(value).__name__}, not an array "
                "(written by an unsupported framework or version?)"
            )
        out[str(name)] = value
    return out
