"""Population-based training per policy (``config.population(...)``), both stacks (torch).

Two "trials" are two algorithms in one process with different pool writers sharing one
pool; ``policy_0``'s score is forced to differ between them (a callable score),
``policy_1``'s ties. What is proven: the worse trial's ``policy_0`` equals the better
trial's snapshot exactly after the exploit, its ``policy_1`` keeps its own weights; the
optimizer holds the perturbed lr after two more updates (and, negative control, a param
group set alone is overwritten by RLlib's scheduler); a save and ``from_checkpoint`` keep
the perturbed values and the next exploit decision; bad input is refused in the driver.
"""

from __future__ import annotations

import random
import re

import pytest
from builders import (
    STACKS, assert_differs, assert_weights_equal, live_weights, pool_add_child, pool_policy_dir, ppo_config,
)

from rllib_ext import PolicyNotFoundError, PolicyPool, PPOPartialConfig, read_weights
from rllib_ext.live.population.engine import donor_for, latest_by_writer, perturbed
from rllib_ext.live.population.hyperparams import live_hyperparams
from rllib_ext.pool.index import PoolEntry

pytestmark = pytest.mark.torch_only
POLICIES = ["policy_0", "policy_1"]
EVERY = 3


def score_better(result, policy_id):  # module level: the config is pickled into checkpoints
    return 1.0 if policy_id == "policy_0" else 0.5


def score_worse(result, policy_id):
    return 0.0 if policy_id == "policy_0" else 0.5


def pbt_config(stack: str, pool, score, **kw):
    cfg = ppo_config(stack, obs_dims=(4, 4), config_cls=PPOPartialConfig)
    return cfg.population(pool, policies=POLICIES, every=EVERY, quantile=0.5, score=score,
                          perturb=kw.pop("perturb", {"lr": (0.5, 2.0), "entropy_coeff": [0.05]}), seed=3, **kw)


def train(algo, n):
    return [algo.train() for _ in range(n)][-1]


def pop(result):
    return result["rllib_ext"]["population"]


# ---------------------------------------------------------------- Ray-free parts
def _entry(writer, score, n=0, policy="policy_0"):
    return PoolEntry(id=f"{policy}-{n:04d}@{writer}", policy=policy, iteration=n, env_steps=0, created=float(n),
                     rating=1200.0, games=0, path="", writer=writer, size=0,
                     meta={"population": True, "score": score, "hyperparams": {"lr": 1e-3}})


def test_donor_is_a_top_writer_for_a_bottom_writer_only():
    rng = random.Random(0)
    entries = [_entry("a", 1.0), _entry("b", 0.0), _entry("c", 0.5), _entry("d", 0.7)]
    assert donor_for("b", entries, 0.25, rng).writer == "a"
    assert donor_for("c", entries, 0.25, rng) is None  # middle
    assert donor_for("a", entries, 0.25, rng) is None  # top
    # Only each writer's latest counts: b has since improved past everyone.
    assert donor_for("b", entries + [_entry("b", 2.0, n=1)], 0.25, rng) is None
    assert donor_for("a", [_entry("a", 0.3), _entry("b", 0.3)], 0.5, rng) is None  # a tie takes nothing
    assert donor_for("a", [_entry("a", 0.0)], 0.5, rng) is None  # alone


def test_perturb_multiplies_factors_and_resamples_lists():
    got = perturbed({"lr": 1e-3, "entropy_coeff": 0.0}, {"lr": (2.0,), "entropy_coeff": [0.05]}, random.Random(0))
    assert got == pytest.approx({"lr": 2e-3, "entropy_coeff": 0.05})


