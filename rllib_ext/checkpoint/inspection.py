"""``inspect(path)``: what a checkpoint holds, as typed plain data, without Ray or torch.

The view answers the questions a user asks before restoring anything: which policies are
there, for which observation/action spaces, with which tensors, written by which
algorithm, framework and Ray version (see :mod:`.views`). ``read_policy`` is the same
for one policy, with its weights; ``policy_spaces`` reads only the files that hold the
spaces (on the new stack, no weights file at all).

(The module is ``inspection`` so that the function ``inspect`` shadows nothing.)
"""

from __future__ import annotations

import contextlib
import os
from collections import OrderedDict
from dataclasses import dataclass, replace
from typing import Any, Dict, Iterator, List, Literal, Optional, Sequence, Tuple, overload

import numpy as np

from ..errors import malformed
from . import format as fmt
from .codecs.safe_pickle import Placeholder
from .filters import ObservationFilters, filters_of
from .policy_file import read_checked, view_policy_dir
from .decode import LazyWeights, decode_file, extract_weights
from .locate import ids_in, policy_dir, resolve_policy
from .reader import open_checkpoint
from .spaces import space_from_object, space_from_rllib_dict
from .storage import CheckpointDir
from .tensors import Weights
from .training_state import describe_training
from .views import CheckpointView, PolicyView, SpaceView, json_float, make_policy_view


def inspect(path: "str | os.PathLike[str]", *, trusted: bool = False) -> CheckpointView:
    """Describe the checkpoint at ``path``: algorithm, framework, and every policy.

    Reads each policy's weights file for tensor shapes and dtypes, but not the tensor
    data (the pickle's opcodes, the torch-zip pickle, the safetensors header), and the
    small files that hold the spaces; never imports Ray, torch or anything the pickles
    name (unless trusted).

    Args:
        path: any checkpoint :func:`read_weights` accepts.
        trusted: unpickle with plain pickle (imports whatever the files name).

    Raises:
        InvalidArgumentError, NotACheckpointError: ``path`` is not a str or ``os.PathLike``, or holds no checkpoint.
        CheckpointFormatError: a file is missing, truncated or not understood.
        UnsupportedFilterError: an observation filter keeps nested (Dict/Tuple) statistics.
    """
    ckpt, layout = open_checkpoint(path)
    if layout.kind is fmt.Kind.SINGLE_POLICY:
        view = view_policy_dir(ckpt, layout)
    else:
        view = _view(ckpt, layout, sorted(ids_in(ckpt, layout)), trusted, materialize=False)[0]
    training = describe_training(ckpt, layout, list(view.policies), trusted=trusted)
    view = replace(view, policies=OrderedDict((pid, replace(p, training_state=training.get(pid)))
                                              for pid, p in view.policies.items()))
    return _with_filters(view, filters_of(ckpt, layout))


def _with_filters(view: CheckpointView, found: ObservationFilters) -> CheckpointView:
    """``view`` annotated with the observation filters stored beside the weights."""
    if not found.stats:
        return view
    described = {k: s.describe() for k, s in sorted(found.stats.items())}
    policies = view.policies
    if found.keyed_by == "policy":
        policies = OrderedDict((pid, replace(p, observation_filter=described.get(pid))) for pid, p in policies.items())
    return replace(view, policies=policies, filters=described, filters_keyed_by=found.keyed_by)


def read_policy(path: "str | os.PathLike[str]", policy_id: Optional[str] = None, *,
                trusted: bool = False) -> Tuple[CheckpointView, Weights]:
    """One policy's weights plus a view of the checkpoint that describes only that policy.

    Reads only that policy's files (and the algorithm-level state), so extracting one
    policy from a large checkpoint does not decode the others.

    Raises:
        InvalidArgumentError: ``path`` is not a str or ``os.PathLike``.
        PolicyNotFoundError: ``policy_id`` is not in the checkpoint (lists what is).
        CheckpointFormatError: a file is missing, truncated or not understood.
    """
    ckpt, layout = open_checkpoint(path)
    return read_policy_opened(ckpt, layout, policy_id, trusted=trusted)


@overload
def read_policy_opened(ckpt: CheckpointDir, layout: fmt.Layout, policy_id: Optional[str] = None, *,
                       trusted: bool = False, lazy: Literal[False] = ...) -> Tuple[CheckpointView, Weights]: ...
@overload
def read_policy_opened(ckpt: CheckpointDir, layout: fmt.Layout, policy_id: Optional[str] = None, *,
                       trusted: bool = False, lazy: bool) -> Tuple[CheckpointView, LazyWeights]: ...
