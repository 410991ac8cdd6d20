"""Checkpoint files as plain data. Imports neither ray nor torch nor tensorflow.

Modules, bottom to top (each imports only those above it in this list):
storage, lazy, safe_pickle, tensors, atomic, safetensors, format, views, spaces, policy_file,
reader, inspection, filters, export, pickle_patch, merge_filters, merge, diff, upload.
"""

from .export import export_npz, export_torch_state_dict, extract_policy
from .filters import FilterStats, ObservationFilters, read_filters
from .inspection import inspect, read_policy
from .merge import MergeReport, merge_checkpoints
from .policy_file import read_policy_dir, write_policy_dir
from .reader import policy_ids, read_weights
from .views import CheckpointView, PolicyView, SpaceView

__all__ = [
    "CheckpointView",
    "FilterStats",
    "ObservationFilters",
    "MergeReport",
    "PolicyView",
    "SpaceView",
    "export_npz",
    "export_torch_state_dict",
    "extract_policy",
    "inspect",
    "merge_checkpoints",
    "policy_ids",
    "read_filters",
    "read_policy",
    "read_policy_dir",
    "read_weights",
    "write_policy_dir",
]
