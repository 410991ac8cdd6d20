"""Observation-filter state (RLlib's ``MeanStdFilter``) as plain data, read without Ray.

A policy acts on *filtered* observations: ``(obs - mean) / (std + 1e-6)``, clipped. The
running statistics behind that are part of the policy's behaviour, so they travel with it.
Where RLlib keeps them:

* old stack: one filter per **policy id**, in ``algorithm_state.pkl`` under
  ``worker -> filters -> <policy id>``: a pickled ``ray.rllib.utils.filter.MeanStdFilter``
  (safe mode sees its attributes: ``shape``, ``demean``, ``destd``, ``clip`` and a
  ``RunningStat`` with ``num_pushes``, ``mean_array``, ``sum_sq_diff_array``);
  Ray <= 2.46 names the Welford sum ``std_array`` (same meaning; renamed in Ray 2.47,
  ray#53484), in the pickled filter and in the connector state below alike;
* new stack: the ``MeanStdFilter`` connector of the env runners' env-to-module pipeline,
  one set of statistics per **agent id**, in
  ``env_runner/env_to_module_connector/MeanStdFilter/state.pkl`` (arrays serialised as
  base64 of zlib of ``np.save`` bytes);
* our single-policy format: ``policy.json``'s ``observation_filter`` (JSON numbers; float64
  round-trips exactly through ``repr``);
* a MultiRLModule checkpoint written by ``rllib_ext.migrate``: ``<module id>/observation_filter.json``
  beside RLlib's own module files, one per migrated policy that had a filter: the
  :meth:`FilterStats.to_dict` document (``{"type": "MeanStdFilter", "shape", "count", "mean",
  "sum_sq_diff", "demean", "destd", "clip"}``, plain JSON, no pickle). RLlib does not read it;
  :func:`read_filters` does (keyed by module id).

:class:`FilterStats` applies the filter exactly as RLlib does (``update=False``), so a
filter can be checked, carried and used with numpy alone.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple

import numpy as np

from ..errors import InvalidArgumentError, ShapeMismatchError, UnsupportedFilterError, malformed
from . import format as fmt
from .codecs.safe_pickle import Placeholder
from .decode import decode_file
from .reader import open_checkpoint
from .spaces import decode_rllib_ndarray
from .storage import CheckpointDir
from .views import FilterStatsJson

SMALL_NUMBER = 1e-6  # ray.rllib.utils.numpy.SMALL_NUMBER: added to the std before dividing
NEW_STACK_FILTER_STATE = "env_runner/env_to_module_connector/MeanStdFilter/state.pkl"
FILTER_FILE = "observation_filter.json"  # beside a module migrated by rllib_ext.migrate
ALGORITHM_STATE_FILES = ("algorithm_state.pkl", "algorithm_state.msgpck", "algorithm_state.msgpack")


@dataclass(frozen=True)
class FilterStats:
    """One ``MeanStdFilter``'s running statistics and settings.

    Attributes:
        shape: the observation shape the statistics are of.
        count: observations pushed so far (RLlib's ``num_pushes``).
        mean: running mean, float64.
        sum_sq_diff: Welford's sum of squared differences, float64 (variance is
            ``sum_sq_diff / (count - 1)``).
        demean, destd: whether the mean is subtracted / the std divided by.
        clip: clip the result to ``[-clip, clip]``; None or 0 for no clipping.
    """

    shape: Tuple[int, ...]
    count: int
    mean: np.ndarray
    sum_sq_diff: np.ndarray
    demean: bool = True
    destd: bool = True
    clip: Optional[float] = None

    def std(self) -> np.ndarray:
        """RLlib's ``RunningStat.std`` (float32, 0 for fewer than two observations)."""
        if self.count <= 1:
            var = np.zeros_like(self.mean).astype(np.float32)
        else:
            var = (self.sum_sq_diff / (float(self.count) - 1)).astype(np.float32)
        return np.sqrt(np.maximum(0, var))

    def apply(self, obs: object) -> np.ndarray:
        """Filter ``obs`` (one observation or a batch) as RLlib's ``MeanStdFilter(obs, update=False)``.

        Raises InvalidArgumentError unless ``obs`` ends in the filter's shape."""
        x = np.asarray(obs)
        if x.shape[max(0, x.ndim - len(self.shape)):] != tuple(self.shape):
            raise InvalidArgumentError(f"obs of shape {list(x.shape)} does not fit {self.describe()}: "
                                       f"observations of shape {list(self.shape)}, or a batch of them")
        dtype = x.dtype
        if self.demean:
            x = x - self.mean
        if self.destd:
            x = x / (self.std() + SMALL_NUMBER)
        if self.clip:
            x = np.clip(x, -self.clip, self.clip)
        return x.astype(dtype)

    def same_settings(self, other: "FilterStats") -> bool:
        """Same shape, demean/destd and clipping (no clip and an infinite clip are the same)."""
        return (self.shape, self.demean, self.destd, self.clip_key()) == (
            other.shape, other.demean, other.destd, other.clip_key()
        )

    def clip_key(self) -> Optional[float]:
        """The clip bound, None for no clipping (RLlib's old-stack filters; ``clip=inf``)."""
        return None if not self.clip or math.isinf(self.clip) else float(self.clip)

    def describe(self) -> str:
        clip = f", clip {self.clip_key():g}" if self.clip_key() else ", no clip"
        return f"MeanStdFilter{self.shape} over {self.count} observations{clip}"

    def to_dict(self) -> FilterStatsJson:
        """JSON-able; ``from_dict(to_dict())`` is exact (float64 ``repr`` round-trips)."""
        return {
            "type": "MeanStdFilter",
            "shape": list(self.shape),
            "count": int(self.count),
            "mean": [float(v) for v in np.ravel(self.mean)],
            "sum_sq_diff": [float(v) for v in np.ravel(self.sum_sq_diff)],
            "demean": bool(self.demean),
            "destd": bool(self.destd),
            "clip": None if self.clip is None else float(self.clip),
        }

    @classmethod
    def from_dict(cls, d: FilterStatsJson) -> "FilterStats":
        shape = tuple(int(s) for s in d["shape"])
        return cls(
            shape=shape,
            count=int(d["count"]),
            mean=np.asarray(d["mean"], dtype=np.float64).reshape(shape),
            sum_sq_diff=np.asarray(d["sum_sq_diff"], dtype=np.float64).reshape(shape),
            demean=bool(d["demean"]),
            destd=bool(d["destd"]),
            clip=None if (clip := d.get("clip")) is None else float(clip),
        )

    @classmethod
    def combine(cls, stats: Sequence["FilterStats"]) -> "FilterStats":
        """Pool several filters' statistics, as RLlib merges filter deltas (Chan et al.).

        Used when several source agents played the one restored module (new stack).
        """
        first = stats[0]
        n, mean, s = 0, np.zeros_like(first.mean), np.zeros_like(first.sum_sq_diff)
        for other in stats:
            if not other.same_settings(first):
                raise ShapeMismatchError(f"cannot pool {other.describe()} with {first.describe()}")
            n2 = other.count
            if n + n2 == 0:
                continue
            delta = other.mean - mean
            mean = mean + delta * (float(n2) / float(n + n2))
            s = s + other.sum_sq_diff + delta * delta * (float(n) * float(n2) / float(n + n2))
            n += n2
        return cls(first.shape, n, mean, s, first.demean, first.destd, first.clip)


