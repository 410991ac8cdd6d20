"""PolicyPool, Ray-free: entries, bad input, retention, Elo, SIGKILL mid-add, several writers, the CLI.

No Ray and no torch anywhere here (the tf2 cell runs this file too): policies are written
with ``write_policy_dir`` from plain arrays. ``algo.snapshot_policy`` (Ray) is in
tests/test_snapshot.py; the pool on a local S3 server is in tests/test_s3.py.
"""

from __future__ import annotations

import json
import os
import pickle
import random
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

from builders import (
    POOL_WEIGHTS as WEIGHTS, ROOT, assert_imports_no_framework, assert_weights_equal, kill_child_at, pool_add_child,
    pool_files, pool_policy_dir as policy_dir, start_together,
)

import rllib_ext
from rllib_ext import (
    CheckpointFormatError, NotAPoolError, Outcome, PolicyNotFoundError, PolicyPool, PoolEntry, Retention,
)
from rllib_ext.checkpoint import read_policy_dir, read_weights
from rllib_ext.cli import main as cli_main

pytestmark = [pytest.mark.all_cells, pytest.mark.ray_free]  # cell-independent, Ray-free: the tf2 cell runs it too

# ---------------------------------------------------------------- entries
def test_add_then_entries_get_and_read_the_snapshot(tmp_path):
    src = policy_dir(tmp_path)
    pool = PolicyPool(tmp_path / "pool", writer="trial_0")
    assert pool.entries() == [] and (tmp_path / "pool" / "pool.json").is_file()
    first = pool.add(src, iteration=5, env_steps=1000)
    second = pool.add(src, policy="main", iteration=10, env_steps=2000, rating=1250.0)
    assert [e.id for e in pool.entries()] == ["main-0000@trial_0", "main-0001@trial_0"]
    assert first == PoolEntry(
        id="main-0000@trial_0", policy="main", iteration=5, env_steps=1000, created=first.created, rating=1200.0,
        games=0, path=str(tmp_path / "pool" / "snapshots" / "main-0000@trial_0"), writer="trial_0",
        size=sum(f.stat().st_size for f in Path(src).iterdir()),
    )
    assert second.rating == 1250.0 and second.created >= first.created
    assert pool.get(second.id) == second
    # The entry's path is a single-policy directory: the reader takes it as it is.
    assert_weights_equal(read_weights(second.path), WEIGHTS, "snapshot")
    assert read_policy_dir(second.path)[0]["policy_id"] == "main"
    # A new PolicyPool on the same path (another process, later) sees the same entries.
    again = PolicyPool(str(tmp_path / "pool"))
    assert again.entries() == pool.entries() and len(again) == 2
    assert again.entries(writer="trial_0") == pool.entries() and again.entries(policy="other") == []
    assert json.loads(json.dumps(first.to_dict())) == first.to_dict()  # JSON-able


def test_pool_pickles_as_its_path_and_writer(tmp_path):
    pool = PolicyPool(tmp_path / "pool", writer="w")
    pool.add(policy_dir(tmp_path))
    back = pickle.loads(pickle.dumps(pool))
    assert (back.path, back.writer, back.writer_is_default) == (pool.path, "w", False)
    assert back.entries() == pool.entries()
    assert PolicyPool(tmp_path / "pool").writer_is_default


def test_ids_are_never_reused_and_count_per_policy(tmp_path):
    pool = PolicyPool(tmp_path / "pool", writer="w")
    a = pool.add(policy_dir(tmp_path))
    pool.remove(a.id)
    assert pool.add(policy_dir(tmp_path)).id == "main-0001@w"
    assert pool.add(policy_dir(tmp_path, "o", "opponent/x")).id == "opponent_x-0000@w"
    assert pool.with_writer("other").add(policy_dir(tmp_path)).id == "main-0000@other"
    assert not (tmp_path / "pool" / "snapshots" / a.id).exists()


def test_pool_imports_no_framework(tmp_path):
    src = policy_dir(tmp_path)
    assert_imports_no_framework(
        f"import rllib_ext\npool = rllib_ext.PolicyPool({str(tmp_path / 'pool')!r})\n"
        f"e = pool.add({src!r})\nrllib_ext.read_weights(pool.get(e.id).path)\n"
    )


