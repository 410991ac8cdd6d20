"""How the CLI prints: tables and compact spellings of views, diffs, merges, migrations and pools.

Plain functions of the library's results to text, kept apart from ``cli`` (which parses,
makes one library call and prints), so each stays small.
"""

from __future__ import annotations

import json
import math
from typing import Callable, List, Mapping, Optional, Protocol, Sequence, Tuple

import numpy as np

from .checkpoint.diff import CheckpointDiff
from .checkpoint.views import Bound, CheckpointView, SpaceView
from .merge.report import MergeReport
from .pool.index import PoolEntry


def format_view(view: CheckpointView, tensors: bool = False, full: bool = False) -> str:
    """A readable summary of :func:`inspect`'s view.

    Spaces are compacted (:func:`compact_space`) unless ``full``, which prints
    :meth:`SpaceView.describe` with every per-dimension bound.
    """
    space = (lambda s: s.describe()) if full else compact_space  # noqa: E731
    facts = [
        f"{view.kind} checkpoint ({view.stack} API stack, version {view.checkpoint_version})",
        f"algorithm {view.algorithm_class or '-'}" + (
            f" (on {view.algorithm_base})" if view.algorithm_base not in (None, view.algorithm_class) else ""
        ),
        f"framework {view.framework or '-'}",
        f"Ray {view.ray_version or '-'}",
    ]
    lines = [view.path, "  " + ", ".join(facts), ""]
    rows = [
        [
            pid,
            space(p.observation_space) if p.observation_space else "-",
            space(p.action_space) if p.action_space else "-",
            str(len(p.tensors)),
            f"{p.num_params:,}",
            _size(p.nbytes),
            p.policy_class or "-",
        ]
        for pid, p in view.policies.items()
    ]
    lines += _table(["policy", "observation space", "action space", "tensors", "params", "size", "class"], rows)
    recurrent = [pid for pid, p in view.policies.items() if p.recurrent]
    if recurrent:
        lines += ["", f"recurrent (carry state when acting): {', '.join(recurrent)}"]
    lines += ["", "training state (restore(..., training_state=True) carries it):"]
    lines += [f"  {pid}: {p.training_state or 'none (weights only)'}" for pid, p in view.policies.items()]
    if view.filters:
        lines += ["", f"observation filters, one per {view.filters_keyed_by}:"]
        lines += [f"  {key}: {text}" for key, text in view.filters.items()]
    if tensors:
        for pid, p in view.policies.items():
            lines += ["", f"{pid}  ({p.weights_file})"]
            lines += ["  " + row for row in _table(["tensor", "shape", "dtype"], [[n, str(s), d] for n, (s, d) in p.tensors.items()])]
    return "\n".join(lines)


def compact_space(view: SpaceView) -> str:
    """One short table cell for a space: ``Box(4,) float32 [-4.8, 4.8]``, ``Discrete(2)``.

    A Box shows its shape, dtype and the envelope of its bounds (the smallest low and the
    largest high over all dimensions; the value itself when every dimension shares it),
    so a space with per-dimension bounds (CartPole's ``[-4.8, -3.4e38, ...]``) stays one
    short cell. The bounds per dimension are in ``inspect --full`` and ``--json``.
    """
    if view.type == "Box":
        low, high = _envelope(view.low, min), _envelope(view.high, max)
        return f"Box{_shape(view.shape)} {view.dtype or '?'} [{_scalar(low, view.dtype)}, {_scalar(high, view.dtype)}]"
    if view.type == "Discrete":
        return f"Discrete({view.n})" if not view.start else f"Discrete({view.n}, start={view.start})"
    if view.type == "MultiDiscrete":
        nvec = list(view.nvec or ())
        if len(nvec) <= 8:
            return f"MultiDiscrete({nvec})"
        sizes = str(nvec[0]) if len(set(nvec)) == 1 else f"{min(nvec)}..{max(nvec)}"
        return f"MultiDiscrete{_shape(view.shape or (len(nvec),))} n={sizes}"
    if view.type == "MultiBinary":
        return f"MultiBinary({view.n if view.n is not None else _shape(view.shape)})"
    if view.type == "Tuple":
        return "Tuple(" + ", ".join(compact_space(s) for s in (view.spaces or {}).values()) + ")"
    if view.type == "Dict":
        return "Dict(" + ", ".join(f"{k!r}: {compact_space(s)}" for k, s in (view.spaces or {}).items()) + ")"
    return f"{view.type}{_shape(view.shape)} {view.dtype}" if view.dtype else f"{view.type}{_shape(view.shape)}"


def _envelope(bound: Optional[Bound], pick: Callable[[Tuple[float, ...]], float]) -> Optional[float]:
    """One bound for all dimensions: the value itself, or ``pick`` (min/max) over them."""
    if bound is None:
        return None
    if isinstance(bound, tuple):
        if not bound:
            return None
        if any(math.isnan(b) for b in bound):
            return math.nan
        return pick(bound)
    return float(bound)


def _scalar(value: Optional[float], dtype: Optional[str]) -> str:
    """A bound spelled as numpy spells a scalar of the space's dtype: -4.8, 3.4028235e+38, 255, inf."""
    if value is None:
        return "?"
    if not math.isfinite(value):
        return str(value)  # 'inf', '-inf', 'nan'
    try:
        dt = np.dtype(dtype or "float64")
    except TypeError:
        return f"{value:g}"
    if dt.kind in "iu" and float(value).is_integer():
        return str(int(value))
    if dt.kind == "f":
        return str(dt.type(value))
    return f"{value:g}"


