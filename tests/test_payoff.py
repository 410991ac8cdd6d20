"""The pool's payoff table and meta-solvers, Ray-free: counts, value/score, equilibria, bad input,
SIGKILL mid-write, several writers, object storage.

Equilibria are checked here by a best-response computation of this file's own
(:func:`deviation_gain`), never by calling a solver again.
"""

from __future__ import annotations

import json
import random
import re
import shutil
import sys
from pathlib import Path
from unittest import mock

import numpy as np
import pytest

from builders import (
    JOURNAL_PAUSES, assert_imports_no_framework, kill_child_at, pool_files, pool_policy_dir, start_together,
)

from rllib_ext import (
    CheckpointFormatError, MissingDependencyError, Payoff, PolicyNotFoundError, PolicyPool, sample_mixture,
    zero_sum_nash,
)

pytestmark = pytest.mark.all_cells  # cell-independent, Ray-free: the tf2 cell runs it too

OLD_POOL = Path(__file__).parent / "fixtures" / "pool-0.3.0"
RPS = np.array([[0, -1, 1], [1, 0, -1], [-1, 1, 0]], dtype=float)  # rock, paper, scissors


def pool_of(tmp_path, n: int, writer: str = "w", policy: str = "main"):
    """A new pool with ``n`` snapshots of ``policy``; returns (pool, their ids, oldest first)."""
    pool = PolicyPool(tmp_path / "pool", writer=writer)
    src = pool_policy_dir(tmp_path, policy_id=policy)
    return pool, [pool.add(src).id for _ in range(n)]


def record_matrix(pool, ids, matrix, games: int = 1) -> None:
    """Record ``games`` games per pair i < j with row i's mean return ``matrix[i, j]`` and j's ``matrix[j, i]``."""
    for i in range(len(ids)):
        for j in range(i + 1, len(ids)):
            won = int(matrix[i, j] > matrix[j, i])
            lost = int(matrix[i, j] < matrix[j, i])
            pool.record_games(ids[i], ids[j], wins=won * games, losses=lost * games, draws=(1 - won - lost) * games,
                              return_a=matrix[i, j] * games, return_b=matrix[j, i] * games)


def deviation_gain(matrix: np.ndarray, x: np.ndarray) -> float:
    """What the better of the two players gains by leaving ``(x, x)`` for its best pure strategy.

    The table as a symmetric bimatrix game: the row player's payoffs are ``A = matrix``, the
    column player's ``B = matrix.T`` (``B[i, j]``: what column ``j`` gets against row ``i``).
    """
    a, b = matrix, matrix.T
    row_gain = np.max(a @ x) - x @ a @ x
    col_gain = np.max(x @ b) - x @ b @ x
    return float(max(row_gain, col_gain))


# ---------------------------------------------------------------- counts, value, score
def test_recorded_games_are_what_was_recorded_from_either_side(tmp_path):
    pool, (a, b, c) = pool_of(tmp_path, 3)
    pool.record_games(a, b, wins=3, draws=1, losses=2, return_a=1.5, return_b=-1.5)
    pool.record_games(b, a, wins=1, losses=4, return_a=-3.0, return_b=3.0)  # from b's side: flips
    pool.with_writer("other").record_games(a, c, draws=2, return_a=0.25, return_b=-0.25)
    t = pool.payoff()
    assert isinstance(t, Payoff) and t.ids == [a, b, c]
    assert t.wins.tolist() == [[0, 7, 0], [3, 0, 0], [0, 0, 0]]
    assert t.losses.tolist() == [[0, 3, 0], [7, 0, 0], [0, 0, 0]]
    assert t.draws.tolist() == [[0, 1, 2], [1, 0, 0], [2, 0, 0]]
    assert t.games.tolist() == [[0, 11, 2], [11, 0, 0], [2, 0, 0]]
    assert t.returns[0, 1] == 4.5 and t.returns[1, 0] == -4.5 and t.returns[0, 2] == 0.25
    # value: mean return per game; score: win share with draws half; NaN where never played.
    np.testing.assert_array_equal(t.value, [[np.nan, 4.5 / 11, 0.125], [-4.5 / 11, np.nan, np.nan],
                                            [-0.125, np.nan, np.nan]])
    np.testing.assert_array_equal(t.score, [[np.nan, 7.5 / 11, 0.5], [3.5 / 11, np.nan, np.nan],
                                            [0.5, np.nan, np.nan]])
    # A subset, in the order asked; one file per writer, merged on read.
    sub = pool.payoff([c, a])
    assert sub.ids == [c, a] and sub.games.tolist() == [[0, 2], [2, 0]] and sub.value[0, 1] == -0.125
    # One journal per writer: its base (written with its first record), then the records since in a log
    # named after the base's last record.
    assert sorted(p.name for p in (tmp_path / "pool" / "payoff").iterdir()) == [
        "other.json", "w.json", "w@000000000001.jsonl"]
    assert t.least_played() == [(b, c, 0), (a, c, 2), (a, b, 11)]
    assert json.loads(json.dumps(t.to_dict()))["value"][1][2] is None


