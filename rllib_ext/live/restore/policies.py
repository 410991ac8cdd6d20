"""Partial restore: put chosen policies of a checkpoint into a live algorithm.

Four steps, in this order, so a failure never leaves an algorithm half-restored:
  1. plan:     read the chosen policies from the checkpoint (Ray-free reader) and
               check every id, tensor name, shape and dtype against the live algorithm
               (an old-stack checkpoint into a new-stack algorithm is converted here,
               see :mod:`rllib_ext.convert`);
  2. apply:    set the weights where training happens (local learner / every remote
               learner on the new stack, the local worker's policies on the old one);
  3. sync:     push them to every place that acts: local and remote env runners,
               evaluation env runners. Restarted runners sync from the local runner
               (or the learners), which already hold the restored weights;
  4. freeze:   (``freeze=True``) take the restored ids out of ``policies_to_train``.
If apply, sync or freeze fails, every target's weights, filter statistics and
``policies_to_train`` are put back before the error is raised.

The path is resolved once, the checkpoint opened once, and one backend
(:mod:`rllib_ext.live.seam.backends`) asked once for the algorithm's ids. Observation-filter
statistics travel with the weights (validated in the plan, set with them, rolled back
with them); the rule is in :mod:`rllib_ext.live.restore.filters`.

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

from ...checkpoint import format as fmt
from ...checkpoint.inspection import read_policy_opened
from ...checkpoint.reader import ids_in, open_checkpoint, read_opened
from ...checkpoint.storage import CheckpointDir, resolve_path
from ...checkpoint.tensors import Weights, check_tensors, policy_label
from ...convert.families import source_algorithm
from ...convert.mapping import NameMapping, convert_policy
from ...errors import InvalidArgumentError, MigrationError, ShapeMismatchError, not_found
from ..seam.backends import Backend, backend_for
from ..seam.compat import require_supported_ray
from ..seam.rllib_types import Algorithm
from .filters import plan_filters
from .options import RestoreOptions
from ..seam.carry_training import plan_training

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
        training: ``{target id: the training state set with it}`` (``training_state=True``).
    """

    checkpoint: str
    restored: Dict[str, str] = field(default_factory=dict)
    frozen: List[str] = field(default_factory=list)
    skipped: List[str] = field(default_factory=list)
    seconds: float = 0.0
    converted_from: Optional[str] = None
    filters: Dict[str, str] = field(default_factory=dict)
    training: Dict[str, str] = field(default_factory=dict)

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
            + (f"; training state: {', '.join(self.training)}" if self.training else "")
        )


def normalize_selection(policies: PolicySelection) -> Dict[str, str]:
    """``["a"]`` or ``{"a": "hero"}`` -> ``{source id: target id}``.

    Raises:
        InvalidArgumentError: a string, no id, or two sources onto one target (a
            ``ValueError``; for the string also a ``TypeError``, as before).
    """
    if isinstance(policies, str):
        raise InvalidArgumentError(f"policies must be a list or a dict of ids, not the string {policies!r}")
    if isinstance(policies, Mapping):
        mapping = {str(s): str(t) for s, t in policies.items()}
    else:
        mapping = {str(p): str(p) for p in policies}
    if not mapping:
        raise InvalidArgumentError("policies is empty: name at least one policy to restore")
    targets = list(mapping.values())
    dupes = sorted({t for t in targets if targets.count(t) > 1})
    if dupes:
        raise InvalidArgumentError(f"several checkpoint policies map to the same target id(s): {', '.join(dupes)}")
    return mapping


def plan(
    algo: Algorithm,
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
        algo: the live algorithm (named in errors).
        backend: ``backend_for(algo)``: which stack, so whether to convert.
        ckpt, layout: the checkpoint, opened once by the caller.
        selection: ``{source id: target id}`` (see :func:`normalize_selection`).
        algo_ids: ``backend.ids()``, asked once by the caller.

    Returns:
        ``{target id: weights ready to set}``, a copy of the targets' current weights
        (for rollback) and a report (without timing).

    Raises:
        PolicyNotFoundError: a source id not in the checkpoint, or a target not in ``algo``.
        ShapeMismatchError: a tensor's name or shape does not fit (``MigrationError`` when
            converting).
        InvalidArgumentError: ``mapping`` given where nothing is converted.
        CheckpointError: the checkpoint cannot be read (any subclass); raised before any change.
    """
    path = ckpt.uri
    available = ids_in(ckpt, layout)
    convert = backend.converts_from(layout.stack, path)
    if mapping is not None and not convert:
        raise InvalidArgumentError(
            "mapping= converts old-stack checkpoints for new-stack algorithms; "
            f"here both are on the {layout.stack.value} API stack"
        )
    _check_ids(algo, path, selection, available, algo_ids)
    # Copies: a local torch learner hands out views that later optimizer steps rewrite.
    current = {
        pid: {n: np.array(v, copy=True) for n, v in w.items()}
        for pid, w in backend.get_weights(list(selection.values())).items()
    }
    target_configs = backend.model_configs(list(selection.values())) if convert else {}
    ready: Dict[str, Weights] = {}
    frameworks = set()
    for src, tgt in selection.items():
        label = policy_label(src, tgt)
        if convert:
            framework, source = _converted(
                label, ckpt, layout, src, current[tgt], target_configs[tgt], trusted=trusted, mapping=mapping
            )
            frameworks.add(framework)
        else:
            source = read_opened(ckpt, layout, src, trusted=trusted)
        try:
            ready[tgt] = check_tensors(label, source, current[tgt])
        except ShapeMismatchError as e:  # name the checkpoint too: which file did not fit
            raise type(e)(f"{e} (checkpoint {path})") from e
    report = PartialRestoreReport(
        checkpoint=path,
        restored=dict(selection),
        skipped=[p for p in available if p not in selection],
        converted_from=f"old-API-stack {'/'.join(sorted(frameworks))}" if convert else None,
    )
    return ready, current, report


def _check_ids(
    algo: Algorithm, path: str, selection: Mapping[str, str], available: Sequence[str], algo_ids: Sequence[str]
) -> None:
    """Every source id is in the checkpoint, every target id in the algorithm."""
    for src, tgt in selection.items():
        if src not in available:
            raise not_found("policy", src, path, available)
        if tgt not in algo_ids:
            raise not_found("target policy", tgt, f"the algorithm ({type(algo).__name__})", algo_ids)


def _converted(
    label: str,
    ckpt: CheckpointDir,
    layout: fmt.Layout,
    src: str,
    target: Weights,
    target_config: Mapping[str, object],
    *,
    trusted: bool,
    mapping: Optional[NameMapping],
) -> Tuple[str, Weights]:
    """``(source framework, weights)``: old-stack policy ``src`` converted to the target module's names."""
    view, source = read_policy_opened(ckpt, layout, src, trusted=trusted)
    pview = view.policies[src]
    if mapping is None and pview.policy_class and source_algorithm(pview.policy_class) is None:
        raise MigrationError(
            f"{label}: policy class {pview.policy_class!r}; built-in conversion takes PPO, APPO and "
            "IMPALA policies (RLlib's default models); pass mapping= for others"
        )
    converted = convert_policy(
        label,
        source,
        target,
        pview.model_config,
        target_config,
        observation_space=pview.observation_space,
        mapping=mapping,
        target_name="the algorithm's module",
    )
    return view.framework or "?", converted


