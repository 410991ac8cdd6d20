"""``migrate()``: write old-API-stack policies as a new-API-stack MultiRLModule checkpoint.

The tensor mapping is :mod:`rllib_ext.convert` (numpy only); which module class and model
config compute what the old policy computed is :mod:`rllib_ext.convert.families`. This module
is the writer: it builds the target modules with RLlib (``ray.rllib`` and torch are imported
inside :func:`migrate`; no Ray runtime is started), sets the converted weights and lets
RLlib write its own checkpoint into a temporary sibling of ``out``, which is then renamed
into place. Observation-filter statistics go beside each module as
``<out>/<policy id>/observation_filter.json`` (see :mod:`rllib_ext.checkpoint.filters`).
``dry_run=True`` does all of it except the writing and reports per policy.
(The module is ``migration`` so that the function ``migrate`` shadows nothing.)
"""

from __future__ import annotations

import copy
import json
import os
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Dict, List, Mapping, Optional, Sequence, Tuple, TypedDict, cast

import numpy as np

from ...checkpoint import format as fmt
from ...checkpoint.atomic import check_out, write_dir_atomically
from ...checkpoint.filters import FILTER_FILE, FilterStats, filters_of
from ...checkpoint.inspection import read_policy_opened
from ...checkpoint.reader import ids_in, open_checkpoint, read_weights
from ...checkpoint.storage import CheckpointDir, resolve_path
from ...checkpoint.tensors import Weights, check_tensors, is_positional
from ...convert.families import TARGET_CLASS, TARGET_MODULES, source_algorithm, source_model
from ...convert.mapping import NameMapping, convert_policy
from ...errors import CheckpointError, InvalidArgumentError, MigrationError, not_found
from ..seam.bridge import effective_model_config, to_gym_space
from ..seam.compat import require_supported_ray

if TYPE_CHECKING:
    from ..seam.rllib_types import RLModuleSpec

NOT_CARRIED = ("optimizer state", "exploration state and timesteps", "the algorithm config (set it on the new stack)")


@dataclass
class PolicyMigration:
    """One policy in a :class:`MigrateReport`: what it is, what it becomes, what stays behind."""

    policy_id: str
    supported: bool
    source: str
    module_class: str
    model_config: Dict[str, Any] = field(default_factory=dict)
    not_carried: List[str] = field(default_factory=list)
    observation_filter: Optional[str] = None
    reason: Optional[str] = None


class PolicyMigrationDict(TypedDict):
    """One policy in :meth:`MigrateReport.to_dict` (``asdict`` of a :class:`PolicyMigration`)."""

    policy_id: str
    supported: bool
    source: str
    module_class: str
    model_config: Dict[str, Any]
    not_carried: List[str]
    observation_filter: Optional[str]
    reason: Optional[str]


class MigrateReportDict(TypedDict):
    """:meth:`MigrateReport.to_dict`: what ``rllib-ext migrate --json`` prints."""

    checkpoint: str
    out: Optional[str]
    dry_run: bool
    module_class: str
    converted: Dict[str, str]
    model_configs: Dict[str, Dict[str, Any]]
    policies: Dict[str, PolicyMigrationDict]


@dataclass
class MigrateReport:
    """What :func:`migrate` wrote (or, with ``dry_run``, would write)."""

    checkpoint: str
    out: Optional[str]
    converted: Dict[str, str] = field(default_factory=dict)  # policy id -> what was mapped
    module_class: str = TARGET_CLASS
    model_configs: Dict[str, Dict[str, Any]] = field(default_factory=dict)
    policies: Dict[str, PolicyMigration] = field(default_factory=dict)
    dry_run: bool = False

    def __str__(self) -> str:
        verb = "would migrate" if self.dry_run else "migrated"
        return f"{verb} {', '.join(self.converted) or 'nothing'} from {self.checkpoint} to {self.out} ({self.module_class})"

    def to_dict(self) -> MigrateReportDict:
        return {
            "checkpoint": self.checkpoint,
            "out": self.out,
            "dry_run": self.dry_run,
            "module_class": self.module_class,
            "converted": dict(self.converted),
            "model_configs": {k: dict(v) for k, v in self.model_configs.items()},
            "policies": {k: _policy_dict(v) for k, v in self.policies.items()},
        }


def _policy_dict(m: PolicyMigration) -> PolicyMigrationDict:
    """``asdict(m)``, field by field (a copy: the report's own lists and dicts stay its own)."""
    return {
        "policy_id": m.policy_id, "supported": m.supported, "source": m.source, "module_class": m.module_class,
        "model_config": copy.deepcopy(m.model_config), "not_carried": list(m.not_carried),
        "observation_filter": m.observation_filter, "reason": m.reason,
    }