def test_a_pool_written_before_the_table_reads_as_an_empty_table(tmp_path):
    """tests/fixtures/pool-0.3.0: written by rllib_ext 0.3.0 before the table (main at ba040e5):
    two snapshots of main by writer trial_0, the first rated by 4 games."""
    shutil.copytree(OLD_POOL, tmp_path / "pool")
    pool = PolicyPool(tmp_path / "pool", writer="w")
    ids = ["main-0000@trial_0", "main-0001@trial_0"]
    assert [e.id for e in pool.entries()] == ids and pool.get(ids[0]).games == 4
    t = pool.payoff()
    assert t.ids == ids and t.games.tolist() == [[0, 0], [0, 0]] and np.isnan(t.value).all()
    # Nothing played: the largest fully played set is the newest snapshot alone.
    assert pool.meta_strategy(solver="nash") == {ids[0]: 0.0, ids[1]: 1.0}
    assert pool.meta_strategy(solver="uniform") == {ids[0]: 0.5, ids[1]: 0.5}
    pool.record_games(ids[0], ids[1], wins=1, return_a=1.0, return_b=-1.0)  # and it takes games from now on
    assert pool.payoff().games.tolist() == [[0, 1], [1, 0]]
    assert len(PolicyPool(tmp_path / "empty").payoff()) == 0


POOL_040 = Path(__file__).parent / "fixtures" / "pool-0.4.0"


def test_a_0_4_0_pool_reads_the_same_table_and_takes_records_after(tmp_path):
    """tests/fixtures/pool-0.4.0 (tests/fixtures/make_pool_0_4_0.py, rllib_ext at e859545): whole files
    per writer, pool_version 1 and payoff_version 1. Read as they are; the first write marks the pool 2."""
    from rllib_ext.pool.payoff import seat_row

    shutil.copytree(POOL_040, tmp_path / "pool")
    pool = PolicyPool(tmp_path / "pool", writer="trial_0")
    ids = ["main-0000@trial_0", "main-0001@trial_0", "main-0000@trial_1"]
    assert [e.id for e in pool.entries()] == ids
    assert [(e.rating, e.games) for e in pool.entries()] == [(1168.0, 4), (1200.0, 0), (1200.0, 0)]
    t = pool.payoff()
    assert t.games.tolist() == [[0, 8, 5], [8, 0, 0], [5, 0, 0]]  # as 0.4.0 printed it (the script's output)
    assert (t.wins[0, 1], t.draws[0, 1], t.losses[0, 1]) == (3, 3, 2) and t.returns[0, 1] == 2.0
    assert (t.wins[0, 2], t.losses[0, 2], t.returns[0, 2], t.returns[2, 0]) == (4, 1, 3.25, -3.25)
    live = pool.payoff([pool.live_row("main"), ids[1]])
    assert live.wins[0, 1] == 5 and live.returns[0, 1] == 5.0
    seats = pool.payoff([seat_row(ids[1], "0"), seat_row(ids[2], "1")])
    assert (seats.wins[0, 1], seats.losses[0, 1]) == (2, 1)
    assert json.loads((tmp_path / "pool" / "pool.json").read_text())["pool_version"] == 1  # reading writes nothing
    # The first write: a record after the old file (which stays the base), and the pool is marked 2.
    pool.record_games(ids[0], ids[1], wins=1, return_a=1.0, return_b=-1.0)
    nxt = pool.with_writer("trial_1").add(pool_policy_dir(tmp_path))
    assert json.loads((tmp_path / "pool" / "pool.json").read_text())["pool_version"] == 2
    assert json.loads((tmp_path / "pool" / "payoff" / "trial_0.json").read_text())["payoff_version"] == 1
    again = PolicyPool(tmp_path / "pool")
    assert again.payoff(ids).games.tolist() == [[0, 9, 5], [9, 0, 0], [5, 0, 0]]
    assert [e.id for e in again.entries()] == ids + [nxt.id] and nxt.id == "main-0001@trial_1"
    # A new base (here by a restore of the same games) is written in today's form; the table stays.
    pool.restore_writer_games(pool.writer_games())
    assert json.loads((tmp_path / "pool" / "payoff" / "trial_0.json").read_text())["pool_version"] == 2
    assert PolicyPool(tmp_path / "pool").payoff(ids).games.tolist() == [[0, 9, 5], [9, 0, 0], [5, 0, 0]]


def test_record_games_batch_records_a_match_in_one_write(tmp_path):
    from rllib_ext import InvalidArgumentError
    from rllib_ext.pool.payoff import seat_row

    pool, (a, b) = pool_of(tmp_path, 2)
    pool.record_games(a, b, wins=1, return_a=1.0, return_b=-1.0)  # the writer's first record: its base
    log = tmp_path / "pool" / "payoff" / "w@000000000001.jsonl"
    pool.record_games_batch([(a, b, {"wins": 2, "losses": 1, "return_a": 1.0, "return_b": -1.0}),
                             (seat_row(a, "0"), seat_row(b, "1"), {"wins": 2, "return_a": 2.0, "return_b": -2.0}),
                             (seat_row(b, "0"), seat_row(a, "1"), {"losses": 1, "return_a": -1.0, "return_b": 1.0}),
                             (b, a, {"draws": 1, "return_a": 0.0, "return_b": 0.0})])  # a pair twice: adds up
    assert len(log.read_bytes().splitlines()) == 1  # one record, one write
    t = pool.payoff()
    assert (t.wins[0, 1], t.draws[0, 1], t.losses[0, 1], t.returns[0, 1]) == (3, 1, 1, 2.0)
    seats = pool.payoff([seat_row(a, "0"), seat_row(b, "0"), seat_row(a, "1"), seat_row(b, "1")])
    assert seats.wins[0, 3] == 2 and seats.losses[1, 2] == 1
    before = pool_files(tmp_path / "pool")
    cases = [
        ([(a, b, {"wins": 1, "return_a": 1.0, "return_b": -1.0}), (a, b, {"wins": -1, "return_a": 0, "return_b": 0})],
         InvalidArgumentError, f"games {a!r} vs {b!r}: wins=-1, expected a non-negative int"),
        ([(a, b, {"wins": 1, "return_a": 1.0})], InvalidArgumentError,
         f"games[0] ({a!r} vs {b!r}) has keys ['return_a', 'wins']; expected return_a and return_b"),
        ([(a, b)], InvalidArgumentError, f"games[0] is ({a!r}, {b!r}); expected (a, b, {{"),
        ([(a, b, {"wins": 1, "return_a": 1.0, "return_b": -1.0}), (a, "main-0009@w", {"wins": 1, "return_a": 1.0,
                                                                                    "return_b": -1.0})],
         PolicyNotFoundError, "snapshot 'main-0009@w' not in the pool"),
    ]
    for games, error, message in cases:
        with pytest.raises(error, match=re.escape(message)):
            pool.record_games_batch(games)
    pool.record_games_batch([])  # nothing to record: nothing written
    assert pool_files(tmp_path / "pool") == before


