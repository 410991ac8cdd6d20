"""Compose a checkpoint from policies of several checkpoints, by file operations alone.

``merge_checkpoints(base, takes, out)`` copies ``base`` to ``out`` and replaces the
weights of each taken policy with the weights of a policy from another checkpoint
(same architecture). No Ray, no torch: the result is loaded by RLlib's own
``Algorithm.from_checkpoint(out)``, since every file not rewritten is the base's own.

What is rewritten, per API stack:

* new stack (checkpoint_version 2.x, pickle): ``learner_group/learner/rl_module/<id>/
  module_state.pkl`` becomes a plain pickle (protocol 5) of an ``OrderedDict`` of numpy
  arrays in the base's key order, as RLlib writes it. The optimizer state in
  ``learner_group/learner/state.pkl`` is numpy-only in Ray 2.55+; there the taken
  policy's per-parameter buffers (Adam ``step``/``exp_avg``/``exp_avg_sq``) come from
  the source's algorithm checkpoint, while ``param_groups`` (learning rate etc.) stay
  the base's. When the source has no such state (a module or single-policy checkpoint)
  or the base's state file holds more than plain data, the base's optimizer state is
  kept for that policy; ``MergeReport.optimizer`` says which happened. RLlib loads
  either way (the shapes are the same); the moments just belong to other weights.
* old stack (checkpoint_version 1.x, cloudpickle): ``policies/<id>/policy_state.pkl``
  holds the whole config by value (env class, callbacks, mapping functions), which we
  neither unpickle nor re-pickle, so the file is patched **in place at byte level**
  (:mod:`.state_patch`): every ``weights`` array is overwritten with the source's bytes
  of the same length. Nothing else in the file changes, so the base's optimizer state
  (``_optimizer_variables``), timestep counters, connectors and exploration state are
  kept for the taken policy.

Not supported (clear errors): msgpack checkpoints, the Ray ~2.30 layout 1.2, adding
policies that are not in the base, mixing API stacks.

Everything is read and validated (ids, tensor names, shapes, dtypes, spaces) before a
single byte is written; ``out`` is built in a temporary sibling and renamed into place.
"""

from __future__ import annotations

import json
import os
import pickle
import shutil
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Dict, List, Mapping, Optional, Sequence, Tuple

import numpy as np

from ..checkpoint import format as fmt
from ..checkpoint.atomic import check_out, write_dir_atomically, write_synced
from ..checkpoint.filters import ObservationFilters, filters_of
from ..checkpoint.inspection import read_policy_opened
from ..checkpoint.decode import decode_file
from ..checkpoint.locate import ids_in, weights_file
from ..checkpoint.reader import open_checkpoint
from ..checkpoint.storage import CheckpointDir, fspath
from ..checkpoint.tensors import check_tensors, policy_label
from ..checkpoint.views import PolicyView
from ..errors import CheckpointError, InvalidArgumentError, ShapeMismatchError, not_found
from .filters import AgentChoice, check_pair, patch_new_stack_filter, patch_old_stack_filter
from .report import MergeReport, Take
from .state_patch import patch_policy_state
from .training import merge_training_state, plain_data

LEARNER_STATE = "learner_group/learner/state.pkl"


