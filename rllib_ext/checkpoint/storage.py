"""Where checkpoint bytes come from: a local directory or a pyarrow URI (step 1 of a read: open).

``file://`` URIs are read as local paths; any other scheme (``s3://``, ``gs://``,
``hdfs://``, ...) goes through ``pyarrow.fs`` (imported only then, with an install hint).

The reader only ever asks for paths *relative to the checkpoint root*, never for the
absolute ``state_file`` recorded in ``rllib_checkpoint.json`` (stale once a checkpoint
is moved), so a checkpoint can be copied anywhere and still be read.

Every OS-level failure (missing file, permissions, a symlink loop, a directory where a
file should be) becomes a typed error naming the path; :func:`os_problem` words it.
:func:`resolve_path` is the one place a user's (possibly relative) path becomes absolute.
"""

from __future__ import annotations

import io
import json
import os
import stat
from typing import TYPE_CHECKING, Any, List, Protocol

if TYPE_CHECKING:
    from _typeshed import WriteableBuffer

from ..errors import CheckpointFormatError, InvalidArgumentError, NotACheckpointError, malformed, os_problem, unreadable


def fspath(value: object, what: str = "path") -> str:
    """``os.fspath(value)`` of a str or ``os.PathLike[str]``; anything else: InvalidArgumentError naming ``what``."""
    text = os.fspath(value) if isinstance(value, os.PathLike) else value
    if not isinstance(text, str):
        raise InvalidArgumentError(f"{what} {value!r}: expected a str or os.PathLike, got {type(value).__name__}")
    return text


def resolve_path(path: "str | os.PathLike[str]") -> str:
    """Absolute local path for ``path``; URIs pass through (``file://`` is stripped).

    Tune trial actors change their working directory to the trial dir, so a relative
    path is also tried against the directory Tune started from (TUNE_ORIG_WORKING_DIR).
    """
    text = fspath(path, "checkpoint path")
    if "://" in text:
        return text[len("file://"):] if text.startswith("file://") else text
    text = os.path.expanduser(text)
    if os.path.isabs(text):
        return text
    for base in (os.getcwd(), os.environ.get("TUNE_ORIG_WORKING_DIR")):
        if base and os.path.exists(os.path.join(base, text)):
            return os.path.abspath(os.path.join(base, text))
    return os.path.abspath(text)


class CheckpointDir:
    """Read-only access to the files below one checkpoint root."""

    def __new__(cls, root: "str | os.PathLike[str]") -> "CheckpointDir":
        text = fspath(root, "checkpoint path")
        if cls is CheckpointDir and "://" in text and not text.startswith("file://"):
            return super().__new__(RemoteCheckpointDir)
        return super().__new__(cls)

    def __init__(self, root: "str | os.PathLike[str]") -> None:
        root_s = os.fspath(root)
        if root_s.startswith("file://"):
            root_s = root_s[len("file://"):]
        self.uri = os.path.abspath(os.path.expanduser(root_s))
        try:
            mode = os.stat(self.uri).st_mode
        except OSError as e:
            raise NotACheckpointError(f"{root_s}: {os_problem(e)}") from e
        if not stat.S_ISDIR(mode):
            raise NotACheckpointError(
                f"{root_s}: is a file, not a checkpoint directory; give the directory that holds it"
            )

    def _abs(self, rel: str) -> str:
        return os.path.join(self.uri, rel) if rel else self.uri

    def exists(self, rel: str) -> bool:
        return os.path.exists(self._abs(rel))

    def lexists(self, rel: str) -> bool:
        """Like :meth:`exists`, but true for a broken or looping symlink (reading it then says why)."""
        return os.path.lexists(self._abs(rel))

    def is_dir(self, rel: str) -> bool:
        return os.path.isdir(self._abs(rel))

    def listdir(self, rel: str = "") -> List[str]:
        with unreadable(self._abs(rel), "cannot list directory", missing=None):
            return sorted(os.listdir(self._abs(rel)))

    def read_bytes(self, rel: str) -> bytes:
        path = self._abs(rel)
        with unreadable(path), open(path, "rb") as f:
            return f.read()

    def read_buffer(self, rel: str) -> bytearray:
        """The whole file in one writable buffer, read in place (no second copy).

        Arrays made with ``np.frombuffer`` on it are writable views that keep it alive.
        """
        path = self._abs(rel)
        with unreadable(path), open(path, "rb", buffering=0) as f:
            buf = bytearray(os.fstat(f.fileno()).st_size)
            view, got = memoryview(buf), 0
            while got < len(buf):
                n = f.readinto(view[got:])
                if not n:
                    break
                got += n
            view.release()
            if got < len(buf):  # the file shrank while we read it
                del buf[got:]
            return buf

    def open_source(self, rel: str) -> "Source":
        """Random access to one file: decoders read its structure and leave tensor data
        where it is until asked for (see :mod:`.lazy`)."""
        path = self._abs(rel)
        with unreadable(path):
            size = os.stat(path).st_size
        return FileSource(path, size)

    def read_json(self, rel: str) -> Any:
        data = self.read_bytes(rel)
        with malformed(self.child(rel), "not valid JSON", catch=(UnicodeDecodeError, json.JSONDecodeError)):
            return json.loads(data.decode("utf-8"))

    def child(self, rel: str) -> str:
        """Absolute path/URI of a file below the root, for messages."""
        return self._abs(rel)


