"""OpenSpiel as the referee: numpy policies as OpenSpiel policies, and their exact exploitability.

A league's progress is judged by something no one here wrote: OpenSpiel computes the
exploitability of a policy (how much a best response gains against it; 0 at a Nash
equilibrium) exactly, on small games such as Kuhn and Leduc poker. The policies here
act on what RLlib's ``OpenSpielEnv`` gives them (the state's ``observation_tensor()``, or
its ``information_state_tensor()`` for a policy trained on
``OpenSpielGame(information_state=True)``, told apart by the policy's input size; and for
a masking policy the legal actions' mask); an unmasked policy's action the game
forbids is replaced, as that env does, by a uniformly random legal one. ``open_spiel`` is
imported inside the functions (``pip install open_spiel``).
"""

from __future__ import annotations

from types import ModuleType
from typing import Dict, List, Mapping, Protocol, Sequence, Tuple

import numpy as np

from ..errors import InvalidArgumentError, MissingDependencyError
from .numpy_policy import ACTION_MASK, OBSERVATIONS, NumpyPolicy, Observations, input_space

# What we use of OpenSpiel's objects (open_spiel has no type information).


class GameType(Protocol):
    """A ``pyspiel.GameType``."""

    @property
    def provides_information_state_tensor(self) -> bool: ...


class Game(Protocol):
    """A ``pyspiel.Game``."""

    def num_players(self) -> int: ...
    def get_type(self) -> GameType: ...
    def observation_tensor_size(self) -> int: ...
    def information_state_tensor_size(self) -> int: ...


class GameState(Protocol):
    """A ``pyspiel.State``: what a policy acts on."""

    def observation_tensor(self) -> List[float]: ...
    def information_state_tensor(self) -> List[float]: ...
    def legal_actions(self) -> List[int]: ...


class TabularPolicy(Protocol):
    """OpenSpiel's ``policy.TabularPolicy``: one row of action probabilities per state."""

    states: List[GameState]
    action_probability_array: np.ndarray


def _openspiel() -> Tuple[ModuleType, ModuleType, ModuleType, ModuleType]:
    try:
        import pyspiel
        from open_spiel.python import policy
        from open_spiel.python.algorithms import exploitability, policy_aggregator
    except ImportError as e:
        raise MissingDependencyError("judging a policy on an OpenSpiel game needs open_spiel (pip install open_spiel)") from e
    return pyspiel, policy, exploitability, policy_aggregator


def action_probabilities(policy: NumpyPolicy, observation: Sequence[float], legal: Sequence[int]) -> np.ndarray:
    """The policy's probability of each action as the env plays it.

    A masking policy (:attr:`NumpyPolicy.masked`) is given the legal actions' mask, as
    ``OpenSpielGame(action_mask=True)`` gives it, and puts no probability on the others.
    An unmasked policy's probability of a forbidden action goes to the legal ones
    uniformly (RLlib's ``OpenSpielEnv`` replaces it by a random legal action)."""
    x = np.asarray(observation, np.float32)[None]
    obs: Observations = x
    if policy.masked:
        mask = np.zeros((1, int(policy.action_space.n or 0)), np.float32)
        mask[0, list(legal)] = 1.0
        obs = {OBSERVATIONS: x, ACTION_MASK: mask}
    logits = np.asarray(policy.forward(obs).action_dist_inputs[0], np.float64)
    p: np.ndarray = np.exp(logits - logits.max())
    p /= p.sum()
    out = np.zeros_like(p)
    out[list(legal)] = p[list(legal)]
    out[list(legal)] += (1.0 - out.sum()) / len(legal)
    return out


