"""``inspect(path)``: what a checkpoint holds, as typed plain data, without Ray or torch.

The view answers the questions a user asks before restoring anything: which policies are
there, for which observation/action spaces, with which tensors, written by which
algorithm, framework and Ray version. Spaces come back as :class:`SpaceView` (plain
fields, never a gymnasium object), because safe mode does not build foreign classes:

* new stack: ``<module dir>/class_and_ctor_args.pkl`` -- gymnasium spaces pickled by
  value, which safe mode turns into Placeholders whose ``state`` holds low/high/n/...
* old stack: ``policy_spec`` inside ``policy_state.pkl`` -- RLlib's serialised space dicts
  (``ray.rllib.utils.serialization.gym_space_to_dict``: arrays as base64 of zlib of
  ``np.save`` bytes).
"""

from __future__ import annotations

import base64
import contextlib
import io
import math
import os
import zlib
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any, Dict, Iterator, Mapping, Optional, Tuple, Union

import numpy as np

from ..errors import CheckpointError, CheckpointFormatError
from . import format as fmt
from .reader import _extract_weights, decode_file, ids_in, locate, open_checkpoint
from .safe_pickle import Placeholder
from .storage import CheckpointDir

Bound = Union[float, Tuple[float, ...]]
TensorIndex = Dict[str, Tuple[Tuple[int, ...], str]]

# RLlib's serialised space names -> gymnasium class names.
_OLD_SPACE_NAMES = {
    "box": "Box",
    "discrete": "Discrete",
    "multi-binary": "MultiBinary",
    "multi-discrete": "MultiDiscrete",
    "tuple": "Tuple",
    "dict": "Dict",
    "simplex": "Simplex",
    "repeated": "Repeated",
    "flex_dict": "FlexDict",
    "text": "Text",
}


@dataclass(frozen=True)
class SpaceView:
    """A gymnasium space as plain data (JSON-able through :meth:`to_dict`).

    Attributes:
        type: gymnasium class name: 'Box', 'Discrete', 'MultiDiscrete', 'Tuple', ...
        shape: the space's shape, if it has one.
        dtype: numpy dtype name ('float32', 'int64'), if any.
        low, high: Box bounds: one float when every entry is the same, else the
            flattened per-entry bounds (row-major, ``shape`` gives the layout).
        n, start: Discrete / MultiBinary size and Discrete offset.
        nvec: MultiDiscrete sizes, flattened.
        spaces: sub-spaces of Tuple ('0', '1', ...) and Dict spaces, in order.
    """

    type: str
    shape: Optional[Tuple[int, ...]] = None
    dtype: Optional[str] = None
    low: Optional[Bound] = None
    high: Optional[Bound] = None
    n: Optional[int] = None
    start: Optional[int] = None
    nvec: Optional[Tuple[int, ...]] = None
    spaces: Optional[Mapping[str, "SpaceView"]] = None

    def describe(self) -> str:
        """A one-line summary, spelled like gymnasium's ``repr`` for the common spaces."""
        if self.type == "Box":
            return f"Box({self._bound_repr(self.low)}, {self._bound_repr(self.high)}, {self.shape}, {self.dtype})"
        if self.type == "Discrete":
            return f"Discrete({self.n})" if not self.start else f"Discrete({self.n}, start={self.start})"
        if self.type == "MultiDiscrete":
            return f"MultiDiscrete({list(self.nvec or ())})"
        if self.type == "MultiBinary":
            return f"MultiBinary({self.n if self.n is not None else self.shape})"
        if self.type == "Tuple":
            return "Tuple(" + ", ".join(s.describe() for s in (self.spaces or {}).values()) + ")"
        if self.type == "Dict":
            inner = ", ".join(f"{k!r}: {s.describe()}" for k, s in (self.spaces or {}).items())
            return f"Dict({inner})"
        return f"{self.type}(shape={self.shape}, dtype={self.dtype})"

    def _bound_repr(self, bound: Optional[Bound]) -> str:
        if bound is None:
            return "?"
        if isinstance(bound, tuple):
            return str(np.asarray(bound, dtype=self.dtype).reshape(self.shape or (-1,)))
        return str(np.dtype(self.dtype or "float64").type(bound))

    def to_dict(self) -> Dict[str, Any]:
        """Plain JSON-able dict (non-finite bounds as the strings 'inf', '-inf', 'nan')."""
        out: Dict[str, Any] = {"type": self.type}
        for key in ("shape", "dtype", "low", "high", "n", "start", "nvec"):
            value = getattr(self, key)
            if value is None:
                continue
            if key in ("low", "high"):
                value = [_json_float(v) for v in value] if isinstance(value, tuple) else _json_float(value)
            elif isinstance(value, tuple):
                value = list(value)
            out[key] = value
        if self.spaces is not None:
            out["spaces"] = {k: s.to_dict() for k, s in self.spaces.items()}
        return out

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "SpaceView":
        """Inverse of :meth:`to_dict`."""

        def bound(v: Any) -> Optional[Bound]:
            if v is None:
                return None
            return tuple(float(x) for x in v) if isinstance(v, list) else float(v)

        def tup(v: Any) -> Optional[Tuple[int, ...]]:
            return None if v is None else tuple(int(x) for x in v)

        spaces = d.get("spaces")
        return cls(
            type=str(d["type"]),
            shape=tup(d.get("shape")),
            dtype=d.get("dtype"),
            low=bound(d.get("low")),
            high=bound(d.get("high")),
            n=d.get("n"),
            start=d.get("start"),
            nvec=tup(d.get("nvec")),
            spaces=None if spaces is None else OrderedDict((k, cls.from_dict(v)) for k, v in spaces.items()),
        )


