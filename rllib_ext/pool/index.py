"""The index of a policy pool: ``pool.json``, one journal per writer, the entries and their ids.

```
<pool>/pool.json                 {"format": "rllib_ext.pool", "pool_version": 2}: marks the pool
<pool>/index/<writer>.json       the writer's base: {"pool_version", "writer", "seq", "next": {policy: n},
                                 "entries": [...]}
<pool>/index/<writer>@<s>.jsonl  records since base s (local), one a line: {"seq", "add": entry, "next"},
                                 {"seq", "set": [entries]}, {"seq", "drop": [ids]}; object stores:
                                 index/<writer>/<seq>.jsonl, one record each (see .journal)
<pool>/snapshots/<id>/           one single-policy directory per entry (see .policy_file)
```
``pool_version``: see :mod:`.journal` (one number, its history there); a reader refuses
other versions by name, and version-1 index files read as they are. Entries do not store
their ``path``: it is the pool's ``snapshots/<id>``, so a pool can be moved or copied (to
object storage too) and still be read.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import socket
import threading
from typing import Any, Dict, Mapping, Optional, Union

from ..errors import CheckpointFormatError, InvalidArgumentError, NotAPoolError
from .journal import POOL_VERSION, READS, Journal, parse_json
from .store import LOCK_FILE, LocalStore, RemoteStore, open_store
from .table import PayoffKind

POOL_FILE = "pool.json"
POOL_FORMAT = "rllib_ext.pool"
INDEX_DIR = "index"
SNAPSHOT_DIR = "snapshots"
Store = Union[LocalStore, RemoteStore]
_NAME = re.compile(r"^[A-Za-z0-9_-][A-Za-z0-9_.-]{0,99}$")


@dataclasses.dataclass(frozen=True)
class PoolEntry:
    """One snapshot of a policy, as the index records it.

    Attributes:
        id: ``<policy>-<n>@<writer>``, unique in the pool.
        policy: the policy id it was taken from (e.g. ``"main"``).
        iteration, env_steps: of the algorithm when it was taken (None if not given).
        created: Unix time of the add.
        rating: Elo rating (starts at 1200 unless given).
        games: games rated so far.
        path: its single-policy directory: ``read_weights``, ``build_policy``,
            ``NumpyPolicy`` and ``algo.load_policy`` read it as it is.
        writer: the trial or process that added it.
        size: bytes of the directory (policy.json + weights).
        meta: plain JSON data the writer attached (population-based training: the
            score and hyperparameters); None for most entries, and in pools written
            before it existed (readers before it ignore it).
    """

    id: str
    policy: str
    iteration: Optional[int]
    env_steps: Optional[int]
    created: float
    rating: float
    games: int
    path: str
    writer: str
    size: int
    meta: Optional[Dict[str, Any]] = None

    def to_dict(self) -> Dict[str, Any]:
        return dataclasses.asdict(self)


@dataclasses.dataclass
class Shard:
    """One writer's index: its entries by id (oldest first) and, per policy, the next snapshot number."""

    writer: str
    next: Dict[str, int] = dataclasses.field(default_factory=dict)
    entries: Dict[str, PoolEntry] = dataclasses.field(default_factory=dict)


class IndexKind:
    """The index as a :class:`.journal.Kind`: a writer's entries, changed by add / set / drop records."""

    folder, what, not_a, holds = INDEX_DIR, "the pool index", "not a pool index", "entries"

    def __init__(self, store: Store) -> None:
        self.store = store

    def empty(self, writer: str) -> Shard:
        return Shard(writer)

    def check_header(self, doc: Mapping[str, Any], where: str) -> int:
        if doc.get("pool_version") not in READS:
            raise CheckpointFormatError(f"{where}: pool_version {doc.get('pool_version')!r} is not supported "
                                        f"(this reader knows {', '.join(map(str, READS))})")
        return int(doc["pool_version"])

    def load(self, doc: Mapping[str, Any], version: int, writer: str) -> Shard:
        entries = (self.entry(d) for d in doc["entries"])
        return Shard(writer, {str(k): int(v) for k, v in doc["next"].items()}, {e.id: e for e in entries})

    def apply(self, shard: Shard, record: Mapping[str, Any]) -> Shard:
        if "add" in record:
            entry = self.entry(record["add"])
            shard.entries[entry.id] = entry
            shard.next.update({str(k): int(v) for k, v in record["next"].items()})
        for d in record.get("set", ()):
            entry = self.entry(d)
            if entry.id not in shard.entries:
                raise KeyError(f"sets {entry.id!r}, which is not there")
            shard.entries[entry.id] = entry
        for entry_id in record.get("drop", ()):
            del shard.entries[entry_id]
        return shard

    def body(self, shard: Shard) -> Dict[str, Any]:
        return {"next": dict(shard.next), "entries": [entry_doc(e) for e in shard.entries.values()]}

    def entry(self, d: Mapping[str, Any]) -> PoolEntry:
        """An entry from its record (``path`` is the pool's, ``meta`` optional)."""
        return PoolEntry(path=self.store.where(f"{SNAPSHOT_DIR}/{d['id']}"), meta=d.get("meta"),
                         **{name: d[name] for name in _STORED})


