"""A self-play league on a live algorithm: snapshots into a pool, past selves into slots.

The algorithm keeps a fixed set of *slots*: ordinary policies, frozen, that hold whichever
pool snapshots were last drawn. Memory is bounded by the slots, not by the pool: the
pool is on disk (:class:`~rllib_ext.pool.policy_pool.PolicyPool`) and only the driver reads
it. A refresh loads the drawn snapshots through the partial-restore path (weights and
filter, validated first, synced to every learner and env runner); env runners count each
episode's outcome per slot (:mod:`.league_play`), and the driver credits it to the
snapshot in that slot and moves the Elo ratings kept in the pool.

What decides who plays next (the slots' snapshot ids, the sampler's RNG, main's rating,
the iterations of the last snapshot and refresh) is :meth:`League.state`, which goes into
the algorithm's checkpoint, so a resume continues with the same slots and the same draw.
"""

from __future__ import annotations

import logging
import os
import tempfile
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence

from ...checkpoint.reader import read_weights
from ...checkpoint.tensors import check_tensors
from ...errors import InvalidArgumentError, MetaStrategyError, PolicyNotFoundError, not_found
from ...pool.matchmaking import Candidate, Sampler
from ...pool.policy_pool import PolicyPool
from ...pool.rules import Outcome
from ..restore.policies import restore_policies
from ..seam.backends import backend_for
from ..seam.rllib_types import Algorithm
from ..serving.policy_io import save_policy
from ..snapshot import drop_writer_entries_after, pool_for, snapshot_policy
from .evaluation import EvaluationSpec, Matches
from .exploiters import ExploiterSpec, Exploiters, check_exploiters
from .play import take_outcomes

STATE_KEY = "rllib_ext_league"  # where the league's state sits in the algorithm's state
logger = logging.getLogger(__name__)


@dataclass
class SnapshotSpec:
    """``config.snapshot_policies(pool, policies, every=, keep=)``, as plain data."""

    pool: str
    policies: List[str]
    every: int = 1
    keep: Optional[Dict[str, int]] = None  # a Retention as a dict (PolicyPool.prune's keep=)


@dataclass
class LeagueSpec:
    """``config.league(pool, of=, slots=, sample=, refresh_every=, seed=, outcome_fn=)``."""

    pool: str
    learner: str  # ``league(of=...)``: the learning policy whose snapshots fill the slots
    slots: List[str]
    sample: str = "pfsp"
    refresh_every: int = 1
    seed: int = 0
    outcome_fn: Optional[Callable[[Dict[str, float], str, str], int]] = None
    elo_k: float = 32.0  # per snapshot and iteration: its games there count as one match
    evaluation: Optional[Dict[str, Any]] = None  # an EvaluationSpec as a dict (league_eval)
    exploiters: Optional[Dict[str, Dict[str, Any]]] = None  # {policy: ExploiterSpec fields but policy}
    reset_every: Optional[int] = None  # restart the learner every K iterations (PSRO: a fresh best response)
    slot_seats: Optional[Dict[str, str]] = None  # {slot: the seat its opponent plays}: nash draws per seat

    @property
    def population(self) -> List[str]:
        """The policies whose snapshots the slots draw from: the learner and its exploiters."""
        return [self.learner, *(self.exploiters or {})]

    def evaluation_spec(self) -> Optional[EvaluationSpec]:
        """The evaluation matches asked for; ``sample="nash"`` plays them by default."""
        if self.evaluation is None:
            return EvaluationSpec() if self.sample == "nash" else None
        return EvaluationSpec(**self.evaluation)

    def exploiter_specs(self) -> List[ExploiterSpec]:
        return [ExploiterSpec(policy=p, **dict(v)) for p, v in (self.exploiters or {}).items()]


