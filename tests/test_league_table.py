"""A league that keeps a payoff table: evaluation matches, PSRO's Nash draw, exploiters, exact resume.

On OpenSpiel's Kuhn poker through RLlib's own ``OpenSpielEnv``, both stacks (torch). What
is proven: the table's live row holds exactly the games the env runners counted; the
evaluation matches fill the least-played pairs; a pair's value agrees with OpenSpiel's
exact expected return; exploiters' snapshots join the pool and they reset to their
initial weights when due; a resume keeps the table, the draw and the next evaluation.
"""

from __future__ import annotations

import numpy as np
import pytest
from builders import STACKS, assert_differs, assert_weights_equal, live_weights, on_stack

pytest.importorskip("pyspiel")

from rllib_ext import PolicyPool, PPOPartialConfig, read_weights  # noqa: E402
from rllib_ext.envs import OpenSpielGame, seat_mapping  # noqa: E402
from rllib_ext.pool.payoff import seat_row  # noqa: E402

pytestmark = pytest.mark.torch_only
SLOTS = ["opponent_0"]
EXPLOITERS = ["exploiter_0"]


def counting(creator):
    """``creator``'s envs, each counting its own ``step()`` calls: an independent count of
    what the league's evaluation games cost (the driver makes its evaluation envs with it)."""

    def make(env_config):
        env = creator(env_config)
        env.steps, step = 0, env.step

        def counted(action):
            env.steps += 1
            return step(action)

        env.step = counted
        return env

    return make


def kuhn_config(stack: str, pool: str, *, reset_every: int = 2, evaluation=None, learner_reset=None):
    mapping = seat_mapping("main", SLOTS, EXPLOITERS, exploiter_share=0.3)
    cfg = (
        PPOPartialConfig()
        .environment(OpenSpielGame, env_config={"game": "kuhn_poker"})
        .framework("torch")
        .env_runners(num_env_runners=0, rollout_fragment_length="auto")
        .training(train_batch_size=200, minibatch_size=100, num_epochs=1, lr=1e-3)
        .multi_agent(policies={"main", *SLOTS, *EXPLOITERS}, policy_mapping_fn=mapping,
                     policies_to_train=["main", *EXPLOITERS])
        .debugging(seed=0)
    )
    cfg = on_stack(cfg, stack)
    evaluation = evaluation or {"games": 20, "min_games": 20, "pairs": 3}
    return (cfg.snapshot_policies(pool, ["main"], every=1)
            .league(pool, of="main", slots=SLOTS, sample="nash", refresh_every=1, seed=3, evaluation=evaluation,
                    exploiters={"exploiter_0": {"against": "main", "reset_every": reset_every}},
                    reset_every=learner_reset))


