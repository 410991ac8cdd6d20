"""One policy in, one policy out: the single-policy format meets live RLlib objects.

``save_policy`` writes a policy of a live algorithm as ``policy.json`` +
``weights.safetensors`` (see :mod:`rllib_ext.checkpoint.policy_file`). ``build_policy``
rebuilds something that acts from such a directory: an RLModule (new stack) or a Policy
(old stack), with no Ray runtime started. ``add_or_replace`` puts a stored policy into a
live algorithm, synced to every worker like a partial restore.

This module imports RLlib (it builds RLlib objects); the file format itself does not.
"""

from __future__ import annotations

import importlib
import os
import sys
from typing import Any, Dict, Mapping, Optional

import numpy as np

from ..checkpoint.filters import FilterStats, filters_of
from ..checkpoint.policy_file import META_FILE, read_policy_dir, write_policy_dir
from ..checkpoint.reader import open_checkpoint
from ..checkpoint.spaces import space_from_object
from ..checkpoint.storage import resolve_path
from ..checkpoint.tensors import positional
from ..checkpoint.upload import is_remote, upload_dir
from ..checkpoint.views import SpaceView
from ..errors import CheckpointError, CheckpointFormatError, UnsafePickleError, not_found
from .backends import State, backend_for, initial_state, module_action, to_gym_space
from .filters import agent_filter, live_filters
from .restore import PartialRestoreReport, restore_policies

# Classes build_policy may import by the name stored in policy.json without trusted=True.
_SAFE_CLASS_PREFIX = "ray.rllib."


def _qualname(obj: Any) -> str:
    """Import path of ``obj``'s class, or of its nearest base that can be imported by name.

    RLlib makes some policy classes on the fly (tf2: ``PPOTF2Policy_traced``); their
    module does not export them, so ``build_policy`` rebuilds the named base instead.
    """
    cls = obj if isinstance(obj, type) else type(obj)
    for c in cls.__mro__:
        module = sys.modules.get(c.__module__)
        if module is not None and getattr(module, c.__qualname__, None) is c:
            return f"{c.__module__}.{c.__qualname__}"
    return f"{cls.__module__}.{cls.__qualname__}"


def _rllib_algorithm_name(algo: Any) -> str:
    """The RLlib algorithm a (possibly ...Partial) class derives from, e.g. 'PPO'."""
    for cls in type(algo).__mro__:
        if cls.__module__.startswith(_SAFE_CLASS_PREFIX):
            return cls.__name__
    return type(algo).__name__


def _jsonable(value: Any) -> Any:
    """Model configs hold tuples, numpy scalars, occasionally classes: keep plain data."""
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, np.generic):
        return value.item()
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    return None  # a callable or class: not data; the default is used on load


def save_policy(
    algo: Any, policy_id: str, path: "str | os.PathLike[str]", *, agent_id: Optional[str] = None
) -> str:
    """Write ``policy_id`` of the live ``algo`` as a single-policy directory, atomically.

    ``path`` may be a remote URI (``s3://...``): see :mod:`rllib_ext.checkpoint.upload`.
    The policy's observation-filter statistics go with it (old stack: the policy's
    filter; new stack: those of the agent mapped to the module, or of ``agent_id``).

    Returns:
        The absolute path written.

    Raises:
        PolicyNotFoundError: ``policy_id`` is not in the algorithm (lists the ids).
    """
    backend = backend_for(algo)
    ids = backend.ids()
    if policy_id not in ids:
        raise not_found("policy", policy_id, f"the algorithm ({type(algo).__name__})", ids)
    weights = {n: np.array(v, copy=True) for n, v in backend.get_weights([policy_id])[policy_id].items()}
    if algo.config.enable_rl_module_and_learner:
        module = algo.get_module(policy_id)
        obs_space, act_space = module.observation_space, module.action_space
        model_config = module.model_config
        policy_class = _qualname(module)
    else:
        policy = algo.get_policy(policy_id)
        obs_space, act_space = policy.observation_space, policy.action_space
        model_config = policy.config.get("model", {})
        policy_class = _qualname(policy)
    import ray

    meta = {
        "stack": "new" if algo.config.enable_rl_module_and_learner else "old",
        "framework": algo.config.framework_str,
        "observation_space": space_from_object(obs_space, policy_id),
        "action_space": space_from_object(act_space, policy_id),
        "model_config": _jsonable(model_config),
        "algorithm_class": _rllib_algorithm_name(algo),
        "policy_class": policy_class,
        "ray_version": ray.__version__,
        "source": f"live algorithm {type(algo).__name__}",
        "observation_filter": _filter_of(algo, policy_id, agent_id),
    }
    if is_remote(path):  # s3://...: write and check locally, then upload, manifest last
        import tempfile

        with tempfile.TemporaryDirectory(prefix="rllib_ext-upload-") as tmp:
            local = write_policy_dir(os.path.join(tmp, "policy"), policy_id, weights, meta)
            return upload_dir(local, os.fspath(path), last=(META_FILE,))
    return write_policy_dir(path, policy_id, weights, meta)


