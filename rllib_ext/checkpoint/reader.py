"""Read policy ids and weights out of any RLlib checkpoint, without Ray or torch.

``read_weights`` returns ``{name: numpy array}`` named exactly as RLlib's own getters
name them: ``module.get_state()`` on the new stack, ``policy.get_weights()`` on the old
stack (tf2 policies return a list there; its positions become the names "0", "1", ...).
Reading one policy touches only that policy's files. State files may be pickles
(``.pkl``), msgpack (``.msgpack``/``.msgpck``), a ``torch.save`` zip (``.pt``, layout 1.2)
or rllib_ext's ``weights.safetensors``; none of them needs Ray or torch to read.
"""

from __future__ import annotations

import os
from collections import OrderedDict
from typing import Any, Dict, List, Literal, Optional, Tuple, Union, overload

import numpy as np

from ..errors import CheckpointFormatError, UnsafePickleError, malformed, not_found
from . import format as fmt
from .codecs import safe_pickle
from .lazy import LazyArray
from .storage import CheckpointDir, Source
from .tensors import Weights, by_position


def open_checkpoint(path: "str | os.PathLike[str]") -> "tuple[CheckpointDir, fmt.Layout]":
    """Open ``path`` and detect its layout (shared by every reader entry point)."""
    ckpt = CheckpointDir(path)
    return ckpt, fmt.detect(ckpt)


def policy_ids(path: "str | os.PathLike[str]") -> List[str]:
    """The policy (old stack) or module (new stack) ids stored at ``path``, sorted.

    Raises as :func:`read_weights` (no policy is read)."""
    ckpt, layout = open_checkpoint(path)
    return ids_in(ckpt, layout)


def ids_in(ckpt: CheckpointDir, layout: fmt.Layout) -> List[str]:
    """:func:`policy_ids` of a checkpoint already opened with :func:`open_checkpoint`."""
    if layout.kind is fmt.Kind.SINGLE_POLICY:
        return [str(layout.metadata.get("policy_id") or os.path.basename(ckpt.uri.rstrip("/")))]
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
    ckpt, layout = open_checkpoint(path)
    return read_opened(ckpt, layout, policy_id, trusted=trusted)


def read_opened(
    ckpt: CheckpointDir, layout: fmt.Layout, policy_id: Optional[str] = None, *, trusted: bool = False
) -> Weights:
    """:func:`read_weights` on a checkpoint already opened (no second metadata read)."""
    _, rel = resolve_policy(ckpt, layout, policy_id)
    if layout.kind is fmt.Kind.SINGLE_POLICY:  # checked against policy.json's digest and index
        from .policy_file import read_checked  # each format's module is imported when a file of it is read

        return read_checked(ckpt, layout)
    payload = decode_file(ckpt, rel, trusted=trusted, lazy=True)  # the optimizer state beside the weights stays unread
    return extract_weights(payload, layout, ckpt.child(rel))


def resolve_policy(ckpt: CheckpointDir, layout: fmt.Layout, policy_id: Optional[str]) -> Tuple[Optional[str], str]:
    """Resolve ``policy_id`` to ``(policy_id, weights file relative to the root)``.

    For a checkpoint that *is* one policy, any ``policy_id`` names it (its directory
    name is only a guess at the id) and ``None`` is returned as the id.

    Raises:
        PolicyNotFoundError: ``policy_id`` is not in the checkpoint (lists what is).
    """
    if layout.kind in (fmt.Kind.POLICY, fmt.Kind.MODULE, fmt.Kind.SINGLE_POLICY):
        return None, fmt.weights_file(ckpt, layout, None)
    ids = ids_in(ckpt, layout)
    if policy_id is None:
        if len(ids) != 1:
            raise not_found("policy", "<none given>", ckpt.uri, ids)
        policy_id = ids[0]
    if policy_id not in ids:
        raise not_found("policy", policy_id, ckpt.uri, ids)
    return policy_id, fmt.weights_file(ckpt, layout, policy_id)