def check_specs(snapshots: Optional[SnapshotSpec], league: Optional[LeagueSpec], policy_ids: Sequence[str]) -> None:
    """Refuse what cannot work before anything is built or changed (also in the driver)."""
    ids = sorted(policy_ids)
    for spec, names in ((snapshots, snapshots.policies if snapshots else []), (league, [league.learner] if league else [])):
        for pid in names:
            if pid not in ids:
                raise not_found("policy", pid, "the algorithm's policies", ids)
    if snapshots is not None and snapshots.every < 1:
        raise InvalidArgumentError(f"snapshot_policies(every={snapshots.every}): every must be >= 1")
    if league is None:
        return
    if league.reset_every is not None and int(league.reset_every) < 1:
        raise InvalidArgumentError(f"league(reset_every={league.reset_every}): reset_every must be >= 1")
    if league.refresh_every < 1:
        raise InvalidArgumentError(f"league(refresh_every={league.refresh_every}): refresh_every must be >= 1")
    if not league.slots:
        raise InvalidArgumentError("league(slots=[]): give at least one slot policy")
    if league.learner in league.slots:
        raise InvalidArgumentError(f"league(of={league.learner!r}) is also a slot: the policy that learns cannot be a frozen opponent")
    for slot in league.slots:
        if slot not in ids:
            raise not_found("slot policy", slot, "the algorithm's policies", ids)
    Sampler(league.sample, league.seed)  # the sampler's name is checked here
    if league.slot_seats:
        if league.sample != "nash":
            raise InvalidArgumentError(f"league(slot_seats=...) draws each slot from the Nash mixture of its seat: it needs "
                             f"sample='nash', not {league.sample!r}")
        for slot in league.slot_seats:
            if slot not in league.slots:
                raise not_found("slot", slot, "league(slots=...)", league.slots)
    check_exploiters(league.exploiter_specs(), league.learner, league.slots, ids)
    evaluation = league.evaluation_spec()
    if evaluation is not None:
        evaluation.check()
    if league.exploiters and snapshots is not None and snapshots.pool != league.pool:
        raise InvalidArgumentError("league(exploiters=...): snapshot_policies() must write to the league's pool "
                         f"({league.pool}), where the exploiters' snapshots join the population")


