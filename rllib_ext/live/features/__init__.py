"""The features a ``...Partial`` algorithm carries: one object per capability, with hooks.

:class:`~rllib_ext.live.partial.PartialAlgorithm` builds one of each (those the config
asks for) and calls their hooks in this order: the partial restore first (a league
starts from the restored weights), then the training scalars, then the league. A new
capability is one new module with a :class:`~.base.Feature` subclass and one line here.
"""

from __future__ import annotations

from typing import Tuple, Type

from .base import Feature
from .league import LeagueFeature
from .population import PopulationFeature
from .restore import RestoreFeature
from .training_scalars import TrainingScalarsFeature

FEATURES: Tuple[Type[Feature], ...] = (
    RestoreFeature,
    TrainingScalarsFeature,
    LeagueFeature,
    PopulationFeature,
)