@dataclass(frozen=True)
class PolicyView:
    """One policy (old stack) or RLModule (new stack) of a checkpoint.

    Attributes:
        id: the policy / module id.
        observation_space, action_space: as stored, or None where the layout keeps none.
        tensors: ``{name: (shape, dtype name)}`` in the order RLlib's getters use.
        num_params: total number of scalars over all tensors.
        nbytes: total bytes of the tensors.
        policy_class: RLModule class (new stack) or policy class (old stack) name.
        model_config: the model config stored with the policy (plain JSON-able data).
        weights_file: the file holding the weights, relative to the checkpoint root.
    """

    id: str
    observation_space: Optional[SpaceView]
    action_space: Optional[SpaceView]
    tensors: TensorIndex
    num_params: int
    nbytes: int
    policy_class: Optional[str] = None
    model_config: Optional[Dict[str, Any]] = None
    weights_file: str = ""

    def to_dict(self) -> Dict[str, Any]:
        return {
            "id": self.id,
            "observation_space": self.observation_space.to_dict() if self.observation_space else None,
            "action_space": self.action_space.to_dict() if self.action_space else None,
            "tensors": {k: {"shape": list(s), "dtype": d} for k, (s, d) in self.tensors.items()},
            "num_params": self.num_params,
            "nbytes": self.nbytes,
            "policy_class": self.policy_class,
            "model_config": self.model_config,
            "weights_file": self.weights_file,
        }


@dataclass(frozen=True)
class CheckpointView:
    """What :func:`inspect` found at a checkpoint path.

    Attributes:
        path: absolute checkpoint directory.
        kind: 'algorithm', 'multi-module', 'module', 'policy' or 'single-policy'.
        stack: 'new' (RLModule/Learner) or 'old' (Policy/ModelV2) API stack.
        checkpoint_version: RLlib's ``checkpoint_version`` (or our ``format_version``).
        framework: 'torch', 'tf2', ... or None when the checkpoint does not say.
        ray_version: the Ray release that wrote it, if recorded.
        algorithm_class: e.g. 'PPO'; None for checkpoints below the algorithm level.
        policies: ``{id: PolicyView}``, sorted by id.
    """

    path: str
    kind: str
    stack: str
    checkpoint_version: str
    framework: Optional[str]
    ray_version: Optional[str]
    algorithm_class: Optional[str]
    policies: Mapping[str, PolicyView] = field(default_factory=dict)

    def to_dict(self) -> Dict[str, Any]:
        return {
            "path": self.path,
            "kind": self.kind,
            "stack": self.stack,
            "checkpoint_version": self.checkpoint_version,
            "framework": self.framework,
            "ray_version": self.ray_version,
            "algorithm_class": self.algorithm_class,
            "policies": {pid: p.to_dict() for pid, p in self.policies.items()},
        }


