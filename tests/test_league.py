"""Self-play leagues: snapshots into a pool, past selves in frozen slots, exact resume.

Both stacks (torch), a remote env runner. What is proven: each snapshot is ``main`` at the
end of its iteration; the slots on the remote env runner hold exactly the snapshot the
result names (and act like it, against a negative control); slots stay put between
refreshes; a resume gives the same slots and the same next draw; bad input is refused
before anything changes.
"""

from __future__ import annotations

import numpy as np
import pytest
from builders import (
    STACKS,
    assert_weights_equal,
    env_runner_weights,
    live_weights,
    new_outputs,
    on_stack,
    old_outputs,
    restart_remote_env_runner,
)

from rllib_ext import PolicyNotFoundError, PolicyPool, PPOPartialConfig, ShapeMismatchError, read_weights
from rllib_ext.envs import HighCard, seat_mapping
from rllib_ext.pool.matchmaking import Candidate

SLOTS = ["opponent_0", "opponent_1"]
pytestmark = pytest.mark.torch_only


def league_config(stack: str, pool: str, *, refresh_every: int = 1, every: int = 1, sample: str = "pfsp",
                  num_env_runners: int = 1, cards: int = 10, slots=SLOTS):
    cfg = (
        PPOPartialConfig()
        .environment(HighCard, env_config={"cards": cards})
        .framework("torch")
        .env_runners(num_env_runners=num_env_runners, rollout_fragment_length="auto")
        .training(train_batch_size=200, minibatch_size=100, num_epochs=1, lr=1e-3)
        .multi_agent(policies={"main", *slots}, policy_mapping_fn=seat_mapping("main", list(slots)),
                     policies_to_train=["main"])
        .debugging(seed=0)
    )
    cfg = on_stack(cfg, stack)
    return (cfg.snapshot_policies(pool, ["main"], every=every)
            .league(pool, of="main", slots=list(slots), sample=sample, refresh_every=refresh_every, seed=7))


def _runner_matches(algo, slot, entry_path):
    """The remote env runner's slot holds the snapshot's tensors (those it keeps for inference)."""
    got = env_runner_weights(algo, slot, remote=True)
    want = read_weights(entry_path)
    shared = [n for n in want if n in got]
    assert shared, "no tensor in common"
    assert_weights_equal({n: got[n] for n in shared}, {n: want[n] for n in shared}, f"slot {slot}")


def _outputs(algo, stack, pid, obs):
    if stack == "new":
        return new_outputs(algo.get_module(pid), obs, values=False)[0]
    return old_outputs(algo.get_policy(pid), obs)[0]


@pytest.mark.parametrize("stack", STACKS)
def test_league_snapshots_slots_and_refreshes(ray_session, tmp_path, stack):
    pool_path = str(tmp_path / "pool")
    algo = league_config(stack, pool_path, refresh_every=2).build()
    try:
        pool = PolicyPool(pool_path)
        mains, results, slots_at = [], [], {}
        for it in range(1, 5):
            results.append(algo.train()["rllib_ext"])
            mains.append(live_weights(algo, "main"))
            slots_at[it] = {slot: live_weights(algo, slot) for slot in SLOTS}
        # refresh_every=2: iteration 3 refreshed nothing, so the slots are those of iteration 2
        assert results[2]["league"] == results[1]["league"]
        for slot in SLOTS:
            assert_weights_equal(slots_at[3][slot], slots_at[2][slot], f"{slot} between refreshes")
        entries = pool.entries(policy="main")
        assert [e.iteration for e in entries] == [1, 2, 3, 4]
        for entry, main in zip(entries, mains):  # each snapshot is main at the end of its iteration
            assert_weights_equal(read_weights(entry.path), main, entry.id, ordered=False)
        last = results[-1]["league"]
        obs = np.linspace(0, 1, 11, dtype=np.float32)[:, None]
        for slot, entry_id in last.items():
            entry = pool.get(entry_id)
            assert_weights_equal(live_weights(algo, slot), read_weights(entry.path), slot, ordered=False)
            _runner_matches(algo, slot, entry.path)
        restart_remote_env_runner(algo)  # a crashed runner comes back holding the same snapshots
        for slot, entry_id in last.items():
            _runner_matches(algo, slot, pool.get(entry_id).path)
        # Behaviour: a slot acts as its snapshot; another snapshot (the negative control) does not.
        slot, entry_id = next(iter(last.items()))
        other = next(e for e in entries if e.id != entry_id)
        scratch = league_config(stack, str(tmp_path / "scratch"), num_env_runners=0).build()
        try:
            scratch.load_policy(pool.get(entry_id).path, "opponent_0")
            same = np.max(np.abs(_outputs(scratch, stack, "opponent_0", obs) - _outputs(algo, stack, slot, obs)))
            scratch.load_policy(other.path, "opponent_0")
            control = np.max(np.abs(_outputs(scratch, stack, "opponent_0", obs) - _outputs(algo, stack, slot, obs)))
        finally:
            scratch.stop()
        print(f"{stack}: slot vs its snapshot {same:.3g}; vs snapshot {other.id} {control:.3g}")
        assert same <= 1e-6 and control > 1e-3
        games = results[-1]["league_games"]
        assert sum(sum(g[k] for k in ("win", "draw", "loss")) for g in games.values()) > 0
        assert sum(e.games for e in pool.entries()) > 0  # ratings and games are in the pool
        assert all(slot not in algo.config.policies_to_train for slot in SLOTS) or stack == "new"
    finally:
        algo.stop()