def test_pool_meta_round_trips_and_old_entries_read_as_none(tmp_path):
    import json

    src = pool_policy_dir(tmp_path)
    pool = PolicyPool(tmp_path / "pool", writer="t")
    plain = pool.add(src)
    scored = pool.add(src, meta={"population": True, "score": 1.5, "hyperparams": {"lr": 1e-3}})
    again = PolicyPool(tmp_path / "pool", writer="u")
    assert again.get(plain.id).meta is None and again.get(scored.id).meta == scored.meta
    doc = json.loads((tmp_path / "pool" / "index" / "t.json").read_text())
    assert "meta" not in doc["entries"][0]  # an entry without meta is written as before
    with pytest.raises(ValueError, match="plain JSON"):
        pool.add(src, meta={"score": float("nan")})
    assert len(pool) == 2


# ---------------------------------------------------------------- bad input, in the driver
@pytest.mark.parametrize("stack", STACKS)
def test_bad_input_is_refused_by_name(stack, tmp_path):
    base = ppo_config(stack, obs_dims=(4, 4), config_cls=PPOPartialConfig)
    pool = str(tmp_path / "pool")
    cases = [
        (dict(policies=["policy_9"]), PolicyNotFoundError, "policy 'policy_9'"),
        (dict(perturb={"lrr": (0.8, 1.25)}), ValueError, "unknown hyperparameter 'lrr' for PPOPartialConfig (did you mean 'lr'?)"),
        (dict(perturb={"gamma": (0.8, 1.25)}), ValueError, f"hyperparameter 'gamma' cannot be set per module on the {stack} API stack"),
        (dict(quantile=0.75), ValueError, "quantile must be in (0, 0.5]"),
        (dict(quantile=0.0), ValueError, "quantile must be in (0, 0.5]"),
        (dict(perturb={"lr": (0.0, 1.25)}), ValueError, "every factor must be > 0"),
        (dict(score="reward"), ValueError, "give 'return', 'elo' or a callable"),
        (dict(every=0), ValueError, "every must be >= 1"),
    ]
    for kw, error, message in cases:
        kw = {"policies": POLICIES, **kw}
        with pytest.raises(error, match=re.escape(message)):
            base.copy(copy_frozen=False).population(pool, **kw)
    frozen = base.copy(copy_frozen=False).multi_agent(policies_to_train=["policy_1"])
    with pytest.raises(ValueError, match=re.escape("population policy 'policy_0' is not trained")):
        frozen.population(pool, policies=POLICIES)
    with pytest.raises(ValueError, match=re.escape("quantile must be in (0, 0.5]")):  # the plain-dict key too
        base.copy(copy_frozen=False).update_from_dict({"population": {"pool": pool, "policies": POLICIES, "quantile": 1}})


