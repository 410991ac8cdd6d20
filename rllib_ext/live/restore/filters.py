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

Where a live algorithm keeps its statistics is the :class:`~rllib_ext.live.seam.backends.Backend`'s
business (:mod:`.filter_state`); this module holds only the rule. :func:`ask_source_agents`
asks the one question a checkpoint alone can answer (is the source's mapping function
readable?) in the driver, before a Tune trial would ask it.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, List, Mapping, Optional

from ...checkpoint import format as fmt
from ...checkpoint.codecs.safe_pickle import Placeholder
from ...checkpoint.filters import FilterStats, ObservationFilters, filters_of
from ...checkpoint.reader import decode_file
from ...checkpoint.storage import CheckpointDir
from ...checkpoint.tensors import policy_label
from ...errors import CheckpointError, ShapeMismatchError
from ..seam.backend_base import Backend
from ..seam.filter_state import maps

BY_VALUE = "pickled by value (a lambda or a function of __main__)"


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


def plan_filters(
    backend: Backend,
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
        UnsupportedFilterError: either side keeps nested (Dict/Tuple) statistics.
    """
    source = filters_of(ckpt, layout)
    target = backend.live_filters()
    plan = FilterPlan(target.keyed_by)
    source_mapping: List[Callable[..., Any]] = []  # read once, when first needed
    for src, tgt in selection.items():
        label = policy_label(src, tgt)
        keys = backend.filter_keys(tgt, target)
        _check_both_or_neither(label, ckpt.uri, source, target, src, tgt, keys)
        if not keys:
            continue
        if source.keyed_by == "policy":
            wanted = {k: source.stats[src] for k in keys}
        elif agents is not None:
            wanted = _from_named_agents(label, source, keys, agents)
        else:
            if not source_mapping:
                source_mapping.append(_source_mapping(ckpt, trusted, label))
            wanted = _from_mapped_agents(label, ckpt.uri, source, src, keys, source_mapping[0])
        for key, stats in wanted.items():
            _check_settings(label, key if target.keyed_by == "agent" else None, stats, target.stats[key])
        plan.updates.update(wanted)
        plan.previous.update({k: target.stats[k] for k in wanted})
        plan.carried[tgt] = "; ".join(
            f"{k}: {s.describe()}" if target.keyed_by == "agent" else s.describe() for k, s in wanted.items()
        )
    return plan


def ask_source_agents(
    ckpt: CheckpointDir,
    layout: fmt.Layout,
    selection: Mapping[str, str],
    *,
    trusted: bool = False,
    filters: bool = True,
    agents: Optional[Mapping[str, str]] = None,
) -> None:
    """Raise now, Ray-free, what :func:`plan_filters` would raise once the algorithm is built:
    new-stack statistics (per agent) to carry, no ``agents=``, and a source
    ``policy_mapping_fn`` pickled by value, which safe mode cannot call.

    A function pickled by reference passes here (the process that restores resolves it).
    """
    if not filters or agents is not None or trusted or not selection:
        return
    source = filters_of(ckpt, layout)
    if source.keyed_by != "agent" or not source.stats:
        return
    if not _is_reference(_stored_mapping_fn(ckpt, trusted=False)):
        src, tgt = next(iter(selection.items()))
        raise _agents_question(policy_label(src, tgt), ckpt.uri, BY_VALUE)


# ---------------------------------------------------------------- helpers


def _check_both_or_neither(label: str, uri: str, source: ObservationFilters, target: ObservationFilters,
                           src: str, tgt: str, keys: List[str]) -> None:
    """A filter on one side only is a mismatch (unless the caller passes filters=False)."""
    has_source = src in source.stats if source.keyed_by == "policy" else bool(source.stats)
    if has_source and not keys:
        raise ShapeMismatchError(
            f"{label}: {uri} carries an observation filter ({_any(source, src).describe()}) but "
            f"the algorithm has none for {tgt!r} ({_no_filter_hint(target.keyed_by)}); configure the "
            "same filter, or pass filters=False to restore the weights alone"
        )
    if keys and not has_source:
        raise ShapeMismatchError(
            f"{label}: the algorithm filters {tgt!r}'s observations ({target.stats[keys[0]].describe()}) "
            f"but {uri} has no filter state for {src!r}; pass filters=False to restore the "
            "weights alone and keep the algorithm's statistics"
        )


def _from_named_agents(label: str, source: ObservationFilters, keys: List[str],
                       agents: Mapping[str, str]) -> Dict[str, FilterStats]:
    """``agents={target agent: source agent}``: each target agent takes its own source agent's."""
    missing = [k for k in keys if agents.get(k) not in source.stats]
    if missing:
        raise CheckpointError(
            f"{label}: agents= names no source agent with filter state for target agent(s) "
            f"{', '.join(missing)}; the source's agents: {', '.join(sorted(source.stats))}"
        )
    return {k: source.stats[agents[k]] for k in keys}


def _from_mapped_agents(label: str, uri: str, source: ObservationFilters, src: str, keys: List[str],
                        source_mapping: Callable[..., Any]) -> Dict[str, FilterStats]:
    """The source agents its mapping function sent to ``src``, pooled, for every target key."""
    mine = [a for a in sorted(source.stats) if maps(source_mapping, a) == src]
    if not mine:
        raise CheckpointError(
            f"{label}: no agent of {uri} was mapped to {src!r} by its policy_mapping_fn "
            f"(agents: {', '.join(sorted(source.stats))}); pass agents={{target agent: source agent}}"
        )
    pooled = FilterStats.combine([source.stats[a] for a in mine])
    return {k: pooled for k in keys}


def _check_settings(label: str, agent: Optional[str], stats: FilterStats, current: FilterStats) -> None:
    if not stats.same_settings(current):
        raise ShapeMismatchError(
            f"{label}: observation filter is {stats.describe()} (demean={stats.demean}, "
            f"destd={stats.destd}) in the checkpoint but {current.describe()} (demean="
            f"{current.demean}, destd={current.destd}) in the algorithm"
            + (f" for agent {agent!r}" if agent is not None else "")
            + _clip_hint(stats, current)
        )


def _any(filters: ObservationFilters, src: str) -> FilterStats:
    return filters.stats.get(src) or next(iter(filters.stats.values()))


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


def _source_mapping(ckpt: CheckpointDir, trusted: bool, label: str) -> Callable[..., Any]:
    """The source run's ``policy_mapping_fn``, where it can be had without running its code."""
    fn = _stored_mapping_fn(ckpt, trusted)
    if _is_reference(fn):
        module = sys.modules.get(fn.module)
        found = module
        for part in fn.name.split("."):
            found = getattr(found, part, None)
        if module is not None and callable(found):
            return found
        where = f"{fn.module}.{fn.name}, not imported in this process"
    elif callable(fn) and not isinstance(fn, Placeholder):
        return fn  # trusted: unpickled for real
    else:
        where = BY_VALUE
    raise _agents_question(label, ckpt.uri, where)


def _stored_mapping_fn(ckpt: CheckpointDir, trusted: bool) -> Any:
    """The source config's ``policy_mapping_fn`` as the (safe) unpickler returns it, or None.

    Safe mode returns a function pickled by reference as a Placeholder *class* naming its
    module and name, and one pickled by value (cloudpickle) as a Placeholder *instance*.
    """
    config = decode_file(ckpt, fmt.CTOR_ARGS_FILE, trusted=trusted)
    try:
        cfg = config["ctor_args_and_kwargs"][0][0]
        if isinstance(cfg, (dict, Placeholder)):
            return (cfg.state if isinstance(cfg, Placeholder) else cfg)["policy_mapping_fn"]
        return getattr(cfg, "policy_mapping_fn")
    except (KeyError, IndexError, TypeError, AttributeError):
        return None


def _is_reference(fn: Any) -> bool:
    return isinstance(fn, type) and issubclass(fn, Placeholder)


def _agents_question(label: str, uri: str, where: str) -> CheckpointError:
    return CheckpointError(
        f"{label}: cannot tell which agents of {uri} played it, so whose observation-filter "
        f"statistics to carry: its policy_mapping_fn is {where}; pass agents={{target agent: "
        "source agent}, trusted=True to unpickle the source config, or filters=False"
    )
