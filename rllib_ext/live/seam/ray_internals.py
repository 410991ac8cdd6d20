"""Every private attribute of Ray, RLlib (and tf-keras) that rllib_ext touches, named once.

The rest of the package calls the functions here instead of reading ``x._name`` itself
(``tests/test_compat.py`` walks ``rllib_ext/`` and fails on a private access anywhere
else). Each entry says which releases it was checked on: "2.45, 2.60" means read in both
wheels' sources (the ``torch-ray245`` tox cell runs the live tests on 2.45.0, the others
on 2.60.0). An attribute that a release lacks is read with a default, and the entry says
which release lacks it. When Ray renames one, this module is the one place to change.

Nothing here imports Ray: the functions take the live objects.
"""

from __future__ import annotations

import sys
import threading
import time
from types import CodeType
from typing import TYPE_CHECKING, Any, Callable, Dict, List, Optional

from ...errors import LearnerBusyError
from .rllib_types import Algorithm, AlgorithmConfig, Learner, Policy

if TYPE_CHECKING:
    import torch
    from ray.rllib.core.learner.learner import Optimizer
    from ray.rllib.utils.schedules.scheduler import Scheduler


# ------------------------------------------------------------ env runners, modules, configs


def is_multi_module(module: object) -> bool:
    """Whether an env runner's module is a ``MultiRLModule`` (``_rl_modules``: 2.45, 2.60).

    Asked of the attribute, not the class: a custom multi-module needs no common base.
    """
    return hasattr(module, "_rl_modules")


def raise_weights_seq_no(obj: object, version: int) -> int:
    """Raise an env runner's / learner's ``_weights_seq_no`` to at least ``version``.

    Env runners stamp it on every sampled row (``weights_seq_no``) and refuse learner
    states older than it (2.45, 2.60: ``SingleAgentEnvRunner``, ``MultiAgentEnvRunner``,
    ``Learner``). Returns the new value.
    """
    value = max(int(getattr(obj, "_weights_seq_no", 0) or 0), int(version))
    setattr(obj, "_weights_seq_no", value)  # an env runner's is unknown to the type checker
    return value


def weights_seq_no(obj: Learner) -> int:
    """A learner's weights version, ``Learner._weights_seq_no`` (2.45, 2.60)."""
    return int(obj._weights_seq_no)


def bump_weights_seq_no(obj: Learner) -> int:
    """Make the next weights version of a learner (``_weights_seq_no`` + 1; 2.45, 2.60)."""
    obj._weights_seq_no += 1
    return int(obj._weights_seq_no)


def old_stack_counters(algo: Algorithm) -> Dict[str, int]:
    """An old-stack algorithm's ``Algorithm._counters`` (2.45, 2.60): its lifetime step counts."""
    return algo._counters


def config_module_spec(config: AlgorithmConfig) -> object:
    """``AlgorithmConfig._rl_module_spec`` (2.45, 2.60): the spec given to ``.rl_module()``.

    Its public ``get_multi_rl_module_spec()`` would build a spec from the spaces; the one
    the user gave is what a cut-down config must edit.
    """
    return config._rl_module_spec


def env_to_module_pipeline(env_runner: object) -> object:
    """A new-stack env runner's env-to-module connector pipeline, ``_env_to_module``
    (2.45, 2.60; None when absent)."""
    return getattr(env_runner, "_env_to_module", None)


def config_extra(config: AlgorithmConfig, name: str) -> Any:
    """An attribute rllib_ext set on an ``AlgorithmConfig`` (None if unset).

    The ``...Partial`` configs keep their specs (``_partial_restores``,
    ``_rllib_ext_snapshots``, ``_rllib_ext_league``) under private names because
    ``AlgorithmConfig.to_dict()`` skips those (2.45, 2.60), and Tune sees a plain config.
    """
    return getattr(config, name, None)


def set_config_extra(config: AlgorithmConfig, name: str, value: object) -> None:
    """Set one of those attributes (see :func:`config_extra`)."""
    setattr(config, name, value)


# ------------------------------------------------------------------------------- Tune


def trial_info(trainable: object) -> object:
    """``Trainable._trial_info`` (Tune, 2.45, 2.60; None if unset): what ``trial_id`` reads."""
    return getattr(trainable, "_trial_info", None)


def set_trial_info(trainable: object, info: object) -> None:
    """Give a Trainable the trial identity Tune passed in its config (``_trial_info``)."""
    setattr(trainable, "_trial_info", info)  # Trainable's own private attribute


# --------------------------------------------------------------------- old-stack policies


def torch_optimizers(policy: Policy) -> List[torch.optim.Optimizer]:
    """A torch policy's optimizers, ``TorchPolicyV2._optimizers`` (2.45, 2.60; [] if none)."""
    return list(getattr(policy, "_optimizers", None) or [])


