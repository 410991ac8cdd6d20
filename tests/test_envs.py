"""SignGame, the demo's env: gymnasium's own checker has nothing to say about it."""

from __future__ import annotations

import warnings

import numpy as np


def test_sign_game_observations_are_float32_inside_their_spaces():
    from gymnasium.utils.passive_env_checker import check_obs

    from rllib_ext.envs import SignGame

    env = SignGame({"obs_dims": [4, 4, 6], "episode_len": 3})
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a gymnasium "WARN: ..." fails the test
        obs, _ = env.reset(seed=0)
        seen = [obs]
        for _ in range(3):
            obs, *_ = env.step({a: 1 for a in env.agents})
            seen.append(obs)
        for step, o in enumerate(seen):
            for agent, x in o.items():
                space = env.observation_spaces[agent]
                assert x.dtype == np.float32 and space.contains(x), f"step {step} {agent}: {x!r} not in {space}"
                check_obs(x, space, "reset" if step == 0 else "step")


def test_open_spiel_game_without_the_penalty_pays_the_games_own_zero_sum_returns():
    """Leduc with always-raise players hits illegal raises: RLlib's env adds -0.1 to the
    offender (not zero-sum: the negative control), ``illegal_penalty: False`` pays the
    game's returns, which sum to zero, and still substitutes a legal action."""
    import pytest

    pytest.importorskip("pyspiel")
    from rllib_ext.envs import OpenSpielGame

    def totals(config):
        env, sums = OpenSpielGame(config), np.zeros(2)
        for _ in range(20):
            obs, _ = env.reset()
            done = False
            while not done:
                obs, rewards, terminated, _, _ = env.step({agent: 2 for agent in obs})  # 2 = raise
                sums += [rewards.get(0, 0.0), rewards.get(1, 0.0)]
                done = terminated["__all__"]
        return sums

    assert abs(totals({"game": "leduc_poker"}).sum()) > 1.0  # the penalties
    assert totals({"game": "leduc_poker", "illegal_penalty": False}).sum() == 0.0


def test_open_spiel_game_deals_by_the_reset_seed():
    """Same seed, same deal (duplicate evaluation matches rely on it); RLlib's own
    ``OpenSpielEnv`` ignores the seed, so without our chance generator the deals of
    seeds 0..49 would differ between two envs (the negative control)."""
    import pytest

    pytest.importorskip("pyspiel")
    from ray.rllib.env.wrappers.open_spiel import OpenSpielEnv

    import pyspiel

    from rllib_ext.envs import OpenSpielGame

    def deals(env):
        out = []
        for seed in range(50):
            env.reset(seed=seed)
            out.append(str(env.state))  # Kuhn's state string is the two cards dealt
        return out

    a, b = OpenSpielGame({"game": "kuhn_poker"}), OpenSpielGame({"game": "kuhn_poker", "illegal_penalty": False})
    assert deals(a) == deals(b)
    assert len(set(deals(a))) == 6  # every Kuhn deal shows up
    raw = OpenSpielEnv(pyspiel.load_game("kuhn_poker"))
    assert deals(raw) != deals(OpenSpielEnv(pyspiel.load_game("kuhn_poker")))
