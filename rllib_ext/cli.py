"""``rllib-ext``: look into, take apart and compare RLlib checkpoints without Ray.

Each subcommand parses its arguments, makes one library call, prints a table (or JSON
with ``--json``) and returns an exit code (:data:`EXIT_CODES`): 0 ok, 1 a checkpoint problem
(or a ``migrate --dry-run`` that finds a policy it cannot migrate), 2 a usage error; every
non-zero exit prints one line on stderr saying why. No logic of its own lives here.

    rllib-ext --version
    rllib-ext inspect CKPT [--json] [--tensors] [--full]
    rllib-ext extract CKPT --policy ID --out PATH [--format safetensors|npz|torch]
    rllib-ext diff CKPT_A CKPT_B [--json]
    rllib-ext merge --base CKPT --take ID=CKPT[:SRC_ID] [--take ...] --out PATH [--json]
    rllib-ext migrate OLD_CKPT (--out NEW_DIR | --dry-run) [--policies ID ...] [--target PPO|APPO|IMPALA] [--json]
    rllib-ext export CKPT --policy ID --format onnx --out policy.onnx [--agent AGENT_ID]
    rllib-ext pool PATH [--json]

``migrate`` imports RLlib and torch (to build the modules RLlib then writes itself);
``export`` imports torch and onnx (to trace the acting path). Neither starts a Ray runtime.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
from typing import Any, List, Optional, Sequence, Tuple, Type

import numpy as np

from ._version import __version__
from .checkpoint.diff import CheckpointDiff, diff_checkpoints
from .checkpoint.export import EXTRACT_FORMATS, extract_policy
from .checkpoint.inspection import inspect
from .checkpoint.views import CheckpointView, SpaceView
from .errors import CheckpointError, MissingDependencyError
from .merge.checkpoints import merge_checkpoints
from .merge.report import MergeReport
from .pool.index import PoolEntry
from .pool.policy_pool import PolicyPool

PROG = "rllib-ext"

# Error class -> exit code, most specific first (the first match decides); others keep their traceback.
EXIT_CODES: Tuple[Tuple[Type[BaseException], int], ...] = (
    (MissingDependencyError, 1),  # an optional package (msgpack, torch, onnx; a supported Ray) is missing
    (CheckpointError, 1),  # the checkpoint (or pool) is missing, damaged, or does not fit
    (OSError, 1),  # the file system: a path that cannot be read or written
    (ValueError, 2),  # arguments that parse but do not fit together (e.g. one id taken twice)
    (TypeError, 2),  # an argument of the wrong kind for the call it reaches
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=PROG, description="Inspect, extract and compare RLlib checkpoints (no Ray needed).")
    parser.add_argument("--version", action="version", version=f"{PROG} {__version__}")
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--trusted",
        action="store_true",
        help="unpickle checkpoint files with plain pickle (runs code they name; only for files you trust)",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("inspect", parents=[common], help="list the policies of a checkpoint with spaces and sizes")
    p.add_argument("checkpoint", metavar="CKPT")
    p.add_argument("--json", action="store_true", help="print the full view as JSON")
    p.add_argument("--tensors", action="store_true", help="also list every tensor (name, shape, dtype)")
    p.add_argument("--full", action="store_true", help="print spaces in full (per-dimension bounds), not compacted")

    p = sub.add_parser("extract", parents=[common], help="write one policy to its own directory or file")
    p.add_argument("checkpoint", metavar="CKPT")
    p.add_argument("--policy", metavar="ID", help="policy/module id (optional if the checkpoint holds one)")
    p.add_argument("--out", metavar="PATH", required=True)
    p.add_argument(
        "--format",
        choices=EXTRACT_FORMATS,
        default="safetensors",
        help="safetensors: policy.json + weights.safetensors directory (default); npz; torch state_dict",
    )

    p = sub.add_parser("diff", parents=[common], help="which policies differ between two checkpoints, by how much")
    p.add_argument("checkpoint_a", metavar="CKPT_A")
    p.add_argument("checkpoint_b", metavar="CKPT_B")
    p.add_argument("--json", action="store_true", help="print the full comparison as JSON")

    p = sub.add_parser(
        "merge", parents=[common], help="copy a checkpoint, replacing some policies' weights by other checkpoints' policies"
    )
    p.add_argument("--base", metavar="CKPT", required=True, help="the algorithm checkpoint to copy")
    p.add_argument(
        "--take",
        metavar="ID=CKPT[:SRC_ID]",
        type=parse_take,
        action="append",
        required=True,
        help="replace policy ID of the base by policy SRC_ID (default: ID) of CKPT; repeatable",
    )
    p.add_argument("--out", metavar="PATH", required=True, help="new checkpoint directory (an existing checkpoint is replaced)")
    p.add_argument("--json", action="store_true", help="print the report as JSON")

    p = sub.add_parser(
        "migrate", parents=[common], help="write old-stack PPO/APPO/IMPALA policies as a new-stack MultiRLModule checkpoint"
    )
    p.add_argument("checkpoint", metavar="OLD_CKPT", help="old-API-stack algorithm or policy checkpoint (torch or tf2)")
    p.add_argument("--out", metavar="NEW_DIR", help="new directory (must not exist, or be empty)")
    p.add_argument("--policies", metavar="ID", nargs="+", help="policy ids to migrate (default: all)")
    p.add_argument("--target", choices=["PPO", "APPO", "IMPALA"],
                   help="write this algorithm's default module (default: each policy's own algorithm)")
    p.add_argument("--dry-run", action="store_true",
                   help="write nothing; per policy: supported or not, source model, target module and config, what is not carried")
    p.add_argument("--json", action="store_true", help="print the report as JSON")

    p = sub.add_parser(
        "export", parents=[common], help="write one policy's acting path (filter, model, heads) as an ONNX graph"
    )
    p.add_argument("checkpoint", metavar="CKPT")
    p.add_argument("--policy", metavar="ID", help="policy/module id (optional if the checkpoint holds one)")
    p.add_argument("--agent", metavar="AGENT_ID", help="new stack: whose observation filter to apply")
    p.add_argument("--format", choices=["onnx"], default="onnx", help="onnx (needs the onnx extra)")
    p.add_argument("--out", metavar="PATH", required=True, help="the .onnx file to write")

    p = sub.add_parser("pool", help="list a policy pool's snapshots with ratings, games and sizes")
    p.add_argument("path", metavar="PATH", help="the pool directory or object-store URI")
    p.add_argument("--json", action="store_true", help="print every entry as JSON")
    return parser


def parse_take(text: str) -> Tuple[str, str, Optional[str]]:
    """``ID=CKPT[:SRC_ID]`` -> ``(ID, CKPT, SRC_ID or None)``.

    The source id follows the *last* colon, unless what follows it looks like a path.
    """
    target, sep, rest = text.partition("=")
    if not sep or not target or not rest:
        raise argparse.ArgumentTypeError(f"expected ID=CKPT[:SRC_ID], got {text!r}")
    ckpt, sep, source_id = rest.rpartition(":")
    if not sep or not ckpt or not source_id or os.sep in source_id:
        return target, rest, None
    return target, ckpt, source_id


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Run the CLI; returns the exit code instead of exiting (tests call it directly)."""
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
        if args.command == "migrate" and args.out is None and not args.dry_run:
            parser.error("migrate: --out NEW_DIR is required (or --dry-run)")
    except SystemExit as e:  # argparse: 2 for usage errors, 0 for --help
        return int(e.code or 0)
    try:
        return run(args)
    except Exception as e:  # noqa: BLE001 -- the classes of EXIT_CODES are handled, the rest re-raised
        code = next((code for cls, code in EXIT_CODES if isinstance(e, cls)), None)
        if code is None:
            raise
        return fail(str(e), code)


