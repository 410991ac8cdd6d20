"""Atomic writes survive SIGKILL: the destination is always a complete old or new version.

A child process (plain Python, no Ray) rewrites one destination in a loop, alternating
between two complete contents A and B; the parent kills it with SIGKILL after a seeded
random delay. After every kill the destination must equal A or B file by file (policy
directories and merged checkpoints) or array by array (npz), and one more write in the
parent must succeed and leave no hidden ``.<name>.tmp-``/``.old-`` sibling behind.

Without ``renameat2`` the swap is two renames (dest -> ``.old-`` backup, new -> dest), a
window too short for random kills to hit. So the child can also stop right after either
rename, print where it is, and wait for the kill: every such kill lands exactly there, and
the files left behind show it (dest missing with a backup, or dest new with a backup).

``algo.save_policy`` is ``policy_io.save_policy``, whose only write is
``write_policy_dir`` (the "policy_dir" operation here); killing a Ray driver mid-save
would cost ~10 s per kill and exercise the same function.
"""

from __future__ import annotations

import hashlib
import os
import random
import subprocess
import sys
from pathlib import Path
from typing import Dict, Optional

import numpy as np
import pytest

from builders import ROOT, kill_at_a_mark

from rllib_ext.checkpoint import atomic
from rllib_ext.checkpoint import policy_file as pf
from rllib_ext.checkpoint import read_policy_dir, read_weights

# File writes and renames: torch-old runs these, tf2-old does not.
pytestmark = pytest.mark.framework_neutral

KILLS = {"policy_dir": 20, "extract": 20, "extract_npz": 20, "merge": 20}
SEED = 20261125

# The child: write A, B, A, B, ... to `dest` until killed; print one line per finished write.
CHILD = r"""
import sys
sys.path.insert(0, sys.argv[1])
op, ckpt, dest, fallback = sys.argv[2], sys.argv[3], sys.argv[4], sys.argv[5] == "1"
pause, stop_at = sys.argv[6], int(sys.argv[7])
from rllib_ext.checkpoint import atomic
from rllib_ext.checkpoint import extract_policy, read_weights, write_policy_dir
from rllib_ext.merge import merge_checkpoints
if fallback:
    atomic._exchange = lambda a, b: False   # as on a system without renameat2
if pause:  # "between" | "after": mark that rename of the fallback swap; wait there the stop_at-th time
    import os, time
    _rename, _name, _seen = os.rename, os.path.basename(dest), [0]
    def rename(src, dst):
        _rename(src, dst)
        to_backup = os.path.basename(dst).startswith(f".{_name}.old-")
        new_in_place = os.path.basename(src).startswith(f".{_name}.tmp-") and os.path.abspath(dst) == os.path.abspath(dest)
        if (pause == "between" and to_backup) or (pause == "after" and new_in_place):
            _seen[0] += 1
            print(pause, flush=True)
            if _seen[0] == stop_at:
                time.sleep(60)  # the parent kills us here
    os.rename = rename
write = {
    "policy_dir": lambda k: write_policy_dir(dest, "p", read_weights(ckpt, ("policy_0", "policy_1")[k]), {"stack": "new"}),
    "extract": lambda k: extract_policy(ckpt, ("policy_0", "policy_1")[k], dest),
    "extract_npz": lambda k: extract_policy(ckpt, ("policy_0", "policy_1")[k], dest, format="npz"),
    "merge": lambda k: merge_checkpoints(ckpt, [("policy_1", ckpt, ("policy_0", "policy_2")[k])], dest),
}[op]
print("ready", flush=True)
n = 0
while True:
    write(n % 2)
    n += 1
    print(n, flush=True)
"""