class _ArrowInfo(Protocol):
    """What we read of a ``pyarrow.fs.FileInfo`` (pyarrow has no type information)."""

    @property
    def type(self) -> object: ...  # a pyarrow.fs.FileType


class RemoteCheckpointDir(CheckpointDir):
    """The same interface over ``pyarrow.fs`` (s3://, gs://, ...)."""

    def __init__(self, root: "str | os.PathLike[str]") -> None:
        try:
            import pyarrow.fs as pafs
        except ImportError as e:
            from ..errors import MissingDependencyError

            raise MissingDependencyError(
                f"{os.fspath(root)}: reading remote URIs needs pyarrow (pip install pyarrow)"
            ) from e
        self._pafs = pafs
        self.uri = os.fspath(root).rstrip("/")
        try:
            self._fs, self._root = pafs.FileSystem.from_uri(self.uri)
        except Exception as e:  # pyarrow raises ArrowInvalid/OSError for bad URIs
            raise NotACheckpointError(f"{self.uri}: cannot open this URI ({e})") from e
        info = self._info("")
        if info.type == pafs.FileType.NotFound:
            raise NotACheckpointError(f"{self.uri}: no such file or directory")
        if info.type != pafs.FileType.Directory:
            raise NotACheckpointError(
                f"{self.uri}: is a file, not a checkpoint directory; give the directory that holds it"
            )

    def _path(self, rel: str) -> str:
        return f"{self._root}/{rel}" if rel else self._root

    def _info(self, rel: str) -> "_ArrowInfo":
        try:
            info: _ArrowInfo = self._fs.get_file_info(self._path(rel))
            return info
        except OSError as e:
            raise CheckpointFormatError(f"{self.child(rel)}: cannot stat: {e}") from e

    def exists(self, rel: str) -> bool:
        return bool(self._info(rel).type != self._pafs.FileType.NotFound)

    def lexists(self, rel: str) -> bool:
        return self.exists(rel)

    def is_dir(self, rel: str) -> bool:
        return bool(self._info(rel).type == self._pafs.FileType.Directory)

    def listdir(self, rel: str = "") -> List[str]:
        try:
            infos = self._fs.get_file_info(self._pafs.FileSelector(self._path(rel), recursive=False))
        except OSError as e:
            raise CheckpointFormatError(f"{self.child(rel)}: cannot list directory: {e}") from e
        return sorted(i.base_name for i in infos)

    def read_bytes(self, rel: str) -> bytes:
        if not self.exists(rel):
            raise CheckpointFormatError(f"{self.child(rel)}: file missing from the checkpoint")
        try:
            with self._fs.open_input_stream(self._path(rel)) as f:
                data: bytes = f.read()
                return data
        except OSError as e:
            raise CheckpointFormatError(f"{self.child(rel)}: cannot read: {e}") from e

    def read_buffer(self, rel: str) -> bytearray:
        return bytearray(self.read_bytes(rel))

    def open_source(self, rel: str) -> "Source":
        # Object stores are read whole: one bytes buffer, tensors copied out of it.
        return MemorySource(self.read_bytes(rel), self.child(rel))

    def child(self, rel: str) -> str:
        return f"{self.uri}/{rel}" if rel else self.uri


