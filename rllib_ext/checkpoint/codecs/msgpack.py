"""msgpack state files (``.msgpack``/``.msgpck``) with msgpack-numpy arrays, decoded by numpy alone."""

from __future__ import annotations

import io
from typing import Callable, Dict, Protocol, Tuple

import numpy as np

from ...errors import MissingDependencyError, malformed
from ..lazy import LAZY_MIN, LazyArray, LazyBytes
from ..storage import Source
from . import safe_pickle


def unpack_msgpack(source: Source, where: str, trusted: bool, lazy: bool) -> object:
    """msgpack with msgpack-numpy array maps decoded by numpy alone.

    We decode the array maps ourselves rather than through ``msgpack_numpy``: it would
    ``pickle.loads`` object arrays, and safe mode runs no pickle outside our unpickler.
    Map keys can be ints (optimizer state), hence ``strict_map_key=False``. msgpack
    decodes every value; we walk the maps and lists so that large binary values (tensor
    data) are left in the file when ``lazy``.
    """
    unpacker_cls = _plain_msgpack_unpacker(where)

    def hook(obj: Dict[object, object]) -> object:
        return _decode_msgpack_numpy(obj, trusted, lazy)

    with source.stream() as f, source.stream() as peek, malformed(where, "truncated or corrupt msgpack"):
        return _MsgpackWalker(source, f, peek, unpacker_cls, hook, lazy).document()


class _Unpacker(Protocol):
    """What we use of ``msgpack.Unpacker`` (msgpack has no type information)."""

    def tell(self) -> int: ...
    def read_map_header(self) -> int: ...
    def read_array_header(self) -> int: ...
    def unpack(self) -> object: ...


_UnpackerClass = Callable[..., _Unpacker]


class _MsgpackWalker:
    """Maps and arrays by their headers, big ``bin`` values as LazyBytes, the rest by msgpack."""

    def __init__(self, source: Source, f: io.BufferedIOBase, peek: io.BufferedIOBase, unpacker_cls: _UnpackerClass,
                 hook: Callable[[Dict[object, object]], object], lazy: bool) -> None:
        self.source, self.f, self.peek, self.cls, self.hook, self.lazy = source, f, peek, unpacker_cls, hook, lazy
        self.restart(0)

    def restart(self, offset: int) -> None:
        self.f.seek(offset)
        self.base = offset
        self.unpacker = self.cls(self.f, raw=False, strict_map_key=False, read_size=64 * 1024, max_buffer_size=2**31 - 1)

    def pos(self) -> int:
        return self.base + int(self.unpacker.tell())

    def document(self) -> object:
        value = self.value()
        if self.pos() != self.source.size:
            raise ValueError(f"extra data after the msgpack object (at byte {self.pos()} of {self.source.size})")
        return value

    def value(self) -> object:
        pos = self.pos()
        self.peek.seek(pos)
        head = self.peek.read(5)
        if not head:
            raise ValueError("msgpack data was truncated")
        t = head[0]
        if 0x80 <= t <= 0x8F or t in (0xDE, 0xDF):
            n = self.count(self.unpacker.read_map_header())
            out: Dict[object, object] = {}
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


def _plain_msgpack_unpacker(where: str) -> _UnpackerClass:
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
    except ImportError as e:
        raise MissingDependencyError(
            f"{where}: reading msgpack checkpoints needs the msgpack package: pip install msgpack"
        ) from e
    found: _UnpackerClass = Unpacker
    return found


def _decode_msgpack_numpy(obj: Dict[object, object], trusted: bool, lazy: bool = False) -> object:
    """One msgpack-numpy map -> numpy array (or LazyArray) / scalar / complex; other maps unchanged."""
    if b"nd" in obj and b"data" in obj and b"type" in obj:
        kind = obj.get(b"kind", b"")
        data = obj[b"data"]
        if obj[b"nd"] is True:
            if kind == b"O":  # object arrays are stored as a pickle
                return safe_pickle.loads(_raw(data), trusted=trusted)
            dtype = _msgpack_dtype(obj[b"type"])
            shape = _shape(obj[b"shape"])
            if isinstance(data, LazyBytes):
                if not dtype.hasobject and dtype.itemsize and all(d >= 0 for d in shape):
                    return LazyArray(data, dtype, shape)
            return np.frombuffer(_raw(data), dtype=dtype).reshape(shape).copy()
        return np.frombuffer(_raw(data), dtype=_msgpack_dtype(obj[b"type"]))[0]
    if obj.get(b"complex") is True and b"data" in obj:
        text = obj[b"data"]
        if isinstance(text, bytes):
            text = text.decode()
        if not isinstance(text, (str, int, float, complex)):
            raise TypeError(f"complex value {text!r} is not a number or its text")
        return complex(text)
    return obj


def _raw(data: object) -> "bytes | bytearray":
    """An array map's ``data``: bytes (read now if it was left in the file)."""
    if isinstance(data, LazyBytes):
        return bytes(data.read())
    if not isinstance(data, (bytes, bytearray)):
        raise TypeError(f"array data is a {type(data).__name__}, not bytes")
    return data


def _shape(shape: object) -> Tuple[int, ...]:
    """An array map's ``shape``: a list of ints."""
    if not isinstance(shape, (list, tuple)) or not all(type(d) is int for d in shape):
        raise TypeError(f"array shape {shape!r} is not a list of ints")
    return tuple(shape)


def _msgpack_dtype(descr: object) -> "np.dtype[np.generic]":
    """Rebuild a dtype from ``dtype.str`` or a structured ``dtype.descr`` list."""
    if isinstance(descr, (list, tuple)):
        fields = []
        for field in descr:
            name, sub, *shape = field
            name = name.decode() if isinstance(name, bytes) else name
            fields.append((name, _msgpack_dtype(sub), *shape))
        return np.dtype(fields)
    if isinstance(descr, bytes):
        descr = descr.decode()
    if not isinstance(descr, str):
        raise TypeError(f"array type {descr!r} is not a dtype string or field list")
    return np.dtype(descr)
