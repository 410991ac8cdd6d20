"""Evaluation matches in the driver (``live/league/evaluation.py``): duplicate deals and seat rows; per-seat draws.

No Ray cluster: the matches need only the algorithm's env creator and mapping function,
so a stand-in algorithm and stand-in policies play OpenSpiel's Kuhn poker here (the
league tests in ``test_league_table`` play real snapshots in a real algorithm).
"""

from __future__ import annotations

import time
from typing import Any, Dict, List

import numpy as np
import pytest
from builders import pool_policy_dir

pytest.importorskip("pyspiel")

from rllib_ext import InvalidArgumentError, PolicyPool  # noqa: E402
from rllib_ext.envs import OpenSpielGame, seat_mapping  # noqa: E402
from rllib_ext.live.league.evaluation import EvaluationSpec, Matches  # noqa: E402
from rllib_ext.pool.payoff import seat_row  # noqa: E402


class Recording:
    """Kuhn poker that remembers each game's deal (the state right after reset)."""

    def __init__(self, deals: List[str]) -> None:
        self.env, self.deals = OpenSpielGame({"game": "kuhn_poker"}), deals

    def reset(self, **kwargs: Any):
        out = self.env.reset(**kwargs)
        self.deals.append(str(self.env.state))
        return out

    def step(self, action):
        return self.env.step(action)


class StandIn:
    """A policy that bets with probability ``p`` whatever it sees."""

    recurrent = False

    def __init__(self, p: float) -> None:
        self.p = p

    def compute_actions(self, batch, explore=True, rng=None):
        return (rng.random(len(batch)) < self.p).astype(np.int64), {}


def matches(deals: List[str], kind: type = Matches, **spec: Any) -> Matches:
    class Config:
        policy_mapping_fn = staticmethod(seat_mapping("main", ["opponent_0"]))
        env_config: dict = {}

    class Algo:
        config = Config()

        @staticmethod
        def env_creator(_):
            return Recording(deals)

    return kind(Algo(), EvaluationSpec(**spec), "main", None, seed=0)


def pool_with(tmp_path, players: List[StandIn], m: Matches):
    pool = PolicyPool(tmp_path / "pool")
    ids = [pool.add(pool_policy_dir(tmp_path)).id for _ in players]
    m.policies.update(zip(ids, players))  # act as the stand-ins, not as the files' weights
    return pool, ids


@pytest.mark.parametrize("duplicate", [True, False])
def test_the_two_games_of_a_duplicate_pair_share_the_deal_with_the_seats_swapped(tmp_path, duplicate):
    """With ``duplicate`` (the default) games 2k and 2k+1 are dealt the same cards and each
    snapshot sits in the other seat in the second; without it (the negative control) both
    fail in some of the 32 pairs."""
    deals: List[str] = []
    m = matches(deals, duplicate=duplicate, batch=64)
    pool, (a, b) = pool_with(tmp_path, [StandIn(0.5), StandIn(0.2)], m)
    games = m._games(m.policies[a], m.policies[b], 64, 0)
    swapped = [games[k][2] != games[k + 1][2] for k in range(0, 64, 2)]  # a's seat, game 2k and 2k+1
    same = [deals[k] == deals[k + 1] for k in range(0, 64, 2)]
    assert (all(same) and all(swapped)) if duplicate else not (all(same) or all(swapped)), deals
    assert len(set(deals)) > 1