# ---------------------------------------------------------------- bad input
def test_directory_with_other_files_is_not_a_pool_and_stays_untouched(tmp_path):
    (tmp_path / "runs").mkdir()
    (tmp_path / "runs" / "notes.txt").write_text("mine")
    with pytest.raises(NotAPoolError, match=re.escape(
        f"{tmp_path / 'runs'}: not a policy pool (no pool.json) and not empty: notes.txt; give an empty or new directory"
    )):
        PolicyPool(tmp_path / "runs")
    assert os.listdir(tmp_path / "runs") == ["notes.txt"]
    (tmp_path / "file").write_text("x")
    with pytest.raises(NotAPoolError, match="is a file, not a policy pool directory"):
        PolicyPool(tmp_path / "file")
    with pytest.raises(NotAPoolError, match="no such policy pool"):
        PolicyPool(tmp_path / "missing", create=False)
    assert not (tmp_path / "missing").exists()


@pytest.mark.parametrize("garble", ["pool.json", "index", "index-fields", "version"])
def test_garbled_index_is_refused_with_the_file_named(tmp_path, garble):
    pool = PolicyPool(tmp_path / "pool", writer="w")
    pool.add(policy_dir(tmp_path))
    target = tmp_path / "pool" / ("pool.json" if garble in ("pool.json", "version") else "index/w.json")
    if garble in ("pool.json", "index"):
        target.write_text(target.read_text()[:-9])  # cut short
        match = f"{target}: not valid JSON"
    elif garble == "version":
        target.write_text(json.dumps({"format": "rllib_ext.pool", "pool_version": 3}))
        match = f"{target}: pool_version 3 is not supported (this reader knows 1, 2)"
    else:
        doc = json.loads(target.read_text())
        del doc["entries"][0]["rating"]
        target.write_text(json.dumps(doc))
        match = f"{target}: not a pool index (KeyError: 'rating')"
    with pytest.raises(CheckpointFormatError, match=re.escape(match)):
        PolicyPool(tmp_path / "pool").entries()


def test_unknown_id_is_refused_with_a_near_match_and_nothing_changes(tmp_path):
    pool = PolicyPool(tmp_path / "pool", writer="w")
    for _ in range(2):
        pool.add(policy_dir(tmp_path))
    before = pool_files(tmp_path / "pool")
    want = (f"snapshot 'main-0002@w' not in the pool {tmp_path / 'pool'}; available: main-0000@w, main-0001@w "
            "(did you mean 'main-0001@w'?)")
    for call in (lambda: pool.get("main-0002@w"), lambda: pool.remove("main-0002@w"),
                 lambda: pool.record([Outcome("main-0000@w", wins=1), Outcome("main-0002@w", wins=1)]),
                 lambda: pool.prune(Retention(last=1), protect=["main-0002@w"])):
        with pytest.raises(PolicyNotFoundError, match=re.escape(want)):
            call()
    assert pool_files(tmp_path / "pool") == before


def test_bad_policy_directory_is_refused_before_the_pool_changes(tmp_path):
    pool = PolicyPool(tmp_path / "pool", writer="w")
    pool.add(policy_dir(tmp_path))
    before = pool_files(tmp_path / "pool")
    (tmp_path / "empty").mkdir()
    with pytest.raises(rllib_ext.NotACheckpointError, match="not an rllib_ext policy directory"):
        pool.add(tmp_path / "empty")
    bad = Path(policy_dir(tmp_path, "flipped"))
    data = bytearray((bad / "weights.safetensors").read_bytes())
    data[-1] ^= 0xFF  # a value bit: still parses, the sha256 catches it
    (bad / "weights.safetensors").write_bytes(bytes(data))
    with pytest.raises(CheckpointFormatError, match="do not match the sha256"):
        pool.add(bad)
    with pytest.raises(ValueError, match="iteration must be a non-negative int or None, got -1"):
        pool.add(policy_dir(tmp_path), iteration=-1)
    with pytest.raises(ValueError, match=re.escape("writer 'a/b': use 1-100 letters, digits")):
        PolicyPool(tmp_path / "pool", writer="a/b")
    assert pool_files(tmp_path / "pool") == before