def decode_file(ckpt: CheckpointDir, rel: str, *, trusted: bool = False, lazy: bool = False) -> Any:
    """Decode one state file by its extension, wrapping every failure in a typed error.

    ``.pkl`` (pickle), ``.msgpack``/``.msgpck`` (msgpack + msgpack-numpy arrays), ``.pt``
    (a ``torch.save`` zip, its ``data.pkl`` read without torch; Ray 2.36-2.40 wrote a plain
    pickle under that name, told apart by the zip signature) and ``.safetensors``.
    The file is read as it is decoded, never copied whole.

    Args:
        lazy: leave large tensors in the file as :class:`~.lazy.LazyArray` objects
            (shape and dtype known; ``materialize()`` reads one). Safe mode only.

    Raises:
        CheckpointFormatError: empty, truncated or corrupt file, or an unknown extension.
        MissingDependencyError: a msgpack file but the ``msgpack`` package is not installed.
    """
    where = ckpt.child(rel)
    ext = os.path.splitext(rel)[1]
    # Each codec is imported when a file of its format is met: reading a pickle pays for no other.
    if ext == ".safetensors":
        from .codecs.safetensors import decode_safetensors

        data = ckpt.read_buffer(rel)
        if not data:
            raise CheckpointFormatError(f"{where}: file is empty")
        return decode_safetensors(data, where)
    source = ckpt.open_source(rel)
    if source.size == 0:
        raise CheckpointFormatError(f"{where}: file is empty")
    lazy = lazy and not trusted
    if ext == ".pkl":
        return _unpickle(source, where, trusted, lazy)
    if ext in (".msgpack", ".msgpck"):
        from .codecs.msgpack import unpack_msgpack

        return unpack_msgpack(source, where, trusted, lazy)
    if ext == ".pt":
        from .codecs.torch_zip import torch_zip_payload

        with source.stream() as f:
            is_zip = f.read(4) == b"PK\x03\x04"
        return _unpickle(torch_zip_payload(source, where) if is_zip else source, where, trusted, lazy)
    raise CheckpointFormatError(f"{where}: this reader cannot decode {ext!r} files")


def _unpickle(source: Source, where: str, trusted: bool, lazy: bool) -> Any:
    with source.stream() as f:  # an unreadable file is said so, not called corrupt
        with malformed(where, "truncated or corrupt pickle"):  # any unpickling failure: a damaged file
            return safe_pickle.load_stream(f, source, trusted=trusted, lazy=lazy)


# Weights as extract_weights(materialize=False) returns them: tensors may stay in the file.
LazyWeights = Dict[str, Union[np.ndarray, LazyArray]]


@overload
def extract_weights(payload: Any, layout: fmt.Layout, where: str, *, materialize: Literal[True] = ...) -> Weights: ...
@overload
def extract_weights(payload: Any, layout: fmt.Layout, where: str, *, materialize: bool) -> LazyWeights: ...
def extract_weights(
    payload: Any, layout: fmt.Layout, where: str, *, materialize: bool = True
) -> "Weights | LazyWeights":
    """The ``{name: array}`` weights inside a decoded state file, each checked to be an array.

    Tensors :func:`decode_file` left in the file are read here, one at a time
    (``materialize=False`` keeps them as :class:`~.lazy.LazyArray`: shapes for ``inspect``,
    or one tensor at a time for a streaming export).

    Raises:
        CheckpointFormatError: no weights entry, or a tensor that is not an array.
        UnsafePickleError: a tensor is an object safe mode did not build.
    """
    if layout.stack is fmt.Stack.OLD and layout.kind is not fmt.Kind.SINGLE_POLICY:
        if not isinstance(payload, dict) or "weights" not in payload:
            raise CheckpointFormatError(f"{where}: policy state has no 'weights' entry")
        raw = payload["weights"]
    else:
        raw = payload
    if isinstance(raw, (list, tuple)):  # tf2 policies: a list in variable order
        raw = by_position(raw)
    if not isinstance(raw, dict):
        raise CheckpointFormatError(
            f"{where}: expected a mapping of tensor names to arrays, got {type(raw).__name__}"
        )
    out: LazyWeights = OrderedDict()
    for name, value in raw.items():
        if isinstance(value, safe_pickle.Placeholder):
            kind = type(value)
            raise UnsafePickleError(
                f"{where}: tensor {name!r} is a {kind.module}.{kind.name} object, which safe mode "
                "does not build; pass trusted=True only if you trust this file"
            )
        if isinstance(value, LazyArray):
            out[str(name)] = value.materialize() if materialize else value
            continue
        if not isinstance(value, np.ndarray):
            raise CheckpointFormatError(
                f"{where}: tensor {name!r} is a {type(value).__name__}, not an array "
                "(written by an unsupported framework or version?)"
            )
        out[str(name)] = value
    return out