@dataclass(frozen=True)
class ObservationFilters:
    """Every observation filter of a checkpoint.

    Attributes:
        keyed_by: 'policy' (old stack, single-policy files) or 'agent' (new stack).
        stats: ``{policy or agent id: FilterStats}``; empty when the checkpoint has none.
    """

    keyed_by: str
    stats: Mapping[str, FilterStats]


def read_filters(path: "str | os.PathLike[str]") -> ObservationFilters:
    """The observation filters stored in the checkpoint at ``path`` (numpy only).

    Old-stack algorithm checkpoints and single-policy directories give one filter per
    policy id; new-stack algorithm checkpoints one per agent id. ``NoFilter`` entries and
    checkpoints without filter state give no entry.

    Raises:
        InvalidArgumentError: ``path`` is not a str or ``os.PathLike``.
        NotACheckpointError, CheckpointFormatError: as the reader does.
        UnsupportedFilterError: a filter keeps nested (Dict/Tuple) statistics.
    """
    ckpt, layout = open_checkpoint(path)
    return filters_of(ckpt, layout)


def filters_of(ckpt: CheckpointDir, layout: fmt.Layout) -> ObservationFilters:
    """:func:`read_filters` of a checkpoint already opened."""
    if layout.kind is fmt.Kind.SINGLE_POLICY:
        doc = layout.metadata.get("observation_filter")
        if not doc:
            return ObservationFilters("policy", {})
        pid = str(layout.metadata.get("policy_id"))
        where = ckpt.child(fmt.SINGLE_POLICY_META)
        return ObservationFilters("policy", {pid: _parsed(lambda: FilterStats.from_dict(doc), where)})
    if layout.kind in (fmt.Kind.MULTI_MODULE, fmt.Kind.MODULE):
        return ObservationFilters("policy", _module_filter_files(ckpt, layout))
    if layout.kind is not fmt.Kind.ALGORITHM:
        return ObservationFilters("agent" if layout.stack is fmt.Stack.NEW else "policy", {})
    if layout.stack is fmt.Stack.NEW:
        if not ckpt.exists(NEW_STACK_FILTER_STATE):
            return ObservationFilters("agent", {})
        state = decode_file(ckpt, NEW_STACK_FILTER_STATE)
        where = ckpt.child(NEW_STACK_FILTER_STATE)
        return ObservationFilters("agent", _parsed(lambda: connector_stats(state, where), where))
    for name in ALGORITHM_STATE_FILES:
        if ckpt.exists(name):
            state = decode_file(ckpt, name)
            where = ckpt.child(name)
            return ObservationFilters("policy", _parsed(lambda: _worker_filters(state, where), where))
    return ObservationFilters("policy", {})


