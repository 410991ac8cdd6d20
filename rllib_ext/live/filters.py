"""Observation filters of a live algorithm, and the rule for carrying them with a policy.

A restored policy must see observations filtered as in its source run, so its
``MeanStdFilter`` statistics travel with its weights (see :mod:`.checkpoint.filters` for
where checkpoints keep them). The rule, per restored ``source id -> target id``:

* **source statistics**: old stack and single-policy files keep one filter per policy:
  the source policy's. The new stack keeps one per *agent*: the statistics of the source
  agents that the source run mapped to the source module, pooled as RLlib pools filter
  deltas. Those agents come from ``agents={target agent: source agent}`` when given
  (each target agent then takes its own source agent's statistics); else from the
  source config's ``policy_mapping_fn``, called as ``fn(agent_id, None)``. In safe mode
  that function is used only when it was pickled by reference to a module this process
  has already imported (nothing new is imported or run); ``trusted=True`` unpickles it.
* **where they go**: old stack: the target policy's filter; new stack: the target
  agents that the algorithm's own ``policy_mapping_fn`` maps to the target module. On
  every env runner (local, remote, evaluation), so restarted runners, which sync from the
  local one, keep them too.
* **mismatch**: one side has a filter and the other none, or their shapes or settings
  differ: an error before anything changes, naming both. ``filters=False`` restores the
  weights alone and leaves the target's filters as they are.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, Mapping, Optional

import numpy as np

from ..checkpoint import format as fmt
from ..checkpoint.codecs.safe_pickle import Placeholder
from ..checkpoint.filters import FilterStats, ObservationFilters, connector_stats, filters_of, stats_from_filter
from ..checkpoint.reader import decode_file
from ..checkpoint.storage import CheckpointDir
from ..errors import CheckpointError, ShapeMismatchError
from .compat import running_stat

CONNECTOR_CLASS = "MeanStdFilter"


@dataclass
class FilterPlan:
    """What a restore will do to observation filters (computed before any change).

    Attributes:
        keyed_by: 'policy' (old-stack algorithm) or 'agent' (new-stack algorithm).
        updates: ``{policy or agent id: statistics to set}``.
        previous: the same keys' current statistics, for rollback.
        carried: ``{target id: what was carried}``, for the report.
    """

    keyed_by: str
    updates: Dict[str, FilterStats] = field(default_factory=dict)
    previous: Dict[str, FilterStats] = field(default_factory=dict)
    carried: Dict[str, str] = field(default_factory=dict)


def live_filters(algo: Any) -> ObservationFilters:
    """The algorithm's current filter statistics: per policy (old stack) or agent (new stack).

    New stack: the local env runner's MeanStdFilter connector (the reference state that
    RLlib merges remote runners into); no connector gives no entries.
    """
    if not algo.config.enable_env_runner_and_connector_v2:
        filters = algo.env_runner.filters
        out = {}
        for pid in list(filters):
            stats = stats_from_filter(filters[pid], pid)
            if stats is not None:
                out[str(pid)] = stats
        return ObservationFilters("policy", out)

    def _get(er: Any) -> Any:
        conn = _connector(er)
        return None if conn is None else conn.get_state()

    state = _first(algo, _get)
    return ObservationFilters("agent", {} if state is None else _agent_stats(state))


def plan_filters(
    algo: Any,
    ckpt: CheckpointDir,
    layout: fmt.Layout,
    selection: Mapping[str, str],
    *,
    trusted: bool = False,
    agents: Optional[Mapping[str, str]] = None,
) -> FilterPlan:
    """Decide, and check, which statistics each restored policy carries (see module doc).

    Raises:
        ShapeMismatchError: source and target filters disagree (both named).
        CheckpointError: the source agents of a module cannot be told.
    """
    source = filters_of(ckpt, layout)
    target = live_filters(algo)
    plan = FilterPlan(target.keyed_by)
    by_agent = target.keyed_by == "agent"
    mapping = _target_mapping(algo) if by_agent else None
    source_mapping: Optional[Callable[..., Any]] = None
    for src, tgt in selection.items():
        label = f"policy {src!r}" if src == tgt else f"policy {src!r} -> {tgt!r}"
        keys = [a for a in target.stats if _maps(mapping, a) == tgt] if mapping else [k for k in (tgt,) if k in target.stats]
        has_source = src in source.stats if source.keyed_by == "policy" else bool(source.stats)
        if has_source and not keys:
            raise ShapeMismatchError(
                f"{label}: {ckpt.uri} carries an observation filter ({_any(source, src).describe()}) but "
                f"the algorithm has none for {tgt!r} ({_no_filter_hint(target.keyed_by)}); configure the "
                "same filter, or pass filters=False to restore the weights alone"
            )
        if keys and not has_source:
            raise ShapeMismatchError(
                f"{label}: the algorithm filters {tgt!r}'s observations ({target.stats[keys[0]].describe()}) "
                f"but {ckpt.uri} has no filter state for {src!r}; pass filters=False to restore the "
                "weights alone and keep the algorithm's statistics"
            )
        if not keys:
            continue
        if source.keyed_by == "policy":
            wanted = {k: source.stats[src] for k in keys}
        elif agents is not None:
            missing = [k for k in keys if agents.get(k) not in source.stats]
            if missing:
                raise CheckpointError(
                    f"{label}: agents= names no source agent with filter state for target agent(s) "
                    f"{', '.join(missing)}; the source's agents: {', '.join(sorted(source.stats))}"
                )
            wanted = {k: source.stats[agents[k]] for k in keys}
        else:
            source_mapping = source_mapping or _source_mapping(ckpt, trusted, label)
            mine = [a for a in sorted(source.stats) if _maps(source_mapping, a) == src]
            if not mine:
                raise CheckpointError(
                    f"{label}: no agent of {ckpt.uri} was mapped to {src!r} by its policy_mapping_fn "
                    f"(agents: {', '.join(sorted(source.stats))}); pass agents={{target agent: source agent}}"
                )
            pooled = FilterStats.combine([source.stats[a] for a in mine])
            wanted = {k: pooled for k in keys}
        for key, stats in wanted.items():
            current = target.stats[key]
            if not stats.same_settings(current):
                raise ShapeMismatchError(
                    f"{label}: observation filter is {stats.describe()} (demean={stats.demean}, "
                    f"destd={stats.destd}) in the checkpoint but {current.describe()} (demean="
                    f"{current.demean}, destd={current.destd}) in the algorithm"
                    + (f" for agent {key!r}" if by_agent else "")
                    + _clip_hint(stats, current)
                )
        plan.updates.update(wanted)
        plan.previous.update({k: target.stats[k] for k in wanted})
        plan.carried[tgt] = "; ".join(f"{k}: {s.describe()}" if by_agent else s.describe() for k, s in wanted.items())
    return plan


def _any(filters: ObservationFilters, src: str) -> FilterStats:
    return filters.stats.get(src) or next(iter(filters.stats.values()))


def apply_filters(algo: Any, keyed_by: str, updates: Mapping[str, FilterStats]) -> None:
    """Set ``updates`` on every env runner of ``algo`` (local, remote, evaluation)."""
    if not updates:
        return
    import ray

    ref = ray.put({k: s.to_dict() for k, s in updates.items()})
    old_stack = keyed_by == "policy"

    def _set(er: Any, _ref: Any = ref, _old: bool = old_stack) -> None:
        from ray.rllib.utils.filter import MeanStdFilter, RunningStat

        wanted = {k: FilterStats.from_dict(d) for k, d in ray.get(_ref).items()}
        if _old:
            for pid, stats in wanted.items():
                if pid in er.filters:
                    er.filters[pid].sync(_rllib_filter(stats, MeanStdFilter, RunningStat))
            return
        conn = _connector(er)
        if conn is None:
            return
        conn.set_state({agent: _connector_state(stats, RunningStat) for agent, stats in wanted.items()})

    for group in (algo.env_runner_group, getattr(algo, "eval_env_runner_group", None)):
        if group is not None:
            group.foreach_env_runner(_set, local_env_runner=True)


def agent_filter(algo: Any, module_id: str, agent_id: Optional[str] = None) -> Optional[FilterStats]:
    """New stack: the statistics a module's observations go through for ``agent_id``.

    Without ``agent_id``: the one agent mapped to ``module_id`` (or several sharing the
    same statistics). None when the algorithm has no MeanStdFilter connector.

    Raises:
        CheckpointError: several agents with different statistics play the module.
    """
    stats = live_filters(algo).stats
    if not stats:
        return None
    if agent_id is not None:
        return stats[agent_id]
    mapping = _target_mapping(algo)
    mine = [a for a in stats if _maps(mapping, a) == module_id]
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


def _connector(er: Any) -> Any:
    """The MeanStdFilter connector of an env runner's env-to-module pipeline, if any."""
    pipeline = getattr(er, "_env_to_module", None)
    for conn in getattr(pipeline, "connectors", None) or []:
        if type(conn).__name__ == CONNECTOR_CLASS:
            return conn
    return None


