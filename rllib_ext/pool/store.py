"""Where a policy pool's bytes live: a local directory (with a lock) or an object store.

:class:`~.pool.PolicyPool` asks this module for five things: read a small file, replace
one whole (atomically), put a policy directory in place (data first, ``policy.json``
last), delete a directory, and hold the pool's lock while it reads, changes and writes
its index. Everything else (what an index holds, who may change what) is the pool's.

* **Local paths**: files are replaced with :func:`.atomic.atomic_file` and directories
  with :func:`.atomic.write_dir_atomically` (a reader sees the old or the new one, never a
  half-written one); the lock is ``fcntl.flock`` on ``<pool>/.lock``, so every writer on
  this machine (or on a file system whose ``flock`` spans machines) takes its turn.
* **Object stores** (``s3://``, ``gs://``, ... through ``pyarrow.fs``, the ``remote``
  extra): every object is replaced whole (S3 makes an upload visible only once it is
  complete), and a policy's data goes before its ``policy.json`` (:mod:`.upload`). There
  is **no lock**: :meth:`RemoteStore.lock` holds nothing, and the pool keeps writers
  apart by namespace instead (each writes only its own index file).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from typing import Dict, Iterator, List, Optional

from ..checkpoint.atomic import atomic_file, clean_debris, debris_target, write_dir_atomically, write_synced
from ..checkpoint.storage import os_problem, resolve_path
from ..checkpoint.upload import is_remote, upload_dir
from ..errors import CheckpointError, MissingDependencyError, NotAPoolError

LOCK_FILE = ".lock"


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

    def read(self, rel: str) -> Optional[bytes]:
        """The file's bytes, or None when it does not exist."""
        try:
            with open(self.where(rel), "rb") as f:
                return f.read()
        except FileNotFoundError:
            return None
        except OSError as e:
            raise CheckpointError(f"{self.where(rel)}: cannot read: {os_problem(e)}") from e

    def write(self, rel: str, data: bytes) -> None:
        """Replace ``rel`` whole: a temporary sibling, fsync, rename."""
        atomic_file(self.where(rel), lambda f: f.write(data))

    def put_dir(self, rel: str, files: Dict[str, bytes], last: str) -> None:
        """Put a directory of ``files`` at ``rel`` in one step (see :func:`write_dir_atomically`)."""

        def fill(tmp: str) -> None:
            os.mkdir(tmp)
            for name in sorted(files, key=lambda n: (n == last, n)):
                write_synced(os.path.join(tmp, name), files[name])

        write_dir_atomically(self.where(rel), fill)

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

    def _info(self, rel: str) -> object:
        try:
            return self._fs.get_file_info(self._path(rel))
        except OSError as e:
            raise CheckpointError(f"{self.where(rel)}: cannot stat: {e}") from e

    def exists(self) -> bool:
        return self._info("").type == self._pafs.FileType.Directory  # type: ignore[attr-defined]

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

    def read(self, rel: str) -> Optional[bytes]:
        if self._info(rel).type == self._pafs.FileType.NotFound:  # type: ignore[attr-defined]
            return None
        try:
            with self._fs.open_input_stream(self._path(rel)) as f:
                return f.read()
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
    text = os.fspath(path)
    return RemoteStore(text) if is_remote(text) else LocalStore(text)