def inspect(path: "str | os.PathLike[str]", *, trusted: bool = False) -> CheckpointView:
    """Describe the checkpoint at ``path``: algorithm, framework, and every policy.

    Reads each policy's weights file (for tensor shapes) and the small files that hold
    the spaces; never imports Ray, torch or anything the pickles name (unless trusted).

    Args:
        path: any checkpoint :func:`read_weights` accepts.
        trusted: unpickle with plain pickle (imports whatever the files name).

    Raises:
        NotACheckpointError: ``path`` holds no checkpoint.
        CheckpointFormatError: a file is missing, truncated or not understood.
    """
    ckpt, layout = open_checkpoint(path)
    if layout.kind is fmt.Kind.SINGLE_POLICY:
        from .policy_file import view_policy_dir

        return view_policy_dir(ckpt, layout)
    return _view(ckpt, layout, sorted(ids_in(ckpt, layout)), trusted)[0]


def load_policy(
    path: "str | os.PathLike[str]", policy_id: Optional[str] = None, *, trusted: bool = False
) -> Tuple[CheckpointView, Dict[str, np.ndarray]]:
    """One policy's weights plus a view of the checkpoint that describes only that policy.

    Reads only that policy's files (and the algorithm-level state), so extracting one
    policy from a large checkpoint does not decode the others.

    Raises:
        PolicyNotFoundError: ``policy_id`` is not in the checkpoint (lists what is).
        CheckpointFormatError: a file is missing, truncated or not understood.
    """
    ckpt, layout = open_checkpoint(path)
    if layout.kind is fmt.Kind.SINGLE_POLICY:
        from .policy_file import read_policy_dir, view_policy_dir

        return view_policy_dir(ckpt, layout), read_policy_dir(ckpt.uri)[0]
    pid, _ = locate(ckpt, layout, policy_id)
    pid = pid if pid is not None else ids_in(ckpt, layout)[0]
    view, weights = _view(ckpt, layout, [pid], trusted)
    return view, weights[pid]


def _view(
    ckpt: CheckpointDir, layout: fmt.Layout, ids: "list[str]", trusted: bool
) -> Tuple[CheckpointView, Dict[str, Dict[str, np.ndarray]]]:
    algorithm_class, framework = _algorithm_info(ckpt, layout, trusted)
    policies: Dict[str, PolicyView] = OrderedDict()
    weights: Dict[str, Dict[str, np.ndarray]] = {}
    frameworks = []
    for pid in ids:
        view, policy_framework, weights[pid] = _policy_view(ckpt, layout, pid, trusted)
        policies[pid] = view
        frameworks.append(policy_framework)
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
    )
    return view, weights


def tensor_index(weights: Mapping[str, np.ndarray]) -> TensorIndex:
    """``{name: (shape, dtype name)}`` of a weights dict."""
    return OrderedDict((k, (tuple(int(d) for d in v.shape), v.dtype.name)) for k, v in weights.items())


def make_policy_view(
    pid: str,
    weights: Mapping[str, np.ndarray],
    observation_space: Optional[SpaceView] = None,
    action_space: Optional[SpaceView] = None,
    policy_class: Optional[str] = None,
    model_config: Optional[Dict[str, Any]] = None,
    weights_file: str = "",
) -> PolicyView:
    """Build a :class:`PolicyView` from loaded weights (sizes are summed here)."""
    return PolicyView(
        id=pid,
        observation_space=observation_space,
        action_space=action_space,
        tensors=tensor_index(weights),
        num_params=int(sum(int(v.size) for v in weights.values())),
        nbytes=int(sum(int(v.nbytes) for v in weights.values())),
        policy_class=policy_class,
        model_config=model_config,
        weights_file=weights_file,
    )


