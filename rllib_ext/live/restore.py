"""Partial restore: put chosen policies of a checkpoint into a live algorithm.

Three steps, in this order, so a failure never leaves an algorithm half-restored:
  1. plan:     read the chosen policies from the checkpoint (Ray-free reader) and
               check every id, tensor name, shape and dtype against the live algorithm
               (an old-stack checkpoint into a new-stack algorithm is converted here,
               see :mod:`rllib_ext.convert`);
  2. apply:    set the weights where training happens (local learner / every remote
               learner on the new stack, the local worker's policies on the old one);
  3. sync:     push them to every place that acts: local and remote env runners,
               evaluation env runners. Restarted runners sync from the local runner
               (or the learners), which already hold the restored weights.

The path is resolved once, the checkpoint opened once, and one backend
(:mod:`rllib_ext.live.backends`) asked once for the algorithm's ids. Observation-filter
statistics travel with the weights (validated in the plan, set with them, rolled back
with them); the rule is in :mod:`rllib_ext.live.filters`.

Direction: a selection is ``{source id in the checkpoint: target id in the algorithm}``
(a list means the same id on both sides), and :attr:`PartialRestoreReport.restored`
keeps that direction.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from typing import Dict, List, Mapping, Optional, Sequence, Tuple, Union

import numpy as np

from ..checkpoint import format as fmt
from ..checkpoint.inspection import read_policy_opened
from ..checkpoint.reader import ids_in, open_checkpoint, read_opened
from ..checkpoint.storage import CheckpointDir, resolve_path
from ..checkpoint.tensors import Weights, check_tensors
from ..convert.families import source_algorithm
from ..convert.mapping import NameMapping, convert_policy
from ..errors import CheckpointError, MigrationError, ShapeMismatchError, not_found
from .backends import Backend, backend_for
from .filters import apply_filters, plan_filters

PolicySelection = Union[Sequence[str], Mapping[str, str]]


@dataclass
class PartialRestoreReport:
    """What a partial restore did; returned instead of only logged.

    Attributes:
        checkpoint: the resolved checkpoint path.
        restored: ``{source id: target id}``, in the selection's direction.
        frozen: target ids removed from ``policies_to_train``.
        skipped: ids in the checkpoint that were not taken.
        seconds: wall time.
        converted_from: e.g. "old-API-stack tf2" when the weights were converted.
        filters: ``{target id: the observation-filter statistics set with it}``.
    """

    checkpoint: str
    restored: Dict[str, str] = field(default_factory=dict)
    frozen: List[str] = field(default_factory=list)
    skipped: List[str] = field(default_factory=list)
    seconds: float = 0.0
    converted_from: Optional[str] = None
    filters: Dict[str, str] = field(default_factory=dict)

    @property
    def renamed(self) -> Dict[str, str]:
        """``{source id: target id}`` for the ids that changed name."""
        return {s: t for s, t in self.restored.items() if s != t}

    def __str__(self) -> str:
        parts = [f"{s}->{t}" if s != t else t for s, t in self.restored.items()]
        return (
            f"restored {', '.join(parts) or 'nothing'} from {self.checkpoint}"
            f" in {self.seconds:.2f}s; frozen: {', '.join(self.frozen) or '-'}"
            f"; not taken: {', '.join(self.skipped) or '-'}"
            + (f"; converted from {self.converted_from}" if self.converted_from else "")
            + (f"; filters: {', '.join(self.filters)}" if self.filters else "")
        )


def normalize_selection(policies: PolicySelection) -> Dict[str, str]:
    """``["a"]`` or ``{"a": "hero"}`` -> ``{source id: target id}``."""
    if isinstance(policies, str):
        raise TypeError(f"policies must be a list or a dict of ids, not the string {policies!r}")
    if isinstance(policies, Mapping):
        mapping = {str(s): str(t) for s, t in policies.items()}
    else:
        mapping = {str(p): str(p) for p in policies}
    if not mapping:
        raise ValueError("policies is empty: name at least one policy to restore")
    targets = list(mapping.values())
    dupes = sorted({t for t in targets if targets.count(t) > 1})
    if dupes:
        raise ValueError(f"several checkpoint policies map to the same target id(s): {', '.join(dupes)}")
    return mapping


def plan(
    algo: object,
    backend: Backend,
    ckpt: CheckpointDir,
    layout: fmt.Layout,
    selection: Mapping[str, str],
    algo_ids: Sequence[str],
    trusted: bool = False,
    mapping: Optional[NameMapping] = None,
) -> Tuple[Dict[str, Weights], Dict[str, Weights], PartialRestoreReport]:
    """Read and validate everything; touch nothing in ``algo``.

    An old-stack checkpoint restored into a new-stack algorithm is converted
    (:func:`rllib_ext.convert.convert_policy`) before the tensor check; ``mapping``
    names the tensors for models the built-in table does not cover.

    Args:
        algo: the live algorithm (its config says which stack it is on).
        backend: ``backend_for(algo)``.
        ckpt, layout: the checkpoint, opened once by the caller.
        selection: ``{source id: target id}`` (see :func:`normalize_selection`).
        algo_ids: ``backend.ids()``, asked once by the caller.

    Returns:
        ``{target id: weights ready to set}``, a copy of the targets' current weights
        (for rollback) and a report (without timing).

    Raises:
        PolicyNotFoundError, ShapeMismatchError, CheckpointError: before any change.
    """
    path = ckpt.uri
    available = ids_in(ckpt, layout)
    algo_is_new = bool(algo.config.enable_rl_module_and_learner)  # type: ignore[attr-defined]
    convert = layout.stack is fmt.Stack.OLD and algo_is_new
    if layout.stack is fmt.Stack.NEW and not algo_is_new:
        raise CheckpointError(
            f"{path}: a new-API-stack checkpoint cannot be restored into an old-API-stack "
            "algorithm: tensor names differ (conversion only goes old -> new stack)"
        )
    if mapping is not None and not convert:
        raise ValueError(
            "mapping= converts old-stack checkpoints for new-stack algorithms; "
            f"here both are on the {layout.stack.value} API stack"
        )
    for src, tgt in selection.items():
        if src not in available:
            raise not_found("policy", src, path, available)
        if tgt not in algo_ids:
            raise not_found("target policy", tgt, f"the algorithm ({type(algo).__name__})", algo_ids)
    # Copies: a local torch learner hands out views that later optimizer steps rewrite.
    current = {
        pid: {n: np.array(v, copy=True) for n, v in w.items()}
        for pid, w in backend.get_weights(list(selection.values())).items()
    }
    target_configs = backend.model_configs(list(selection.values())) if convert else {}
    ready: Dict[str, Weights] = {}
    frameworks = set()
    for src, tgt in selection.items():
        label = f"policy {src!r}" if src == tgt else f"policy {src!r} -> {tgt!r}"
        if convert:
            view, source = read_policy_opened(ckpt, layout, src, trusted=trusted)
            pview = view.policies[src]
            frameworks.add(view.framework or "?")
            if mapping is None and pview.policy_class and source_algorithm(pview.policy_class) is None:
                raise MigrationError(
                    f"{label}: policy class {pview.policy_class!r}; built-in conversion takes PPO, APPO and "
                    "IMPALA policies (RLlib's default models); pass mapping= for others"
                )
            source = convert_policy(
                label,
                source,
                current[tgt],
                pview.model_config,
                target_configs[tgt],
                observation_space=pview.observation_space,
                mapping=mapping,
                target_name="the algorithm's module",
            )
        else:
            source = read_opened(ckpt, layout, src, trusted=trusted)
        try:
            ready[tgt] = check_tensors(label, source, current[tgt])
        except ShapeMismatchError as e:  # name the checkpoint too: which file did not fit
            raise type(e)(f"{e} (checkpoint {path})") from None
    report = PartialRestoreReport(
        checkpoint=path,
        restored=dict(selection),
        skipped=[p for p in available if p not in selection],
        converted_from=f"old-API-stack {'/'.join(sorted(frameworks))}" if convert else None,
    )
    return ready, current, report


def restore_policies(
    algo: object,
    checkpoint: "str | os.PathLike[str]",
    policies: PolicySelection,
    *,
    freeze: bool = False,
    trusted: bool = False,
    mapping: Optional[NameMapping] = None,
    filters: bool = True,
    agents: Optional[Mapping[str, str]] = None,
) -> PartialRestoreReport:
    """Restore ``policies`` of ``checkpoint`` into the live ``algo`` and sync everywhere.

    An old-stack checkpoint into a new-stack algorithm is converted on the way (RLlib's
    default fully connected model is built in; see :mod:`rllib_ext.convert`).

    Args:
        algo: a built RLlib Algorithm (either API stack).
        checkpoint: checkpoint directory (relative paths are fine) or URI.
        policies: ids to take, or ``{checkpoint id: algorithm id}`` to rename.
        freeze: stop training the restored ids (removed from ``policies_to_train``).
        trusted: full unpickling of old-stack policy files (default: safe mode).
        mapping: old-stack into new-stack only: ``{old tensor name: new name or None}``
            or a callable ``old weights -> new weights``, for models the built-in
            table does not cover (custom models).
        filters: carry the observation-filter statistics with the weights (see
            :mod:`rllib_ext.live.filters`); False restores the weights alone.
        agents: new-stack checkpoints: ``{target agent: source agent}`` whose filter
            statistics to carry, where the source's mapping function cannot be read.

    Raises:
        CheckpointError and subclasses: nothing in ``algo`` has changed.
    """
    t0 = time.perf_counter()
    ckpt, layout = open_checkpoint(resolve_path(checkpoint))
    report = restore_opened(
        algo, ckpt, layout, policies, freeze=freeze, trusted=trusted, mapping=mapping, filters=filters, agents=agents
    )
    report.seconds = time.perf_counter() - t0
    return report


def restore_opened(
    algo: object,
    ckpt: CheckpointDir,
    layout: fmt.Layout,
    policies: PolicySelection,
    *,
    freeze: bool = False,
    trusted: bool = False,
    mapping: Optional[NameMapping] = None,
    filters: bool = True,
    agents: Optional[Mapping[str, str]] = None,
) -> PartialRestoreReport:
    """:func:`restore_policies` on a checkpoint the caller has already opened."""
    t0 = time.perf_counter()
    selection = normalize_selection(policies)
    backend = backend_for(algo)
    algo_ids = backend.ids()
    # Training holds still (APPO/IMPALA: the learner thread) from the snapshot to the freeze.
    with backend.quiesced(list(selection.values())):
        ready, previous, report = plan(
            algo, backend, ckpt, layout, selection, algo_ids, trusted=trusted, mapping=mapping
        )
        carry = plan_filters(algo, ckpt, layout, selection, trusted=trusted, agents=agents) if filters else None
        try:
            backend.set_and_sync(ready)
            if carry is not None:
                apply_filters(algo, carry.keyed_by, carry.updates)
        except Exception:
            backend.set_and_sync(previous)  # put every target back before reporting
            if carry is not None:
                apply_filters(algo, carry.keyed_by, carry.previous)
            raise
        if carry is not None:
            report.filters = dict(carry.carried)
        if freeze:
            backend.freeze(list(ready), algo_ids)
            report.frozen = sorted(ready)
    report.seconds = time.perf_counter() - t0
    return report
