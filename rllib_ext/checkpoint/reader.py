"""Read policy ids and weights out of any RLlib checkpoint, without Ray or torch.

``read_weights`` returns ``{name: numpy array}`` named exactly as RLlib's own getters
name them: ``module.get_state()`` on the new stack, ``policy.get_weights()`` on the old
stack (tf2 policies return a list there; its positions become the names "0", "1", ...).
Reading one policy touches only that policy's files. State files may be pickles
(``.pkl``), msgpack (``.msgpack``/``.msgpck``), a ``torch.save`` zip (``.pt``, layout 1.2)
or rllib_ext's ``weights.safetensors``; none of them needs Ray or torch to read.

A read is one pass, each step a function in a module of its own, called here in order and
never calling back up: open (:class:`.storage.CheckpointDir`) -> layout
(:func:`.format.detect`) -> locate (:func:`.locate.resolve_policy`) -> decode
(:func:`.decode.decode_weights`). ``tests/test_layout.py`` keeps the step modules
importing only downward; ``tests/test_reader.py`` pins the order of the calls.
"""

from __future__ import annotations

import os
from typing import List, Optional, Tuple

from .decode import LazyWeights, decode_file, decode_weights, extract_weights
from .format import Layout, detect
from .locate import ids_in, resolve_policy
from .storage import CheckpointDir
from .tensors import Weights

# Step functions re-exported for callers that import them from here (the reader's names
# since 0.1); new code imports them from their step's module.
__all__ = [
    "LazyWeights", "decode_file", "extract_weights", "ids_in", "open_checkpoint", "policy_ids",
    "read_opened", "read_weights", "resolve_policy",
]


def open_checkpoint(path: "str | os.PathLike[str]") -> Tuple[CheckpointDir, Layout]:
    """Open ``path`` and detect its layout: the first two steps, shared by every entry point."""
    ckpt = CheckpointDir(path)
    return ckpt, detect(ckpt)


def policy_ids(path: "str | os.PathLike[str]") -> List[str]:
    """The policy (old stack) or module (new stack) ids stored at ``path``, sorted.

    Raises as :func:`read_weights` (no policy is read)."""
    ckpt = CheckpointDir(path)
    return ids_in(ckpt, detect(ckpt))


def read_weights(
    path: "str | os.PathLike[str]", policy_id: Optional[str] = None, *, trusted: bool = False
) -> Weights:
    """Return one policy's weights as ``{tensor name: numpy array}``.

    Args:
        path: checkpoint directory (algorithm, multi-module, module or policy checkpoint).
        policy_id: which policy/module; may be omitted when the checkpoint holds one.
        trusted: unpickle with plain pickle, which imports and runs whatever the file
            names; only for files you trust (safe mode turns foreign objects into
            inert placeholders).

    Raises:
        InvalidArgumentError: ``path`` is not a str or ``os.PathLike``.
        NotACheckpointError: ``path`` holds no checkpoint.
        PolicyNotFoundError: ``policy_id`` is not in the checkpoint (lists what is).
        CheckpointFormatError: the weights file is missing, truncated or not understood.
        UnsafePickleError: a tensor is an object safe mode does not build.
        MissingDependencyError: a msgpack checkpoint without the msgpack package.
    """
    ckpt = CheckpointDir(path)                            # open
    layout = detect(ckpt)                                 # layout
    _, rel = resolve_policy(ckpt, layout, policy_id)      # locate
    return decode_weights(ckpt, layout, rel, trusted=trusted)  # decode


def read_opened(
    ckpt: CheckpointDir, layout: Layout, policy_id: Optional[str] = None, *, trusted: bool = False
) -> Weights:
    """:func:`read_weights` on a checkpoint already opened (its last two steps; no second metadata read)."""
    _, rel = resolve_policy(ckpt, layout, policy_id)
    return decode_weights(ckpt, layout, rel, trusted=trusted)