def test_a_torn_last_line_is_ignored_and_the_next_record_cuts_it(tmp_path):
    """What a writer killed in the middle of its append leaves: part of a line, no newline."""
    pool, (a, b) = pool_of(tmp_path, 2)
    for _ in range(2):
        pool.record_games(a, b, wins=1, return_a=1.0, return_b=-1.0)
    cached = PolicyPool(tmp_path / "pool")  # a reader that has read the log up to here
    assert cached.payoff().games[0, 1] == 2
    log = tmp_path / "pool" / "payoff" / "w@000000000001.jsonl"  # the records after the base (record 1)
    whole = log.read_bytes()
    torn = b'{"seq":3,"games":[["' + a.encode() + b'","' + b.encode() + b'",1,0,0,1.0,-1.0],["xxxxxxxxxxxxxxxx'
    log.write_bytes(whole + torn)  # longer than the next line: the cut and the new line leave the file shorter
    for reader in (cached, PolicyPool(tmp_path / "pool")):
        assert reader.payoff().games[0, 1] == 2  # the half record is not read
    pool.record_games(a, b, losses=1, return_a=-1.0, return_b=1.0)
    assert log.read_bytes().startswith(whole) and log.read_bytes().endswith(b"\n")
    assert [json.loads(line)["seq"] for line in log.read_bytes().splitlines()] == [2, 3]
    for reader in (cached, PolicyPool(tmp_path / "pool")):
        t = reader.payoff()
        assert (t.wins[0, 1], t.losses[0, 1], t.returns[0, 1]) == (2, 1, 1.0)
    # A whole line that is no record is not a kill's: the table is garbled, and the byte is named.
    log.write_bytes(log.read_bytes() + b"not json\n")
    at = len(log.read_bytes()) - len(b"not json\n")
    for reader in (cached, PolicyPool(tmp_path / "pool")):
        with pytest.raises(CheckpointFormatError, match=re.escape(f"{log}: the line at byte {at} is not a record")):
            reader.payoff()


@pytest.mark.parametrize("store", ["local", "object store"])
def test_a_reader_that_keeps_what_it_read_follows_compactions(tmp_path, monkeypatch, store):
    """A long-lived reader (a league's pool object) rereads only what is new; through many
    compactions it must still equal a fresh reader and the games recorded. "object store"
    runs the code object stores run, on local disk: one file per record, no append, and
    listings that tell a base's size, mtime and inode not at all (so only the records'
    numbers can tell a compaction)."""
    from rllib_ext.pool import journal, store as pool_store

    monkeypatch.setattr(journal, "MIN_TAIL", 0)  # compact as soon as the records weigh as much as the base
    monkeypatch.setattr(journal, "MAX_OBJECTS", 3)
    if store == "object store":
        files = pool_store.LocalStore.files
        monkeypatch.setattr(pool_store.LocalStore, "can_append", False)
        monkeypatch.setattr(pool_store.LocalStore, "files", lambda self, rel, names=None: {
            k: pool_store.FileInfo(0, 0, None) for k in files(self, rel, names)})
    pool, ids = pool_of(tmp_path, 4)
    reader = PolicyPool(tmp_path / "pool")
    rng = random.Random(35)
    want = np.zeros((4, 4), dtype=int)
    bases = set()
    for step in range(60):
        i, j = rng.sample(range(4), 2)
        won = rng.randint(0, 2)
        if step % 7 == 6:
            pool.record_games_batch([(ids[i], ids[j], {"wins": won, "losses": 1, "return_a": 0.0, "return_b": 0.0}),
                                     (ids[j], ids[i], {"wins": 1, "return_a": 0.0, "return_b": 0.0})])
            want[i, j] += won + 1
            want[j, i] += won + 1
            want[j, i] += 1
            want[i, j] += 1
        else:
            pool.record_games(ids[i], ids[j], wins=won, losses=1, return_a=float(won), return_b=-float(won))
            want[i, j] += won + 1
            want[j, i] += won + 1
        if step % 3 == 0:
            assert reader.payoff().games.tolist() == want.tolist(), f"step {step}"
        bases.add(json.loads((tmp_path / "pool" / "payoff" / "w.json").read_text())["seq"])
    assert len(bases) > 5, "the test would not see a compaction"
    assert reader.payoff().games.tolist() == PolicyPool(tmp_path / "pool").payoff().games.tolist() == want.tolist()
    names = sorted(p.name for p in (tmp_path / "pool" / "payoff").rglob("*") if p.is_file())
    if store == "object store":  # the newest record's object stays beside the base; the log is never used
        assert not any("@" in n for n in names) and 1 <= len([n for n in names if n.endswith(".jsonl")]) <= 4


