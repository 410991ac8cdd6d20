"""A restricted unpickler: numpy arrays and plain containers in, no code run.

RLlib's old-stack ``policy_state.pkl`` cloudpickles the whole config (env class,
callbacks, mapping functions by value). A normal ``pickle.load`` of it imports Ray and
may execute arbitrary code. In safe mode every global outside a short allow-list becomes
an inert :class:`Placeholder` subclass: it is never imported, and "calling" it only
records the arguments. Weights (numpy arrays in plain dicts/lists) come out intact.

Safe mode runs the pure-Python unpickler (``pickle._Unpickler``), not the C one: a
damaged or crafted file must fail quickly, and the C unpickler grows its memo table to
whatever index a ``LONG_BINPUT``/``PUT`` names (one flipped byte asked it for ~10 GB).
The Python unpickler keeps the memo in a dict; every read is clamped to what is left of
the file (a lying length gives "truncated", never an allocation of that length), and
``bytearray(n)`` is refused. It is slower per opcode, which costs ~1 ms on a policy file
(tensors are single opcodes).

Memory: the pickle is read from the file as it goes, and a tensor's bytes are read once,
straight into the buffer the array keeps. With ``lazy=True`` (:func:`load_source`) byte
strings of :data:`~.lazy.LAZY_MIN` or more are not read at all: they become
:class:`~.lazy.LazyBytes`, and numpy's ``_frombuffer`` / ``_reconstruct`` + state build a
:class:`~.lazy.LazyArray` on them, read only if the caller materializes it.
"""

from __future__ import annotations

import builtins
import collections
import io
import math
import pickle
import struct
from typing import Any, BinaryIO, Callable, ClassVar, Dict, Iterable, List, Optional, Protocol, Tuple, Type, TypeGuard, cast

import numpy as np

from ..lazy import LAZY_MIN, LazyArray, LazyBytes
from ..storage import BoundedReader, MemorySource, Source

# Globals that only build data. numpy 1.x pickles name numpy.core.*, numpy 2.x
# numpy._core.*: both spellings resolve to the installed numpy.
_NUMPY_CORE = np._core if hasattr(np, "_core") else np.core
ALLOWED: Dict[Tuple[str, str], Callable[..., object]] = {
    ("collections", "OrderedDict"): collections.OrderedDict,
    ("collections", "defaultdict"): collections.defaultdict,
    ("collections", "deque"): collections.deque,
    ("numpy", "dtype"): np.dtype,
    ("numpy", "ndarray"): np.ndarray,
    ("numpy.core.multiarray", "_reconstruct"): _NUMPY_CORE.multiarray._reconstruct,
    ("numpy._core.multiarray", "_reconstruct"): _NUMPY_CORE.multiarray._reconstruct,
    ("numpy.core.multiarray", "scalar"): _NUMPY_CORE.multiarray.scalar,
    ("numpy._core.multiarray", "scalar"): _NUMPY_CORE.multiarray.scalar,
    ("numpy.core.numeric", "_frombuffer"): _NUMPY_CORE.numeric._frombuffer,
    ("numpy._core.numeric", "_frombuffer"): _NUMPY_CORE.numeric._frombuffer,
}


def _latin1_encode(text: object, encoding: str = "latin1") -> bytes:
    """``_codecs.encode`` as protocol-2 pickles use it for bytes (torch.save does).

    Only latin-1 is accepted: other codec names would make Python import an
    ``encodings.*`` module, and safe mode imports nothing.
    """
    if not isinstance(text, str) or encoding.replace("-", "").lower() != "latin1":
        raise pickle.UnpicklingError(f"refusing _codecs.encode({type(text).__name__}, {encoding!r})")
    return text.encode("latin1")


def _bytearray(*args: object) -> bytearray:
    """``bytearray`` as pickles use it (from bytes or a latin-1 string), never ``bytearray(n)``.

    Real pickles never ask for an n-byte buffer; a corrupted length would allocate it.
    """
    if args and isinstance(args[0], int):
        raise pickle.UnpicklingError(f"refusing bytearray({args[0]!r}): pickles build bytearrays from data")
    return bytearray(*args)


ALLOWED[("_codecs", "encode")] = _latin1_encode
# Builtins that only build data. Never add getattr, eval, exec, compile, open,
# __import__, globals, vars, setattr, delattr or breakpoint: each turns a pickle into code.
for _name in ("set", "frozenset", "slice", "complex", "range", "list", "dict", "tuple"):
    ALLOWED[("builtins", _name)] = getattr(builtins, _name)
    ALLOWED[("__builtin__", _name)] = getattr(builtins, _name)
