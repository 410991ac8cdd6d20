"""One policy's hyperparameters, read and set for that module only, so that they hold.

Population-based training (:mod:`rllib_ext.live.population.feature`) perturbs the
hyperparameters of one policy of a multi-agent algorithm. Setting a number somewhere is
easy; making it the value the *next* update uses, and every update after it, is not:

* **new stack** (one ``Learner`` per process): ``Learner.after_gradient_based_update``
  sets every optimizer's lr from its scheduler after each update, and PPO reads the
  entropy coefficient from a scheduler per module. So the lr goes into the param groups
  *and* the scheduler is replaced by a fixed one (likewise the entropy coefficient's);
  the loss's other settings are read through ``config.get_config_for_module(id)``, so a
  per-module config (RLlib's ``algorithm_config_overrides_per_module`` applied) is put
  in its cache for that module.
* **old stack** (one ``Policy`` per env runner): the optimizer's param groups and
  ``cur_lr``, the policy's ``entropy_coeff``, its own ``config`` for the rest; the lr and
  entropy schedules of that policy are dropped (a perturbed value is a constant).

Nothing here is kept across a restore: RLlib rebuilds learners and policies from the
algorithm's config. The population feature keeps the values in its state and calls
:func:`set_hyperparams` again after every restore.

The private attributes of Ray this needs are named in :mod:`.ray_internals`.
"""

from __future__ import annotations

import difflib
from typing import Any, Dict, Mapping, Sequence

from ...errors import InvalidArgumentError
from ..seam.backends import backend_class, backend_for
from ..seam.ray_internals import drop_policy_schedule, set_learner_lr_schedule, set_module_config, torch_optimizers
from ..seam.rllib_types import AlgorithmConfig, Learner

#: What a module's loss reads and can be set per module, by stack. ``lr`` and
#: ``entropy_coeff`` are scheduled; the rest are read from the (per-module) config.
SETTABLE = {
    "new": ("lr", "entropy_coeff", "clip_param", "vf_clip_param", "vf_loss_coeff", "kl_target"),
    "old": ("lr", "entropy_coeff", "clip_param", "vf_clip_param", "vf_loss_coeff", "kl_target"),
}


def stack_of(config: AlgorithmConfig) -> str:
    """"new" or "old": the stack of the backend that ``config`` builds."""
    return backend_class(config).stack


def check_names(config: AlgorithmConfig, names: Sequence[str]) -> None:
    """Refuse a name the config does not have, or one this stack cannot set per module.

    Raises:
        InvalidArgumentError: naming the hyperparameter, with a near match or what can be set.
    """
    stack = stack_of(config)
    settable = SETTABLE[stack]
    for name in names:
        if name in settable:
            continue
        known = [k for k in vars(config) if not k.startswith("_")]
        if not hasattr(config, name) or name.startswith("_"):
            near = difflib.get_close_matches(name, list(settable) + known, n=1)
            hint = f" (did you mean {near[0]!r}?)" if near else ""
            raise InvalidArgumentError(f"unknown hyperparameter {name!r} for {type(config).__name__}{hint}")
        raise InvalidArgumentError(
            f"hyperparameter {name!r} cannot be set per module on the {stack} API stack; "
            f"these can: {', '.join(settable)}"
        )


def config_values(config: AlgorithmConfig, policy_id: str, names: Sequence[str]) -> Dict[str, float]:
    """The configured values of ``names`` for ``policy_id`` (its per-module overrides applied)."""
    if stack_of(config) == "new":
        overrides = dict(getattr(config, "algorithm_config_overrides_per_module", None) or {}).get(policy_id, {})
        return {n: float(overrides.get(n, getattr(config, n))) for n in names}
    spec = (config.policies or {}).get(policy_id) if isinstance(config.policies, Mapping) else None
    own = dict(getattr(spec, "config", None) or {})
    return {n: float(own.get(n, getattr(config, n))) for n in names}


# ---------------------------------------------------------------- new stack: on a Learner