# ---------------------------------------------------------------- two trials, one pool
@pytest.mark.slow
@pytest.mark.parametrize("stack", STACKS)
def test_weak_policy_takes_the_better_snapshot_and_keeps_perturbed_values(ray_session, stack, tmp_path):
    path = str(tmp_path / "pool")
    better = pbt_config(stack, PolicyPool(path, writer="trial_a"), score_better).build_algo()
    worse = pbt_config(stack, PolicyPool(path, writer="trial_b"), score_worse).build_algo()
    try:
        result_a = train(better, EVERY)
        assert pop(result_a)["policy_0"]["exploited_from"] is None  # alone in the pool
        before = train(worse, EVERY - 1)
        own_1 = live_weights(worse, "policy_1")
        result = worse.train()  # a round: snapshots, then policy_0 exploits trial_a's
        report = pop(result)
        donor = PolicyPool(path).get("policy_0-0000@trial_a")
        assert report["policy_0"]["exploited_from"] == donor.id
        assert report["policy_1"]["exploited_from"] is None and report["policy_1"]["score"] == 0.5
        assert report["policy_0"]["score"] == 0.0
        assert_weights_equal(live_weights(worse, "policy_0"), read_weights(donor.path), "policy_0", ordered=False)
        # policy_1 is trial_b's own: trained this iteration, not taken from trial_a.
        mine_1 = PolicyPool(path).get("policy_1-0000@trial_b")
        assert_weights_equal(live_weights(worse, "policy_1"), read_weights(mine_1.path), "policy_1", ordered=False)
        assert_differs(live_weights(worse, "policy_1"), read_weights(PolicyPool(path).get("policy_1-0000@trial_a").path))
        assert_differs(live_weights(worse, "policy_1"), own_1, "policy_1 trained")
        assert before is not None
        hp = report["policy_0"]["hyperparams"]
        assert hp["lr"] in (pytest.approx(5e-4), pytest.approx(2e-3)) and hp["entropy_coeff"] == pytest.approx(0.05)
        assert report["policy_1"]["hyperparams"] == pytest.approx({"lr": 1e-3, "entropy_coeff": 0.0})
        # Two more updates: the optimizer still holds the perturbed lr (RLlib's scheduler did not reset it).
        train(worse, 2)
        assert live_hyperparams(worse, "policy_0", ["lr", "entropy_coeff"]) == pytest.approx(hp)
        assert live_hyperparams(worse, "policy_1", ["lr", "entropy_coeff"]) == pytest.approx(
            {"lr": 1e-3, "entropy_coeff": 0.0})

        # Save, then a fresh algorithm from the checkpoint: same values, same next decision.
        worse.save(str(tmp_path / "ckpt"))
        restored = type(worse).from_checkpoint(str(tmp_path / "ckpt"))
        try:
            assert live_hyperparams(restored, "policy_0", ["lr", "entropy_coeff"]) == pytest.approx(hp)
            a, b = pop(train(worse, 1)), pop(train(restored, 1))  # iteration 6: the next round
            assert a["policy_0"]["exploited_from"] == b["policy_0"]["exploited_from"] == donor.id
            assert a["policy_0"]["hyperparams"] == pytest.approx(b["policy_0"]["hyperparams"])
            train(restored, 1)
            assert live_hyperparams(restored, "policy_0", ["lr"]) == pytest.approx(
                {"lr": b["policy_0"]["hyperparams"]["lr"]})
        finally:
            restored.stop()
    finally:
        better.stop()
        worse.stop()


@pytest.mark.slow
@pytest.mark.stack("new")
def test_a_param_group_set_alone_is_overwritten_by_rllib(ray_session):
    """Negative control: why live/population/hyperparams.py also replaces the learner's lr scheduler."""
    algo = ppo_config("new", obs_dims=(4, 4), config_cls=PPOPartialConfig).build_algo()
    try:
        def set_group(learner):
            for _, opt in learner.get_optimizers_for_module("policy_0"):
                for group in opt.param_groups:
                    group["lr"] = 7e-3

        for r in algo.learner_group.foreach_learner(set_group):
            r.get()
        assert live_hyperparams(algo, "policy_0", ["lr"]) == {"lr": pytest.approx(7e-3)}
        algo.train()
        assert live_hyperparams(algo, "policy_0", ["lr"]) == {"lr": pytest.approx(1e-3)}
    finally:
        algo.stop()


@pytest.mark.slow
@pytest.mark.stack("new")
def test_tune_trials_share_the_pool_each_as_itself(ray_session, tmp_path, monkeypatch):
    """tune.run with the plain-dict key: each trial snapshots as its trial id and reports the round."""
    from ray import tune

    monkeypatch.chdir(tmp_path)  # the pool path below is relative: resolved in the driver
    config = ppo_config("new", obs_dims=(4, 4)).to_dict()
    config["population"] = {"pool": "pool", "policies": POLICIES, "every": 1, "quantile": 0.5,
                            "perturb": {"lr": (0.5, 2.0)}}
    analysis = tune.run("PPOPartial", config=config, num_samples=2, stop={"training_iteration": 2},
                        storage_path=str(tmp_path / "tune"), name="population", verbose=0, raise_on_failed_trial=True)
    trials = sorted(t.trial_id for t in analysis.trials)
    entries = [e for e in PolicyPool(tmp_path / "pool").entries() if (e.meta or {}).get("population")]
    assert sorted({e.writer for e in entries}) == trials
    assert len(entries) == 2 * 2 * len(POLICIES)  # two rounds, two policies, two trials
    for trial in analysis.trials:
        report = trial.last_result["rllib_ext"]["population"]
        assert sorted(report) == POLICIES and all("lr" in r["hyperparams"] for r in report.values())