def read_policy_opened(ckpt: CheckpointDir, layout: fmt.Layout, policy_id: Optional[str] = None, *,
                       trusted: bool = False, lazy: bool = False) -> Tuple[CheckpointView, "Weights | LazyWeights"]:
    """:func:`read_policy` on a checkpoint already opened (no second metadata read). ``lazy=True``:
    large tensors may come back as :class:`~.lazy.LazyArray` (read one with ``materialize()``),
    so a writer can stream them one at a time."""
    if layout.kind is fmt.Kind.SINGLE_POLICY:
        return view_policy_dir(ckpt, layout), read_checked(ckpt, layout)
    pid, _ = resolve_policy(ckpt, layout, policy_id)
    pid = pid if pid is not None else ids_in(ckpt, layout)[0]
    view, weights = _view(ckpt, layout, [pid], trusted, materialize=not lazy)
    return view, weights[pid]


def policy_spaces(
    ckpt: CheckpointDir, layout: fmt.Layout, ids: Sequence[str], *, trusted: bool = False
) -> Dict[str, Tuple[Optional[SpaceView], Optional[SpaceView]]]:
    """``{id: (observation space, action space)}`` from the files that record them.

    New stack: the module's ``class_and_ctor_args.pkl`` (layout 1.2: its metadata JSON);
    single-policy: ``policy.json``. No weights file is decoded there. The old stack keeps
    the spaces in ``policy_state.pkl`` beside the weights, so that file is decoded once.

    Raises:
        PolicyNotFoundError: an id is not in the checkpoint (lists what is).
    """
    if layout.kind is fmt.Kind.SINGLE_POLICY:
        (view,) = view_policy_dir(ckpt, layout).policies.values()
        return {pid: (view.observation_space, view.action_space) for pid in ids}
    out = {}
    for pid in ids:
        resolved, rel = resolve_policy(ckpt, layout, pid)
        payload = decode_file(ckpt, rel, trusted=trusted, lazy=True) if layout.stack is fmt.Stack.OLD else None
        about = _describe_policy(ckpt, layout, resolved, rel, payload, trusted)
        out[pid] = (about.observation_space, about.action_space)
    return out


def _view(ckpt: CheckpointDir, layout: fmt.Layout, ids: List[str], trusted: bool,
          materialize: bool = True) -> Tuple[CheckpointView, Dict[str, LazyWeights]]:
    (algorithm_class, algorithm_base), framework = _algorithm_info(ckpt, layout, trusted)
    policies: Dict[str, PolicyView] = OrderedDict()
    weights: Dict[str, LazyWeights] = {}
    frameworks = []
    for pid in ids:
        resolved, rel = resolve_policy(ckpt, layout, pid)
        payload = decode_file(ckpt, rel, trusted=trusted, lazy=True)
        weights[pid] = extract_weights(payload, layout, ckpt.child(rel), materialize=materialize)
        about = _describe_policy(ckpt, layout, resolved, rel, payload, trusted)
        policies[pid] = make_policy_view(
            pid, weights[pid], about.observation_space, about.action_space, about.policy_class, about.model_config, rel
        )
        frameworks.append(about.framework)
    framework = framework or next((f for f in frameworks if f), None)
    view = CheckpointView(
        path=ckpt.uri,
        kind=layout.kind.value,
        stack=layout.stack.value,
        checkpoint_version=layout.version,
        framework=framework,
        ray_version=layout.metadata.get("ray_version"),
        algorithm_class=algorithm_class,
        policies=policies,
        algorithm_base=algorithm_base,
    )
    return view, weights


@dataclass(frozen=True)
class _About:
    """What the files beside a policy's weights say about it."""

    observation_space: Optional[SpaceView] = None
    action_space: Optional[SpaceView] = None
    policy_class: Optional[str] = None
    model_config: Optional[Dict[str, Any]] = None
    framework: Optional[str] = None


