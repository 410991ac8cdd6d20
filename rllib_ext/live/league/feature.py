"""Snapshots into a pool and a self-play league: ``config.snapshot_policies(...)``, ``config.league(...)``.

The specs are kept on the config as plain dicts (so they survive ``to_dict()`` and Tune)
and are also taken as the plain-dict keys ``"snapshot_policies"`` and ``"league"``. The
:class:`~rllib_ext.live.league.engine.League` is built after setup (and after any partial
restore), runs after every ``step()``, and its state rides in the algorithm's state, so
``algo.save()``/``algo.restore()``, ``from_checkpoint`` and Tune resumes carry it.
Snapshots and league are one feature: the league's rating goes with each snapshot and
its slots protect their snapshots from pruning.
"""

from __future__ import annotations

from dataclasses import asdict
import os
from typing import Any, Dict, Mapping, Optional, Sequence

from ...pool.policy_pool import PolicyPool
from ..hooks import Feature
from ..seam.rllib_types import Algorithm, ConfigT, config_of
from ..seam.ray_internals import config_extra, set_config_extra
from ..snapshot import pool_path
from .arena import OutcomeFn
from .engine import STATE_KEY, League, LeagueSpec, SnapshotSpec, check_specs
from .play import league_callbacks

SNAPSHOT_KEY, LEAGUE_KEY = "snapshot_policies", "league"
# On the config (names that rllib_ext 0.3 checkpoints carry).
SNAPSHOT_ATTR, LEAGUE_ATTR = "_rllib_ext_snapshots", "_rllib_ext_league"


def snapshot_policies(
    config: ConfigT, pool: "PolicyPool | str | os.PathLike[str]", policies: Sequence[str], *, every: int = 1,
    keep: Optional[Mapping[str, int]] = None,
) -> ConfigT:
    """Snapshot ``policies`` (weights + filter) into ``pool`` every ``every`` iterations.

    Args:
        pool: a :class:`~rllib_ext.PolicyPool`, or its directory / object-store URI.
        policies: which policies to snapshot (each its own pool entry).
        every: iterations between snapshots.
        keep: retention, as keyword arguments of ``PolicyPool.prune`` (snapshots in a
            slot are never pruned).

    Returns:
        The config, for chaining.

    Raises:
        PolicyNotFoundError: a policy is not one of the algorithm's.
        InvalidArgumentError: ``every`` < 1.
    """
    spec = SnapshotSpec(pool_path(pool), list(policies), int(every), dict(keep) if keep else None)
    check_specs(spec, None, list(config.policies or {}) or spec.policies)
    set_config_extra(config, SNAPSHOT_ATTR, asdict(spec))
    return config


