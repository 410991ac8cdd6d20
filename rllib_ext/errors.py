"""One small error hierarchy, so callers can catch every checkpoint problem at once.

Every message names the checkpoint path and what *is* there, so a user can act on it.
"""

from __future__ import annotations

import contextlib
import errno
from typing import Iterable, Iterator, Optional, Tuple, Type, Union


class CheckpointError(Exception):
    """Base class: something about a checkpoint (or its use) is wrong."""


class NotACheckpointError(CheckpointError):
    """The path exists but holds no RLlib (or rllib_ext) checkpoint."""


class NotAPoolError(NotACheckpointError):
    """The path holds other files and no policy pool (no ``pool.json``): it is left alone."""


class CheckpointFormatError(CheckpointError):
    """A file of the checkpoint is missing, truncated, or of an unknown version."""


class PoolNamespaceError(CheckpointError):
    """A writer asked to change another writer's entries where no lock keeps them apart (object storage)."""


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


class TrainingStateError(CheckpointError):
    """A source's training state (optimizers, KL coefficient, alpha) does not fit the target."""


class MissingTrainingStateError(TrainingStateError):
    """``training_state=True``, but the source lacks (part of) what the target keeps."""


class UnsupportedFilterError(CheckpointError, ValueError):
    """Observation-filter statistics of a kind rllib_ext does not carry (nested: Dict/Tuple spaces)."""


class LearnerBusyError(CheckpointError, TimeoutError):
    """An asynchronous learner (APPO, IMPALA) did not finish its update in flight in time; nothing was set."""


class InvalidArgumentError(CheckpointError, ValueError, TypeError):
    """An argument does not fit the call (an empty or colliding ``policies``, a string where ids go, ``mapping=`` on one stack)."""


class RecurrentStateError(InvalidArgumentError):
    """``state=`` does not fit the policy: given to one without recurrent state, or missing for a recurrent one."""


class MetaStrategyError(CheckpointError, ValueError):
    """A pool's payoff table cannot give the meta-strategy asked for (not zero-sum, seats unplayed, the LP failed)."""


class LightweightAlgorithmError(CheckpointError, RuntimeError):
    """A lightweight algorithm (built to act: no env, no dynamics) was asked to step its env or to train."""


class UnsafePickleError(CheckpointError):
    """Safe mode met an object it will not build; pass trusted=True to allow it."""


class PolicyClassError(CheckpointFormatError):
    """policy.json's policy_class is not an RLModule (new stack) / Policy (old stack) class; nothing was called."""


@contextlib.contextmanager
def malformed(
    where: str,
    what: str,
    hint: str = "",
    catch: Union[Type[BaseException], Tuple[Type[BaseException], ...]] = Exception,
) -> Iterator[None]:
    """Whatever the block raises is the file's fault: a ``CheckpointFormatError`` naming it.

    The message is ``'<where>: <what> (<error type>: <error>)<hint>'``. A ``CheckpointError``
    raised inside passes unchanged: it already says what is wrong.
    """
    try:
        yield
    except CheckpointError:
        raise
    except catch as e:
        raise CheckpointFormatError(f"{where}: {what} ({type(e).__name__}: {e}){hint}") from e


def os_problem(e: OSError) -> str:
    """What an ``OSError`` on a checkpoint path means, and what to do about it."""
    if e.errno == errno.ENOENT:
        return "no such file or directory"
    if e.errno == errno.ELOOP:
        return "symbolic link loop (a link that leads back to itself); point it at the real file or directory"
    if e.errno in (errno.EACCES, errno.EPERM):
        return "permission denied; make it readable by this user (chmod/chown)"
    if e.errno == errno.EISDIR:
        return "is a directory where a file was expected"
    if e.errno == errno.ENOTDIR:
        return "a file where a directory was expected"
    return f"cannot read: {e.strerror or e}"


@contextlib.contextmanager
def unreadable(path: str, doing: str = "cannot read", missing: Optional[str] = "file missing from the checkpoint") -> Iterator[None]:
    """An ``OSError`` in the block is the checkpoint's: a ``CheckpointFormatError`` naming ``path``.

    The message is ``'<path>: <missing>'`` for a missing file (when ``missing`` is given),
    else ``'<path>: <doing>: <what the OS error means>'`` (:func:`os_problem`).
    """
    try:
        yield
    except FileNotFoundError as e:
        if missing is None:
            raise CheckpointFormatError(f"{path}: {doing}: {os_problem(e)}") from e
        raise CheckpointFormatError(f"{path}: {missing}") from e
    except OSError as e:
        raise CheckpointFormatError(f"{path}: {doing}: {os_problem(e)}") from e


def did_you_mean(name: str, choices: Iterable[str]) -> str:
    """Return ' (did you mean 'x'?)' for a close match, else ''."""
    import difflib  # only when an error is being built: reading never pays for it
    close = difflib.get_close_matches(str(name), [str(c) for c in choices], n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""


def not_found(kind: str, name: str, where: str, available: Iterable[str]) -> PolicyNotFoundError:
    """Build the standard 'id not in X; available: ...' error."""
    available = sorted(str(a) for a in available)
    listed = ", ".join(available) if available else "(none)"
    return PolicyNotFoundError(
        f"{kind} {name!r} not in {where}; available: {listed}{did_you_mean(name, available)}"
    )
