"""Evaluation matches: pool snapshots played against each other, in the driver or as Ray tasks, for the payoff table.

A meta-strategy is solved from the table, so the table must hold games the snapshots
really played, many per pair. After each iteration the league plays the least-played
pairs of its population, ``games`` each, until every pair has ``min_games``. Those games
cost env steps as training does: they are counted (:attr:`Matches.env_steps`), and two
settings spend fewer of them. ``focus="support"`` plays every pair only up to
``floor_games`` and then tops up to ``min_games`` just the pairs that decide the answer:
those among the Nash mixture's support (per seat where there are seats) and the newest
snapshot. ``max_share`` stops the matches while evaluation has spent more than that share
of all env steps (training plus evaluation). The
snapshots act as :class:`~rllib_ext.act.numpy_policy.NumpyPolicy` (numpy, filter
included) in one copy of the training env made in the driver: no env runner, learner or
module changes, and the training batch does not pay for the matches.

Sides: the algorithm's ``policy_mapping_fn`` tells, for each game, which agents sit on
the learner's side (those it maps to the learner) and which on the opponents' (those it
maps to a slot or an exploiter); the two snapshots swap sides every other game, so each
plays every seat equally often.

Duplicate matches (``duplicate=True``, the default), as in duplicate bridge: the two games
of a pair share the env's reset seed and the episode id, so they are dealt the same cards
and seat the learner's side alike, with the snapshots swapped. The luck of the deal then
cancels in the pair's sum: on Kuhn poker a pair's value needs 2.5-16 times fewer games
for the same error (``bench/notes/retired.md``). An env that ignores
``reset(seed=...)`` just plays independent games, as without it.

Remote matches (``remote=True``): each due match is one Ray task (``num_cpus`` each) on
the cluster's spare CPUs, so evaluation overlaps training instead of pausing it. The task
gets only picklable data (the snapshots' paths, an :class:`~.arena.Arena`, a seed) and plays
the match with the same :func:`~.arena.play_match` as the driver. After each iteration the driver
records the finished matches without waiting for the others and only then counts their
games and env steps, so the pool's table never holds a game the budget has not counted;
``max_share`` counts the pending matches' games as spent, and a pair in flight is not
submitted again. At most ``pairs`` matches are in flight.
"""

from __future__ import annotations

import inspect
import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable, Dict, List, Mapping, Optional, Sequence, Set, Tuple, cast

import numpy as np

from ...errors import InvalidArgumentError, MetaStrategyError
from ...pool.payoff import seat_row
from ...pool.policy_pool import PolicyPool
from ..seam.rllib_types import Algorithm, config_of
from .arena import (Arena, MatchResult, OutcomeFn, Player, PolicyLoader, load_snapshot, play_games, play_match,
                    remote_match)
from .play import default_outcome

if TYPE_CHECKING:
    from ray import ObjectRef
    from ray.rllib.env.multi_agent_env import MultiAgentEnv

logger = logging.getLogger(__name__)

FOCUS = ("all", "support")
SUPPORT = 1e-6  # a probability above this puts a snapshot in the support


