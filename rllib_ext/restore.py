"""Partial restore: put chosen policies of a checkpoint into a live algorithm.

Three steps, in this order, so a failure never leaves an algorithm half-restored:
  1. plan:     read the chosen policies from the checkpoint (Ray-free reader) and
               check every id, tensor name, shape and dtype against the live algorithm
               (an old-stack checkpoint into a new-stack algorithm is converted here,
               see :mod:`rllib_ext.migrate`);
  2. apply:    set the weights where training happens (local learner / every remote
               learner on the new stack, the local worker's policies on the old one);
  3. sync:     push them to every place that acts: local and remote env runners,
               evaluation env runners. Restarted runners sync from the local runner
               (or the learners), which already hold the restored weights.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence, Union

import numpy as np

from .checkpoint import reader
from .checkpoint import format as fmt
from .checkpoint.tensors import check_tensors
from .checkpoint.inspect import load_policy
from .errors import CheckpointError, ShapeMismatchError, not_found
from .migrate import NameMapping, convert_policy

Weights = Dict[str, np.ndarray]
PolicySelection = Union[Sequence[str], Mapping[str, str]]


@dataclass
class PartialRestoreReport:
    """What a partial restore did; returned instead of only logged."""

    checkpoint: str
    restored: Dict[str, str] = field(default_factory=dict)  # target id -> source id
    frozen: List[str] = field(default_factory=list)
    skipped: List[str] = field(default_factory=list)  # in the checkpoint, not restored
    seconds: float = 0.0
    converted_from: Optional[str] = None  # e.g. "old-API-stack tf2": weights were converted

    @property
    def renamed(self) -> Dict[str, str]:
        return {t: s for t, s in self.restored.items() if t != s}

    def __str__(self) -> str:
        parts = [f"{s}->{t}" if s != t else t for t, s in self.restored.items()]
        return (
            f"restored {', '.join(parts) or 'nothing'} from {self.checkpoint}"
            f" in {self.seconds:.2f}s; frozen: {', '.join(self.frozen) or '-'}"
            f"; not taken: {', '.join(self.skipped) or '-'}"
            + (f"; converted from {self.converted_from}" if self.converted_from else "")
        )


def resolve_path(path: "str | os.PathLike[str]") -> str:
    """Absolute local path for ``path``; URIs pass through.

    Tune trial actors change their working directory to the trial dir, so a relative
    path is also tried against the directory Tune started from (TUNE_ORIG_WORKING_DIR).
    """
    text = os.fspath(path)
    if "://" in text:
        return text[len("file://"):] if text.startswith("file://") else text
    text = os.path.expanduser(text)
    if os.path.isabs(text):
        return text
    for base in (os.getcwd(), os.environ.get("TUNE_ORIG_WORKING_DIR")):
        if base and os.path.exists(os.path.join(base, text)):
            return os.path.abspath(os.path.join(base, text))
    return os.path.abspath(text)


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


# ---------------------------------------------------------------- stack backends


class _Backend:
    """The handful of operations partial restore needs, per API stack."""

    def __init__(self, algo: Any) -> None:
        self.algo = algo

    def ids(self) -> List[str]:
        raise NotImplementedError

    def get_weights(self, ids: Sequence[str]) -> Dict[str, Weights]:
        raise NotImplementedError

    def set_and_sync(self, weights: Dict[str, Weights]) -> None:
        raise NotImplementedError

    def freeze(self, ids: Sequence[str]) -> None:
        raise NotImplementedError

    def eval_group(self) -> Any:
        return getattr(self.algo, "eval_env_runner_group", None)


def _frozen_fn(current: Any, frozen: Sequence[str], all_ids: Sequence[str]) -> Any:
    """``policies_to_train`` with ``frozen`` removed, in the same form as ``current``."""
    frozen = set(frozen)
    if current is None:
        return [p for p in all_ids if p not in frozen]
    if callable(current):
        orig = current

        def should_train(pid: str, batch: Any = None) -> bool:
            return pid not in frozen and bool(orig(pid, batch))

        return should_train
    return [p for p in current if p not in frozen]


class _NewStack(_Backend):
    """RLModules live in the learner group; env runners hold inference-only copies."""

    def _learner_results(self, fn: Callable) -> List[Any]:
        results = self.algo.learner_group.foreach_learner(fn)
        return [r.get() for r in results]

    def ids(self) -> List[str]:
        return sorted(self._learner_results(lambda l: list(l.module.keys()))[0])

    def get_weights(self, ids: Sequence[str]) -> Dict[str, Weights]:
        state = self.algo.learner_group.get_weights(module_ids=list(ids))
        return {mid: dict(state[mid]) for mid in ids}

    def set_and_sync(self, weights: Dict[str, Weights]) -> None:
        import ray
        from ray.rllib.core import DEFAULT_MODULE_ID

        lg = self.algo.learner_group
        lg.set_weights(weights)  # local learner, or every remote learner
        # Env runners built by RLlib hold inference-only modules (no critic); modules
        # added later with add_module() may be full. Send both views; each module takes
        # the one that matches it.
        comps = [f"learner/rl_module/{mid}" for mid in weights]
        inference = lg.get_state(components=comps, inference_only=True)["learner"]["rl_module"]
        ref = ray.put((dict(weights), inference))

        def _set(er: Any, _ref: Any = ref) -> None:
            full, inf = ray.get(_ref)
            # A single-agent runner (e.g. the RLlink server) holds one RLModule, not a
            # MultiRLModule: it is the default module.
            modules = er.module if hasattr(er.module, "_rl_modules") else {DEFAULT_MODULE_ID: er.module}
            state = {
                mid: (inf if modules[mid].inference_only else full)[mid]
                for mid in full
                if mid in modules
            }
            # No WEIGHTS_SEQ_NO in the state: env runners apply it unconditionally.
            er.set_state({"rl_module": state})

        for group in (self.algo.env_runner_group, self.eval_group()):
            if group is not None:
                group.foreach_env_runner(_set, local_env_runner=True)

    def model_configs(self, ids: Sequence[str]) -> Dict[str, Dict[str, Any]]:
        """Each module's model config with RLlib's defaults merged in (what its catalog used)."""
        import dataclasses

        from .migrate import effective_model_config

        def _get(learner: Any, _ids: Sequence[str] = tuple(ids)) -> Dict[str, Any]:
            out = {}
            for mid in _ids:
                mc = learner.module[mid].model_config
                out[mid] = dataclasses.asdict(mc) if dataclasses.is_dataclass(mc) else dict(mc or {})
            return out

        return {mid: effective_model_config(mc) for mid, mc in self._learner_results(_get)[0].items()}

    def freeze(self, ids: Sequence[str]) -> None:
        all_ids = self.ids()

        def _freeze(learner: Any, _ids: Sequence[str] = tuple(ids)) -> None:
            learner.config.multi_agent(
                policies_to_train=_frozen_fn(learner.config.policies_to_train, _ids, all_ids)
            )

        self._learner_results(_freeze)


class _OldStack(_Backend):
    """Policies live on every rollout worker; the local worker is the source of truth."""

    @staticmethod
    def _as_dict(w: Any) -> Weights:
        if isinstance(w, (list, tuple)):  # tf2: a list in variable order
            return {str(i): v for i, v in enumerate(w)}
        return dict(w)

    def ids(self) -> List[str]:
        return sorted(self.algo.env_runner.policy_map.keys())

    def get_weights(self, ids: Sequence[str]) -> Dict[str, Weights]:
        return {pid: self._as_dict(self.algo.get_policy(pid).get_weights()) for pid in ids}

    def set_and_sync(self, weights: Dict[str, Weights]) -> None:
        import ray

        native = {}
        for pid, w in weights.items():
            current = self.algo.get_policy(pid).get_weights()
            if isinstance(current, (list, tuple)):
                native[pid] = [w[str(i)] for i in range(len(current))]
            else:
                native[pid] = w
        ref = ray.put(native)

        def _set(worker: Any, _ref: Any = ref) -> None:
            worker.set_weights(ray.get(_ref))

        for group in (self.algo.env_runner_group, self.eval_group()):
            if group is not None:
                group.foreach_env_runner(_set, local_env_runner=True)

    def freeze(self, ids: Sequence[str]) -> None:
        all_ids = self.ids()
        local = self.algo.env_runner
        new = _frozen_fn(local.is_policy_to_train, ids, all_ids)
        if not callable(new):
            new = list(new)

        for group in (self.algo.env_runner_group, self.eval_group()):
            if group is not None:
                group.foreach_env_runner(
                    lambda w, _new=new: w.set_is_policy_to_train(_new), local_env_runner=True
                )


def backend_for(algo: Any) -> _Backend:
    return _NewStack(algo) if algo.config.enable_rl_module_and_learner else _OldStack(algo)


# ---------------------------------------------------------------- plan / apply


def plan(
    algo: Any,
    checkpoint: "str | os.PathLike[str]",
    policies: PolicySelection,
    trusted: bool = False,
    mapping: Optional[NameMapping] = None,
) -> "tuple[Dict[str, Weights], Dict[str, Weights], PartialRestoreReport]":
    """Read and validate everything; touch nothing in ``algo``.

    An old-stack checkpoint restored into a new-stack algorithm is converted
    (:func:`rllib_ext.migrate.convert_policy`) before the tensor check; ``mapping``
    names the tensors for models the built-in table does not cover.

    Returns:
        ``{target id: weights ready to set}``, a copy of the targets' current weights
        (for rollback) and a report (without timing).

    Raises:
        PolicyNotFoundError, ShapeMismatchError, CheckpointError: before any change.
    """
    path = resolve_path(checkpoint)
    selection = normalize_selection(policies)
    ckpt, layout = reader.open_checkpoint(path)
    available = reader.ids_in(ckpt, layout)
    algo_is_new = bool(algo.config.enable_rl_module_and_learner)
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
    backend = backend_for(algo)
    algo_ids = backend.ids()
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
            view, source = load_policy(path, src, trusted=trusted)
            pview = view.policies[src]
            frameworks.add(view.framework or "?")
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
            source = reader.read_opened(ckpt, layout, src, trusted=trusted)
        try:
            ready[tgt] = check_tensors(label, source, current[tgt])
        except ShapeMismatchError as e:  # name the checkpoint too: which file did not fit
            raise type(e)(f"{e} (checkpoint {path})") from None
    report = PartialRestoreReport(
        checkpoint=path,
        restored={t: s for s, t in selection.items()},
        skipped=[p for p in available if p not in selection],
        converted_from=f"old-API-stack {'/'.join(sorted(frameworks))}" if convert else None,
    )
    return ready, current, report


def restore_policies(
    algo: Any,
    checkpoint: "str | os.PathLike[str]",
    policies: PolicySelection,
    *,
    freeze: bool = False,
    trusted: bool = False,
    mapping: Optional[NameMapping] = None,
) -> PartialRestoreReport:
    """Restore ``policies`` of ``checkpoint`` into the live ``algo`` and sync everywhere.

    An old-stack checkpoint into a new-stack algorithm is converted on the way (RLlib's
    default fully connected model is built in; see :mod:`rllib_ext.migrate`).

    Args:
        algo: a built RLlib Algorithm (either API stack).
        checkpoint: checkpoint directory (relative paths are fine).
        policies: ids to take, or ``{checkpoint id: algorithm id}`` to rename.
        freeze: stop training the restored ids (removed from ``policies_to_train``).
        trusted: full unpickling of old-stack policy files (default: safe mode).
        mapping: old-stack into new-stack only: ``{old tensor name: new name or None}``
            or a callable ``old weights -> new weights``, for models the built-in
            table does not cover (custom models).

    Raises:
        CheckpointError and subclasses: nothing in ``algo`` has changed.
    """
    t0 = time.perf_counter()
    ready, previous, report = plan(algo, checkpoint, policies, trusted=trusted, mapping=mapping)
    backend = backend_for(algo)
    try:
        backend.set_and_sync(ready)
    except Exception:
        backend.set_and_sync(previous)  # put every target back before reporting
        raise
    if freeze:
        backend.freeze(list(ready))
        report.frozen = sorted(ready)
    report.seconds = time.perf_counter() - t0
    return report
