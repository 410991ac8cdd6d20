"""Per-writer journals: how a pool's index and payoff table live on disk, so a change costs the same at any size.

```
<pool>/<folder>/<writer>.json              the base: the writer's whole state as of record "seq" (= s)
<pool>/<folder>/<writer>@<s>.jsonl         local pools: the records after it, one JSON line each
<pool>/<folder>/<writer>/<seq>.jsonl       object stores (no append): one object per record
```
``<folder>`` is ``index`` or ``payoff`` (what a record holds is theirs: :mod:`.index`,
:mod:`.table`). A record is ``{"seq": n, ...}\\n``; ``seq`` counts each writer's records
1, 2, ... without a gap, and a base holds ``seq`` too, so a reader knows which records it
already holds.

Why: the whole-file format (``pool_version`` 1) rewrote the writer's file on every change,
so each change cost the size of the pool. Now a change is one ``write`` + ``fsync`` of
one line (one small object remotely), and the writer folds its records into a new base
only once they weigh as much as the base (at least :data:`MIN_TAIL` bytes): amortized,
a change costs its own size, and a reader reads at most twice the state's bytes.

What holds:
* **SIGKILL**: a line is one ``write``; a kill can leave only a last line without its
  newline, which readers ignore and the next append cuts off. A new base is written
  atomically (temporary sibling, rename) *before* the records it holds are deleted, and
  records at or below the base's ``seq`` are skipped, so a kill between the two steps
  counts nothing twice.
* **Readers take no lock**: they list, read, and check that the records continue the base
  without a gap; a compaction caught halfway shows up as a gap or a vanished file, and
  the read starts over (:data:`RETRIES` times, then ``CheckpointFormatError``). A log is
  named after the base it follows (``<s>``, 12 digits), so a log left by a killed
  compaction is never taken for the current one, and a listing never confuses two logs
  (inodes are reused; mtimes are coarse); a base is told by the ``seq`` on its first line.
* **Object stores**: compaction keeps the newest record object, so a listing always shows
  a record at or past the base's ``seq``; a cached reader that sees none past its own
  ``seq`` holds everything (a base's listed mtime is too coarse to tell rewrites apart).
* **Cheap refresh**: a :class:`Journal` keeps each writer's state and re-reads only what
  a listing (sizes, mtimes) says is new: a log's new bytes, new record objects.

``pool_version`` history, one number for pool.json and every base (index and table):
  1. rllib_ext 0.3.0, 0.4.0 before issue 35: one whole file per writer, replaced on each
     change (``index/<w>.json``; ``payoff/<w>.json`` with ``"payoff_version": 1``).
  2. issue 35: journals. Version-1 files still read, as a base with ``seq`` 0; a pool is
     marked 2 by its first write, so older readers refuse it by name instead of missing
     records.
"""

from __future__ import annotations

import dataclasses
import json
import re
import threading
import time
from typing import TYPE_CHECKING, Callable, Generic, Dict, List, Mapping, Optional, Protocol, Set, Tuple, TypeVar, Union

from ..errors import CheckpointFormatError, malformed
from .store import FileInfo

if TYPE_CHECKING:
    from .store import LocalStore, RemoteStore

POOL_VERSION = 2  # written; bump on an incompatible change (and add a line to the history above)
READS = (1, 2)  # pool versions this reader understands
MIN_TAIL = 256 * 1024  # bytes of records a writer keeps beside its base before it compacts
MAX_OBJECTS = 64  # object stores: records (one object each) kept before a compaction
RETRIES = 8  # reads that met a compaction halfway, started over
CONTENT_ERRORS = (KeyError, TypeError, ValueError, AttributeError)  # a file's content, not the caller
_SEQ = re.compile(rb'"seq":(\d+)')


State = TypeVar("State")  # what one journal's records build: the index's shard, the payoff table's pairs