def restore_policies(
    algo: Algorithm,
    checkpoint: "str | os.PathLike[str]",
    policies: PolicySelection,
    **options: object,
) -> PartialRestoreReport:
    """Restore ``policies`` of ``checkpoint`` into the live ``algo`` and sync everywhere.

    An old-stack checkpoint into a new-stack algorithm is converted on the way (RLlib's
    default fully connected model is built in; see :mod:`rllib_ext.convert`).

    Args:
        algo: a built RLlib Algorithm (either API stack).
        checkpoint: checkpoint directory (relative paths are fine) or URI.
        policies: ids to take, or ``{checkpoint id: algorithm id}`` to rename.
        options: the :class:`~rllib_ext.RestoreOptions` keywords (``freeze``, ``trusted``,
            ``mapping``, ``filters``, ``agents``, ``training_state``); training state: see
            :mod:`rllib_ext.live.seam.carry_training`, filters: :mod:`rllib_ext.live.restore.filters`.

    Raises:
        InvalidArgumentError: ``policies`` is a string, empty, or maps two ids onto one
            (also a ``ValueError``/``TypeError``); an unknown option or a value that does not fit it.
        PolicyNotFoundError: an id is not in the checkpoint, or a target not in ``algo``.
        ShapeMismatchError: tensors do not fit (``MigrationError``: no conversion fits).
        UnsupportedFilterError: filter statistics of a kind not carried (nested spaces).
        MissingTrainingStateError: ``training_state=True`` and the source lacks some.
        TrainingStateError: a source's training state does not fit the target.
        LearnerBusyError: an asynchronous learner (APPO, IMPALA) did not finish its
            update in time (also a ``TimeoutError``).
        UnsupportedRayError: the installed Ray is outside the supported releases.
        CheckpointError: the checkpoint is missing or malformed (any other subclass).

        Nothing in ``algo`` has changed when one is raised. An error of RLlib itself while
        setting the weights is raised as it is, after every target was put back.
    """
    chosen = RestoreOptions.from_keywords(options)  # checked before anything is opened
    require_supported_ray()
    t0 = time.perf_counter()
    ckpt, layout = open_checkpoint(resolve_path(checkpoint))
    report = restore_opened(algo, ckpt, layout, policies, **chosen.keywords())
    report.seconds = time.perf_counter() - t0
    return report


def restore_opened(
    algo: Algorithm,
    ckpt: CheckpointDir,
    layout: fmt.Layout,
    policies: PolicySelection,
    **options: object,
) -> PartialRestoreReport:
    """:func:`restore_policies` on a checkpoint the caller has already opened."""
    t0 = time.perf_counter()
    opts = RestoreOptions.from_keywords(options)
    freeze, trusted = opts.freeze, opts.trusted
    selection = normalize_selection(policies)
    backend = backend_for(algo)
    algo_ids = backend.ids()
    # Training holds still (APPO/IMPALA: the learner thread) from the snapshot to the freeze.
    with backend.quiesced(list(selection.values())):
        ready, previous, report = plan(
            algo, backend, ckpt, layout, selection, algo_ids, trusted=trusted, mapping=opts.mapping
        )
        carry = (plan_filters(backend, ckpt, layout, selection, trusted=trusted, agents=opts.agents)
                 if opts.filters else None)
        train = plan_training(backend, ckpt, layout, selection, trusted=trusted) if opts.training_state else None
        trainable = backend.trainable() if freeze else None
        try:  # all or nothing: weights, training state, filters and the freeze
            backend.set_and_sync(ready, training=train.ready if train else None)
            if carry is not None:
                backend.set_filters(carry.updates)
            if freeze:
                backend.freeze(list(ready), algo_ids)
        except Exception:
            backend.set_and_sync(previous, training=train.previous if train else None)  # put every target back
            if carry is not None:
                backend.set_filters(carry.previous)
            if freeze:
                backend.set_trainable(trainable)
            raise
        if carry is not None:
            report.filters = dict(carry.carried)
        if train is not None:
            report.training = train.carried()
        if freeze:
            report.frozen = sorted(ready)
    report.seconds = time.perf_counter() - t0
    return report
