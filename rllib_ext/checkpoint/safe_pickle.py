"""A restricted unpickler: numpy arrays and plain containers in, no code run.

RLlib's old-stack ``policy_state.pkl`` cloudpickles the whole config (env class,
callbacks, mapping functions by value). A normal ``pickle.load`` of it imports Ray and
may execute arbitrary code. In safe mode every global outside a short allow-list becomes
an inert :class:`Placeholder` subclass: it is never imported, and "calling" it only
records the arguments. Weights (numpy arrays in plain dicts/lists) come out intact.

Safe mode runs the pure-Python unpickler (``pickle._Unpickler``), not the C one: a
damaged or crafted file must fail quickly, and the C unpickler grows its memo table to
whatever index a ``LONG_BINPUT``/``PUT`` names (one flipped byte asked it for ~10 GB).
The Python unpickler keeps the memo in a dict; lengths of preallocated buffers
(``BYTEARRAY8``, ``bytearray(n)``) are checked against the size of the pickle. It is
slower per opcode, which costs ~1 ms on a policy file (tensors are single opcodes).
"""

from __future__ import annotations

import builtins
import collections
import io
import pickle
import struct
from typing import Any, BinaryIO, Dict, Tuple, Type

import numpy as np

# Globals that only build data. numpy 1.x pickles name numpy.core.*, numpy 2.x
# numpy._core.*: both spellings resolve to the installed numpy.
_NUMPY_CORE = np._core if hasattr(np, "_core") else np.core  # type: ignore[attr-defined]
ALLOWED: Dict[Tuple[str, str], Any] = {
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


def _latin1_encode(text: str, encoding: str = "latin1") -> bytes:
    """``_codecs.encode`` as protocol-2 pickles use it for bytes (torch.save does).

    Only latin-1 is accepted: other codec names would make Python import an
    ``encodings.*`` module, and safe mode imports nothing.
    """
    if not isinstance(text, str) or encoding.replace("-", "").lower() != "latin1":
        raise pickle.UnpicklingError(f"refusing _codecs.encode({type(text).__name__}, {encoding!r})")
    return text.encode("latin1")


def _bytearray(*args: Any) -> bytearray:
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

    def __new__(cls, *args: Any, **kwargs: Any) -> "Placeholder":
        obj = object.__new__(cls)
        object.__setattr__(obj, "args", args)
        object.__setattr__(obj, "kwargs", kwargs)
        object.__setattr__(obj, "state", None)
        object.__setattr__(obj, "items", {})
        object.__setattr__(obj, "listitems", [])
        return obj

    def __init__(self, *args: Any, **kwargs: Any) -> None:  # never runs foreign code
        pass

    def __call__(self, *args: Any, **kwargs: Any) -> "Placeholder":
        # cloudpickle may call what a reduce returned (e.g. a rebuilt class).
        return _placeholder_class(self.module, f"{self.name}()")(*args, **kwargs)

    def __setstate__(self, state: Any) -> None:
        object.__setattr__(self, "state", state)

    def __setitem__(self, key: Any, value: Any) -> None:
        self.items[key] = value

    def append(self, value: Any) -> None:
        self.listitems.append(value)

    def extend(self, values: Any) -> None:
        self.listitems.extend(values)

    def __repr__(self) -> str:
        return f"<not loaded: {self.module}.{self.name}>"


_CLASSES: Dict[Tuple[str, str], Type[Placeholder]] = {}


def _placeholder_class(module: str, name: str) -> Type[Placeholder]:
    key = (module, name)
    if key not in _CLASSES:
        _CLASSES[key] = type(name.replace(".", "_") or "Unknown", (Placeholder,), {"module": module, "name": name})
    return _CLASSES[key]


class SafeUnpickler(pickle._Unpickler):
    """The pure-Python unpickler (memo in a dict), building only allow-listed globals."""

    dispatch = dict(pickle._Unpickler.dispatch)

    def __init__(self, data: bytes) -> None:
        super().__init__(io.BytesIO(data))
        self._size = len(data)

    def _load_bytearray8(self) -> None:
        (n,) = struct.unpack("<Q", self.read(8))
        if n > self._size:  # the stock loader allocates n bytes before reading them
            raise pickle.UnpicklingError(f"BYTEARRAY8 of {n} bytes in a {self._size}-byte pickle")
        buf = bytearray(n)
        self.readinto(buf)
        self.append(buf)

    dispatch[pickle.BYTEARRAY8[0]] = _load_bytearray8

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) in ALLOWED:
            return ALLOWED[(module, name)]
        return _placeholder_class(module, name)

    def persistent_load(self, pid: Any) -> Any:
        # torch.save refers to tensor storages by persistent id; keep them inert.
        return _placeholder_class("persistent_id", str(pid)[:60])()


class _TrustedUnpickler(pickle.Unpickler):
    """Plain pickle (it reads cloudpickle output too), tolerating torch persistent ids."""

    def persistent_load(self, pid: Any) -> Any:
        return _placeholder_class("persistent_id", str(pid)[:60])()


def is_allowed(module: str, name: str) -> bool:
    """Whether safe mode builds the real ``module.name`` (else an inert Placeholder)."""
    return (module, name) in ALLOWED


def loads(data: bytes, *, trusted: bool = False) -> Any:
    """Unpickle ``data``; in safe mode (default) no foreign code is imported or run.

    ``trusted=True`` uses plain pickle (which also reads cloudpickle output): it imports
    every module the file names and runs its reduce functions. torch persistent ids
    stay placeholders in both modes.

    Raises:
        Whatever ``pickle`` raises for corrupt data (the reader wraps it).
    """
    if trusted:
        return _TrustedUnpickler(io.BytesIO(data)).load()
    return SafeUnpickler(data).load()


def load(fileobj: BinaryIO, *, trusted: bool = False) -> Any:
    """Like :func:`loads`, from an open binary file."""
    return loads(fileobj.read(), trusted=trusted)
