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
from typing import Any, Dict, Mapping, Optional, Type, cast

import numpy as np

from ...checkpoint.filters import FilterStats, filters_of
from ...checkpoint.policy_file import META_FILE, PolicyMeta, read_policy_dir, write_policy_dir
from ...checkpoint.reader import open_checkpoint
from ...checkpoint.spaces import space_from_object
from ...checkpoint.storage import resolve_path
from ...checkpoint.upload import is_remote, upload_dir
from ...checkpoint.views import SpaceView
from ...errors import (
    CheckpointError,
    CheckpointFormatError,
    PolicyClassError,
    RecurrentStateError,
    UnsafePickleError,
    not_found,
)
from ..seam.backend_base import Backend
from ..seam.backends import backend_for, backend_named
from ..seam.bridge import State, initial_state, to_gym_space
from ..seam.compat import require_supported_ray
from ..restore.options import RestoreOptions
from ..restore.policies import PartialRestoreReport, restore_policies
from ..seam.rllib_types import Algorithm, AlgorithmConfig, Model

# Classes build_policy may import by the name stored in policy.json without trusted=True.
_SAFE_CLASS_PREFIX = "ray.rllib."


def _qualname(obj: object) -> str:
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


def _rllib_algorithm_name(algo: object) -> str:
    """The RLlib algorithm a (possibly ...Partial) class derives from, e.g. 'PPO'."""
    for cls in type(algo).__mro__:
        if cls.__module__.startswith(_SAFE_CLASS_PREFIX):
            return cls.__name__
    return type(algo).__name__


def _jsonable(value: object) -> Any:
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
    algo: Algorithm, policy_id: str, path: "str | os.PathLike[str]", *, agent_id: Optional[str] = None,
    training_state: bool = False,
) -> str:
    """Write ``policy_id`` of the live ``algo`` as a single-policy directory, atomically.

    ``path`` may be a remote URI (``s3://...``): see :mod:`rllib_ext.checkpoint.upload`.
    The policy's observation-filter statistics go with it (old stack: the policy's
    filter; new stack: those of the agent mapped to the module, or of ``agent_id``).
    ``training_state=True`` adds the policy's training state (format 1.2, see
    :mod:`rllib_ext.checkpoint.training_state`).

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
    policy = backend.policy(policy_id)  # the RLModule or the Policy
    assert policy is not None  # policy_id is one of the backend's ids (checked above)
    stats = backend.observation_filter(policy_id, agent_id)
    import ray

    meta: PolicyMeta = {
        "stack": backend.stack,
        "framework": cast(AlgorithmConfig, algo.config).framework_str,  # config: set by Algorithm.__init__
        "observation_space": space_from_object(policy.observation_space, policy_id),
        "action_space": space_from_object(policy.action_space, policy_id),
        "model_config": _jsonable(backend.model_config(policy_id)),
        "algorithm_class": _rllib_algorithm_name(algo),
        "policy_class": _qualname(policy),
        "ray_version": ray.__version__,
        "source": f"live algorithm {type(algo).__name__}",
        "observation_filter": None if stats is None else stats.to_dict(),
    }
    training = backend.training_states([policy_id])[policy_id].to_json() if training_state else None
    if is_remote(path):  # s3://...: write and check locally, then upload, manifest last
        import tempfile

        with tempfile.TemporaryDirectory(prefix="rllib_ext-upload-") as tmp:
            local = write_policy_dir(os.path.join(tmp, "policy"), policy_id, weights, meta, training)
            return upload_dir(local, os.fspath(path), last=(META_FILE,))
    return write_policy_dir(path, policy_id, weights, meta, training)


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


def _stored_id(meta: Mapping[str, object], path: str) -> str:
    """policy.json's id, else the directory name (as the reader's ``policy_ids`` does)."""
    return str(meta.get("policy_id") or os.path.basename(os.fspath(path).rstrip("/")))


def _import_class(qualname: object, trusted: bool, meta: Mapping[str, object], stack: Type[Backend]) -> type:
    """The class policy.json names, checked to be a policy class of ``stack`` before anything
    calls it: the name comes from a file, and ``ray.rllib.*`` holds other callables too."""
    if isinstance(qualname, str) and qualname and "." not in qualname:
        found: Any = _default_class(qualname, meta)
    elif not isinstance(qualname, str) or "." not in qualname:
        raise CheckpointFormatError(f"policy.json: policy_class {qualname!r} is not a dotted class name")
    elif not qualname.startswith(_SAFE_CLASS_PREFIX) and not trusted:
        raise UnsafePickleError(
            f"policy.json names the class {qualname!r}, outside {_SAFE_CLASS_PREFIX}*; "
            "pass trusted=True to import it"
        )
    else:
        module, _, name = qualname.rpartition(".")
        try:
            found = getattr(importlib.import_module(module), name)
        except (ImportError, AttributeError) as e:
            raise CheckpointError(f"cannot import {qualname!r} named in policy.json: {e}") from e
    base = stack.policy_base()
    if not (isinstance(found, type) and issubclass(found, base)):
        what = "a class" if isinstance(found, type) else f"a {type(found).__name__}"
        raise PolicyClassError(
            f"policy.json: policy_class {qualname!r} is {what}, not a subclass of {base.__name__} "
            f"(what a {stack.stack}-API-stack policy is built from); nothing was called"
        )
    return found


def _default_class(name: str, meta: Mapping[str, Any]) -> type:
    """A bare class name (``extract`` records what the checkpoint names, e.g.
    ``DefaultPPOTorchRLModule``): the stored algorithm's default class of that name."""
    from ray.rllib.algorithms.registry import ALGORITHMS

    algo_name = meta.get("algorithm_class") or "PPO"
    if algo_name not in ALGORITHMS:
        raise CheckpointFormatError(f"policy.json: policy_class {name!r} is a bare name and algorithm {algo_name!r} is unknown")
    algo_cls, _ = ALGORITHMS[algo_name]()
    cls = backend_named(str(meta.get("stack"))).default_class(algo_cls, meta.get("framework") or "torch")
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
        meta: Mapping[str, Any],
        weights: Dict[str, np.ndarray],
        model: Model,
        observation_filter: Optional[FilterStats] = None,
    ):
        self.policy_id, self.meta, self.weights, self.model = policy_id, meta, weights, model
        self._stack = backend_named(meta["stack"])
        self.observation_filter = observation_filter
        self.observation_space = model.observation_space
        self.action_space = model.action_space

    def compute_action(self, obs: object, explore: bool = False, state: Optional[State] = None) -> Any:
        """One action for one raw observation (filtered first; deterministic unless ``explore``).

        A recurrent policy takes ``state`` (start from :meth:`initial_state`) and returns
        ``(action, next_state)``.

        Raises:
            RecurrentStateError: ``state`` given to a policy without recurrent state, or
                missing for a recurrent one (a ``ValueError`` too).
        """
        if self.observation_filter is not None:
            obs = self.observation_filter.apply(obs)
        try:
            return self._stack.model_action(self.model, obs, explore, state)
        except RecurrentStateError as e:
            raise RecurrentStateError(f"policy {self.policy_id!r} {e}") from e

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
    require_supported_ray()
    path = resolve_path(path)
    meta, weights = read_policy_dir(path)
    obs = _stored_space(meta, "observation_space", path)
    act = _stored_space(meta, "action_space", path)
    stack = backend_named(meta["stack"])
    cls = _import_class(meta.get("policy_class"), trusted, meta, stack)
    model = stack.build(cls, obs, act, meta, weights, lambda: _algorithm_defaults(meta))
    found = filters_of(*open_checkpoint(path)).stats
    return LoadedPolicy(_stored_id(meta, path), meta, weights, model, next(iter(found.values()), None))