def _policy_view(
    ckpt: CheckpointDir, layout: fmt.Layout, pid: str, trusted: bool
) -> Tuple[PolicyView, Optional[str], Dict[str, np.ndarray]]:
    """One policy's view, the framework its files reveal (if any), and its weights."""
    located, rel = locate(ckpt, layout, pid)
    payload = decode_file(ckpt, rel, trusted=trusted)
    weights = _extract_weights(payload, layout, ckpt.child(rel))
    obs = act = None
    policy_class = framework = None
    model_config: Optional[Dict[str, Any]] = None
    if layout.stack is fmt.Stack.OLD:
        spec = payload.get("policy_spec") if isinstance(payload, dict) else None
        if isinstance(spec, dict):
            where = f"{ckpt.child(rel)} (policy_spec)"
            with _describing(where):
                obs = space_from_rllib_dict(spec.get("observation_space"), where)
                act = space_from_rllib_dict(spec.get("action_space"), where)
                policy_class = _class_name(spec.get("policy_class"))
                config = spec.get("config")
                if isinstance(config, dict):
                    model_config = plain(config.get("model"))
                    framework = config.get("framework") or config.get("framework_str")
    elif layout.version == "1.2":
        meta_rel = f"{fmt.policy_dir(layout, located)}/{fmt.LEGACY_MODULE_METADATA}"
        if ckpt.exists(meta_rel):
            doc = ckpt.read_json(meta_rel)
            where = ckpt.child(meta_rel)
            with _describing(where):
                spec = _find_keys(doc, ("observation_space", "action_space"))
                obs = space_from_rllib_dict(spec.get("observation_space"), where)
                act = space_from_rllib_dict(spec.get("action_space"), where)
                policy_class = _class_name(_find_keys(doc, ("module_class",)).get("module_class"))
                model_config = plain(spec.get("model_config_dict", spec.get("model_config")))
                framework = "torch" if rel.endswith(".pt") else None
    else:
        base = fmt.policy_dir(layout, located)
        ctor_rel = f"{base}/{fmt.CTOR_ARGS_FILE}" if base else fmt.CTOR_ARGS_FILE
        if ckpt.exists(ctor_rel):
            ctor = decode_file(ckpt, ctor_rel, trusted=trusted)
            where = ckpt.child(ctor_rel)
            with _describing(where):
                kwargs = _ctor_kwargs(ctor)
                obs = space_from_object(kwargs.get("observation_space"), where)
                act = space_from_object(kwargs.get("action_space"), where)
                policy_class = _class_name(ctor.get("class") if isinstance(ctor, dict) else None)
                model_config = plain(kwargs.get("model_config"))
                framework = _framework_of_class(ctor.get("class") if isinstance(ctor, dict) else None)
    view = make_policy_view(pid, weights, obs, act, policy_class, model_config, rel)
    return view, framework, weights


def _algorithm_info(ckpt: CheckpointDir, layout: fmt.Layout, trusted: bool) -> Tuple[Optional[str], Optional[str]]:
    """(algorithm class name, framework) from the algorithm-level state, if this is one."""
    if layout.kind is not fmt.Kind.ALGORITHM:
        return None, None
    if layout.stack is fmt.Stack.NEW and ckpt.exists(fmt.CTOR_ARGS_FILE):
        ctor = decode_file(ckpt, fmt.CTOR_ARGS_FILE, trusted=trusted)
        if not isinstance(ctor, dict):
            return None, None
        with _describing(ckpt.child(fmt.CTOR_ARGS_FILE)):
            args = (ctor.get("ctor_args_and_kwargs") or ((), {}))[0]
            config = args[0] if args else None
            return _class_name(ctor.get("class")), _framework_of_config(config)
    for name in ("algorithm_state.pkl", "algorithm_state.msgpck", "algorithm_state.msgpack"):
        if ckpt.exists(name):
            state = decode_file(ckpt, name, trusted=trusted)
            if not isinstance(state, dict):
                return None, None
            with _describing(ckpt.child(name)):
                return _class_name(state.get("algorithm_class")), _framework_of_config(state.get("config"))
    return None, None