@dataclass
class EvaluationSpec:
    """``league(..., evaluation={...})``, as plain data."""

    games: int = 50  # per pair and round
    min_games: int = 200  # a pair is played until it has this many games
    pairs: int = 6  # pairs per iteration, at most
    explore: bool = True  # act by sampling each policy's action distribution (mixed strategies)
    batch: int = 256  # games played in lockstep (one batch of actions per policy and step)
    duplicate: bool = True  # the games of a pair share the deal (reset seed), the snapshots swapped
    focus: str = "all"  # "support": min_games only within the Nash support and the newest, floor_games elsewhere
    floor_games: Optional[int] = None  # with focus="support": every pair's games first (default: games)
    max_share: Optional[float] = None  # no match while evaluation has spent more than this share of all env steps
    remote: bool = False  # each match a Ray task on spare CPUs, overlapping training (see the module)
    num_cpus: float = 1.0  # per remote match

    def check(self) -> None:
        """Refuse counts that cannot schedule a match."""
        if self.remote and not float(self.num_cpus) >= 0:
            raise InvalidArgumentError(f"league(evaluation={{'num_cpus': {self.num_cpus}}}): must be >= 0")
        for name in ("games", "min_games", "pairs", "batch"):
            if int(getattr(self, name)) < 1:
                raise InvalidArgumentError(f"league(evaluation={{{name!r}: {getattr(self, name)}}}): must be >= 1")
        if self.focus not in FOCUS:
            raise InvalidArgumentError(f"league(evaluation={{'focus': {self.focus!r}}}): give one of {', '.join(FOCUS)}")
        if self.floor_games is not None and not 1 <= int(self.floor_games) <= int(self.min_games):
            raise InvalidArgumentError(f"league(evaluation={{'floor_games': {self.floor_games}}}): must be >= 1 and at most "
                             f"min_games ({self.min_games})")
        if self.max_share is not None and not 0 < float(self.max_share) < 1:
            raise InvalidArgumentError(f"league(evaluation={{'max_share': {self.max_share}}}): must be in (0, 1)")
        if self.duplicate and int(self.batch) % 2:
            raise InvalidArgumentError(f"league(evaluation={{'batch': {self.batch}}}): must be even with duplicate=True "
                             "(the two games of a duplicate pair are played in the same batch)")


@dataclass
class Pending:
    """A match in flight as a Ray task."""

    ref: "ObjectRef[MatchResult]"
    games: int