def test_seat_rows_add_up_to_the_pair_and_self_games_fill_only_seat_rows(tmp_path):
    m = matches([], games=8, min_games=8, pairs=100)
    pool, ids = pool_with(tmp_path, [StandIn(0.9), StandIn(0.5), StandIn(0.1)], m)
    played = m.play_due(pool, ids)  # the pairs; the seats are learnt from them
    played += m.play_due(pool, ids)  # then every snapshot against itself
    assert m.play_due(pool, ids) == 0 and played == 8 * (3 + 3)
    assert m.seats == {"0", "1"} and m.state()["seats"] == ["0", "1"]
    rows = [seat_row(i, s) for s in ("0", "1") for i in ids]
    seats, pairs = pool.payoff(rows), pool.payoff(ids)
    for i in range(3):
        assert seats.games[i, 3 + i] == 8  # itself, first seat against second
        for j in range(3):
            if i != j:  # a pair's games are those of its two seat pairings
                assert pairs.games[i, j] == seats.games[i, 3 + j] + seats.games[j, 3 + i] == 8
                assert pairs.returns[i, j] == pytest.approx(seats.returns[i, 3 + j] + seats.returns[3 + i, j])
    assert np.all(np.diag(pairs.games) == 0)  # self-games stay out of the entries' own rows
    mix = pool.meta_strategy_by_seat("main")
    assert set(mix) == {"0", "1"} and all(sum(v.values()) == pytest.approx(1) for v in mix.values())


def test_duplicate_needs_an_even_batch():
    with pytest.raises(ValueError, match=r"'batch': 5.*even with duplicate=True"):
        EvaluationSpec(batch=5).check()
    EvaluationSpec(batch=5, duplicate=False).check()


def test_exploitability_of_one_mixture_per_seat_is_openspiels_of_that_joint_policy():
    """``[{first: 1}, {second: 1}]`` is the policy that plays ``first`` as player 0 and
    ``second`` as player 1: OpenSpiel's exploitability of that tabular policy; the same
    mixture for both seats is the one-mixture figure."""
    import pyspiel
    from open_spiel.python.algorithms import exploitability as os_exploitability

    from rllib_ext.act.openspiel import exploitability, tabular_policy

    from rllib_ext.checkpoint.views import SpaceView

    class Logits:
        masked = False  # unmasked: Kuhn has no illegal action anyway
        observation_space = SpaceView("Box", (7,))  # Kuhn's observation tensor (the referee reads its size)

        def __init__(self, bet: float) -> None:
            self.bet = bet

        def forward(self, obs):
            return type("Out", (), {"action_dist_inputs": np.array([[0.0, self.bet]] * len(obs))})()

    game = pyspiel.load_game("kuhn_poker")
    first, second = Logits(1.5), Logits(-2.0)
    joint = tabular_policy(game, first)
    rows = [k for k, s in enumerate(joint.states) if s.current_player() == 1]
    joint.action_probability_array[rows] = tabular_policy(game, second).action_probability_array[rows]
    want = os_exploitability.exploitability(game, joint)
    assert exploitability(game, [{first: 1.0}, {second: 1.0}]) == pytest.approx(want, abs=1e-12)
    assert exploitability(game, [{second: 1.0}, {first: 1.0}]) != pytest.approx(want, abs=1e-3)  # seats matter
    mix = {first: 0.3, second: 0.7}
    assert exploitability(game, [mix, mix]) == pytest.approx(exploitability(game, mix), abs=1e-12)
    with pytest.raises(ValueError, match="3 mixtures for a game of 2 players"):
        exploitability(game, [mix, mix, mix])


def test_slot_seats_draw_each_slot_from_the_nash_mixture_of_its_seat(tmp_path):
    """A seat game where snapshot A is the first seat's equilibrium and B the second's (each
    dominant in its seat): with ``slot_seats`` the seat-"0" slots always hold A and the
    seat-"1" slots B; without it (the negative control) every slot draws from the one
    mixture of both seats, and no draw has that pattern."""
    from test_payoff import record_seat_matrix

    from rllib_ext.live.league.engine import League, LeagueSpec
    from rllib_ext.pool.matchmaking import Sampler

    pool = PolicyPool(tmp_path / "pool")
    a, b = (pool.add(pool_policy_dir(tmp_path)).id for _ in range(2))
    # first seat's value: A beats everything in seat 0; in seat 1, B concedes the least
    record_seat_matrix(pool, [a, b], np.array([[0.5, 0.2], [-0.5, -0.8]]))
    pool.record_games(a, b, wins=2, losses=2, return_a=0.0, return_b=0.0)  # even over both seats
    slots = ["opponent_0", "opponent_1", "opponent_2", "opponent_3"]
    seats = {"opponent_0": "0", "opponent_1": "1", "opponent_2": "0", "opponent_3": "1"}

    def draws(slot_seats):
        spec = LeagueSpec(str(pool.path), "main", slots, sample="nash", slot_seats=slot_seats)
        league = League(algo=None, snapshots=None, spec=spec, sampler=Sampler("nash", 0))
        return [league.nash_draw(pool) for _ in range(20)]

    assert all(d == [a, b, a, b] for d in draws(seats))
    support = {i for i, p in pool.meta_strategy("main").items() if p > 0}
    assert all(set(d) <= support and d != [a, b, a, b] for d in draws(None))