def test_restore_writer_games_rewinds_this_writers_games_only(tmp_path):
    """A league's resume: the checkpoint holds writer_games(); games recorded after it leave the table."""
    pool, (a, b) = pool_of(tmp_path, 2)
    pool.record_games(a, b, wins=2, return_a=2.0, return_b=-2.0)
    state = pool.writer_games()
    assert json.loads(json.dumps(state)) == state
    pool.record_games(a, b, losses=5, return_a=-5.0, return_b=5.0)  # the lost run's games
    pool.with_writer("v").record_games(a, b, draws=1, return_a=0.0, return_b=0.0)  # another trial's
    pool.restore_writer_games(state)
    t = pool.payoff()
    assert (t.wins[0, 1], t.draws[0, 1], t.losses[0, 1]) == (2, 1, 0)
    with pytest.raises(CheckpointFormatError, match=re.escape(
            "the games of writer 'v' to restore: holds writer 'w''s games, not 'v''s")):
        pool.with_writer("v").restore_writer_games(state)
    assert PolicyPool(tmp_path / "fresh", writer="w").writer_games() == {"payoff_version": 1, "writer": "w", "pairs": []}


def test_payoff_and_meta_strategy_import_no_framework(tmp_path):
    pool, (a, b) = pool_of(tmp_path, 2)
    code = (f"import rllib_ext\npool = rllib_ext.PolicyPool({str(tmp_path / 'pool')!r})\n"
            f"pool.record_games({a!r}, {b!r}, wins=1, return_a=1.0, return_b=-1.0)\n"
            "assert pool.payoff().games.sum() == 2\nprint(pool.meta_strategy('main', 'nash'))\n")
    assert b in assert_imports_no_framework(code).stdout


# ---------------------------------------------------------------- meta-strategies
def test_rock_paper_scissors_gives_one_third_each(tmp_path):
    pool, ids = pool_of(tmp_path, 3)
    record_matrix(pool, ids, RPS, games=10)
    for solver in ("nash", "replicator", "uniform"):
        mix = pool.meta_strategy(of="main", solver=solver)
        assert list(mix) == ids
        assert list(mix.values()) == pytest.approx([1 / 3] * 3, abs=1e-6), solver


@pytest.mark.parametrize("seed", range(6))
def test_nash_is_an_equilibrium_of_the_table(tmp_path, seed):
    """A random zero-sum table (and a snapshot every other one beats): no deviation gains beyond 1e-6."""
    rng = np.random.default_rng(seed)
    n = 6
    r = rng.normal(size=(n, n)).round(3)
    matrix = r - r.T
    matrix[-1, :-1], matrix[:-1, -1] = -2.0, 2.0  # a dominated snapshot: the solver must leave it out
    pool, ids = pool_of(tmp_path, n)
    record_matrix(pool, ids, matrix, games=3)
    np.testing.assert_allclose(np.nan_to_num(pool.payoff().value), matrix, atol=1e-12)
    mix = pool.meta_strategy("main", "nash")
    x = np.array([mix[i] for i in ids])
    assert x.min() >= 0 and x.sum() == pytest.approx(1.0, abs=1e-12)
    assert deviation_gain(matrix, x) <= 1e-6, (seed, x)
    assert x[-1] <= 1e-9


def test_replicator_solves_a_table_that_is_not_zero_sum(tmp_path):
    """Chicken, diagonal at 0: hawk gets 3 against dove, dove 1 against hawk. The symmetric
    equilibrium plays hawk with 3/4; "nash" refuses the table and names the solver that fits."""
    matrix = np.array([[0.0, 3.0], [1.0, 0.0]])
    pool, ids = pool_of(tmp_path, 2)
    pool.record_games(ids[0], ids[1], wins=4, return_a=12.0, return_b=4.0)
    mix = pool.meta_strategy(solver="replicator")
    x = np.array([mix[i] for i in ids])
    assert x == pytest.approx([0.75, 0.25], abs=1e-3)
    assert deviation_gain(matrix, x) <= 1e-3
    with pytest.raises(ValueError, match=re.escape(
        f"solver 'nash' solves two-player zero-sum tables, but value[{ids[0]!r}, {ids[1]!r}] + value[{ids[1]!r}, "
        f"{ids[0]!r}] = 3 + 1 = 4, not 0; use solver='replicator' (projected replicator dynamics), "
        "which does not assume zero-sum"
    )):
        pool.meta_strategy(solver="nash")


def test_unplayed_pairs_leave_the_snapshot_with_most_of_them_out(tmp_path):
    pool, ids = pool_of(tmp_path, 4)
    record_matrix(pool, ids[:3], RPS)
    pool.record_games(ids[3], ids[2], wins=1, return_a=1.0, return_b=-1.0)  # ids[3] never met ids[0], ids[1]
    assert pool.payoff().fully_played() == ids[:3]
    mix = pool.meta_strategy(solver="nash")
    assert list(mix) == ids and mix[ids[3]] == 0.0
    assert [mix[i] for i in ids[:3]] == pytest.approx([1 / 3] * 3, abs=1e-6)
    # Only snapshots of `of` take part.
    other = pool.add(pool_policy_dir(tmp_path, "o", "opponent"))
    pool.record_games(other.id, ids[0], wins=5, return_a=5.0, return_b=-5.0)
    assert list(pool.meta_strategy("opponent")) == [other.id]
    assert list(pool.meta_strategy("main")) == ids
    both = pool.meta_strategy(["main", "opponent"], "replicator")  # one population of both policies' snapshots
    assert list(both) == ids + [other.id] and both[other.id] == 0.0  # it met one of them only: left out


