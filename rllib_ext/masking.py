"""A PPO module that plays legal actions only: the action mask comes in the observation.

Why: RLlib's ``OpenSpielEnv`` replaces an action the game forbids by a random legal one.
A policy that puts probability on illegal actions is then a different policy from the one
its logits describe, and judging it (``exploitability``) needs a rule for that mass. A
policy that masks the illegal actions itself has no such mass: what trains, what is
snapshotted, what ``NumpyPolicy`` and the ONNX export compute and what OpenSpiel judges are
one policy.

RLlib's action-masking pattern (``ray/rllib/examples/rl_modules/classes/
action_masking_rlm.py``): the observation is ``{"observations": x, "action_mask": m}`` with
``m`` 1.0 per legal action (``OpenSpielGame`` with ``"action_mask": True``); the networks
are the default PPO ones on ``x`` alone (so its weights have the default module's names),
and every forward pass adds ``max(log m, FLOAT_MIN)`` to the logits.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Dict, Optional, Tuple

import gymnasium as gym
from ray.rllib.algorithms.ppo.torch.default_ppo_torch_rl_module import DefaultPPOTorchRLModule
from ray.rllib.core.columns import Columns
from ray.rllib.utils.torch_utils import FLOAT_MIN

from .errors import InvalidArgumentError

if TYPE_CHECKING:
    import torch

#: The two keys of a masked observation (RLlib's action-masking layout).
OBSERVATIONS, ACTION_MASK = "observations", "action_mask"


class MaskedPPOTorchRLModule(DefaultPPOTorchRLModule):
    """RLlib's default PPO module on ``obs["observations"]``, its logits masked by ``obs["action_mask"]``.

    Use it with ``RLModuleSpec(module_class=MaskedPPOTorchRLModule)`` (or
    ``config.rl_module(rl_module_spec=...)``) on an env whose observations are
    ``Dict({"observations": Box, "action_mask": Box(0, 1, (n,))})``.
    """

    def __init__(self, *, observation_space: Optional[gym.Space] = None, **kwargs: Any) -> None:
        if not (isinstance(observation_space, gym.spaces.Dict)
                and set(observation_space.spaces) == {OBSERVATIONS, ACTION_MASK}):
            raise InvalidArgumentError(
                f"MaskedPPOTorchRLModule(observation_space=...): got {observation_space}; it needs "
                f"Dict({{{OBSERVATIONS!r}: Box, {ACTION_MASK!r}: Box(0, 1, (n,))}}) (e.g. OpenSpielGame "
                "with env_config action_mask=True)")
        self.masked_observation_space = observation_space
        # The default module builds its networks for the observations without the mask.
        super().__init__(observation_space=observation_space[OBSERVATIONS], **kwargs)

    def setup(self) -> None:
        super().setup()
        # The env's space again (the catalog was made on the inner one): what connectors and
        # checkpoints see is what the env gives.
        self.observation_space = self.masked_observation_space

    def _forward_inference(self, batch: Dict[str, Any], **kwargs: object) -> Dict[str, Any]:
        mask, batch = _split(batch)
        return _masked(super()._forward_inference(batch, **kwargs), mask)

    def _forward_exploration(self, batch: Dict[str, Any], **kwargs: object) -> Dict[str, Any]:
        mask, batch = _split(batch)
        return _masked(super()._forward_exploration(batch, **kwargs), mask)

    def _forward_train(self, batch: Dict[str, Any], **kwargs: object) -> Dict[str, Any]:
        mask, batch = _split(batch)
        return _masked(super()._forward_train(batch, **kwargs), mask)

    def compute_values(self, batch: Dict[str, Any], embeddings: Optional[torch.Tensor] = None) -> Any:
        if isinstance(batch[Columns.OBS], dict):
            _, batch = _split(batch)
        return super().compute_values(batch, embeddings)


def _split(batch: Dict[str, Any]) -> Tuple[torch.Tensor, Dict[str, Any]]:
    """(the mask, a shallow copy of the batch whose observations are the unmasked ones)."""
    obs = batch[Columns.OBS]
    if not isinstance(obs, dict) or OBSERVATIONS not in obs or ACTION_MASK not in obs:
        got = sorted(obs) if isinstance(obs, dict) else type(obs).__name__
        raise InvalidArgumentError(f"MaskedPPOTorchRLModule: the batch's observations are {got}; they must be a dict "
                                   f"with {OBSERVATIONS!r} and {ACTION_MASK!r}")
    return obs[ACTION_MASK], dict(batch, **{Columns.OBS: obs[OBSERVATIONS]})


def _masked(out: Dict[str, Any], mask: torch.Tensor) -> Dict[str, Any]:
    """The output with ``max(log mask, FLOAT_MIN)`` added to its logits (RLlib's masking)."""
    import torch

    out[Columns.ACTION_DIST_INPUTS] = out[Columns.ACTION_DIST_INPUTS] + torch.clamp(torch.log(mask), min=FLOAT_MIN)
    return out
