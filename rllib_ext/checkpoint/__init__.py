"""Checkpoint files as plain data. Imports neither ray nor torch nor tensorflow."""

from .reader import policy_ids, read_weights

__all__ = ["policy_ids", "read_weights"]
