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