def reads_information_state(game: Game, policy: NumpyPolicy) -> bool:
    """Whether ``policy`` reads the information-state tensor (else the observation tensor),
    from its input size: what it was trained on is not recorded otherwise.

    Raises:
        InvalidArgumentError: the input size is neither tensor's size.
    """
    size = int(np.prod(input_space(policy.observation_space).shape or (0,)))
    sizes = {"observation": int(game.observation_tensor_size())}
    if game.get_type().provides_information_state_tensor:
        sizes["information_state"] = int(game.information_state_tensor_size())
    if size not in sizes.values():
        raise InvalidArgumentError(
            f"policy {policy.policy_id!r} reads {size} numbers, but {game} gives "
            + " or ".join(f"{n} ({k}_tensor)" for k, n in sizes.items())
            + ": it was trained on another game")
    return size != sizes["observation"]


def tabular_policy(game: "str | Game", policy: NumpyPolicy) -> TabularPolicy:
    """An OpenSpiel ``TabularPolicy`` of ``game`` (or its name) that plays as ``policy`` does in every seat.

    The bridge to OpenSpiel's own algorithms (expected values, best responses) for a policy
    read from a checkpoint or a pool; :func:`exploitability` is built on it. It reads the
    tensor the policy reads (:func:`reads_information_state`).
    """
    pyspiel, os_policy, _, _ = _openspiel()
    game = pyspiel.load_game(game) if isinstance(game, str) else game
    table: TabularPolicy = os_policy.TabularPolicy(game)
    info = reads_information_state(game, policy)
    for i, state in enumerate(table.states):
        tensor = state.information_state_tensor() if info else state.observation_tensor()
        table.action_probability_array[i] = action_probabilities(policy, tensor, state.legal_actions())
    return table


def exploitability(game: "str | Game", mixture: "Mapping[NumpyPolicy, float] | Sequence[Mapping[NumpyPolicy, float]]") -> float:
    """OpenSpiel's exact exploitability of a mixture of policies, each playing every seat,
    or of one mixture per seat.

    A mixture is what a league deploys: one member drawn per episode, with these
    probabilities (e.g. ``PolicyPool.meta_strategy``). One member with weight 1 is that
    policy alone. A list of mixtures, one per player, draws from the mixture of the seat
    the policy sits in (``PolicyPool.meta_strategy_by_seat``).

    Args:
        game: an OpenSpiel game or its name (``"kuhn_poker"``, ``"leduc_poker"``).
        mixture: ``{NumpyPolicy: probability}``, or a list of them indexed by player; the
            probabilities are normalized.

    Returns:
        The mean over players of what a best response gains (OpenSpiel's
        ``exploitability``; 0 at a Nash equilibrium).

    Raises:
        MissingDependencyError: open_spiel is not installed.
        InvalidArgumentError: an empty mixture or no positive weight, or not one mixture per player.
    """
    pyspiel, _, os_exploitability, aggregator = _openspiel()
    game = pyspiel.load_game(game) if isinstance(game, str) else game
    players = list(range(game.num_players()))
    seats = [mixture] * len(players) if isinstance(mixture, Mapping) else list(mixture)
    if len(seats) != len(players):
        raise InvalidArgumentError(f"exploitability(mixture=...): {len(seats)} mixtures for a game of {len(players)} "
                                   "players: give one per player")
    members: Dict[NumpyPolicy, int] = {}
    weights: List[Dict[int, float]] = []
    for seat in seats:
        kept = {p: float(w) for p, w in seat.items() if w > 0}
        if not kept:
            raise InvalidArgumentError("exploitability(mixture=...): an empty mixture (no positive weight): give at "
                                       "least one policy a positive weight")
        total = sum(kept.values())
        weights.append({members.setdefault(p, len(members)): w / total for p, w in kept.items()})
    tables = [tabular_policy(game, p) for p in members]
    if len(tables) == 1:
        return float(os_exploitability.exploitability(game, tables[0]))
    per_player = [[w.get(k, 0.0) for k in range(len(tables))] for w in weights]
    joint = aggregator.PolicyAggregator(game).aggregate(players, [tables for _ in players], per_player)
    return float(os_exploitability.exploitability(game, joint))