class Kind(Protocol[State]):
    """What one journal holds (the index, the payoff table): how to read, change and write its state."""

    folder: str  # "index", "payoff"
    what: str  # for messages: "the pool index"
    not_a: str  # for messages: "not a pool index"
    holds: str  # for messages: "entries"

    def empty(self, writer: str) -> State: ...

    def load(self, doc: Mapping[str, object], version: int, writer: str) -> State:
        """The state in a base's fields (``version`` 1 or 2); raises one of :data:`CONTENT_ERRORS`."""

    def apply(self, state: State, record: Mapping[str, object]) -> State:
        """The state after ``record`` (may change ``state`` in place); raises one of :data:`CONTENT_ERRORS`."""

    def body(self, state: State) -> Mapping[str, object]:
        """The base's fields beside the header (what ``load(..., 2)`` reads back)."""

    def check_header(self, doc: Mapping[str, object], where: str) -> int:
        """The base's version (1 or 2), or CheckpointFormatError naming what this reader knows."""


@dataclasses.dataclass
class Cursor(Generic[State]):
    """One writer's journal as this process last read it."""

    state: State
    seq: int = 0  # the last record applied
    base: Optional[FileInfo] = None  # the base as listed when read (None: there was none)
    base_seq: int = 0  # the record the base holds up to
    base_bytes: int = 0
    log: Optional[FileInfo] = None  # the base's log as last read (local)
    offset: int = 0  # the log's bytes up to its last whole line
    torn: int = 0  # bytes after that line: a killed append's, cut off by the next one
    objects: List[int] = dataclasses.field(default_factory=list)  # seqs of record objects (object stores)
    tail_bytes: int = 0  # records read since the base