def learner_set(learner: Learner, module_id: str, values: Mapping[str, float]) -> None:
    """Set ``values`` for ``module_id`` on one new-stack learner, for every update from now on."""
    from ray.rllib.utils.schedules.scheduler import Scheduler

    values = dict(values)
    if module_id not in set(learner.module.keys()):
        return
    if "lr" in values:
        for _, opt in learner.get_optimizers_for_module(module_id):
            for group in opt.param_groups:
                group["lr"] = float(values["lr"])
            set_learner_lr_schedule(learner, opt, Scheduler(float(values["lr"]), framework="torch"))
    entropy = getattr(learner, "entropy_coeff_schedulers_per_module", None)
    if "entropy_coeff" in values and entropy is not None:
        entropy[module_id] = Scheduler(float(values["entropy_coeff"]), framework="torch")
    config = learner.config
    base = dict((getattr(config, "algorithm_config_overrides_per_module", None) or {}).get(module_id, {}))
    # ``get_config_for_module`` caches one config per module here: put the perturbed one in.
    set_module_config(config, module_id, config.copy(copy_frozen=False).update_from_dict({**base, **values}))


def learner_values(learner: Learner, module_id: str, names: Sequence[str]) -> Dict[str, float]:
    """What the next update of ``module_id`` uses: the optimizer's lr, the schedulers, the module's config."""
    out: Dict[str, float] = {}
    module_config = learner.config.get_config_for_module(module_id)
    entropy = getattr(learner, "entropy_coeff_schedulers_per_module", None)  # PPO's, APPO's learners
    for name in names:
        if name == "lr":
            opts = learner.get_optimizers_for_module(module_id)
            out[name] = float(opts[0][1].param_groups[0]["lr"])
        elif name == "entropy_coeff" and entropy is not None:
            out[name] = float(entropy[module_id].get_current_value())
        else:
            out[name] = float(getattr(module_config, name))
    return out


# ---------------------------------------------------------------- old stack: on a Policy


def policy_set(policy: Any, values: Mapping[str, float]) -> None:
    """Set ``values`` on one old-stack policy (on one env runner)."""
    values = dict(values)
    if "lr" in values:
        drop_policy_schedule(policy, "lr")
        policy.cur_lr = float(values["lr"])
        for opt in torch_optimizers(policy):
            for group in opt.param_groups:
                group["lr"] = float(values["lr"])
    if "entropy_coeff" in values:
        drop_policy_schedule(policy, "entropy_coeff")
        policy.entropy_coeff = float(values["entropy_coeff"])
    policy.config.update(values)


def policy_values(policy: Any, names: Sequence[str]) -> Dict[str, float]:
    out: Dict[str, float] = {}
    for name in names:
        if name == "lr" and torch_optimizers(policy):
            out[name] = float(torch_optimizers(policy)[0].param_groups[0]["lr"])
        elif name == "entropy_coeff" and hasattr(policy, "entropy_coeff"):
            out[name] = float(policy.entropy_coeff)
        else:
            out[name] = float(policy.config[name])
    return out


# ---------------------------------------------------------------- on a live algorithm


def set_hyperparams(algo: Any, policy_id: str, values: Mapping[str, float]) -> None:
    """Set ``values`` for ``policy_id`` wherever it trains (every learner / every env runner's policy)."""
    values = {k: float(v) for k, v in values.items()}
    if not values:
        return
    if stack_of(algo.config) == "new":
        for r in algo.learner_group.foreach_learner(lambda l, _p=policy_id, _v=values: learner_set(l, _p, _v)):
            r.get()
        return

    def _set(worker: Any, _p: str = policy_id, _v: Mapping[str, float] = values) -> None:
        if _p in worker.policy_map:
            policy_set(worker.policy_map[_p], _v)

    algo.env_runner_group.foreach_env_runner(_set, local_env_runner=True)


def live_hyperparams(algo: Any, policy_id: str, names: Sequence[str]) -> Dict[str, float]:
    """What the next update of ``policy_id`` uses (first learner / local policy)."""
    if stack_of(algo.config) == "new":
        results = algo.learner_group.foreach_learner(lambda l, _p=policy_id, _n=tuple(names): learner_values(l, _p, _n))
        return next(iter(r.get() for r in results))
    return policy_values(backend_for(algo).policy(policy_id), names)
