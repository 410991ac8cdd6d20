"""rllib_ext's single-policy format: one directory, no pickle, readable with numpy alone.

```
<dir>/policy.json          metadata (below); read first, so a policy is described without its weights
<dir>/weights.safetensors  the tensors, in the safetensors layout (no code, bounds-checked)
```
``policy.json`` (``format_version`` "1.0")::

    {"format_version": "1.0", "policy_id": "policy_1", "stack": "new", "framework": "torch",
     "observation_space": {SpaceView.to_dict()}, "action_space": {...},
     "model_config": {...}, "algorithm_class": "PPO", "policy_class": "DefaultPPOTorchRLModule",
     "ray_version": "2.60.0", "source": "/path/of/the/original/checkpoint",
     "tensors": {"name": {"shape": [8, 4], "dtype": "float32"}, ...},   # in getter order
     "weights_sha256": "<hex sha256 of weights.safetensors>"}           # checked on read

The safetensors layout (https://github.com/huggingface/safetensors): an 8-byte
little-endian header size N, N bytes of JSON ``{name: {"dtype": "F32", "shape": [...],
"data_offsets": [begin, end]}, "__metadata__": {...}}``, then the little-endian data.
We read and write it with numpy (the ``safetensors`` package reads our files and we read
its files; tests check both), so the reader keeps needing nothing but numpy.

Writes are atomic: everything goes into a temporary sibling ``.<name>.tmp-<pid>-<hex>``,
is fsynced, and is renamed into place. A *directory* that already exists cannot be
replaced by one ``rename`` (it fails on a non-empty target), so on Linux the two are
swapped with ``renameat2(RENAME_EXCHANGE)`` (one atomic step; the previous version then
sits in the temporary sibling and is deleted). Where that call is missing (other OSes,
file systems without it) the fallback is two renames, ``final -> .<name>.old-<pid>-<hex>``
then ``tmp -> final``; a crash between them leaves no ``final`` for a moment, and the next
write puts the ``.old-`` backup back first. Either way a killed writer leaves ``final`` as
the previous or the new complete directory, plus at worst hidden siblings named as above.
The next write to the same destination removes those whose writer process is gone
(:func:`clean_debris`); readers never look at them.
"""

from __future__ import annotations

import ctypes
import errno
import hashlib
import json
import math
import os
import re
import secrets
import shutil
import struct
import sys
from collections import OrderedDict
from typing import Any, Dict, Mapping, Optional, Tuple

import numpy as np

from ..errors import CheckpointError, CheckpointFormatError, MissingDependencyError, NotACheckpointError, did_you_mean
from . import format as fmt
from .inspect import CheckpointView, PolicyView, SpaceView
from .storage import CheckpointDir, os_problem

FORMAT_VERSION = "1.0"
META_FILE = fmt.SINGLE_POLICY_META
DIGEST_KEY = "weights_sha256"  # in policy.json: sha256 of weights.safetensors
WEIGHTS_FILE = fmt.SINGLE_POLICY_WEIGHTS

# Keys a caller may pass in ``meta``; the rest of policy.json is written by us.
META_KEYS = (
    "stack",
    "framework",
    "observation_space",
    "action_space",
    "model_config",
    "algorithm_class",
    "policy_class",
    "ray_version",
    "source",
)

_DTYPES = {
    "F64": np.float64, "F32": np.float32, "F16": np.float16,
    "I64": np.int64, "I32": np.int32, "I16": np.int16, "I8": np.int8,
    "U64": np.uint64, "U32": np.uint32, "U16": np.uint16, "U8": np.uint8,
    "BOOL": np.bool_,
}
_CODES = {np.dtype(v): k for k, v in _DTYPES.items()}
_MAX_HEADER = 100 * 1024 * 1024  # the safetensors reference limit

Weights = Dict[str, np.ndarray]


# --- safetensors bytes --------------------------------------------------------------------