@contextlib.contextmanager
def _describing(where: str) -> Iterator[None]:
    """Any failure while interpreting a decoded file's content means the file is malformed.

    The content is whatever the file held (safe mode builds placeholders for foreign
    objects), so a wrong type anywhere in it must surface as a typed error naming the file.
    """
    try:
        yield
    except CheckpointError:
        raise
    except Exception as e:
        raise CheckpointFormatError(
            f"{where}: unexpected content where the spaces, class or config should be "
            f"({type(e).__name__}: {e}); the file is damaged or from an unsupported version"
        ) from e


def _find_keys(doc: Any, keys: Tuple[str, ...], depth: int = 0) -> Dict[str, Any]:
    """The first JSON object (depth-first) holding all ``keys``, else ``{}``.

    Layout 1.2 nests the module spec inside ``rl_module_metadata.json``; the depth of
    the nesting changed between releases, so we look for the keys, not for a path.
    """
    if isinstance(doc, dict):
        if all(k in doc for k in keys):
            return doc
        children = doc.values()
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


def _ctor_kwargs(ctor: Any) -> Dict[str, Any]:
    if not isinstance(ctor, dict):
        return {}
    args_kwargs = ctor.get("ctor_args_and_kwargs")
    if isinstance(args_kwargs, (tuple, list)) and len(args_kwargs) == 2 and isinstance(args_kwargs[1], dict):
        return args_kwargs[1]
    return {}


def _class_name(obj: Any) -> Optional[str]:
    """'PPO' from a Placeholder class, a real class, or a dotted string."""
    if obj is None:
        return None
    if isinstance(obj, str):
        return obj.rsplit(".", 1)[-1] or None
    if isinstance(obj, type) and issubclass(obj, Placeholder):
        return obj.name or None
    return getattr(obj, "__name__", None) or type(obj).__name__


def _framework_of_class(obj: Any) -> Optional[str]:
    module = getattr(obj, "module", None) if isinstance(obj, type) and issubclass(obj, Placeholder) else getattr(obj, "__module__", None)
    parts = str(module or "").split(".")
    if "torch" in parts:
        return "torch"
    if "tf" in parts:
        return "tf2"
    return None


def _framework_of_config(config: Any) -> Optional[str]:
    for key in ("framework_str", "framework"):
        value = _lookup(config, key)
        if isinstance(value, str):
            return value
    return None


def _lookup(obj: Any, key: str) -> Any:
    if isinstance(obj, dict):
        return obj.get(key)
    if isinstance(obj, Placeholder):
        return obj.state.get(key) if isinstance(obj.state, dict) else None
    return getattr(obj, key, None)


def space_from_object(space: Any, where: str) -> Optional[SpaceView]:
    """A gymnasium space (real, or a Placeholder from safe mode) as a :class:`SpaceView`."""
    if space is None:
        return None
    if isinstance(space, Placeholder):
        type_name = type(space).name.rsplit(".", 1)[-1]
        state = space.state if isinstance(space.state, dict) else {}
    else:
        type_name = type(space).__name__
        state = dict(getattr(space, "__dict__", {}))
    get = state.get
    dtype = get("dtype")
    dtype_s = np.dtype(dtype).name if isinstance(dtype, (np.dtype, str)) else None
    shape = get("_shape", get("shape"))
    shape_t = tuple(int(d) for d in shape) if isinstance(shape, (tuple, list)) else None
    if type_name == "Box":
        low, high = get("low"), get("high")
        if not isinstance(low, np.ndarray) or not isinstance(high, np.ndarray):
            raise CheckpointFormatError(f"{where}: Box space without low/high arrays")
        return SpaceView("Box", shape_t, dtype_s, _bound(low), _bound(high))
    if type_name == "Discrete":
        return SpaceView("Discrete", shape_t, dtype_s, n=_int(get("n")), start=_int(get("start", 0)))
    if type_name == "MultiBinary":
        n = get("n")
        return SpaceView("MultiBinary", shape_t, dtype_s, n=_int(n) if np.ndim(n) == 0 else None)
    if type_name == "MultiDiscrete":
        nvec = get("nvec")
        return SpaceView("MultiDiscrete", shape_t, dtype_s, nvec=tuple(int(x) for x in np.ravel(nvec)))
    if type_name in ("Tuple", "Dict"):
        subs = get("spaces")
        items = subs.items() if isinstance(subs, dict) else enumerate(subs or ())
        return SpaceView(type_name, spaces=OrderedDict((str(k), space_from_object(s, where)) for k, s in items))
    return SpaceView(type_name, shape_t, dtype_s)