def league(
    config: ConfigT, pool: "PolicyPool | str | os.PathLike[str]", *, of: str, slots: Sequence[str], sample: str = "pfsp",
    refresh_every: int = 1, seed: int = 0, outcome_fn: Optional[OutcomeFn] = None, elo_k: float = 32.0,
    evaluation: Optional[Mapping[str, Any]] = None, exploiters: Optional[Mapping[str, Mapping[str, Any]]] = None,
    reset_every: Optional[int] = None, slot_seats: Optional[Mapping[str, str]] = None,
) -> ConfigT:
    """Play ``of`` against past snapshots of itself, loaded into the frozen ``slots``.

    Args:
        pool: where the snapshots are (see :func:`snapshot_policies`).
        of: the learning policy whose snapshots fill the slots.
        slots: policies of the algorithm that hold opponents; they never train.
        sample: ``"latest"``, ``"uniform"``, ``"pfsp"`` (weight ``(1 - p)^2``, ``p``
            main's expected win rate from the pool's Elo ratings) or ``"nash"`` (PSRO: the
            Nash mixture of the pool's payoff table over the population, so ``of`` trains
            as a best response to it; needs scipy, plays evaluation matches by default).
        refresh_every: iterations between draws.
        seed: the sampler's seed (its state is checkpointed).
        outcome_fn: ``(returns by policy id, of, slot) -> +1 / 0 / -1`` (main wins,
            draws, loses); default: compare the total rewards.
        elo_k: Elo's K per snapshot and iteration (its games there count as one match).
        evaluation: evaluation matches between the population's snapshots, for the payoff
            table: ``{"games": 50, "min_games": 200, "pairs": 6, "explore": True}`` (games
            per pair and round, until each pair has ``min_games``; at most ``pairs`` pairs
            an iteration; sampled actions); ``"focus": "support"`` with ``"floor_games"``
            tops up to ``min_games`` only the pairs within the Nash support and the newest
            snapshot, and ``"max_share": 0.3`` keeps evaluation under that share of all env
            steps; ``"remote": True`` plays each match as a Ray task (``"num_cpus"`` each,
            default 1) on spare CPUs, overlapping training. Every game's env steps are counted in ``result["rllib_ext"]["league_budget"]``
            and in the pool (``PolicyPool.budget()``). See :mod:`rllib_ext.live.league.evaluation`.
        exploiters: ``{policy: {"against": of, "reset_every": K, "reset_win_rate": r,
            "min_games": n}}``: trained policies that play only ``of`` (route them with
            your ``policy_mapping_fn``), snapshotted with ``of`` so it must answer them,
            and reset to their initial weights every ``K`` iterations or once their win
            share passes ``r``. See :mod:`rllib_ext.live.league.exploiters`.
        reset_every: restart ``of`` itself from its initial weights and optimizer every
            ``K`` iterations, right after its snapshot: with ``sample="nash"`` this is
            PSRO, each phase a fresh best response to the population's Nash mixture.
        slot_seats: ``{slot: seat}`` with ``sample="nash"`` in a two-seat game: the seat
            (agent ids, as in the table's seat rows) the slot's opponent plays, so that slot
            is drawn from that seat's Nash mixture (``PolicyPool.meta_strategy_by_seat``)
            and ``of`` trains as a best response in each seat. Route the opponents to match
            (``rllib_ext.envs.seat_mapping(..., slot_seats=...)``).

    Returns:
        The config, for chaining.

    Raises:
        PolicyNotFoundError: ``of`` or a slot is not one of the algorithm's policies, or a
            ``slot_seats`` key is not a slot.
        InvalidArgumentError: no slots, ``of`` is a slot, an unknown ``sample``, ``refresh_every`` < 1,
            an exploiter that is a slot or ``of``, bad evaluation counts, ``slot_seats``
            without ``sample="nash"``.
        MissingDependencyError: ``sample="nash"`` without scipy.
    """
    spec = LeagueSpec(pool_path(pool), of, list(slots), sample, int(refresh_every), int(seed), outcome_fn,
                      float(elo_k), dict(evaluation) if evaluation is not None else None,
                      {p: dict(v) for p, v in exploiters.items()} if exploiters else None,
                      int(reset_every) if reset_every else None,
                      {str(k): str(v) for k, v in slot_seats.items()} if slot_seats else None)
    snapshots = config_extra(config, SNAPSHOT_ATTR)
    check_specs(SnapshotSpec(**snapshots) if snapshots else None, spec,
                list(config.policies or {}) or [of, *slots, *(exploiters or {})])
    set_config_extra(config, LEAGUE_ATTR, asdict(spec))
    config.callbacks(callbacks_class=league_callbacks(config.callbacks_class, of, [*spec.slots, *(exploiters or {})],
                                                      outcome_fn))
    return config


class LeagueConfig:
    """``config.snapshot_policies(...)`` and ``config.league(...)``, declared on every ``...Partial`` config."""

    snapshot_policies = snapshot_policies
    league = league


def _league_spec(data: Mapping[str, Any]) -> LeagueSpec:
    data = dict(data)
    if "of" in data:  # as rllib_ext 0.3 stored it
        data["learner"] = data.pop("of")
    return LeagueSpec(**data)


class LeagueFeature(Feature):
    """Builds the :class:`~rllib_ext.live.league.engine.League` after setup and runs it after every step."""

    name = "league"
    config_keys = (SNAPSHOT_KEY, LEAGUE_KEY)
    state_key = STATE_KEY

    def __init__(self, engine: League) -> None:
        self.engine = engine

    @classmethod
    def configure(cls, config: Any, key: str, value: Any) -> None:  # a plain dict's entry, checked by the call
        value = dict(value)
        if key == SNAPSHOT_KEY:
            snapshot_policies(config, value.pop("pool"), value.pop("policies"), **value)
        else:
            league(config, value.pop("pool"), **value)

    @classmethod
    def build(cls, algo: Algorithm) -> Optional["LeagueFeature"]:
        snapshots = config_extra(config_of(algo), SNAPSHOT_ATTR)
        spec = config_extra(config_of(algo), LEAGUE_ATTR)
        if not (snapshots or spec):
            return None
        return cls(League(algo, SnapshotSpec(**snapshots) if snapshots else None, _league_spec(spec) if spec else None))

    @property
    def learner(self) -> Optional[str]:
        """The learning policy whose snapshots fill the slots (None: snapshots only)."""
        return self.engine.spec.learner if self.engine.spec is not None else None

    @property
    def slots(self) -> Sequence[str]:
        """The frozen policies that hold opponents."""
        return list(self.engine.spec.slots) if self.engine.spec is not None else []

    @property
    def rating(self) -> float:
        """The learner's current rating in the pool."""
        return float(self.engine.main_rating)

    def setup(self, algo: Algorithm) -> None:
        self.engine.setup()

    def after_step(self, algo: Algorithm, result: Dict[str, Any]) -> Mapping[str, object]:
        return self.engine.on_step(algo.iteration + 1)

    def state(self, algo: Algorithm) -> Optional[Dict[str, Any]]:
        return self.engine.state()

    def stop(self, algo: Algorithm) -> None:
        self.engine.stop()

    def set_state(self, algo: Algorithm, state: Mapping[str, Any]) -> None:
        self.engine.set_state(state)