ALLOWED[("builtins", "bytearray")] = ALLOWED[("__builtin__", "bytearray")] = _bytearray


class Placeholder:
    """Stands in for an object safe mode refused to build.

    ``module``/``name`` say what the pickle asked for; ``args`` and ``state`` hold what
    it would have been built from (so spaces, versions etc. can still be described).
    """

    module: str = ""
    name: str = ""
    # Set per instance in __new__ (object.__setattr__: no foreign __setattr__ runs).
    args: Tuple[object, ...]
    kwargs: Dict[str, object]
    state: Any  # what the pickle set: callers (live.restore.filters) index it, catching what a wrong shape raises
    items: Dict[object, object]
    listitems: List[object]
    called: "Placeholder"

    def __new__(cls, *args: object, **kwargs: object) -> "Placeholder":
        obj = object.__new__(cls)
        object.__setattr__(obj, "args", args)
        object.__setattr__(obj, "kwargs", kwargs)
        object.__setattr__(obj, "state", None)
        object.__setattr__(obj, "items", {})
        object.__setattr__(obj, "listitems", [])
        return obj

    def __init__(self, *args: object, **kwargs: object) -> None:  # never runs foreign code
        pass

    def __call__(self, *args: object, **kwargs: object) -> "Placeholder":
        # cloudpickle may call what a reduce returned (e.g. a rebuilt class); `called`
        # keeps what was called (a tf variable is `functools.partial(...)()`).
        out = _placeholder_class(self.module, f"{self.name}()")(*args, **kwargs)
        object.__setattr__(out, "called", self)
        return out

    def __setstate__(self, state: object) -> None:
        object.__setattr__(self, "state", state)

    def __setitem__(self, key: object, value: object) -> None:
        self.items[key] = value

    def append(self, value: object) -> None:
        self.listitems.append(value)

    def extend(self, values: Iterable[object]) -> None:
        self.listitems.extend(values)

    def __repr__(self) -> str:
        return f"<not loaded: {self.module}.{self.name}>"


_CLASSES: Dict[Tuple[str, str], Type[Placeholder]] = {}


def _placeholder_class(module: str, name: str) -> Type[Placeholder]:
    key = (module, name)
    if key not in _CLASSES:
        _CLASSES[key] = type(name.replace(".", "_") or "Unknown", (Placeholder,), {"module": module, "name": name})
    return _CLASSES[key]


def _lazy_frombuffer(buf: object, dtype: object, shape: object, order: object, axis_order: object = None) -> object:
    """numpy's ``_frombuffer``, with a :class:`LazyArray` for data left in the file."""
    if isinstance(buf, LazyBytes):
        if isinstance(dtype, np.dtype) and _ints(shape) and _plain_dtype(dtype):
            if order in ("C", "F") and axis_order is None:
                return LazyArray(buf, dtype, tuple(shape), order)
            if order == "K" and _ints(axis_order) and sorted(axis_order) == list(range(len(shape))):
                return LazyArray(buf, dtype, tuple(shape), "C", tuple(axis_order))
        buf = buf.read()
    return _NUMPY_CORE.numeric._frombuffer(buf, dtype, shape, order, *(() if axis_order is None else (axis_order,)))


def _lazy_latin1_encode(text: object, encoding: str = "latin1") -> object:
    if isinstance(text, LazyBytes) and encoding.replace("-", "").lower() == "latin1":
        return text.as_latin1()
    return _latin1_encode(text, encoding)


def _ints(values: object) -> TypeGuard[Tuple[int, ...]]:
    return isinstance(values, tuple) and all(type(d) is int and d >= 0 for d in values)


def _plain_dtype(dtype: "np.dtype[np.generic]") -> bool:
    return not dtype.hasobject and dtype.itemsize > 0


_LAZY_AWARE = {
    _NUMPY_CORE.numeric._frombuffer: _lazy_frombuffer,
    _latin1_encode: _lazy_latin1_encode,
}


class _Memo(Dict[int, object]):
    """The memo, remembering where fresh ``_reconstruct`` arrays were stored, so that a
    lazy array built on one by its state replaces it there too."""

    def __init__(self) -> None:
        super().__init__()
        self.empty_arrays: Dict[int, List[int]] = {}

    def __setitem__(self, key: int, value: object) -> None:
        if type(value) is np.ndarray and value.size == 0:
            self.empty_arrays.setdefault(id(value), []).append(key)
        super().__setitem__(key, value)


