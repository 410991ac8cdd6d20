"""A tiny multi-agent env for the demo, tests and benches.

It lives in the package (not in examples/) so that remote Ray workers can import it.
Each agent sees its own Box observation (sizes may differ per agent) and is rewarded
for choosing action 1 when the first observation entry is positive, else action 0:
learnable in a few iterations, so "did training change the weights?" is meaningful.
"""

from __future__ import annotations

from typing import Any, Dict, Optional

import gymnasium as gym
import numpy as np
from ray.rllib.env.multi_agent_env import MultiAgentEnv


class SignGame(MultiAgentEnv):
    """Agents ``agent_<i>``; ``env_config = {"obs_dims": [4, 4, 6], "episode_len": 10}``.

    ``"obs_offset": 5.0`` shifts every observation (and its space) by that much, so that an
    observation filter's statistics matter; the reward still reads the unshifted sign.
    ``"box_actions": k`` gives every agent a ``Box(-1, 1, (k,))`` action instead of
    ``Discrete(2)``, rewarded for ``action[0]`` near the sign of the first observation entry.
    """

    def __init__(self, config: Optional[Dict[str, Any]] = None):
        super().__init__()
        config = dict(config or {})
        dims = list(config.get("obs_dims", [4, 4, 4]))
        self.episode_len = int(config.get("episode_len", 10))
        self.offset = float(config.get("obs_offset", 0.0))
        self.agents = self.possible_agents = [f"agent_{i}" for i in range(len(dims))]
        image = tuple(int(d) for d in config.get("image_obs") or ())
        self.observation_spaces = {
            a: gym.spaces.Box(self.offset - 1.0, self.offset + 1.0, image or (d,), np.float32)
            for a, d in zip(self.agents, dims)
        }
        box = int(config.get("box_actions") or 0)
        self.action_spaces = {
            a: gym.spaces.Box(-1.0, 1.0, (box,), np.float32) if box else gym.spaces.Discrete(2) for a in self.agents
        }
        self._rng = np.random.default_rng(config.get("seed"))
        self._t = 0
        self._obs: Dict[str, np.ndarray] = {}

    def _observe(self) -> Dict[str, np.ndarray]:
        self._obs = {
            a: self._rng.uniform(-1, 1, self.observation_spaces[a].shape).astype(np.float32)
            for a in self.agents
        }
        return {a: (o + np.float32(self.offset)).astype(np.float32) for a, o in self._obs.items()}

    def reset(self, *, seed: Optional[int] = None, options: Optional[dict] = None):
        if seed is not None:
            self._rng = np.random.default_rng(seed)
        self._t = 0
        return self._observe(), {}

    def _reward(self, agent: str, act: Any) -> float:
        sign = np.ravel(self._obs[agent])[0] > 0
        if isinstance(self.action_spaces[agent], gym.spaces.Box):
            return -abs(float(np.ravel(act)[0]) - (1.0 if sign else -1.0))
        return float(int(act) == int(sign))

    def step(self, action_dict):
        rewards = {a: self._reward(a, act) for a, act in action_dict.items()}
        self._t += 1
        done = self._t >= self.episode_len
        obs = self._observe()
        terminateds = {a: done for a in action_dict}
        terminateds["__all__"] = done
        truncateds = {a: False for a in action_dict}
        truncateds["__all__"] = False
        return obs, rewards, terminateds, truncateds, {}


def agent_to_policy(agent_id: str, *args: Any, **kwargs: Any) -> str:
    """Map ``agent_<i>`` to ``policy_<i>`` (works for both API stacks' signatures)."""
    return "policy_" + str(agent_id).split("_", 1)[1]
