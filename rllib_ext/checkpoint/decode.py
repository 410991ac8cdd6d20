"""Turn a located state file into ``{name: array}`` weights (step 4 of a read, the last).

The pass is open (:mod:`.storage`) -> layout (:mod:`.format`) -> locate (:mod:`.locate`)
-> decode (here), driven by :func:`.reader.read_weights`. Decoding dispatches on the
file's extension to a codec (:mod:`.codecs`), each imported when a file of its format is
met, then picks the weights out of what the file held. No step above is called from here.
"""

from __future__ import annotations

import os
from collections import OrderedDict
from typing import Any, Dict, Literal, Union, overload

import numpy as np

from ..errors import CheckpointFormatError, UnsafePickleError, malformed
from .codecs import safe_pickle
from .format import Kind, Layout, Stack
from .lazy import LazyArray
from .storage import CheckpointDir, Source
from .tensors import Weights, by_position

# Weights as extract_weights(materialize=False) returns them: tensors may stay in the file.
LazyWeights = Dict[str, Union[np.ndarray, LazyArray]]


def decode_weights(ckpt: CheckpointDir, layout: Layout, rel: str, *, trusted: bool = False) -> Weights:
    """The weights in the state file ``rel`` (as :func:`.locate.resolve_policy` found it).

    Raises:
        CheckpointFormatError: the file is missing, truncated or not understood.
        UnsafePickleError: a tensor is an object safe mode does not build.
        MissingDependencyError: a msgpack file without the msgpack package.
    """
    if layout.kind is Kind.SINGLE_POLICY:  # checked against policy.json's digest and index
        from .policy_file import read_checked  # each format's module is imported when a file of it is read

        return read_checked(ckpt, layout)
    payload = decode_file(ckpt, rel, trusted=trusted, lazy=True)  # the optimizer state beside the weights stays unread
    return extract_weights(payload, layout, ckpt.child(rel))


def decode_file(ckpt: CheckpointDir, rel: str, *, trusted: bool = False, lazy: bool = False) -> Any:  # whatever the file holds
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


def _unpickle(source: Source, where: str, trusted: bool, lazy: bool) -> object:
    with source.stream() as f:  # an unreadable file is said so, not called corrupt
        with malformed(where, "truncated or corrupt pickle"):  # any unpickling failure: a damaged file
            return safe_pickle.load_stream(f, source, trusted=trusted, lazy=lazy)


@overload
def extract_weights(payload: object, layout: Layout, where: str, *, materialize: Literal[True] = ...) -> Weights: ...
@overload
def extract_weights(payload: object, layout: Layout, where: str, *, materialize: bool) -> LazyWeights: ...
def extract_weights(
    payload: object, layout: Layout, where: str, *, materialize: bool = True
) -> "Weights | LazyWeights":
    """The ``{name: array}`` weights inside a decoded state file, each checked to be an array.

    Tensors :func:`decode_file` left in the file are read here, one at a time
    (``materialize=False`` keeps them as :class:`~.lazy.LazyArray`: shapes for ``inspect``,
    or one tensor at a time for a streaming export).

    Raises:
        CheckpointFormatError: no weights entry, or a tensor that is not an array.
        UnsafePickleError: a tensor is an object safe mode did not build.
    """
    raw = payload
    if layout.stack is Stack.OLD and layout.kind is not Kind.SINGLE_POLICY:
        if not isinstance(payload, dict) or "weights" not in payload:
            raise CheckpointFormatError(f"{where}: policy state has no 'weights' entry")
        raw = payload["weights"]
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