# ---------------------------------------------------------------- the pool's guarantees, population snapshots
def population_dir(tmp_path, name="src"):
    """A single-policy directory as a population snapshot has it: weights and a training state (format 1.2)."""
    import numpy as np

    from rllib_ext.checkpoint import write_policy_dir
    from rllib_ext.checkpoint.training_state import OptimizerState, TrainingState

    from builders import POOL_WEIGHTS

    bufs = {i: {"step": np.array(3.0, np.float32), "exp_avg": np.full(w.shape, 0.5, np.float32),
                "exp_avg_sq": np.full(w.shape, 0.25, np.float32)} for i, w in enumerate(POOL_WEIGHTS.values())}
    ts = TrainingState("new", {"default_optimizer": OptimizerState(
        "Adam", bufs, [w.shape for w in POOL_WEIGHTS.values()], {"lr": 1e-3})}, kl_coeff=0.3)
    return write_policy_dir(tmp_path / name, "policy_0", POOL_WEIGHTS, {"stack": "new"}, training=ts.to_json())


META = {"population": True, "score": 1.5, "hyperparams": {"lr": 1e-3, "entropy_coeff": 0.0}}
POP_CHILD = pool_add_child(f", meta={META!r}")


def assert_whole_population_entry(e, src):
    from pathlib import Path

    from builders import POOL_WEIGHTS

    assert e.meta == META, e.id
    assert_weights_equal(read_weights(e.path), POOL_WEIGHTS, e.id)
    for name in ("training_state.safetensors", "policy.json"):
        assert (Path(e.path) / name).read_bytes() == (Path(src) / name).read_bytes(), f"{e.id}/{name}"


@pytest.mark.parametrize("pause_at", ["data", "index", None])
def test_sigkill_during_a_population_add_leaves_no_half_entry(tmp_path, pause_at):
    import os

    from builders import kill_child_at

    src, path = population_dir(tmp_path), tmp_path / "pool"
    pool = PolicyPool(path, writer="w")
    rng = random.Random(28)
    have = 0
    for i in range(6):
        finished = kill_child_at(POP_CHILD, [str(path), src], pause_at or "", rng.randint(1, 3), rng.uniform(0.0, 0.3))
        entries = PolicyPool(path, writer="w").entries()
        assert len(entries) in (have + finished, have + finished + 1), f"kill {i}"
        if pause_at:
            assert len(entries) == have + finished  # killed before the index named it
        for e in entries:
            assert_whole_population_entry(e, src)
        nxt = pool.add(src, meta=META)  # the next add succeeds and cleans up what the kill left
        have = len(entries) + 1
        assert_whole_population_entry(pool.get(nxt.id), src)
        assert sorted(os.listdir(path / "snapshots")) == sorted(e.id for e in pool.entries()), f"kill {i}"
        # donor_for reads the pool as it is: the writer's latest scored snapshot.
        assert [e.id for e in latest_by_writer(pool.entries(policy="policy_0"))] == [nxt.id]


POP_WRITER = r"""
import os, sys, time
sys.path.insert(0, sys.argv[1])
go, pool_path, src, writer, score = sys.argv[2], sys.argv[3], sys.argv[4], sys.argv[5], float(sys.argv[6])
from rllib_ext import PolicyPool
while not os.path.exists(go):
    time.sleep(0.001)
pool = PolicyPool(pool_path, writer=writer)
for i in range(10):
    pool.add(src, iteration=i, meta={"population": True, "score": score + i, "hyperparams": {"lr": 1e-3}})
"""