class _Frames(Protocol):
    """pickle's private ``_Unframer``: the frame being read, if any (absent from typeshed)."""

    current_frame: Optional[io.BytesIO]


# typeshed types pickle's undocumented dispatch table with the C Unpickler; its loaders
# take the pure-Python one (SafeUnpickler below), hence the cast.
_STOCK_BUILD = cast(Callable[["SafeUnpickler"], None], pickle._Unpickler.dispatch[pickle.BUILD[0]])


class SafeUnpickler(pickle._Unpickler):
    """The pure-Python unpickler (memo in a dict), building only allow-listed globals.

    Args:
        file: the pickle, read from its current position up to ``size`` bytes.
        size: bytes the pickle may read, at most (the file's size).
        source: with it, byte strings of ``LAZY_MIN`` or more are left in the file as
            :class:`LazyBytes` of ``source`` (``file`` must then be ``source.stream()``).
    """

    # typeshed types this undocumented table with the C Unpickler; its loaders take the
    # pure-Python one, whose internals below are set by load() and absent from typeshed.
    # Each subclass's loaders take that subclass (pickle_patch adds its own): Any.
    dispatch: ClassVar[Dict[int, Callable[[Any], None]]] = dict(pickle._Unpickler.dispatch)
    stack: List[object]
    _unframer: _Frames
    read: Callable[[int], bytes]
    readinto: Callable[["bytearray | memoryview"], int]
    append: Callable[[object], None]

    def __init__(self, file: "io.BufferedIOBase | bytes", size: "int | None" = None, source: "Source | None" = None) -> None:
        if isinstance(file, (bytes, bytearray, memoryview)):
            size, file = len(file), io.BytesIO(file)
        self._bounded = BoundedReader(file, size if size is not None else 1 << 62)
        super().__init__(self._bounded)
        self.memo = _Memo()
        self._size = self._bounded.size
        self._source = source

    def _in_frame(self) -> bool:
        frame = self._unframer.current_frame
        if frame is None:
            return False
        pos = frame.tell()
        if frame.seek(0, io.SEEK_END) != pos:
            frame.seek(pos)
            return True
        return False

    def _big(self, n: int) -> bool:
        """Whether ``n`` payload bytes come next straight from the file (not a frame)."""
        return n >= LAZY_MIN and not self._in_frame()

    def _lazy_or_read(self, n: int) -> object:
        """A LazyBytes for ``n`` payload bytes at the current offset, or None to read them.

        Large strings are left lazy too: protocol-2 pickles (``torch.save``) store tensor
        bytes as ``_codecs.encode(text, 'latin1')``. A large string used as anything else
        stays a LazyBytes (its repr says so); no tensor is ever one.
        """
        if self._source is None or not self._big(n):
            return None
        f = self._bounded.f
        start = f.tell()
        lazy = LazyBytes(self._source, start, n)  # checks the size against the file
        f.seek(start + n)
        return lazy

    def _load_sized(self, fmt: str, width: int, kind: str) -> None:
        (n,) = struct.unpack(fmt, self.read(width))
        lazy = self._lazy_or_read(n)
        if lazy is not None:
            self.append(lazy)
            return
        data = self.read(n)  # clamped to the file: a short read, as the stock loader gets
        self.append(str(data, "utf-8", "surrogatepass") if kind.startswith("BINUNICODE") else data)

    def _load_binbytes(self) -> None:
        self._load_sized("<I", 4, "BINBYTES")

    def _load_binbytes8(self) -> None:
        self._load_sized("<Q", 8, "BINBYTES8")

    def _load_binunicode(self) -> None:
        self._load_sized("<I", 4, "BINUNICODE")

    def _load_binunicode8(self) -> None:
        self._load_sized("<Q", 8, "BINUNICODE8")

    def _load_bytearray8(self) -> None:
        (n,) = struct.unpack("<Q", self.read(8))
        if n > self._size:  # the stock loader allocates n bytes before reading them
            raise pickle.UnpicklingError(f"BYTEARRAY8 of {n} bytes in a {self._size}-byte pickle")
        lazy = self._lazy_or_read(n)
        if lazy is not None:
            self.append(lazy)
            return
        buf = bytearray(n)
        if self._in_frame():
            self.readinto(buf)
        else:  # straight into the buffer the array will keep (the stock path copies twice)
            view, got = memoryview(buf), 0
            while got < n:
                k = self._bounded.readinto(view[got:])
                if not k:
                    raise pickle.UnpicklingError(f"pickle data was truncated (BYTEARRAY8 of {n} bytes)")
                got += k
            view.release()
        self.append(buf)

    def _load_build(self) -> None:
        """ndarray state whose data is a LazyBytes -> a LazyArray in the array's place."""
        stack = self.stack
        state, inst = stack[-1], stack[-2]
        if type(inst) is np.ndarray and isinstance(state, tuple) and state and isinstance(state[-1], LazyBytes):
            shape, dtype, fortran, data = state[-4:]
            plain = isinstance(dtype, np.dtype) and _ints(shape) and _plain_dtype(dtype)
            if plain and isinstance(fortran, bool) and (dtype.isnative or dtype.fields is None):
                if data.latin1_text and len(data) < math.prod(shape) * dtype.itemsize:
                    raise ValueError(f"{len(data)} bytes of text cannot hold a {tuple(shape)} {dtype} array")
                lazy = LazyArray(data, dtype, tuple(shape), "F" if fortran else "C", native=True)
                stack.pop()
                stack[-1] = lazy
                for key in self.memo.empty_arrays.pop(id(inst), []):
                    if self.memo.get(key) is inst:
                        dict.__setitem__(self.memo, key, lazy)
                return
            stack[-1] = state[:-1] + (data.read(),)
        _STOCK_BUILD(self)

    dispatch[pickle.BINBYTES[0]] = _load_binbytes
    dispatch[pickle.BINBYTES8[0]] = _load_binbytes8
    dispatch[pickle.BINUNICODE[0]] = _load_binunicode
    dispatch[pickle.BINUNICODE8[0]] = _load_binunicode8
    dispatch[pickle.BYTEARRAY8[0]] = _load_bytearray8
    dispatch[pickle.BUILD[0]] = _load_build

    def find_class(self, module: str, name: str) -> object:
        if (module, name) in ALLOWED:
            found = ALLOWED[(module, name)]
            return _LAZY_AWARE.get(found, found) if self._source is not None else found
        return _placeholder_class(module, name)

    def persistent_load(self, pid: object) -> object:
        # torch.save refers to tensor storages by persistent id; keep them inert.
        return _placeholder_class("persistent_id", str(pid)[:60])()