def _first(algo: Any, fn: Callable[[Any], Any]) -> Any:
    """``fn`` on the local env runner if there is one, else on the first remote one."""
    group = algo.env_runner_group
    local = getattr(group, "local_env_runner", None)
    if local is not None:
        return fn(local)
    results = group.foreach_env_runner(fn, local_env_runner=False)
    return results[0] if results else None


def _agent_stats(state: Mapping[Any, Any]) -> Dict[str, FilterStats]:
    return connector_stats(state, "the algorithm's MeanStdFilter connector")


def _rllib_filter(stats: FilterStats, filter_cls: Any, running_stat_cls: Any) -> Any:
    """A real RLlib ``MeanStdFilter`` holding ``stats`` (empty buffer)."""
    f = filter_cls(stats.shape, demean=stats.demean, destd=stats.destd, clip=stats.clip)
    f.running_stats = _running_stat(stats, running_stat_cls)
    return f


def _running_stat(stats: FilterStats, running_stat_cls: Any) -> Any:
    return running_stat(running_stat_cls, stats.shape, stats.count, stats.mean, stats.sum_sq_diff)


def _connector_state(stats: FilterStats, running_stat_cls: Any) -> Dict[str, Any]:
    """The MeanStdFilter connector's per-agent state format (``set_state`` takes it)."""
    return {
        "shape": np.array(stats.shape),
        "de_mean_to_zero": stats.demean,
        "de_std_to_one": stats.destd,
        "clip_by_value": stats.clip,
        "running_stats": [_running_stat(stats, running_stat_cls).to_state()],
    }