def _module_filter_files(ckpt: CheckpointDir, layout: fmt.Layout) -> Dict[str, FilterStats]:
    """``{module id: FilterStats}`` from the :data:`FILTER_FILE` of each module (migrated checkpoints)."""
    if layout.kind is fmt.Kind.MODULE:
        found = {os.path.basename(ckpt.uri.rstrip("/")): FILTER_FILE}
    else:
        found = {d: f"{d}/{FILTER_FILE}" for d in ckpt.listdir("") if ckpt.is_dir(d)}
    out = {}
    for mid, rel in sorted(found.items()):
        if ckpt.exists(rel):
            out[mid] = _parsed(lambda rel=rel: FilterStats.from_dict(ckpt.read_json(rel)), ckpt.child(rel))
    return out


def _parsed(build: Any, where: str) -> Any:
    with malformed(where, "the observation-filter state is malformed"):  # whatever the file held instead
        return build()


def _worker_filters(state: object, where: str) -> Dict[str, FilterStats]:
    """Old stack: ``state['worker']['filters']`` -> ``{policy id: FilterStats}``."""
    worker = state.get("worker") if isinstance(state, dict) else None
    filters = worker.get("filters") if isinstance(worker, dict) else None
    out = {}
    for pid, flt in (filters or {}).items():
        stats = stats_from_filter(flt, pid, where)
        if stats is not None:
            out[str(pid)] = stats
    return out


def stats_from_filter(flt: object, policy_id: object = None, where: str = "") -> Optional[FilterStats]:
    """An old-stack filter object (RLlib's, or its safe-mode Placeholder) as statistics.

    Returns None for ``NoFilter``. ``where`` (the file, or the live algorithm) starts messages.

    Raises:
        UnsupportedFilterError: nested (Dict/Tuple) statistics.
    """
    attrs = _attrs(flt)
    if "running_stats" not in attrs:  # NoFilter
        return None
    rs = _attrs(attrs["running_stats"])
    if not rs:  # Dict/Tuple observation spaces keep a structure of stats: not carried
        raise nested_filter_error(where, f"policy {policy_id!r}", attrs["running_stats"])
    mean = np.asarray(rs["mean_array"], dtype=np.float64)
    return FilterStats(
        shape=tuple(int(d) for d in np.ravel(attrs["shape"])) if attrs.get("shape") is not None else mean.shape,
        count=int(rs["num_pushes"]),
        mean=mean,
        sum_sq_diff=np.asarray(rs[sum_sq_key(rs)], dtype=np.float64),
        demean=bool(attrs.get("demean", True)),
        destd=bool(attrs.get("destd", True)),
        clip=None if attrs.get("clip") is None else float(attrs["clip"]),
    )


def connector_stats(state: Any, where: str) -> Dict[str, FilterStats]:
    """New stack: the MeanStdFilter connector's state -> ``{agent id: FilterStats}``."""
    out = {}
    for agent, agent_state in (state or {}).items():
        stats: List[Any] = list(agent_state["running_stats"])
        if len(stats) != 1:
            raise nested_filter_error(where, f"agent {agent!r}", stats)
        rs = stats[0]
        mean = decode_rllib_ndarray(rs["mean_array"], where).astype(np.float64)
        out[str(agent)] = FilterStats(
            shape=tuple(int(d) for d in np.ravel(agent_state["shape"])),
            count=int(rs["num_pushes"]),
            mean=mean,
            sum_sq_diff=decode_rllib_ndarray(rs[sum_sq_key(rs)], where).astype(np.float64),
            demean=bool(agent_state["de_mean_to_zero"]),
            destd=bool(agent_state["de_std_to_one"]),
            clip=None if agent_state.get("clip_by_value") is None else float(agent_state["clip_by_value"]),
        )
    return out


def nested_filter_error(where: str, whose: str, stats: object) -> UnsupportedFilterError:
    """The one message for nested statistics, wherever they are found (checkpoint or live algorithm)."""
    count = len(stats) if isinstance(stats, (dict, list, tuple)) else "several"
    return UnsupportedFilterError(
        f"{where + ': ' if where else ''}{whose}: its MeanStdFilter keeps nested statistics ({count} running "
        "statistics, one per part of a Dict/Tuple observation space); rllib_ext carries one statistic per "
        "policy or agent over one flat observation, so it cannot read or carry these; pass filters=False "
        "(restore, merge, NumpyPolicy, algo.load_policy) to leave the observation filters out"
    )


def sum_sq_key(running_stat: Mapping[str, object]) -> str:
    """The key of the Welford sum of squared differences: Ray <= 2.46 called it ``std_array``."""
    return "std_array" if "sum_sq_diff_array" not in running_stat and "std_array" in running_stat else "sum_sq_diff_array"


def _attrs(obj: object) -> Dict[str, Any]:
    """The attributes a pickled object would have had (safe mode: a Placeholder's state)."""
    if isinstance(obj, Placeholder):
        return obj.state if isinstance(obj.state, dict) else {}
    return dict(getattr(obj, "__dict__", {}) or {})
