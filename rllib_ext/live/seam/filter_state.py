"""Observation-filter statistics where a live algorithm's env runners keep them.

The two API stacks keep them in different places: the old stack has one RLlib
``MeanStdFilter`` per **policy** in each worker's ``filters``; the new stack has the
``MeanStdFilter`` connector of each env runner's env-to-module pipeline, with statistics
per **agent**. This module reads and writes both as
:class:`~rllib_ext.checkpoint.filters.FilterStats`; :class:`rllib_ext.live.seam.backends.Backend`
picks the pair for its stack, and :mod:`rllib_ext.live.restore.filters` holds the rule for carrying
statistics with a policy. Ray is imported inside the functions that ship data to workers.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Callable, Dict, Iterable, List, Mapping, Optional, Type, cast

import numpy as np

from ...checkpoint.filters import (
    FilterStats,
    ObservationFilters,
    connector_stats,
    stats_from_filter,
)
from ...errors import CheckpointError
from .compat import running_stat
from .ray_internals import env_to_module_pipeline
from .rllib_types import Algorithm, AlgorithmConfig, EnvRunnerGroup

if TYPE_CHECKING:
    from ray import ObjectRef
    from ray.rllib.connectors.connector_v2 import ConnectorV2
    from ray.rllib.evaluation.rollout_worker import RolloutWorker
    from ray.rllib.utils.filter import MeanStdFilter, RunningStat

    from ...checkpoint.views import FilterStatsJson

    StatsRef = ObjectRef[Dict[str, FilterStatsJson]]  # {key: FilterStats.to_dict()} in Ray's object store

CONNECTOR_CLASS = "MeanStdFilter"


LIVE = "the algorithm's observation filters"  # how messages name the live side


def worker_filters(algo: Algorithm) -> ObservationFilters:
    """Old stack: the local worker's filter statistics, per policy id."""
    filters = algo.env_runner.filters
    out = {}
    for pid in list(filters):
        stats = stats_from_filter(filters[pid], pid, LIVE)
        if stats is not None:
            out[str(pid)] = stats
    return ObservationFilters("policy", out)


def connector_filters(algo: Algorithm) -> ObservationFilters:
    """New stack: the MeanStdFilter connector's statistics, per agent id.

    Read from the local env runner (the reference state that RLlib merges remote runners
    into), else the first remote one; no connector gives no entries.
    """

    def _get(er: object) -> object:
        conn = _connector(er)
        return None if conn is None else conn.get_state()

    state = _first(algo, _get)
    return ObservationFilters(
        "agent", {} if state is None else connector_stats(state, LIVE)
    )


def set_worker_filters(algo: Algorithm, updates: Mapping[str, FilterStats]) -> None:
    """Old stack: sync ``{policy id: statistics}`` into every worker's filters."""

    def _set(er: RolloutWorker, _ref: StatsRef) -> None:
        import ray
        from ray.rllib.utils.filter import MeanStdFilter, RunningStat

        for pid, d in ray.get(_ref).items():
            if pid in er.filters:
                er.filters[pid].sync(_rllib_filter(FilterStats.from_dict(d), MeanStdFilter, RunningStat))

    _on_every_runner(algo, updates, _set)


def set_connector_filters(algo: Algorithm, updates: Mapping[str, FilterStats]) -> None:
    """New stack: set ``{agent id: statistics}`` on every env runner's MeanStdFilter connector."""

    def _set(er: object, _ref: StatsRef) -> None:
        import ray
        from ray.rllib.utils.filter import RunningStat

        conn = _connector(er)
        if conn is not None:
            conn.set_state({a: _connector_state(FilterStats.from_dict(d), RunningStat) for a, d in ray.get(_ref).items()})

    _on_every_runner(algo, updates, _set)


def target_mapping(algo: Algorithm) -> Callable[..., object]:
    """The live algorithm's ``policy_mapping_fn`` (everything to 'default_policy' without one)."""
    fn = cast(AlgorithmConfig, algo.config).policy_mapping_fn  # config: set by Algorithm.__init__
    return fn if callable(fn) else (lambda agent, *a, **k: "default_policy")