class Source:
    """The bytes of one file, by offset: ``size``, ``stream()`` from the start, and
    ``readinto_at`` for the tensor data a decoder chose not to read yet.

    Attributes:
        where: the file's path or URI, for messages.
        size: its size in bytes when opened; no read goes past it.
    """

    where: str
    size: int

    def stream(self) -> io.BufferedIOBase:
        """A binary file object positioned at offset 0 (the caller closes it)."""
        raise NotImplementedError

    def readinto_at(self, offset: int, buf: "bytearray | memoryview") -> None:
        """Fill ``buf`` with the bytes at ``offset``.

        Raises:
            CheckpointFormatError: the file ends early or cannot be read.
        """
        raise NotImplementedError


class FileSource(Source):
    """A local file; every access opens it anew, so nothing stays open between reads."""

    def __init__(self, path: str, size: int) -> None:
        self.where, self.size = path, size

    def stream(self) -> io.BufferedIOBase:
        with unreadable(self.where, missing=None):
            return open(self.where, "rb")

    def readinto_at(self, offset: int, buf: "bytearray | memoryview") -> None:
        view = memoryview(buf).cast("B")
        with unreadable(self.where, missing=None):
            fd = os.open(self.where, os.O_RDONLY)
            try:
                got = 0
                while got < len(view):
                    n = os.preadv(fd, [view[got:]], offset + got)
                    if n <= 0:
                        break
                    got += n
            finally:
                os.close(fd)
        if got < len(view):
            raise CheckpointFormatError(
                f"{self.where}: file ended at byte {offset + got}, {len(view) - got} bytes of tensor data missing"
            )


class MemorySource(Source):
    """Bytes already in memory (an object-store download, a compressed zip member)."""

    def __init__(self, data: bytes, where: str) -> None:
        self.data, self.where, self.size = data, where, len(data)

    def stream(self) -> io.BufferedIOBase:
        return io.BytesIO(self.data)

    def readinto_at(self, offset: int, buf: "bytearray | memoryview") -> None:
        view = memoryview(buf).cast("B")
        chunk = memoryview(self.data)[offset : offset + len(view)]
        if len(chunk) < len(view):
            raise CheckpointFormatError(
                f"{self.where}: file ended at byte {self.size}, {len(view) - len(chunk)} bytes of tensor data missing"
            )
        view[:] = chunk


class WindowSource(Source):
    """A byte range of another source: a zip member stored uncompressed (torch.save)."""

    def __init__(self, outer: Source, start: int, size: int, where: str) -> None:
        self.outer, self.start, self.size, self.where = outer, start, size, where

    def stream(self) -> io.BufferedIOBase:
        return io.BufferedReader(_Window(self.outer.stream(), self.start, self.size))

    def readinto_at(self, offset: int, buf: "bytearray | memoryview") -> None:
        if offset + len(memoryview(buf).cast("B")) > self.size:
            raise CheckpointFormatError(f"{self.where}: tensor data runs past the end of the member")
        self.outer.readinto_at(self.start + offset, buf)


class BoundedReader:
    """A binary file whose reads stop at ``size``: a length read from a damaged pickle
    then yields a short read ("truncated"), never an allocation of that length."""

    def __init__(self, f: io.BufferedIOBase, size: int) -> None:
        self.f, self.size = f, size

    def left(self) -> int:
        return max(0, self.size - self.f.tell())

    def read(self, n: int = -1) -> bytes:
        left = self.left()
        return self.f.read(left if n is None or n < 0 or n > left else n)

    def readline(self) -> bytes:
        return self.f.readline(self.left())

    def readinto(self, buf: "bytearray | memoryview") -> int:
        view = memoryview(buf).cast("B")
        return self.f.readinto(view[: self.left()]) or 0


class _Window(io.RawIOBase):
    """``[start, start + size)`` of a seekable binary file, as a file of its own."""

    def __init__(self, f: io.BufferedIOBase, start: int, size: int) -> None:
        super().__init__()
        self._f, self._start, self._size, self._pos = f, start, size, 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._pos

    def seek(self, pos: int, whence: int = 0) -> int:
        base = {0: 0, 1: self._pos, 2: self._size}[whence]
        self._pos = max(0, base + pos)
        return self._pos

    def readinto(self, b: "WriteableBuffer") -> int:
        view = memoryview(b).cast("B")
        n = max(0, min(len(view), self._size - self._pos))
        if n == 0:
            return 0
        self._f.seek(self._start + self._pos)
        got = self._f.readinto(view[:n]) or 0
        self._pos += got
        return got

    def close(self) -> None:
        self._f.close()
        super().close()