def _describe_policy(ckpt: CheckpointDir, layout: fmt.Layout, resolved: Optional[str], rel: str, payload: object,
                     trusted: bool) -> _About:
    """Spaces, class, model config and framework of one policy.

    ``payload`` is the decoded weights file; only the old stack needs it (its spaces
    live in the same pickle as the weights). ``rel`` is that file, ``resolved`` the id
    as :func:`~.locate.resolve_policy` resolved it (None for a one-policy checkpoint).
    """
    if layout.stack is fmt.Stack.OLD:
        spec = payload.get("policy_spec") if isinstance(payload, dict) else None
        if not isinstance(spec, dict):
            return _About()
        where = f"{ckpt.child(rel)} (policy_spec)"
        with _describing(where):
            config = spec.get("config")
            model_config = framework = None
            if isinstance(config, dict):
                model_config = plain(config.get("model"))
                framework = config.get("framework") or config.get("framework_str")
            return _About(
                space_from_rllib_dict(spec.get("observation_space"), where),
                space_from_rllib_dict(spec.get("action_space"), where),
                _class_name(spec.get("policy_class")),
                model_config,
                framework,
            )
    if layout.version == "1.2":
        meta_rel = f"{policy_dir(layout, resolved)}/{fmt.LEGACY_MODULE_METADATA}"
        if not ckpt.exists(meta_rel):
            return _About()
        doc = ckpt.read_json(meta_rel)
        where = ckpt.child(meta_rel)
        with _describing(where):
            spec = _find_keys(doc, ("observation_space", "action_space"))
            return _About(
                space_from_rllib_dict(spec.get("observation_space"), where),
                space_from_rllib_dict(spec.get("action_space"), where),
                _class_name(_find_keys(doc, ("module_class",)).get("module_class")),
                plain(spec.get("model_config_dict", spec.get("model_config"))),
                "torch" if rel.endswith(".pt") else None,
            )
    base = policy_dir(layout, resolved)
    ctor_rel = f"{base}/{fmt.CTOR_ARGS_FILE}" if base else fmt.CTOR_ARGS_FILE
    if not ckpt.exists(ctor_rel):
        return _About()
    ctor = decode_file(ckpt, ctor_rel, trusted=trusted)
    where = ckpt.child(ctor_rel)
    with _describing(where):
        kwargs = _ctor_kwargs(ctor)
        cls = ctor.get("class") if isinstance(ctor, dict) else None
        return _About(
            space_from_object(kwargs.get("observation_space"), where),
            space_from_object(kwargs.get("action_space"), where),
            _class_name(cls),
            plain(kwargs.get("model_config")),
            _framework_of_class(cls),
        )


Names = Tuple[Optional[str], Optional[str]]


def _algorithm_info(ckpt: CheckpointDir, layout: fmt.Layout, trusted: bool) -> Tuple[Names, Optional[str]]:
    """((algorithm class name, the RLlib algorithm it is or derives from), framework) from
    the algorithm-level state, if this is one."""
    if layout.kind is not fmt.Kind.ALGORITHM:
        return (None, None), None
    if layout.stack is fmt.Stack.NEW and ckpt.exists(fmt.CTOR_ARGS_FILE):
        ctor = decode_file(ckpt, fmt.CTOR_ARGS_FILE, trusted=trusted)
        if not isinstance(ctor, dict):
            return (None, None), None
        with _describing(ckpt.child(fmt.CTOR_ARGS_FILE)):
            args = (ctor.get("ctor_args_and_kwargs") or ((), {}))[0]
            config = args[0] if args else None
            return algorithm_names(ctor.get("class")), _framework_of_config(config)
    for name in ("algorithm_state.pkl", "algorithm_state.msgpck", "algorithm_state.msgpack"):
        if ckpt.exists(name):
            state = decode_file(ckpt, name, trusted=trusted)
            if not isinstance(state, dict):
                return (None, None), None
            with _describing(ckpt.child(name)):
                return algorithm_names(state.get("algorithm_class")), _framework_of_config(state.get("config"))
    return (None, None), None


RLLIB_ALGORITHMS = "ray.rllib.algorithms."  # where RLlib's own algorithm classes live
PARTIAL_HOME = "rllib_ext.algorithms"  # PPOPartial etc.: '<base>Partial' over RLlib's '<base>'
SKELETON = "_make_skeleton_class"  # cloudpickle's call that rebuilds a class stored by value


def algorithm_names(cls: object, depth: int = 0) -> Names:
    """``(class name, RLlib algorithm)`` of a pickled algorithm class, without running anything.

    By reference the pickle names the class (module and name). By value (a class that
    cannot be imported by name, such as the subclass a Tune trial runs as) cloudpickle
    stores the call ``_make_skeleton_class(type, name, bases, ...)``; safe mode keeps that
    call's arguments, so the name is read there and the bases are followed. The RLlib
    algorithm is the first class met under ``ray.rllib.algorithms.`` (rllib_ext's
    ``<Algo>Partial`` is on ``<Algo>``); None when the chain leaves what the file says.
    """
    if depth > 20:
        return None, None
    if isinstance(cls, Placeholder) and type(cls).name == SKELETON and len(cls.args) >= 3:
        name = cls.args[1] if isinstance(cls.args[1], str) else None
        for base in cls.args[2] if isinstance(cls.args[2], tuple) else ():
            rllib = algorithm_names(base, depth + 1)[1]
            if rllib is not None:
                return name, rllib
        return name, None
    name = _class_name(cls)
    if isinstance(cls, type) and not issubclass(cls, Placeholder):  # trusted: a real class
        found = [c.__name__ for c in cls.__mro__ if c.__module__.startswith(RLLIB_ALGORITHMS)]
        return name, (found[0] if found else None)
    module = cls.module if isinstance(cls, type) and issubclass(cls, Placeholder) else (
        cls.rsplit(".", 1)[0] if isinstance(cls, str) and "." in cls else "")
    if module.startswith(RLLIB_ALGORITHMS):
        return name, name
    if module == PARTIAL_HOME and name and name.endswith("Partial"):
        return name, name[: -len("Partial")]
    return name, None