def _write(op: str, ckpt: str, dest: Path, k: int) -> None:
    """What the child does for content k (0 = A, 1 = B), here in the parent."""
    from rllib_ext.checkpoint import extract_policy, write_policy_dir
    from rllib_ext.merge import merge_checkpoints

    pid = ("policy_0", "policy_1")[k]
    if op == "policy_dir":
        write_policy_dir(dest, "p", read_weights(ckpt, pid), {"stack": "new"})
    elif op == "extract":
        extract_policy(ckpt, pid, dest)
    elif op == "extract_npz":
        extract_policy(ckpt, pid, dest, format="npz")
    else:
        merge_checkpoints(ckpt, [("policy_1", ckpt, ("policy_0", "policy_2")[k])], dest)


def _content(op: str, dest: Path) -> Dict[str, str]:
    """Every file under ``dest`` by hash (npz: every array, its zip holds timestamps)."""
    if op == "extract_npz":
        with np.load(dest) as z:
            return {name: hashlib.sha256(z[name].tobytes() + str(z[name].shape).encode()).hexdigest() for name in z.files}
    out = {}
    for dirpath, _, files in os.walk(dest):
        for f in files:
            p = Path(dirpath) / f
            out[str(p.relative_to(dest))] = hashlib.sha256(p.read_bytes()).hexdigest()
    return out


def _debris(dest: Path) -> list:
    return sorted(e for e in os.listdir(dest.parent) if e.startswith(f".{dest.name}."))


def _kill_loop(op: str, ckpt: str, tmp_path: Path, kills: int, fallback: bool = False,
               pause_at: Optional[str] = None) -> Dict[str, int]:
    """Kill writing children ``kills`` times; after each kill check dest, then write once more.

    ``pause_at`` ("between" / "after" the fallback's two renames, needs ``fallback``): kill
    the child where it waits during its 1st, 2nd or 3rd write (seeded) instead of after a
    random delay, and check that dest holds the version before / of the interrupted write.
    """
    assert pause_at in (None, "between", "after") and (fallback or not pause_at)
    dest = tmp_path / "out" / ("p.npz" if op == "extract_npz" else "dest")
    want = []
    for k in (0, 1):
        _write(op, ckpt, dest, k)
        want.append(_content(op, dest))
    assert want[0] != want[1], "A and B must differ"
    _write(op, ckpt, dest, 0)
    rng = random.Random(SEED)
    stats = {"kills": 0, "writes finished by children": 0, "kills that left debris": 0, "on A": 0, "on B": 0,
             "kills between the renames": 0, "kills after the renames": 0}
    for i in range(kills):
        start = want.index(_content(op, dest))  # the version the child starts from
        stop_at = rng.randint(1, 3) if pause_at else 0  # pause during the child's 1st, 2nd or 3rd write
        argv = [sys.executable, "-c", CHILD, ROOT, op, ckpt, str(dest), "1" if fallback else "0", pause_at or "", str(stop_at)]
        wait = 0.0 if pause_at else rng.uniform(0.0, 0.25)  # (drawn only when used: the kills stay as seeded)
        finished = kill_at_a_mark(argv, pause_at, stop_at, f"kill {i}", wait)
        stats["kills"] += 1
        stats["writes finished by children"] += finished
        left = _debris(dest)
        stats["kills that left debris"] += bool(left)
        backup = any(e.startswith(f".{dest.name}.old-") for e in left)
        lost = not os.path.lexists(dest)
        stats["kills between the renames"] += lost and backup  # dest moved aside, the new one not yet in
        stats["kills after the renames"] += backup and not lost  # new one in, the old backup not yet removed
        if fallback:
            atomic.clean_debris(str(dest))  # what the next write does first: a lost dest comes back
        got = _content(op, dest)
        assert got in want, f"kill {i}: {dest} is neither A nor B (debris: {left})"
        if pause_at:
            where = "dest missing" if pause_at == "between" else "dest present"
            assert backup and lost == (pause_at == "between"), (
                f"kill {i} {pause_at} the renames: expected {where} and a .old- backup; "
                f"dest exists: {not lost}, debris: {left}"
            )
            before = start if finished == 0 else (finished - 1) % 2  # the child writes A, B, A, ...
            expected = before if pause_at == "between" else finished % 2
            assert got == want[expected], f"kill {i} {pause_at} the renames: dest is not version {'AB'[expected]}"
        stats["on A" if got == want[0] else "on B"] += 1
        _write(op, ckpt, dest, i % 2)  # the next write succeeds and cleans up
        assert _content(op, dest) == want[i % 2]
        assert _debris(dest) == [], f"kill {i}: debris left after the next write"
    return stats