def test_sample_mixture_is_seeded_and_follows_the_probabilities():
    mix = {"a": 0.5, "b": 0.0, "c": 0.5}
    first = sample_mixture(mix, np.random.default_rng(7), 200)
    assert first == sample_mixture(mix, np.random.default_rng(7), 200)
    assert "b" not in first and 70 < first.count("a") < 130
    rng = np.random.default_rng(3)
    state = rng.bit_generator.state
    one = sample_mixture(mix, rng)
    rng.bit_generator.state = state  # a resumed league restores its Generator's state: the same next draw
    assert sample_mixture(mix, rng) == one and len(one) == 1
    for bad in ({}, {"a": -0.1, "b": 1.1}, {"a": 0.0}, {"a": float("nan")}):
        with pytest.raises(ValueError, match="not a mixture"):
            sample_mixture(bad, np.random.default_rng(0))


# ---------------------------------------------------------------- bad input
def test_unknown_solver_lists_the_known_ones(tmp_path):
    pool, _ = pool_of(tmp_path, 2)
    with pytest.raises(ValueError, match=re.escape(
            "unknown solver 'nsh'; known: nash, replicator, uniform (did you mean 'nash'?)")):
        pool.meta_strategy(solver="nsh")
    with pytest.raises(PolicyNotFoundError, match=re.escape(
            f"policy 'mian' not in the snapshots of the pool {tmp_path / 'pool'}; available: main (did you mean 'main'?)")):
        pool.meta_strategy(of="mian")


def test_nash_without_scipy_names_it(tmp_path):
    pool, ids = pool_of(tmp_path, 3)
    record_matrix(pool, ids, RPS)
    with mock.patch.dict(sys.modules, {"scipy": None, "scipy.optimize": None}):
        with pytest.raises(MissingDependencyError, match=re.escape(
                "solver 'nash' needs scipy (pip install 'rllib_ext[league]')")):
            pool.meta_strategy()
        assert pool.meta_strategy(solver="replicator")[ids[0]] == pytest.approx(1 / 3)


def test_bad_games_are_refused_and_nothing_changes(tmp_path):
    pool, (a, b) = pool_of(tmp_path, 2)
    pool.record_games(a, b, wins=1, return_a=1.0, return_b=-1.0)
    before = pool_files(tmp_path / "pool")
    cases = [
        (lambda: pool.record_games(a, "main-0007@w", wins=1, return_a=1, return_b=-1), PolicyNotFoundError,
         f"snapshot 'main-0007@w' not in the pool {tmp_path / 'pool'}; available: {a}, {b}"),
        (lambda: pool.record_games(a, a, wins=1, return_a=1, return_b=-1), ValueError,
         f"games of {a!r} against itself are not recorded"),
        (lambda: pool.record_games(a, b, wins=-1, return_a=1, return_b=-1), ValueError,
         f"games {a!r} vs {b!r}: wins=-1, expected a non-negative int"),
        (lambda: pool.record_games(a, b, draws=1.5, return_a=1, return_b=-1), ValueError, "draws=1.5"),
        (lambda: pool.record_games(a, b, wins=1, return_a=float("inf"), return_b=-1), ValueError,
         "return_a=inf, expected a finite number"),
        (lambda: pool.record_games(a, b, return_a=1.0, return_b=-1.0), ValueError, "returns 1.0, -1.0 but no game"),
        (lambda: pool.payoff([a, "nope"]), PolicyNotFoundError, "snapshot 'nope' not in the pool"),
    ]
    for call, error, message in cases:
        with pytest.raises(error, match=re.escape(message)):
            call()
    pool.record_games(a, b, return_a=0.0, return_b=0.0)  # no game: nothing to write
    pool.with_writer("v").record_games(a, b, return_a=0, return_b=0)
    assert pool_files(tmp_path / "pool") == before


@pytest.mark.parametrize("garble", ["cut", "version", "field", "count", "writer"])
def test_garbled_table_file_is_refused_with_the_file_named_and_the_pool_unchanged(tmp_path, garble):
    pool, (a, b) = pool_of(tmp_path, 2)
    pool.record_games(a, b, wins=2, return_a=2.0, return_b=-2.0)
    target = tmp_path / "pool" / "payoff" / "w.json"
    doc = json.loads(target.read_text())
    if garble == "cut":
        target.write_text(target.read_text()[:-9])
        match = f"{target}: not valid JSON"
    elif garble == "version":
        doc["payoff_version"] = 9
        match = f"{target}: payoff_version 9 is not supported (this reader knows 1)"
    elif garble == "field":
        doc["pairs"][0] = doc["pairs"][0][:-1]  # [a, b, wins, draws, losses, return_a] without return_b
        match = f"{target}: not a payoff table (ValueError: a row is [{a!r}, {b!r}, 2, 0, 0, 2.0]; expected [a, b, wins"
    elif garble == "count":
        doc["pairs"][0][2] = -2  # wins
        match = f"{target}: not a payoff table (ValueError: games {a!r} vs {b!r}: wins=-2"
    else:
        doc["writer"] = "v"
        match = f"{target}: holds writer 'v''s games, not 'w''s"
    if garble != "cut":
        target.write_text(json.dumps(doc))
    before = pool_files(tmp_path / "pool")
    for call in (pool.payoff, lambda: pool.meta_strategy(solver="uniform") and pool.meta_strategy(),
                 lambda: pool.record_games(a, b, wins=1, return_a=1.0, return_b=-1.0)):
        with pytest.raises(CheckpointFormatError, match=re.escape(match)):
            call()
    assert pool_files(tmp_path / "pool") == before
    # Another writer's file is its own: it still records (and the table stays unreadable until repaired).
    pool.with_writer("v").record_games(a, b, wins=1, return_a=1.0, return_b=-1.0)
    assert pool_files(tmp_path / "pool")[str(target.relative_to(tmp_path / "pool"))] == before[
        str(target.relative_to(tmp_path / "pool"))]


