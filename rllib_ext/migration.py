"""``migrate()``: write old-API-stack PPO policies as a new-API-stack MultiRLModule checkpoint.

The tensor mapping is :mod:`rllib_ext.convert` (numpy only). This module is the writer:
it builds the target ``MultiRLModule`` with RLlib (``ray.rllib`` and torch are imported
inside :func:`migrate`; no Ray runtime is started), sets the converted weights and lets
RLlib write its own checkpoint into a temporary sibling of ``out``, which is then renamed
into place. (The module is ``migration`` so that the function ``migrate`` shadows nothing.)
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any, Dict, Mapping, Optional, Sequence

import numpy as np

from .backends import effective_model_config, to_gym_space
from .checkpoint import format as fmt
from .checkpoint.atomic import write_dir_atomically
from .checkpoint.inspection import read_policy_opened
from .checkpoint.reader import ids_in, open_checkpoint, read_weights
from .checkpoint.storage import resolve_path
from .checkpoint.tensors import Weights, check_tensors
from .convert import TARGET_CLASS, NameMapping, convert_policy, old_fcnet
from .errors import CheckpointError, MigrationError, not_found


@dataclass
class MigrateReport:
    """What :func:`migrate` wrote."""

    checkpoint: str
    out: str
    converted: Dict[str, str] = field(default_factory=dict)  # policy id -> what was mapped
    module_class: str = TARGET_CLASS
    model_configs: Dict[str, Dict[str, Any]] = field(default_factory=dict)

    def __str__(self) -> str:
        return f"migrated {', '.join(self.converted) or 'nothing'} from {self.checkpoint} to {self.out} ({self.module_class})"

    def to_dict(self) -> Dict[str, Any]:
        return {
            "checkpoint": self.checkpoint,
            "out": self.out,
            "module_class": self.module_class,
            "converted": dict(self.converted),
            "model_configs": {k: dict(v) for k, v in self.model_configs.items()},
        }


def migrate(
    checkpoint: "str | os.PathLike[str]",
    out: "str | os.PathLike[str]",
    policies: Optional[Sequence[str]] = None,
    *,
    mapping: Optional[NameMapping] = None,
    model_config: Optional[Mapping[str, Any]] = None,
    trusted: bool = False,
) -> MigrateReport:
    """Write old-stack PPO policies of ``checkpoint`` as a new-stack MultiRLModule checkpoint.

    ``out`` is what RLlib itself writes under ``learner_group/learner/rl_module/``; load it
    with ``MultiRLModule.from_checkpoint(out)`` or ``RLModule.from_checkpoint(out/<id>)``,
    or start a new-stack algorithm from it with ``algo.restore_from_path(out,
    component="learner_group/learner/rl_module")``. Every policy is converted and checked
    before anything is written; ``out`` appears by one rename.

    Args:
        checkpoint: an old-stack Algorithm or Policy checkpoint (torch or tf2).
        out: the new directory (must not exist, or be empty).
        policies: ids to take; default: all.
        mapping: for models the built-in table does not cover (see the module docstring);
            applies to every policy taken.
        model_config: new-stack model config keys on top of those derived from the old
            policy (``fcnet_hiddens``, ``fcnet_activation``, ``vf_share_layers``).
        trusted: fully unpickle the old policy files (default: safe mode).

    Returns:
        A :class:`MigrateReport`.

    Raises:
        PolicyNotFoundError, MigrationError, CheckpointError: nothing was written.
    """
    path = resolve_path(checkpoint)
    ckpt, layout = open_checkpoint(path)
    if layout.stack is not fmt.Stack.OLD:
        raise CheckpointError(f"{path}: already a {layout.stack.value}-API-stack checkpoint; migrate() reads old-stack ones")
    available = ids_in(ckpt, layout)
    ids = list(policies) if policies is not None else list(available)
    if isinstance(policies, str):
        raise TypeError(f"policies must be a list of ids, not the string {policies!r}")
    if not ids:
        raise ValueError("policies is empty: name at least one policy to migrate")
    for pid in ids:
        if pid not in available:
            raise not_found("policy", pid, path, available)
    final = _check_out(out, path)

    # 1. Read and check every policy; build the target modules (no files written).
    from ray.rllib.algorithms.ppo.torch.default_ppo_torch_rl_module import DefaultPPOTorchRLModule
    from ray.rllib.core.rl_module.multi_rl_module import MultiRLModuleSpec
    from ray.rllib.core.rl_module.rl_module import RLModuleSpec
    from ray.rllib.utils.numpy import convert_to_numpy

    report = MigrateReport(checkpoint=path, out=final)
    sources, specs = {}, {}
    for pid in ids:
        view, weights = read_policy_opened(ckpt, layout, pid, trusted=trusted)
        pview = view.policies[pid]
        label = f"policy {pid!r}"
        if pview.policy_class and not pview.policy_class.startswith("PPO"):
            raise MigrationError(
                f"{label}: policy class {pview.policy_class!r}; migrate() writes {TARGET_CLASS} and takes PPO policies only"
            )
        if pview.observation_space is None or pview.action_space is None:
            raise MigrationError(f"{label}: {path} records no observation/action space for it")
        old, _ = old_fcnet(pview.model_config)
        cfg = {"fcnet_hiddens": list(old.hiddens), "fcnet_activation": old.activation, "vf_share_layers": old.vf_share_layers}
        cfg.update(dict(model_config or {}))
        sources[pid] = (pview, weights)
        specs[pid] = RLModuleSpec(
            module_class=DefaultPPOTorchRLModule,
            observation_space=to_gym_space(pview.observation_space),
            action_space=to_gym_space(pview.action_space),
            model_config=cfg,
        )
        report.model_configs[pid] = cfg
    multi = MultiRLModuleSpec(rl_module_specs=specs).build()
    ready: Dict[str, Weights] = {}
    for pid, (pview, weights) in sources.items():
        label = f"policy {pid!r}"
        template = {n: np.asarray(v) for n, v in convert_to_numpy(multi[pid].get_state()).items()}
        converted = convert_policy(
            label,
            weights,
            template,
            pview.model_config,
            effective_model_config(specs[pid].model_config),
            observation_space=pview.observation_space,
            mapping=mapping,
            target_name=f"the new {TARGET_CLASS}",
        )
        ready[pid] = check_tensors(label, converted, template)
        old, _ = old_fcnet(pview.model_config)
        fw = "tf2" if weights and all(n.isdigit() for n in weights) else "torch"
        report.converted[pid] = "custom mapping" if mapping is not None else f"{fw} FullyConnectedNetwork, {old.describe()}"
    for pid, state in ready.items():
        multi[pid].set_state(state)

    # 2. Let RLlib write its own checkpoint into a temporary sibling; check; rename.
    def fill(tmp: str) -> None:
        multi.save_to_path(tmp)
        for pid, state in ready.items():
            back = read_weights(tmp, pid)
            if sorted(back) != sorted(state) or any(not np.array_equal(back[n], state[n]) for n in state):
                raise CheckpointError(f"{tmp}: policy {pid!r} reads back different from what was set; nothing written")

    write_dir_atomically(final, fill)
    return report


def _check_out(out: "str | os.PathLike[str]", source: str) -> str:
    final = os.path.abspath(os.path.expanduser(os.fspath(out)))
    src = source.rstrip(os.sep)
    if final == src or final.startswith(src + os.sep) or src.startswith(final + os.sep):
        raise CheckpointError(f"{final}: the output must not be (inside) the source checkpoint {source}")
    if os.path.lexists(final) and (os.path.islink(final) or not os.path.isdir(final) or os.listdir(final)):
        raise CheckpointError(f"{final}: already exists and is not an empty directory; refusing to overwrite it")
    return final