@pytest.mark.parametrize("stack", STACKS)
def test_league_table_matches_exploiters_and_resume(ray_session, tmp_path, stack):
    pool_path = str(tmp_path / "pool")
    algo = kuhn_config(stack, pool_path, learner_reset=2).build()
    algo.env_creator = counting(algo.env_creator)  # the training envs are built already
    try:
        pool = PolicyPool(pool_path)
        fresh = live_weights(algo, "exploiter_0")
        fresh_main = live_weights(algo, "main")
        results, mains = [], []
        for _ in range(3):
            results.append(algo.train()["rllib_ext"])
            mains.append(live_weights(algo, "main"))
        # The live row holds exactly the games the env runners counted against the slots.
        counted = sum(sum(r["league_games"][s][k] for k in ("win", "draw", "loss")) for r in results[1:] for s in SLOTS)
        live = pool.live_row("main")
        snapshots = [e.id for e in pool.entries()]
        table = pool.payoff([live, *snapshots])
        assert counted > 0 and table.games[0].sum() == counted
        # Every iteration snapshots main and the exploiter; evaluation filled the pairs it could.
        assert sorted(e.policy for e in pool.entries()) == ["exploiter_0"] * 3 + ["main"] * 3
        ids = [e.id for e in pool.entries()]
        seats = pool.payoff([seat_row(i, s) for s in ("0", "1") for i in ids]).games
        self_games = int(np.trace(seats[: len(ids), len(ids):]))  # a snapshot against itself: seat rows only
        played = sum(r["league_evaluation_games"] for r in results)
        assert played == int(np.triu(pool.payoff().games).sum()) + self_games > 0
        # The budget: every evaluation game and its env steps (counted by the envs themselves),
        # and every learner's training steps; the pool records the same, and its table holds
        # no more evaluation games than were paid for.
        budget = results[-1]["league_budget"]
        engine = algo.feature("league").engine
        assert budget["evaluation_games"] == played
        assert budget["evaluation_env_steps"] == sum(env.steps for env in engine.matches.envs) >= 2 * played
        if stack == "new":
            sampled = algo.metrics.peek(("env_runners", "num_env_steps_sampled_lifetime"))
        else:
            sampled = algo._counters["num_env_steps_sampled"]
        assert budget["training_env_steps"] == sampled > 0
        assert budget["total_env_steps"] == budget["training_env_steps"] + budget["evaluation_env_steps"]
        spent = pool.budget()
        assert (spent.training_env_steps, spent.evaluation_env_steps, spent.evaluation_games) == (
            budget["training_env_steps"], budget["evaluation_env_steps"], budget["evaluation_games"])
        # The exploiter and main (league(reset_every=2)) reset at iteration 2, after main's snapshot.
        assert [r["league_reset"] for r in results] == ["", "exploiter_0,main", ""]
        assert_weights_equal(mains[1], fresh_main, "main right after its reset")
        assert_differs(mains[0], fresh_main, "main before its reset")
        snap = {e.iteration: e for e in pool.entries() if e.policy == "exploiter_0"}
        assert_differs(read_weights(snap[1].path), fresh, "the exploiter before its reset")
        # The draw is from the Nash mixture of the population's table.
        mix = pool.meta_strategy(of=["main", "exploiter_0"], solver="nash")
        assert results[-1]["league"]["opponent_0"] in mix and abs(sum(mix.values()) - 1) < 1e-9

        path = algo.save(str(tmp_path / "ckpt")).checkpoint.path
        at_save = pool.payoff([pool.live_row("main"), *[e.id for e in pool.entries()]])
        draws = algo.feature("league").engine.sampler.draw_mixture(mix, 8)
        evaluation = algo.feature("league").engine.matches.state()
        budget_at_save = algo.feature("league").engine.budget()
        algo.train()  # a run that goes on (and is lost): more snapshots and games in the pool
        assert len(pool.entries()) > len(at_save.ids) - 1
        assert pool.budget().total_env_steps > budget_at_save["total_env_steps"]
    finally:
        algo.stop()

    resumed = kuhn_config(stack, pool_path, learner_reset=2).build()
    try:
        resumed.restore(path)
        # The table is the checkpoint's: the lost run's snapshots and games are gone.
        got = pool.payoff(at_save.ids)
        assert [e.id for e in pool.entries()] == at_save.ids[1:]
        np.testing.assert_array_equal(got.games, at_save.games)
        np.testing.assert_array_equal(got.returns, at_save.returns)
        # The same next draw, and the same next evaluation matches.
        assert resumed.feature("league").engine.sampler.draw_mixture(pool.meta_strategy(of=["main", "exploiter_0"]), 8) == draws
        assert resumed.feature("league").engine.matches.state() == evaluation
        # The budget is the checkpoint's, in the algorithm and in the pool: the lost run's steps are gone.
        assert resumed.feature("league").engine.budget() == budget_at_save
        assert pool.budget().total_env_steps == budget_at_save["total_env_steps"]
        resumed.train()
    finally:
        resumed.stop()


def _always(algo, policy_id: str, action: int) -> None:
    """Make a live new-stack policy play ``action`` whatever it sees (its last pi layer)."""
    import torch

    params = [p for n, p in algo.get_module(policy_id).named_parameters() if n.startswith("pi")]
    weight, bias = params[-2], params[-1]
    with torch.no_grad():
        weight.zero_()
        bias.fill_(-20.0)
        bias[action] = 20.0
    algo.learner_group.set_weights({policy_id: algo.get_module(policy_id).get_state()})