def test_seat_mapping_routes_each_seat_to_its_slots_and_refuses_a_slot_without_seat():
    slots = ["opponent_0", "opponent_1", "opponent_2", "opponent_3"]
    seats = {"opponent_0": "0", "opponent_1": "1", "opponent_2": "0", "opponent_3": "1"}
    mapping = seat_mapping("main", slots, slot_seats=seats)
    seen = set()
    for k in range(200):
        episode = type("Episode", (), {"id_": f"episode-{k}"})()
        got = {agent: mapping(agent, episode) for agent in (0, 1)}
        assert sorted(got.values()).count("main") == 1
        for agent, policy in got.items():
            if policy != "main":
                assert seats[policy] == str(agent), (agent, policy)
                seen.add(policy)
    assert seen == set(slots)
    with pytest.raises(ValueError, match="slot 'opponent_3' has no seat"):
        seat_mapping("main", slots, slot_seats={s: seats[s] for s in slots[:3]})


def test_seat_mapping_self_share_puts_main_in_both_seats_in_that_share_of_episodes():
    slots = ["opponent_0", "opponent_1"]
    mapping = seat_mapping("main", slots, self_share=0.4)
    both = 0
    for k in range(2000):
        episode = type("Episode", (), {"id_": f"episode-{k}"})()
        got = [mapping(agent, episode) for agent in (0, 1)]
        assert got.count("main") >= 1 and [mapping(agent, episode) for agent in (0, 1)] == got  # per episode
        both += got == ["main", "main"]
    assert abs(both / 2000 - 0.4) < 0.05, both
    never = seat_mapping("main", slots)  # the default: main never plays itself
    assert all(sorted(never(a, type("E", (), {"id_": f"e{k}"})()) for a in (0, 1)).count("main") == 1
               for k in range(300))
    for bad in (-0.1, 1.5):
        with pytest.raises(InvalidArgumentError, match=r"self_share=.*in \[0, 1\]"):
            seat_mapping("main", slots, self_share=bad)


def test_a_match_seats_each_side_once_when_training_maps_main_to_every_seat():
    """With ``seat_mapping(self_share=1.0)`` every training episode is main against itself;
    an evaluation match through that mapping must still put ``a`` in one seat and ``b`` in
    the other. Kuhn, ``a`` always bets and ``b`` always passes: ``a`` wins every game from
    either seat. Had ``a`` played both seats (the negative case), its returns would sum to
    0 and every game would be a draw, in a seat "0,1"."""
    pytest.importorskip("pyspiel")
    from rllib_ext.live.league.arena import Arena, play_match
    from rllib_ext.live.league.play import default_outcome

    class Always:
        def __init__(self, action: int) -> None:
            self.action = action

        def compute_actions(self, obs: Any, explore: bool = True, rng: Any = None) -> Any:
            return np.full(len(obs), self.action), {}

    arena = Arena(OpenSpielGame, {"game": "kuhn_poker", "illegal_penalty": False},
                  seat_mapping("main", ["opponent_0"], self_share=1.0), "main", default_outcome, batch=16)
    got = play_match(arena, [], Always(1), Always(0), "a", "b", 40, np.random.default_rng(0))
    assert got.games == 40 and got.seats == {"0", "1"}, got.seats
    assert got.tallies[("a", "b")][:3] == [40, 0, 0], got.tallies
    assert sorted(k for k in got.tallies if k != ("a", "b")) == [(seat_row("a", "0"), seat_row("b", "1")),
                                                                (seat_row("a", "1"), seat_row("b", "0"))]