@contextlib.contextmanager
def _describing(where: str) -> Iterator[None]:
    """Any failure while interpreting a decoded file's content means the file is malformed.

    The content is whatever the file held (safe mode builds placeholders for foreign
    objects), so a wrong type anywhere in it must surface as a typed error naming the file.
    """
    with malformed(where, "unexpected content where the spaces, class or config should be",
                   "; the file is damaged or from an unsupported version"):
        yield


def _find_keys(doc: object, keys: Tuple[str, ...], depth: int = 0) -> Dict[str, Any]:
    """The first JSON object (depth-first) holding all ``keys``, else ``{}``.

    Layout 1.2 nests the module spec inside ``rl_module_metadata.json``; the depth of
    the nesting changed between releases, so we look for the keys, not for a path.
    """
    if isinstance(doc, dict):
        if all(k in doc for k in keys):
            return doc
        children: List[Any] = list(doc.values())
    elif isinstance(doc, list):
        children = doc
    else:
        return {}
    if depth < 8:
        for child in children:
            found = _find_keys(child, keys, depth + 1)
            if found:
                return found
    return {}


def _ctor_kwargs(ctor: object) -> Dict[str, Any]:
    args_kwargs = ctor.get("ctor_args_and_kwargs") if isinstance(ctor, dict) else None
    if isinstance(args_kwargs, (tuple, list)) and len(args_kwargs) == 2 and isinstance(args_kwargs[1], dict):
        return args_kwargs[1]
    return {}


def _class_name(obj: object) -> Optional[str]:
    """'PPO' from a Placeholder class, a real class, or a dotted string."""
    if obj is None:
        return None
    if isinstance(obj, str):
        return obj.rsplit(".", 1)[-1] or None
    if isinstance(obj, type) and issubclass(obj, Placeholder):
        return obj.name or None
    return getattr(obj, "__name__", None) or type(obj).__name__


def _framework_of_class(obj: object) -> Optional[str]:
    module = getattr(obj, "module", None) if isinstance(obj, type) and issubclass(obj, Placeholder) else getattr(obj, "__module__", None)
    parts = str(module or "").split(".")
    if "torch" in parts:
        return "torch"
    if "tf" in parts:
        return "tf2"
    return None


def _framework_of_config(config: object) -> Optional[str]:
    for key in ("framework_str", "framework"):
        value = _lookup(config, key)
        if isinstance(value, str):
            return value
    return None


def _lookup(obj: object, key: str) -> object:
    if isinstance(obj, dict):
        return obj.get(key)
    if isinstance(obj, Placeholder):
        return obj.state.get(key) if isinstance(obj.state, dict) else None
    return getattr(obj, key, None)


def plain(obj: object, depth: int = 0) -> Any:
    """Make ``obj`` JSON-able: Placeholders become 'module.name' strings, arrays lists."""
    if depth > 20:
        return repr(obj)
    if obj is None or isinstance(obj, (bool, int, str)):
        return obj
    if isinstance(obj, float):
        return json_float(obj)
    if isinstance(obj, np.generic):
        return plain(obj.item(), depth + 1)
    if isinstance(obj, np.ndarray):
        return plain(obj.tolist(), depth + 1)
    if isinstance(obj, bytes):
        return f"<{len(obj)} bytes>"
    if isinstance(obj, dict):
        return {str(k): plain(v, depth + 1) for k, v in obj.items()}
    if isinstance(obj, (list, tuple, set, frozenset)):
        return [plain(v, depth + 1) for v in obj]
    if isinstance(obj, type) and issubclass(obj, Placeholder):
        return f"{obj.module}.{obj.name}"
    if isinstance(obj, Placeholder):
        return f"{type(obj).module}.{type(obj).name}"
    if isinstance(obj, type):
        return f"{obj.__module__}.{obj.__qualname__}"
    return repr(obj)