@pytest.mark.stack("new")
def test_evaluation_value_agrees_with_openspiel_exactly(ray_session, tmp_path):
    """A pair's sampled value is OpenSpiel's exact expected return within sampling error, for
    two trained snapshots and for "always bet" against "always pass" (exactly +1: the bettor
    takes the ante every game); the negative control (that pair's sides crossed) is off."""
    import pyspiel
    from open_spiel.python.algorithms import expected_game_score

    from rllib_ext import NumpyPolicy
    from rllib_ext.act.openspiel import tabular_policy
    from rllib_ext.live.league.evaluation import EvaluationSpec, Matches

    pool_path = str(tmp_path / "pool")
    algo = kuhn_config("new", pool_path, reset_every=100).build()
    try:
        for _ in range(3):
            algo.train()
        pool = PolicyPool(pool_path)
        mains = [e.id for e in pool.entries() if e.policy == "main"]
        _always(algo, "opponent_0", 1)
        _always(algo, "exploiter_0", 0)
        bet = algo.snapshot_policy("opponent_0", pool).id
        check = algo.snapshot_policy("exploiter_0", pool).id
        matches = Matches(algo, EvaluationSpec(), "main", None, seed=0)
        games = 4000
        played = {pair: matches.match(pool, *pair, games).tallies[pair] for pair in ((mains[-1], mains[0]), (bet, check))}
    finally:
        algo.stop()
    game = pyspiel.load_game("kuhn_poker")
    root = game.new_initial_state()
    bound = 4 * 1.5 / np.sqrt(games)  # four standard errors (returns in [-2, 2])
    for (a, b), (wins, draws, losses, ret_a, ret_b) in played.items():
        assert wins + draws + losses == games and abs(ret_a + ret_b) < 1e-9  # zero-sum
        ta, tb = (tabular_policy(game, NumpyPolicy.from_checkpoint(pool.get(x).path)) for x in (a, b))
        exact = (expected_game_score.policy_value(root, [ta, tb])[0]
                 + expected_game_score.policy_value(root, [tb, ta])[1]) / 2
        assert abs(ret_a / games - exact) < bound, (a, b, ret_a / games, exact)
    assert abs(exact - 1.0) < 1e-6 and wins == games  # always bet against always pass
    assert abs(ret_a / games - (-exact)) > bound  # negative control: the sides crossed


@pytest.mark.stack("new")
def test_remote_evaluation_in_a_live_league_counts_what_it_records_and_stops(ray_session, tmp_path):
    """``evaluation={"remote": True}`` in a training league: what the result and the pool
    report as evaluation games is what the table holds, iteration by iteration, with
    matches in flight; ``algo.stop()`` leaves none running."""
    pool_path = str(tmp_path / "pool")
    algo = kuhn_config("new", pool_path, evaluation={"games": 20, "min_games": 40, "pairs": 3, "remote": True}).build()
    pool = PolicyPool(pool_path)

    def table_games() -> int:
        ids = [e.id for e in pool.entries()]
        seats = pool.payoff([seat_row(i, s) for s in ("0", "1") for i in ids]).games
        return int(np.triu(pool.payoff(ids).games).sum()) + int(np.trace(seats[: len(ids), len(ids):]))

    try:
        engine = algo.feature("league").engine
        for _ in range(4):
            result = algo.train()["rllib_ext"]
            assert result["league_budget"]["evaluation_games"] == table_games() == pool.budget().evaluation_games
            assert result["league_evaluation_pending"] == len(engine.matches.pending)
        engine.matches.collect(pool, wait=True)
        assert engine.budget()["evaluation_games"] == table_games() > 0
        assert engine.budget()["evaluation_env_steps"] >= 2 * table_games()
        engine.matches.play_due(pool, [e.id for e in pool.entries()], of=["main", "exploiter_0"])
        refs = [p.ref for p in engine.matches.pending.values()]
        assert refs
    finally:
        algo.stop()
    import ray

    assert not engine.matches.pending
    done, running = ray.wait(refs, num_returns=len(refs), timeout=60)  # cancelled (or just finished)
    assert not running
