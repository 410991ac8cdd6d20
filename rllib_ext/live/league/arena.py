"""One evaluation match, played the same way in the driver or in a Ray task.

:func:`play_match` plays ``games`` games of two pool snapshots in copies of the training
env, ``batch`` at a time in lockstep, and tallies them into the payoff table's rows
(:class:`MatchResult`); it records nothing and counts nothing, so the caller decides when
a match is paid for (:class:`~rllib_ext.live.league.evaluation.Matches`, which records it
first). Everything it needs but the two policies and the RNG is an :class:`Arena`, plain
picklable data, which is all :func:`remote_match` (a Ray task's body) gets besides the
snapshots' paths and a seed.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Callable, Dict, Hashable, List, Mapping, Protocol, Set, Tuple

import numpy as np

from ...act.numpy_policy import NumpyPolicy, stack_observations
from ...errors import CheckpointError
from ...pool.payoff import seat_row

if TYPE_CHECKING:
    from ray.rllib.env.multi_agent_env import MultiAgentEnv

#: ``(returns by policy id, learner, opponent) -> +1 / 0 / -1`` (the learner wins, draws, loses).
OutcomeFn = Callable[[Dict[str, float], str, str], int]
MAX_STEPS = 100_000  # per game: an env that never ends is refused, not waited for


class _Episode:
    """What a ``policy_mapping_fn`` may read of an episode, for the driver's games."""

    def __init__(self, episode_id: str) -> None:
        self.id_ = self.episode_id = episode_id


class Player(Protocol):
    """What plays one side of a match: a :class:`NumpyPolicy` (tests give stand-ins)."""

    def compute_actions(self, obs: "np.ndarray | Dict[str, np.ndarray]", *, explore: bool,
                        rng: np.random.Generator) -> Tuple[np.ndarray, object]: ...


#: ``(snapshot id, path) -> policy``: how a match loads a snapshot (tests give stand-ins).
PolicyLoader = Callable[[str, str], Player]


def load_snapshot(entry_id: str, path: str) -> NumpyPolicy:
    """A pool snapshot as a :class:`NumpyPolicy`; a recurrent one is refused (no state is carried)."""
    policy = NumpyPolicy.from_checkpoint(path)
    if policy.recurrent:
        raise CheckpointError(f"league evaluation: snapshot {entry_id!r} is recurrent; evaluation matches "
                              "play feed-forward policies only (leave evaluation= out)")
    return policy


@dataclass
class Arena:
    """Everything a match needs besides its two policies and its RNG, picklable: a Ray task gets it whole."""

    env_creator: Callable[[Dict[str, object]], "MultiAgentEnv"]
    env_config: Dict[str, object]
    mapping: Callable[[Hashable, _Episode], str]  # (agent, episode) -> policy id
    learner: str
    outcome: OutcomeFn
    batch: int = 256  # EvaluationSpec's: games in lockstep
    duplicate: bool = True  # the two games of a pair share the deal
    explore: bool = True  # sample each policy's action distribution


@dataclass
class MatchResult:
    """One match, as the driver records it: ``{(row a, row b): [wins, draws, losses from a's
    side, a's return sum, b's return sum]}``, its games and env steps, the seats seen."""

    tallies: Dict[Tuple[str, str], List[float]] = field(default_factory=dict)
    games: int = 0
    env_steps: int = 0
    seats: Set[str] = field(default_factory=set)


def remote_match(arena: Arena, load: PolicyLoader, a: str, b: str, paths: Tuple[str, str], games: int, seed: int,
                 first: int) -> MatchResult:
    """A Ray task's match: the snapshots loaded from ``paths``, fresh envs, an RNG seeded by ``seed``."""
    pa = load(a, paths[0])
    pb = pa if b == a else load(b, paths[1])
    rng = np.random.Generator(np.random.PCG64(seed))
    return play_match(arena, [], pa, pb, a, b, games, rng, first)