def merge_checkpoints(
    base: "str | os.PathLike[str]",
    takes: Sequence[Take],
    out: "str | os.PathLike[str]",
    *,
    trusted: bool = False,
    filters: bool = True,
    agents: Optional[AgentChoice] = None,
    training_state: bool = False,
) -> MergeReport:
    """Write a copy of ``base`` to ``out`` in which the taken policies hold other weights.

    Observation-filter statistics go with the weights (see :mod:`rllib_ext.merge.filters`).

    Args:
        base: an algorithm checkpoint (new stack 2.x pickle, or old stack 1.x cloudpickle).
        takes: ``(target id, source checkpoint, source id)`` triples; the target id must be
            in ``base``; ``source id`` None means the target id. The source may be any
            checkpoint the reader accepts (algorithm, module, policy, single-policy dir)
            of the same API stack.
        out: where to write; must not exist, or be an RLlib checkpoint (it is replaced)
            or an empty directory.
        trusted: read the *sources'* weights with plain pickle (runs code the files
            name). The base is never unpickled beyond safe mode.
        filters: carry the taken policies' observation-filter statistics (False: keep the base's).
        agents: new stack only: ``{target id: {base agent: source agent}}``, whose
            filter statistics each base agent takes.
        training_state: new stack: also take each source's optimizer buffers, KL
            coefficient and log alpha, or fail naming what is missing (see :mod:`.training`).

    Returns:
        A :class:`MergeReport`.

    Raises:
        InvalidArgumentError: ``takes`` is empty, a take is not a triple, a target is taken twice, or
            ``out`` or a source is not a path.
        PolicyNotFoundError: a target id not in ``base`` or a source id not in its source.
        ShapeMismatchError: tensor names, shapes, dtypes or spaces differ (nothing written).
        CheckpointError: unsupported layouts, ``out`` not replaceable, mixed API stacks.
        UnsupportedFilterError: a filter involved keeps nested (Dict/Tuple) statistics
            (``filters=False`` merges the weights alone).
    """
    t0 = time.perf_counter()
    base_ckpt, layout = open_checkpoint(base)
    _check_base_supported(base_ckpt, layout)
    plan = _normalize_takes(takes)
    inputs = [base_ckpt.uri, *(src for src, _ in plan.values())]
    final = check_out(out, inputs, "the base or a source checkpoint", replaceable=_is_checkpoint)
    base_ids = ids_in(base_ckpt, layout)

    report = MergeReport(out=final, base=base_ckpt.uri, stack=layout.stack.value)
    merging = _Merging(base_ckpt, layout, filters_of(base_ckpt, layout) if filters else None, trusted, agents,
                       training_state)
    for target, (source, source_id) in plan.items():
        if target not in base_ids:
            raise not_found("policy", target, f"the base {base_ckpt.uri}", base_ids)
        report.taken[target] = _take(merging, report, target, source, source_id)
    report.optimizer = {t: "base" for t in plan}
    if training_state:
        report.training = merge_training_state(base_ckpt, layout, merging.optimizer_sources, merging.files,
                                                trusted=trusted)
        report.optimizer.update({t: "source" for t in report.training})
    elif layout.stack is fmt.Stack.NEW and merging.optimizer_sources:
        learner_state, took = _merge_optimizer_state(base_ckpt, merging.optimizer_sources)
        if took:
            merging.files[LEARNER_STATE] = learner_state
            report.optimizer.update({t: "source" for t in took})
    meta = _rewrite_metadata(base_ckpt, final)
    if meta is not None:
        merging.files[fmt.RLLIB_METADATA] = meta

    _write_tree(base_ckpt.uri, final, merging.files)
    report.kept = [p for p in base_ids if p not in plan]
    report.files = sorted(merging.files)
    report.seconds = time.perf_counter() - t0
    return report


# ---------------------------------------------------------------- one taken policy


@dataclass
class _Merging:
    """The base, the options, and what the merge has decided so far (nothing is written yet)."""

    base: CheckpointDir
    layout: fmt.Layout
    base_filters: Optional[ObservationFilters]  # None: filters=False
    trusted: bool
    agents: Optional[AgentChoice]
    training_state: bool = False  # take the sources' optimizers, KL coefficients, log alphas too
    files: Dict[str, bytes] = field(default_factory=dict)  # relative path in out -> new content
    optimizer_sources: Dict[str, Tuple[CheckpointDir, fmt.Layout, str]] = field(default_factory=dict)