def _clip_hint(source: FilterStats, target: FilterStats) -> str:
    if source.clip_key() is None and target.clip_key() is not None:
        return (
            "; old-stack filters do not clip, the new stack's MeanStdFilter connector clips at 10 by "
            "default: configure MeanStdFilter(multi_agent=True, clip_by_value=float('inf')) to act the same"
        )
    return ""


def _no_filter_hint(keyed_by: str) -> str:
    if keyed_by == "policy":
        return "observation_filter='NoFilter'"
    return "no MeanStdFilter connector maps an agent to it"


def _maps(fn: Callable[..., Any], agent: str) -> str:
    return str(fn(agent, None))


def _target_mapping(algo: Any) -> Callable[..., Any]:
    fn = algo.config.policy_mapping_fn
    return fn if callable(fn) else (lambda agent, *a, **k: "default_policy")


def _source_mapping(ckpt: CheckpointDir, trusted: bool, label: str) -> Callable[..., Any]:
    """The source run's ``policy_mapping_fn``, where it can be had without running its code."""
    config = decode_file(ckpt, fmt.CTOR_ARGS_FILE, trusted=trusted)
    try:
        cfg = config["ctor_args_and_kwargs"][0][0]
        fn = (cfg.state if isinstance(cfg, Placeholder) else cfg)["policy_mapping_fn"] if isinstance(
            cfg, (dict, Placeholder)
        ) else getattr(cfg, "policy_mapping_fn")
    except (KeyError, IndexError, TypeError, AttributeError):
        fn = None
    if isinstance(fn, type) and issubclass(fn, Placeholder):
        module = sys.modules.get(fn.module)
        found = module
        for part in fn.name.split("."):
            found = getattr(found, part, None)
        if module is not None and callable(found):
            return found
        where = f"{fn.module}.{fn.name}, not imported in this process"
    elif callable(fn) and not isinstance(fn, Placeholder):
        return fn
    else:
        where = "pickled by value (a lambda or a function of __main__)"
    raise CheckpointError(
        f"{label}: cannot tell which agents of {ckpt.uri} played it, so whose observation-filter "
        f"statistics to carry: its policy_mapping_fn is {where}; pass agents={{target agent: "
        "source agent}}, trusted=True to unpickle the source config, or filters=False"
    )