# ---------------------------------------------------------------- retention and ratings
def test_prune_keeps_the_last_n_and_every_kth_and_is_idempotent(tmp_path):
    pool = PolicyPool(tmp_path / "pool", writer="w")
    for _ in range(10):
        pool.add(policy_dir(tmp_path))
    other = pool.with_writer("v").add(policy_dir(tmp_path))
    removed = pool.prune(Retention(last=2, every=3), protect=["main-0004@w"])
    assert [e.id for e in removed] == [f"main-000{n}@w" for n in (1, 2, 5, 7)]
    kept = [e.id for e in pool.entries()]
    assert kept == [f"main-000{n}@w" for n in (0, 3, 4, 6, 8, 9)] + [other.id]  # other writers' stay
    assert sorted(os.listdir(tmp_path / "pool" / "snapshots")) == sorted(kept)
    assert [e.id for e in pool.prune({"last": 2, "every": 3})] == ["main-0004@w"]  # protected for that call only
    assert pool.prune(Retention(last=2, every=3)) == []  # nothing more
    assert [e.id for e in pool.prune(Retention(last=1), everyone=True)] == [
        f"main-000{n}@w" for n in (0, 3, 6, 8)]
    with pytest.raises(ValueError, match=re.escape("Retention() keeps nothing: give last=N and/or every=K")):
        Retention()
    with pytest.raises(ValueError, match="unknown key"):
        pool.prune({"latest": 2})


def test_record_updates_elo_and_games_in_one_write(tmp_path):
    pool = PolicyPool(tmp_path / "pool", writer="w")
    a, b = pool.add(policy_dir(tmp_path)), pool.add(policy_dir(tmp_path), rating=1400.0)
    learner, updated = pool.record([Outcome(a.id, wins=3, losses=1), Outcome(b.id, draws=2)], rating=1200.0)
    # a: 3 of 4 against an equal rating (expected 2): +32 for the learner, -32 for a.
    # b: 2 draws against +200 (expected 2 x 0.2403): the learner gains 32 x (1 - 0.4806).
    e_b = 1 / (1 + 10 ** (200 / 400))
    assert updated[a.id].rating == pytest.approx(1168.0) and updated[a.id].games == 4
    assert updated[b.id].rating == pytest.approx(1400.0 - 32 * (1 - 2 * e_b)) and updated[b.id].games == 2
    assert learner == pytest.approx(1200.0 + 32 + 32 * (1 - 2 * e_b))
    assert learner - 1200.0 == pytest.approx((1200.0 - updated[a.id].rating) + (1400.0 - updated[b.id].rating))
    assert pool.entries() == [updated[a.id], updated[b.id]]
    before = pool_files(tmp_path / "pool")
    with pytest.raises(ValueError, match=re.escape(f"outcome for snapshot {a.id!r}: losses=-1")):
        pool.record([Outcome(b.id, wins=1), Outcome(a.id, losses=-1)])
    assert pool_files(tmp_path / "pool") == before


def test_record_as_match_moves_a_rating_by_at_most_k(tmp_path):
    """A league iteration plays hundreds of games: rated per game, 568 of 1000 against an
    equal rating would move 68 x K; as one match it moves K x (0.568 - 0.5)."""
    pool = PolicyPool(tmp_path / "pool", writer="w")
    a = pool.add(policy_dir(tmp_path))
    learner, updated = pool.record([Outcome(a.id, wins=568, losses=432)], rating=1200.0, k=32.0, match=True)
    assert learner == pytest.approx(1200.0 + 32 * 0.068) and updated[a.id].rating == pytest.approx(1200.0 - 32 * 0.068)
    assert updated[a.id].games == 1000
    learner, updated = pool.record([Outcome(a.id, wins=1000)], rating=1200.0, k=32.0, match=True)
    assert 0 < learner - 1200.0 < 32  # even a clean sweep moves less than K


def test_a_reader_that_keeps_what_it_read_follows_the_index_through_compactions(tmp_path, monkeypatch):
    """Adds, removes and ratings by two writers, compacting often: a long-lived reader (which
    rereads only what is new) always lists what a fresh one lists."""
    from rllib_ext.pool import journal

    monkeypatch.setattr(journal, "MIN_TAIL", 0)  # compact as soon as the records weigh as much as the base
    pool = PolicyPool(tmp_path / "pool", writer="w")
    writers = [pool, pool.with_writer("v")]
    reader = PolicyPool(tmp_path / "pool")
    src = policy_dir(tmp_path)
    rng = random.Random(35)
    bases = set()
    for step in range(40):
        entries = reader.entries()
        op = rng.choice(["add", "add", "remove", "record"]) if entries else "add"
        if op == "add":
            rng.choice(writers).add(src, iteration=step)
        elif op == "remove":
            pool.remove(rng.choice(entries).id)
        else:
            pool.record([Outcome(e.id, wins=1) for e in rng.sample(entries, min(2, len(entries)))])
        assert reader.entries() == PolicyPool(tmp_path / "pool").entries(), f"step {step}: {op}"
        bases |= {(f.name, json.loads(f.read_text())["seq"]) for f in (tmp_path / "pool" / "index").glob("*.json")}
    assert len(bases) > 5, "the test would not see a compaction"