_STORED = [f.name for f in dataclasses.fields(PoolEntry) if f.name not in ("path", "meta")]  # always in a record


def entry_doc(entry: PoolEntry) -> Dict[str, Any]:
    """An entry as its record holds it: no ``path``, no ``meta`` when it has none."""
    return {k: v for k, v in entry.to_dict().items() if k != "path" and not (k == "meta" and v is None)}


def open_pool(store: Store, create: bool) -> int:
    """Check that the store holds a pool; make one if allowed and it is missing or empty.

    Returns:
        Its ``pool_version`` (a version-1 pool becomes 2 at its first write: :func:`upgrade_pool`).

    Raises:
        NotAPoolError: a file, a directory with other files and no pool.json (untouched),
            or a missing/empty one with ``create=False``.
        CheckpointFormatError: pool.json is garbled or of another version.
    """
    where = store.where(POOL_FILE)
    raw: Optional[bytes] = None
    if store.exists():
        names = store.listdir()  # before pool.json is read: then a creator's files mean a pool
        raw = store.read(POOL_FILE)
        others = [n for n in names if n != LOCK_FILE and not n.startswith(f".{POOL_FILE}.")]
        if raw is None and others:
            raise NotAPoolError(
                f"{store.where()}: not a policy pool (no {POOL_FILE}) and not empty: {', '.join(others[:10])}; "
                "give an empty or new directory"
            )
    if raw is None:
        if not create:
            what = "an empty directory, not a policy pool" if store.exists() else "no such policy pool"
            raise NotAPoolError(f"{store.where()}: {what}")
        store.make()
        with store.lock():
            if store.read(POOL_FILE) is None:
                upgrade_pool(store)
        raw = store.read(POOL_FILE)
    doc = parse_json(raw or b"", where)
    if not isinstance(doc, dict) or doc.get("format") != POOL_FORMAT:
        raise CheckpointFormatError(f"{where}: not a policy pool's {POOL_FILE} ({str(doc)[:80]})")
    if doc.get("pool_version") not in READS:
        raise CheckpointFormatError(f"{where}: pool_version {doc.get('pool_version')!r} is not supported "
                                    f"(this reader knows {', '.join(map(str, READS))})")
    return int(doc["pool_version"])


def upgrade_pool(store: Store) -> None:
    """Write pool.json at this version: before a pool's first journal record, so older readers
    refuse it by name rather than read their whole files and miss the records."""
    store.write(POOL_FILE, (json.dumps({"format": POOL_FORMAT, "pool_version": POOL_VERSION}) + "\n").encode())


def check_name(name: str, what: str) -> str:
    """A writer name as given, if it fits in file names and ids."""
    if not isinstance(name, str) or not _NAME.match(name):
        raise InvalidArgumentError(f"{what} {name!r}: use 1-100 letters, digits, '_', '.', '-' (not starting with '.')")
    return name


def default_writer() -> str:
    """``<host>-<pid>``: one per process, so processes that share a pool never share a journal by accident."""
    host = re.sub(r"[^A-Za-z0-9_.-]", "_", socket.gethostname())[:60].lstrip(".") or "host"
    return f"{host}-{os.getpid()}"


def slug(policy: str) -> str:
    """The policy id as it appears in entry ids and directory names."""
    text = re.sub(r"[^A-Za-z0-9_.-]", "_", str(policy))[:60] or "policy"
    return "_" + text[1:] if text.startswith(".") else text


def seq_of(entry: PoolEntry) -> int:
    """``n`` of ``<policy>-<n>@<writer>``: this writer's n-th snapshot of this policy."""
    return int(entry.id.rsplit("@", 1)[0].rsplit("-", 1)[1])


def plain_meta(meta: Optional[Mapping[str, Any]]) -> Optional[Dict[str, Any]]:
    """``meta`` as JSON data (checked now, so a bad value fails before the pool changes)."""
    if meta is None:
        return None
    try:
        plain: Dict[str, Any] = json.loads(json.dumps(dict(meta), allow_nan=False))
        return plain
    except (TypeError, ValueError) as e:
        raise InvalidArgumentError(f"meta must be plain JSON data (str keys, numbers, strings, lists): {e}") from e


class OpenPool:
    """An opened pool: its store, version and two journals, shared by its PolicyPool objects (``with_writer``)."""

    def __init__(self, path: "str | os.PathLike[str]", create: bool, check: bool = True) -> None:
        self.store: Store = open_store(path)
        self.version: Optional[int] = open_pool(self.store, create) if check else None
        self.index = Journal(self.store, IndexKind(self.store), self.before_write)
        self.table = Journal(self.store, PayoffKind(), self.before_write)
        self.mutex = threading.Lock()

    def before_write(self) -> None:
        """A version-1 pool becomes 2 before its first record (see .journal's history)."""
        with self.mutex:
            if self.version is None:
                self.version = open_pool(self.store, create=False)
            if self.version < POOL_VERSION:
                upgrade_pool(self.store)
                self.version = POOL_VERSION
