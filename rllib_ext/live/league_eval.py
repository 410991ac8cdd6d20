"""Evaluation matches: pool snapshots played against each other, in the driver, for the payoff table.

A meta-strategy is solved from the table, so the table must hold games the snapshots
really played, many per pair. After each iteration the league plays the least-played
pairs of its population, ``games`` each, until every pair has ``min_games``. The
snapshots act as :class:`~rllib_ext.act.numpy_policy.NumpyPolicy` (numpy, filter
included) in one copy of the training env made in the driver: no env runner, learner or
module changes, and the training batch does not pay for the matches.

Sides: the algorithm's ``policy_mapping_fn`` tells, for each game, which agents sit on
the learner's side (those it maps to the learner) and which on the opponents' (those it
maps to a slot or an exploiter); the two snapshots swap sides every other game, so each
plays every seat equally often.
"""

from __future__ import annotations

import inspect
import uuid
from dataclasses import dataclass
from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence, Tuple

import numpy as np

from ..act.numpy_policy import NumpyPolicy
from ..errors import CheckpointError
from .league_play import default_outcome

#: ``(returns by policy id, learner, opponent) -> +1 / 0 / -1``
OutcomeFn = Callable[[Dict[str, float], str, str], int]
MAX_STEPS = 100_000  # per game: an env that never ends is refused, not waited for


@dataclass
class EvaluationSpec:
    """``league(..., evaluation={...})``, as plain data."""

    games: int = 50  # per pair and round
    min_games: int = 200  # a pair is played until it has this many games
    pairs: int = 6  # pairs per iteration, at most
    explore: bool = True  # act by sampling each policy's action distribution (mixed strategies)
    batch: int = 256  # games played in lockstep (one batch of actions per policy and step)

    def check(self) -> None:
        """Refuse counts that cannot schedule a match."""
        for name in ("games", "min_games", "pairs", "batch"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"league(evaluation={{{name!r}: {getattr(self, name)}}}): must be >= 1")


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
        mapping = algo.config.policy_mapping_fn
        # The old stack's mapping functions also take the worker (None here: no worker plays).
        needs_worker = len([p for p in inspect.signature(mapping).parameters.values()
                            if p.kind == p.POSITIONAL_OR_KEYWORD and p.default is p.empty]) >= 3
        self.mapping = (lambda agent, episode: mapping(agent, episode, None)) if needs_worker else mapping

    def play_due(self, pool: Any, population: Sequence[str]) -> int:
        """Play the least-played pairs of ``population`` that lack games; return the games played."""
        if len(population) < 2:
            return 0
        table = pool.payoff(list(population))
        due = [(a, b) for a, b, n in table.least_played() if n < self.spec.min_games][: self.spec.pairs]
        played = 0
        for a, b in due:
            wins, draws, losses, ret_a, ret_b = self.match(pool, a, b, int(self.spec.games))
            pool.record_games(a, b, wins=wins, draws=draws, losses=losses, return_a=ret_a, return_b=ret_b)
            played += wins + draws + losses
        self.policies = {k: v for k, v in self.policies.items() if k in set(population)}
        return played

    def match(self, pool: Any, a: str, b: str, games: int) -> Tuple[int, int, int, float, float]:
        """``games`` games of ``a`` against ``b``: (wins, draws, losses from a's side, a's and b's return sums).

        Games run in lockstep, ``batch`` at a time, so each policy computes one batch of
        actions per step for all the games it plays in.
        """
        pa, pb = self._policy(pool, a), self._policy(pool, b)
        counts, sums = [0, 0, 0], [0.0, 0.0]
        for start in range(0, games, self.spec.batch):
            for ret_a, ret_b in self._games(pa, pb, min(self.spec.batch, games - start), start):
                result = int(self.outcome({"a": ret_a, "b": ret_b}, "a", "b"))
                counts[0 if result > 0 else 2 if result < 0 else 1] += 1
                sums[0] += ret_a
                sums[1] += ret_b
        return counts[0], counts[1], counts[2], sums[0], sums[1]

    def state(self) -> Dict[str, Any]:
        return {"rng": self.rng.bit_generator.state}

    def set_state(self, state: Mapping[str, Any]) -> None:
        self.rng.bit_generator.state = dict(state["rng"])

    # ------------------------------------------------------------------ one game
    def _policy(self, pool: Any, entry_id: str) -> NumpyPolicy:
        if entry_id not in self.policies:
            policy = NumpyPolicy.from_checkpoint(pool.get(entry_id).path)
            if policy.recurrent:
                raise CheckpointError(f"league evaluation: snapshot {entry_id!r} is recurrent; evaluation matches "
                                      "play feed-forward policies only (leave evaluation= out)")
            self.policies[entry_id] = policy
        return self.policies[entry_id]

    def _games(self, pa: NumpyPolicy, pb: NumpyPolicy, n: int, first: int) -> List[Tuple[float, float]]:
        """``n`` episodes at once; game ``first + g`` puts ``pa`` on the learner's side when even.
        Returns each game's total reward of ``pa``'s side and of ``pb``'s."""
        envs = self._envs(n)
        a_learns = [(first + g) % 2 == 0 for g in range(n)]
        episodes = [_Episode(uuid.UUID(int=int(self.rng.integers(0, 2**63))).hex) for _ in range(n)]
        obs = [env.reset(seed=int(self.rng.integers(0, 2**31)))[0] for env in envs]
        sides: List[Dict[Any, bool]] = [{} for _ in range(n)]  # agent -> plays pa

        def plays_a(g: int, agent: Any) -> bool:
            if agent not in sides[g]:
                sides[g][agent] = (self.mapping(agent, episodes[g]) == self.learner) == a_learns[g]
            return sides[g][agent]

        totals = np.zeros((n, 2))
        active = list(range(n))
        for _ in range(MAX_STEPS):
            actions: List[Dict[Any, Any]] = [{} for _ in range(n)]
            for policy, mine in ((pa, True), (pb, False)):
                todo = [(g, agent) for g in active for agent in obs[g] if plays_a(g, agent) == mine]
                if todo:
                    batch = np.stack([np.asarray(obs[g][agent], np.float32) for g, agent in todo])
                    acts, _ = policy.compute_actions(batch, explore=self.spec.explore, rng=self.rng)
                    for (g, agent), act in zip(todo, acts):
                        actions[g][agent] = act
            still = []
            for g in active:
                obs[g], rewards, terminated, truncated, _ = envs[g].step(actions[g])
                for agent, r in rewards.items():
                    totals[g, 0 if plays_a(g, agent) else 1] += float(r)
                if not (terminated.get("__all__") or truncated.get("__all__")):
                    still.append(g)
            active = still
            if not active:
                return [(float(x), float(y)) for x, y in totals]
        raise CheckpointError(f"league evaluation: an episode did not end within {MAX_STEPS} steps")

    def _envs(self, n: int) -> List[Any]:
        """``n`` copies of the training env (made once, then reused)."""
        while len(self.envs) < n:
            self.envs.append(self.algo.env_creator(self.algo.config.env_config))
        return self.envs[:n]