def test_four_writers_add_population_snapshots_at_once_and_all_land(tmp_path):
    from builders import start_together

    src, path = population_dir(tmp_path), tmp_path / "pool"
    done = start_together(POP_WRITER, [[path, src, f"trial_{k}", k] for k in range(4)], tmp_path / "go")
    assert all(code == 0 for code, _ in done), done
    entries = PolicyPool(path).entries(policy="policy_0")
    assert len(entries) == 40 and len({e.id for e in entries}) == 40
    for e in entries:
        assert e.meta["score"] == int(e.writer[-1]) + e.iteration and e.meta["population"]
        assert (tmp_path / "pool" / "snapshots" / e.id / "training_state.safetensors").is_file()
    latest = {e.writer: e.meta["score"] for e in latest_by_writer(entries)}
    assert latest == {f"trial_{k}": k + 9.0 for k in range(4)}
    # The ranking sees every writer's newest: the bottom writer takes the top one's.
    assert donor_for("trial_0", entries, 0.25, random.Random(0)).id == "policy_0-0009@trial_3"


# ---------------------------------------------------------------- score="elo" with a league
@pytest.mark.slow
@pytest.mark.stack("new")
def test_elo_score_is_the_league_rating_of_its_of_and_refused_elsewhere(ray_session, tmp_path):
    from test_league import league_config

    cfg = league_config("new", str(tmp_path / "league"), num_env_runners=0).population(
        str(tmp_path / "population"), policies=["main"], every=1, quantile=0.5, score="elo", perturb={"lr": (2.0,)})
    algo = cfg.build_algo()
    try:
        result = train(algo, 2)
        assert pop(result)["main"]["score"] == result["rllib_ext"]["league_main_rating"] == algo.feature("league").engine.main_rating
        [latest] = latest_by_writer(PolicyPool(tmp_path / "population").entries(policy="main"))
        assert latest.meta["score"] == algo.feature("league").engine.main_rating
    finally:
        algo.stop()
    # The population asks the league for its learner by name (it imports nothing of the
    # league): a policy that is not the league's learner is refused when the algorithm is built.
    league_first = league_config("new", str(tmp_path / "league"), num_env_runners=0).multi_agent(
        policies_to_train=["main", "opponent_0"]).population(str(tmp_path / "p3"), policies=["opponent_0"], score="elo")
    with pytest.raises(ValueError, match=re.escape("policy 'opponent_0' is not a league's of ('main')")):
        league_first.build_algo()
    plain = pbt_config("new", str(tmp_path / "p2"), "elo")
    with pytest.raises(ValueError, match=re.escape("population(score='elo'): policy 'policy_0' is not a league's of (None)")):
        plain.build_algo()


