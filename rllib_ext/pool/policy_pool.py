"""A pool of policy snapshots on disk: the Ray-free ground a self-play league stands on.

Its files are listed in :mod:`rllib_ext.pool`. Each writer (a Tune trial, a process) adds entries to its own journal: a base file and
the records since, one appended line per change (:mod:`.journal`), so a change costs the
same in a pool of 30 snapshots as in one of thousands. Ids are ``<policy>-<n>@<writer>``
with ``n`` counted per writer and policy and never reused, so ids are unique across
writers without any coordination.

What holds, and why:
* **A reader never sees a half change.** A record is one appended line (a torn last line
  is ignored) and a base is replaced atomically; a snapshot's directory is complete
  before the index names it, and an entry leaves the index before its directory is
  deleted. A writer killed at any point leaves the pool readable, holding the old or the
  new entry; at worst an unnamed directory, which the writer's next add reuses and
  :meth:`PolicyPool.prune` removes.
* **Several writers on a local pool** take turns under ``fcntl.flock``: each change reads
  what is new in the journals, then appends, with the lock held, so no entry is lost, and
  any writer may rate or remove any entry.
* **On object storage there is no lock.** Each writer changes only its own namespace
  (entries whose id ends in ``@<writer>``); touching another's is refused. Two processes
  with the *same* writer name on one remote pool can lose each other's entries (the last
  upload wins): the default writer name is per process, and a Tune trial uses its
  trial id.
* **The payoff table** follows the same rules: each writer appends games to its own
  journal (under the lock on a local pool), a reader sums every writer's, and a pool
  written before the table existed reads as one with no game.
"""

from __future__ import annotations

import dataclasses
import os
import time
from typing import Dict, Iterable, List, Mapping, Optional, Sequence, Tuple, TypedDict

from ..checkpoint.policy_file import META_FILE, TRAINING_FILE, WEIGHTS_FILE, read_policy_dir
from ..checkpoint.storage import CheckpointDir
from ..errors import InvalidArgumentError, PoolNamespaceError, not_found
from .budget import Budget, check_budget, read_budget, write_budget
from .index import (
    SNAPSHOT_DIR, OpenPool, PoolEntry, Shard, check_name, default_writer, entry_doc, plain_meta, seq_of, slug,
)
from .payoff import Pair, Payoff, build_payoff, entries_named, live_row
from .rules import DEFAULT_RATING, Outcome, Retention, elo_update, to_keep
from .solvers import check_solver, mixture, seat_mixtures
from .store import STAGING
from .table import Games, GamesDoc, PayoffKind, check_batch, games_doc, merged, parse_games, rows_of

_PickledPool = TypedDict("_PickledPool", {"path": str, "writer": str, "writer_is_default": bool})  # where, who writes