def _filter_of(algo: Any, policy_id: str, agent_id: Optional[str]) -> Optional[Dict[str, Any]]:
    """The statistics ``policy_id`` acts through, as policy.json stores them (or None)."""
    if algo.config.enable_env_runner_and_connector_v2:
        stats = agent_filter(algo, policy_id, agent_id)
    else:
        stats = live_filters(algo).stats.get(policy_id)
    return None if stats is None else stats.to_dict()


def _stored_space(meta: Mapping[str, Any], key: str, path: str) -> Any:
    """The gymnasium space ``key`` of policy.json, or a typed error naming the file."""
    try:
        return to_gym_space(SpaceView.from_dict(meta[key]))
    except CheckpointError:
        raise
    except Exception as e:  # whatever gymnasium or from_dict make of a malformed entry
        raise CheckpointFormatError(
            f"{os.path.join(path, META_FILE)}: {key} is missing or malformed ({type(e).__name__}: {e}); "
            "write the policy again with save_policy/extract_policy"
        ) from e


def _stored_id(meta: Mapping[str, Any], path: str) -> str:
    """policy.json's id, else the directory name (as the reader's ``policy_ids`` does)."""
    return str(meta.get("policy_id") or os.path.basename(os.fspath(path).rstrip("/")))


def _import_class(qualname: Any, trusted: bool, meta: Optional[Mapping[str, Any]] = None) -> type:
    if isinstance(qualname, str) and qualname and "." not in qualname and meta is not None:
        return _default_class(qualname, meta)
    if not isinstance(qualname, str) or "." not in qualname:
        raise CheckpointFormatError(f"policy.json: policy_class {qualname!r} is not a dotted class name")
    if not qualname.startswith(_SAFE_CLASS_PREFIX) and not trusted:
        raise UnsafePickleError(
            f"policy.json names the class {qualname!r}, outside {_SAFE_CLASS_PREFIX}*; "
            "pass trusted=True to import it"
        )
    module, _, name = qualname.rpartition(".")
    try:
        return getattr(importlib.import_module(module), name)
    except (ImportError, AttributeError) as e:
        raise CheckpointError(f"cannot import {qualname!r} named in policy.json: {e}") from e


def _default_class(name: str, meta: Mapping[str, Any]) -> type:
    """A bare class name (``extract`` records what the checkpoint names, e.g.
    ``DefaultPPOTorchRLModule``): the stored algorithm's default class of that name."""
    from ray.rllib.algorithms.registry import ALGORITHMS

    algo_name = meta.get("algorithm_class") or "PPO"
    if algo_name not in ALGORITHMS:
        raise CheckpointFormatError(f"policy.json: policy_class {name!r} is a bare name and algorithm {algo_name!r} is unknown")
    algo_cls, _ = ALGORITHMS[algo_name]()
    config = algo_cls.get_default_config().framework(meta.get("framework") or "torch")
    if meta.get("stack") == "old":
        config = config.api_stack(enable_rl_module_and_learner=False, enable_env_runner_and_connector_v2=False)
        cls = algo_cls.get_default_policy_class(config)
    else:
        cls = config.get_default_rl_module_spec().module_class
    if cls is None or cls.__name__.split("_")[0] != name.split("_")[0]:
        raise CheckpointFormatError(
            f"policy.json: policy_class {name!r} is a bare name, and {algo_name}'s default is "
            f"{getattr(cls, '__name__', None)!r}; write it as a dotted import path"
        )
    return cls


class LoadedPolicy:
    """A stored policy that acts: ``compute_action(obs)``; no Ray runtime involved.

    Attributes:
        policy_id, meta, weights: what the directory holds.
        model: the RLModule (new stack) or Policy (old stack) that was built.
        observation_filter: the MeanStdFilter statistics raw observations go through
            first (None when the policy was trained without a filter).
    """

    def __init__(
        self,
        policy_id: str,
        meta: Dict[str, Any],
        weights: Dict[str, np.ndarray],
        model: Any,
        observation_filter: Optional[FilterStats] = None,
    ):
        self.policy_id, self.meta, self.weights, self.model = policy_id, meta, weights, model
        self.observation_filter = observation_filter
        self.observation_space = model.observation_space
        self.action_space = model.action_space

    def compute_action(self, obs: Any, explore: bool = False, state: Optional[State] = None) -> Any:
        """One action for one raw observation (filtered first; deterministic unless ``explore``).

        A recurrent policy takes ``state`` (start from :meth:`initial_state`) and returns
        ``(action, next_state)``.
        """
        if self.observation_filter is not None:
            obs = self.observation_filter.apply(obs)
        if self.meta["stack"] == "new":
            try:
                return module_action(self.model, obs, explore, state)
            except ValueError as e:
                raise ValueError(f"policy {self.policy_id!r} {e}") from None
        recurrent = self.initial_state() is not None
        if recurrent != (state is not None):
            raise ValueError(
                f"policy {self.policy_id!r} is recurrent: pass state= (start from initial_state())"
                if recurrent else f"policy {self.policy_id!r} is not recurrent: it takes no state="
            )
        if not recurrent:
            return self.model.compute_single_action(obs, explore=explore)[0]
        action, next_state, _ = self.model.compute_single_action(obs, state=state, explore=explore)
        return action, [np.array(s, copy=True) for s in next_state]

    def initial_state(self) -> Optional[State]:
        """The recurrent state to start an episode with (None for a policy without state)."""
        return initial_state(self.model)

    def __repr__(self) -> str:
        return (
            f"LoadedPolicy({self.policy_id!r}, {self.meta['stack']} stack, {self.meta.get('framework')}, "
            f"{type(self.model).__name__})"
        )


