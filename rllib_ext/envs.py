"""A tiny multi-agent env for the demo, tests and benches.

It lives in the package (not in examples/) so that remote Ray workers can import it.
Each agent sees its own Box observation (sizes may differ per agent) and is rewarded
for choosing action 1 when the first observation entry is positive, else action 0:
learnable in a few iterations, so "did training change the weights?" is meaningful.
"""

from __future__ import annotations

import functools
import random
from typing import Any, Callable, Dict, List, Mapping, Optional, Tuple

import gymnasium as gym
import numpy as np
from ray.rllib.env.multi_agent_env import MultiAgentEnv

from .errors import InvalidArgumentError


class SignGame(MultiAgentEnv):
    """Agents ``agent_<i>``; ``env_config = {"obs_dims": [4, 4, 6], "episode_len": 10}``.

    ``"obs_offset": 5.0`` shifts every observation (and its space) by that much, so that an
    observation filter's statistics matter; the reward still reads the unshifted sign.
    ``"box_actions": k`` gives every agent a ``Box(-1, 1, (k,))`` action instead of
    ``Discrete(2)``, rewarded for ``action[0]`` near the sign of the first observation entry.
    """

    def __init__(self, config: Optional[Dict[str, Any]] = None):
        super().__init__()
        config = dict(config or {})
        dims = list(config.get("obs_dims", [4, 4, 4]))
        self.episode_len = int(config.get("episode_len", 10))
        self.offset = float(config.get("obs_offset", 0.0))
        agents = [f"agent_{i}" for i in range(len(dims))]
        self.agents = self.possible_agents = list(agents)
        image = tuple(int(d) for d in config.get("image_obs") or ())
        self._obs_shapes = {a: image or (int(d),) for a, d in zip(agents, dims)}
        self.observation_spaces = {
            a: gym.spaces.Box(self.offset - 1.0, self.offset + 1.0, shape, np.float32)
            for a, shape in self._obs_shapes.items()
        }
        box = int(config.get("box_actions") or 0)
        self._box_actions = box > 0
        self.action_spaces = {
            a: gym.spaces.Box(-1.0, 1.0, (box,), np.float32) if box else gym.spaces.Discrete(2) for a in self.agents
        }
        self._rng = np.random.default_rng(config.get("seed"))
        self._t = 0
        self._obs: Dict[str, np.ndarray] = {}

    def _observe(self) -> Dict[str, np.ndarray]:
        self._obs = {
            a: self._rng.uniform(-1, 1, shape).astype(np.float32) for a, shape in self._obs_shapes.items()
        }
        return {a: (o + np.float32(self.offset)).astype(np.float32) for a, o in self._obs.items()}

    def reset(self, *, seed: Optional[int] = None, options: Optional[dict] = None):
        if seed is not None:
            self._rng = np.random.default_rng(seed)
        self._t = 0
        return self._observe(), {}

    def _reward(self, agent: str, act: "int | np.ndarray") -> float:
        sign = np.ravel(self._obs[agent])[0] > 0
        if self._box_actions:  # every agent's action space is the Box
            return -abs(float(np.ravel(act)[0]) - (1.0 if sign else -1.0))
        return float(int(act) == int(sign))

    def step(self, action_dict):
        rewards = {a: self._reward(a, act) for a, act in action_dict.items()}
        self._t += 1
        done = self._t >= self.episode_len
        obs = self._observe()
        terminateds = {a: done for a in action_dict}
        terminateds["__all__"] = done
        truncateds = {a: False for a in action_dict}
        truncateds["__all__"] = False
        return obs, rewards, terminateds, truncateds, {}


def agent_to_policy(agent_id: str, *args: object, **kwargs: object) -> str:
    """Map ``agent_<i>`` to ``policy_<i>`` (works for both API stacks' signatures)."""
    return "policy_" + str(agent_id).split("_", 1)[1]


PLAYERS = ("player_0", "player_1")  # HighCard's agents