def keras_optimizer(policy: Policy) -> Any:
    """A tf2 policy's optimizer, ``EagerTFPolicyV2._optimizer`` (2.45, 2.60; None if none)."""
    return getattr(policy, "_optimizer", None)


def keras_optimizer_built(optimizer: object) -> bool:
    """Whether a tf-keras optimizer has built its slots (tf-keras 2.x ``_built``)."""
    return bool(getattr(optimizer, "_built", False))


# ------------------------------------------------ asynchronous learners (APPO, IMPALA)


def learner_thread(learner: Learner) -> Optional[threading.Thread]:
    """``IMPALALearner._learner_thread`` (2.45, 2.60): the thread that updates; None if none."""
    return getattr(learner, "_learner_thread", None)


def thread_update(thread: threading.Thread) -> Callable[..., object]:
    """``_LearnerThread._update_method`` (2.45, 2.60): read before every update."""
    return thread._update_method  # type: ignore[attr-defined]  # _LearnerThread's, typed as a Thread here


def set_thread_update(thread: threading.Thread, update: Callable[..., object]) -> None:
    """Put ``update`` in place of the thread's ``_update_method``: its next update calls it."""
    thread._update_method = update  # type: ignore[attr-defined]  # as in thread_update


def update_lock(learner: Learner) -> Optional[threading.RLock]:
    """``IMPALALearner._update_lock``, the RLock its thread holds per update (None unpatched).

    Added by ``patches/0004-appo-learner-restore-waits-for-update.patch`` (against 2.60;
    neither 2.45's nor 2.60's wheel has it): the patched ``set_state()`` and
    ``restore_from_path()`` take it too.
    """
    return getattr(learner, "_update_lock", None)


def drop_cached_learner_state(learner: Learner) -> None:
    """Forget the learner state an ``IMPALALearner`` cached for env runners.

    ``_learner_state``, ``_learner_state_lock`` and ``_learner_state_queue``: 2.60 (2.45
    has none of them: nothing cached, nothing to do).
    """
    lock = getattr(learner, "_learner_state_lock", None)
    queue = getattr(learner, "_learner_state_queue", None)
    if lock is None or queue is None:
        return
    with lock:
        setattr(learner, "_learner_state", None)  # IMPALALearner's, not Learner's: unknown to the type checker
        while not queue.empty():
            queue.get_nowait()


def wait_until_out_of(thread: threading.Thread, code: CodeType, counted: CodeType, timeout: float,
                      learner: str = "the learner") -> None:
    """Return once ``thread`` runs no frame of ``code`` outside a frame of ``counted``.

    The fallback where no update lock exists (unpatched Ray): polls the thread's stack
    through CPython's ``sys._current_frames()`` (documented introspection, CPython 3.x).

    Raises:
        LearnerBusyError: the thread is still inside ``code`` after ``timeout`` seconds.
    """
    deadline = time.monotonic() + timeout
    while True:
        frame = sys._current_frames().get(thread.ident)  # type: ignore[arg-type]  # ident None (not started): no frame
        busy = False
        while frame is not None:
            if frame.f_code is counted:
                break
            if frame.f_code is code:
                busy = True
                break
            frame = frame.f_back
        if not busy:
            return
        if time.monotonic() > deadline:
            raise LearnerBusyError(
                f"{learner}: its update thread was still inside an update begun before the hold "
                f"after {timeout:.0f} s"
            )
        time.sleep(0.001)


# ------------------------------------------------------- per-module hyperparameters (PBT)


def set_learner_lr_schedule(learner: Learner, optimizer: Optimizer, scheduler: Scheduler) -> None:
    """Replace ``Learner._optimizer_lr_schedules[optimizer]`` (2.60): what
    ``after_gradient_based_update`` sets the optimizer's lr from after every update."""
    learner._optimizer_lr_schedules[optimizer] = scheduler


def set_module_config(config: AlgorithmConfig, module_id: str, module_config: AlgorithmConfig) -> None:
    """Put ``module_config`` into ``AlgorithmConfig._per_module_overrides`` (2.60): the cache
    ``get_config_for_module`` answers from."""
    config._per_module_overrides[module_id] = module_config


def drop_policy_schedule(policy: Policy, name: str) -> None:
    """Switch off an old-stack policy's ``_lr_schedule`` or ``_entropy_coeff_schedule``
    (``name`` "lr" / "entropy_coeff"; 2.60), so a value set by hand stays."""
    setattr(policy, {"lr": "_lr_schedule", "entropy_coeff": "_entropy_coeff_schedule"}[name], None)