def build_policy(path: "str | os.PathLike[str]", *, trusted: bool = False) -> LoadedPolicy:
    """Rebuild a policy saved by :func:`save_policy` so it can compute actions.

    Args:
        path: the single-policy directory.
        trusted: allow importing a model/policy class outside ``ray.rllib``.

    Raises:
        CheckpointError: the directory is not a single-policy checkpoint, or the stored
            spec cannot be rebuilt.
    """
    path = resolve_path(path)
    weights, meta = read_policy_dir(path)
    obs = _stored_space(meta, "observation_space", path)
    act = _stored_space(meta, "action_space", path)
    cls = _import_class(meta.get("policy_class"), trusted, meta)
    if meta["stack"] == "new":
        model = cls(observation_space=obs, action_space=act, inference_only=False,
                    model_config=meta.get("model_config") or {})
        model.set_state(weights)
        model.eval()
    else:
        model = cls(obs, act, _old_stack_config(meta))
        weights_in = weights
        if isinstance(model.get_weights(), (list, tuple)):  # tf2: a list in variable order
            weights_in = positional(weights, len(weights))
        model.set_weights(weights_in)
    found = filters_of(*open_checkpoint(path)).stats
    return LoadedPolicy(_stored_id(meta, path), meta, weights, model, next(iter(found.values()), None))


def _old_stack_config(meta: Mapping[str, Any]) -> Dict[str, Any]:
    """A policy config: the algorithm's defaults, the stored model config, the framework."""
    from ray.rllib.algorithms.registry import ALGORITHMS

    name = meta.get("algorithm_class") or "PPO"
    if name not in ALGORITHMS:
        raise CheckpointError(
            f"policy.json names algorithm {name!r}; an old-stack policy is rebuilt from the "
            f"defaults of one of: {', '.join(sorted(ALGORITHMS))}"
        )
    _, default_config = ALGORITHMS[name]()
    config = (
        default_config
        .api_stack(enable_rl_module_and_learner=False, enable_env_runner_and_connector_v2=False)
        .framework(meta.get("framework") or "torch")
        .training(model={k: v for k, v in (meta.get("model_config") or {}).items() if v is not None})
    )
    return config.to_dict()


def add_or_replace(
    algo: Any,
    path: "str | os.PathLike[str]",
    policy_id: Optional[str] = None,
    *,
    trusted: bool = False,
    filters: bool = True,
) -> PartialRestoreReport:
    """Put the stored policy into the live ``algo`` as ``policy_id``, synced everywhere.

    An existing id is replaced through the partial-restore path (validated first, nothing
    changes on error). A new id is added first (RLlib's ``add_module``/``add_policy``,
    built from the stored spaces), then its weights are restored the same way.
    """
    path = resolve_path(path)
    _, meta = read_policy_dir(path)
    stored_id = _stored_id(meta, path)
    target = policy_id or stored_id
    added = False
    if target not in backend_for(algo).ids():
        obs = _stored_space(meta, "observation_space", path)
        act = _stored_space(meta, "action_space", path)
        if algo.config.enable_rl_module_and_learner:
            from ray.rllib.core.rl_module.rl_module import RLModuleSpec

            spec = RLModuleSpec(
                module_class=_import_class(meta.get("policy_class"), trusted, meta),
                observation_space=obs,
                action_space=act,
                model_config=meta.get("model_config") or {},
            )
            algo.add_module(target, spec)
        else:
            algo.add_policy(target, _import_class(meta.get("policy_class"), trusted, meta),
                            observation_space=obs, action_space=act)
        added = True
    try:
        return restore_policies(algo, path, {stored_id: target}, trusted=trusted, filters=filters)
    except BaseException:
        if added:  # nothing half-done: the policy added for these weights goes again
            if algo.config.enable_rl_module_and_learner:
                algo.remove_module(target)
            else:
                algo.remove_policy(target)
        raise
