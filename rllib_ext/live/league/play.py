"""On the env runners: each finished episode's outcome, counted per league opponent.

A callback in RLlib's callbacks list (beside the user's own, so theirs still runs) compares
``of``'s total return in the episode with each opponent's (a slot, or an exploiter) and
counts a win, draw or loss for that opponent, with both sides' returns. Counts stay on the env runner until the driver takes them once per iteration
(:func:`take_outcomes`, through the env runners' ``foreach_env_runner``), and the driver
credits them to the snapshot that sat in the slot: between two ``train()`` calls the slots
do not change, so on synchronous algorithms the credit is exact.
"""

from __future__ import annotations

import functools
from typing import Any, Callable, Dict, List, Optional, Sequence

from ray.rllib.callbacks.callbacks import RLlibCallback
from ray.rllib.utils import force_list

# id(env runner) -> {opponent: [wins, draws, losses, of's returns, the opponent's returns]}
# (from of's side): one entry per env runner in this process
_COUNTS: Dict[int, Dict[str, List[float]]] = {}

Outcome = Callable[[Dict[str, float], str, str], int]


def default_outcome(returns: Dict[str, float], of: str, slot: str) -> int:
    """+1 when ``of``'s agents' total reward is higher than the slot's, -1 when lower, 0 on a tie."""
    return (returns[of] > returns[slot]) - (returns[of] < returns[slot])


def episode_returns(episode: Any, prev_chunks: Optional[Sequence[Any]] = None) -> Dict[str, float]:
    """Total reward per policy/module id in one finished episode, either API stack.

    The new stack hands ``on_episode_end`` the last chunk of a MultiAgentEpisode (earlier
    chunks in ``prev_chunks``); the old stack an EpisodeV2 with ``agent_rewards``.
    """
    out: Dict[str, float] = {}
    if hasattr(episode, "module_for"):
        for chunk in [*(prev_chunks or []), episode]:
            for agent_id, agent_episode in chunk.agent_episodes.items():
                module_id = chunk.module_for(agent_id)
                out[module_id] = out.get(module_id, 0.0) + float(agent_episode.get_return())
        return out
    for (_, policy_id), reward in episode.agent_rewards.items():
        out[policy_id] = out.get(policy_id, 0.0) + float(reward)
    return out


def count_episode(runner: object, returns: Dict[str, float], of: str, slots: Sequence[str], outcome: Outcome) -> None:
    """Add one episode's outcome against every opponent that played in it (``of`` must have played)."""
    if of not in returns:
        return
    counts = _COUNTS.setdefault(id(runner), {})
    for slot in slots:
        if slot in returns:
            result = int(outcome(returns, of, slot))
            row = counts.setdefault(slot, [0, 0, 0, 0.0, 0.0])
            row[0 if result > 0 else 2 if result < 0 else 1] += 1
            row[3] += returns[of]
            row[4] += returns[slot]


def take_outcomes(runner: object) -> Dict[str, List[float]]:
    """This env runner's counts since the last call, reset (run on each env runner)."""
    return _COUNTS.pop(id(runner), {})


class LeagueCallbackMixin:
    """Counts outcomes in ``on_episode_end``, then calls the next callback class's own.

    Kept under this name: configs that rllib_ext 0.4.0 checkpointed hold a class built on it.
    """

    league_of: str = ""
    league_slots: Sequence[str] = ()
    league_outcome: Optional[Outcome] = None

    def on_episode_end(self, **kwargs: Any) -> None:
        runner = kwargs.get("env_runner") or kwargs.get("worker")
        returns = episode_returns(kwargs["episode"], kwargs.get("prev_episode_chunks"))
        count_episode(runner, returns, self.league_of, self.league_slots, self.league_outcome or default_outcome)
        super().on_episode_end(**kwargs)  # type: ignore[misc]  # a mixin: RLlibCallback comes after it in the MRO


class LeagueCallbacks(LeagueCallbackMixin, RLlibCallback):
    """The league's entry in RLlib's callbacks list: one per env runner, told what to count."""

    def __init__(self, of: str = "", slots: Sequence[str] = (), outcome: Optional[Outcome] = None) -> None:
        super().__init__()
        self.league_of, self.league_slots, self.league_outcome = of, tuple(slots), outcome


def league_callbacks(existing: object, of: str, slots: Sequence[str], outcome: Optional[Outcome]) -> List[Any]:
    """RLlib's callbacks list: ``existing`` (a class or a list), then ours, built with its settings.

    ``league()`` called again replaces ours. The old stack instantiates one class: the
    config composes the list into one when it is validated (``Backend.callbacks_class``).
    """
    # Any: RLlib annotates the list as classes, but it instantiates any callable (ours: a partial).
    ours = functools.partial(LeagueCallbacks, of=of, slots=tuple(slots), outcome=outcome)
    theirs = [_user_part(c) for c in force_list(existing) if not _is_ours(c)]
    return [*(c for c in theirs if c is not RLlibCallback), ours]


def _is_ours(callbacks: object) -> bool:
    return isinstance(callbacks, functools.partial) and callbacks.func is LeagueCallbacks


def _user_part(callbacks: object) -> object:
    """A league class as rllib_ext 0.4.0 built it (our mixin in front of the user's): the user's."""
    if isinstance(callbacks, type) and issubclass(callbacks, LeagueCallbackMixin) and callbacks is not LeagueCallbacks:
        return callbacks.__mro__[2]
    return callbacks