def migrate(
    checkpoint: "str | os.PathLike[str]",
    out: "str | os.PathLike[str] | None",
    policies: Optional[Sequence[str]] = None,
    *,
    mapping: Optional[NameMapping] = None,
    model_config: Optional[Mapping[str, Any]] = None,
    target: Optional[str] = None,
    dry_run: bool = False,
    trusted: bool = False,
) -> MigrateReport:
    """Write old-stack PPO / APPO / IMPALA policies as a new-stack MultiRLModule checkpoint.

    ``out`` is what RLlib itself writes under ``learner_group/learner/rl_module/``; load it
    with ``MultiRLModule.from_checkpoint(out)`` or ``RLModule.from_checkpoint(out/<id>)``,
    or start a new-stack algorithm from it with ``algo.restore_from_path(out,
    component="learner_group/learner/rl_module")``. Every policy is converted and checked
    before anything is written; ``out`` appears by one rename.

    Args:
        checkpoint: an old-stack Algorithm or Policy checkpoint (torch or tf2).
        out: the new directory (must not exist, or be empty); may be None with ``dry_run``.
        policies: ids to take; default: all.
        mapping: for models the built-in table does not cover (see :mod:`rllib_ext.convert`);
            applies to every policy taken.
        model_config: new-stack model config keys on top of those derived from the old
            policy (:meth:`rllib_ext.convert.families.SourceModel.target_config`).
        target: 'PPO', 'APPO' or 'IMPALA': write that algorithm's default module. Default:
            the policy's own algorithm. The three compute the same function (the APPO
            module adds target networks, which start as copies), so any other is explicit.
        dry_run: convert and check everything, write nothing; the report says per policy
            whether it is supported, into what, and what is not carried.
        trusted: fully unpickle the old policy files (default: safe mode).

    Returns:
        A :class:`MigrateReport`.

    Raises:
        InvalidArgumentError: ``policies`` is a string or empty, an unknown ``target``, or
            ``out=None`` without ``dry_run``; nothing was written.
        PolicyNotFoundError: a policy id is not in the checkpoint; nothing was written.
        MigrationError: a policy cannot be converted; nothing was written (with
            ``dry_run``, unsupported policies are reported instead).
        CheckpointError: the checkpoint cannot be read; nothing was written.
    """
    require_supported_ray()
    ckpt, layout, path, ids = _source_policies(checkpoint, policies, target)
    if out is None and not dry_run:
        raise InvalidArgumentError("migrate(out=None): name the new directory (only dry_run=True takes none)")
    final = check_out(out, [path], "the source checkpoint") if out is not None else None

    report = MigrateReport(checkpoint=path, out=final, dry_run=dry_run)
    filters = filters_of(ckpt, layout).stats
    specs: Dict[str, RLModuleSpec] = {}
    ready: Dict[str, Weights] = {}
    for pid in ids:
        entry, built = _prepare(ckpt, layout, pid, target, mapping, model_config, trusted)
        if built is not None and pid in filters:
            entry.observation_filter = filters[pid].describe()
        report.policies[pid] = entry
        if built is None:  # not supported
            if not dry_run:
                raise MigrationError(entry.reason)
            continue
        specs[pid], ready[pid] = built
        report.converted[pid] = entry.source
        report.model_configs[pid] = entry.model_config
    classes = sorted({e.module_class for e in report.policies.values() if e.supported})
    report.module_class = ", ".join(classes) or TARGET_CLASS
    if final is not None and not dry_run:  # out=None was refused above without dry_run
        _write(final, specs, ready, {pid: filters[pid] for pid in ready if pid in filters})
    return report


def _source_policies(
    checkpoint: "str | os.PathLike[str]", policies: Optional[Sequence[str]], target: Optional[str]
) -> Tuple[CheckpointDir, fmt.Layout, str, List[str]]:
    """``(ckpt, layout, path, ids)`` of the old-stack policies to migrate, every argument checked."""
    if target is not None and target not in TARGET_MODULES:
        raise InvalidArgumentError(f"target={target!r}; expected one of {', '.join(TARGET_MODULES)}")
    if isinstance(policies, str):
        raise InvalidArgumentError(f"policies must be a list of ids, not the string {policies!r}")
    path = resolve_path(checkpoint)
    ckpt, layout = open_checkpoint(path)
    if layout.stack is not fmt.Stack.OLD:
        raise CheckpointError(f"{path}: already a {layout.stack.value}-API-stack checkpoint; migrate() reads old-stack ones")
    available = ids_in(ckpt, layout)
    ids = list(policies) if policies is not None else list(available)
    if not ids:
        raise InvalidArgumentError("policies is empty: name at least one policy to migrate")
    for pid in ids:
        if pid not in available:
            raise not_found("policy", pid, path, available)
    return ckpt, layout, path, ids


