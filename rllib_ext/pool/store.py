"""Where a policy pool's bytes live: a local directory (with a lock) or an object store.

:class:`~.pool.PolicyPool` asks this module for a few things: list a folder's files with
their sizes, read a small file (whole or from an offset), replace one whole (atomically),
append to one (local only), put a policy directory in place (data first, ``policy.json``
last), delete a file or a directory, and hold the pool's lock while it reads, changes and
writes its index. Everything else (what a journal holds, who may change what) is the pool's.

* **Local paths**: files are replaced with :func:`.atomic.atomic_file`, appended with one
  ``write`` + ``fsync``, and directories are built in ``<pool>/.tmp/`` and renamed into
  place (a reader sees the old or the new one, never a half-written one); the lock is
  ``fcntl.flock`` on ``<pool>/.lock``, so every writer on this machine (or on a file system
  whose ``flock`` spans machines) takes its turn.
* **Object stores** (``s3://``, ``gs://``, ... through ``pyarrow.fs``, the ``remote``
  extra): every object is replaced whole (S3 makes an upload visible only once it is
  complete), and a policy's data goes before its ``policy.json`` (:mod:`.upload`). There
  is **no lock**: :meth:`RemoteStore.lock` holds nothing, and the pool keeps writers
  apart by namespace instead (each writes only its own journals), and nothing appends.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import stat
import tempfile
from typing import Dict, Iterator, List, NamedTuple, Optional, Protocol

from ..checkpoint.atomic import atomic_file, clean_debris, debris_target, fsync_dir, write_synced
from ..checkpoint.storage import fspath, resolve_path
from ..checkpoint.upload import is_remote, upload_dir
from ..errors import CheckpointError, MissingDependencyError, NotAPoolError, os_problem

LOCK_FILE = ".lock"
STAGING = ".tmp"  # local pools: snapshot directories are built here, then renamed into place


class FileInfo(NamedTuple):
    """What a listing says of one file: enough to tell, without reading it, whether it changed.

    Attributes:
        size: bytes.
        mtime: modification time (ns on local disk; object stores: seconds at best).
        ident: the inode on local disk (a file replaced by rename gets a new one), else None.
    """

    size: int
    mtime: object  # only compared: an int (ns) locally, pyarrow's datetime remotely
    ident: Optional[int]


class _ArrowInfo(Protocol):
    """What we read of a ``pyarrow.fs.FileInfo`` (pyarrow has no type information)."""

    @property
    def type(self) -> object: ...  # a pyarrow.fs.FileType


class LocalStore:
    """A pool in a local directory (made if missing)."""

    remote = False

    def __init__(self, path: str) -> None:
        self.root = resolve_path(path)
        if os.path.lexists(self.root) and not os.path.isdir(self.root):
            raise NotAPoolError(f"{self.root}: is a file, not a policy pool directory")

    def where(self, rel: str = "") -> str:
        """Absolute path of ``rel`` below the pool, for entries and messages."""
        return os.path.join(self.root, *rel.split("/")) if rel else self.root

    def exists(self) -> bool:
        return os.path.isdir(self.root)

    def make(self) -> None:
        os.makedirs(self.root, exist_ok=True)

    def listdir(self, rel: str = "") -> List[str]:
        """Names below ``rel`` (empty when it does not exist)."""
        try:
            return sorted(os.listdir(self.where(rel)))
        except FileNotFoundError:
            return []
        except OSError as e:
            raise CheckpointError(f"{self.where(rel)}: cannot list: {os_problem(e)}") from e

    def files(self, rel: str, names: Optional[List[str]] = None) -> Dict[str, FileInfo]:
        """``{path below rel: FileInfo}`` of the files in ``rel`` and its subfolders, hidden ones left out.

        One ``stat`` per file and nothing read: a journal checks what changed this way.
        ``names`` limits it to those entries of ``rel`` (a folder among them is listed
        whole), so one writer's files cost the same however many writers there are.
        """
        out: Dict[str, FileInfo] = {}
        try:
            todo = list(names) if names is not None else os.listdir(self.where(rel))
        except FileNotFoundError:
            return out
        except OSError as e:
            raise CheckpointError(f"{self.where(rel)}: cannot list: {os_problem(e)}") from e
        while todo:
            sub = todo.pop()
            if sub.rsplit("/", 1)[-1].startswith("."):
                continue  # a killed writer's temporary file
            try:
                st = os.stat(self.where(f"{rel}/{sub}"))
                if stat.S_ISDIR(st.st_mode):
                    todo += [f"{sub}/{n}" for n in os.listdir(self.where(f"{rel}/{sub}"))]
                    continue
            except FileNotFoundError:
                continue  # gone since it was listed
            except OSError as e:
                raise CheckpointError(f"{self.where(rel)}/{sub}: cannot stat: {os_problem(e)}") from e
            out[sub] = FileInfo(st.st_size, st.st_mtime_ns, st.st_ino)
        return out

    def read(self, rel: str, offset: int = 0, size: int = -1) -> Optional[bytes]:
        """The file's bytes (from ``offset`` on, ``size`` of them or all), or None when it does not exist."""
        try:
            with open(self.where(rel), "rb") as f:
                if offset:
                    f.seek(offset)
                return f.read(size)
        except FileNotFoundError:
            return None
        except OSError as e:
            raise CheckpointError(f"{self.where(rel)}: cannot read: {os_problem(e)}") from e

    def write(self, rel: str, data: bytes) -> None:
        """Replace ``rel`` whole: a temporary sibling, fsync, rename."""
        atomic_file(self.where(rel), lambda f: f.write(data))

    can_append = True

    def append(self, rel: str, data: bytes, keep: Optional[int] = None) -> FileInfo:
        """Add ``data`` at the end of ``rel`` (made if missing) in one ``write``, then fsync.

        Args:
            keep: cut the file to this many bytes first: a torn line a killed writer
                left there goes, so the new line starts on a line of its own.

        Returns:
            The file's info after the write.
        """
        path = self.where(rel)
        try:
            made = not os.path.exists(path)
            if made:
                os.makedirs(os.path.dirname(path), exist_ok=True)
            fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
            try:
                if keep is not None:
                    os.ftruncate(fd, keep)
                os.write(fd, data)
                os.fsync(fd)
                st = os.fstat(fd)
            finally:
                os.close(fd)
            if made:  # the new name must survive a crash too
                fsync_dir(os.path.dirname(path))
        except OSError as e:
            raise CheckpointError(f"{path}: cannot append: {os_problem(e)}") from e
        return FileInfo(st.st_size, st.st_mtime_ns, st.st_ino)

    def delete(self, rel: str) -> None:
        """Remove one file (gone already is fine)."""
        try:
            os.unlink(self.where(rel))
        except FileNotFoundError:
            pass
        except OSError as e:
            raise CheckpointError(f"{self.where(rel)}: cannot delete: {os_problem(e)}") from e

    def put_dir(self, rel: str, files: Dict[str, bytes], last: str) -> None:
        """Put a directory of ``files`` at ``rel`` in one rename, ``last`` written last.

        Built in ``<pool>/.tmp/`` (fsynced) and renamed into place, so a reader sees the
        whole directory or none. Not :func:`write_dir_atomically`: it looks for a killed
        writer's leftovers beside ``rel``, a listing of every snapshot on each add; the
        leftovers here sit in ``.tmp/``, which holds only those. Whatever is at ``rel``
        already is a killed add's snapshot that no index names (the pool holds the lock):
        it is replaced.
        """
        import secrets  # writers only

        final, staging = self.where(rel), self.where(STAGING)
        os.makedirs(staging, exist_ok=True)
        self.sweep(STAGING)
        tmp = os.path.join(staging, f".{os.path.basename(final)}.tmp-{os.getpid()}-{secrets.token_hex(4)}")
        try:
            os.mkdir(tmp)
            for name in sorted(files, key=lambda n: (n == last, n)):
                write_synced(os.path.join(tmp, name), files[name])
            fsync_dir(tmp)
            if os.path.lexists(final):
                shutil.rmtree(final)
            os.makedirs(os.path.dirname(final), exist_ok=True)
            os.rename(tmp, final)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        fsync_dir(os.path.dirname(final))

    def delete_dir(self, rel: str) -> None:
        shutil.rmtree(self.where(rel), ignore_errors=True)

    def sweep(self, rel: str) -> List[str]:
        """Remove what killed writers left below ``rel`` (hidden temporary siblings)."""
        done: List[str] = []
        for name in self.listdir(rel):
            target = debris_target(name)
            if target is not None:
                done += clean_debris(os.path.join(self.where(rel), target))
        return done

    @contextlib.contextmanager
    def lock(self) -> Iterator[None]:
        """Hold ``<pool>/.lock`` (``fcntl.flock``, exclusive) until the block ends.

        The kernel drops the lock when its holder dies, so a killed writer never leaves
        the pool locked.
        """
        import fcntl  # POSIX; writers only

        self.make()
        fd = os.open(self.where(LOCK_FILE), os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)  # releases the lock


