"""Tensor data left in the file until asked for: what lets one big policy cost about its
own bytes.

A decoder (the safe unpickler, the msgpack walker) that meets a large byte string does
not read it: it records a :class:`LazyBytes` (source, offset, length) and skips ahead. An
array built on one becomes a :class:`LazyArray`, which knows its shape, dtype and size
(all ``inspect`` needs) and reads its bytes straight into the array's own buffer on
:meth:`LazyArray.materialize`. Tensors nobody asks for (the other policies' never are
decoded at all; an old-stack policy's optimizer state shares its file) are never read.

Every size is checked against the file before anything is allocated.
"""

from __future__ import annotations

import codecs
import math
from typing import Literal, Tuple

import numpy as np

from ..errors import CheckpointFormatError, malformed
from .storage import Source

# Byte strings at least this long are left in the file (pickle writes those outside
# its 64 KiB frames, so their offset in the file is known).
LAZY_MIN = 64 * 1024
_CHUNK = 1 << 20


class LazyBytes:
    """``length`` bytes at ``offset`` of ``source``, not read yet.

    ``latin1_text``: the bytes are UTF-8 text whose code points are the real bytes (how
    protocol-2 pickles, e.g. ``torch.save``, store bytes: ``_codecs.encode(text, 'latin1')``).
    """

    __slots__ = ("source", "offset", "length", "latin1_text")

    def __init__(self, source: Source, offset: int, length: int, latin1_text: bool = False) -> None:
        if offset < 0 or length < 0 or offset + length > source.size:
            raise CheckpointFormatError(
                f"{source.where}: {length} bytes at offset {offset} do not fit the {source.size}-byte file"
            )
        self.source, self.offset, self.length, self.latin1_text = source, offset, length, latin1_text

    def as_latin1(self) -> "LazyBytes":
        return LazyBytes(self.source, self.offset, self.length, latin1_text=True)

    def read(self, size: int = -1) -> bytearray:
        """The bytes themselves (decoded from latin-1 text if so; ``size``: the expected count)."""
        if not self.latin1_text:
            buf = bytearray(self.length)
            self.source.readinto_at(self.offset, buf)
            return buf
        return _latin1_from_utf8(self, self.length if size < 0 else size)

    def __len__(self) -> int:
        return self.length

    def __repr__(self) -> str:
        return f"<{self.length} bytes at offset {self.offset} of {self.source.where}, not read>"


def _latin1_from_utf8(data: LazyBytes, size: int) -> bytearray:
    """Decode ``data`` (UTF-8 text of code points < 256) into exactly ``size`` bytes, 1 MiB at a time."""
    if size > data.length:  # every code point takes at least one UTF-8 byte
        raise ValueError(f"{data.length} bytes of text cannot hold {size} bytes of data")
    out = bytearray(size)
    decoder = codecs.getincrementaldecoder("utf-8")()
    chunk = bytearray(_CHUNK)
    pos = filled = 0
    while pos < data.length:
        n = min(_CHUNK, data.length - pos)
        view = memoryview(chunk)[:n]
        data.source.readinto_at(data.offset + pos, view)
        part = decoder.decode(view, final=pos + n == data.length).encode("latin1")
        view.release()
        if filled + len(part) > size:
            raise ValueError(f"tensor text holds more than the {size} bytes its shape needs")
        out[filled : filled + len(part)] = part
        filled += len(part)
        pos += n
    if filled != size:
        raise ValueError(f"tensor text holds {filled} bytes, its shape needs {size}")
    return out


class LazyArray:
    """An array known by shape and dtype whose data is still in the file.

    Quacks like an ndarray for ``shape``, ``dtype``, ``size``, ``nbytes`` and ``ndim``;
    :meth:`materialize` returns a real, writable array that owns its one buffer.
    """

    __slots__ = ("data", "dtype", "stored_dtype", "shape", "raw_shape", "order", "axis_order")

    def __init__(
        self,
        data: LazyBytes,
        dtype: np.dtype,
        shape: Tuple[int, ...],
        order: Literal["C", "F"] = "C",
        axis_order: "Tuple[int, ...] | None" = None,
        native: bool = False,
    ) -> None:
        """``native``: swap the data to the machine's byte order, as ``ndarray.__setstate__`` does."""
        count = math.prod(shape)
        if not data.latin1_text:
            if data.length % dtype.itemsize:
                raise ValueError("buffer size must be a multiple of element size")
            if data.length // dtype.itemsize != count:
                raise ValueError(f"cannot reshape array of size {data.length // dtype.itemsize} into shape {shape}")
        self.data, self.stored_dtype, self.raw_shape, self.order, self.axis_order = data, dtype, shape, order, axis_order
        self.dtype = dtype.newbyteorder("=") if native and not dtype.isnative else dtype
        # numpy's _frombuffer with an axis order: reshape C-wise, then transpose
        self.shape = shape if axis_order is None else tuple(shape[i] for i in axis_order)

    @property
    def size(self) -> int:
        return math.prod(self.shape)

    @property
    def nbytes(self) -> int:
        return self.size * self.dtype.itemsize

    @property
    def ndim(self) -> int:
        return len(self.shape)

    def materialize(self) -> np.ndarray:
        """Read the data into a new array (one copy of the tensor, nothing else kept).

        Raises:
            CheckpointFormatError: the file is shorter than recorded, or the tensor's text
                encoding does not hold exactly its bytes.
        """
        damaged = f"tensor data at offset {self.data.offset} is damaged"
        with malformed(self.data.source.where, damaged, catch=(ValueError, UnicodeError)):
            buf = self.data.read(self.nbytes)
            flat = np.frombuffer(buf, dtype=self.stored_dtype)
            if self.dtype != self.stored_dtype:
                flat = flat.byteswap(inplace=True).view(self.dtype)
            if self.axis_order is not None:
                return flat.reshape(self.raw_shape, order="C").transpose(self.axis_order)
            return flat.reshape(self.raw_shape, order=self.order)

    def __repr__(self) -> str:
        return f"<LazyArray {self.shape} {self.dtype} at offset {self.data.offset}, not read>"


def materialized(value: object) -> object:
    """``value`` as a real array if it is a :class:`LazyArray`, else unchanged."""
    return value.materialize() if isinstance(value, LazyArray) else value