def _shape(shape: Optional[Tuple[int, ...]]) -> str:
    return "(?)" if shape is None else str(tuple(shape))


def format_diff(result: CheckpointDiff) -> str:
    """Policies first (status, largest delta), then the tensors of those that differ."""
    lines = [f"A: {result.a}", f"B: {result.b}", ""]
    rows = [[p.id, _status(p.status), _delta(p.max_abs_delta)] for p in result.policies]
    lines += _table(["policy", "status", "max |delta|"], rows)
    for p in result.policies:
        if p.status != "changed":
            continue
        lines += ["", p.id]
        trows = [
            [t.name, _status(t.status), _delta(t.max_abs_delta), str(t.shape_a) if t.shape_a == t.shape_b else f"{t.shape_a} -> {t.shape_b}"]
            for t in p.tensors
        ]
        lines += ["  " + row for row in _table(["tensor", "status", "max |delta|", "shape"], trows)]
    if not result.differing:
        lines += ["", "no differences"]
    return "\n".join(lines)


def format_merge(report: MergeReport) -> str:
    """Where the merged checkpoint is, and whose weights and optimizer state each policy has."""
    lines = [f"{report.out}", f"  {report.stack} API stack, copy of {report.base}", ""]
    rows = [[t, s, report.optimizer.get(t, "-")] for t, s in report.taken.items()]
    rows += [[p, "(base)", "base"] for p in report.kept]
    lines += _table(["policy", "weights from", "optimizer state"], rows)
    return "\n".join(lines)


class _PolicyMigration(Protocol):
    """What :func:`format_migrate` reads of one policy of a migration (live.restore's PolicyMigration)."""

    @property
    def supported(self) -> bool: ...
    @property
    def source(self) -> str: ...
    @property
    def module_class(self) -> str: ...
    @property
    def model_config(self) -> Mapping[str, object]: ...
    @property
    def observation_filter(self) -> Optional[str]: ...
    @property
    def not_carried(self) -> Sequence[str]: ...
    @property
    def reason(self) -> Optional[str]: ...


class _Migration(Protocol):
    """What :func:`format_migrate` reads of a migration (live.restore's MigrateReport; live sits above us)."""

    @property
    def dry_run(self) -> bool: ...
    @property
    def out(self) -> Optional[str]: ...
    @property
    def module_class(self) -> str: ...
    @property
    def checkpoint(self) -> str: ...
    @property
    def converted(self) -> Mapping[str, str]: ...
    @property
    def policies(self) -> Mapping[str, _PolicyMigration]: ...


def format_migrate(report: _Migration) -> str:
    """Where the new checkpoint is and what each policy was converted from; with
    ``--dry-run``, per policy: supported or not, into what, and what is not carried."""
    if not report.dry_run:
        lines = [f"{report.out}", f"  new API stack MultiRLModule ({report.module_class}), from {report.checkpoint}", ""]
        lines += _table(["policy", "converted from"], [[pid, what] for pid, what in report.converted.items()])
        return "\n".join(lines)
    lines = [f"dry run: {report.checkpoint} -> {report.out or '(no --out)'}; nothing written"]
    for pid, p in report.policies.items():
        lines += ["", f"{pid}: {'supported' if p.supported else 'NOT supported'}", f"  source:       {p.source}",
                  f"  target:       {p.module_class}"]
        if p.supported:
            lines.append(f"  model_config: {json.dumps(p.model_config, sort_keys=True)}")
            lines.append(f"  obs. filter:  {p.observation_filter or '-'}" + (f" -> {pid}/observation_filter.json" if p.observation_filter else ""))
            lines.append(f"  not carried:  {'; '.join(p.not_carried)}")
        else:
            lines.append(f"  why:          {p.reason}")
    return "\n".join(lines)


def format_pool(path: str, entries: List[PoolEntry]) -> str:
    """One row per snapshot, oldest first: who it is, when it was taken, how it rates."""
    lines = [path, f"  {len(entries)} snapshot{'s' if len(entries) != 1 else ''}", ""]
    rows = [
        [e.id, e.policy, "-" if e.iteration is None else str(e.iteration),
         "-" if e.env_steps is None else f"{e.env_steps:,}", f"{e.rating:.1f}", str(e.games), _size(e.size)]
        for e in entries
    ]
    lines += _table(["id", "policy", "iteration", "env steps", "rating", "games", "size"], rows)
    return "\n".join(lines)


def _table(headers: List[str], rows: List[List[str]]) -> List[str]:
    widths = [max(len(str(c)) for c in col) for col in zip(headers, *rows)]
    fmt_row = lambda r: "  ".join(str(c).ljust(w) for c, w in zip(r, widths)).rstrip()  # noqa: E731
    return [fmt_row(headers), fmt_row(["-" * w for w in widths])] + [fmt_row(r) for r in rows]


_STATUS = {"only_a": "only in A", "only_b": "only in B", "shape": "shape differs"}


def _status(status: str) -> str:
    return _STATUS.get(status, status)


def _delta(value: object) -> str:
    return "-" if value is None else f"{value:.6g}"


def _size(nbytes: int) -> str:
    if nbytes < 1024:
        return f"{nbytes} B"
    size = float(nbytes)
    for unit in ("KiB", "MiB", "GiB"):
        size /= 1024
        if size < 1024 or unit == "GiB":
            break
    return f"{size:.1f} {unit}"

