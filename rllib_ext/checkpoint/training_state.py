"""A policy's training state as plain data: what its learner built up beside the weights.

Weights say how a policy acts; these say how it goes on *learning*:

* every optimizer of the policy: its per-parameter buffers (Adam's ``step``, ``exp_avg``,
  ``exp_avg_sq``) by parameter index, the parameter count and its hyperparameters
  (recorded, never applied: a target keeps its own config's learning rate);
* PPO's/APPO's adapted KL coefficient and SAC's learned temperature (log alpha);
* old stack only: the policy's counters (``global_timestep``, ``num_grad_updates``) and
  its exploration state. (Target networks are not in RLlib's old-stack policy state; a
  restored policy's target network is re-synced from its weights, as RLlib's own restore does.)

Where it is read from (Ray-free, numpy only):

* new-stack algorithm checkpoints: ``learner_group/learner/state.pkl`` (``optimizer``:
  ``{"<module>_<name>": {"module_id", "state": torch state_dict}}``; an entry belongs to
  the module its ``module_id`` names, so ids that prefix each other, ``main`` and
  ``main_v1``, never mix) and, for runs of the ``...Partial`` algorithms, the KL
  coefficients and log alphas in ``algorithm_state.pkl`` under :data:`SCALARS_KEY`
  (plain RLlib 2.60 saves neither);
* old-stack policy states: the training keys of ``Policy.get_state()``;
* the single-policy format 1.2: ``policy.json``'s ``training_state`` (JSON) plus
  ``training_state.safetensors`` (the tensors).
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any, Dict, List, Mapping, Optional, Tuple

import numpy as np

from ..errors import CheckpointFormatError, MissingTrainingStateError, TrainingStateError, malformed
from . import format as fmt
from .codecs.safe_pickle import Placeholder
from .lazy import LazyArray
from .optimizer_data import hyperparameters, infer_kind, plain_value, tf_variable_value
from .policy_file import OptimizerJson, TrainingStateJson, read_training_tensors
from .decode import decode_file
from .locate import ids_in, weights_file
from .storage import CheckpointDir

SCALARS_KEY = "rllib_ext_learner_scalars"  # in a ...Partial run's algorithm_state: {module: {kl_coeff, log_alpha}}
LEARNER_STATE_FILES = ("learner_group/learner/state.pkl", "learner_group/learner/state.msgpack")
ALGORITHM_STATE_FILES = ("algorithm_state.pkl", "algorithm_state.msgpack")
TRAINING_FILE = "training_state.safetensors"  # single-policy format 1.2
OLD_STACK_KEYS = ("_optimizer_variables", "current_kl_coeff", "global_timestep", "num_grad_updates", "_exploration_state")
Shape = Tuple[int, ...]


@dataclass
class OptimizerState:
    """One optimizer's state.

    Attributes:
        kind: the optimizer class ('Adam', 'SGD', ...); from a checkpoint, inferred from
            its buffers and hyperparameters.
        buffers: ``{parameter index: {buffer name: array}}`` (empty before the first step).
        param_shapes: the shape of each parameter it updates, in index order (from a live
            optimizer; from a checkpoint, the buffers' shapes).
        hyperparameters: ``param_groups[0]`` without ``params`` (lr, betas, ...), plain data.
    """

    kind: str
    buffers: Dict[int, Dict[str, np.ndarray]]
    param_shapes: List[Shape]
    hyperparameters: Dict[str, Any] = field(default_factory=dict)

    @property
    def step(self) -> Optional[int]:
        """The optimizer's step count (the largest per-parameter ``step``), if it keeps one."""
        if self.kind == "keras":  # tf-keras keeps its iteration count as its first variable, a 0-d int
            first = self.buffers.get(0, {}).get("value")
            return int(first) if first is not None and np.ndim(first) == 0 else None
        steps = [int(np.asarray(b["step"]).max()) for b in self.buffers.values() if "step" in b]
        return max(steps) if steps else None


@dataclass
class TrainingState:
    """What one policy's learner keeps beside its weights (see the module docstring).

    ``optimizers`` are keyed by name without the module id (new stack: 'default_optimizer',
    SAC's 'qf', 'qf_twin', 'policy', 'alpha'; old stack: '0', '1', ... in the policy's
    order), so a renamed policy takes them as they are.
    """

    stack: str
    optimizers: "OrderedDict[str, OptimizerState]" = field(default_factory=OrderedDict)
    kl_coeff: Optional[float] = None
    log_alpha: Optional[float] = None
    counters: Dict[str, int] = field(default_factory=dict)
    exploration: Optional[Dict[str, Any]] = None

    def describe(self) -> str:
        """One line for reports and ``inspect``: 'Adam x1 (step 4), KL coeff 0.1'."""
        parts = []
        if self.optimizers:
            kinds: Dict[str, int] = OrderedDict()
            for o in self.optimizers.values():
                kinds[o.kind] = kinds.get(o.kind, 0) + 1
            steps = [o.step for o in self.optimizers.values() if o.step is not None]
            parts.append(", ".join(f"{k} x{n}" for k, n in kinds.items()) + (f" (step {max(steps)})" if steps else ""))
        if self.kl_coeff is not None:
            parts.append(f"KL coeff {self.kl_coeff:.6g}")
        if self.log_alpha is not None:
            parts.append(f"alpha {float(np.exp(self.log_alpha)):.6g}")
        if "global_timestep" in self.counters:
            parts.append(f"timestep {self.counters['global_timestep']}")
        return "; ".join(parts) or "empty"

    def to_json(self) -> Tuple[TrainingStateJson, "OrderedDict[str, np.ndarray]"]:
        """``(policy.json's training_state entry, tensors for training_state.safetensors)``."""
        tensors: "OrderedDict[str, np.ndarray]" = OrderedDict()
        optims: Dict[str, OptimizerJson] = OrderedDict()
        for name, o in self.optimizers.items():
            for idx, bufs in o.buffers.items():
                for key, arr in bufs.items():
                    tensors[f"optimizer/{name}/{idx}/{key}"] = np.asarray(arr)
            optims[name] = {"kind": o.kind, "param_shapes": [list(s) for s in o.param_shapes],
                            "hyperparameters": plain_value(o.hyperparameters)}
        doc: TrainingStateJson = {"stack": self.stack, "optimizers": optims, "kl_coeff": self.kl_coeff, "log_alpha": self.log_alpha,
               "counters": dict(self.counters), "exploration": plain_value(self.exploration)}
        return doc, tensors

    @classmethod
    def from_json(cls, doc: TrainingStateJson, tensors: Mapping[str, np.ndarray], where: str) -> "TrainingState":
        """Inverse of :meth:`to_json`.

        Raises:
            CheckpointFormatError: the entry and the tensors disagree.
        """
        with malformed(where, "training state is malformed", catch=(KeyError, TypeError, ValueError, AttributeError)):
            optims: "OrderedDict[str, OptimizerState]" = OrderedDict()
            for name, o in doc["optimizers"].items():
                optims[name] = OptimizerState(str(o["kind"]), {}, [tuple(int(d) for d in s) for s in o["param_shapes"]],
                                              dict(o.get("hyperparameters") or {}))
            for key, arr in tensors.items():
                kind, _, rest = key.partition("/")
                parts = rest.rsplit("/", 2)
                if kind != "optimizer" or len(parts) != 3 or parts[0] not in optims or not parts[1].isdigit():
                    raise CheckpointFormatError(
                        f"{where}: training state is malformed (tensor {key!r} is no buffer of the optimizers "
                        f"{', '.join(optims) or '(none)'})"
                    )
                name, idx, buf = parts
                optims[name].buffers.setdefault(int(idx), OrderedDict())[buf] = arr
            return cls(str(doc["stack"]), optims, _float(doc.get("kl_coeff")), _float(doc.get("log_alpha")),
                       {str(k): int(v) for k, v in (doc.get("counters") or {}).items()}, doc.get("exploration"))


def _float(v: Any) -> Optional[float]:
    return None if v is None else float(v)


def optimizer_from_state_dict(sd: object, where: str) -> OptimizerState:
    """An :class:`OptimizerState` from a torch optimizer ``state_dict`` of numpy arrays.

    Raises:
        MissingTrainingStateError: the buffers are not numpy arrays (e.g. torch tensors
            pickled by Ray 2.45, which safe mode does not build).
    """
    if not isinstance(sd, Mapping) or not isinstance(sd.get("state"), Mapping):
        raise CheckpointFormatError(f"{where}: not an optimizer state_dict (no 'state')")
    buffers: Dict[int, Dict[str, np.ndarray]] = OrderedDict()
    for idx, bufs in sd["state"].items():
        out = OrderedDict()
        for key, v in dict(bufs).items():
            if isinstance(v, LazyArray):
                v = v.materialize()
            if isinstance(v, Placeholder) or (isinstance(v, type) and issubclass(v, Placeholder)):
                raise MissingTrainingStateError(
                    f"{where}: optimizer buffer {key!r} is a {type(v).__name__} object, not a numpy array "
                    "(Ray 2.45 pickled torch tensors here); it cannot be read without torch"
                )
            out[str(key)] = np.array(v, copy=True)
        buffers[int(idx)] = out
    groups = list(sd.get("param_groups") or [{}])
    hyper = {k: v for k, v in dict(groups[0]).items() if k != "params"}
    count = sum(len(g.get("params") or []) for g in groups)
    shapes = [_param_shape(buffers.get(i, {})) for i in range(count)]
    return OptimizerState(infer_kind(buffers, hyper), buffers, shapes, hyperparameters(groups[0]))


def _param_shape(bufs: Mapping[str, np.ndarray]) -> Shape:
    """A parameter's shape from its buffers (every buffer but ``step`` has it); () unknown."""
    for key, arr in bufs.items():
        if key != "step":
            return tuple(int(d) for d in np.shape(arr))
    return ()


# ---------------------------------------------------------------- reading checkpoints


def describe_training(
    ckpt: CheckpointDir, layout: fmt.Layout, ids: List[str], *, trusted: bool = False
) -> Dict[str, Optional[str]]:
    """``{policy: one-line description or None}`` (``inspect``): the learner state is read once."""
    out: Dict[str, Optional[str]] = {}
    learner: Dict[str, Any] = {}
    for pid in ids:
        try:
            ts = read_training_state(ckpt, layout, pid if layout.kind is fmt.Kind.ALGORITHM else None,
                                     trusted=trusted, cache=learner)
            out[pid] = ts.describe()
        except TrainingStateError:
            out[pid] = None
    return out


def read_training_state(
    ckpt: CheckpointDir, layout: fmt.Layout, policy_id: Optional[str], *, trusted: bool = False,
    cache: Optional[Dict[str, Any]] = None,
) -> TrainingState:
    """The training state of ``policy_id`` in a checkpoint, numpy only.

    Raises:
        MissingTrainingStateError: the checkpoint keeps none for this policy (module and
            weights-only policy files, Ray ~2.30 layouts, Ray 2.45 torch-pickled optimizers);
            the message says what is missing.
        PolicyNotFoundError: ``policy_id`` is not in the checkpoint.

    ``cache`` (a dict the caller keeps) holds decoded state files across calls.
    """
    where = ckpt.uri if policy_id is None else f"policy {policy_id!r} of {ckpt.uri}"
    if layout.kind is fmt.Kind.SINGLE_POLICY:
        doc = layout.metadata.get("training_state")
        if not doc:
            raise MissingTrainingStateError(
                f"{ckpt.uri}: single-policy file (format {layout.version}) holds weights only, no training state "
                "(optimizer state, KL coefficient, alpha); write it with save_policy(..., training_state=True)"
            )
        return TrainingState.from_json(doc, read_training_tensors(ckpt, layout), ckpt.child(fmt.SINGLE_POLICY_META))
    if layout.kind in (fmt.Kind.MODULE, fmt.Kind.MULTI_MODULE) or (layout.stack is fmt.Stack.NEW and layout.version == "1.2"):
        raise MissingTrainingStateError(
            f"{where}: a {layout.kind.value} checkpoint (version {layout.version}) holds weights only, no optimizer "
            "state; restore from the algorithm checkpoint it came from"
        )
    if layout.stack is fmt.Stack.OLD:
        return _old_stack(ckpt, layout, policy_id, where, trusted)
    ids = ids_in(ckpt, layout)
    pid = policy_id if policy_id is not None else ids[0]
    rel = next((f for f in LEARNER_STATE_FILES if ckpt.exists(f)), None)
    if rel is None:
        raise MissingTrainingStateError(f"{where}: no learner state ({' or '.join(LEARNER_STATE_FILES)}), so no optimizer state")
    cache = cache if cache is not None else {}
    if rel not in cache:
        cache[rel] = decode_file(ckpt, rel, trusted=trusted)
    state = cache[rel]
    optim = state.get("optimizer") if isinstance(state, Mapping) else None
    out = TrainingState("new")
    for name, entry in (optim or {}).items():
        if isinstance(entry, Mapping) and entry.get("module_id") == pid and str(name).startswith(f"{pid}_"):
            out.optimizers[str(name)[len(pid) + 1:]] = optimizer_from_state_dict(entry.get("state"), f"{ckpt.child(rel)} ({name})")
    if not out.optimizers:
        raise MissingTrainingStateError(f"{where}: {ckpt.child(rel)} holds no optimizer state for module {pid!r}")
    if "scalars" not in cache:
        cache["scalars"] = _partial_scalars(ckpt, trusted)
    scalars = cache["scalars"].get(pid) or {}
    out.kl_coeff, out.log_alpha = _float(scalars.get("kl_coeff")), _float(scalars.get("log_alpha"))
    return out


def _partial_scalars(ckpt: CheckpointDir, trusted: bool) -> Dict[str, Dict[str, Any]]:
    """``{module: {kl_coeff, log_alpha}}`` a ``...Partial`` run saved, else ``{}``."""
    rel = next((f for f in ALGORITHM_STATE_FILES if ckpt.exists(f)), None)
    if rel is None:
        return {}
    state = decode_file(ckpt, rel, trusted=trusted)
    found = state.get(SCALARS_KEY) if isinstance(state, Mapping) else None
    return {str(k): dict(v) for k, v in found.items() if isinstance(v, Mapping)} if isinstance(found, Mapping) else {}


def _old_stack(ckpt: CheckpointDir, layout: fmt.Layout, policy_id: Optional[str], where: str, trusted: bool) -> TrainingState:
    rel = weights_file(ckpt, layout, policy_id if layout.kind is fmt.Kind.ALGORITHM else None)
    state = decode_file(ckpt, rel, trusted=trusted, lazy=True)
    if not isinstance(state, Mapping):
        raise CheckpointFormatError(f"{ckpt.child(rel)}: policy state is not a mapping")
    missing = [k for k in ("_optimizer_variables", "global_timestep") if k not in state]
    if missing:
        raise MissingTrainingStateError(f"{where}: {ckpt.child(rel)} has no {', '.join(missing)}")
    return training_state_of_policy_state(state, ckpt.child(rel))


def training_state_of_policy_state(state: Mapping[str, Any], where: str) -> TrainingState:
    """The training part of an old-stack ``Policy.get_state()`` (torch: optimizer state_dicts;
    tf2: the optimizer's variables in order, given as arrays)."""
    out = TrainingState("old")
    variables = state.get("_optimizer_variables") or []
    if isinstance(variables, Placeholder) and variables.name == "CallableList" and variables.module.startswith(
        ("tf_keras.", "keras.")
    ):  # (tf-)keras's `list` subclass (optimizer.variables(); Ray 2.10 to 2.60); its items were appended
        variables = list(variables.listitems)
    if not isinstance(variables, (list, tuple)):  # another object safe mode does not build
        raise MissingTrainingStateError(
            f"{where}: the optimizer variables are a {type(variables).__name__} object, which safe mode does "
            "not build; pass trusted=True to read them (it runs the code the file names)"
        )
    for i, sd in enumerate(variables):
        if isinstance(sd, Mapping):
            out.optimizers[str(i)] = optimizer_from_state_dict(sd, f"{where} (_optimizer_variables[{i}])")
        else:  # tf2: one variable of the (single) Keras optimizer per entry
            arr = np.array(getattr(sd, "numpy", lambda: tf_variable_value(sd))(), copy=True)
            if arr.dtype.hasobject:
                raise MissingTrainingStateError(
                    f"{where}: optimizer variable {i} is a {type(sd).__name__} object; tf2 optimizer state needs "
                    "trusted=True (TensorFlow pickles it)"
                )
            opt = out.optimizers.setdefault("0", OptimizerState("keras", {}, []))
            opt.buffers[i] = OrderedDict(value=arr)
            opt.param_shapes.append(tuple(arr.shape))
    if state.get("current_kl_coeff") is not None:
        out.kl_coeff = float(state["current_kl_coeff"])
    for key in ("global_timestep", "num_grad_updates"):
        if state.get(key) is not None:
            out.counters[key] = int(np.asarray(state[key]))
    if state.get("_exploration_state") is not None:
        try:
            out.exploration = plain_value(state["_exploration_state"])
        except TypeError as e:
            raise MissingTrainingStateError(f"{where}: exploration state is not plain data ({e})") from e
    return out


# ---------------------------------------------------------------- fitting a target


def check_training_state(label: str, source: TrainingState, target: TrainingState, where: str) -> None:
    """Raise unless ``source`` can replace ``target`` (the live policy's current state).

    Everything the target keeps must be in the source (else :class:`MissingTrainingStateError`
    naming it); the optimizers must agree in number, names, kind and parameter shapes
    (else :class:`TrainingStateError` naming both sides).
    """
    missing = [f"optimizer {n!r}" for n in target.optimizers if n not in source.optimizers]
    if target.kl_coeff is not None and source.kl_coeff is None:
        missing.append("KL coefficient (plain RLlib 2.60 does not save it; the ...Partial algorithms do)")
    if target.log_alpha is not None and source.log_alpha is None:
        missing.append("log alpha (plain RLlib 2.60 does not save it; the ...Partial algorithms do)")
    missing += [f"counter {k!r}" for k in target.counters if k not in source.counters]
    if target.exploration is not None and source.exploration is None:
        missing.append("exploration state")
    if missing:
        raise MissingTrainingStateError(f"{label}: {where} has no {'; no '.join(missing)} (the algorithm has)")
    if list(source.optimizers) != list(target.optimizers):
        raise TrainingStateError(
            f"{label}: optimizers are {', '.join(source.optimizers)} in {where} but "
            f"{', '.join(target.optimizers) or '(none)'} in the algorithm"
        )
    for name, s in source.optimizers.items():
        t = target.optimizers[name]
        if s.kind != t.kind and "keras" not in (s.kind, t.kind):
            raise TrainingStateError(f"{label}: optimizer {name!r} is {s.kind} in {where} but {t.kind} in the algorithm")
        if len(s.param_shapes) != len(t.param_shapes):
            raise TrainingStateError(
                f"{label}: optimizer {name!r} updates {len(s.param_shapes)} parameters in {where} "
                f"but {len(t.param_shapes)} in the algorithm"
            )
        for i, (ss, ts) in enumerate(zip(s.param_shapes, t.param_shapes)):
            if ss and ts and ss != ts:
                raise TrainingStateError(
                    f"{label}: optimizer {name!r} parameter {i} is {ss} in {where} but {ts} in the algorithm"
                )