class HighCard(MultiAgentEnv):
    """A two-player zero-sum card game with a real skill gradient, for self-play.

    Each of ``player_0`` and ``player_1`` draws a private card ``0..cards-1`` (observed as
    ``card / (cards - 1)``) and calls (1) or folds (0), once. Both call: the higher card
    wins 2 (a tie is 0). One calls: the caller wins 1. Both fold: 0. Rewards are zero-sum.
    Against a player that calls at random, calling is worth more than folding only with a
    high enough card, so a learned threshold clearly beats the untrained policy (and its
    early snapshots).
    """

    def __init__(self, config: Optional[Dict[str, Any]] = None):
        super().__init__()
        config = dict(config or {})
        self.cards = int(config.get("cards", 10))
        self.agents = self.possible_agents = list(PLAYERS)
        self.observation_spaces = {a: gym.spaces.Box(0.0, 1.0, (1,), np.float32) for a in PLAYERS}
        self.action_spaces = {a: gym.spaces.Discrete(2) for a in PLAYERS}
        self._rng = np.random.default_rng(config.get("seed"))
        self._hand: Dict[str, int] = {}

    def reset(self, *, seed: Optional[int] = None, options: Optional[dict] = None):
        if seed is not None:
            self._rng = np.random.default_rng(seed)
        self._hand = {a: int(self._rng.integers(self.cards)) for a in PLAYERS}
        return {a: np.array([c / (self.cards - 1)], np.float32) for a, c in self._hand.items()}, {}

    def step(self, action_dict):
        a, b = (int(action_dict[p]) for p in PLAYERS)
        ca, cb = (self._hand[p] for p in PLAYERS)
        if a and b:
            r = 2.0 * ((ca > cb) - (ca < cb))
        else:
            r = float(a - b)  # the one who called wins 1 (0 when both fold)
        rewards = {"player_0": r, "player_1": -r}
        obs = {p: np.array([self._hand[p] / (self.cards - 1)], np.float32) for p in PLAYERS}
        done = {p: True for p in PLAYERS}
        done["__all__"] = True
        return obs, rewards, done, {p: False for p in PLAYERS} | {"__all__": False}, {}