class PolicyPool:
    """A directory (or object-store URI) of policy snapshots with ratings; made if missing.

    Args:
        path: local directory, ``file://`` path, or ``s3://``/``gs://``... URI (needs pyarrow).
        writer: this writer's name (letters, digits, ``_.-``; else InvalidArgumentError); default: host and process id.
        create: make the pool when ``path`` is missing or an empty directory.

    Raises:
        NotAPoolError: ``path`` is a file, or a directory holding other files and no pool.json.
        CheckpointFormatError: pool.json or an index file is garbled or of a newer version.
    """

    def __init__(self, path: "str | os.PathLike[str]", *, writer: Optional[str] = None, create: bool = True,
                 _journals: Optional[OpenPool] = None) -> None:
        self.writer_is_default = writer is None
        self.writer = default_writer() if writer is None else check_name(writer, "writer")
        self._journals = _journals or OpenPool(path, create)
        self._store = self._journals.store
        self.path = self._store.where()

    def __getstate__(self) -> "_PickledPool":  # a pool travels to Tune trials as its path
        return {"path": self.path, "writer": self.writer, "writer_is_default": self.writer_is_default}

    def __setstate__(self, state: "_PickledPool") -> None:
        self.path, self.writer, self.writer_is_default = state["path"], state["writer"], state["writer_is_default"]
        self._journals = OpenPool(self.path, create=False, check=False)  # as before: checked on first use
        self._store = self._journals.store

    def __repr__(self) -> str:
        return f"PolicyPool({self.path!r}, writer={self.writer!r})"

    def with_writer(self, writer: str) -> "PolicyPool":
        """The same pool, written to as ``writer`` (a Tune trial: its trial id); what it has read is shared."""
        return PolicyPool(self.path, writer=writer, create=False, _journals=self._journals)

    # ------------------------------------------------------------------ reading
    def entries(self, policy: Optional[str] = None, writer: Optional[str] = None) -> List[PoolEntry]:
        """Every entry (oldest first), or those of one ``policy`` and/or ``writer``."""
        found = [e for shard in self._shards().values() for e in shard.entries.values()]
        return sorted(
            (e for e in found if (policy is None or e.policy == policy) and (writer is None or e.writer == writer)),
            key=lambda e: (e.created, e.id),
        )

    def get(self, entry_id: str) -> PoolEntry:
        """The entry ``entry_id``; a PolicyNotFoundError lists the ids (with a near match)."""
        entries = {e.id: e for e in self.entries()}
        if entry_id not in entries:
            raise not_found("snapshot", entry_id, f"the pool {self.path}", entries)
        return entries[entry_id]

    def __len__(self) -> int:
        return len(self.entries())

    # ------------------------------------------------------------------ writing
    def add(self, policy_dir: "str | os.PathLike[str]", *, policy: Optional[str] = None,
            iteration: Optional[int] = None, env_steps: Optional[int] = None,
            rating: float = DEFAULT_RATING, meta: Optional[Mapping[str, object]] = None) -> PoolEntry:
        """Copy a single-policy directory into the pool as a new entry.

        The directory is read and checked first (policy.json, every tensor, the weights'
        sha256): a bad one is refused before the pool changes. The copy is complete before
        the index names it.

        Args:
            policy_dir: written by ``save_policy`` / ``extract_policy`` / ``write_policy_dir``.
            policy: what it is a snapshot of (default: the id in its policy.json).
            iteration, env_steps: of the algorithm that wrote it (ints >= 0; else InvalidArgumentError).
            rating: its starting Elo rating (a league: the learner's current rating).
            meta: plain JSON data to keep with the entry (:attr:`PoolEntry.meta`; else InvalidArgumentError).

        Returns:
            The new entry.
        """
        src = CheckpointDir(policy_dir)
        extra = plain_meta(meta)
        meta, _ = read_policy_dir(policy_dir)  # refuses what is not a whole, valid policy
        files = {META_FILE: src.read_bytes(META_FILE), WEIGHTS_FILE: src.read_bytes(WEIGHTS_FILE)}
        if meta.get("training_state") is not None:  # format 1.2: the optimizer state goes with it
            files[TRAINING_FILE] = src.read_bytes(TRAINING_FILE)
        policy = str(meta.get("policy_id") if policy is None else policy)
        for name, value in (("iteration", iteration), ("env_steps", env_steps)):
            if value is not None and (not isinstance(value, int) or isinstance(value, bool) or value < 0):
                raise InvalidArgumentError(f"{name} must be a non-negative int or None, got {value!r}")
        with self._store.lock():
            shard = self._journals.index.state(self.writer)  # this writer's alone: the cost stays flat
            name = slug(policy)
            n = shard.next.get(name, 0)
            entry_id = f"{name}-{n:04d}@{self.writer}"
            entry = PoolEntry(
                id=entry_id, policy=policy, iteration=iteration, env_steps=env_steps, created=time.time(),
                rating=float(rating), games=0, path=self._store.where(f"{SNAPSHOT_DIR}/{entry_id}"),
                writer=self.writer, size=sum(len(b) for b in files.values()), meta=extra,
            )
            self._store.put_dir(f"{SNAPSHOT_DIR}/{entry_id}", files, last=META_FILE)  # data first ...
            # ... then the index names it: one appended record
            self._journals.index.append(self.writer, {"add": entry_doc(entry), "next": {name: n + 1}})
        return entry

    def remove(self, entry_id: str) -> PoolEntry:
        """Take ``entry_id`` out of the index, then delete its directory.

        Returns:
            The removed entry.
        """
        with self._store.lock():
            entry = self._find(self._shards(), [entry_id])[0]
            if self._store.remote and entry.writer != self.writer:
                raise self._foreign(entry.writer)
            self._write_changed([entry], drop=True)
            self._store.delete_dir(f"{SNAPSHOT_DIR}/{entry.id}")
        return entry

    def prune(self, keep: "Retention | Mapping[str, int]", *, policy: Optional[str] = None,
              protect: Iterable[str] = (), everyone: bool = False) -> List[PoolEntry]:
        """Remove the entries ``keep`` does not keep; also directories no index names.

        The rule applies per writer and policy (see :class:`Retention`; InvalidArgumentError if bad). Without
        ``everyone`` only this writer's entries are candidates; ``protect`` ids (a
        league's current opponents) always stay.

        Returns:
            The removed entries, oldest first.
        """
        rule = to_keep(keep)
        protect = set(protect)
        with self._store.lock():
            shards = self._shards()
            self._find(shards, protect)  # a protected id that is not there is a caller's mistake
            mine = [w for w in shards if everyone or w == self.writer]
            if self._store.remote and any(w != self.writer for w in mine):
                raise self._foreign([w for w in mine if w != self.writer][0])
            doomed: List[PoolEntry] = []
            for w in mine:
                groups: Dict[str, List[PoolEntry]] = {}
                for e in shards[w].entries.values():
                    if policy is None or e.policy == policy:
                        groups.setdefault(slug(e.policy), []).append(e)
                for group in groups.values():
                    doomed += [e for e in group
                               if e.id not in protect and not rule.keeps(seq_of(e), [seq_of(g) for g in group])]
            named = {e.id for s in shards.values() for e in s.entries.values()} - {e.id for e in doomed}
            if doomed:
                self._write_changed(doomed, drop=True)
            for e in doomed:
                self._store.delete_dir(f"{SNAPSHOT_DIR}/{e.id}")
            for name in self._store.listdir(SNAPSHOT_DIR):  # killed adds and removes
                if not name.startswith(".") and name not in named and (not self._store.remote or name.endswith(f"@{self.writer}")):
                    self._store.delete_dir(f"{SNAPSHOT_DIR}/{name}")
            self._store.sweep(SNAPSHOT_DIR)
            self._store.sweep(STAGING)
        return sorted(doomed, key=lambda e: (e.created, e.id))

    def record(self, outcomes: Iterable[Outcome], rating: float = DEFAULT_RATING, *, k: float = 32.0,
               match: bool = False) -> Tuple[float, Dict[str, PoolEntry]]:
        """Rate games against snapshots: Elo and game counts, all in one index write.

        Args:
            outcomes: per snapshot, the games its opponent (the learner) won, drew, lost.
            rating: the learner's Elo rating before these games.
            k: the Elo K-factor (per game; with ``match=True`` per snapshot and call).
            match: rate each snapshot's games here as one match (see ``elo_update``).

        Returns:
            ``(the learner's new rating, {id: updated entry})``. Every id and count is
            checked before anything is written (PolicyNotFoundError, InvalidArgumentError).
        """
        outcomes = list(outcomes)
        for o in outcomes:
            o.check()
        with self._store.lock():
            found = {e.id: e for e in self._find(self._shards(), [o.id for o in outcomes])}
            if self._store.remote:
                foreign = [e.writer for e in found.values() if e.writer != self.writer]
                if foreign:
                    raise self._foreign(foreign[0])
            learner, ratings = elo_update(rating, {i: e.rating for i, e in found.items()}, outcomes, k, match=match)
            games: Dict[str, int] = {}
            for o in outcomes:
                games[o.id] = games.get(o.id, 0) + o.games
            updated = {i: dataclasses.replace(e, rating=ratings[i], games=e.games + games[i]) for i, e in found.items()}
            self._write_changed(list(updated.values()))
        return learner, updated

    # ------------------------------------------------------------------ the payoff table
    def record_games(self, a: str, b: str, *, wins: int = 0, draws: int = 0, losses: int = 0,
                     return_a: float, return_b: float) -> None:
        """Add a batch of games between pool entries ``a`` and ``b`` to the payoff table.

        Counts are from ``a``'s side; ``return_a``/``return_b`` are the *sums* of each
        side's returns over these games. Rows are entries, a learning policy's own row
        (:meth:`live_row`: a league credits ``of``'s training games there), or an entry in
        one seat (:func:`.payoff.seat_row`: evaluation matches credit those). Each writer
        appends to its own journal (one line), so the cost does not grow with the table;
        this does not touch Elo ratings (that is :meth:`record`).

        Raises:
            PolicyNotFoundError: ``a`` or ``b`` names no entry and is not a live row (nothing is written).
            InvalidArgumentError: ``a == b``, a negative count, a non-finite return (a ValueError).
            CheckpointFormatError: this writer's journal is garbled (nothing is written).
        """
        self.record_games_batch([(a, b, {"wins": wins, "draws": draws, "losses": losses,
                                         "return_a": return_a, "return_b": return_b})])

    def record_games_batch(self, games: Iterable[Games]) -> None:
        """:meth:`record_games` for one match's rows in one write: ``(a, b, counts)`` items, ``counts``
        with its keyword names (``return_a``/``return_b`` required; a pair twice adds up). Every item
        is checked first: one bad item and none is recorded. Raises as :meth:`record_games`."""
        checked = check_batch(games)
        rows = rows_of(checked)
        with self._store.lock():
            self._find(self._shards(), entries_named([r for a, b, _ in checked for r in (a, b)]))
            self._journals.table.state(self.writer)  # a garbled journal raises here, before anything is written
            if rows:
                self._journals.table.append(self.writer, {"games": rows})

    # ------------------------------------------------------------------ the budget
    def record_budget(self, *, training_env_steps: int, evaluation_env_steps: int, evaluation_games: int) -> None:
        """Replace this writer's record of what it spent so far (cumulative env steps; a league
        writes it every iteration). Raises InvalidArgumentError on a count that is not an int >= 0."""
        counts = check_budget(training_env_steps, evaluation_env_steps, evaluation_games)
        with self._store.lock():
            write_budget(self._store, self.writer, counts)

    def budget(self) -> Budget:
        """Every writer's :meth:`record_budget`, summed (CheckpointFormatError on a garbled file)."""
        return read_budget(self._store)

    def live_row(self, policy: str) -> str:
        """The payoff row of ``policy`` while it learns, for this writer (see :func:`.payoff.live_row`)."""
        return live_row(policy, self.writer)

    def payoff(self, ids: Optional[Iterable[str]] = None) -> Payoff:
        """The payoff table over ``ids`` (default: every entry, oldest first), every writer's games summed.

        A pool written before the table existed reads as a table with no game.

        Raises:
            PolicyNotFoundError: an id is not an entry.
            CheckpointFormatError: a table file is garbled (the file is named).
        """
        if ids is None:
            ids = [e.id for e in self.entries()]
        else:
            ids = list(dict.fromkeys(ids))
            self._find(self._shards(), entries_named(ids))
        return build_payoff(self._table(), ids)

    def writer_games(self) -> GamesDoc:
        """The games this writer recorded, as plain JSON-able data (version-1 form, see .table).

        A league keeps it in its checkpoint and gives it to :meth:`restore_writer_games` on
        resume, so games a lost run recorded after the checkpoint leave the table.
        """
        with self._store.lock():
            return games_doc(self.writer, self._journals.table.state(self.writer))

    def restore_writer_games(self, state: Mapping[str, object]) -> None:
        """Replace this writer's games by ``state`` (from :meth:`writer_games`); other writers' stay.

        Raises:
            CheckpointFormatError: ``state`` is not a writer's games, or another writer's.
        """
        records = parse_games(state, f"the games of writer {self.writer!r} to restore", self.writer)
        with self._store.lock():
            self._journals.table.reset(self.writer, PayoffKind().body(records))

    def meta_strategy(self, of: "str | Iterable[str]" = "main", solver: str = "nash") -> Dict[str, float]:
        """``{snapshot id: probability}`` over the snapshots of policy ``of`` (oldest first).

        Solved from the payoff table restricted to them (see :mod:`.solvers`: ``"nash"``,
        ``"replicator"``, ``"uniform"``; unplayed pairs: the largest fully played subset
        is solved, the rest get 0). Draw from it with :func:`.solvers.sample_mixture`.

        Args:
            of: a policy id, or several (e.g. ``["main", "exploiter_0"]``): their snapshots
                together are the population.
            solver: one of :data:`.solvers.SOLVERS`.

        Raises:
            InvalidArgumentError: an unknown solver (the known ones listed).
            MetaStrategyError: ``"nash"`` on a table that is not zero-sum (a ValueError too).
            PolicyNotFoundError: the pool holds no snapshot of ``of``.
            MissingDependencyError: ``"nash"`` without scipy.
        """
        check_solver(solver)
        return mixture(build_payoff(self._table(), self._ids_of(of)), solver)

    def meta_strategy_by_seat(self, of: "str | Iterable[str]" = "main") -> Dict[str, Dict[str, float]]:
        """``{seat: {snapshot id: probability}}``: a Nash mixture for each seat of a two-seat game.

        :meth:`meta_strategy` gives one mixture for every seat; where the seats differ (poker's
        first and second player) one per seat can do better. Solved from the seat rows that
        evaluation matches fill (:func:`.solvers.seat_mixtures`). Deploy it by drawing, per
        episode, the snapshot of the seat you sit in.

        Raises:
            MetaStrategyError: the seat rows name no two seats (no evaluation matches yet), or are not zero-sum.
            PolicyNotFoundError: the pool holds no snapshot of ``of``.
            MissingDependencyError: scipy is not installed.
        """
        return seat_mixtures(self._table(), self._ids_of(of))

    # ------------------------------------------------------------------ internals
    def _ids_of(self, of: "str | Iterable[str]") -> List[str]:
        """The snapshot ids of policy ``of`` (or of several), oldest first."""
        policies, entries = ([of] if isinstance(of, str) else list(of)), self.entries()
        if ids := [e.id for e in entries if e.policy in policies]:
            return ids
        raise not_found("policy", policies[0] if policies else "", f"the snapshots of the pool {self.path}",
                        {e.policy for e in entries})

    def _shards(self) -> Dict[str, Shard]:
        """Every writer's index, fresh: only what changed since the last read is read."""
        return self._journals.index.states()

    def _table(self) -> Mapping[Pair, Sequence[float]]:
        """Every writer's games, summed per pair."""
        return merged(self._journals.table.states())

    def _write_changed(self, entries: List[PoolEntry], drop: bool = False) -> None:
        """One record per writer whose entries change: ``entries`` replaced (or dropped)."""
        by_writer: Dict[str, List[PoolEntry]] = {}
        for e in entries:
            by_writer.setdefault(e.writer, []).append(e)
        for writer, changed in by_writer.items():
            record = {"drop": [e.id for e in changed]} if drop else {"set": [entry_doc(e) for e in changed]}
            self._journals.index.append(writer, record)

    def _find(self, shards: Mapping[str, Shard], ids: Iterable[str]) -> List[PoolEntry]:
        """The entries ``ids``, looked up writer by writer (no pool-wide map: this runs on every record)."""
        found = []
        for i in dict.fromkeys(ids):
            shard = shards.get(i.rsplit("@", 1)[-1])
            entry = shard.entries.get(i) if shard is not None else None
            if entry is None:
                entry = next((s.entries[i] for s in shards.values() if i in s.entries), None)
            if entry is None:
                everything = {e for s in shards.values() for e in s.entries}
                raise not_found("snapshot", i, f"the pool {self.path}", everything)
            found.append(entry)
        return found

    def _foreign(self, writer: str) -> PoolNamespaceError:
        return PoolNamespaceError(
            f"{self.path}: entries of writer {writer!r} belong to its namespace; on object storage there is "
            f"no lock, so writer {self.writer!r} changes only its own entries"
        )
