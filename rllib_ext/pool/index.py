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

import copy
import dataclasses
import json
import os
import re
import socket
import threading
from typing import Any, Dict, List, Mapping, NotRequired, Optional, TypedDict, Union

from ..errors import CheckpointFormatError, InvalidArgumentError, NotAPoolError
from .journal import POOL_VERSION, READS, Journal, json_int, json_list, json_number, json_object, json_str, parse_json
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
    meta: Optional[Dict[str, Any]] = None  # Any: the writer's own JSON, which its readers index as they wrote it

    def to_dict(self) -> "PoolEntryDict":
        return {"id": self.id, "policy": self.policy, "iteration": self.iteration, "env_steps": self.env_steps,
                "created": self.created, "rating": self.rating, "games": self.games, "path": self.path,
                "writer": self.writer, "size": self.size, "meta": copy.deepcopy(self.meta)}


class PoolEntryDict(TypedDict):
    """:meth:`PoolEntry.to_dict`: its fields as plain data (``rllib-ext pool --json``)."""

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
    meta: Optional[Dict[str, object]]


class EntryDoc(TypedDict):
    """An entry as an index record holds it (:func:`entry_doc`): no ``path``; ``meta`` only if set."""

    id: str
    policy: str
    iteration: Optional[int]
    env_steps: Optional[int]
    created: float
    rating: float
    games: int
    writer: str
    size: int
    meta: NotRequired[Dict[str, object]]


class IndexBody(TypedDict):
    """A writer's index base beside its header (:meth:`IndexKind.body`)."""

    next: Dict[str, int]
    entries: List[EntryDoc]


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

    def check_header(self, doc: Mapping[str, object], where: str) -> int:
        version = doc.get("pool_version")
        if not isinstance(version, int) or version not in READS:
            raise CheckpointFormatError(f"{where}: pool_version {version!r} is not supported "
                                        f"(this reader knows {', '.join(map(str, READS))})")
        return int(version)

    def load(self, doc: Mapping[str, object], version: int, writer: str) -> Shard:
        entries = (self.entry(d) for d in json_list(doc["entries"], "entries"))
        return Shard(writer, _next(doc["next"]), {e.id: e for e in entries})

    def apply(self, shard: Shard, record: Mapping[str, object]) -> Shard:
        if "add" in record:
            entry = self.entry(record["add"])
            shard.entries[entry.id] = entry
            shard.next.update(_next(record["next"]))
        for d in json_list(record.get("set", []), "set"):
            entry = self.entry(d)
            if entry.id not in shard.entries:
                raise KeyError(f"sets {entry.id!r}, which is not there")
            shard.entries[entry.id] = entry
        for entry_id in json_list(record.get("drop", []), "drop"):
            del shard.entries[json_str(entry_id, "a dropped id")]
        return shard

    def body(self, shard: Shard) -> IndexBody:
        return {"next": dict(shard.next), "entries": [entry_doc(e) for e in shard.entries.values()]}

    def entry(self, record: object) -> PoolEntry:
        """An entry from its record (``path`` is the pool's, ``meta`` optional)."""
        d = json_object(record, "an entry")
        entry_id, meta = json_str(d["id"], "id"), d.get("meta")
        return PoolEntry(
            id=entry_id, policy=json_str(d["policy"], "policy"), iteration=_optional_int(d["iteration"], "iteration"),
            env_steps=_optional_int(d["env_steps"], "env_steps"), created=json_number(d["created"], "created"),
            rating=json_number(d["rating"], "rating"), games=json_int(d["games"], "games"),
            path=self.store.where(f"{SNAPSHOT_DIR}/{entry_id}"), writer=json_str(d["writer"], "writer"),
            size=json_int(d["size"], "size"), meta=None if meta is None else json_object(meta, "meta"),
        )


def _next(value: object) -> Dict[str, int]:
    return {str(k): json_int(v, f"next[{k!r}]") for k, v in json_object(value, "next").items()}


def _optional_int(value: object, what: str) -> Optional[int]:
    return None if value is None else json_int(value, what)


def entry_doc(entry: PoolEntry) -> EntryDoc:
    """An entry as its record holds it: no ``path``, no ``meta`` when it has none."""
    doc: EntryDoc = {"id": entry.id, "policy": entry.policy, "iteration": entry.iteration, "env_steps": entry.env_steps,
                     "created": entry.created, "rating": entry.rating, "games": entry.games, "writer": entry.writer,
                     "size": entry.size}
    if entry.meta is not None:
        doc["meta"] = copy.deepcopy(entry.meta)
    return doc


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


def plain_meta(meta: Optional[Mapping[str, object]]) -> Optional[Dict[str, object]]:
    """``meta`` as JSON data (checked now, so a bad value fails before the pool changes)."""
    if meta is None:
        return None
    try:
        plain: Dict[str, object] = json.loads(json.dumps(dict(meta), allow_nan=False))
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