# ---------------------------------------------------------------- crash safety
KILLS = 10
SEED = 20261204

# The child (after builders.MARK_PRELUDE): record one game a vs b as writer "w" until killed.
RECORDER = JOURNAL_PAUSES + r"""
pool_path, a, b = args
from rllib_ext import PolicyPool
if pause:
    pause_in_journal("payoff", pause)
pool = PolicyPool(pool_path, writer="w")
print("ready", flush=True)
n = 0
while True:
    pool.record_games(a, b, wins=1, return_a=1.0, return_b=-1.0)
    n += 1
    print(n, flush=True)
"""


@pytest.mark.parametrize("pause_at", [None, "torn", "compact"])
def test_sigkill_during_a_table_write_leaves_a_readable_table_with_the_old_or_new_games(tmp_path, pause_at):
    """torn: the record's line is half written (a torn last line); compact: the record is in,
    a new base holding it is in place, and the log it came from is not deleted yet."""
    pool, (a, b) = pool_of(tmp_path, 2)
    rng = random.Random(SEED)
    have = 0
    finished_total = 0
    logs = lambda: sorted((tmp_path / "pool" / "payoff").glob("w@*.jsonl"))  # noqa: E731
    for i in range(KILLS):
        stop_at = rng.randint(1, 3)
        finished = kill_child_at(RECORDER, [str(tmp_path / "pool"), a, b], pause_at or "", stop_at,
                                 rng.uniform(0.0, 0.3))
        t = PolicyPool(tmp_path / "pool").payoff()  # readable, whatever the moment of the kill
        games = int(t.games[0, 1])
        assert games in (have + finished, have + finished + 1), f"kill {i}: {games} games"
        if pause_at == "torn":  # the half line is not read: exactly the old games
            assert games == have + finished and not logs()[-1].read_bytes().endswith(b"\n")
        elif pause_at == "compact":  # counted once, though the new base and the old log both hold it
            assert games == have + finished + 1 and logs()
        assert t.wins[0, 1] == games and t.returns[0, 1] == games and t.returns[1, 0] == -games
        pool.record_games(a, b, wins=1, return_a=1.0, return_b=-1.0)  # the next write succeeds, cleans up
        have = games + 1
        assert int(PolicyPool(tmp_path / "pool").payoff().games[0, 1]) == have
        assert [n for n in (tmp_path / "pool" / "payoff").iterdir() if n.name.startswith(".")] == [], f"kill {i}"
        assert all(log.read_bytes().endswith(b"\n") for log in logs()), f"kill {i}: the torn line is still there"
        finished_total += finished
    assert finished_total > 0


# ---------------------------------------------------------------- several writers
RECORDERS = r"""
import os, sys, time
sys.path.insert(0, sys.argv[1])
go, pool_path, a, b, writer, lock = sys.argv[2], sys.argv[3], sys.argv[4], sys.argv[5], sys.argv[6], sys.argv[7] == "1"
from rllib_ext import PolicyPool
from rllib_ext.pool import store as pool_store
if not lock:  # the negative control: no lock around the table file's read-add-write
    import contextlib
    pool_store.LocalStore.lock = lambda self: contextlib.nullcontext()
while not os.path.exists(go):
    time.sleep(0.001)
pool = PolicyPool(pool_path, writer=writer or None)
for i in range(25):
    pool.record_games(a, b, wins=1, draws=1, return_a=0.5, return_b=-0.5)
"""


def run_recorders(tmp_path, writers, lock: bool = True) -> int:
    """4 processes record 25 batches of 2 games each between the same two snapshots at once; the games counted."""
    pool, (a, b) = pool_of(tmp_path, 2)
    done = start_together(RECORDERS, [[tmp_path / "pool", a, b, w, "1" if lock else "0"] for w in writers],
                          tmp_path / "go")
    for code, err in done:
        assert code == 0 or not lock, err
    try:
        t = pool.payoff()
    except CheckpointFormatError:
        return -1  # a torn file is a loss too
    assert t.wins[0, 1] == t.draws[0, 1] == t.games[0, 1] // 2 and t.returns[0, 1] == t.games[0, 1] / 4
    return int(t.games[0, 1])


@pytest.mark.parametrize("writers", ["own", "shared"])
def test_four_writers_record_at_once_and_lose_no_game(tmp_path, writers):
    """own: a Tune sweep (each trial its own file); shared: one writer name, so only the lock keeps them apart."""
    names = ["", "", "", ""] if writers == "own" else ["same"] * 4  # "": the default writer, per process
    assert run_recorders(tmp_path, names) == 200
    journals = {p.name.split(".json")[0].split("@")[0] for p in (tmp_path / "pool" / "payoff").iterdir()}  # base, log
    assert len(journals) == (4 if writers == "own" else 1)


