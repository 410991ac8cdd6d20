"""What a checkpoint holds, as typed plain data: spaces, policies, the checkpoint.

These are the reader's answers (``inspect``), the single-policy format's metadata and the
CLI's tables. They never hold a gymnasium or RLlib object: safe mode does not build
foreign classes, and a view must be JSON-able (``to_dict``/``from_dict``).
"""

from __future__ import annotations

import math
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any, Dict, List, Mapping, Optional, Tuple, TypedDict, Union

import numpy as np

from .lazy import LazyArray

Bound = Union[float, Tuple[float, ...]]
TensorIndex = Dict[str, Tuple[Tuple[int, ...], str]]
JsonBound = Union[float, str, List[Union[float, str]]]  # non-finite bounds as 'inf', '-inf', 'nan'


class SpaceJson(TypedDict, total=False):
    """:meth:`SpaceView.to_dict`: ``type`` always, the rest as the space has them."""

    type: str
    shape: List[int]
    dtype: str
    low: JsonBound
    high: JsonBound
    n: int
    start: int
    nvec: List[int]
    spaces: Dict[str, "SpaceJson"]


class FilterStatsJson(TypedDict):
    """:meth:`FilterStats.to_dict`: what policy.json's ``observation_filter`` holds."""

    type: str  # "MeanStdFilter"
    shape: List[int]
    count: int
    mean: List[float]
    sum_sq_diff: List[float]
    demean: bool
    destd: bool
    clip: Optional[float]


class TensorJson(TypedDict):
    """One tensor of a policy: its shape and numpy dtype name."""

    shape: List[int]
    dtype: str


class PolicyViewJson(TypedDict):
    """:meth:`PolicyView.to_dict`."""

    id: str
    observation_space: Optional[SpaceJson]
    action_space: Optional[SpaceJson]
    tensors: Dict[str, TensorJson]
    num_params: int
    nbytes: int
    policy_class: Optional[str]
    model_config: Optional[Dict[str, Any]]
    weights_file: str
    recurrent: Optional[bool]
    observation_filter: Optional[str]
    training_state: Optional[str]


class CheckpointViewJson(TypedDict):
    """:meth:`CheckpointView.to_dict` (``inspect --json``)."""

    path: str
    kind: str
    stack: str
    checkpoint_version: str
    framework: Optional[str]
    ray_version: Optional[str]
    algorithm_class: Optional[str]
    algorithm_base: Optional[str]
    policies: Dict[str, PolicyViewJson]
    filters: Dict[str, str]
    filters_keyed_by: Optional[str]


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

    def to_dict(self) -> SpaceJson:
        """Plain JSON-able dict (non-finite bounds as the strings 'inf', '-inf', 'nan')."""
        out: Dict[str, Any] = {"type": self.type}
        for key in ("shape", "dtype", "low", "high", "n", "start", "nvec"):
            value = getattr(self, key)
            if value is None:
                continue
            if key in ("low", "high"):
                value = [json_float(v) for v in value] if isinstance(value, tuple) else json_float(value)
            elif isinstance(value, tuple):
                value = list(value)
            out[key] = value
        if self.spaces is not None:
            out["spaces"] = {k: s.to_dict() for k, s in self.spaces.items()}
        return out  # type: ignore[return-value]  # built key by key

    @classmethod
    def from_dict(cls, d: "SpaceJson | Mapping[str, Any]") -> "SpaceView":
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
        recurrent: whether the model carries state (``use_lstm``/``use_attention`` in
            its model config); None where the checkpoint records no model config.
        observation_filter: the policy's own observation filter, described (old stack
            and policy files); None without one. New-stack filters are per agent: see
            :attr:`CheckpointView.filters`.
        training_state: what the checkpoint keeps of the policy's training (``inspect``
            only): optimizer kinds and step, KL coefficient, alpha; None when it keeps none.
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
    recurrent: Optional[bool] = None
    observation_filter: Optional[str] = None
    training_state: Optional[str] = None

    def to_dict(self) -> PolicyViewJson:
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
            "recurrent": self.recurrent,
            "observation_filter": self.observation_filter,
            "training_state": self.training_state,
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
        algorithm_base: the RLlib algorithm ``algorithm_class`` is or derives from
            ('PPO' for 'PPOPartial'); None when the checkpoint does not say.
        filters: the observation filters stored (``inspect`` only): ``{policy or agent
            id: description}``; ``filters_keyed_by`` says which ('policy' or 'agent').
    """

    path: str
    kind: str
    stack: str
    checkpoint_version: str
    framework: Optional[str]
    ray_version: Optional[str]
    algorithm_class: Optional[str]
    policies: Mapping[str, PolicyView] = field(default_factory=dict)
    filters: Mapping[str, str] = field(default_factory=dict)
    filters_keyed_by: Optional[str] = None
    algorithm_base: Optional[str] = None

    def to_dict(self) -> CheckpointViewJson:
        return {
            "path": self.path,
            "kind": self.kind,
            "stack": self.stack,
            "checkpoint_version": self.checkpoint_version,
            "framework": self.framework,
            "ray_version": self.ray_version,
            "algorithm_class": self.algorithm_class,
            "algorithm_base": self.algorithm_base,
            "policies": {pid: p.to_dict() for pid, p in self.policies.items()},
            "filters": dict(self.filters),
            "filters_keyed_by": self.filters_keyed_by,
        }


def tensor_index(weights: Mapping[str, "np.ndarray | LazyArray"]) -> TensorIndex:
    """``{name: (shape, dtype name)}`` of a weights dict."""
    return OrderedDict((k, (tuple(int(d) for d in v.shape), v.dtype.name)) for k, v in weights.items())


def make_policy_view(
    pid: str,
    weights: Mapping[str, "np.ndarray | LazyArray"],
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
        recurrent=recurrent_of(model_config),
    )


def recurrent_of(model_config: Optional[Mapping[str, Any]]) -> Optional[bool]:
    """Whether a model config asks for a recurrent model (None: no config recorded)."""
    if not isinstance(model_config, Mapping):
        return None
    return bool(model_config.get("use_lstm") or model_config.get("use_attention"))


def json_float(value: float) -> Union[float, str]:
    """JSON has no inf/nan: non-finite floats become the strings 'inf', '-inf', 'nan'."""
    return value if math.isfinite(value) else str(value)
