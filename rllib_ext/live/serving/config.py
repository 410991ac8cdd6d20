"""``config.lightweight()``: an algorithm that only acts, built with zero resources.

Serving's one config method. It reads the restore specs (their spaces come from the
checkpoints), so it sits above :mod:`rllib_ext.live.restore`.
"""

from __future__ import annotations

from typing import Dict

from ...checkpoint.reader import open_checkpoint
from ..restore.feature import specs_of
from ..seam.rllib_types import ConfigT, SpacePair
from . import lightweight as lw


def lightweight(config: ConfigT) -> ConfigT:
    """Zero remote workers, learners and evaluation runners, 0 CPUs for the algorithm.

    With ``restore_policies(...)`` given first, the algorithm holds only the restored
    policies and the training env is not built: their spaces come from the checkpoints.
    Without, the env is kept (nothing else records the spaces). For acting, saving and
    ``save_policy``, not for training.

    Returns:
        The config, for chaining.
    """
    spaces: Dict[str, SpacePair] = {}
    for spec in specs_of(config):
        found = lw.checkpoint_spaces(*open_checkpoint(spec["checkpoint"]), list(spec["policies"]))
        for src, tgt in spec["policies"].items():
            spaces[tgt] = found[src]
    return lw.make_lightweight(config, spaces) if spaces else lw.zero_resources(config)


class ServingConfig:
    """``config.lightweight()``, declared on every ``...Partial`` config."""

    lightweight = lightweight
