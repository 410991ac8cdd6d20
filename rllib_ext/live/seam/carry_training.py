"""Training state in and out of live learners and policies (see :mod:`rllib_ext.checkpoint.training_state`).

The functions named ``learner_*`` run on one new-stack ``Learner`` (the backend sends them
to the local learner or to every remote one); the ``policy_*`` ones on one old-stack
``Policy`` (on every env runner). :func:`plan_training` reads and checks everything before
the restore changes anything; the backend then sets weights and training state in one call
(:meth:`~rllib_ext.live.seam.backends.Backend.set_and_sync`), so whatever the backend does around
setting state (e.g. quiescing an asynchronous learner) covers both.

What is set, and how it stays exact:

* optimizer buffers are loaded into the target's own optimizer objects with the target's
  ``param_groups`` (its config's learning rate and settings rule);
* KL coefficient and log alpha are written *in place* into the learner's tensors: SAC's
  alpha optimizer holds ``curr_log_alpha[m]`` itself, so replacing the tensor would cut it off.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any, Dict, Mapping, Optional, Protocol, Sequence

import numpy as np

from ...checkpoint import format as fmt
from ...checkpoint.optimizer_data import hyperparameters
from ...checkpoint.storage import CheckpointDir
from ...checkpoint.training_state import (
    OptimizerState,
    TrainingState,
    check_training_state,
    training_state_of_policy_state,
    read_training_state,
)
from ...errors import TrainingStateError
from .ray_internals import keras_optimizer, keras_optimizer_built, torch_optimizers
from .rllib_types import Algorithm, Learner, Policy


def _numpy(value: object) -> np.ndarray:
    if hasattr(value, "detach"):
        value = value.detach().cpu().numpy()
    return np.array(value, copy=True)


def _torch_optimizer(opt: Any) -> OptimizerState:
    sd = opt.state_dict()
    buffers: Dict[int, Dict[str, np.ndarray]] = OrderedDict(
        (int(i), OrderedDict((str(k), _numpy(v)) for k, v in b.items())) for i, b in sd["state"].items())
    shapes = [tuple(int(d) for d in p.shape) for g in opt.param_groups for p in g["params"]]
    return OptimizerState(type(opt).__name__, buffers, shapes, hyperparameters(sd["param_groups"][0]))


def _load_torch_optimizer(opt: Any, state: OptimizerState) -> None:
    import torch

    buffers = {i: {k: torch.as_tensor(np.array(v, copy=True)) for k, v in b.items()} for i, b in state.buffers.items()}
    opt.load_state_dict({"state": buffers, "param_groups": opt.state_dict()["param_groups"]})


# ---------------------------------------------------------------- new stack: on a Learner


def learner_training_state(learner: Learner, module_ids: Sequence[str]) -> Dict[str, TrainingState]:
    """Each module's optimizers (by name without the module id), KL coefficient and log alpha."""
    out = {}
    for mid in module_ids:
        ts = TrainingState("new")
        for name, opt in learner.get_optimizers_for_module(mid):
            ts.optimizers[name] = _torch_optimizer(opt)
        scalars = learner_scalars(learner, [mid]).get(mid, {})
        ts.kl_coeff, ts.log_alpha = scalars.get("kl_coeff"), scalars.get("log_alpha")
        out[mid] = ts
    return out


def set_learner_training_state(learner: Learner, states: Mapping[str, TrainingState]) -> None:
    """Load each module's optimizer buffers and scalars (checked beforehand by :func:`plan_training`)."""
    for mid, ts in states.items():
        for name, opt in learner.get_optimizers_for_module(mid):
            _load_torch_optimizer(opt, ts.optimizers[name])
        set_learner_scalars(learner, {mid: {"kl_coeff": ts.kl_coeff, "log_alpha": ts.log_alpha}})


def learner_scalars(learner: Learner, module_ids: Sequence[str] = ()) -> Dict[str, Dict[str, float]]:
    """``{module: {"kl_coeff": x, "log_alpha": y}}`` for the scalars this learner keeps.

    RLlib 2.60's ``Learner.get_state()`` saves neither; the ``...Partial`` algorithms put
    these into their checkpoints (``algorithm_state``), and a restore carries them.
    """
    ids = list(module_ids) or list(learner.module.keys())
    kl = getattr(learner, "curr_kl_coeffs_per_module", None)
    alpha = getattr(learner, "curr_log_alpha", None)
    out: Dict[str, Dict[str, float]] = {}
    for mid in ids:
        entry = {}
        if kl is not None:
            entry["kl_coeff"] = float(_numpy(kl[mid]).reshape(-1)[0])
        if alpha is not None:
            entry["log_alpha"] = float(_numpy(alpha[mid]).reshape(-1)[0])
        if entry:
            out[mid] = entry
    return out


def set_learner_scalars(learner: Learner, scalars: Mapping[str, Mapping[str, Optional[float]]]) -> None:
    """Write KL coefficients and log alphas in place (modules this learner lacks are skipped)."""
    import torch

    present = set(learner.module.keys())
    for mid, entry in scalars.items():
        if mid not in present:
            continue
        for key, attr in (("kl_coeff", "curr_kl_coeffs_per_module"), ("log_alpha", "curr_log_alpha")):
            table, value = getattr(learner, attr, None), entry.get(key)
            if table is not None and value is not None:
                with torch.no_grad():
                    table[mid].fill_(float(value))


# ---------------------------------------------------------------- old stack: on a Policy