def test_slot_seats_need_nash_and_name_slots():
    from rllib_ext import PolicyNotFoundError
    from rllib_ext.live.league.engine import LeagueSpec, check_specs

    ids = ["main", "opponent_0", "opponent_1"]
    with pytest.raises(ValueError, match="slot_seats=.*needs sample='nash', not 'pfsp'"):
        check_specs(None, LeagueSpec("/p", "main", ids[1:], sample="pfsp", slot_seats={"opponent_0": "0"}), ids)
    with pytest.raises(PolicyNotFoundError, match="opponent_9"):
        check_specs(None, LeagueSpec("/p", "main", ids[1:], sample="nash", slot_seats={"opponent_9": "0"}), ids)


# ---------------------------------------------------------------- what evaluation costs
class Counting(Recording):
    """Recording that also counts its own ``step()`` calls."""

    def __init__(self, deals: List[str]) -> None:
        super().__init__(deals)
        self.steps = 0

    def step(self, action):
        self.steps += 1
        return super().step(action)


def counted_matches(**spec: Any) -> Matches:
    m = matches([], **spec)
    m.algo.env_creator = lambda _: Counting([])
    return m


def test_every_game_and_env_step_is_counted_and_the_table_holds_no_more(tmp_path):
    m = counted_matches(games=20, min_games=40, pairs=10, batch=20)
    pool, ids = pool_with(tmp_path, [StandIn(0.5), StandIn(0.2), StandIn(0.8)], m)
    played = sum(m.play_due(pool, ids) for _ in range(5))
    assert played == m.games == 3 * 40 + 3 * 40  # three pairs, then each snapshot against itself (seat rows)
    assert m.env_steps == sum(env.steps for env in m.envs) >= 2 * m.games  # a Kuhn game is 2 or 3 moves
    table, seats = pool.payoff(ids), pool.payoff([seat_row(i, s) for s in ("0", "1") for i in ids])
    assert int(np.triu(table.games).sum()) + int(np.trace(seats.games[:3, 3:])) == m.games


def test_max_share_stops_evaluation_at_its_share_of_all_env_steps(tmp_path):
    """Evaluation plays while it has spent at most ``max_share`` of training plus
    evaluation; without the cap (the negative control) it plays everything due."""
    for share, capped in ((0.25, True), (None, False)):
        m = counted_matches(games=20, min_games=400, pairs=100, batch=20, max_share=share)
        (tmp_path / str(share)).mkdir()
        pool, ids = pool_with(tmp_path / str(share), [StandIn(0.5), StandIn(0.2), StandIn(0.8)], m)
        training = 1000
        while m.play_due(pool, ids, training_env_steps=training):
            pass
        spent = m.env_steps / (training + m.env_steps)
        if capped:
            assert 0.25 <= spent < 0.25 + 60 / (training + m.env_steps)  # stops within one pair's 20 games
        else:
            assert m.games == 6 * 400 and spent > 0.5


def test_support_focus_tops_up_only_the_nash_support_and_the_newest(tmp_path):
    """Kuhn's first player who always bets (p=1) and one who always checks (p=0) are both
    dominated here by mixed play: with ``focus="support"`` only the pairs within the Nash
    support and the newest snapshot reach ``min_games``; every other pair stays at
    ``floor_games``. The negative control, ``focus="all"``, plays every pair to ``min_games``."""
    players = [StandIn(1.0), StandIn(0.0), StandIn(0.33), StandIn(0.6)]
    for focus in ("support", "all"):
        m = counted_matches(games=20, min_games=200, pairs=100, batch=20, focus=focus, floor_games=20)
        (tmp_path / focus).mkdir()
        pool, ids = pool_with(tmp_path / focus, players, m)
        while m.play_due(pool, ids, of=["main"]):
            pass
        games = pool.payoff(ids).games
        if focus == "all":
            assert all(games[i, j] == 200 for i in range(4) for j in range(4) if i != j)
            continue
        support = m.support(pool, ids, ["main"]) | {ids[-1]}
        assert 1 < len(support) < 4, support
        for i in range(4):
            for j in range(i + 1, 4):
                inside = ids[i] in support and ids[j] in support
                assert games[i, j] == (200 if inside else 20), (ids[i], ids[j], games[i, j], support)