def seat_mapping(main: str, slots: "list[str]", exploiters: "list[str] | tuple[str, ...]" = (),
                 exploiter_share: float = 0.0, slot_seats: "Optional[Dict[str, str]]" = None,
                 self_share: float = 0.0) -> Callable[..., str]:
    """A policy mapping function for two-seat self-play: per episode, ``main`` takes one
    seat at random and one of ``slots`` the other (works on both API stacks). With
    ``exploiters``, a share ``exploiter_share`` of the episodes puts one of them against
    ``main`` instead of a slot (an exploiter plays only ``main``). With ``slot_seats``
    (``{slot: seat}``, as given to ``league(slot_seats=...)``), the opponent in seat ``s``
    (the agent id as a string) takes one of the slots of that seat. A share ``self_share`` of
    the episodes puts ``main`` in both seats: plain self-play, which learns faster than play
    against frozen snapshots, while the slots keep it from forgetting what beat its past
    selves (AlphaStar's main agents mix both). Raises InvalidArgumentError for a slot that
    ``slot_seats`` gives no seat, or a share outside [0, 1]."""
    import zlib

    for name, share in (("exploiter_share", exploiter_share), ("self_share", self_share)):
        if not 0.0 <= share <= 1.0:
            raise InvalidArgumentError(f"seat_mapping({name}={share!r}): a share of the episodes, in [0, 1]")
    by_seat: Dict[str, List[str]] = {}
    seats = slot_seats or {}
    for slot in slots if seats else ():
        if slot not in seats:
            raise InvalidArgumentError(f"seat_mapping(slot_seats=...): slot {slot!r} has no seat; give every slot one")
        by_seat.setdefault(str(seats[slot]), []).append(slot)

    def mapping(agent_id: object, episode: object = None, *args: object, **kwargs: object) -> str:
        key = getattr(episode, "id_", None) or getattr(episode, "episode_id", None) or 0
        h = zlib.crc32(str(key).encode())
        main_seat = h % 2
        if str(agent_id).endswith(str(main_seat)) or zlib.crc32(f"self {key}".encode()) % 1000 < self_share * 1000:
            return main
        if exploiters and (h >> 8) % 1000 < exploiter_share * 1000:
            return exploiters[(h >> 20) % len(exploiters)]
        choices = by_seat.get(str(agent_id), slots)  # by_seat is empty without slot_seats
        return choices[(h // 2) % len(choices)]

    return mapping


class OpenSpielGame(MultiAgentEnv):
    """RLlib's own ``OpenSpielEnv`` on a game named in ``env_config = {"game": "kuhn_poker"}``.

    A class of this module (not a lambda), so env runners import it by reference. Agents
    are the players ``0, 1``; observations the state's ``observation_tensor()``.

    ``OpenSpielEnv`` publishes no legal-action mask: it replaces an action the game forbids
    by a random legal one and adds a -0.1 penalty to the player's reward. The penalty makes
    the game's payoffs no longer zero-sum, so a Nash meta-strategy over a payoff table of
    such games is refused; ``"illegal_penalty": False`` keeps the substitution (which
    :func:`rllib_ext.exploitability` models) and drops the penalty, so the rewards are the
    game's own returns (Leduc poker has illegal raises, Kuhn has none).

    ``reset(seed=...)`` decides the chance outcomes (the deal): ``OpenSpielEnv`` draws them
    from numpy's global generator and ignores the seed, so two games could not be dealt the
    same cards, which duplicate evaluation matches need (``league_eval``).

    ``"action_mask": True`` publishes the legal actions: each observation becomes
    ``{"observations": observation_tensor, "action_mask": 1.0 per legal action}`` (RLlib's
    action-masking layout), for a policy that masks them itself
    (:class:`rllib_ext.masking.MaskedPPOTorchRLModule`), so that what plays, what is
    snapshotted and what OpenSpiel judges is one policy over the legal actions only.

    ``"information_state": True`` observes the state's ``information_state_tensor()`` instead:
    the player's whole history (perfect recall). Leduc's ``observation_tensor()`` keeps only
    the chips in the pot, so its 936 information states look like 516 observations, and a
    policy cannot tell e.g. a raise in the first round from one in the second.

    With ``"action_mask": True`` or ``"report_illegal": True``, every step's info tells, for
    the player who acted, whether its action was illegal (``{"illegal_action": True}``), so
    a run can count the substitutions. New API stack only: the old stack refuses infos for
    an agent without an observation, which the player who just acted usually is.
    """

    def __new__(cls, config: Optional[Dict[str, Any]] = None) -> Any:
        import pyspiel
        from ray.rllib.env.wrappers.open_spiel import OpenSpielEnv

        config = dict(config or {})
        game = pyspiel.load_game(config.get("game", "kuhn_poker"))
        mask = bool(config.get("action_mask", False))
        return _seeded_env(OpenSpielEnv, bool(config.get("illegal_penalty", True)), mask,
                           mask or bool(config.get("report_illegal", False)),
                           bool(config.get("information_state", False)))(game)


PlayerDict = Dict[int, object]  # OpenSpielEnv's per-player dicts (observations, rewards, infos), by player number


@functools.lru_cache(maxsize=None)
def _seeded_env(base: type, penalty: bool, mask: bool = False, report: bool = False,
                information_state: bool = False) -> type:
    """``base`` (RLlib's ``OpenSpielEnv``) with seeded chance, without ``penalty`` the game's
    returns as rewards, with ``mask`` the legal actions in the observation, with ``report``
    illegal moves in the infos and with ``information_state`` the information-state tensor
    as the observation (one class per kind, made on first use: pyspiel and the wrapper load
    only when a game is made)."""

    class OpenSpielEnvSeeded(base):
        def __init__(self, game: object) -> None:
            super().__init__(game)
            self.observation_space: gym.spaces.Dict
            if information_state:
                size = (self.env.information_state_tensor_size(),)
                self.observation_space = gym.spaces.Dict({
                    aid: gym.spaces.Box(float("-inf"), float("inf"), size, np.float32)
                    for aid in self.observation_space.spaces})
            if mask:
                n = self.env.num_distinct_actions()
                self.observation_space = gym.spaces.Dict({
                    aid: gym.spaces.Dict({"observations": space,
                                          "action_mask": gym.spaces.Box(0.0, 1.0, (n,), np.float32)})
                    for aid, space in self.observation_space.spaces.items()
                })

        def reset(self, *, seed: Optional[int] = None, options: Optional[dict] = None) -> Tuple[PlayerDict, PlayerDict]:
            if seed is not None or "_chance" not in self.__dict__:
                self._chance = random.Random(seed)  # made per game in evaluation: cheaper than numpy's
            obs, infos = super().reset(seed=seed, options=options)
            return self.observe(obs), infos

        def step(self, action: Mapping[int, int]) -> Tuple[PlayerDict, ...]:
            player = self.state.current_player()
            illegal = player in action and int(action[player]) not in self.state.legal_actions()
            obs, rewards, terminateds, truncateds, infos = super().step(action)
            if not penalty:
                rewards = dict(enumerate(self.state.returns()))
            if report and player in action:
                infos = {**infos, player: {"illegal_action": illegal}}
            return self.observe(obs), rewards, terminateds, truncateds, infos

        def observe(self, obs: PlayerDict) -> PlayerDict:
            """The observations: with ``information_state`` each player's information-state
            tensor, and with ``mask`` each with its player's legal actions."""
            if information_state:
                obs = {aid: np.asarray(self.state.information_state_tensor(aid), np.float32) for aid in obs}
            if not mask:
                return obs
            return {aid: {"observations": o,
                          "action_mask": np.asarray(self.state.legal_actions_mask(aid), np.float32)}
                    for aid, o in obs.items()}

        def _solve_chance_nodes(self) -> None:
            while self.state.is_chance_node():
                outcomes = self.state.chance_outcomes()
                u, action = self._chance.random(), outcomes[-1][0]
                for a, p in outcomes:
                    u -= p
                    if u < 0:
                        action = a
                        break
                self.state.apply_action(action)

    return OpenSpielEnvSeeded