@dataclass
class League:
    """The league's driver side for one algorithm (built in ``setup``)."""

    algo: Algorithm
    snapshots: Optional[SnapshotSpec]
    spec: Optional[LeagueSpec]
    assignment: Dict[str, Optional[str]] = field(default_factory=dict)  # slot -> entry id (None: copy of `of`)
    main_rating: float = 1200.0  # the pool's starting rating
    last_snapshot: int = 0
    last_refresh: int = 0
    sampler: Optional[Sampler] = None
    pools: Dict[str, PolicyPool] = field(default_factory=dict)
    matches: Optional[Matches] = None
    exploiters: Optional[Exploiters] = None

    def pool(self, path: str) -> PolicyPool:
        """The pool at ``path``, written to as this algorithm's Tune trial when it runs in one."""
        if path not in self.pools:
            self.pools[path] = pool_for(self.algo, path)
        return self.pools[path]

    @property
    def league(self) -> LeagueSpec:
        """:attr:`spec` where only a league has one (InvalidArgumentError with snapshots alone)."""
        if self.spec is None:
            raise InvalidArgumentError("no league(...) in the config (only snapshot_policies()): no slots to fill")
        return self.spec

    # --- setup -------------------------------------------------------------------------
    def setup(self) -> None:
        """Freeze the slots and fill them: drawn snapshots, or copies of ``of`` while the pool is empty."""
        check_specs(self.snapshots, self.spec, backend_for(self.algo).ids())
        if self.spec is None:
            return
        backend = backend_for(self.algo)
        backend.freeze(list(self.spec.slots), backend.ids())
        self.sampler = Sampler(self.spec.sample, self.spec.seed)
        evaluation = self.spec.evaluation_spec()
        if evaluation is not None:
            self.matches = Matches(self.algo, evaluation, self.spec.learner, self.spec.outcome_fn, self.spec.seed + 1)
        reset = (self.spec.learner, int(self.spec.reset_every)) if self.spec.reset_every else None
        self.exploiters = Exploiters(self.algo, self.spec.exploiter_specs(), reset)
        self.exploiters.setup()
        self.refresh()

    # --- every iteration ---------------------------------------------------------------
    def on_step(self, iteration: int) -> Dict[str, Any]:
        """Credit outcomes, snapshot, refresh; return what goes under ``result['rllib_ext']``."""
        out: Dict[str, Any] = {}
        if self.spec is not None:
            played = dict(self.assignment)
            games = self.credit(self.collect())
            out["league_games"] = {
                slot: {"snapshot": _label(played.get(slot), self.spec.learner), **games.get(slot, _no_games())}
                for slot in self.spec.slots
            }
        if self.snapshots is not None and iteration - self.last_snapshot >= self.snapshots.every:
            out["snapshots"] = ",".join(self.snapshot(iteration))
        if self.matches is not None:  # made only with a league
            spec = self.league
            population = [e.id for e in self.pool(spec.pool).entries() if e.policy in spec.population]
            out["league_evaluation_games"] = self.matches.play_due(
                self.pool(spec.pool), population, of=spec.population,
                training_env_steps=backend_for(self.algo).env_steps())
            if self.matches.spec.remote:
                out["league_evaluation_pending"] = len(self.matches.pending)
        if self.exploiters is not None and self.exploiters.specs:
            out["league_exploiters"] = {p: {"win_share": w} for p, w in self.exploiters.win_shares().items()}
            out["league_reset"] = ",".join(self.exploiters.reset_due(iteration))
        if self.spec is not None:
            if iteration - self.last_refresh >= self.spec.refresh_every:
                self.refresh(iteration)
            out["league"] = {slot: _label(self.assignment.get(slot), self.spec.learner) for slot in self.spec.slots}
            out["league_main_rating"] = self.main_rating
            out["league_budget"] = self.record_budget()
        return out

    def budget(self) -> Dict[str, int]:
        """Env steps spent so far, cumulative: every learner's training samples (main, its
        exploiters: they all play in the algorithm's own episodes) and every evaluation game."""
        training = backend_for(self.algo).env_steps()
        evaluation = self.matches.env_steps if self.matches is not None else 0
        return {"training_env_steps": training, "evaluation_env_steps": evaluation,
                "total_env_steps": training + evaluation,
                "evaluation_games": self.matches.games if self.matches is not None else 0}

    def record_budget(self) -> Dict[str, int]:
        """:meth:`budget`, also written to the league's pool (as this writer), so a pool alone
        tells what its snapshots and table cost."""
        budget = self.budget()
        self.pool(self.league.pool).record_budget(
            training_env_steps=budget["training_env_steps"], evaluation_env_steps=budget["evaluation_env_steps"],
            evaluation_games=budget["evaluation_games"])
        return budget

    def collect(self) -> Dict[str, List[float]]:
        """Every env runner's outcome counts since the last call, summed per opponent:
        ``[wins, draws, losses, the learner's returns, the opponent's returns]``."""
        group = self.algo.env_runner_group
        totals: Dict[str, List[float]] = {}
        for counts in [] if group is None else group.foreach_env_runner(take_outcomes, local_env_runner=True):
            for slot, row in (counts or {}).items():
                acc = totals.setdefault(slot, [0, 0, 0, 0.0, 0.0])
                for i, x in enumerate(row):
                    acc[i] += x
        return totals

    def credit(self, totals: Mapping[str, List[float]]) -> Dict[str, Dict[str, int]]:
        """Credit each slot's games to the snapshot that sat in it: Elo, and the learner's
        live row of the payoff table; count the exploiters' games."""
        spec = self.league
        slots = {slot: row for slot, row in totals.items() if slot in spec.slots}
        rows = {slot: {"win": int(r[0]), "draw": int(r[1]), "loss": int(r[2])} for slot, r in slots.items()}
        played = [(entry, r) for slot, r in slots.items()  # (the slot's entry id, its row)
                  if (entry := self.assignment.get(slot)) is not None and sum(r[:3]) != 0]
        if played:  # a copy of `of` is no snapshot: nothing to rate
            pool = self.pool(spec.pool)
            outcomes = [Outcome(entry, wins=int(r[0]), draws=int(r[1]), losses=int(r[2]))
                        for entry, r in played]
            self.main_rating, _ = pool.record(outcomes, self.main_rating, k=spec.elo_k, match=True)
            live = pool.live_row(spec.learner)
            pool.record_games_batch([
                (live, entry, {"wins": int(r[0]), "draws": int(r[1]), "losses": int(r[2]),
                               "return_a": float(r[3]), "return_b": float(r[4])})
                for entry, r in played])
        if self.exploiters is not None:
            self.exploiters.count(totals)
        return rows

    def snapshot(self, iteration: int) -> List[str]:
        """Write each snapshotted policy (weights + filter) into the pool; prune by ``keep``."""
        snapshots = self.snapshots
        if snapshots is None:
            raise InvalidArgumentError("no snapshot_policies(...) in the config: nothing to snapshot")
        pool = self.pool(snapshots.pool)
        ids = []
        extra = self.exploiters.ids if self.exploiters is not None else []
        for pid in [*snapshots.policies, *[p for p in extra if p not in snapshots.policies]]:
            ids.append(snapshot_policy(self.algo, pid, pool, rating=self.main_rating, iteration=iteration).id)
        if snapshots.keep:
            protected = {e for e in self.assignment.values() if e is not None}
            pool.prune(snapshots.keep, protect=protected)
        self.last_snapshot = iteration
        return ids

    def refresh(self, iteration: Optional[int] = None) -> None:
        """Draw snapshots for the slots and load them; all are checked before any is loaded."""
        spec = self.league
        pool = self.pool(spec.pool)
        entries = [e for e in pool.entries() if e.policy in spec.population]
        if not entries:
            self._fill_with_copies()
        else:
            if spec.sample == "nash":
                draw = self.nash_draw(pool)
            else:
                draw = self._sampler().draw([Candidate(e.id, e.created, e.rating) for e in entries], len(spec.slots),
                                         self.main_rating)
            chosen = {slot: pool.get(entry_id) for slot, entry_id in zip(spec.slots, draw)}
            backend = backend_for(self.algo)
            live = backend.get_weights(list(spec.slots))
            for slot, entry in chosen.items():  # nothing loads unless every snapshot fits its slot
                check_tensors(f"snapshot {entry.id!r} -> slot {slot!r}", read_weights(entry.path), live[slot],
                              target_name=f"slot {slot!r}")
            for slot, entry in chosen.items():
                restore_policies(self.algo, entry.path, {entry.policy: slot})
                self.assignment[slot] = entry.id
        if iteration is not None:
            self.last_refresh = iteration

    def nash_draw(self, pool: PolicyPool) -> List[str]:
        """A snapshot per slot from the population's Nash mixture; with ``slot_seats``, a slot
        whose opponent plays seat ``s`` draws from the Nash mixture *of that seat* (the
        per-seat answer, :meth:`~rllib_ext.pool.PolicyPool.meta_strategy_by_seat`), so the
        learner trains as a best response in each seat; the one mixture until the table has
        seat games."""
        spec, sampler = self.league, self._sampler()
        one = pool.meta_strategy(of=spec.population, solver="nash")
        if not spec.slot_seats:
            return sampler.draw_mixture(one, len(spec.slots))
        seats = spec.slot_seats
        try:
            by_seat = pool.meta_strategy_by_seat(of=spec.population)
        except MetaStrategyError:  # no seat games yet
            by_seat = {}
        return [sampler.draw_mixture(by_seat.get(seats.get(slot, ""), one), 1)[0] for slot in spec.slots]

    def _sampler(self) -> Sampler:
        if self.sampler is None:  # setup() makes it, or set_state() brings it back
            self.sampler = Sampler(self.league.sample, self.league.seed)
        return self.sampler

    def _fill_with_copies(self) -> None:
        spec = self.league
        with tempfile.TemporaryDirectory(prefix="rllib_ext-league-") as tmp:
            path = save_policy(self.algo, spec.learner, os.path.join(tmp, spec.learner))
            for slot in spec.slots:
                restore_policies(self.algo, path, {spec.learner: slot})
        self.assignment = {slot: None for slot in spec.slots}

    def stop(self) -> None:
        """Cancel the remote evaluation matches in flight: none outlives the algorithm."""
        if self.matches is not None:
            self.matches.stop()

    # --- checkpoint ----------------------------------------------------------------------
    def state(self) -> Dict[str, Any]:
        """Plain JSON-able data: what a resume needs to continue with the same next draw."""
        return {
            "iteration": int(self.algo.iteration),
            "assignment": dict(self.assignment),
            "main_rating": self.main_rating,
            "last_snapshot": self.last_snapshot,
            "last_refresh": self.last_refresh,
            "sampler": self.sampler.state() if self.sampler else None,
            "evaluation": self.matches.state() if self.matches else None,
            "exploiters": self.exploiters.state() if self.exploiters else None,
            "table": self.pool(self.spec.pool).writer_games() if self.spec is not None else None,
        }

    def set_state(self, state: Mapping[str, Any]) -> None:
        """Continue from :meth:`state`. Every snapshot it names must still be in the pool."""
        if state.get("iteration") is not None:
            self.drop_lost_snapshots(int(state["iteration"]))
        if self.spec is not None:
            pool = self.pool(self.spec.pool)
            known = {e.id for e in pool.entries()}
            for slot, entry_id in state["assignment"].items():
                if entry_id is not None and entry_id not in known:
                    raise PolicyNotFoundError(
                        f"the checkpoint's league has snapshot {entry_id!r} in slot {slot!r}, but the pool at "
                        f"{self.spec.pool} no longer holds it (pruned or removed?): resuming would change who plays"
                    )
            self.assignment = dict(state["assignment"])
            if state.get("sampler"):
                self.sampler = Sampler.from_state(state["sampler"])
            if state.get("evaluation") and self.matches is not None:
                self.matches.set_state(state["evaluation"])
            if state.get("exploiters") and self.exploiters is not None:
                self.exploiters.set_state(state["exploiters"])
            if state.get("table") is not None:  # games a lost run recorded after the checkpoint leave the table
                pool.restore_writer_games(state["table"])
                self.record_budget()  # and the budget it recorded with them
        self.main_rating = float(state["main_rating"])
        self.last_snapshot = int(state["last_snapshot"])
        self.last_refresh = int(state["last_refresh"])

    def drop_lost_snapshots(self, iteration: int) -> List[str]:
        """Remove this writer's snapshots taken after ``iteration`` (the checkpoint's).

        A resume rewinds the run to its checkpoint: snapshots a crashed run took after it
        belong to iterations that are about to be trained again, and left in the pool they
        would be drawn beside their re-run twins (the next draw would differ). Other
        writers' entries and this writer's earlier ones stay. Elo ratings the lost
        iterations moved are not rolled back (a shared pool is rated by every trial).
        """
        lost = []
        paths = {spec.pool for spec in (self.spec, self.snapshots) if spec is not None}
        for path in sorted(paths):
            lost += drop_writer_entries_after(self.pool(path), iteration)
        if lost:
            logger.warning("league resumed at iteration %d: removed %s, taken after it by the run that was lost",
                           iteration, ", ".join(lost))
        return lost


def _label(entry_id: Optional[str], of: str) -> str:
    return entry_id if entry_id is not None else f"{of} (copy)"


def _no_games() -> Dict[str, int]:
    return {"win": 0, "draw": 0, "loss": 0}