class Journal(Generic[State]):
    """The journals of one kind (``index/`` or ``payoff/``) of one pool: read incrementally, appended to.

    Shared by the :class:`~.policy_pool.PolicyPool` objects of one pool in one process
    (``with_writer``), so a league's calls reread only what changed. Writers call
    :meth:`append` / :meth:`reset` holding the pool's lock (local) or in their own
    namespace (object stores); ``before_write`` runs before anything is written.
    """

    def __init__(self, store: "Union[LocalStore, RemoteStore]", kind: Kind[State], before_write: Callable[[], None]) -> None:
        self.store, self.kind, self.before_write = store, kind, before_write
        self.cursors: Dict[str, Cursor[State]] = {}
        self.swept: Set[str] = set()  # writers whose killed compactions' temporary files are cleaned up
        self.mutex = threading.RLock()  # a process's threads share the cursors

    def where(self, name: str = "") -> str:
        return self.store.where(f"{self.kind.folder}/{name}" if name else self.kind.folder)

    # ------------------------------------------------------------------ reading
    def states(self) -> Dict[str, State]:
        """``{writer: state}`` of every writer, fresh (the caller must not change them)."""
        with self.mutex:
            groups = _by_writer(self.store.files(self.kind.folder))
            for writer in [w for w in self.cursors if w not in groups]:
                del self.cursors[writer]  # its files are gone
            return {w: self._refresh(w, files).state for w, files in sorted(groups.items())}

    def state(self, writer: str) -> State:
        """One writer's state, fresh: costs what changed since the last call, not the pool's size."""
        with self.mutex:
            return self._refresh(writer, self._files_of(writer)).state

    # ------------------------------------------------------------------ writing
    def append(self, writer: str, record: Mapping[str, object], compact: bool = False) -> State:
        """Add one record to ``writer``'s journal (one line or object); compact when due. Returns the state."""
        with self.mutex:
            cur = self._refresh(writer, self._files_of(writer))
            self.before_write()
            if writer not in self.swept:  # once per process: a listing of the folder, not per record
                self.store.sweep(self.kind.folder)
                self.swept.add(writer)
            seq = cur.seq + 1
            line = (json.dumps({"seq": seq, **record}, separators=(",", ":"), allow_nan=False) + "\n").encode()
            try:
                record = json_object(json.loads(line), "a record")
                state = self._apply(writer, cur.state, record, seq)  # what a reader computes
                if self.store.can_append:
                    cur.log = self.store.append(self._log(writer, cur.base_seq), line,
                                                keep=cur.offset if cur.torn else None)
                    cur.offset, cur.torn = cur.offset + len(line), 0
                else:
                    self.store.write(_object(self.kind.folder, writer, seq), line)
                    cur.objects.append(seq)
                cur.state, cur.seq, cur.tail_bytes = state, seq, cur.tail_bytes + len(line)
                if compact or cur.base is None or cur.tail_bytes > max(MIN_TAIL, cur.base_bytes) \
                        or len(cur.objects) > MAX_OBJECTS:
                    self._compact(writer, cur)
            except BaseException:
                self.cursors.pop(writer, None)  # half done: the next call reads it again
                raise
            return cur.state

    def reset(self, writer: str, body: Mapping[str, object]) -> None:
        """Replace ``writer``'s whole state by a base's fields: one record, then a new base at once."""
        self.append(writer, {"reset": body}, compact=True)

    # ------------------------------------------------------------------ internals
    def _log(self, writer: str, base_seq: int) -> str:
        return f"{self.kind.folder}/{writer}@{base_seq:012d}.jsonl"

    def _files_of(self, writer: str, everything: bool = False) -> Dict[str, FileInfo]:
        """The writer's files; on local disk, unless ``everything``, only its base and the log of
        the base last read (one stat each, however many writers and files)."""
        if self.store.can_append and writer in self.cursors and not everything:
            names = [f"{writer}.json", self._log(writer, self.cursors[writer].base_seq).split("/", 1)[1]]
            return self.store.files(self.kind.folder, names)
        return _by_writer(self.store.files(self.kind.folder)).get(writer, {})

    def _refresh(self, writer: str, files: Dict[str, FileInfo]) -> Cursor[State]:
        try:
            cur = self.cursors.get(writer)
            if cur is not None and self._catch_up(writer, cur, files):
                return cur
            for attempt in range(RETRIES):
                if cur is not None or attempt:  # list it all: a new base's log, say
                    time.sleep(0.001 * attempt)  # a compaction ran meanwhile: let it end
                    files = self._files_of(writer, everything=True)
                cur = self._load(writer, files)
                if cur is not None:
                    self.cursors[writer] = cur
                    return cur
        except BaseException:
            self.cursors.pop(writer, None)  # maybe half applied
            raise
        raise CheckpointFormatError(f"{self.where()}: writer {writer!r}'s records do not follow its base "
                                    f"({RETRIES} reads); {self.kind.what} is garbled")

    def _load(self, writer: str, files: Dict[str, FileInfo]) -> Optional[Cursor[State]]:
        """Read one writer's journal from its base; None when a compaction ran meanwhile."""
        base = files.get(f"{writer}.json")
        cur = Cursor(self.kind.empty(writer), base=base)
        if base is not None:
            where = self.where(f"{writer}.json")
            raw = self.store.read(f"{self.kind.folder}/{writer}.json")
            if raw is None:
                return None
            parsed = parse_json(raw, where, self.kind.what)
            with malformed(where, self.kind.not_a, catch=CONTENT_ERRORS):
                doc = json_object(parsed, "the file")
                version = self.kind.check_header(doc, where)
                if doc["writer"] != writer:
                    raise CheckpointFormatError(
                        f"{where}: holds writer {doc['writer']!r}'s {self.kind.holds}, not {writer!r}'s")
                cur.seq = cur.base_seq = json_int(doc["seq"], "seq") if version > 1 else 0
                cur.state = self.kind.load(doc, version, writer)
            cur.base_bytes = len(raw)
        return cur if self._catch_up(writer, cur, files) else None

    def _catch_up(self, writer: str, cur: Cursor[State], files: Dict[str, FileInfo]) -> bool:
        """Apply the records past ``cur.seq``; False (and nothing applied) when they cannot follow it."""
        base = files.get(f"{writer}.json")
        if base != cur.base or (base is not None and self.store.can_append and self._base_seq(writer) != cur.base_seq):
            return False  # a new base (a listing alone may miss it: mtimes are coarse, inodes reused)
        found: List[Tuple[int, Dict[str, object], int]] = []  # (seq, record, its bytes)
        name = self._log(writer, cur.base_seq)
        log, offset, torn = files.get(name.split("/", 1)[1]), cur.offset, cur.torn
        if log is not None:
            if cur.log is not None and log.size < cur.offset:
                return False  # shorter than what was read: not the same file
            start = cur.offset if cur.log is not None else 0
            if log != cur.log:  # appended (or a torn tail cut and a shorter line appended: the mtime tells)
                raw = self.store.read(name, start)
                if raw is None:
                    return False
                whole = raw.rfind(b"\n") + 1  # a last line without its newline is a killed append's
                found += _lines(raw[:whole], self.store.where(name), self.kind.what, start)
                offset, torn = start + whole, len(raw) - whole
        elif cur.log is not None:
            return False  # compacted away
        objects = sorted(int(n.split("/")[1][:-6]) for n in files if "/" in n)
        for seq in (s for s in objects if s > cur.seq):
            raw = self.store.read(_object(self.kind.folder, writer, seq))
            if raw is None:
                return False
            found += _lines(raw, self.store.where(_object(self.kind.folder, writer, seq)), self.kind.what, 0)
        found = sorted((f for f in found if f[0] > cur.seq), key=lambda f: f[0])
        if [f[0] for f in found] != list(range(cur.seq + 1, cur.seq + 1 + len(found))):
            return False  # a gap: records were compacted away since the listing
        state = cur.state
        for seq, record, size in found:
            state = self._apply(writer, state, record, seq)
            cur.tail_bytes += size
        cur.state, cur.seq = state, cur.seq + len(found)
        cur.log, cur.offset, cur.torn, cur.objects = log, offset, torn, objects
        return True

    def _base_seq(self, writer: str) -> int:
        """The ``seq`` on a base's first line (0 for a version-1 file), from its first bytes: the
        base's identity, which a listing cannot tell for sure."""
        head = self.store.read(f"{self.kind.folder}/{writer}.json", 0, 512)
        found = _SEQ.search(head.split(b"\n", 1)[0]) if head else None
        return int(found.group(1)) if found else (0 if head else -1)

    def _apply(self, writer: str, state: State, record: Mapping[str, object], seq: int) -> State:
        with malformed(f"{self.where()} (writer {writer!r}, record {seq})", self.kind.not_a, catch=CONTENT_ERRORS):
            if "reset" in record:
                return self.kind.load(json_object(record["reset"], "reset"), POOL_VERSION, writer)
            return self.kind.apply(state, record)

    def _compact(self, writer: str, cur: Cursor[State]) -> None:
        """A new base holding every record so far; then the records it holds are deleted."""
        data = _encode({"pool_version": POOL_VERSION, "writer": writer, "seq": cur.seq, **self.kind.body(cur.state)})
        self.store.write(f"{self.kind.folder}/{writer}.json", data)
        keep = [] if self.store.can_append else [cur.seq]  # object stores: the newest record stays (module doc)
        for name in _by_writer(self.store.files(self.kind.folder)).get(writer, {}):  # every log and record object
            if name.endswith(".jsonl") and not ("/" in name and int(name.split("/")[1][:-6]) in keep):
                self.store.delete(f"{self.kind.folder}/{name}")
        cur.base = self.store.files(self.kind.folder, [f"{writer}.json"]).get(f"{writer}.json")
        cur.base_seq, cur.base_bytes, cur.tail_bytes, cur.objects = cur.seq, len(data), 0, keep
        cur.log, cur.offset, cur.torn = None, 0, 0  # the next record starts the new base's log