def test_without_the_lock_one_shared_writer_loses_games(tmp_path):
    """The negative control: the lock is what keeps the shared-writer case whole."""
    count = run_recorders(tmp_path, ["same"] * 4, lock=False)
    print(f"\n4 x 25 batches of 2 games by one writer name without the lock: {count} games")
    assert count < 200, "4 unlocked writers of one file lost nothing: the test would not see a missing lock"


RACERS = r"""
import os, sys, time
sys.path.insert(0, sys.argv[1])
go, pool_path, a, b, role, mode = sys.argv[2], sys.argv[3], sys.argv[4], sys.argv[5], sys.argv[6], sys.argv[7]
from rllib_ext import PolicyPool
from rllib_ext.pool import journal, store
journal.MIN_TAIL = 0  # a compaction every few records: readers meet them halfway as often as can be
journal.MAX_OBJECTS = 3
if mode == "object store":  # as in test_a_reader_that_keeps_what_it_read_follows_compactions
    files = store.LocalStore.files
    store.LocalStore.can_append = False
    store.LocalStore.files = lambda self, rel, names=None: {k: store.FileInfo(0, 0, None) for k in files(self, rel, names)}
while not os.path.exists(go):
    time.sleep(0.001)
if role.startswith("reader"):
    kept, last = PolicyPool(pool_path), 0
    while last < 240:
        for pool in (kept, PolicyPool(pool_path)):  # one that keeps what it read, one that starts afresh
            t = pool.payoff()
            n = int(t.games[0, 1])
            assert n >= last and t.wins[0, 1] == t.draws[0, 1] == n // 2 and t.returns[0, 1] == n / 4, (n, last)
            last = n
else:
    pool = PolicyPool(pool_path, writer=role)
    for i in range(60):
        pool.record_games(a, b, wins=1, draws=1, return_a=0.5, return_b=-0.5)
"""


@pytest.mark.parametrize("mode", ["local", "object store"])
def test_readers_meet_compactions_of_two_writers_and_see_every_game_once(tmp_path, mode):
    """Two processes record, compacting every few records; two read all along without the
    lock: each sees the games only grow, never a record twice or a half one."""
    pool, (a, b) = pool_of(tmp_path, 2)
    roles = ["w1", "w2", "reader1", "reader2"]
    done = start_together(RACERS, [[tmp_path / "pool", a, b, role, mode] for role in roles], tmp_path / "go")
    for role, (code, err) in zip(roles, done):
        assert code == 0, f"{role}: {err}"
    assert PolicyPool(tmp_path / "pool").payoff().games[0, 1] == 240


def test_payoff_table_on_object_storage_keeps_one_file_per_writer(s3_bucket, tmp_path):
    """No lock on S3: each writer adds to its own journal (a base, then one object per record); a reader sums them."""
    import pyarrow.fs as pafs

    uri = f"{s3_bucket}/league"
    src = pool_policy_dir(tmp_path)
    pool_a, pool_b = PolicyPool(uri, writer="trial_a"), PolicyPool(uri, writer="trial_b")
    a, b = pool_a.add(src).id, pool_b.add(src).id
    pool_a.record_games(a, b, wins=2, return_a=2.0, return_b=-2.0)
    pool_b.record_games(b, a, wins=1, losses=1, return_a=0.0, return_b=0.0)
    pool_b.record_games(a, b, draws=3, return_a=0.0, return_b=0.0)  # any pair: the file is the writer's own
    fs, root = pafs.FileSystem.from_uri(uri)
    names = sorted(i.path[len(root) + 1:] for i in fs.get_file_info(pafs.FileSelector(f"{root}/payoff", recursive=True))
                   if i.type == pafs.FileType.File)
    # Each writer's first record is also its base; the newest record object stays beside the base.
    assert names == ["payoff/trial_a.json", "payoff/trial_a/000000000001.jsonl", "payoff/trial_b.json",
                     "payoff/trial_b/000000000001.jsonl", "payoff/trial_b/000000000002.jsonl"]
    t = PolicyPool(uri).payoff()
    assert t.ids == [a, b] and t.games.tolist() == [[0, 7], [7, 0]]
    assert (t.wins[0, 1], t.draws[0, 1], t.losses[0, 1]) == (3, 3, 1) and t.value[0, 1] == pytest.approx(2 / 7)
    assert PolicyPool(uri).meta_strategy(solver="replicator")[a] > 0.99  # a beats b: a alone