def maps(fn: Callable[..., object], agent: str) -> str:
    """The policy id ``fn`` maps ``agent`` to (called as RLlib's helpers do: no episode)."""
    return str(fn(agent, None))


def agents_of(algo: Algorithm, keys: Iterable[str], module_id: str) -> List[str]:
    """New stack: the agents among ``keys`` that the algorithm's mapping function sends to ``module_id``."""
    mapping = target_mapping(algo)
    return [a for a in keys if maps(mapping, a) == module_id]


def agent_filter_of(algo: Algorithm, filters: ObservationFilters, module_id: str,
                    agent_id: Optional[str] = None) -> Optional[FilterStats]:
    """New stack: the statistics (of ``filters``, per agent) a module's observations go through.

    Without ``agent_id``: the one agent mapped to ``module_id`` (or several sharing the
    same statistics). None when there are no statistics or no agent plays the module.

    Raises:
        CheckpointError: several agents with different statistics play the module.
    """
    stats = filters.stats
    if not stats:
        return None
    if agent_id is not None:
        return stats[agent_id]
    mine = agents_of(algo, stats, module_id)
    if not mine:
        return None
    if any(not _same(stats[a], stats[mine[0]]) for a in mine):
        raise CheckpointError(
            f"module {module_id!r} acts for agents {', '.join(mine)}, whose observation filters "
            "differ; pass agent_id= to say whose observations these are"
        )
    return stats[mine[0]]


# ---------------------------------------------------------------- helpers


def _same(a: FilterStats, b: FilterStats) -> bool:
    return a.same_settings(b) and a.count == b.count and np.array_equal(a.mean, b.mean)


# fn's env runner is Any: a RolloutWorker (old stack) or an EnvRunner (new stack), each stack's fn knows which.
def _on_every_runner(algo: Algorithm, updates: Mapping[str, FilterStats], fn: Callable[[Any, StatsRef], None]) -> None:
    """``fn(env_runner, ref to {key: stats dict})`` on every env runner: local, remote, evaluation."""
    if not updates:
        return
    import ray

    ref = ray.put({k: s.to_dict() for k, s in updates.items()})

    def on_runner(er: object) -> None:
        fn(er, ref)

    for group in (algo.env_runner_group, getattr(algo, "eval_env_runner_group", None)):
        if group is not None:
            group.foreach_env_runner(on_runner, local_env_runner=True)


def _connector(er: object) -> Optional[ConnectorV2]:
    """The MeanStdFilter connector of an env runner's env-to-module pipeline, if any."""
    pipeline = env_to_module_pipeline(er)
    for conn in getattr(pipeline, "connectors", None) or []:
        if type(conn).__name__ == CONNECTOR_CLASS:
            return conn
    return None


def _first(algo: Algorithm, fn: Callable[[object], object]) -> object:
    """``fn`` on the local env runner if there is one, else on the first remote one."""
    group = cast(EnvRunnerGroup, algo.env_runner_group)  # built by setup()
    local = getattr(group, "local_env_runner", None)
    if local is not None:
        return fn(local)
    results = group.foreach_env_runner(fn, local_env_runner=False)
    return results[0] if results else None


def _rllib_filter(stats: FilterStats, filter_cls: Type[MeanStdFilter],
                  running_stat_cls: Type[RunningStat]) -> MeanStdFilter:
    """A real RLlib ``MeanStdFilter`` holding ``stats`` (empty buffer)."""
    f = filter_cls(stats.shape, demean=stats.demean, destd=stats.destd, clip=stats.clip)
    f.running_stats = _running_stat(stats, running_stat_cls)
    return f


def _running_stat(stats: FilterStats, running_stat_cls: Type[RunningStat]) -> RunningStat:
    return running_stat(running_stat_cls, stats.shape, stats.count, stats.mean, stats.sum_sq_diff)


def _connector_state(stats: FilterStats, running_stat_cls: Type[RunningStat]) -> Dict[str, object]:
    """The MeanStdFilter connector's per-agent state format (``set_state`` takes it)."""
    return {
        "shape": np.array(stats.shape),
        "de_mean_to_zero": stats.demean,
        "de_std_to_one": stats.destd,
        "clip_by_value": stats.clip,
        "running_stats": [_running_stat(stats, running_stat_cls).to_state()],
    }