def _object(folder: str, writer: str, seq: int) -> str:
    return f"{folder}/{writer}/{seq:012d}.jsonl"


def _by_writer(files: Mapping[str, FileInfo]) -> Dict[str, Dict[str, FileInfo]]:
    """A folder's listing grouped by the writer each file belongs to; other names left out."""
    groups: Dict[str, Dict[str, FileInfo]] = {}
    for name, info in files.items():
        if "/" in name:
            writer, rest = name.split("/", 1)
            if not (rest.endswith(".jsonl") and rest[:-6].isdigit()):
                continue
        elif name.endswith(".jsonl") and "@" in name:
            writer = name.rsplit("@", 1)[0]
        elif name.endswith(".json"):
            writer = name[:-5]
        else:
            continue
        groups.setdefault(writer, {})[name] = info
    return groups


def _lines(raw: bytes, where: str, what: str, start: int) -> List[Tuple[int, Dict[str, object], int]]:
    """Whole lines of records, ``[(seq, record, its bytes)]``, parsed at once; a line that is no
    record is named by its byte."""
    lines = raw.split(b"\n")[:-1]
    try:
        records = json.loads(b"[" + b",".join(lines) + b"]")
        if all(isinstance(r, dict) and type(r.get("seq")) is int and r["seq"] > 0 for r in records):
            return [(r["seq"], r, len(line) + 1) for r, line in zip(records, lines)]
    except (ValueError, UnicodeDecodeError):
        pass
    at = start
    for line in lines:  # find the culprit
        try:
            record = json.loads(line)
            if not (isinstance(record, dict) and type(record.get("seq")) is int and record["seq"] > 0):
                raise ValueError("no record number")
        except (ValueError, UnicodeDecodeError) as e:
            raise CheckpointFormatError(
                f"{where}: the line at byte {at} is not a record ({e}); {what} is garbled") from e
        at += len(line) + 1
    raise CheckpointFormatError(f"{where}: not JSON lines; {what} is garbled")  # not reached