def test_object_storage_compactions_keep_a_cached_reader_right(s3_bucket, tmp_path, monkeypatch):
    """On S3 (no append): a record object per call, a new base every few; a long-lived
    reader follows, and a compaction leaves the base and the newest record object only."""
    import pyarrow.fs as pafs

    from rllib_ext.pool import journal

    monkeypatch.setattr(journal, "MIN_TAIL", 0)
    monkeypatch.setattr(journal, "MAX_OBJECTS", 3)
    uri = f"{s3_bucket}/league"
    pool = PolicyPool(uri, writer="trial_a")
    src = pool_policy_dir(tmp_path)
    a, b = pool.add(src).id, pool.add(src).id
    reader = PolicyPool(uri)
    for n in range(1, 16):
        pool.record_games(a, b, wins=1, draws=n % 2, return_a=1.0, return_b=-1.0)
        t = reader.payoff()
        assert (t.wins[0, 1], t.draws[0, 1]) == (n, (n + 1) // 2), n
    fs, root = pafs.FileSystem.from_uri(uri)
    objects = [i.path[len(root) + 1:] for i in fs.get_file_info(pafs.FileSelector(f"{root}/payoff", recursive=True))
               if i.type == pafs.FileType.File and i.path.endswith(".jsonl")]
    assert 1 <= len(objects) <= 4 and json.loads(fs.open_input_stream(f"{root}/payoff/trial_a.json").read())["seq"] > 5
    assert PolicyPool(uri).payoff().wins[0, 1] == 15


def test_a_live_row_records_a_learning_policys_games_beside_the_snapshots(tmp_path):
    """A league credits main's training games to main's own row, not to a snapshot: the
    snapshots' table (what meta-strategies are solved from) holds only their own games."""
    pool, (a,) = pool_of(tmp_path, 1)
    live = pool.live_row("main")
    assert live == "main@w:live"
    pool.record_games(live, a, wins=3, losses=1, return_a=2.0, return_b=-2.0)
    assert pool.payoff().games.sum() == 0  # entries only by default
    table = pool.payoff([live, a])
    assert table.ids == [live, a] and table.games[0, 1] == 4 and table.value[0, 1] == 0.5
    with pytest.raises(PolicyNotFoundError):
        pool.record_games("main@w:nope", a, wins=1, return_a=1.0, return_b=-1.0)


# ---------------------------------------------------------------- one mixture per seat
def record_seat_matrix(pool, ids, first, games: int = 2) -> None:
    """Record ``games`` games of every snapshot in seat "0" against every one in seat "1",
    itself included, with the first seat's mean return ``first[i, j]`` (zero-sum)."""
    from rllib_ext.pool.payoff import seat_row

    for i, a in enumerate(ids):
        for j, b in enumerate(ids):
            v = float(first[i, j])
            pool.record_games(seat_row(a, "0"), seat_row(b, "1"), wins=games * (v > 0), losses=games * (v < 0),
                              draws=games * (v == 0), return_a=v * games, return_b=-v * games)


@pytest.mark.parametrize("seed", range(3))
def test_zero_sum_nash_solves_a_table_no_pool_recorded(seed):
    """A rectangular zero-sum game given as a list: neither side gains by a pure deviation
    (checked here); on a symmetric table its row mixture is the pool's "nash" answer."""
    rng = np.random.default_rng(seed)
    game = rng.normal(size=(4, 6)).round(3)
    x, y = zero_sum_nash(game.tolist())
    assert x.shape == (4,) and y.shape == (6,) and x.sum() == pytest.approx(1) and y.sum() == pytest.approx(1)
    value = x @ game @ y
    assert np.max(game @ y) - value <= 1e-6 and value - np.min(x @ game) <= 1e-6
    x, y = zero_sum_nash(RPS)
    np.testing.assert_allclose(x, [1 / 3] * 3, atol=1e-9)
    np.testing.assert_allclose(y, [1 / 3] * 3, atol=1e-9)


@pytest.mark.parametrize("seed", range(4))
def test_meta_strategy_by_seat_is_an_equilibrium_of_the_seat_game(tmp_path, seed):
    """A random zero-sum seat game, not symmetric (the first seat is better off): neither
    seat gains by a pure deviation from the mixtures (checked here, not by the solver), and
    the one mixture for both seats of the entries' own rows is left as it was."""
    rng = np.random.default_rng(seed)
    n = 5
    first = rng.normal(size=(n, n)).round(3) + 0.5
    pool, ids = pool_of(tmp_path, n)
    record_seat_matrix(pool, ids, first)
    by_seat = pool.meta_strategy_by_seat("main")
    assert list(by_seat) == ["0", "1"] and all(list(m) == ids for m in by_seat.values())
    x, y = (np.array([by_seat[s][i] for i in ids]) for s in ("0", "1"))
    assert x.min() >= 0 and y.min() >= 0 and x.sum() == pytest.approx(1) and y.sum() == pytest.approx(1)
    value = x @ first @ y
    assert np.max(first @ y) - value <= 1e-6  # the first seat cannot do better against y
    assert value - np.min(x @ first) <= 1e-6  # nor the second against x
    assert int(pool.payoff().games.sum()) == 0  # seat rows are rows of their own


def test_meta_strategy_by_seat_refuses_a_table_without_two_seats_or_not_zero_sum(tmp_path):
    from rllib_ext.pool.payoff import seat_row

    pool, ids = pool_of(tmp_path, 2)
    with pytest.raises(ValueError, match=r"exactly two seats; the payoff table has 0 \(none\).*evaluation matches"):
        pool.meta_strategy_by_seat("main")
    record_seat_matrix(pool, ids, np.ones((2, 2)))
    pool.record_games(seat_row(ids[0], "0"), seat_row(ids[1], "1"), wins=1, return_a=1.0, return_b=0.5)
    with pytest.raises(ValueError, match=rf"{ids[0]}' in seat '0' and '{ids[1]}' in seat '1' got .*not summing to 0"):
        pool.meta_strategy_by_seat("main")


def test_a_seat_row_must_name_an_entry(tmp_path):
    from rllib_ext.pool.payoff import seat_row

    pool, ids = pool_of(tmp_path, 1)
    before = pool_files(pool.path)
    with pytest.raises(PolicyNotFoundError, match="main-9999"):
        pool.record_games(seat_row(ids[0], "0"), seat_row("main-9999@w", "1"), wins=1, return_a=1.0, return_b=-1.0)
    assert pool_files(pool.path) == before
