"""Lightweight algorithms: zero remote workers, zero CPUs, only the policies asked for.

RLlib's ``Algorithm.from_checkpoint`` rebuilds the checkpoint's whole setup (remote env
runners, learners, evaluation workers, the training env), so it waits forever while a
Tune run holds every CPU (ray#36761). Here the config is cut down instead:

* no remote env runners, no remote learners, no evaluation runners, and 0 CPUs for
  the main process: nothing is asked of Ray's scheduler;
* the training env is never built: the spaces come from the checkpoint (read
  Ray-free) and a :class:`SpacesOnlyEnv` stands in, so RLlib can size its modules;
* only the requested policies exist; their weights come through the same validated
  partial-restore path as ``algo.restore(ckpt, policies=...)``.

The result can act (``algo.act(obs, policy_id=...)``), be saved, or be the source of
``save_policy``. It is not meant to train: its env has no dynamics.
"""

from __future__ import annotations

import os
from typing import Any, Dict, List, Optional, Sequence, Type

from ray.rllib.env.multi_agent_env import MultiAgentEnv

from ...checkpoint import format as fmt
from ...checkpoint.codecs.safe_pickle import loads
from ...checkpoint.inspection import policy_spaces
from ...checkpoint.locate import ids_in
from ...checkpoint.reader import open_checkpoint
from ...checkpoint.storage import CheckpointDir, resolve_path
from ...errors import CheckpointError, LightweightAlgorithmError, RecurrentStateError
from ..seam.backends import backend_class, backend_for
from ..seam.bridge import State, to_gym_space
from ..restore.policies import restore_opened
from ..seam.rllib_types import Algorithm, AlgorithmConfig, ConfigT, SpacePair


class SpacesOnlyEnv(MultiAgentEnv):
    """Has one agent per policy id, with that policy's spaces; cannot be stepped (LightweightAlgorithmError).

    ``env_config = {"spaces": {policy_id: (observation_space, action_space)}}``.
    """

    def __init__(self, config: Optional[Dict[str, Any]] = None) -> None:
        super().__init__()
        spaces = dict((config or {}).get("spaces", {}))
        self.agents = self.possible_agents = list(spaces)
        self.observation_spaces = {a: s[0] for a, s in spaces.items()}
        self.action_spaces = {a: s[1] for a, s in spaces.items()}

    def reset(self, *, seed: Optional[int] = None, options: Optional[dict] = None):
        raise LightweightAlgorithmError(
            "this is a lightweight rllib_ext algorithm: it has no environment to step; "
            "use algo.act(obs, policy_id=...) or build a full algorithm to train"
        )

    def step(self, action_dict):  # pragma: no cover - reset already refuses
        raise LightweightAlgorithmError("a lightweight rllib_ext algorithm has no environment to step")


def same_id(agent_id: object, *args: object, **kwargs: object) -> str:
    """Policy mapping of :class:`SpacesOnlyEnv`: agent id == policy id."""
    return str(agent_id)


def checkpoint_spaces(ckpt: CheckpointDir, layout: fmt.Layout, ids: Sequence[str]) -> Dict[str, SpacePair]:
    """``{id: (observation_space, action_space)}`` read from the checkpoint (Ray-free).

    Only the files that record the spaces are read (:func:`policy_spaces`): on the new
    stack no weights file is decoded for this.
    """
    out = {}
    for pid, (obs, act) in policy_spaces(ckpt, layout, ids).items():
        if obs is None or act is None:
            raise CheckpointError(
                f"policy {pid!r}: {ckpt.uri} records no observation/action space for it, so a "
                "lightweight algorithm cannot be sized without the env; build a full one"
            )
        out[pid] = (to_gym_space(obs), to_gym_space(act))
    return out


def zero_resources(config: ConfigT) -> ConfigT:
    """No remote env runners, learners or evaluation runners; 0 CPUs/GPUs for the algorithm."""
    config.env_runners(num_env_runners=0)
    config.evaluation(evaluation_interval=None, evaluation_num_env_runners=0)
    config.resources(num_cpus_for_main_process=0)
    backend_class(config).zero_resources(config)  # learners (new stack) or GPUs (old stack)
    return config


