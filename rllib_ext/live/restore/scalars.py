"""Every module's KL coefficient / log alpha in the algorithm's own checkpoint.

RLlib 2.60's ``Learner.get_state()`` holds neither ``curr_kl_coeffs_per_module`` (PPO,
APPO) nor ``curr_log_alpha`` (SAC), so its own restore resets them; with this feature,
``Algorithm.from_checkpoint`` and a Tune resume of a ``...Partial`` continue exactly.
"""

from __future__ import annotations

from typing import Any, Dict, Mapping, Optional

from ...checkpoint.training_state import SCALARS_KEY
from ..seam.carry_training import algorithm_scalars, set_algorithm_scalars
from ..hooks import Feature
from ..seam.rllib_types import Algorithm


class TrainingScalarsFeature(Feature):
    """Saves and restores the learners' KL coefficients and log alphas."""

    state_key = SCALARS_KEY

    def state(self, algo: Algorithm) -> Optional[Dict[str, Any]]:
        return algorithm_scalars(algo) or None

    def set_state(self, algo: Algorithm, state: Mapping[str, Any]) -> None:
        if state:
            set_algorithm_scalars(algo, state)
