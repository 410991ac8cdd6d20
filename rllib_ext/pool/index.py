"""The on-disk index of a policy pool: ``pool.json``, one index file per writer, the entries.

```
<pool>/pool.json                    {"format": "rllib_ext.pool", "pool_version": 1}: marks the pool
<pool>/index/<writer>.json          {"pool_version": 1, "writer", "next": {policy: n}, "entries": [...]}
<pool>/snapshots/<id>/              one single-policy directory per entry (see .policy_file)
```
``pool_version`` history: 1 (rllib_ext 0.3.0) the first. A reader refuses other versions
by name. Entries do not store their ``path``: it is the pool's ``snapshots/<id>``, so a
pool can be moved or copied (to object storage too) and still be read.
"""

from __future__ import annotations

import dataclasses
import json
from typing import Any, Dict, List, Optional, Union

from ..errors import CheckpointFormatError, NotAPoolError
from .store import LOCK_FILE, LocalStore, RemoteStore

POOL_FILE = "pool.json"
POOL_FORMAT = "rllib_ext.pool"
POOL_VERSION = 1  # of pool.json and the index files; bump on an incompatible change
INDEX_DIR = "index"
SNAPSHOT_DIR = "snapshots"
Store = Union[LocalStore, RemoteStore]


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
    """One writer's index file: its entries and, per policy, the next snapshot number."""

    writer: str
    next: Dict[str, int] = dataclasses.field(default_factory=dict)
    entries: List[PoolEntry] = dataclasses.field(default_factory=list)


def open_pool(store: Store, create: bool) -> None:
    """Check that the store holds a pool; make one if allowed and it is missing or empty.

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
                doc = {"format": POOL_FORMAT, "pool_version": POOL_VERSION}
                store.write(POOL_FILE, (json.dumps(doc) + "\n").encode())
        raw = store.read(POOL_FILE)
    doc = parse_json(raw or b"", where)
    if not isinstance(doc, dict) or doc.get("format") != POOL_FORMAT:
        raise CheckpointFormatError(f"{where}: not a policy pool's {POOL_FILE} ({str(doc)[:80]})")
    if doc.get("pool_version") != POOL_VERSION:
        raise CheckpointFormatError(
            f"{where}: pool_version {doc.get('pool_version')!r} is not supported (this reader knows {POOL_VERSION})"
        )


def read_index(store: Store) -> Dict[str, Shard]:
    """Every writer's index file, each read whole: ``{writer: Shard}``.

    Raises:
        CheckpointFormatError: an index file is garbled (the file is named).
    """
    shards = {}
    for name in store.listdir(INDEX_DIR):
        if name.startswith(".") or not name.endswith(".json"):
            continue  # a killed writer's temporary file
        where = store.where(f"{INDEX_DIR}/{name}")
        doc = parse_json(store.read(f"{INDEX_DIR}/{name}") or b"", where)
        try:
            writer = doc["writer"]
            entries = [
                PoolEntry(path=store.where(f"{SNAPSHOT_DIR}/{d['id']}"),
                          meta=d.get("meta"),
                          **{f.name: d[f.name] for f in dataclasses.fields(PoolEntry) if f.name not in ("path", "meta")})
                for d in doc["entries"]
            ]
            shards[writer] = Shard(writer, {str(k): int(v) for k, v in doc["next"].items()}, entries)
        except (KeyError, TypeError, ValueError, AttributeError) as e:
            raise CheckpointFormatError(f"{where}: not a pool index ({type(e).__name__}: {e})") from e
        if f"{writer}.json" != name or doc.get("pool_version") != POOL_VERSION:
            raise CheckpointFormatError(f"{where}: index of writer {writer!r}, version {doc.get('pool_version')!r}")
    return shards


def write_index(store: Store, shard: Shard) -> None:
    """Replace one writer's index file whole (a reader sees the old or the new one)."""
    doc = {"pool_version": POOL_VERSION, "writer": shard.writer, "next": shard.next,
           "entries": [{k: v for k, v in e.to_dict().items() if k != "path" and not (k == "meta" and v is None)}
                       for e in shard.entries]}
    store.write(f"{INDEX_DIR}/{shard.writer}.json", (json.dumps(doc, indent=1) + "\n").encode())


def parse_json(raw: bytes, where: str, what: str = "the pool index") -> Any:
    """JSON, or a CheckpointFormatError naming the file (and ``what`` it belongs to)."""
    try:
        return json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise CheckpointFormatError(f"{where}: not valid JSON ({e}); {what} is garbled") from e
