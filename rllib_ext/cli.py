"""``rllib-ext``: look into, take apart and compare RLlib checkpoints without Ray.

Each subcommand parses its arguments, makes one library call, prints a table (or JSON
with ``--json``) and returns an exit code (:data:`EXIT_CODES`): 0 ok, 1 a data problem (a
checkpoint or pool that is missing, damaged or does not fit; or a ``migrate --dry-run`` that
finds a policy it cannot migrate), 2 a usage or argument error (argparse's own, or an
``InvalidArgumentError``); every non-zero exit prints one line on stderr saying why. Any
other exception is a bug and keeps its traceback. No logic of its own lives here.

    rllib-ext --version
    rllib-ext inspect CKPT [--json] [--tensors] [--full]
    rllib-ext extract CKPT --policy ID --out PATH [--format safetensors|npz|torch]
    rllib-ext diff CKPT_A CKPT_B [--json]
    rllib-ext merge --base CKPT --take ID=CKPT[:SRC_ID] [--take ...] --out PATH [--json]
    rllib-ext migrate OLD_CKPT (--out NEW_DIR | --dry-run) [--policies ID ...] [--target PPO|APPO|IMPALA] [--json]
    rllib-ext export CKPT --policy ID --format onnx --out policy.onnx [--agent AGENT_ID]
    rllib-ext pool PATH [--json] [--payoff] [--plot OUT.png]

``migrate`` imports RLlib and torch (to build the modules RLlib then writes itself);
``export`` imports torch and onnx (to trace the acting path). Neither starts a Ray runtime.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from typing import Optional, Sequence, Tuple, Type

from ._version import __version__
from .checkpoint.diff import diff_checkpoints
from .checkpoint.export import EXTRACT_FORMATS, extract_policy
from .checkpoint.inspection import inspect
from .errors import CheckpointError, InvalidArgumentError, MissingDependencyError
from .merge.checkpoints import merge_checkpoints
from .formatting import format_diff, format_merge, format_migrate, format_pool, format_view
from .pool.policy_pool import PolicyPool

PROG = "rllib-ext"

# Error class -> exit code, most specific first (the first match decides); argparse's usage
# errors exit 2 before any call. Anything else (a bare ValueError too) is a bug: it keeps its traceback.
EXIT_CODES: Tuple[Tuple[Type[BaseException], int], ...] = (
    (InvalidArgumentError, 2),  # arguments that parse but do not fit the call (e.g. one id taken twice)
    (MissingDependencyError, 1),  # an optional package (msgpack, torch, onnx; a supported Ray) is missing
    (CheckpointError, 1),  # data: the checkpoint (or pool) is missing, damaged, or does not fit
    (OSError, 1),  # the file system: a path that cannot be read or written
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

    p = sub.add_parser("pool", help="list a policy pool's snapshots (ratings, games, sizes), or show its payoff table")
    p.add_argument("path", metavar="PATH", help="the pool directory or object-store URI")
    p.add_argument("--json", action="store_true", help="print every entry as JSON")
    p.add_argument("--payoff", action="store_true",
                   help="print the payoff table instead: games, value (mean return) and score per pair")
    p.add_argument("--plot", metavar="OUT.png",
                   help="draw the payoff table and the ratings over iterations into an image (needs matplotlib)")
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
        from .live.restore.migration import migrate

        migrated = migrate(args.checkpoint, args.out, args.policies, target=args.target, dry_run=args.dry_run,
                           trusted=args.trusted)
        print(json.dumps(migrated.to_dict(), indent=2) if args.json else format_migrate(migrated))
        refused = {pid: p.reason for pid, p in migrated.policies.items() if not p.supported}
        if args.dry_run and refused:
            return fail(f"dry run: {len(refused)} of {len(migrated.policies)} policies cannot be migrated: "
                        + "; ".join(why or f"policy {pid!r}" for pid, why in refused.items()), 1)
    elif args.command == "export":
        from .act.onnx_export import export_onnx

        print(export_onnx(args.checkpoint, args.out, args.policy, agent_id=args.agent, trusted=args.trusted))
    elif args.command == "pool":
        pool = PolicyPool(args.path, create=False)
        if args.plot:
            from .pool.plot import plot_pool

            print(plot_pool(pool, args.plot))
            return 0
        if args.payoff:
            payoff = pool.payoff()
            print(json.dumps({"path": pool.path, **payoff.to_dict()}, indent=2) if args.json
                  else f"{pool.path}\n{payoff.describe()}")
            return 0
        entries = pool.entries()
        if args.json:
            print(json.dumps({"path": pool.path, "entries": [e.to_dict() for e in entries]}, indent=2))
        else:
            print(format_pool(pool.path, entries))
    return 0


if __name__ == "__main__":
    sys.exit(main())
