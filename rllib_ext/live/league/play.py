"""On the env runners: each finished episode's outcome, counted per league opponent.

A callback class (composed in front of the user's own, so theirs still runs) compares
``of``'s total return in the episode with each opponent's (a slot, or an exploiter) and
counts a win, draw or loss for that opponent, with both sides' returns. Counts stay on the env runner until the driver takes them once per iteration
(:func:`take_outcomes`, through the env runners' ``foreach_env_runner``), and the driver
credits them to the snapshot that sat in the slot: between two ``train()`` calls the slots
do not change, so on synchronous algorithms the credit is exact.
"""

from __future__ import annotations

from typing import Any, Callable, Dict, List, Optional, Sequence

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


def count_episode(runner: Any, returns: Dict[str, float], of: str, slots: Sequence[str], outcome: Outcome) -> None:
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


def take_outcomes(runner: Any) -> Dict[str, List[float]]:
    """This env runner's counts since the last call, reset (run on each env runner)."""
    return _COUNTS.pop(id(runner), {})


class LeagueCallbackMixin:
    """Counts outcomes in ``on_episode_end``, then calls the next callback class's own."""

    league_of: str = ""
    league_slots: Sequence[str] = ()
    league_outcome: Optional[Outcome] = None

    def on_episode_end(self, **kwargs: Any) -> None:
        runner = kwargs.get("env_runner") or kwargs.get("worker")
        returns = episode_returns(kwargs["episode"], kwargs.get("prev_episode_chunks"))
        count_episode(runner, returns, self.league_of, self.league_slots, self.league_outcome or default_outcome)
        super().on_episode_end(**kwargs)  # type: ignore[misc]


def league_callbacks(existing: Any, of: str, slots: Sequence[str], outcome: Optional[Outcome]) -> Any:
    """``existing`` callbacks (a class, or a list of classes on the new stack) with ours in front."""
    from ray.rllib.callbacks.callbacks import RLlibCallback

    attrs = {"league_of": of, "league_slots": tuple(slots), "league_outcome": staticmethod(outcome) if outcome else None}
    if isinstance(existing, (list, tuple)):
        return [*existing, type("LeagueCallbacks", (LeagueCallbackMixin, RLlibCallback), attrs)]
    base = existing or RLlibCallback
    if isinstance(base, type) and issubclass(base, LeagueCallbackMixin):  # league() called again: replace ours
        base = base.__mro__[2]
    return type(f"League{getattr(base, '__name__', 'Callbacks')}", (LeagueCallbackMixin, base), attrs)