def encode_safetensors(weights: Mapping[str, np.ndarray], metadata: Optional[Mapping[str, str]] = None) -> bytes:
    """Serialise ``weights`` in the safetensors layout, keeping their order.

    Raises:
        CheckpointFormatError: a tensor's dtype has no safetensors code (e.g. object, complex).
    """
    header: Dict[str, Any] = OrderedDict()
    if metadata:
        header["__metadata__"] = {str(k): str(v) for k, v in metadata.items()}
    chunks = []
    offset = 0
    for name, value in weights.items():
        arr = np.asarray(value)
        code = _CODES.get(arr.dtype.newbyteorder("="))
        if code is None:
            raise CheckpointFormatError(
                f"tensor {name!r}: dtype {arr.dtype} cannot be stored in safetensors "
                f"(supported: {', '.join(sorted(np.dtype(t).name for t in _DTYPES.values()))})"
            )
        data = np.ascontiguousarray(arr, dtype=arr.dtype.newbyteorder("<")).tobytes()
        header[str(name)] = {"dtype": code, "shape": [int(d) for d in arr.shape], "data_offsets": [offset, offset + len(data)]}
        chunks.append(data)
        offset += len(data)
    head = json.dumps(header, separators=(",", ":")).encode("utf-8")
    head += b" " * (-len(head) % 8)  # align the data to 8 bytes, as the reference writer does
    return struct.pack("<Q", len(head)) + head + b"".join(chunks)


