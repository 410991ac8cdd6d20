"""What the league adds to the ``...Partial`` config and algorithm classes.

Config: ``snapshot_policies(pool, policies, every=, keep=)`` and ``league(pool, of=, slots=,
sample=, refresh_every=, seed=, outcome_fn=)``, kept as plain dicts (so they survive
``to_dict()`` and Tune), also accepted as the plain-dict keys ``"snapshot_policies"`` and
``"league"``. Algorithm: the league is built after setup (and after any partial restore),
runs after every ``step()``, and its state rides in the algorithm's own state, so
``algo.save()``/``algo.restore()``, ``from_checkpoint`` and Tune resumes carry it.
"""

from __future__ import annotations

import os
from dataclasses import asdict
from typing import Any, Dict, Mapping, Optional, Sequence

from ..checkpoint.storage import resolve_path
from .league import STATE_KEY, League, LeagueSpec, SnapshotSpec, check_specs
from .league_play import league_callbacks

SNAPSHOT_KEY, LEAGUE_KEY = "snapshot_policies", "league"


def _pool_path(pool: Any) -> str:
    """A pool object or a path/URI -> the path (plain data travels to Tune trials)."""
    path = getattr(pool, "path", pool)
    path = os.fspath(path)
    return path if "://" in path else resolve_path(path)


class LeagueConfigMixin:
    """``snapshot_policies()`` and ``league()`` on an AlgorithmConfig subclass."""

    def snapshot_policies(
        self, pool: Any, policies: Sequence[str], *, every: int = 1, keep: Optional[Mapping[str, Any]] = None
    ):
        """Snapshot ``policies`` (weights + filter) into ``pool`` every ``every`` iterations.

        Args:
            pool: a :class:`~rllib_ext.PolicyPool`, or its directory / object-store URI.
            policies: which policies to snapshot (each its own pool entry).
            every: iterations between snapshots.
            keep: retention, as keyword arguments of ``PolicyPool.prune`` (snapshots in a
                slot are never pruned).
        """
        spec = SnapshotSpec(_pool_path(pool), list(policies), int(every), dict(keep) if keep else None)
        check_specs(spec, None, list(self.policies or {}) or spec.policies)  # type: ignore[attr-defined]
        self._rllib_ext_snapshots = asdict(spec)
        return self

    def league(
        self, pool: Any, *, of: str, slots: Sequence[str], sample: str = "pfsp", refresh_every: int = 1,
        seed: int = 0, outcome_fn: Any = None, elo_k: float = 32.0,
    ):
        """Play ``of`` against past snapshots of itself, loaded into the frozen ``slots``.

        Args:
            pool: where the snapshots are (see :meth:`snapshot_policies`).
            of: the learning policy whose snapshots fill the slots.
            slots: policies of the algorithm that hold opponents; they never train.
            sample: ``"latest"``, ``"uniform"`` or ``"pfsp"`` (weight ``(1 - p)^2``, ``p``
                main's expected win rate from the pool's Elo ratings).
            refresh_every: iterations between draws.
            seed: the sampler's seed (its state is checkpointed).
            outcome_fn: ``(returns by policy id, of, slot) -> +1 / 0 / -1`` (main wins,
                draws, loses); default: compare the total rewards.
            elo_k: Elo's K per snapshot and iteration (its games there count as one match).
        """
        spec = LeagueSpec(_pool_path(pool), of, list(slots), sample, int(refresh_every), int(seed), outcome_fn,
                          float(elo_k))
        check_specs(None, spec, list(self.policies or {}) or [of, *slots])  # type: ignore[attr-defined]
        self._rllib_ext_league = asdict(spec)
        self.callbacks(callbacks_class=league_callbacks(  # type: ignore[attr-defined]
            self.callbacks_class, of, spec.slots, outcome_fn))  # type: ignore[attr-defined]
        return self

    def update_from_dict(self, config_dict: Mapping[str, Any]):
        """Also accept ``{"snapshot_policies": {...}, "league": {...}}`` in plain dicts."""
        config_dict = dict(config_dict)
        snapshots, league = config_dict.pop(SNAPSHOT_KEY, None), config_dict.pop(LEAGUE_KEY, None)
        super().update_from_dict(config_dict)  # type: ignore[misc]
        if snapshots:
            snapshots = dict(snapshots)
            self.snapshot_policies(snapshots.pop("pool"), snapshots.pop("policies"), **snapshots)
        if league:
            league = dict(league)
            self.league(league.pop("pool"), **league)
        return self


class LeagueAlgorithmMixin:
    """Builds the :class:`~.league.League` after setup and runs it after every step."""

    league: Optional[League] = None

    def setup(self, config: Any) -> None:
        super().setup(config)  # type: ignore[misc]
        snapshots = getattr(self.config, "_rllib_ext_snapshots", None)
        spec = getattr(self.config, "_rllib_ext_league", None)
        if snapshots or spec:
            self.league = League(self, SnapshotSpec(**snapshots) if snapshots else None,
                                 LeagueSpec(**spec) if spec else None)
            self.league.setup()

    def step(self) -> Dict[str, Any]:
        result = super().step()  # type: ignore[misc]
        if self.league is not None:
            result.setdefault("rllib_ext", {}).update(self.league.on_step(self.iteration + 1))
        return result

    # The league's state rides in the algorithm's state: new stack get_state/set_state,
    # old stack __getstate__/__setstate__ (what RLlib's own checkpoints call).
    def get_state(self, components: Any = None, **kwargs: Any) -> Dict[str, Any]:
        state = super().get_state(components, **kwargs)  # type: ignore[misc]
        return self._with_league(state) if components is None else state

    def set_state(self, state: Dict[str, Any]) -> None:
        state, league_state = _split_league(state)
        super().set_state(state)  # type: ignore[misc]
        self._continue_league(league_state)

    def __getstate__(self) -> Dict[str, Any]:
        return self._with_league(super().__getstate__())  # type: ignore[misc]

    def __setstate__(self, state: Dict[str, Any]) -> None:
        state, league_state = _split_league(state)
        super().__setstate__(state)  # type: ignore[misc]
        self._continue_league(league_state)

    def _with_league(self, state: Dict[str, Any]) -> Dict[str, Any]:
        if self.league is not None:
            state[STATE_KEY] = self.league.state()
        return state

    def _continue_league(self, league_state: Optional[Mapping[str, Any]]) -> None:
        if league_state is not None and self.league is not None:
            self.league.set_state(league_state)


def _split_league(state: Mapping[str, Any]) -> "tuple[Dict[str, Any], Optional[Dict[str, Any]]]":
    """RLlib's part of a state, and the league's (None when the state has none)."""
    rest = dict(state)
    return rest, rest.pop(STATE_KEY, None)