# ---------------------------------------------------------------- remote matches (Ray tasks)
class StepLog:
    """Makes Kuhn poker envs that append one byte to ``log`` per ``step()``, in whichever
    process plays them, and (with ``gate``) wait until that file exists before playing."""

    def __init__(self, log: str, gate: str = "") -> None:
        self.log, self.gate = log, gate

    def __call__(self, _config: Any) -> Any:
        import os
        import time

        while self.gate and not os.path.exists(self.gate):
            time.sleep(0.02)
        log = self.log

        class Logged(Recording):
            def step(self, action):
                with open(log, "ab") as f:
                    f.write(b".")
                return super().step(action)

        return Logged([])


class StandIns:
    """A picklable policy loader: each snapshot id acts as a :class:`StandIn` of its own ``p``."""

    def __init__(self, bets: Dict[str, float]) -> None:
        self.bets = bets

    def __call__(self, entry_id: str, path: str) -> StandIn:
        return StandIn(self.bets[entry_id])


class SkipsRecording(Matches):
    """The negative control: counts every finished match but never writes it into the pool."""

    def record(self, pool, a, b, result):
        self.games += result.games
        self.env_steps += result.env_steps
        self.seats |= result.seats
        return result.games


def remote_matches(tmp_path, name: str, kind: type = Matches, gate: str = "", **spec: Any):
    """A pool of three stand-ins and remote Matches over it, logging env steps to ``name.log``."""
    pool = PolicyPool(tmp_path / name)
    ids = [pool.add(pool_policy_dir(tmp_path, f"{name}-src")).id for _ in range(3)]
    m = matches([], kind, remote=True, **spec)
    m.algo.env_creator = StepLog(str(tmp_path / f"{name}.log"), gate)
    m.load = StandIns(dict(zip(ids, (0.5, 0.2, 0.8))))
    return m, pool, ids


def play_out(m: Matches, pool, ids, training: int = 0) -> int:
    """Call play_due (as after each iteration) until nothing is due or in flight; the games recorded."""
    played = 0
    for _ in range(2000):
        played += m.play_due(pool, ids, training_env_steps=training)
        if not m.pending and not m.due(pool, ids):
            return played
        time.sleep(0.02)
    raise AssertionError("remote matches did not finish")


def table_games(pool, ids) -> int:
    """The games the table holds: every pair once, plus each snapshot against itself (seat rows)."""
    table, seats = pool.payoff(ids), pool.payoff([seat_row(i, s) for s in ("0", "1") for i in ids])
    return int(np.triu(table.games).sum()) + int(np.trace(seats.games[:3, 3:]))


@pytest.mark.parametrize("kind", [Matches, SkipsRecording])
def test_remote_matches_record_every_game_they_count(ray_session, tmp_path, kind):
    """Played as Ray tasks, the table holds exactly the games counted and the env steps
    counted are the ones the envs took; the negative control, which counts without
    recording, leaves the table short."""
    m, pool, ids = remote_matches(tmp_path, "pool", kind, games=20, min_games=40, pairs=4, batch=20)
    played = 0
    for _ in range(5):  # as after five iterations, each waiting for its matches to finish
        played += m.play_due(pool, ids) + m.collect(pool, wait=True)
    assert not m.due(pool, ids) or kind is SkipsRecording
    assert played == m.games > 0 and m.env_steps == (tmp_path / "pool.log").stat().st_size
    if kind is SkipsRecording:
        assert table_games(pool, ids) < m.games
    else:
        assert table_games(pool, ids) == m.games == 6 * 40  # three pairs, then each against itself


