"""Observation-filter statistics in a merged checkpoint: the taken policy's come with it.

Old stack (one filter per policy): the source policy's statistics replace the target's in
both places RLlib keeps them, the worker's filter in ``algorithm_state.pkl`` and the
policy's filter connector in ``policy_state.pkl``, patched at byte level
(:mod:`.state_patch`).

New stack (one filter per agent, in the env runner's MeanStdFilter connector): which base
agents play the target module, and whose statistics they should take, is decided by
mapping functions that a Ray-free merge cannot call. So it is given:
``agents={target id: {base agent: source agent, or the source policy id for a
single-policy file}}``; the connector state (plain data) is rewritten.

Either stack: one side with a filter and the other without, or other shapes or settings,
is an error naming both; ``filters=False`` keeps the base's statistics as they are.
"""

from __future__ import annotations

import pickle
from typing import Any, Dict, Mapping, Optional

import numpy as np

from ..checkpoint.codecs.pickle_patch import rllib_ndarray_text
from ..checkpoint.filters import NEW_STACK_FILTER_STATE, FilterStats, ObservationFilters, sum_sq_key
from ..checkpoint.decode import decode_file
from ..checkpoint.storage import CheckpointDir
from ..errors import CheckpointError, ShapeMismatchError
from .state_patch import patch_worker_filter

AgentChoice = Mapping[str, Mapping[str, str]]  # target id -> {base agent: source agent or policy id}


def check_pair(label: str, base: Optional[FilterStats], source: Optional[FilterStats], where: str) -> None:
    """Both sides filter alike, or neither does."""
    if base is None and source is None:
        return
    if base is None or source is None:
        has, lacks = ("the source", "the base") if base is None else ("the base", "the source")
        stats = source if base is None else base
        assert stats is not None  # one of them is not None (the first check)
        raise ShapeMismatchError(
            f"{label}: {has} filters observations ({stats.describe()}) but {lacks} has no filter state "
            f"({where}); pass filters=False to keep the base's statistics"
        )
    if not base.same_settings(source):
        raise ShapeMismatchError(
            f"{label}: observation filter is {source.describe()} in the source but {base.describe()} in the base"
        )


def patch_old_stack_filter(base: CheckpointDir, files: Dict[str, bytes], label: str, target: str, stats: FilterStats) -> None:
    """Patch ``target``'s worker filter in ``algorithm_state.pkl`` (into ``files``, cumulatively)."""
    rel = "algorithm_state.pkl"
    data = files.get(rel) or base.read_bytes(rel)
    files[rel] = patch_worker_filter(data, base.child(rel), label, target, stats)


def patch_new_stack_filter(
    base: CheckpointDir,
    base_filters: ObservationFilters,
    source_filters: ObservationFilters,
    files: Dict[str, bytes],
    label: str,
    target: str,
    agents: Optional[AgentChoice],
) -> str:
    """Rewrite the base's MeanStdFilter connector state for ``target``'s agents; describe it."""
    if not base_filters.stats and not source_filters.stats:
        return ""
    if not base_filters.stats or not source_filters.stats:
        side = "the base" if base_filters.stats else "the source"
        raise ShapeMismatchError(
            f"{label}: only {side} has MeanStdFilter statistics; pass filters=False to keep the base's"
        )
    choice = (agents or {}).get(target)
    if not choice:
        raise CheckpointError(
            f"{label}: the new stack keeps observation filters per agent, and a merge cannot call the "
            f"mapping functions that say which agents play {target!r}; pass agents={{{target!r}: "
            f"{{base agent: source agent}}}} (base agents: {', '.join(sorted(base_filters.stats))}; "
            f"source: {', '.join(sorted(source_filters.stats))}), or filters=False"
        )
    rel = NEW_STACK_FILTER_STATE
    state = pickle.loads(files[rel]) if rel in files else decode_file(base, rel)
    for base_agent, source_key in choice.items():
        if base_agent not in base_filters.stats or source_key not in source_filters.stats:
            raise CheckpointError(
                f"{label}: agents= names {base_agent!r} -> {source_key!r}; base agents: "
                f"{', '.join(sorted(base_filters.stats))}; source keys: {', '.join(sorted(source_filters.stats))}"
            )
        stats = source_filters.stats[source_key]
        check_pair(f"{label} (agent {base_agent!r})", base_filters.stats[base_agent], stats, base.child(rel))
        state[base_agent] = _connector_entry(stats, state[base_agent])
    files[rel] = pickle.dumps(state, protocol=5)
    return ", ".join(f"{a} <- {k}" for a, k in choice.items())


def _connector_entry(stats: FilterStats, base_entry: object = None) -> Dict[str, Any]:
    """One agent's state as RLlib's MeanStdFilter connector writes it (deltas flushed),
    in the base's release's format (Ray <= 2.46: ``std_array``, no deltas; see checkpoint.filters)."""
    zeros = rllib_ndarray_text(np.zeros(stats.shape))
    base_rs = (base_entry or {}).get("running_stats") if isinstance(base_entry, dict) else None
    if base_rs and isinstance(base_rs[0], dict) and sum_sq_key(base_rs[0]) == "std_array":
        running = {"num_pushes": int(stats.count), "mean_array": rllib_ndarray_text(stats.mean),
                   "std_array": rllib_ndarray_text(stats.sum_sq_diff)}
        return {"shape": np.array(stats.shape), "de_mean_to_zero": stats.demean, "de_std_to_one": stats.destd,
                "clip_by_value": stats.clip, "running_stats": [running]}
    return {
        "shape": np.array(stats.shape),
        "de_mean_to_zero": stats.demean,
        "de_std_to_one": stats.destd,
        "clip_by_value": stats.clip,
        "running_stats": [
            {
                "num_pushes": int(stats.count),
                "num_pushes_delta": 0,
                "mean_array": rllib_ndarray_text(stats.mean),
                "mean_delta_array": zeros,
                "sum_sq_diff_array": rllib_ndarray_text(stats.sum_sq_diff),
                "sum_sq_diff_delta_array": zeros,
            }
        ],
    }