class Matches:
    """Plays evaluation matches for one league; its RNG state goes into the league's."""

    def __init__(self, algo: Algorithm, spec: EvaluationSpec, learner: str, outcome: Optional[OutcomeFn], seed: int,
                 load: PolicyLoader = load_snapshot) -> None:
        self.algo, self.spec, self.learner, self.load = algo, spec, learner, load
        self.outcome = outcome or default_outcome
        self.rng = np.random.Generator(np.random.PCG64(seed))
        self.envs: List[MultiAgentEnv] = []
        self.policies: Dict[str, Player] = {}
        self.seats: Set[str] = set()  # the seats seen in the games (agent ids, see _seat)
        # Every game and env step recorded so far (cumulative, checkpointed): they cost as
        # much as training's, and the league's budget counts them (League.budget).
        self.games = 0
        self.env_steps = 0
        self.pending: Dict[Tuple[str, str], Pending] = {}  # remote matches in flight, by pair
        self._task: Any = None  # remote_match as a Ray remote function, made on first use
        mapping: Callable[..., str] = config_of(algo).policy_mapping_fn
        # The old stack's mapping functions also take the worker (None here: no worker plays).
        needs_worker = len([p for p in inspect.signature(mapping).parameters.values()
                            if p.kind == p.POSITIONAL_OR_KEYWORD and p.default is p.empty]) >= 3
        self.mapping = (lambda agent, episode: mapping(agent, episode, None)) if needs_worker else mapping

    def arena(self) -> Arena:
        """This league's :class:`Arena` (read from the algorithm each time: nothing stale is shipped)."""
        spec = self.spec
        # RLlib declares its creator for an EnvContext and any env; a league's env is a
        # MultiAgentEnv, made (as RLlib's own env runners do) from the config's env_config dict.
        creator = cast(Callable[[Dict[str, object]], "MultiAgentEnv"], self.algo.env_creator)
        return Arena(creator, config_of(self.algo).env_config, self.mapping, self.learner, self.outcome,
                     int(spec.batch), bool(spec.duplicate), bool(spec.explore))

    def play_due(self, pool: PolicyPool, population: Sequence[str], of: Sequence[str] = (),
                 training_env_steps: int = 0) -> int:
        """Play what ``population`` lacks (:meth:`due`), within ``max_share``; return the games recorded.

        With ``remote=True`` the finished remote matches are recorded first, then the due
        pairs not in flight are submitted (up to ``pairs`` in flight); their games count
        when a later call records them.

        Args:
            pool: the league's pool.
            population: the snapshot ids that make the population, oldest first.
            of: their policies (the learner, its exploiters): whose Nash support ``focus="support"`` reads.
            training_env_steps: every learner's env steps so far (``max_share`` is of all env steps).
        """
        played = self.collect(pool)
        if len(population) < 2:
            return played
        for a, b in self.due(pool, population, of, skip=set(self.pending)):
            if not self.affordable(training_env_steps):
                break
            if not self.spec.remote:
                played += self.record(pool, a, b, self.match(pool, a, b, int(self.spec.games)))
            elif len(self.pending) < int(self.spec.pairs):
                self.submit(pool, a, b, int(self.spec.games))
        self.policies = {k: v for k, v in self.policies.items() if k in set(population)}
        return played

    def record(self, pool: PolicyPool, a: str, b: str, result: MatchResult) -> int:
        """Write one match into the pool (one write: the pair's row and its seat rows), then
        count its games and env steps: recorded first, so the table never holds an uncounted game."""
        pool.record_games_batch([
            (row_a, row_b, {"wins": wins, "draws": draws, "losses": losses, "return_a": ret_a, "return_b": ret_b})
            for (row_a, row_b), (wins, draws, losses, ret_a, ret_b) in result.tallies.items()])
        self.games += result.games
        self.env_steps += result.env_steps
        self.seats |= result.seats
        return result.games

    def affordable(self, training_env_steps: int) -> bool:
        """Whether evaluation is still under ``max_share`` of all env steps (always, without one).

        Pending remote matches count as spent, at the env steps per game measured so far;
        before any is measured, one match at a time."""
        if self.spec.max_share is None:
            return True
        if not self.env_steps:
            return not self.pending
        committed = self.env_steps + sum(p.games for p in self.pending.values()) * self.env_steps / max(self.games, 1)
        return committed < float(self.spec.max_share) * (training_env_steps + committed)

    def due(self, pool: PolicyPool, population: Sequence[str], of: Sequence[str] = (),
            skip: Optional[Set[Tuple[str, str]]] = None) -> List[Tuple[str, str]]:
        """The pairs to play next, least-played first, at most ``pairs``; none of ``skip`` (those in flight).

        Pairs of two snapshots come first; then each snapshot against itself, which only
        the seat rows record (a snapshot's value in one seat against itself in the other,
        what :meth:`~rllib_ext.pool.PolicyPool.meta_strategy_by_seat` needs). With
        ``focus="support"``, every pair is first played to ``floor_games``; then only pairs
        within the support of the Nash answer and the newest snapshot go on to ``min_games``.
        """
        spec = self.spec
        played = self._played(pool, population)  # the table is read once per call
        if spec.focus == "all":
            due = _short(played, int(spec.min_games), set(population))
        else:
            due = _short(played, int(spec.floor_games or spec.games), set(population))
            if not due:
                keep = self.support(pool, population, of) | {population[-1]}
                due = _short(played, int(spec.min_games), keep)
        return [pair for pair in due if pair not in (skip or ())][: spec.pairs]

    def support(self, pool: PolicyPool, population: Sequence[str], of: Sequence[str]) -> Set[str]:
        """The snapshots the Nash answer plays: per seat once the table has seat games, else the one mixture."""
        if not of:
            return set(population)
        try:
            mixtures = list(pool.meta_strategy_by_seat(of=list(of)).values()) if len(self.seats) == 2 else []
        except MetaStrategyError:  # the seat rows are not complete yet
            mixtures = []
        mixtures = mixtures or [pool.meta_strategy(of=list(of), solver="nash")]
        return {i for mix in mixtures for i, p in mix.items() if p > SUPPORT and i in set(population)}

    def _played(self, pool: PolicyPool, population: Sequence[str]) -> "Played":
        """Each pair's games, least-played first, and (once two seats were seen) each
        snapshot's games against itself, which only the seat rows record."""
        pairs = pool.payoff(list(population)).least_played()
        selves: List[Tuple[str, int]] = []
        if len(self.seats) == 2:
            n = len(population)
            seats = pool.payoff([seat_row(a, seat) for seat in sorted(self.seats) for a in population])
            selves = [(a, int(seats.games[k, n + k])) for k, a in enumerate(population)]
        return pairs, selves

    def match(self, pool: PolicyPool, a: str, b: str, games: int) -> MatchResult:
        """``games`` games of ``a`` against ``b`` in the driver (:func:`~.arena.play_match`); not yet recorded."""
        return play_match(self.arena(), self.envs, self._policy(pool, a), self._policy(pool, b), a, b, games, self.rng)

    # ------------------------------------------------------------------ remote matches
    def submit(self, pool: PolicyPool, a: str, b: str, games: int) -> None:
        """Start the match ``a`` against ``b`` as a Ray task; :meth:`collect` records it."""
        import ray

        if self._task is None:
            self._task = ray.remote(num_cpus=float(self.spec.num_cpus), max_retries=0)(remote_match)
        seed = int(self.rng.integers(0, 2**63))
        paths = (pool.get(a).path, pool.get(b).path)
        ref = self._task.remote(self.arena(), self.load, a, b, paths, games, seed, 0)
        self.pending[(a, b)] = Pending(ref, games)

    def collect(self, pool: PolicyPool, wait: bool = False) -> int:
        """Record the remote matches that have finished (all of them with ``wait``); return their games.

        A match whose snapshot left the pool while it ran (pruned) is dropped, uncounted."""
        if not self.pending:
            return 0
        import ray

        pairs = {p.ref: pair for pair, p in self.pending.items()}
        ready, _ = ray.wait(list(pairs), num_returns=len(pairs), timeout=None if wait else 0)
        played = 0
        for ref in ready:
            a, b = pairs[ref]
            del self.pending[(a, b)]
            try:
                result = ray.get(ref)
            except Exception:
                known = {e.id for e in pool.entries()}
                if a in known and b in known:
                    raise
                logger.warning("league evaluation: dropped the match %s vs %s, whose snapshot left the pool", a, b)
                continue
            played += self.record(pool, a, b, result)
        return played

    def stop(self) -> None:
        """Cancel the matches in flight, uncounted (the algorithm stops or rewinds)."""
        if not self.pending:
            return
        import ray

        for p in self.pending.values():
            ray.cancel(p.ref, force=True)
        self.pending.clear()

    # ------------------------------------------------------------------ checkpoint
    def state(self) -> Dict[str, Any]:
        """The counters and RNG; remote matches still in flight are left out, uncounted.

        Not waiting for them keeps a checkpoint from stalling training for the slowest
        match. The checkpoint stays exact: its table (``League.state``'s ``table``) and these
        counters hold the same recorded games, as both move together in :meth:`record`. A
        resume rewinds the table to it and plays those pairs again; the live run goes on
        and records them as they finish."""
        return {"rng": self.rng.bit_generator.state, "seats": sorted(self.seats), "games": self.games,
                "env_steps": self.env_steps}

    def set_state(self, state: Mapping[str, Any]) -> None:
        self.stop()  # matches of the timeline being left behind: their table is rewound
        self.rng.bit_generator.state = dict(state["rng"])
        self.seats = set(state.get("seats", ()))  # a checkpoint older than the seat rows has none
        self.games = int(state.get("games", 0))  # nor one older than the budget: counted from here
        self.env_steps = int(state.get("env_steps", 0))

    # ------------------------------------------------------------------ one game
    def _policy(self, pool: PolicyPool, entry_id: str) -> Player:
        if entry_id not in self.policies:
            self.policies[entry_id] = self.load(entry_id, pool.get(entry_id).path)
        return self.policies[entry_id]

    def _games(self, pa: Player, pb: Player, n: int, first: int) -> List[Tuple[float, float, str, str, int]]:
        return play_games(self.arena(), self.envs, pa, pb, n, first, self.rng)



#: ``([(a, b, games)], [(snapshot, games against itself)])``, as :meth:`Matches._played` reads them.
Played = Tuple[List[Tuple[str, str, int]], List[Tuple[str, int]]]


def _short(played: Played, games: int, among: Set[str]) -> List[Tuple[str, str]]:
    """Pairs within ``among`` (and self-pairs, for the seat rows) with fewer than ``games`` games."""
    pairs, selves = played
    return ([(a, b) for a, b, n in pairs if n < games and a in among and b in among]
            + [(a, a) for a, n in selves if n < games and a in among])