def _write(final: str, specs: Mapping[str, RLModuleSpec], ready: Mapping[str, Weights],
           filters: Mapping[str, FilterStats]) -> None:
    """Build the MultiRLModule, let RLlib write its own checkpoint into a temporary sibling,
    put the filters beside it, read it back, and rename it into place."""
    from ray.rllib.core.rl_module.multi_rl_module import MultiRLModule, MultiRLModuleSpec

    # RLlib annotates build() with the base RLModule; a MultiRLModuleSpec builds a MultiRLModule.
    multi = cast(MultiRLModule, MultiRLModuleSpec(rl_module_specs=dict(specs)).build())
    for pid, state in ready.items():
        module = multi[pid]
        if hasattr(module, "make_target_networks"):
            module.make_target_networks()  # written too, so an APPO learner starts from them
        module.set_state(state)

    def fill(tmp: str) -> None:
        multi.save_to_path(tmp)
        for pid, state in ready.items():
            back = read_weights(tmp, pid)
            if any(n not in back or not np.array_equal(back[n], state[n]) for n in state):
                raise CheckpointError(f"{tmp}: policy {pid!r} reads back different from what was set; nothing written")
            if pid in filters:
                with open(os.path.join(tmp, pid, FILTER_FILE), "w") as f:
                    json.dump(filters[pid].to_dict(), f, indent=1)

    write_dir_atomically(final, fill)


def _prepare(ckpt: CheckpointDir, layout: fmt.Layout, pid: str, target: Optional[str], mapping: Optional[NameMapping],
             model_config: Optional[Mapping[str, Any]], trusted: bool,
             ) -> Tuple[PolicyMigration, Optional[Tuple[RLModuleSpec, Weights]]]:
    """``(PolicyMigration, (RLModuleSpec, converted state))`` for one policy; None for the
    pair when the policy is not supported (the entry says why)."""
    from ray.rllib.core.rl_module.rl_module import RLModuleSpec
    from ray.rllib.utils.numpy import convert_to_numpy

    view, weights = read_policy_opened(ckpt, layout, pid, trusted=trusted)
    pview = view.policies[pid]
    label = f"policy {pid!r}"
    fw = "tf2" if is_positional(weights) else "torch"
    algo = source_algorithm(pview.policy_class) if pview.policy_class else "PPO"
    model = source_model(pview.model_config, pview.observation_space, fw)
    chosen = target or algo or "PPO"
    entry = PolicyMigration(
        policy_id=pid, supported=False, module_class=TARGET_MODULES[chosen],
        source=f"{fw} {pview.policy_class or '?'}: {'custom mapping' if mapping is not None else model.describe()}",
        not_carried=list(NOT_CARRIED),
    )
    if algo is None:
        entry.reason = (
            f"{label}: policy class {pview.policy_class!r}; migrate() writes the new-stack default modules of "
            f"{', '.join(TARGET_MODULES)} and takes their policies only"
        )
        return entry, None
    if pview.observation_space is None or pview.action_space is None:
        entry.reason = f"{label}: {ckpt.uri} records no observation/action space for it"
        return entry, None
    if chosen == "APPO":
        entry.not_carried.append("APPO target networks (the old stack saves none; they start as copies)")
    if model.lstm is not None and not (model.fc.vf_share_layers) and mapping is None:
        entry.not_carried.append("_value_branch_separate.* (built by the old FCNet, unused by the LSTM wrapper)")
    cfg = dict(model.target_config(), **dict(model_config or {}))
    entry.model_config = cfg
    try:
        spec = RLModuleSpec(
            module_class=_module_class(entry.module_class),
            observation_space=to_gym_space(pview.observation_space),
            action_space=to_gym_space(pview.action_space),
            model_config=cfg,
        )
        module = spec.build()
        if hasattr(module, "make_target_networks"):
            module.make_target_networks()
        template = {n: np.asarray(convert_to_numpy(v)) for n, v in module.get_state().items()}
        converted = convert_policy(
            label, weights, template, pview.model_config, effective_model_config(cfg),
            observation_space=pview.observation_space, mapping=mapping, target_name=f"the new {entry.module_class}",
        )
        state = check_tensors(label, converted, template)
    except MigrationError as e:
        entry.reason = str(e)
        return entry, None
    except Exception as e:  # RLlib could not build the target module from this config
        why = "; ".join(model.reasons) or f"{type(e).__name__}: {e}"
        entry.reason = f"{label}: cannot build {entry.module_class} for it ({why}); nothing written"
        return entry, None
    entry.supported = True
    return entry, (spec, state)


def _module_class(name: str) -> type:
    if name == "DefaultAPPOTorchRLModule":
        from ray.rllib.algorithms.appo.torch.default_appo_torch_rl_module import DefaultAPPOTorchRLModule

        return DefaultAPPOTorchRLModule
    from ray.rllib.algorithms.ppo.torch.default_ppo_torch_rl_module import DefaultPPOTorchRLModule

    return DefaultPPOTorchRLModule

