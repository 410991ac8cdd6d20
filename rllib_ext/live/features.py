"""The features a ``...Partial`` algorithm carries, registered: one line per feature here.

:class:`~rllib_ext.live.partial.PartialAlgorithm` builds one of each (those the config
asks for) and calls their hooks in this order: the partial restore first (a league
starts from the restored weights), then the training scalars, the league, the
population. :class:`FeatureConfig` declares every feature's config methods, one base per
feature. A new capability is its own room under ``live/`` plus its lines here; the base
itself names no feature.
"""

from __future__ import annotations

from typing import Tuple, Type

from .hooks import Feature
from .league.feature import LeagueConfig, LeagueFeature
from .population.feature import PopulationConfig, PopulationFeature
from .restore.feature import RestoreConfig, RestoreFeature
from .restore.scalars import TrainingScalarsFeature
from .serving.config import ServingConfig

FEATURES: Tuple[Type[Feature], ...] = (
    RestoreFeature,
    TrainingScalarsFeature,
    LeagueFeature,
    PopulationFeature,
)


class FeatureConfig(RestoreConfig, ServingConfig, LeagueConfig, PopulationConfig):
    """Every feature's config methods (``restore_policies()``, ``lightweight()``,
    ``snapshot_policies()``, ``league()``, ``population()``), declared."""