def test_a_pair_in_flight_is_not_submitted_again(ray_session, tmp_path):
    """While the tasks wait behind a closed gate, more calls submit nothing new (``due``
    without ``skip``, the negative control, still lists those pairs); each pair ends at
    exactly ``min_games``, not twice that."""
    gate = tmp_path / "gate"
    m, pool, ids = remote_matches(tmp_path, "pool", gate=str(gate), games=20, min_games=20, pairs=10, batch=20)
    m.play_due(pool, ids)
    flight = {pair: p.ref for pair, p in m.pending.items()}
    assert len(flight) == 3 and set(m.due(pool, ids)) == set(flight)
    for _ in range(3):
        assert m.play_due(pool, ids) == 0 and {pair: p.ref for pair, p in m.pending.items()} == flight
    gate.touch()
    play_out(m, pool, ids)
    games = pool.payoff(ids).games
    assert all(games[i, j] == 20 for i in range(3) for j in range(3) if i != j)
    assert table_games(pool, ids) == m.games == 6 * 20


def test_a_resume_keeps_the_budget_exact_with_matches_in_flight(ray_session, tmp_path):
    """A checkpoint taken while matches are in flight holds only the recorded ones; the run
    that is lost records more after it. The resume rewinds the table to the checkpoint's
    and ends with a table that holds exactly the games it counts, each pair at min_games."""
    m, pool, ids = remote_matches(tmp_path, "pool", games=10, min_games=20, pairs=3, batch=10)
    m.play_due(pool, ids)
    m.collect(pool, wait=True)
    m.play_due(pool, ids)  # the second round, in flight
    assert m.pending and table_games(pool, ids) == m.games == 30
    state, table = m.state(), pool.writer_games()
    m.collect(pool, wait=True)  # the lost run records them after its checkpoint
    assert table_games(pool, ids) == 60 != state["games"]  # without the rewind the table would hold more

    resumed = matches([], remote=True, games=10, min_games=20, pairs=3, batch=10)
    resumed.algo.env_creator = StepLog(str(tmp_path / "resumed.log"))
    resumed.load = m.load
    pool.restore_writer_games(table)
    resumed.set_state(state)
    assert table_games(pool, ids) == resumed.games == 30
    play_out(resumed, pool, ids)
    assert table_games(pool, ids) == resumed.games == 6 * 20
    assert resumed.env_steps == state["env_steps"] + (tmp_path / "resumed.log").stat().st_size
    assert all(pool.payoff(ids).games[i, j] == 20 for i in range(3) for j in range(3) if i != j)


def test_stop_cancels_the_matches_in_flight(ray_session, tmp_path):
    import ray

    m, pool, ids = remote_matches(tmp_path, "pool", gate=str(tmp_path / "never"), games=20, min_games=20, batch=20)
    m.play_due(pool, ids)
    refs = [p.ref for p in m.pending.values()]
    m.stop()
    assert not m.pending and m.games == 0
    with pytest.raises((ray.exceptions.TaskCancelledError, ray.exceptions.WorkerCrashedError)):
        ray.get(refs, timeout=30)


def test_max_share_counts_the_games_in_flight():
    """Pending games count as spent, at the measured env steps per game: 100 games of 2.5
    steps against 1000 training steps is 20%, over a 10% share though nothing is recorded
    beyond the first 10 games; without them (the negative control) there is room."""
    from rllib_ext.live.league.evaluation import Pending

    m = matches([], remote=True, max_share=0.1)
    m.games, m.env_steps = 10, 25
    assert m.affordable(1000)
    m.pending[("a", "b")] = Pending(ref=None, games=100)
    assert not m.affordable(1000)


def test_remote_needs_a_cpu_count_of_zero_or_more():
    with pytest.raises(ValueError, match=r"'num_cpus': -1.*must be >= 0"):
        EvaluationSpec(remote=True, num_cpus=-1).check()
    EvaluationSpec(remote=True, num_cpus=0.5).check()