@pytest.mark.parametrize("stack", STACKS)
def test_league_resume_gives_same_slots_and_next_draw(ray_session, tmp_path, stack):
    pool_path = str(tmp_path / "pool")
    cfg = league_config(stack, pool_path, num_env_runners=0)
    algo = cfg.build()
    try:
        for _ in range(3):
            algo.train()
        ckpt = algo.save(str(tmp_path / "ckpt")).checkpoint.path
        state = algo.feature("league").engine.state()
        resumed = cfg.build()
        try:
            resumed.restore(ckpt)
            assert resumed.feature("league").engine.state()["assignment"] == state["assignment"]
            assert resumed.feature("league").engine.state()["sampler"] == state["sampler"]
            for slot in SLOTS:
                assert_weights_equal(live_weights(resumed, slot), live_weights(algo, slot), slot)
            # the same next draw, and a different one from a fresh sampler (negative control)
            cands = [Candidate(e.id, e.created, e.rating) for e in PolicyPool(pool_path).entries()]
            draws = [algo.feature("league").engine.sampler.draw(cands, 2, 1200.0) for _ in range(4)]
            assert [resumed.feature("league").engine.sampler.draw(cands, 2, 1200.0) for _ in range(4)] == draws
            fresh = cfg.build()
            try:
                assert [fresh.feature("league").engine.sampler.draw(cands, 2, 1200.0) for _ in range(4)] != draws
            finally:
                fresh.stop()
            # a pruned pool must not silently change who plays
            gone = next(e for e in state["assignment"].values() if e is not None)
            PolicyPool(pool_path).remove(gone)
            again = cfg.build()
            try:
                with pytest.raises(PolicyNotFoundError, match=gone.replace("@", ".")):
                    again.restore(ckpt)
            finally:
                again.stop()
        finally:
            resumed.stop()
    finally:
        algo.stop()


@pytest.mark.slow
def test_league_tune_resume_after_a_crash_draws_the_same_snapshots(ray_session, tmp_path):
    """tune.run with max_failures=1 crashes once at iteration 3, after that iteration's
    snapshot and draw; Tune resumes from the iteration-2 checkpoint. The re-run iteration 3
    draws snapshots of the same iterations, and the crashed run's snapshot is gone (it
    would otherwise be drawn beside its re-run twin)."""
    import json

    from ray import tune

    from tune_callbacks import CrashLeagueOnceAndRecord

    pool_path = str(tmp_path / "pool")
    cfg = league_config("new", pool_path, num_env_runners=0, sample="uniform")
    cfg = cfg.environment(env_config={"cards": 10, "marker_dir": str(tmp_path)})
    cfg = cfg.callbacks(CrashLeagueOnceAndRecord).league(pool_path, of="main", slots=list(SLOTS),
                                                        sample="uniform", refresh_every=1, seed=7)
    analysis = tune.run("PPOPartial", config=cfg, storage_path=str(tmp_path / "tune"), name="league", verbose=0,
                        stop={"training_iteration": 4}, checkpoint_freq=1, max_failures=1, raise_on_failed_trial=True)
    assert (tmp_path / "crashed").exists(), "the crash was not injected"
    rows = [json.loads(line) for line in open(tmp_path / "draws.jsonl")]
    crashed = [r for r in rows if r["iteration"] == 3 and r["before_crash"]]
    rerun = [r for r in rows if r["iteration"] == 3 and not r["before_crash"]]
    assert len(crashed) == 1 and len(rerun) == 1, rows
    assert rerun[0]["drawn"] == crashed[0]["drawn"], rows
    assert analysis.trials[0].last_result["training_iteration"] == 4
    snapshots = sorted(e.iteration for e in PolicyPool(pool_path).entries())
    assert snapshots == [1, 2, 3, 4], snapshots  # one per iteration: the lost run's iteration-3 one was removed