def space_from_rllib_dict(d: Any, where: str) -> Optional[SpaceView]:
    """A space serialised by RLlib's ``space_to_dict`` as a :class:`SpaceView`."""
    if d is None:
        return None
    if isinstance(d, dict) and isinstance(d.get("space"), dict):  # space_to_dict wrapper
        d = d["space"]
    if isinstance(d, Placeholder) or not isinstance(d, dict):  # a pickled space object
        return space_from_object(d, where)
    kind = d.get("space")
    type_name = _OLD_SPACE_NAMES.get(kind, str(kind))
    dtype = d.get("dtype")
    dtype_s = np.dtype(dtype).name if dtype is not None else None
    shape = d.get("shape")
    shape_t = tuple(int(x) for x in shape) if shape is not None else None
    if kind == "box":
        low = _decode_ndarray(d["low"], where)
        high = _decode_ndarray(d["high"], where)
        return SpaceView("Box", shape_t or tuple(low.shape), dtype_s, _bound(low), _bound(high))
    if kind == "discrete":
        return SpaceView("Discrete", (), "int64", n=_int(d.get("n")), start=_int(d.get("start", 0)))
    if kind == "multi-binary":
        n = d.get("n")
        return SpaceView("MultiBinary", shape_t, dtype_s, n=n if isinstance(n, int) else None)
    if kind == "multi-discrete":
        nvec = _decode_ndarray(d["nvec"], where)
        return SpaceView("MultiDiscrete", tuple(nvec.shape), dtype_s, nvec=tuple(int(x) for x in nvec.ravel()))
    if kind in ("tuple", "dict"):
        subs = d.get("spaces")
        items = subs.items() if isinstance(subs, dict) else enumerate(subs or ())
        return SpaceView(type_name, spaces=OrderedDict((str(k), space_from_rllib_dict(s, where)) for k, s in items))
    return SpaceView(type_name, shape_t, dtype_s)


def _decode_ndarray(text: Any, where: str) -> np.ndarray:
    """RLlib's ``_serialize_ndarray``: base64(zlib(np.save bytes)); no pickles allowed."""
    try:
        raw = zlib.decompress(base64.b64decode(text))
        return np.load(io.BytesIO(raw), allow_pickle=False)
    except Exception as e:
        raise CheckpointFormatError(f"{where}: cannot decode a serialised space array ({type(e).__name__}: {e})") from e


def _bound(arr: np.ndarray) -> Bound:
    arr = np.asarray(arr)
    if arr.size and np.all(arr == arr.flat[0]):
        return float(arr.flat[0])
    if arr.size and np.all(np.isnan(arr)):
        return float("nan")
    return tuple(float(x) for x in arr.ravel())


def _int(value: Any) -> Optional[int]:
    return None if value is None else int(value)


def _json_float(value: float) -> Union[float, str]:
    return value if math.isfinite(value) else str(value)


def plain(obj: Any, depth: int = 0) -> Any:
    """Make ``obj`` JSON-able: Placeholders become 'module.name' strings, arrays lists."""
    if depth > 20:
        return repr(obj)
    if obj is None or isinstance(obj, (bool, int, str)):
        return obj
    if isinstance(obj, float):
        return _json_float(obj)
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
