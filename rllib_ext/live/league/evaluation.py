"""Evaluation matches: pool snapshots played against each other, in the driver, for the payoff table.

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
for the same error (``bench/duplicate_matches.py``). An env that ignores
``reset(seed=...)`` just plays independent games, as without it.
"""

from __future__ import annotations

import inspect
import uuid
from dataclasses import dataclass
from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence, Set, Tuple

import numpy as np

from ...act.numpy_policy import NumpyPolicy, stack_observations
from ...errors import CheckpointError, InvalidArgumentError, MetaStrategyError
from ...pool.payoff import seat_row
from .play import default_outcome

#: ``(returns by policy id, learner, opponent) -> +1 / 0 / -1``
OutcomeFn = Callable[[Dict[str, float], str, str], int]
MAX_STEPS = 100_000  # per game: an env that never ends is refused, not waited for
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

    def check(self) -> None:
        """Refuse counts that cannot schedule a match."""
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


class _Episode:
    """What a ``policy_mapping_fn`` may read of an episode, for the driver's games."""

    def __init__(self, episode_id: str) -> None:
        self.id_ = self.episode_id = episode_id


class Matches:
    """Plays evaluation matches for one league; its RNG state goes into the league's."""

    def __init__(self, algo: Any, spec: EvaluationSpec, learner: str, outcome: Optional[OutcomeFn], seed: int) -> None:
        self.algo, self.spec, self.learner = algo, spec, learner
        self.outcome = outcome or default_outcome
        self.rng = np.random.Generator(np.random.PCG64(seed))
        self.envs: List[Any] = []
        self.policies: Dict[str, NumpyPolicy] = {}
        self.seats: Set[str] = set()  # the seats seen in the games (agent ids, see _seat)
        # Every game and env step played so far (cumulative, checkpointed): they cost as
        # much as training's, and the league's budget counts them (League.budget).
        self.games = 0
        self.env_steps = 0
        mapping = algo.config.policy_mapping_fn
        # The old stack's mapping functions also take the worker (None here: no worker plays).
        needs_worker = len([p for p in inspect.signature(mapping).parameters.values()
                            if p.kind == p.POSITIONAL_OR_KEYWORD and p.default is p.empty]) >= 3
        self.mapping = (lambda agent, episode: mapping(agent, episode, None)) if needs_worker else mapping

    def play_due(self, pool: Any, population: Sequence[str], of: Sequence[str] = (), training_env_steps: int = 0) -> int:
        """Play what ``population`` lacks (:meth:`due`), within ``max_share``; return the games played.

        Args:
            pool: the league's pool.
            population: the snapshot ids that make the population, oldest first.
            of: their policies (the learner, its exploiters): whose Nash support ``focus="support"`` reads.
            training_env_steps: every learner's env steps so far (``max_share`` is of all env steps).
        """
        if len(population) < 2:
            return 0
        played = 0
        for a, b in self.due(pool, population, of):
            if not self.affordable(training_env_steps):
                break
            pool.record_games_batch([  # one write per match: the pair's row and its seat rows
                (row_a, row_b, {"wins": wins, "draws": draws, "losses": losses, "return_a": ret_a, "return_b": ret_b})
                for (row_a, row_b), (wins, draws, losses, ret_a, ret_b) in self.match(pool, a, b, int(self.spec.games)).items()])
            played += int(self.spec.games)
        self.policies = {k: v for k, v in self.policies.items() if k in set(population)}
        return played

    def affordable(self, training_env_steps: int) -> bool:
        """Whether evaluation is still under ``max_share`` of all env steps (always, without one)."""
        if self.spec.max_share is None:
            return True
        share = float(self.spec.max_share)
        return self.env_steps < share * (training_env_steps + self.env_steps) or not self.env_steps

    def due(self, pool: Any, population: Sequence[str], of: Sequence[str] = ()) -> List[Tuple[str, str]]:
        """The pairs to play next, least-played first, at most ``pairs``.

        Pairs of two snapshots come first; then each snapshot against itself, which only
        the seat rows record (a snapshot's value in one seat against itself in the other,
        what :meth:`~rllib_ext.pool.PolicyPool.meta_strategy_by_seat` needs). With
        ``focus="support"``, every pair is first played to ``floor_games``; then only pairs
        within the support of the Nash answer and the newest snapshot go on to ``min_games``.
        """
        spec = self.spec
        played = self._played(pool, population)  # the table is read once per call
        if spec.focus == "all":
            return _short(played, int(spec.min_games), set(population))[: spec.pairs]
        due = _short(played, int(spec.floor_games or spec.games), set(population))
        if not due:
            keep = self.support(pool, population, of) | {population[-1]}
            due = _short(played, int(spec.min_games), keep)
        return due[: spec.pairs]

    def support(self, pool: Any, population: Sequence[str], of: Sequence[str]) -> Set[str]:
        """The snapshots the Nash answer plays: per seat once the table has seat games, else the one mixture."""
        if not of:
            return set(population)
        try:
            mixtures = list(pool.meta_strategy_by_seat(of=list(of)).values()) if len(self.seats) == 2 else []
        except MetaStrategyError:  # the seat rows are not complete yet
            mixtures = []
        mixtures = mixtures or [pool.meta_strategy(of=list(of), solver="nash")]
        return {i for mix in mixtures for i, p in mix.items() if p > SUPPORT and i in set(population)}

    def _played(self, pool: Any, population: Sequence[str]) -> "Played":
        """Each pair's games, least-played first, and (once two seats were seen) each
        snapshot's games against itself, which only the seat rows record."""
        pairs = pool.payoff(list(population)).least_played()
        selves: List[Tuple[str, int]] = []
        if len(self.seats) == 2:
            n = len(population)
            seats = pool.payoff([seat_row(a, seat) for seat in sorted(self.seats) for a in population])
            selves = [(a, int(seats.games[k, n + k])) for k, a in enumerate(population)]
        return pairs, selves

    def match(self, pool: Any, a: str, b: str, games: int) -> Dict[Tuple[str, str], List[Any]]:
        """``games`` games of ``a`` against ``b``, as ``{(row a, row b): [wins, draws, losses
        from a's side, a's return sum, b's return sum]}``: the pair's own rows (unless ``a ==
        b``) and the :func:`~rllib_ext.pool.payoff.seat_row` rows of the seats they played.

        Games run in lockstep, ``batch`` at a time, so each policy computes one batch of
        actions per step for all the games it plays in.
        """
        pa, pb = self._policy(pool, a), self._policy(pool, b)
        out: Dict[Tuple[str, str], List[Any]] = {}
        for start in range(0, games, self.spec.batch):
            for ret_a, ret_b, seat_a, seat_b, steps in self._games(pa, pb, min(self.spec.batch, games - start), start):
                self.games += 1
                self.env_steps += steps
                result = int(self.outcome({"a": ret_a, "b": ret_b}, "a", "b"))
                self.seats.update((seat_a, seat_b))
                rows = [(a, b)] if a != b else []
                if seat_a != seat_b:
                    rows.append((seat_row(a, seat_a), seat_row(b, seat_b)))
                for key in rows:
                    tally = out.setdefault(key, [0, 0, 0, 0.0, 0.0])
                    tally[0 if result > 0 else 2 if result < 0 else 1] += 1
                    tally[3] += ret_a
                    tally[4] += ret_b
        return out

    def state(self) -> Dict[str, Any]:
        return {"rng": self.rng.bit_generator.state, "seats": sorted(self.seats), "games": self.games,
                "env_steps": self.env_steps}

    def set_state(self, state: Mapping[str, Any]) -> None:
        self.rng.bit_generator.state = dict(state["rng"])
        self.seats = set(state.get("seats", ()))  # a checkpoint older than the seat rows has none
        self.games = int(state.get("games", 0))  # nor one older than the budget: counted from here
        self.env_steps = int(state.get("env_steps", 0))

    # ------------------------------------------------------------------ one game
    def _policy(self, pool: Any, entry_id: str) -> NumpyPolicy:
        if entry_id not in self.policies:
            policy = NumpyPolicy.from_checkpoint(pool.get(entry_id).path)
            if policy.recurrent:
                raise CheckpointError(f"league evaluation: snapshot {entry_id!r} is recurrent; evaluation matches "
                                      "play feed-forward policies only (leave evaluation= out)")
            self.policies[entry_id] = policy
        return self.policies[entry_id]

    def _games(self, pa: NumpyPolicy, pb: NumpyPolicy, n: int, first: int) -> List[Tuple[float, float, str, str, int]]:
        """``n`` episodes at once; game ``first + g`` puts ``pa`` on the learner's side when even.
        Returns each game's total reward of ``pa``'s side and of ``pb``'s, the seat each
        side played (its agent ids, sorted and joined by commas: ``"0"`` for player 0) and
        its env steps (``env.step`` calls, as RLlib counts a training episode's)."""
        envs = self._envs(n)
        a_learns = [(first + g) % 2 == 0 for g in range(n)]
        deal = (lambda g: g // 2) if self.spec.duplicate else (lambda g: g)  # first and batch are even
        deals = deal(n - 1) + 1
        ids = [uuid.UUID(int=int(self.rng.integers(0, 2**63))).hex for _ in range(deals)]
        seeds = [int(self.rng.integers(0, 2**31)) for _ in range(deals)]
        episodes = [_Episode(ids[deal(g)]) for g in range(n)]
        obs = [env.reset(seed=seeds[deal(g)])[0] for g, env in enumerate(envs)]
        sides: List[Dict[Any, bool]] = [{} for _ in range(n)]  # agent -> plays pa

        def plays_a(g: int, agent: Any) -> bool:
            if agent not in sides[g]:
                sides[g][agent] = (self.mapping(agent, episodes[g]) == self.learner) == a_learns[g]
            return sides[g][agent]

        totals = np.zeros((n, 2))
        steps = [0] * n
        active = list(range(n))
        for _ in range(MAX_STEPS):
            actions: List[Dict[Any, Any]] = [{} for _ in range(n)]
            for policy, mine in ((pa, True), (pb, False)):
                todo = [(g, agent) for g in active for agent in obs[g] if plays_a(g, agent) == mine]
                if todo:
                    batch = stack_observations([obs[g][agent] for g, agent in todo])
                    acts, _ = policy.compute_actions(batch, explore=self.spec.explore, rng=self.rng)
                    for (g, agent), act in zip(todo, acts):
                        actions[g][agent] = act
            still = []
            for g in active:
                obs[g], rewards, terminated, truncated, _ = envs[g].step(actions[g])
                steps[g] += 1
                for agent, r in rewards.items():
                    totals[g, 0 if plays_a(g, agent) else 1] += float(r)
                if not (terminated.get("__all__") or truncated.get("__all__")):
                    still.append(g)
            active = still
            if not active:
                return [(float(x), float(y), _seat(sides[g], True), _seat(sides[g], False), steps[g])
                        for g, (x, y) in enumerate(totals)]
        raise CheckpointError(f"league evaluation: an episode did not end within {MAX_STEPS} steps")

    def _envs(self, n: int) -> List[Any]:
        """``n`` copies of the training env (made once, then reused)."""
        while len(self.envs) < n:
            self.envs.append(self.algo.env_creator(self.algo.config.env_config))
        return self.envs[:n]


#: ``([(a, b, games)], [(snapshot, games against itself)])``, as :meth:`Matches._played` reads them.
Played = Tuple[List[Tuple[str, str, int]], List[Tuple[str, int]]]


def _short(played: Played, games: int, among: Set[str]) -> List[Tuple[str, str]]:
    """Pairs within ``among`` (and self-pairs, for the seat rows) with fewer than ``games`` games."""
    pairs, selves = played
    return ([(a, b) for a, b, n in pairs if n < games and a in among and b in among]
            + [(a, a) for a, n in selves if n < games and a in among])


def _seat(sides: Mapping[Any, bool], a: bool) -> str:
    """The seat one side played in a game: its agent ids, sorted and joined by commas."""
    return ",".join(sorted(str(agent) for agent, plays_a in sides.items() if plays_a == a))