@pytest.mark.parametrize("stack", STACKS)
def test_league_bad_input_is_refused_before_anything_changes(ray_session, tmp_path, stack):
    pool_path = str(tmp_path / "pool")
    with pytest.raises(PolicyNotFoundError, match="slot policy 'nobody' not in the algorithm's policies"):
        league_config(stack, pool_path).league(pool_path, of="main", slots=["nobody"])
    with pytest.raises(ValueError, match="also a slot"):
        league_config(stack, pool_path).league(pool_path, of="main", slots=["main"])
    with pytest.raises(ValueError, match="sample='best'"):
        league_config(stack, pool_path).league(pool_path, of="main", slots=SLOTS, sample="best")
    # A snapshot of a policy with other shapes: refused, naming both; the slots keep their weights.
    other = league_config(stack, str(tmp_path / "other"), num_env_runners=0).build()
    algo = None
    try:
        other_path = str(tmp_path / "wide")
        other.save_policy("main", other_path)
        algo = league_config(stack, pool_path, num_env_runners=0).build()
        before = {slot: live_weights(algo, slot) for slot in SLOTS}
        wide = _widened(other_path, str(tmp_path / "wide2"))
        PolicyPool(pool_path).add(wide, policy="main")
        with pytest.raises(ShapeMismatchError, match=r"slot 'opponent_0'.*\(8, 3\).*\(8, 1\)|\(8, 1\).*\(8, 3\)"):
            algo.feature("league").engine.refresh()
        for slot in SLOTS:
            assert_weights_equal(live_weights(algo, slot), before[slot], slot)
    finally:
        other.stop()
        if algo is not None:
            algo.stop()


def _widened(src: str, dst: str) -> str:
    """A copy of a policy directory whose first layer takes 3 inputs instead of 1."""
    from rllib_ext.checkpoint.policy_file import META_KEYS, read_policy_dir, write_policy_dir

    meta, weights = read_policy_dir(src)
    out = {}
    for name, w in weights.items():
        if w.ndim == 2 and w.shape[-1] == 1:  # the first layers (actor and critic) of a 1-float input
            w = np.concatenate([w, w, w], axis=-1)
        out[name] = w
    return write_policy_dir(dst, meta["policy_id"], out, {k: v for k, v in meta.items() if k in META_KEYS})


@pytest.mark.parametrize("stack", STACKS)
def test_league_callbacks_are_one_entry_of_rllibs_callbacks_list(tmp_path, stack):
    """No class is built for the league: its callbacks are a declared class in RLlib's list, beside
    the user's; league() again replaces that entry; the old stack, which instantiates one class,
    gets RLlib's own composite of the list when the config is validated."""
    from ray.rllib.algorithms.callbacks import make_multi_callbacks

    from rllib_ext.live.league.play import LeagueCallbacks
    from tune_callbacks import CrashLeagueOnceAndRecord as Mine

    pool = str(tmp_path / "pool")
    cfg = league_config(stack, pool).callbacks(Mine).league(pool, of="main", slots=SLOTS)
    cfg = cfg.league(pool, of="main", slots=SLOTS[:1])
    mine, ours = cfg.callbacks_class
    assert mine is Mine and ours.func is LeagueCallbacks and ours.keywords["slots"] == (SLOTS[0],)

    cfg.validate()
    if stack == "new":
        assert cfg.callbacks_class == [mine, ours]  # RLlib's env runners instantiate the list
    else:
        composite = cfg.callbacks_class()
        assert type(composite).__qualname__ == make_multi_callbacks([]).__qualname__
        assert [type(c) for c in composite._callback_list] == [Mine, LeagueCallbacks]
