"""Read policy ids and weights out of any RLlib checkpoint, without Ray or torch.

``read_weights`` returns ``{name: numpy array}`` named exactly as RLlib's own getters
name them: ``module.get_state()`` on the new stack, ``policy.get_weights()`` on the old
stack (tf2 policies return a list there; its positions become the names "0", "1", ...).
Reading one policy touches only that policy's files.
"""

from __future__ import annotations

import os
import pickle
from collections import OrderedDict
from typing import Any, Dict, List, Optional

import numpy as np

from ..errors import CheckpointFormatError, not_found
from . import format as fmt
from . import safe_pickle
from .storage import CheckpointDir

Weights = Dict[str, np.ndarray]


def open_checkpoint(path: "str | os.PathLike[str]") -> "tuple[CheckpointDir, fmt.Layout]":
    """Open ``path`` and detect its layout (shared by every reader entry point)."""
    ckpt = CheckpointDir(path)
    return ckpt, fmt.detect(ckpt)


def policy_ids(path: "str | os.PathLike[str]") -> List[str]:
    """The policy (old stack) or module (new stack) ids stored at ``path``, sorted."""
    ckpt, layout = open_checkpoint(path)
    return _ids(ckpt, layout)


def _ids(ckpt: CheckpointDir, layout: fmt.Layout) -> List[str]:
    if layout.kind in (fmt.Kind.POLICY, fmt.Kind.MODULE):
        return [os.path.basename(ckpt.uri.rstrip("/"))]
    base = layout.policies_dir
    if base and not ckpt.is_dir(base):
        return []
    return [d for d in ckpt.listdir(base) if ckpt.is_dir(f"{base}/{d}" if base else d)]


def read_weights(
    path: "str | os.PathLike[str]", policy_id: Optional[str] = None, *, trusted: bool = False
) -> Weights:
    """Return one policy's weights as ``{tensor name: numpy array}``.

    Args:
        path: checkpoint directory (algorithm, multi-module, module or policy checkpoint).
        policy_id: which policy/module; may be omitted when the checkpoint holds one.
        trusted: unpickle with full cloudpickle (imports whatever the file names).

    Raises:
        PolicyNotFoundError: ``policy_id`` is not in the checkpoint (lists what is).
        CheckpointFormatError: the weights file is missing, truncated or not understood.
    """
    ckpt, layout = open_checkpoint(path)
    ids = _ids(ckpt, layout)
    if layout.kind in (fmt.Kind.POLICY, fmt.Kind.MODULE):
        # A checkpoint that *is* one policy: any policy_id names it (its dir name is a guess).
        rel = fmt.weights_file(ckpt, layout, None)
    else:
        if policy_id is None:
            if len(ids) != 1:
                raise not_found("policy", "<none given>", ckpt.uri, ids)
            policy_id = ids[0]
        if policy_id not in ids:
            raise not_found("policy", policy_id, ckpt.uri, ids)
        rel = fmt.weights_file(ckpt, layout, policy_id)
    payload = decode_file(ckpt, rel, trusted=trusted)
    return _extract_weights(payload, layout, ckpt.child(rel))


def decode_file(ckpt: CheckpointDir, rel: str, *, trusted: bool = False) -> Any:
    """Decode one state file by its extension, wrapping every failure in a typed error."""
    data = ckpt.read_bytes(rel)
    where = ckpt.child(rel)
    if not data:
        raise CheckpointFormatError(f"{where}: file is empty")
    if rel.endswith(".pkl"):
        try:
            return safe_pickle.loads(data, trusted=trusted)
        except Exception as e:  # any unpickling failure means a damaged file
            raise CheckpointFormatError(
                f"{where}: truncated or corrupt pickle ({type(e).__name__}: {e})"
            ) from e
    raise CheckpointFormatError(
        f"{where}: this reader cannot decode {os.path.splitext(rel)[1]!r} files yet"
    )


def _extract_weights(payload: Any, layout: fmt.Layout, where: str) -> Weights:
    if layout.stack is fmt.Stack.OLD:
        if not isinstance(payload, dict) or "weights" not in payload:
            raise CheckpointFormatError(f"{where}: policy state has no 'weights' entry")
        raw = payload["weights"]
    else:
        raw = payload
    if isinstance(raw, (list, tuple)):  # tf2 policies: a list in variable order
        raw = OrderedDict((str(i), w) for i, w in enumerate(raw))
    if not isinstance(raw, dict):
        raise CheckpointFormatError(
            f"{where}: expected a mapping of tensor names to arrays, got {type(raw).__name__}"
        )
    out: Weights = OrderedDict()
    for name, value in raw.items():
        if not isinstance(value, np.ndarray):
            raise CheckpointFormatError(
                f"{where}: tensor {name!r} is a {type(value).__name__}, not an array "
                "(written by an unsupported framework or version?)"
            )
        out[str(name)] = value
    return out