def policy_training_state(policy: Policy) -> TrainingState:
    """The training keys of the policy's own ``get_state()`` (optimizers, KL coefficient,
    ``global_timestep``, ``num_grad_updates``, exploration state)."""
    if policy.framework != "torch":
        _build_keras_optimizer(policy)
    state = policy.get_state()
    if policy.framework == "torch":
        ts = training_state_of_policy_state({k: v for k, v in state.items() if k != "_optimizer_variables"}, "the algorithm")
        for i, opt in enumerate(torch_optimizers(policy)):
            ts.optimizers[str(i)] = _torch_optimizer(opt)
        return ts
    return training_state_of_policy_state(state, "the algorithm")


def _build_keras_optimizer(policy: Policy) -> None:
    """Give a tf2 policy's optimizer its slots now, as its first update would.

    tf-keras builds the moments on the first ``apply_gradients``; until then the optimizer
    holds only its iteration counter, and RLlib's own ``set_state`` then sets that one
    variable and silently drops the rest (it zips the lists). Zero moments at iteration 0
    are what that first update starts from, so building them changes no behaviour.
    """
    opt = keras_optimizer(policy)
    if opt is None or keras_optimizer_built(opt) or not hasattr(opt, "build"):
        return
    model = getattr(policy, "model")  # EagerTFPolicyV2's; Policy does not declare it
    variables = model.trainable_variables  # RLlib's order (_compute_gradients_helper)
    opt.build(list(variables() if callable(variables) else variables))


def set_policy_training_state(policy: Policy, ts: TrainingState) -> None:
    """Set what :func:`policy_training_state` reads, without touching weights, connectors or config."""
    if policy.framework == "torch":
        for i, opt in enumerate(torch_optimizers(policy)):
            _load_torch_optimizer(opt, ts.optimizers[str(i)])
    elif ts.optimizers:
        _build_keras_optimizer(policy)
        values = [b["value"] for _, b in sorted(ts.optimizers["0"].buffers.items())]
        variables = list(keras_optimizer(policy).variables())
        if len(variables) != len(values):  # checked by plan_training; never assign a prefix
            raise TrainingStateError(f"tf2 optimizer has {len(variables)} variables, the state {len(values)}")
        for var, value in zip(variables, values):
            var.assign(value)
    if ts.kl_coeff is not None and hasattr(policy, "kl_coeff"):
        if hasattr(policy.kl_coeff, "assign"):  # tf2: a variable plus its Python mirror
            setattr(policy, "kl_coeff_val", ts.kl_coeff)  # the tf2 KL mixin's; Policy does not declare it
            policy.kl_coeff.assign(ts.kl_coeff)
        else:
            policy.kl_coeff = ts.kl_coeff
    if "global_timestep" in ts.counters:
        if hasattr(policy.global_timestep, "assign"):
            policy.global_timestep.assign(ts.counters["global_timestep"])
        else:
            policy.global_timestep = ts.counters["global_timestep"]
    if "num_grad_updates" in ts.counters:
        policy.num_grad_updates = ts.counters["num_grad_updates"]
    if ts.exploration is not None:
        exploration = getattr(policy, "exploration", None)  # Policy does not declare it
        if exploration is not None:
            exploration.set_state(dict(ts.exploration))


# ---------------------------------------------------------------- planning a restore


@dataclass
class TrainingPlan:
    """Checked training states to set (``ready``) and the targets' own (``previous``, for rollback)."""

    ready: Dict[str, TrainingState] = field(default_factory=dict)
    previous: Dict[str, TrainingState] = field(default_factory=dict)

    def carried(self) -> Dict[str, str]:
        return {t: s.describe() for t, s in self.ready.items()}


class TrainingStates(Protocol):
    """What :func:`plan_training` asks of a backend (:class:`~rllib_ext.live.seam.backend_base.Backend`)."""

    def training_states(self, ids: Sequence[str]) -> Dict[str, TrainingState]: ...


def plan_training(
    backend: TrainingStates, ckpt: CheckpointDir, layout: fmt.Layout, selection: Mapping[str, str], *, trusted: bool = False
) -> TrainingPlan:
    """Read each source policy's training state and check it against its target; change nothing.

    Raises:
        MissingTrainingStateError: the source lacks what the target keeps (named).
        TrainingStateError: optimizers differ (kind, count, parameter shapes), or the
            source is of the other API stack (optimizers do not cross stacks).
    """
    current = backend.training_states(list(selection.values()))
    plan = TrainingPlan(previous=current)
    for src, tgt in selection.items():
        label = f"policy {src!r}" if src == tgt else f"policy {src!r} -> {tgt!r}"
        if layout.stack.value != current[tgt].stack:
            raise TrainingStateError(
                f"{label}: training state does not cross API stacks ({layout.stack.value}-stack checkpoint "
                f"{ckpt.uri}, {current[tgt].stack}-stack algorithm); restore with training_state=False"
            )
        source = read_training_state(ckpt, layout, src, trusted=trusted)
        check_training_state(label, source, current[tgt], ckpt.uri)
        plan.ready[tgt] = source
    return plan


# ---------------------------------------------------------------- the ...Partial checkpoints


def algorithm_scalars(algo: Algorithm) -> Dict[str, Dict[str, float]]:
    """Every module's KL coefficient / log alpha, from the (first) learner: what a
    ``...Partial`` algorithm adds to its state so that its own resume keeps them."""
    group = getattr(algo, "learner_group", None)
    if group is None:  # e.g. an algorithm built without learners
        return {}
    return next(iter(r.get() for r in group.foreach_learner(lambda l: learner_scalars(l))), {})


def set_algorithm_scalars(algo: Algorithm, scalars: Mapping[str, Mapping[str, float]]) -> None:
    """Set saved KL coefficients / log alphas on every learner (unknown modules skipped)."""
    group = getattr(algo, "learner_group", None)
    if group is None:  # (not `if group`: a LearnerGroup with one local learner has len() 0)
        return
    for result in group.foreach_learner(lambda l, _s=dict(scalars): set_learner_scalars(l, _s)):
        result.get()