@pytest.mark.parametrize("op", ["policy_dir", "extract", "extract_npz"])
def test_sigkill_during_write_leaves_old_or_new(ckpts, tmp_path, op):
    path, _ = ckpts("new")
    stats = _kill_loop(op, path, tmp_path, KILLS[op])
    print(f"\n{op}: {stats}")
    assert stats["writes finished by children"] > 0


@pytest.mark.parametrize("stack", ["new", "old"])
def test_sigkill_during_merge_leaves_old_or_new(ckpts, tmp_path, stack):
    path, _ = ckpts(stack)
    stats = _kill_loop("merge", path, tmp_path, KILLS["merge"])
    print(f"\nmerge ({stack}): {stats}")
    assert stats["writes finished by children"] > 0


def test_sigkill_during_write_without_rename_exchange(ckpts, tmp_path):
    """The two-rename fallback killed at random moments (rarely between the renames: see below)."""
    path, _ = ckpts("new")
    stats = _kill_loop("policy_dir", path, tmp_path, 10, fallback=True)
    print(f"\npolicy_dir (fallback): {stats}")
    assert stats["writes finished by children"] > 0


@pytest.mark.parametrize("pause_at", ["between", "after"])
def test_sigkill_at_each_rename_of_the_fallback_leaves_old_or_new(ckpts, tmp_path, pause_at):
    """Every kill lands where named, as the files show, and dest comes back as the right version.

    between: dest moved to its ``.old-`` backup, the new version not yet in: the old one returns.
    after: the new version in place, the backup not yet removed: the new one stays.
    """
    path, _ = ckpts("new")
    stats = _kill_loop("policy_dir", path, tmp_path, 6, fallback=True, pause_at=pause_at)
    print(f"\npolicy_dir (fallback, killed {pause_at} the renames): {stats}")
    assert stats[f"kills {pause_at} the renames"] == stats["kills"] == 6
    assert stats["writes finished by children"] > 0 and stats["on A"] > 0 and stats["on B"] > 0


def _dead_pid() -> int:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def test_next_write_restores_destination_lost_between_renames(tmp_path):
    dest = tmp_path / "p"
    a = {"w": np.arange(4, dtype=np.float32)}
    b = {"w": np.arange(4, dtype=np.float32) + 1}
    pf.write_policy_dir(dest, "p", a, {"stack": "new"})
    dead = _dead_pid()
    backup = tmp_path / f".p.old-{dead}-0123abcd"
    os.rename(dest, backup)  # a writer died between its two renames
    stale_tmp = tmp_path / f".p.tmp-{dead}-89abcdef"
    stale_tmp.mkdir()
    (stale_tmp / "weights.safetensors").write_bytes(b"half")
    assert sorted(atomic.clean_debris(str(dest))) == sorted([backup.name, stale_tmp.name])
    np.testing.assert_array_equal(read_policy_dir(dest)[1]["w"], a["w"])
    backup2 = tmp_path / f".p.tmp-{dead}-00000000"
    backup2.mkdir()
    pf.write_policy_dir(dest, "p", b, {"stack": "new"})
    np.testing.assert_array_equal(read_policy_dir(dest)[1]["w"], b["w"])
    assert _debris(dest) == []


def test_debris_of_a_live_writer_is_left_alone(tmp_path):
    dest = tmp_path / "p"
    mine = tmp_path / f".p.tmp-{os.getpid()}-0123abcd"
    mine.mkdir()
    other = tmp_path / f".q.tmp-{_dead_pid()}-0123abcd"  # another destination's
    other.mkdir()
    pf.write_policy_dir(dest, "p", {"w": np.zeros(2, np.float32)}, {"stack": "new"})
    assert mine.exists() and other.exists()