def _parse_header(data: bytes, where: str) -> Tuple[Dict[str, Any], int]:
    if not data:
        raise CheckpointFormatError(f"{where}: file is empty")
    if len(data) < 8:
        raise CheckpointFormatError(f"{where}: too short for a safetensors file ({len(data)} bytes)")
    (n,) = struct.unpack("<Q", data[:8])
    if n > _MAX_HEADER or 8 + n > len(data):
        raise CheckpointFormatError(f"{where}: safetensors header size {n} does not fit a {len(data)}-byte file")
    try:
        header = json.loads(data[8 : 8 + n].decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise CheckpointFormatError(f"{where}: safetensors header is not valid JSON ({e})") from e
    if not isinstance(header, dict):
        raise CheckpointFormatError(f"{where}: safetensors header is not a JSON object")
    return header, 8 + n


def _tensor_entries(header: Mapping[str, Any], body: int, where: str) -> "list[Tuple[int, str, np.dtype, Tuple[int, ...], int]]":
    """Check every header entry against a ``body``-byte data section; ``(begin, name, dtype, shape, end)``.

    Sizes are computed with Python integers, so a header cannot overflow them.
    """
    entries = []
    for name, info in header.items():
        if name == "__metadata__":
            continue
        try:
            code, shape, offsets = info["dtype"], info["shape"], info["data_offsets"]
            if not isinstance(shape, list) or not all(type(d) is int and d >= 0 for d in shape):
                raise ValueError("shape")
            if not isinstance(offsets, list) or len(offsets) != 2 or not all(type(o) is int for o in offsets):
                raise ValueError("data_offsets")
        except (KeyError, TypeError, ValueError):
            raise CheckpointFormatError(
                f"{where}: tensor {name!r} has a malformed header entry: {info!r} "
                "(expected dtype, shape: [non-negative ints], data_offsets: [begin, end])"
            ) from None
        if not isinstance(code, str) or code not in _DTYPES:
            raise CheckpointFormatError(
                f"{where}: tensor {name!r} has dtype {code!r}, which numpy cannot hold "
                f"(supported: {', '.join(sorted(_DTYPES))})"
            )
        dtype = np.dtype(_DTYPES[code]).newbyteorder("<")
        begin, end = offsets
        expected = math.prod(shape) * dtype.itemsize
        if not (0 <= begin <= end <= body) or end - begin != expected:
            raise CheckpointFormatError(
                f"{where}: tensor {name!r} of shape {tuple(shape)} {dtype.name} needs {expected} bytes, "
                f"its offsets [{begin}, {end}] do not fit the {body}-byte data section"
            )
        entries.append((begin, str(name), dtype, tuple(shape), end))
    return sorted(entries, key=lambda e: e[0])


def decode_safetensors(data: bytes, where: str) -> Weights:
    """Parse safetensors bytes into ``{name: array}``, ordered by position in the file.

    Raises:
        CheckpointFormatError: truncated file, bad header, unknown dtype, or offsets that
            do not match the shapes or point outside the data.
    """
    header, start = _parse_header(data, where)
    out: Weights = OrderedDict()
    for begin, name, dtype, shape, end in _tensor_entries(header, len(data) - start, where):
        arr = np.frombuffer(data, dtype=dtype, count=(end - begin) // dtype.itemsize, offset=start + begin)
        out[name] = arr.astype(dtype.newbyteorder("="), copy=True).reshape(shape)
    return out


# --- the policy directory -------------------------------------------------------------------


def write_policy_dir(
    path: "str | os.PathLike[str]",
    policy_id: str,
    weights: Mapping[str, np.ndarray],
    meta: Mapping[str, Any],
) -> str:
    """Write one policy as ``policy.json`` + ``weights.safetensors``, atomically.

    The files go to a temporary sibling ``.<name>.tmp-<pid>-<rand>`` (same filesystem, so
    the rename is atomic), are fsynced, and the directory is renamed to ``path``. An
    existing policy directory at ``path`` is moved aside only after the new one is
    complete, and removed after the new one is in place: a crash leaves either the old or
    the new directory (plus at worst a hidden leftover sibling), never a half-written one.

    Args:
        path: the directory to create or replace.
        policy_id: stored in policy.json (the id the policy had in its checkpoint).
        weights: ``{tensor name: array}``; the order is kept.
        meta: any of :data:`META_KEYS`; ``stack`` ('new' or 'old') is required. Spaces
            may be :class:`SpaceView` objects or their ``to_dict()`` form.

    Returns:
        The absolute path written.

    Raises:
        ValueError: ``meta`` lacks ``stack`` or has keys outside :data:`META_KEYS`.
        CheckpointError: ``path`` exists and is not an rllib_ext policy directory (it is
            never replaced then), or a tensor cannot be stored.
    """
    final = os.path.abspath(os.fspath(path))
    doc = _policy_json(policy_id, weights, meta)
    blob = encode_safetensors(weights, {"format": "np", "policy_id": str(policy_id)})
    # Neither safetensors nor RLlib's pickles carry a checksum: without one a flipped bit
    # in tensor data reads back as other valid weights. Readers check it when present.
    doc[DIGEST_KEY] = hashlib.sha256(blob).hexdigest()
    if os.path.lexists(final) and not _replaceable(final):
        raise CheckpointError(
            f"{final}: exists and is not an rllib_ext policy directory (no {META_FILE}); "
            "refusing to replace it"
        )

    def fill(tmp: str) -> None:
        os.mkdir(tmp)
        _write_synced(os.path.join(tmp, WEIGHTS_FILE), blob)
        _write_synced(os.path.join(tmp, META_FILE), (json.dumps(doc, indent=2) + "\n").encode("utf-8"))

    return write_dir_atomically(final, fill)


def write_dir_atomically(final: str, fill: Any) -> str:
    """Build a directory in a temporary sibling with ``fill(tmp)``, then put it at ``final``.

    ``fill`` creates ``tmp`` (or copies a tree to it) and writes the files. Then every
    directory below is fsynced and the result is swapped into place; an existing
    directory at ``final`` is moved aside only once the new one is complete. On any
    failure the temporary sibling is removed and ``final`` is as it was.

    Returns:
        ``final``.
    """
    parent, name = os.path.split(final)
    os.makedirs(parent, exist_ok=True)
    clean_debris(final)
    tmp = _sibling(final, "tmp")
    try:
        fill(tmp)
        for dirpath, _, _ in os.walk(tmp):
            _fsync_dir(dirpath)
        _swap_into_place(tmp, final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    _fsync_dir(parent)
    return final


def read_policy_dir(path: "str | os.PathLike[str]") -> Tuple[Weights, Dict[str, Any]]:
    """Read a directory written by :func:`write_policy_dir`.

    Returns:
        ``(weights, meta)``: weights in the stored order, meta as the parsed policy.json.

    Raises:
        NotACheckpointError: no directory at ``path``, or no policy.json in it.
        CheckpointFormatError: policy.json unsupported, or it disagrees with the
            tensors in weights.safetensors.
    """
    ckpt = CheckpointDir(path)
    if not ckpt.lexists(META_FILE):
        raise NotACheckpointError(
            f"{ckpt.uri}: not an rllib_ext policy directory (no {META_FILE}); "
            f"found: {', '.join(ckpt.listdir()[:10]) or '(empty directory)'}"
        )
    layout = fmt.detect(ckpt)
    return read_checked(ckpt, layout), dict(layout.metadata)


def read_checked(ckpt: CheckpointDir, layout: fmt.Layout) -> Weights:
    """weights.safetensors, checked against policy.json: the tensor index first (its errors
    say which tensor is wrong), then the file's sha256 (when recorded: by every writer
    since it was added), which catches what still parses, such as flipped value bits.

    Raises:
        CheckpointFormatError: the file's tensors or digest disagree with policy.json.
    """
    where = ckpt.child(WEIGHTS_FILE)
    data = ckpt.read_bytes(WEIGHTS_FILE)
    weights = in_index_order(layout.metadata, decode_safetensors(data, where), ckpt)
    want = layout.metadata.get(DIGEST_KEY)
    if want is not None and hashlib.sha256(data).hexdigest() != want:
        raise CheckpointFormatError(
            f"{where}: contents do not match the sha256 recorded in {ckpt.child(META_FILE)} "
            "(the file is corrupted, or a replace was cut off); write the policy again"
        )
    return weights


def in_index_order(meta: Mapping[str, Any], weights: Weights, ckpt: CheckpointDir) -> Weights:
    """``weights`` in policy.json's index order, once the index is checked to describe exactly them.

    Raises:
        CheckpointFormatError: names, shapes or dtypes in the index and the weights file differ.
    """
    _check_index(meta.get("tensors"), {k: (tuple(v.shape), v.dtype.name) for k, v in weights.items()}, ckpt)
    return OrderedDict((name, weights[name]) for name in meta["tensors"])


def view_policy_dir(ckpt: CheckpointDir, layout: fmt.Layout) -> CheckpointView:
    """The :func:`inspect` view of a policy directory, from policy.json and the
    safetensors header only (the tensor data is not read)."""
    meta = layout.metadata
    where = ckpt.child(WEIGHTS_FILE)
    header, body = _read_header(where)
    index = {name: (shape, dtype.newbyteorder("=").name) for _, name, dtype, shape, _ in _tensor_entries(header, body, where)}
    _check_index(meta.get("tensors"), index, ckpt)
    tensors = OrderedDict((k, index[k]) for k in meta["tensors"])
    sizes = {k: int(np.prod(shape, dtype=np.int64)) for k, (shape, _) in tensors.items()}
    pid = str(meta.get("policy_id"))
    view = PolicyView(
        id=pid,
        observation_space=_space(meta.get("observation_space"), ckpt),
        action_space=_space(meta.get("action_space"), ckpt),
        tensors=tensors,
        num_params=sum(sizes.values()),
        nbytes=sum(n * np.dtype(tensors[k][1]).itemsize for k, n in sizes.items()),
        policy_class=meta.get("policy_class"),
        model_config=meta.get("model_config"),
        weights_file=WEIGHTS_FILE,
    )
    return CheckpointView(
        path=ckpt.uri,
        kind=layout.kind.value,
        stack=layout.stack.value,
        checkpoint_version=layout.version,
        framework=meta.get("framework"),
        ray_version=meta.get("ray_version"),
        algorithm_class=meta.get("algorithm_class"),
        policies={pid: view},
    )


def _read_header(file_path: str) -> Tuple[Dict[str, Any], int]:
    """Only the JSON header of a safetensors file (the tensor data is not read), and the
    size of the data section after it (from the file size)."""
    try:
        with open(file_path, "rb") as f:
            head = f.read(8)
            size = struct.unpack("<Q", head)[0] if len(head) == 8 else 0
            data = head + f.read(min(size, _MAX_HEADER + 1))
            total = os.fstat(f.fileno()).st_size
    except FileNotFoundError as e:
        raise CheckpointFormatError(f"{file_path}: file missing from the checkpoint") from e
    except OSError as e:
        raise CheckpointFormatError(f"{file_path}: cannot read: {os_problem(e)}") from e
    header, start = _parse_header(data, file_path)
    return header, total - start


EXTRACT_FORMATS = ("safetensors", "npz", "torch")


def extract_policy(
    checkpoint: "str | os.PathLike[str]",
    policy_id: Optional[str],
    out: "str | os.PathLike[str]",
    *,
    format: str = "safetensors",
    trusted: bool = False,
) -> str:
    """Copy one policy out of any checkpoint into a file or directory of its own.

    Args:
        checkpoint: any checkpoint ``inspect`` accepts (including a policy directory).
        policy_id: the policy to extract; may be None when the checkpoint holds one.
        out: the directory (safetensors) or file (npz, torch) to write, atomically.
        format: 'safetensors' (the single-policy directory, with its metadata), 'npz'
            (tensors only) or 'torch' (a ``state_dict`` file; needs torch).
        trusted: unpickle the source with plain pickle.

    Returns:
        The absolute path written.

    Raises:
        ValueError: unknown ``format``.
        PolicyNotFoundError: ``policy_id`` is not in the checkpoint.
    """
    from .inspect import load_policy

    if format not in EXTRACT_FORMATS:
        raise ValueError(f"format {format!r} is not one of {', '.join(EXTRACT_FORMATS)}{did_you_mean(format, EXTRACT_FORMATS)}")
    view, weights = load_policy(checkpoint, policy_id, trusted=trusted)
    if format == "npz":
        return export_npz(weights, out)
    if format == "torch":
        return export_torch_state_dict(weights, out)
    (pv,) = view.policies.values()
    meta = {
        "stack": view.stack,
        "framework": view.framework,
        "observation_space": pv.observation_space,
        "action_space": pv.action_space,
        "model_config": pv.model_config,
        "algorithm_class": view.algorithm_class,
        "policy_class": pv.policy_class,
        "ray_version": view.ray_version,
        "source": view.path,
    }
    return write_policy_dir(out, pv.id, weights, meta)


# --- exports for other tools ------------------------------------------------------------------


def export_npz(weights: Mapping[str, np.ndarray], path: "str | os.PathLike[str]") -> str:
    """Write ``weights`` as an uncompressed ``.npz`` (``np.load(path)[name]``), atomically.

    Returns:
        The absolute path written (exactly ``path``; numpy would otherwise append '.npz').
    """
    final = os.path.abspath(os.fspath(path))

    def write(f: Any) -> None:
        np.savez(f, **{str(k): np.asarray(v) for k, v in weights.items()})

    _atomic_file(final, write)
    return final


def export_torch_state_dict(weights: Mapping[str, np.ndarray], path: "str | os.PathLike[str]") -> str:
    """Write ``weights`` as a torch ``state_dict`` (an OrderedDict of tensors), atomically.

    The file loads with ``torch.load(path, weights_only=True)`` and feeds
    ``module.load_state_dict`` for a new-stack (torch RLModule) or old-stack torch policy.

    Raises:
        MissingDependencyError: torch is not installed.
    """
    try:
        import torch
    except ImportError:
        raise MissingDependencyError(
            "exporting a torch state_dict needs torch: pip install torch"
        ) from None
    final = os.path.abspath(os.fspath(path))
    state = OrderedDict((str(k), torch.from_numpy(np.array(v, copy=True))) for k, v in weights.items())
    _atomic_file(final, lambda f: torch.save(state, f))
    return final


# --- helpers ------------------------------------------------------------------------------------


def _policy_json(policy_id: str, weights: Mapping[str, np.ndarray], meta: Mapping[str, Any]) -> Dict[str, Any]:
    unknown = [k for k in meta if k not in META_KEYS]
    if unknown:
        raise ValueError(
            f"meta key {unknown[0]!r} is not part of {META_FILE}; allowed: {', '.join(META_KEYS)}"
            f"{did_you_mean(unknown[0], META_KEYS)}"
        )
    if meta.get("stack") not in (fmt.Stack.NEW.value, fmt.Stack.OLD.value):
        raise ValueError(f"meta['stack'] must be 'new' or 'old', got {meta.get('stack')!r}")
    doc: Dict[str, Any] = OrderedDict(format_version=FORMAT_VERSION, policy_id=str(policy_id))
    for key in META_KEYS:
        value = meta.get(key)
        if isinstance(value, SpaceView):
            value = value.to_dict()
        doc[key] = value
    doc["tensors"] = OrderedDict(
        (str(k), {"shape": [int(d) for d in np.shape(v)], "dtype": np.asarray(v).dtype.name}) for k, v in weights.items()
    )
    return doc


def _space(d: Any, ckpt: CheckpointDir) -> Optional[SpaceView]:
    if not isinstance(d, dict):
        return None
    try:
        return SpaceView.from_dict(d)
    except (KeyError, TypeError, ValueError, AttributeError, RecursionError) as e:
        raise CheckpointFormatError(
            f"{ckpt.child(META_FILE)}: a space is malformed ({type(e).__name__}: {e}); "
            "rewrite the policy with save_policy/extract_policy"
        ) from e


def _check_index(index: Any, found: Mapping[str, Tuple[Tuple[int, ...], str]], ckpt: CheckpointDir) -> None:
    """policy.json's tensor index must describe exactly the tensors in the weights file."""
    where = ckpt.child(META_FILE)
    if not isinstance(index, dict):
        raise CheckpointFormatError(f"{where}: no 'tensors' index")
    missing = [k for k in index if k not in found]
    extra = [k for k in found if k not in index]
    if missing or extra:
        raise CheckpointFormatError(
            f"{where}: tensor index does not match {WEIGHTS_FILE}: "
            f"missing from the weights: {', '.join(missing) or '(none)'}; not in the index: {', '.join(extra) or '(none)'}"
        )
    for name, entry in index.items():
        shape = entry.get("shape") if isinstance(entry, dict) else None
        want = (tuple(shape) if isinstance(shape, list) else shape, entry.get("dtype") if isinstance(entry, dict) else entry)
        if want != found[name]:
            raise CheckpointFormatError(
                f"{where}: tensor {name!r} is {want[0]} {want[1]} in the index but "
                f"{found[name][0]} {found[name][1]} in {WEIGHTS_FILE}"
            )


def _replaceable(final: str) -> bool:
    """Only our own policy directories (or empty ones) are ever replaced."""
    return os.path.isdir(final) and not os.path.islink(final) and (
        os.path.isfile(os.path.join(final, META_FILE)) or not os.listdir(final)
    )


def _sibling(final: str, kind: str) -> str:
    """A hidden sibling of ``final`` that :func:`clean_debris` recognises by its name."""
    parent, name = os.path.split(final)
    return os.path.join(parent, f".{name}.{kind}-{os.getpid()}-{secrets.token_hex(4)}")


_DEBRIS = re.compile(r"^\.(?P<name>.+)\.(?P<kind>tmp|old)-(?P<pid>\d+)-[0-9a-f]{8}$")


def _alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    return True


def clean_debris(final: str) -> "list[str]":
    """Remove what killed writers of ``final`` left next to it; put a lost ``final`` back.

    Only siblings named ``.<name>.tmp-<pid>-<hex>`` / ``.<name>.old-<pid>-<hex>`` whose
    writer process no longer exists (on this machine) are touched. A ``.old-`` backup
    with no ``final`` is a writer that died between its two renames (the fallback path):
    that backup is the last complete version and becomes ``final`` again.

    Returns:
        The names removed or restored.
    """
    parent, name = os.path.split(final)
    try:
        entries = sorted(os.listdir(parent))
    except OSError:
        return []
    done = []
    for entry in entries:
        m = _DEBRIS.match(entry)
        if not m or m.group("name") != name or _alive(int(m.group("pid"))):
            continue
        path = os.path.join(parent, entry)
        if m.group("kind") == "old" and not os.path.lexists(final):
            os.rename(path, final)
        elif os.path.isdir(path) and not os.path.islink(path):
            shutil.rmtree(path, ignore_errors=True)
        else:
            try:
                os.unlink(path)
            except FileNotFoundError:
                pass
        done.append(entry)
    return done


_RENAME_EXCHANGE = 2
_AT_FDCWD = -100
_renameat2: Any = None


def _exchange(a: str, b: str) -> bool:
    """Swap two existing paths in one atomic step (Linux ``renameat2``); False if unsupported."""
    global _renameat2
    if not sys.platform.startswith("linux"):
        return False
    if _renameat2 is None:
        try:
            fn = ctypes.CDLL(None, use_errno=True).renameat2
        except (OSError, AttributeError):  # glibc < 2.28, musl, ...
            _renameat2 = False
            return False
        fn.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
        fn.restype = ctypes.c_int
        _renameat2 = fn
    if _renameat2 is False:
        return False
    if _renameat2(_AT_FDCWD, os.fsencode(a), _AT_FDCWD, os.fsencode(b), _RENAME_EXCHANGE) == 0:
        return True
    err = ctypes.get_errno()
    if err in (errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP, errno.ENOTSUP):
        return False  # this file system cannot exchange: use the fallback
    raise OSError(err, os.strerror(err), b)


def _swap_into_place(tmp: str, final: str) -> None:
    if not os.path.lexists(final):
        os.rename(tmp, final)
        return
    if _exchange(tmp, final):
        shutil.rmtree(tmp, ignore_errors=True)  # tmp now holds the previous version
        return
    backup = _sibling(final, "old")
    os.rename(final, backup)
    try:
        os.rename(tmp, final)
    except BaseException:
        os.rename(backup, final)  # put the old one back
        raise
    shutil.rmtree(backup, ignore_errors=True)


def _write_synced(file_path: str, data: bytes) -> None:
    with open(file_path, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())


def _fsync_dir(path: str) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:  # e.g. Windows cannot open directories; the rename is still atomic
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _atomic_file(final: str, write: Any) -> None:
    parent, name = os.path.split(final)
    os.makedirs(parent, exist_ok=True)
    clean_debris(final)
    tmp = _sibling(final, "tmp")
    try:
        with open(tmp, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, final)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    _fsync_dir(parent)
