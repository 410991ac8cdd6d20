"""One small error hierarchy, so callers can catch every checkpoint problem at once.

Every message names the checkpoint path and what *is* there, so a user can act on it.
"""

from __future__ import annotations

import difflib
from typing import Iterable


class CheckpointError(Exception):
    """Base class: something about a checkpoint (or its use) is wrong."""


class NotACheckpointError(CheckpointError):
    """The path exists but holds no RLlib (or rllib_ext) checkpoint."""


class CheckpointFormatError(CheckpointError):
    """A file of the checkpoint is missing, truncated, or of an unknown version."""


class PolicyNotFoundError(CheckpointError, KeyError):
    """A policy / module id is not where the caller expected it."""

    def __str__(self) -> str:  # KeyError would repr() the message
        return str(self.args[0]) if self.args else ""


class ShapeMismatchError(CheckpointError, ValueError):
    """Tensor names or shapes of the source do not fit the target."""


class MigrationError(ShapeMismatchError):
    """An old-stack policy's model does not map onto the new-stack module."""


class MissingDependencyError(CheckpointError, ImportError):
    """An optional package (msgpack, safetensors, torch) is needed for this file."""


class UnsupportedRayError(MissingDependencyError):
    """The installed Ray is outside the releases the live features support (the message names both)."""


class UnsupportedModelError(CheckpointError):
    """A policy's model is not one NumpyPolicy / export_onnx computes exactly (the message names why)."""


class UnsafePickleError(CheckpointError):
    """Safe mode met an object it will not build; pass trusted=True to allow it."""


def did_you_mean(name: str, choices: Iterable[str]) -> str:
    """Return ' (did you mean 'x'?)' for a close match, else ''."""
    close = difflib.get_close_matches(str(name), [str(c) for c in choices], n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""


def not_found(kind: str, name: str, where: str, available: Iterable[str]) -> PolicyNotFoundError:
    """Build the standard 'id not in X; available: ...' error."""
    available = sorted(str(a) for a in available)
    listed = ", ".join(available) if available else "(none)"
    return PolicyNotFoundError(
        f"{kind} {name!r} not in {where}; available: {listed}{did_you_mean(name, available)}"
    )