def _algorithm_defaults(meta: Mapping[str, object]) -> AlgorithmConfig:
    """The stored algorithm's default config (an old-stack Policy is built from it)."""
    from ray.rllib.algorithms.registry import ALGORITHMS

    name = meta.get("algorithm_class") or "PPO"
    if name not in ALGORITHMS:
        raise CheckpointError(
            f"policy.json names algorithm {name!r}; an old-stack policy is rebuilt from the "
            f"defaults of one of: {', '.join(sorted(ALGORITHMS))}"
        )
    _, default_config = ALGORITHMS[name]()
    return default_config


def add_or_replace(
    algo: Algorithm,
    path: "str | os.PathLike[str]",
    policy_id: Optional[str] = None,
    **options: object,
) -> PartialRestoreReport:
    """Put the stored policy into the live ``algo`` as ``policy_id``, synced everywhere.

    An existing id is replaced through the partial-restore path (validated first, nothing
    changes on error). A new id is added first (RLlib's ``add_module``/``add_policy``,
    built from the stored spaces), then its weights are restored the same way, with
    ``options`` (the :class:`~rllib_ext.RestoreOptions` keywords).
    """
    chosen = RestoreOptions.from_keywords(options)  # checked before a policy is added
    path = resolve_path(path)
    meta, _ = read_policy_dir(path)
    stored_id = _stored_id(meta, path)
    target = policy_id or stored_id
    added = False
    backend = backend_for(algo)
    if target not in backend.ids():
        obs = _stored_space(meta, "observation_space", path)
        act = _stored_space(meta, "action_space", path)
        cls = _import_class(meta.get("policy_class"), chosen.trusted, meta, type(backend))
        backend.add(target, cls, obs, act, meta.get("model_config") or {})
        added = True
    try:
        return restore_policies(algo, path, {stored_id: target}, **chosen.keywords())
    except BaseException:
        if added:  # nothing half-done: the policy added for these weights goes again
            backend.remove(target)
        raise
