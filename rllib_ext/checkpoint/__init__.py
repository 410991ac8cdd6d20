"""Checkpoint files as plain data. Imports neither ray nor torch nor tensorflow.

Note: ``inspect`` here is the function; the module is ``rllib_ext.checkpoint.inspect``
(reach its other names with ``from rllib_ext.checkpoint.inspect import SpaceView``).
"""

from .inspect import CheckpointView, PolicyView, SpaceView, inspect, load_policy
from .merge import MergeReport, merge_checkpoints
from .policy_file import export_npz, export_torch_state_dict, extract_policy, read_policy_dir, write_policy_dir
from .reader import policy_ids, read_weights

__all__ = [
    "CheckpointView",
    "MergeReport",
    "PolicyView",
    "SpaceView",
    "export_npz",
    "export_torch_state_dict",
    "extract_policy",
    "inspect",
    "load_policy",
    "merge_checkpoints",
    "policy_ids",
    "read_policy_dir",
    "read_weights",
    "write_policy_dir",
]
