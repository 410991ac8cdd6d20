"""Read policy ids and weights out of any RLlib checkpoint, without Ray or torch.

``read_weights`` returns ``{name: numpy array}`` named exactly as RLlib's own getters
name them: ``module.get_state()`` on the new stack, ``policy.get_weights()`` on the old
stack (tf2 policies return a list there; its positions become the names "0", "1", ...).
Reading one policy touches only that policy's files. State files may be pickles
(``.pkl``), msgpack (``.msgpack``/``.msgpck``), a ``torch.save`` zip (``.pt``, layout 1.2)
or rllib_ext's ``weights.safetensors``; none of them needs Ray or torch to read.
"""

from __future__ import annotations

import io
import os
import zipfile
from collections import OrderedDict
from typing import Any, Dict, List, Optional, Tuple

import numpy as np

from ..errors import CheckpointFormatError, MissingDependencyError, UnsafePickleError, not_found
from . import format as fmt
from . import safe_pickle
from .policy_file import read_checked
from .safetensors import decode_safetensors
from .storage import CheckpointDir
from .tensors import Weights, by_position


def open_checkpoint(path: "str | os.PathLike[str]") -> "tuple[CheckpointDir, fmt.Layout]":
    """Open ``path`` and detect its layout (shared by every reader entry point)."""
    ckpt = CheckpointDir(path)
    return ckpt, fmt.detect(ckpt)


def policy_ids(path: "str | os.PathLike[str]") -> List[str]:
    """The policy (old stack) or module (new stack) ids stored at ``path``, sorted."""
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
    _, rel = locate(ckpt, layout, policy_id)
    if layout.kind is fmt.Kind.SINGLE_POLICY:  # checked against policy.json's digest and index
        return read_checked(ckpt, layout)
    payload = decode_file(ckpt, rel, trusted=trusted)
    return extract_weights(payload, layout, ckpt.child(rel))


def locate(ckpt: CheckpointDir, layout: fmt.Layout, policy_id: Optional[str]) -> Tuple[Optional[str], str]:
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


def decode_file(ckpt: CheckpointDir, rel: str, *, trusted: bool = False) -> Any:
    """Decode one state file by its extension, wrapping every failure in a typed error.

    ``.pkl`` (pickle), ``.msgpack``/``.msgpck`` (msgpack + msgpack-numpy arrays), ``.pt``
    (a ``torch.save`` zip; its ``data.pkl`` is read without torch) and ``.safetensors``.

    Raises:
        CheckpointFormatError: empty, truncated or corrupt file, or an unknown extension.
        MissingDependencyError: a msgpack file but the ``msgpack`` package is not installed.
    """
    data = ckpt.read_bytes(rel)
    where = ckpt.child(rel)
    if not data:
        raise CheckpointFormatError(f"{where}: file is empty")
    ext = os.path.splitext(rel)[1]
    if ext == ".pkl":
        return _unpickle(data, where, trusted)
    if ext in (".msgpack", ".msgpck"):
        return _unpack_msgpack(data, where, trusted)
    if ext == ".pt":
        return _unpickle(_torch_zip_payload(data, where), where, trusted)
    if ext == ".safetensors":
        return decode_safetensors(data, where)
    raise CheckpointFormatError(f"{where}: this reader cannot decode {ext!r} files")


def _unpickle(data: bytes, where: str, trusted: bool) -> Any:
    try:
        return safe_pickle.loads(data, trusted=trusted)
    except Exception as e:  # any unpickling failure means a damaged file
        raise CheckpointFormatError(
            f"{where}: truncated or corrupt pickle ({type(e).__name__}: {e})"
        ) from e


def _torch_zip_payload(data: bytes, where: str) -> bytes:
    """The pickle inside a ``torch.save`` zip archive (``<archive>/data.pkl``)."""
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as z:
            names = [n for n in z.namelist() if n == "data.pkl" or n.endswith("/data.pkl")]
            if len(names) != 1:
                raise CheckpointFormatError(
                    f"{where}: expected one data.pkl in the torch archive, found {len(names)} "
                    f"among {', '.join(z.namelist()[:8])}"
                )
            return z.read(names[0])
    except zipfile.BadZipFile as e:
        raise CheckpointFormatError(
            f"{where}: not a torch.save zip archive (legacy pre-1.6 torch format?): {e}"
        ) from e