def _take(merging: _Merging, report: MergeReport, target: str, source: str, source_id: Optional[str]) -> str:
    """Check one ``(target, source, source id)`` and plan its rewritten files; ``"source:id"``."""
    base, layout = merging.base, merging.layout
    src_ckpt, src_layout = open_checkpoint(source)
    if src_layout.stack is not layout.stack:
        raise CheckpointError(
            f"{src_ckpt.uri}: a {src_layout.stack.value}-API-stack checkpoint cannot be merged into the "
            f"{layout.stack.value}-API-stack base {base.uri}: tensor names differ"
        )
    sview, src_weights = read_policy_opened(src_ckpt, src_layout, source_id or target, trusted=merging.trusted)
    bview, base_weights = read_policy_opened(base, layout, target)
    (resolved_id,) = sview.policies
    label = policy_label(resolved_id, target)
    _check_policy(label, bview.policies[target], sview.policies[resolved_id])
    base_rel = weights_file(base, layout, target)
    src_filters = filters_of(src_ckpt, src_layout) if merging.base_filters is not None else None
    if layout.stack is fmt.Stack.NEW:
        ready = check_tensors(label, src_weights, base_weights, target_name="base")
        merging.files[base_rel] = pickle.dumps(OrderedDict(ready), protocol=5)
        if merging.training_state or (src_layout.kind is fmt.Kind.ALGORITHM and src_ckpt.exists(LEARNER_STATE)):
            merging.optimizer_sources[target] = (src_ckpt, src_layout, resolved_id)
        if merging.base_filters is not None and src_filters is not None:
            took = patch_new_stack_filter(base, merging.base_filters, src_filters, merging.files, label, target, merging.agents)
            if took:
                report.filters[target] = took
    else:
        stats = None
        if merging.base_filters is not None and src_filters is not None:
            stats = src_filters.stats.get(resolved_id)
            check_pair(label, merging.base_filters.stats.get(target), stats, src_ckpt.uri)
        merging.files[base_rel] = patch_policy_state(base, base_rel, label, src_weights, stats)
        if stats is not None:
            patch_old_stack_filter(base, merging.files, label, target, stats)
            report.filters[target] = stats.describe()
    return f"{src_ckpt.uri}:{resolved_id}"


# ---------------------------------------------------------------- validation


def _check_base_supported(ckpt: CheckpointDir, layout: fmt.Layout) -> None:
    if layout.kind is not fmt.Kind.ALGORITHM:
        raise CheckpointError(
            f"{ckpt.uri}: the base must be an algorithm checkpoint, this is a {layout.kind.value} checkpoint"
        )
    if layout.stack is fmt.Stack.NEW and layout.version == "1.2":
        raise CheckpointError(f"{ckpt.uri}: merging into the Ray ~2.30 layout (version 1.2) is not supported")
    suffix = ".pkl"
    for pid in ids_in(ckpt, layout):
        rel = weights_file(ckpt, layout, pid)
        if not rel.endswith(suffix):
            raise CheckpointError(
                f"{ckpt.child(rel)}: merging into msgpack checkpoints is not supported "
                "(only pickle / cloudpickle bases)"
            )


def _normalize_takes(takes: Sequence[Take]) -> "OrderedDict[str, Tuple[str, Optional[str]]]":
    if not takes:
        raise InvalidArgumentError("takes is empty: name at least one (target id, source checkpoint, source id)")
    plan: "OrderedDict[str, Tuple[str, Optional[str]]]" = OrderedDict()
    for take in takes:
        if not isinstance(take, (tuple, list)) or len(take) != 3:
            raise InvalidArgumentError(f"takes: each take is (target id, source checkpoint, source id or None), got {take!r}")
        target, source, source_id = take
        if str(target) in plan:
            raise InvalidArgumentError(f"policy {target!r} is taken twice")
        plan[str(target)] = (fspath(source, "source checkpoint"), None if source_id is None else str(source_id))
    return plan


def _check_policy(label: str, b: PolicyView, s: PolicyView) -> None:
    """Spaces, class and model config must agree: equal shapes alone could hide e.g. other bounds."""
    for what in ("observation_space", "action_space"):
        bs, ss = getattr(b, what), getattr(s, what)
        if bs is not None and ss is not None and bs != ss:
            raise ShapeMismatchError(
                f"{label}: {what.replace('_', ' ')} is {ss.describe()} in the checkpoint but {bs.describe()} in the base"
            )
    if b.policy_class and s.policy_class and b.policy_class != s.policy_class:
        raise ShapeMismatchError(f"{label}: class is {s.policy_class} in the checkpoint but {b.policy_class} in the base")
    bm, sm = b.model_config or {}, s.model_config or {}
    differ = [k for k in bm if k in sm and bm[k] != sm[k]]
    if differ:
        k = differ[0]
        raise ShapeMismatchError(
            f"{label}: model config differs ({', '.join(differ)}); e.g. {k!r} is {sm[k]!r} in the checkpoint "
            f"but {bm[k]!r} in the base"
        )