@pytest.mark.slow
@pytest.mark.parametrize("stack", ["new", "old"])
def test_tune_resume_after_a_crash_keeps_perturbed_values_and_the_next_exploit(ray_session, tmp_path, stack):
    """A trial at the bottom of a pool with two better writers exploits at iterations 2 and
    4 (a random donor of the two, a random factor); it crashes once at iteration 4, after
    that round. Tune resumes it from the iteration-3 checkpoint: the optimizer holds the
    lr perturbed at iteration 2, and the re-run iteration 4 takes the same donor with the
    same perturbed lr as the crashed one (the draw's RNG came back with the checkpoint)."""
    import json

    from ray import tune
    from tune_callbacks import CrashPopulationOnceAndRecord, score_worst

    from rllib_ext.live.snapshot import snapshot_policy

    path = str(tmp_path / "pool")
    donor_algo = ppo_config(stack, obs_dims=(4, 4), config_cls=PPOPartialConfig).build_algo()
    try:
        for writer, score, lr in (("donor_a", 1.0, 3e-3), ("donor_c", 0.9, 2e-4)):
            donor_algo.train()
            snapshot_policy(donor_algo, "policy_0", PolicyPool(path, writer=writer), iteration=1, training_state=True,
                            meta={"population": True, "score": score, "hyperparams": {"lr": lr}})
    finally:
        donor_algo.stop()
    cfg = (ppo_config(stack, obs_dims=(4, 4), config_cls=PPOPartialConfig)
           .environment(env_config={"obs_dims": [4, 4], "episode_len": 10, "marker_dir": str(tmp_path)})
           .callbacks(CrashPopulationOnceAndRecord)
           .population(path, policies=["policy_0"], every=2, quantile=0.5, score=score_worst,
                       perturb={"lr": (0.5, 2.0)}, seed=11))
    tune.run("PPOPartial", config=cfg, storage_path=str(tmp_path / "tune"), name="population", verbose=0,
             stop={"training_iteration": 5}, checkpoint_freq=1, max_failures=1, raise_on_failed_trial=True)
    assert (tmp_path / "crashed").exists(), "the crash was not injected"
    rows = [json.loads(line) for line in open(tmp_path / "rounds.jsonl")]
    by = {(r["iteration"], r["before_crash"]): r for r in rows}
    round_2, crashed_4, rerun_4 = by[(2, True)], by[(4, True)], by[(4, False)]
    donors = {e.id for e in PolicyPool(path).entries() if e.writer in ("donor_a", "donor_c")}
    assert round_2["report"]["exploited_from"] in donors
    perturbed_lr = round_2["report"]["hyperparams"]["lr"]
    assert round_2["live_lr"] == pytest.approx(perturbed_lr) and perturbed_lr != pytest.approx(1e-3)
    restored = json.load(open(tmp_path / "after_resume.json"))
    assert restored["lr"] == pytest.approx(perturbed_lr), "Tune's restore lost the perturbed lr"
    assert by[(3, True)]["live_lr"] == pytest.approx(perturbed_lr)
    # The draws' RNG, the hyperparameters and the exploits came back as the checkpoint had them.
    assert restored["state"] == by[(3, True)]["state"]
    assert rerun_4["report"]["exploited_from"] == crashed_4["report"]["exploited_from"] in donors
    assert rerun_4["report"]["hyperparams"] == pytest.approx(crashed_4["report"]["hyperparams"])
    assert rerun_4["live_lr"] == pytest.approx(crashed_4["report"]["hyperparams"]["lr"])
    assert (5, False) in by
    # The crashed run's round-4 snapshot left the pool on resume: one snapshot per round.
    mine = [e.iteration for e in PolicyPool(path).entries() if e.writer not in ("donor_a", "donor_c")]
    assert sorted(mine) == [2, 4], mine


@pytest.mark.slow
@pytest.mark.stack("new")
def test_population_on_object_storage_acts_as_the_donor_does(ray_session, s3_bucket):
    """Two writers share a pool on (local, moto) S3. The worse one's policy_0 exploits the
    better one's snapshot from the bucket and then acts as the donor did on the same raw
    observations (action-distribution inputs through the env runner's connectors); its
    policy_1, not exploited, does not (the negative control)."""
    import numpy as np
    from builders import rllib_dist_inputs

    uri = f"{s3_bucket}/pop"
    better = pbt_config("new", PolicyPool(uri, writer="trial_a"), score_better).build_algo()
    worse = pbt_config("new", PolicyPool(uri, writer="trial_b"), score_worse).build_algo()
    try:
        obs = np.random.default_rng(0).normal(size=(16, 4)).astype(np.float32)
        train(better, EVERY)  # its round: the snapshot is the live policy_0 now
        want = {pid: rllib_dist_inputs(better, pid, f"agent_{pid[-1]}", obs) for pid in POLICIES}
        report = pop(train(worse, EVERY))
        assert report["policy_0"]["exploited_from"] == "policy_0-0000@trial_a", report
        assert PolicyPool(uri).get("policy_0-0000@trial_a").path.startswith("s3://")
        got = {pid: rllib_dist_inputs(worse, pid, f"agent_{pid[-1]}", obs) for pid in POLICIES}
        np.testing.assert_allclose(got["policy_0"], want["policy_0"], rtol=0, atol=1e-6)
        assert np.abs(got["policy_1"] - want["policy_1"]).max() > 1e-3, "policy_1 was not to be exploited"
    finally:
        better.stop()
        worse.stop()