# ---------------------------------------------------------------- the CLI
def test_cli_pool_lists_snapshots_as_a_table_and_json(tmp_path, capsys):
    pool = PolicyPool(tmp_path / "pool", writer="w")
    a = pool.add(policy_dir(tmp_path), iteration=5, env_steps=1000)
    pool.add(policy_dir(tmp_path))
    pool.record([Outcome(a.id, losses=1)])
    assert cli_main(["pool", str(tmp_path / "pool")]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[:2] == [str(tmp_path / "pool"), "  2 snapshots"]
    assert out[3].split() == ["id", "policy", "iteration", "env", "steps", "rating", "games", "size"]
    assert out[5].split() == ["main-0000@w", "main", "5", "1,000", "1216.0", "1", str(a.size), "B"]
    assert out[6].split()[:6] == ["main-0001@w", "main", "-", "-", "1200.0", "0"]
    assert cli_main(["pool", str(tmp_path / "pool"), "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert [PoolEntry(**d) for d in doc["entries"]] == pool.entries()
    assert cli_main(["pool", str(tmp_path / "nothing")]) == 1
    assert capsys.readouterr().err == f"rllib-ext: error: {tmp_path / 'nothing'}: no such policy pool\n"
    assert not (tmp_path / "nothing").exists()


def test_cli_pool_runs_without_ray(tmp_path):
    PolicyPool(tmp_path / "pool").add(policy_dir(tmp_path))
    res = assert_imports_no_framework(f"from rllib_ext.cli import main\nmain(['pool', {str(tmp_path / 'pool')!r}])\n")
    assert "main-0000@" in res.stdout


# ---------------------------------------------------------------- crash safety
KILLS = 12
SEED = 20260523

CHILD = pool_add_child()  # adds the source as writer "w" until killed


@pytest.mark.parametrize("pause_at", [None, "data", "index", "compact"])
def test_sigkill_during_add_leaves_a_readable_pool_with_the_old_or_new_entry(tmp_path, pause_at):
    """data: the snapshot is in place, the index does not name it; index: its record is half
    written (a torn last line); compact: the record is in, a new base holding it is in
    place, and the log it came from is not deleted yet (so both hold it)."""
    src = policy_dir(tmp_path)
    path = tmp_path / "pool"
    pool = PolicyPool(path, writer="w")
    rng = random.Random(SEED)
    have = 0
    stats = {"kills": 0, "adds finished by children": 0, "kills that left an unnamed snapshot": 0}
    for i in range(KILLS):
        stop_at = rng.randint(1, 3)
        finished = kill_child_at(CHILD, [str(path), src], pause_at or "", stop_at, rng.uniform(0.0, 0.3))
        entries = PolicyPool(path, writer="w").entries()  # a readable pool, whatever the moment of the kill
        assert len(entries) in (have + finished, have + finished + 1), f"kill {i}: {len(entries)} entries"
        if pause_at in ("data", "index"):  # killed before the index named the stop_at-th add: the old entries
            assert len(entries) == have + finished
        elif pause_at == "compact":  # named once, though both the new base and the old log hold it
            assert len(entries) == have + finished + 1 and len({e.id for e in entries}) == len(entries)
        for e in entries:
            assert_weights_equal(read_weights(e.path), WEIGHTS, f"kill {i}: {e.id}")
        unnamed = set(os.listdir(path / "snapshots")) - {e.id for e in entries}
        stats["kills that left an unnamed snapshot"] += bool({u for u in unnamed if not u.startswith(".")})
        stats["kills"] += 1
        stats["adds finished by children"] += finished
        # The next add (same writer) succeeds, takes the unnamed snapshot's id, and cleans up.
        nxt = pool.add(src)
        have = len(entries) + 1
        assert pool.get(nxt.id) == nxt and len(pool) == have
        assert [n for n in os.listdir(path / "index") if n.startswith(".")] == [], f"kill {i}: index debris"
        assert sorted(os.listdir(path / "snapshots")) == sorted(e.id for e in pool.entries()), f"kill {i}"
        assert os.listdir(path / ".tmp") == [], f"kill {i}: a killed add's half directory is left"
        for log in (path / "index").glob("w@*.jsonl"):
            assert log.read_bytes().endswith(b"\n"), f"kill {i}: a torn line left behind in {log.name}"
    print(f"\nadd killed ({pause_at or 'at random'}): {stats}")
    assert stats["adds finished by children"] > 0
    if pause_at in ("data", "index"):
        assert stats["kills that left an unnamed snapshot"] == KILLS


def test_prune_removes_what_a_killed_remove_left(tmp_path):
    pool = PolicyPool(tmp_path / "pool", writer="w")
    a = pool.add(policy_dir(tmp_path))
    b = pool.add(policy_dir(tmp_path))
    # As if killed between taking b out of the index (remove's drop record) and deleting its directory:
    pool._journals.index.append("w", {"drop": [b.id]})
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    debris = tmp_path / "pool" / "snapshots" / f".main-0009@w.tmp-{int(dead.stdout)}-0123abcd"
    debris.mkdir()
    assert pool.entries() == [a]
    assert pool.prune(Retention(last=5)) == []
    assert os.listdir(tmp_path / "pool" / "snapshots") == [a.id]


# ---------------------------------------------------------------- several writers
WRITER = r"""
import os, sys, time
sys.path.insert(0, sys.argv[1])
go, pool_path, src, writer, lock = sys.argv[2], sys.argv[3], sys.argv[4], sys.argv[5], sys.argv[6] == "1"
from rllib_ext import PolicyPool
from rllib_ext.pool import store as pool_store
if not lock:  # the negative control: no lock around the index's read-change-write
    import contextlib
    pool_store.LocalStore.lock = lambda self: contextlib.nullcontext()
while not os.path.exists(go):
    time.sleep(0.001)
pool = PolicyPool(pool_path, writer=writer or None)
for i in range(25):
    pool.add(src, iteration=i)
"""


def run_writers(tmp_path: Path, writers, lock: bool = True) -> Path:
    """4 processes add 25 snapshots each to one new pool, all starting at the same moment."""
    src, path = policy_dir(tmp_path), tmp_path / "pool"
    done = start_together(WRITER, [[path, src, w, "1" if lock else "0"] for w in writers], tmp_path / "go")
    for code, err in done:
        assert lock or code == 0 or err, err
        if lock:
            assert code == 0, err
    return path


@pytest.mark.parametrize("writers", ["own", "shared"])
def test_four_writers_add_25_each_at_once_and_lose_nothing(tmp_path, writers):
    """own: a Tune sweep (each trial its own writer); shared: one writer name, so only the lock keeps them apart."""
    names = ["", "", "", ""] if writers == "own" else ["same"] * 4  # "": the default writer, per process
    path = run_writers(tmp_path, names)
    entries = PolicyPool(path).entries()
    assert len(entries) == 100 and len({e.id for e in entries}) == 100
    by_writer = {}
    for e in entries:
        by_writer.setdefault(e.writer, []).append(e)
    if writers == "own":
        assert sorted(len(v) for v in by_writer.values()) == [25] * 4
    assert sorted(os.listdir(path / "snapshots")) == sorted(e.id for e in entries)
    for e in entries:
        assert_weights_equal(read_weights(e.path), WEIGHTS, e.id)
    assert [n for n in os.listdir(path / "index") if n.startswith(".")] == []


def test_without_the_lock_one_shared_writer_loses_entries(tmp_path):
    """The negative control: the lock is what keeps the shared-writer case whole."""
    path = run_writers(tmp_path, ["same"] * 4, lock=False)
    try:
        count = len(PolicyPool(path).entries())
    except CheckpointFormatError:
        count = -1  # a torn index is a loss too
    print(f"\n4 x 25 adds by one writer name without the lock: {count} entries")
    assert count < 100, "4 unlocked writers of one index lost nothing: the test would not see a missing lock"


def test_readme_pool_example_runs(tmp_path, monkeypatch):
    """The docs' pool snippet (docs/league.md, "The pool"), as written, on a policy made here."""
    text = (Path(ROOT) / "docs" / "league.md").read_text()
    section = text[text.index("## The pool"):]
    code = section[section.index("\n", section.index("```python")) + 1:]
    code = code[:code.index("```")]
    monkeypatch.chdir(tmp_path)
    policy_dir(tmp_path, "runs/main_policy")
    scope: dict = {}
    exec(compile(code, "docs/league.md", "exec"), scope)
    assert scope["entry"].id.startswith("main-0000@") and scope["updated"][scope["entry"].id].games == 4
    assert scope["removed"] == [] and len(PolicyPool("runs/league")) == 0