class _TrustedUnpickler(pickle.Unpickler):
    """Plain pickle (it reads cloudpickle output too), tolerating torch persistent ids."""

    def persistent_load(self, pid: object) -> object:
        return _placeholder_class("persistent_id", str(pid)[:60])()


def is_allowed(module: str, name: str) -> bool:
    """Whether safe mode builds the real ``module.name`` (else an inert Placeholder)."""
    return (module, name) in ALLOWED


def loads(data: "bytes | bytearray", *, trusted: bool = False) -> Any:  # callers index what they expect
    """Unpickle ``data``; in safe mode (default) no foreign code is imported or run.

    ``trusted=True`` uses plain pickle (which also reads cloudpickle output): it imports
    every module the file names and runs its reduce functions. torch persistent ids
    stay placeholders in both modes.

    Raises:
        Whatever ``pickle`` raises for corrupt data (the reader wraps it).
    """
    return load_source(MemorySource(bytes(data), "<bytes>"), trusted=trusted)


def load_source(source: Source, *, trusted: bool = False, lazy: bool = False) -> object:
    """Unpickle the file ``source``, reading it as it goes (no copy of the whole file).

    ``lazy=True`` (safe mode only) leaves large tensors in the file as
    :class:`~.lazy.LazyArray` objects; the caller materializes the ones it wants.
    """
    with source.stream() as f:
        return load_stream(f, source, trusted=trusted, lazy=lazy)


def load_stream(f: io.BufferedIOBase, source: Source, *, trusted: bool = False, lazy: bool = False) -> object:
    """:func:`load_source` on ``source.stream()`` already opened (so opening errors stay apart)."""
    if trusted:
        return _TrustedUnpickler(f).load()
    return SafeUnpickler(f, source.size, source if lazy else None).load()


def load(fileobj: BinaryIO, *, trusted: bool = False) -> object:
    """Like :func:`loads`, from an open binary file."""
    return loads(fileobj.read(), trusted=trusted)