def play_match(arena: Arena, envs: "List[MultiAgentEnv]", pa: Player, pb: Player, a: str, b: str, games: int,
               rng: np.random.Generator, first: int = 0) -> MatchResult:
    """``games`` games of ``a`` (acting as ``pa``) against ``b`` (as ``pb``), tallied into the
    pair's own rows (unless ``a == b``) and the :func:`~rllib_ext.pool.payoff.seat_row` rows of
    the seats they played; game ``first + g`` puts ``a`` on the learner's side when even.

    Games run in lockstep, ``batch`` at a time, so each policy computes one batch of
    actions per step for all the games it plays in. ``envs`` is a cache of the env copies,
    filled as needed. The one code path of a match, in the driver or in a Ray task.
    """
    out = MatchResult()
    batch = int(arena.batch)
    for start in range(0, games, batch):
        for ret_a, ret_b, seat_a, seat_b, steps in play_games(arena, envs, pa, pb, min(batch, games - start),
                                                               first + start, rng):
            out.games += 1
            out.env_steps += steps
            result = int(arena.outcome({"a": ret_a, "b": ret_b}, "a", "b"))
            out.seats.update((seat_a, seat_b))
            rows = [(a, b)] if a != b else []
            if seat_a != seat_b:
                rows.append((seat_row(a, seat_a), seat_row(b, seat_b)))
            for key in rows:
                tally = out.tallies.setdefault(key, [0, 0, 0, 0.0, 0.0])
                tally[0 if result > 0 else 2 if result < 0 else 1] += 1
                tally[3] += ret_a
                tally[4] += ret_b
    return out


def play_games(arena: Arena, envs: "List[MultiAgentEnv]", pa: Player, pb: Player, n: int, first: int,
               rng: np.random.Generator) -> List[Tuple[float, float, str, str, int]]:
    """``n`` episodes at once; game ``first + g`` puts ``pa`` on the learner's side when even.
    Returns each game's total reward of ``pa``'s side and of ``pb``'s, the seat each
    side played (its agent ids, sorted and joined by commas: ``"0"`` for player 0) and
    its env steps (``env.step`` calls, as RLlib counts a training episode's)."""
    while len(envs) < n:  # copies of the training env, made once, then reused
        envs.append(arena.env_creator(arena.env_config))
    a_learns = [(first + g) % 2 == 0 for g in range(n)]
    deal = (lambda g: g // 2) if arena.duplicate else (lambda g: g)  # first and batch are even
    deals = deal(n - 1) + 1
    ids = [uuid.UUID(int=int(rng.integers(0, 2**63))).hex for _ in range(deals)]
    seeds = [int(rng.integers(0, 2**31)) for _ in range(deals)]
    episodes = [_Episode(ids[deal(g)]) for g in range(n)]
    obs = [env.reset(seed=seeds[deal(g)])[0] for g, env in enumerate(envs[:n])]
    sides: List[Dict[Hashable, bool]] = [{} for _ in range(n)]  # agent -> plays pa

    def plays_a(g: int, agent: Hashable) -> bool:
        if agent not in sides[g]:
            # A self-play episode of the training mapping (seat_mapping(self_share=...)) gives
            # the learner every seat; a match still needs two sides: the first such agent
            # (an agent holds the learner's side when its entry equals a_learns[g]).
            learner = arena.mapping(agent, episodes[g]) == arena.learner and a_learns[g] not in sides[g].values()
            sides[g][agent] = learner == a_learns[g]
        return sides[g][agent]

    totals = np.zeros((n, 2))
    steps = [0] * n
    active = list(range(n))
    for _ in range(MAX_STEPS):
        actions: List[Dict[Hashable, object]] = [{} for _ in range(n)]
        for policy, mine in ((pa, True), (pb, False)):
            todo = [(g, agent) for g in active for agent in obs[g] if plays_a(g, agent) == mine]
            if todo:
                stacked = stack_observations([obs[g][agent] for g, agent in todo])
                acts, _ = policy.compute_actions(stacked, explore=arena.explore, rng=rng)
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

def _seat(sides: Mapping[Hashable, bool], a: bool) -> str:
    """The seat one side played in a game: its agent ids, sorted and joined by commas."""
    return ",".join(sorted(str(agent) for agent, plays_a in sides.items() if plays_a == a))
