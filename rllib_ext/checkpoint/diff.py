"""Compare two checkpoints policy by policy: which policies changed, and by how much.

The usual question after a partial restore or a fine-tuning run is "did policy X move,
and did the frozen ones stay put?"; the answer is per tensor, as the largest absolute
difference, so a frozen policy reads exactly 0.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Dict, List, Optional, Tuple, TypedDict

import numpy as np

from .reader import policy_ids, read_weights

Shape = Tuple[int, ...]


class TensorDiffDict(TypedDict):
    """One tensor in :meth:`CheckpointDiff.to_dict`."""

    status: str
    max_abs_delta: Optional[float]
    shape_a: Optional[List[int]]
    shape_b: Optional[List[int]]


class PolicyDiffDict(TypedDict):
    """One policy in :meth:`CheckpointDiff.to_dict`."""

    status: str
    max_abs_delta: Optional[float]
    tensors: Dict[str, TensorDiffDict]


class CheckpointDiffDict(TypedDict):
    """:meth:`CheckpointDiff.to_dict`: what ``rllib-ext diff --json`` prints."""

    a: str
    b: str
    differing: List[str]
    policies: Dict[str, PolicyDiffDict]


@dataclass(frozen=True)
class TensorDiff:
    """One tensor name of a policy present in both checkpoints.

    Attributes:
        status: 'equal', 'changed', 'shape' (shapes differ), 'only_a' or 'only_b'.
        max_abs_delta: max |b - a| for 'equal'/'changed' (computed in float64), else None.
    """

    name: str
    status: str
    max_abs_delta: Optional[float]
    shape_a: Optional[Shape]
    shape_b: Optional[Shape]


@dataclass(frozen=True)
class PolicyDiff:
    """One policy id.

    Attributes:
        status: 'equal', 'changed', 'only_a' or 'only_b'.
        max_abs_delta: the largest tensor delta (None when a tensor has no delta).
        tensors: per-tensor results, in checkpoint A's order, then B-only names.
    """

    id: str
    status: str
    max_abs_delta: Optional[float]
    tensors: Tuple[TensorDiff, ...] = ()


@dataclass(frozen=True)
class CheckpointDiff:
    """Result of :func:`diff_checkpoints`."""

    a: str
    b: str
    policies: Tuple[PolicyDiff, ...]

    @property
    def differing(self) -> Tuple[str, ...]:
        """Ids of the policies that are not equal (changed, or only on one side)."""
        return tuple(p.id for p in self.policies if p.status != "equal")

    def to_dict(self) -> CheckpointDiffDict:
        return {
            "a": self.a,
            "b": self.b,
            "differing": list(self.differing),
            "policies": {
                p.id: {
                    "status": p.status,
                    "max_abs_delta": p.max_abs_delta,
                    "tensors": {
                        t.name: {
                            "status": t.status,
                            "max_abs_delta": t.max_abs_delta,
                            "shape_a": None if t.shape_a is None else list(t.shape_a),
                            "shape_b": None if t.shape_b is None else list(t.shape_b),
                        }
                        for t in p.tensors
                    },
                }
                for p in self.policies
            },
        }


def diff_checkpoints(
    a: "str | os.PathLike[str]", b: "str | os.PathLike[str]", *, trusted: bool = False
) -> CheckpointDiff:
    """Compare every policy of checkpoint ``a`` with the same id in checkpoint ``b``.

    Any two checkpoint kinds can be compared (e.g. an algorithm checkpoint with an
    extracted policy directory); policies are matched by id.

    Raises:
        InvalidArgumentError: ``a`` or ``b`` is not a str or ``os.PathLike``.
        CheckpointError: either side is not a readable checkpoint.
    """
    ids_a, ids_b = policy_ids(a), policy_ids(b)
    results = []
    for pid in sorted(set(ids_a) | set(ids_b)):
        if pid not in ids_b:
            results.append(PolicyDiff(pid, "only_a", None))
        elif pid not in ids_a:
            results.append(PolicyDiff(pid, "only_b", None))
        else:
            results.append(diff_weights(pid, read_weights(a, pid, trusted=trusted), read_weights(b, pid, trusted=trusted)))
    return CheckpointDiff(os.path.abspath(os.fspath(a)), os.path.abspath(os.fspath(b)), tuple(results))


def diff_weights(pid: str, wa: Dict[str, np.ndarray], wb: Dict[str, np.ndarray]) -> PolicyDiff:
    """Tensor-by-tensor comparison of one policy's two weight dicts."""
    tensors = []
    for name in list(wa) + [n for n in wb if n not in wa]:
        if name not in wb:
            tensors.append(TensorDiff(name, "only_a", None, tuple(wa[name].shape), None))
            continue
        if name not in wa:
            tensors.append(TensorDiff(name, "only_b", None, None, tuple(wb[name].shape)))
            continue
        x, y = wa[name], wb[name]
        if x.shape != y.shape:
            tensors.append(TensorDiff(name, "shape", None, tuple(x.shape), tuple(y.shape)))
            continue
        delta = _max_abs_delta(x, y)
        equal = np.array_equal(x, y, equal_nan=x.dtype.kind in "fc" and y.dtype.kind in "fc")
        tensors.append(TensorDiff(name, "equal" if equal else "changed", delta, tuple(x.shape), tuple(y.shape)))
    deltas = [t.max_abs_delta for t in tensors]
    status = "equal" if all(t.status == "equal" for t in tensors) else "changed"
    known = [d for d in deltas if d is not None]
    overall = None if len(known) < len(deltas) else max(known, default=0.0)
    return PolicyDiff(pid, status, overall, tuple(tensors))


def _max_abs_delta(x: np.ndarray, y: np.ndarray) -> float:
    if x.size == 0:
        return 0.0
    d = np.abs(y.astype(np.float64) - x.astype(np.float64))
    both_nan = np.isnan(x.astype(np.float64)) & np.isnan(y.astype(np.float64))
    d = np.where(both_nan, 0.0, d)
    return float(np.max(d))
