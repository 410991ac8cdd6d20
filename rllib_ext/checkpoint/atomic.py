"""Atomic directory and file writes: build in a hidden sibling, fsync, swap into place.

Everything goes into a temporary sibling ``.<name>.tmp-<pid>-<hex>``, is fsynced, and is
renamed into place. A *directory* that already exists cannot be replaced by one
``rename`` (it fails on a non-empty target), so on Linux the two are swapped with
``renameat2(RENAME_EXCHANGE)`` (one atomic step; the previous version then sits in the
temporary sibling and is deleted). Where that call is missing (other OSes, file systems
without it) the fallback is two renames, ``final -> .<name>.old-<pid>-<hex>`` then
``tmp -> final``; a crash between them leaves no ``final`` for a moment, and the next
write puts the ``.old-`` backup back first. Either way a killed writer leaves ``final`` as
the previous or the new complete directory, plus at worst hidden siblings named as above.
The next write to the same destination removes those whose writer process is gone
(:func:`clean_debris`); readers never look at them.
"""

from __future__ import annotations

import errno
import os
import re
import shutil
import sys
from typing import IO, Callable, Literal, Optional, Sequence, Union

from ..errors import CheckpointError
from .storage import fspath


def check_out(
    out: "str | os.PathLike[str]",
    inputs: Sequence["str | os.PathLike[str]"],
    inputs_name: str,
    replaceable: Optional[Callable[[str], bool]] = None,
) -> str:
    """The absolute path a writer may put a new directory at, checked before anything is read.

    ``out`` must not be, lie inside or contain any of ``inputs`` (what is being read,
    called ``inputs_name`` in messages). If it exists it must be a directory that is empty,
    or that ``replaceable(path)`` accepts (merge: an RLlib checkpoint).

    Raises:
        InvalidArgumentError: ``out`` is not a str or ``os.PathLike``.
        CheckpointError: naming ``out`` and why it may not be written.
    """
    final = os.path.abspath(os.path.expanduser(fspath(out, "out")))
    for other in (os.path.abspath(os.path.expanduser(os.fspath(p))) for p in inputs):
        if final == other or final.startswith(other.rstrip(os.sep) + os.sep) or other.startswith(final + os.sep):
            raise CheckpointError(f"{final}: the output must not be (inside) {inputs_name} ({other})")
    if not os.path.lexists(final):
        return final
    if os.path.islink(final) or not os.path.isdir(final):
        raise CheckpointError(f"{final}: exists and is not a directory; refusing to overwrite it")
    if os.listdir(final) and not (replaceable is not None and replaceable(final)):
        kind = "an RLlib checkpoint" if replaceable is not None else "an empty directory"
        raise CheckpointError(f"{final}: exists and is not {kind}; refusing to overwrite it")
    return final