def _unpack_msgpack(data: bytes, where: str, trusted: bool) -> Any:
    """msgpack with msgpack-numpy array maps decoded by numpy alone.

    We decode the array maps ourselves rather than through ``msgpack_numpy``: it would
    ``pickle.loads`` object arrays, and safe mode runs no pickle outside our unpickler.
    Map keys can be ints (optimizer state), hence ``strict_map_key=False``.
    """
    unpackb = _plain_msgpack_unpackb(where)

    def hook(obj: Dict[Any, Any]) -> Any:
        return _decode_msgpack_numpy(obj, trusted)

    try:
        return unpackb(data, raw=False, strict_map_key=False, object_hook=hook)
    except Exception as e:
        raise CheckpointFormatError(
            f"{where}: truncated or corrupt msgpack ({type(e).__name__}: {e})"
        ) from e


def _plain_msgpack_unpackb(where: str) -> Any:
    """msgpack's own ``unpackb``, even after ``msgpack_numpy.patch()``.

    RLlib patches the ``msgpack`` module globally (``try_import_msgpack``); the patched
    ``unpackb`` decodes arrays first and ``pickle.loads`` object arrays, bypassing safe
    mode. The implementation modules are never patched, so we call them directly.
    """
    try:
        import msgpack  # noqa: F401  (the install check; its attributes may be patched)

        try:
            from msgpack._cmsgpack import unpackb
        except ImportError:  # pure-Python build of msgpack
            from msgpack.fallback import unpackb
    except ImportError:
        raise MissingDependencyError(
            f"{where}: reading msgpack checkpoints needs the msgpack package: pip install msgpack"
        ) from None
    return unpackb


def _decode_msgpack_numpy(obj: Dict[Any, Any], trusted: bool) -> Any:
    """One msgpack-numpy map -> numpy array / scalar / complex; other maps unchanged."""
    if b"nd" in obj and b"data" in obj and b"type" in obj:
        kind = obj.get(b"kind", b"")
        if obj[b"nd"] is True:
            if kind == b"O":  # object arrays are stored as a pickle
                return safe_pickle.loads(obj[b"data"], trusted=trusted)
            dtype = _msgpack_dtype(obj[b"type"])
            shape = tuple(obj[b"shape"])
            return np.frombuffer(obj[b"data"], dtype=dtype).reshape(shape).copy()
        return np.frombuffer(obj[b"data"], dtype=_msgpack_dtype(obj[b"type"]))[0]
    if obj.get(b"complex") is True and b"data" in obj:
        text = obj[b"data"]
        return complex(text.decode() if isinstance(text, bytes) else text)
    return obj


def _msgpack_dtype(descr: Any) -> np.dtype:
    """Rebuild a dtype from ``dtype.str`` or a structured ``dtype.descr`` list."""
    if isinstance(descr, (list, tuple)):
        fields = []
        for field in descr:
            name, sub, *shape = field
            name = name.decode() if isinstance(name, bytes) else name
            fields.append((name, _msgpack_dtype(sub), *shape))
        return np.dtype(fields)
    return np.dtype(descr.decode() if isinstance(descr, bytes) else descr)


def extract_weights(payload: Any, layout: fmt.Layout, where: str) -> Weights:
    """The ``{name: array}`` weights inside a decoded state file, each checked to be an array.

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
    out: Weights = OrderedDict()
    for name, value in raw.items():
        if isinstance(value, safe_pickle.Placeholder):
            kind = type(value)
            raise UnsafePickleError(
                f"{where}: tensor {name!r} is a {kind.module}.{kind.name} object, which safe mode "
                "does not build; pass trusted=True only if you trust this file"
            )
        if not isinstance(value, np.ndarray):
            raise CheckpointFormatError(
                f"{where}: tensor {name!r} is a {type(value).__name__}, not an array "
                "(written by an unsupported framework or version?)"
            )
        out[str(name)] = value
    return out
