"""Checkpoint files as plain data. Imports neither ray nor torch nor tensorflow.

Note: ``inspect`` here is the function; the module is ``rllib_ext.checkpoint.inspect``
(reach its other names with ``from rllib_ext.checkpoint.inspect import SpaceView``).
"""

from .inspect import CheckpointView, PolicyView, SpaceView, inspect
from .reader import policy_ids, read_weights

__all__ = ["CheckpointView", "PolicyView", "SpaceView", "inspect", "policy_ids", "read_weights"]