class RemoteStore:
    """A pool under a ``pyarrow.fs`` URI; no lock (see the module docstring)."""

    remote = True

    def __init__(self, uri: str) -> None:
        try:
            import pyarrow.fs as pafs
        except ImportError as e:
            raise MissingDependencyError(
                f"{uri}: a pool in object storage needs pyarrow (pip install 'rllib_ext[remote]')"
            ) from e
        self._pafs = pafs
        self.root = uri.rstrip("/")
        try:
            self._fs, self._base = pafs.FileSystem.from_uri(self.root)
        except Exception as e:  # pyarrow raises ArrowInvalid/OSError for bad URIs
            raise CheckpointError(f"{self.root}: cannot open this URI ({e})") from e
        if self._info("").type == pafs.FileType.File:
            raise NotAPoolError(f"{self.root}: is a file, not a policy pool directory")

    def where(self, rel: str = "") -> str:
        return f"{self.root}/{rel}" if rel else self.root

    def _path(self, rel: str) -> str:
        return f"{self._base}/{rel}" if rel else self._base

    def _info(self, rel: str) -> _ArrowInfo:
        try:
            info: _ArrowInfo = self._fs.get_file_info(self._path(rel))
            return info
        except OSError as e:
            raise CheckpointError(f"{self.where(rel)}: cannot stat: {e}") from e

    def exists(self) -> bool:
        return bool(self._info("").type == self._pafs.FileType.Directory)

    def make(self) -> None:
        try:
            self._fs.create_dir(self._base, recursive=True)
        except OSError as e:
            raise CheckpointError(f"{self.root}: cannot create: {e}") from e

    def listdir(self, rel: str = "") -> List[str]:
        selector = self._pafs.FileSelector(self._path(rel), allow_not_found=True, recursive=False)
        try:
            return sorted(i.base_name for i in self._fs.get_file_info(selector))
        except OSError as e:
            raise CheckpointError(f"{self.where(rel)}: cannot list: {e}") from e

    def files(self, rel: str, names: Optional[List[str]] = None) -> Dict[str, FileInfo]:
        """``{path below rel: FileInfo}``: one recursive listing (``names``: only those entries of ``rel``)."""
        base = self._path(rel)
        selector = self._pafs.FileSelector(base, allow_not_found=True, recursive=True)
        try:
            infos = self._fs.get_file_info(selector)
        except OSError as e:
            raise CheckpointError(f"{self.where(rel)}: cannot list: {e}") from e
        out: Dict[str, FileInfo] = {}
        for i in infos:
            sub = i.path[len(base) + 1:]
            if i.type != self._pafs.FileType.File or any(p.startswith(".") for p in sub.split("/")):
                continue
            if names is None or sub.split("/")[0] in names:
                out[sub] = FileInfo(i.size, i.mtime, None)
        return out

    def read(self, rel: str, offset: int = 0, size: int = -1) -> Optional[bytes]:
        if self._info(rel).type == self._pafs.FileType.NotFound:
            return None
        try:
            with self._fs.open_input_file(self._path(rel)) as f:
                if offset:
                    f.seek(offset)
                data: bytes = f.read(size if size >= 0 else None)
                return data
        except FileNotFoundError:
            return None  # deleted since it was listed
        except OSError as e:
            raise CheckpointError(f"{self.where(rel)}: cannot read: {e}") from e

    def write(self, rel: str, data: bytes) -> None:
        """One object, replaced whole when the upload completes."""
        try:
            with self._fs.open_output_stream(self._path(rel)) as out:
                out.write(data)
        except OSError as e:
            raise CheckpointError(f"{self.where(rel)}: write failed ({e})") from e

    def put_dir(self, rel: str, files: Dict[str, bytes], last: str) -> None:
        """Staged locally, then uploaded with ``last`` (the manifest) after the data."""
        with tempfile.TemporaryDirectory(prefix="rllib_ext-pool-") as tmp:
            for name, data in files.items():
                with open(os.path.join(tmp, name), "wb") as f:
                    f.write(data)
            upload_dir(tmp, self.where(rel), last=(last,))

    can_append = False  # an object is replaced whole: a journal writes one object per record

    def append(self, rel: str, data: bytes, keep: Optional[int] = None) -> FileInfo:
        raise CheckpointError(f"{self.where(rel)}: object stores cannot append")

    def delete(self, rel: str) -> None:
        """Remove one object (gone already is fine)."""
        try:
            self._fs.delete_file(self._path(rel))
        except FileNotFoundError:
            pass
        except OSError as e:
            raise CheckpointError(f"{self.where(rel)}: cannot delete: {e}") from e

    def delete_dir(self, rel: str) -> None:
        try:
            self._fs.delete_dir(self._path(rel))
        except FileNotFoundError:
            pass
        except OSError as e:
            raise CheckpointError(f"{self.where(rel)}: cannot delete: {e}") from e

    def sweep(self, rel: str) -> List[str]:
        return []  # uploads leave no temporary siblings

    @contextlib.contextmanager
    def lock(self) -> Iterator[None]:
        yield  # object stores have no lock: the pool keeps each writer in its own namespace




def open_store(path: "str | os.PathLike[str]") -> "LocalStore | RemoteStore":
    """The store for a local path (``file://`` included) or an object-store URI."""
    text = fspath(path, "pool path")
    return RemoteStore(text) if is_remote(text) else LocalStore(text)