def fail(why: str, code: int) -> int:
    """Say ``rllib-ext: error: <why>`` in one line on stderr; return ``code``."""
    print(f"{PROG}: error: {' '.join(why.splitlines())}", file=sys.stderr)
    return code


def run(args: argparse.Namespace) -> int:
    """Make the one library call of ``args.command`` and print its result; the exit code."""
    if args.command == "inspect":
        view = inspect(args.checkpoint, trusted=args.trusted)
        print(json.dumps(view.to_dict(), indent=2) if args.json else format_view(view, args.tensors, args.full))
    elif args.command == "extract":
        print(extract_policy(args.checkpoint, args.policy, args.out, format=args.format, trusted=args.trusted))
    elif args.command == "diff":
        result = diff_checkpoints(args.checkpoint_a, args.checkpoint_b, trusted=args.trusted)
        print(json.dumps(result.to_dict(), indent=2) if args.json else format_diff(result))
    elif args.command == "merge":
        report = merge_checkpoints(args.base, args.take, args.out, trusted=args.trusted)
        print(json.dumps(report.to_dict(), indent=2) if args.json else format_merge(report))
    elif args.command == "migrate":
        from .live.migration import migrate

        report = migrate(args.checkpoint, args.out, args.policies, target=args.target, dry_run=args.dry_run,
                         trusted=args.trusted)
        print(json.dumps(report.to_dict(), indent=2) if args.json else format_migrate(report))
        refused = {pid: p.reason for pid, p in report.policies.items() if not p.supported}
        if args.dry_run and refused:
            return fail(f"dry run: {len(refused)} of {len(report.policies)} policies cannot be migrated: "
                        + "; ".join(why or f"policy {pid!r}" for pid, why in refused.items()), 1)
    elif args.command == "export":
        from .act.onnx_export import export_onnx

        print(export_onnx(args.checkpoint, args.out, args.policy, agent_id=args.agent, trusted=args.trusted))
    elif args.command == "pool":
        pool = PolicyPool(args.path, create=False)
        entries = pool.entries()
        if args.json:
            print(json.dumps({"path": pool.path, "entries": [e.to_dict() for e in entries]}, indent=2))
        else:
            print(format_pool(pool.path, entries))
    return 0


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


def _envelope(bound: Any, pick: Any) -> Optional[float]:
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


def format_migrate(report: Any) -> str:
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


def _delta(value: Any) -> str:
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


if __name__ == "__main__":
    sys.exit(main())