def write_dir_atomically(final: str, fill: Callable[[str], None]) -> str:
    """Build a directory in a temporary sibling with ``fill(tmp)``, then put it at ``final``.

    ``fill`` creates ``tmp`` (or copies a tree to it) and writes the files. Then every
    directory below is fsynced and the result is swapped into place; an existing
    directory at ``final`` is moved aside only once the new one is complete. On any
    failure the temporary sibling is removed and ``final`` is as it was.

    Returns:
        ``final``.
    """
    parent, name = os.path.split(final)
    os.makedirs(parent, exist_ok=True)
    clean_debris(final)
    tmp = _sibling(final, "tmp")
    try:
        fill(tmp)
        for dirpath, _, _ in os.walk(tmp):
            fsync_dir(dirpath)
        _swap_into_place(tmp, final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    fsync_dir(parent)
    return final


def _sibling(final: str, kind: str) -> str:
    """A hidden sibling of ``final`` that :func:`clean_debris` recognises by its name."""
    parent, name = os.path.split(final)
    import secrets  # writers only: readers import this module too, and should not pay for it

    return os.path.join(parent, f".{name}.{kind}-{os.getpid()}-{secrets.token_hex(4)}")


_DEBRIS = re.compile(r"^\.(?P<name>.+)\.(?P<kind>tmp|old)-(?P<pid>\d+)-[0-9a-f]{8}$")


def _alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    return True


def debris_target(entry: str) -> "str | None":
    """The destination name a hidden ``.<name>.tmp-``/``.old-`` sibling belongs to, else None.

    For sweeps over a whole directory (a pool's snapshots): pass the result to
    :func:`clean_debris` to remove what dead writers left there.
    """
    m = _DEBRIS.match(entry)
    return m.group("name") if m else None


def clean_debris(final: str) -> "list[str]":
    """Remove what killed writers of ``final`` left next to it; put a lost ``final`` back.

    Only siblings named ``.<name>.tmp-<pid>-<hex>`` / ``.<name>.old-<pid>-<hex>`` whose
    writer process no longer exists (on this machine) are touched. A ``.old-`` backup
    with no ``final`` is a writer that died between its two renames (the fallback path):
    that backup is the last complete version and becomes ``final`` again.

    Returns:
        The names removed or restored.
    """
    parent, name = os.path.split(final)
    try:
        entries = sorted(os.listdir(parent))
    except OSError:
        return []
    done = []
    for entry in entries:
        m = _DEBRIS.match(entry)
        if not m or m.group("name") != name or _alive(int(m.group("pid"))):
            continue
        path = os.path.join(parent, entry)
        if m.group("kind") == "old" and not os.path.lexists(final):
            os.rename(path, final)
        elif os.path.isdir(path) and not os.path.islink(path):
            shutil.rmtree(path, ignore_errors=True)
        else:
            try:
                os.unlink(path)
            except FileNotFoundError:
                pass
        done.append(entry)
    return done


_RENAME_EXCHANGE = 2
_AT_FDCWD = -100
_renameat2: Union[None, Literal[False], Callable[..., int]] = None  # None: not looked up yet; False: absent


def _exchange(a: str, b: str) -> bool:
    """Swap two existing paths in one atomic step (Linux ``renameat2``); False if unsupported."""
    import ctypes  # writers only (see _sibling)

    global _renameat2
    if not sys.platform.startswith("linux"):
        return False
    if _renameat2 is None:
        try:
            fn = ctypes.CDLL(None, use_errno=True).renameat2
        except (OSError, AttributeError):  # glibc < 2.28, musl, ...
            _renameat2 = False
            return False
        fn.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
        fn.restype = ctypes.c_int
        _renameat2 = fn
    if _renameat2 is False:
        return False
    if _renameat2(_AT_FDCWD, os.fsencode(a), _AT_FDCWD, os.fsencode(b), _RENAME_EXCHANGE) == 0:
        return True
    err = ctypes.get_errno()
    if err in (errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP, errno.ENOTSUP):
        return False  # this file system cannot exchange: use the fallback
    raise OSError(err, os.strerror(err), b)


def _swap_into_place(tmp: str, final: str) -> None:
    if not os.path.lexists(final):
        os.rename(tmp, final)
        return
    if _exchange(tmp, final):
        shutil.rmtree(tmp, ignore_errors=True)  # tmp now holds the previous version
        return
    backup = _sibling(final, "old")
    os.rename(final, backup)
    try:
        os.rename(tmp, final)
    except BaseException:
        os.rename(backup, final)  # put the old one back
        raise
    shutil.rmtree(backup, ignore_errors=True)


def write_synced(file_path: str, data: bytes) -> None:
    """Write ``data`` and fsync it before returning (a rename after it is then durable)."""
    with open(file_path, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())


def fsync_dir(path: str) -> None:
    """Make a directory's entries durable (a rename into it survives a crash)."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:  # e.g. Windows cannot open directories; the rename is still atomic
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def atomic_file(final: str, write: Callable[[IO[bytes]], object]) -> None:
    """Write one file through ``write(fileobj)`` (its result ignored) into a temporary sibling, fsync, rename."""
    parent, name = os.path.split(final)
    os.makedirs(parent, exist_ok=True)
    clean_debris(final)
    tmp = _sibling(final, "tmp")
    try:
        with open(tmp, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, final)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    fsync_dir(parent)