def _is_checkpoint(path: str) -> bool:
    """An existing ``out`` that is an RLlib checkpoint may be replaced by the merge."""
    try:
        fmt.detect(CheckpointDir(path))
    except CheckpointError:
        return False
    return True


# ---------------------------------------------------------------- new stack: optimizer state


def _merge_optimizer_state(
    base: CheckpointDir, sources: Mapping[str, Tuple[CheckpointDir, fmt.Layout, str]]
) -> Tuple[bytes, List[str]]:
    """Base learner state with the targets' per-parameter optimizer buffers from the sources.

    Returns ``(new state.pkl bytes, targets whose buffers were taken)``; no targets when the
    base state is not plain data (re-pickling it would not be faithful).
    """
    if not base.exists(LEARNER_STATE):
        return b"", []
    state = decode_file(base, LEARNER_STATE)
    if not plain_data(state) or not isinstance(state.get("optimizer"), dict):
        return b"", []
    optim = state["optimizer"]
    took = []
    for target, (src_ckpt, _, src_id) in sources.items():
        src_state = decode_file(src_ckpt, LEARNER_STATE)
        src_optim = src_state.get("optimizer") if isinstance(src_state, dict) else None
        if not plain_data(src_state) or not isinstance(src_optim, dict):
            continue
        mine = {n[len(target):]: n for n, v in optim.items() if _module_of(v) == target and n.startswith(target)}
        theirs = {n[len(src_id):]: n for n, v in src_optim.items() if _module_of(v) == src_id and n.startswith(src_id)}
        if not mine or set(mine) != set(theirs):
            continue
        for suffix, name in mine.items():
            src_buffers = src_optim[theirs[suffix]]["state"]["state"]
            _check_buffers(f"policy {target!r}: optimizer {name!r}", src_buffers, optim[name]["state"]["state"])
        for suffix, name in mine.items():
            optim[name]["state"]["state"] = src_optim[theirs[suffix]]["state"]["state"]
        took.append(target)
    if not took:
        return b"", []
    return pickle.dumps(state, protocol=5), took


def _module_of(entry: object) -> object:
    return entry.get("module_id") if isinstance(entry, dict) else None


def _check_buffers(label: str, source: object, base: object) -> None:
    if not isinstance(source, dict) or not isinstance(base, dict) or set(source) != set(base):
        raise ShapeMismatchError(f"{label}: per-parameter state differs in its parameters between checkpoint and base")
    for idx, b in base.items():
        s = source[idx]
        if not isinstance(s, dict) or set(s) != set(b):
            raise ShapeMismatchError(f"{label}: parameter {idx} has other state entries in the checkpoint")
        for key, bv in b.items():
            if np.shape(s[key]) != np.shape(bv):
                raise ShapeMismatchError(
                    f"{label}: parameter {idx} {key!r} is {np.shape(s[key])} in the checkpoint but {np.shape(bv)} in the base"
                )



# ---------------------------------------------------------------- writing


def _rewrite_metadata(base: CheckpointDir, final: str) -> Optional[bytes]:
    """``rllib_checkpoint.json`` with an absolute ``state_file`` pointed at ``out``'s own file.

    RLlib rebuilds that path from the directory anyway; a stale path into the base would
    only mislead other tools.
    """
    if not base.exists(fmt.RLLIB_METADATA):
        return None
    meta = base.read_json(fmt.RLLIB_METADATA)
    state_file = meta.get("state_file") if isinstance(meta, dict) else None
    if not isinstance(state_file, str) or not os.path.isabs(state_file):
        return None
    meta["state_file"] = os.path.join(final, os.path.basename(state_file))
    return json.dumps(meta).encode("utf-8")


def _write_tree(base: str, final: str, files: Mapping[str, bytes]) -> None:
    """Copy ``base`` to a temporary sibling of ``final``, overwrite ``files``, rename into place."""
    def fill(tmp: str) -> None:
        shutil.copytree(base, tmp, symlinks=False)
        for rel, content in files.items():
            path = os.path.join(tmp, rel)
            os.unlink(path)  # never write through a hard link or into the base
            write_synced(path, content)

    write_dir_atomically(final, fill)