def make_lightweight(config: ConfigT, spaces: Dict[str, SpacePair]) -> ConfigT:
    """Cut ``config`` (an AlgorithmConfig, not frozen) down to a zero-resource one that
    holds only the policies in ``spaces`` and never builds the training env."""
    zero_resources(config)
    # The checker would reset() the stand-in env, which has nothing to reset.
    config.environment(SpacesOnlyEnv, env_config={"spaces": spaces}, disable_env_checking=True)
    config.env_runners(create_env_on_local_worker=True)
    backend_class(config).only_policies(config, spaces, same_id)
    return config


def config_from_checkpoint(algo_cls: Type[Algorithm], ckpt: CheckpointDir, layout: fmt.Layout) -> AlgorithmConfig:
    """The config the checkpoint was written with, as ``algo_cls``'s config class.

    Like RLlib's own ``from_checkpoint`` this unpickles the checkpoint's config with
    cloudpickle (it holds the env class, callbacks, mapping functions): only for
    checkpoints you trust.
    """
    from ray.rllib.algorithms.algorithm_config import AlgorithmConfig

    if layout.version >= "2":
        ctor = loads(ckpt.read_bytes("class_and_ctor_args.pkl"), trusted=True)
        state = ctor["ctor_args_and_kwargs"][0][0]
    else:
        state = loads(ckpt.read_bytes("algorithm_state.pkl"), trusted=True)["config"]
    loaded = AlgorithmConfig.from_state(state) if isinstance(state, dict) and "class" in state else state
    if isinstance(loaded, dict):
        return algo_cls.get_default_config().update_from_dict(loaded)
    config = algo_cls.get_default_config()
    if isinstance(loaded, type(config)):
        return loaded.copy(copy_frozen=False)
    return config.update_from_dict(loaded.to_dict())


def from_checkpoint(
    algo_cls: type, path: "str | os.PathLike[str]", policies: Optional[Sequence[str]] = None,
    *, trusted: bool = False,
) -> Algorithm:
    """Build ``algo_cls`` lightweight from ``path`` holding only ``policies`` (default: all)."""
    ckpt, layout = open_checkpoint(resolve_path(path))
    ids: List[str] = list(policies) if policies is not None else sorted(ids_in(ckpt, layout))
    spaces = checkpoint_spaces(ckpt, layout, ids)
    config = make_lightweight(config_from_checkpoint(algo_cls, ckpt, layout), spaces)
    algo = config.build_algo() if hasattr(config, "build_algo") else config.build()
    try:
        report = restore_opened(algo, ckpt, layout, ids, trusted=trusted)
    except BaseException:
        algo.stop()
        raise
    if hasattr(algo, "partial_restore_reports"):
        algo.partial_restore_reports.append(report)
    return algo


def act(
    algo: Algorithm,
    obs: object,
    policy_id: str,
    explore: bool = False,
    agent_id: Optional[str] = None,
    state: Optional[State] = None,
) -> Any:  # the action as the policy gives it (or (action, next state))
    """One action for one raw observation from ``policy_id``, on either API stack.

    The observation goes through the algorithm's observation filter first, as in its
    env runners. Old stack: ``compute_single_action`` (it applies the policy's filter).
    New stack: the MeanStdFilter statistics of ``agent_id`` (default: the one agent
    mapped to the module; see :func:`rllib_ext.live.seam.filter_state.agent_filter_of`), then the
    module's ``forward_inference`` (:func:`rllib_ext.live.seam.bridge.module_action`).

    A recurrent policy takes ``state`` (start from :func:`initial_state`) and returns
    ``(action, next_state)``; carry ``next_state`` into the next step of the episode.

    Raises:
        RecurrentStateError: ``state`` given to a policy without recurrent state, or
            missing for a recurrent one (a ``ValueError`` too).
    """
    try:
        return backend_for(algo).act(policy_id, obs, explore, state, agent_id)
    except RecurrentStateError as e:
        raise RecurrentStateError(f"policy {policy_id!r} {e}") from e


def initial_state(algo: Algorithm, policy_id: str) -> Optional[State]:
    """The initial recurrent state of ``policy_id`` (None for a policy without state)."""
    return backend_for(algo).initial_state(policy_id)