def _encode(doc: Mapping[str, object]) -> bytes:
    """A base: its header on the first line, then one line per item of each list (readable, cheap to write)."""
    def dump(v: object) -> str:
        return json.dumps(v, separators=(",", ":"), allow_nan=False)

    text = dump({k: v for k, v in doc.items() if not isinstance(v, list)})[:-1]
    for key, items in ((k, v) for k, v in doc.items() if isinstance(v, list)):
        text += f",\n{json.dumps(key)}:[\n" + ",\n".join(dump(i) for i in items) + "]"
    return (text + "}\n").encode()


def parse_json(raw: bytes, where: str, what: str = "the pool index") -> object:
    """JSON, or a CheckpointFormatError naming the file (and ``what`` it belongs to)."""
    try:
        return json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise CheckpointFormatError(f"{where}: not valid JSON ({e}); {what} is garbled") from e


# What a JSON value read from a pool file must be where it is used; else a TypeError, one
# of CONTENT_ERRORS, which the reader's malformed() reports as the file's fault.
def json_object(value: object, what: str) -> Dict[str, object]:
    if not isinstance(value, dict):
        raise TypeError(f"{what} is {_shown(value)}, not a JSON object")
    return value


def json_list(value: object, what: str) -> List[object]:
    if not isinstance(value, list):
        raise TypeError(f"{what} is {_shown(value)}, not a JSON list")
    return value


def json_int(value: object, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{what} is {_shown(value)}, not an integer")
    return value


def json_number(value: object, what: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{what} is {_shown(value)}, not a number")
    return value


def json_str(value: object, what: str) -> str:
    if not isinstance(value, str):
        raise TypeError(f"{what} is {_shown(value)}, not a string")
    return value


def _shown(value: object) -> str:
    return f"{type(value).__name__} {str(value)[:60]}"

