"""rllib_ext's single-policy format: one directory, no pickle, readable with numpy alone.

```
<dir>/policy.json          metadata (below); read first, so a policy is described without its weights
<dir>/weights.safetensors  the tensors, in the safetensors layout (see :mod:`.codecs.safetensors`)
<dir>/training_state.safetensors  format 1.2 with training state only: optimizer buffers
                           (``optimizer/<name>/<param index>/<buffer>``), old-stack target network
```
``policy.json`` (``format_version`` "1.1"; the version history is in :mod:`.format`)::

    {"format_version": "1.1", "policy_id": "policy_1", "stack": "new", "framework": "torch",
     "observation_space": {SpaceView.to_dict()}, "action_space": {...},
     "model_config": {...}, "algorithm_class": "PPO", "policy_class": "DefaultPPOTorchRLModule",
     "ray_version": "2.60.0", "source": "/path/of/the/original/checkpoint",
     "observation_filter": {FilterStats.to_dict()} or null,             # since 1.1
     "tensors": {"name": {"shape": [8, 4], "dtype": "float32"}, ...},   # in getter order
     "weights_sha256": "<hex sha256 of weights.safetensors>",           # checked on read
     "training_state": {"stack", "optimizers": {name: {"kind", "param_shapes", "hyperparameters"}},
                        "kl_coeff", "log_alpha", "counters", "exploration", "target_network",
                        "tensors_sha256"}}                              # 1.2 only

``training_state`` is :meth:`.training_state.TrainingState.to_json`; a directory without it
is written as 1.1, so readers that know 1.1 keep reading weights-only files.

Writes are atomic (:mod:`.atomic`); an existing directory is replaced only when it is one
of ours (it has a ``policy.json``) or empty.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections import OrderedDict
from typing import Any, Dict, List, Mapping, Optional, Tuple, TypedDict, Union

import numpy as np

from ..errors import CheckpointError, CheckpointFormatError, InvalidArgumentError, NotACheckpointError, did_you_mean, malformed
from . import format as fmt
from .atomic import write_dir_atomically, write_synced
from .codecs.safetensors import decode_safetensors, read_header, tensor_entries, write_safetensors
from .lazy import LazyArray
from .storage import CheckpointDir, fspath
from .tensors import Weights
from .views import CheckpointView, FilterStatsJson, PolicyView, SpaceJson, SpaceView, TensorJson, recurrent_of

FORMAT_VERSION = "1.1"
TRAINING_FORMAT_VERSION = "1.2"  # with a training state
TRAINING_FILE = fmt.SINGLE_POLICY_TRAINING
TRAINING_DIGEST_KEY = "tensors_sha256"  # in policy.json's training_state
META_FILE = fmt.SINGLE_POLICY_META
DIGEST_KEY = "weights_sha256"  # in policy.json: sha256 of weights.safetensors
WEIGHTS_FILE = fmt.SINGLE_POLICY_WEIGHTS



class OptimizerJson(TypedDict, total=False):
    """One optimizer in policy.json's ``training_state`` entry."""

    kind: str
    param_shapes: List[List[int]]
    hyperparameters: Dict[str, Any]


class TrainingStateJson(TypedDict, total=False):
    """policy.json's ``training_state`` entry (:meth:`.training_state.TrainingState.to_json`; format 1.2)."""

    stack: str
    optimizers: Dict[str, OptimizerJson]
    kl_coeff: Optional[float]
    log_alpha: Optional[float]
    counters: Dict[str, int]
    exploration: Any  # plain data, as RLlib's exploration object gave it
    target_network: Any
    tensors_sha256: str


class PolicyMeta(TypedDict, total=False):
    """What a caller says about a policy it writes (:data:`META_KEYS`); ``stack`` is required."""

    stack: str  # 'new' or 'old'
    framework: Optional[str]
    observation_space: Union[SpaceView, SpaceJson, None]  # SpaceView.to_dict() in the file
    action_space: Union[SpaceView, SpaceJson, None]
    model_config: Optional[Dict[str, Any]]
    algorithm_class: Optional[str]
    policy_class: Optional[str]
    ray_version: Optional[str]
    source: Optional[str]
    observation_filter: Optional[FilterStatsJson]


class PolicyJson(PolicyMeta, total=False):
    """policy.json as :func:`read_policy_dir` returns it: the caller's keys plus ours."""

    format_version: str
    policy_id: str
    tensors: Dict[str, TensorJson]  # in getter order
    weights_sha256: str
    training_state: TrainingStateJson


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
    "observation_filter",
)


def write_policy_dir(
    path: "str | os.PathLike[str]",
    policy_id: str,
    weights: Mapping[str, "np.ndarray | LazyArray"],
    meta: PolicyMeta,
    training: Optional[Tuple[TrainingStateJson, Mapping[str, np.ndarray]]] = None,
) -> str:
    """Write one policy as ``policy.json`` + ``weights.safetensors``, atomically.

    The tensors are streamed to the file (a :class:`~.lazy.LazyArray` is read just
    before it is written), so writing costs about one tensor of memory.

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
        training: ``(JSON entry, tensors)`` of a training state
            (:meth:`~.training_state.TrainingState.to_json`): written as format 1.2.

    Returns:
        The absolute path written.

    Raises:
        InvalidArgumentError: ``meta`` lacks ``stack`` or has keys outside :data:`META_KEYS`,
            or ``path`` is not a str or ``os.PathLike``.
        CheckpointError: ``path`` exists and is not an rllib_ext policy directory (it is
            never replaced then), or a tensor cannot be stored.
    """
    final = os.path.abspath(fspath(path))
    doc = _policy_json(policy_id, weights, meta)
    if training is not None:
        doc["format_version"] = TRAINING_FORMAT_VERSION
        doc["training_state"] = dict(training[0])
    if os.path.lexists(final) and not _replaceable(final):
        raise CheckpointError(
            f"{final}: exists and is not an rllib_ext policy directory (no {META_FILE}); "
            "refusing to replace it"
        )

    def fill(tmp: str) -> None:
        os.mkdir(tmp)
        with open(os.path.join(tmp, WEIGHTS_FILE), "wb") as f:  # streamed: about one tensor in memory
            # Neither safetensors nor RLlib's pickles carry a checksum: without one a flipped
            # bit in tensor data reads back as other valid weights. Readers check it when present.
            doc[DIGEST_KEY] = write_safetensors(f, weights, {"format": "np", "policy_id": str(policy_id)})
            f.flush()
            os.fsync(f.fileno())
        if training is not None:
            with open(os.path.join(tmp, TRAINING_FILE), "wb") as f:
                doc["training_state"][TRAINING_DIGEST_KEY] = write_safetensors(f, training[1], {"format": "np"})
                f.flush()
                os.fsync(f.fileno())
        write_synced(os.path.join(tmp, META_FILE), (json.dumps(doc, indent=2) + "\n").encode("utf-8"))

    return write_dir_atomically(final, fill)


def read_policy_dir(path: "str | os.PathLike[str]") -> Tuple[PolicyJson, Weights]:
    """Read a directory written by :func:`write_policy_dir`.

    Returns:
        ``(meta, weights)``: metadata first, as every read function returns it (meta is
        the parsed policy.json), then the weights in the stored order.

    Raises:
        InvalidArgumentError: ``path`` is not a str or ``os.PathLike``.
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
    meta: PolicyJson = dict(layout.metadata)  # type: ignore[assignment]  # checked by fmt.detect
    return meta, read_checked(ckpt, layout)


def read_checked(ckpt: CheckpointDir, layout: fmt.Layout) -> Weights:
    """weights.safetensors, checked against policy.json: the tensor index first (its errors
    say which tensor is wrong), then the file's sha256 (when recorded: by every writer
    since it was added), which catches what still parses, such as flipped value bits.

    Raises:
        CheckpointFormatError: the file's tensors or digest disagree with policy.json.
    """
    where = ckpt.child(WEIGHTS_FILE)
    data = ckpt.read_buffer(WEIGHTS_FILE)  # one buffer; the arrays are views on it
    weights = in_index_order(layout.metadata, decode_safetensors(data, where), ckpt)
    want = layout.metadata.get(DIGEST_KEY)
    if want is not None and hashlib.sha256(data).hexdigest() != want:
        raise CheckpointFormatError(
            f"{where}: contents do not match the sha256 recorded in {ckpt.child(META_FILE)} "
            "(the file is corrupted, or a replace was cut off); write the policy again"
        )
    return weights


def read_training_tensors(ckpt: CheckpointDir, layout: fmt.Layout) -> Weights:
    """training_state.safetensors of a format 1.2 directory, checked against its sha256.

    Raises:
        CheckpointFormatError: the file is missing, corrupt, or not the one recorded.
    """
    data = ckpt.read_buffer(TRAINING_FILE)
    tensors = decode_safetensors(data, ckpt.child(TRAINING_FILE))
    want = (layout.metadata.get("training_state") or {}).get(TRAINING_DIGEST_KEY)
    if want is not None and hashlib.sha256(data).hexdigest() != want:
        raise CheckpointFormatError(
            f"{ckpt.child(TRAINING_FILE)}: contents do not match the sha256 recorded in {ckpt.child(META_FILE)}; "
            "write the policy again"
        )
    return tensors


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
    header, body = read_header(where)
    index = {name: (shape, dtype.newbyteorder("=").name) for _, name, dtype, shape, _ in tensor_entries(header, body, where)}
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
        recurrent=recurrent_of(meta.get("model_config")),
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


def _policy_json(policy_id: str, weights: Mapping[str, "np.ndarray | LazyArray"], meta: Mapping[str, object]) -> Dict[str, Any]:
    unknown = [k for k in meta if k not in META_KEYS]
    if unknown:
        raise InvalidArgumentError(
            f"meta key {unknown[0]!r} is not part of {META_FILE}; allowed: {', '.join(META_KEYS)}"
            f"{did_you_mean(unknown[0], META_KEYS)}"
        )
    if meta.get("stack") not in (fmt.Stack.NEW.value, fmt.Stack.OLD.value):
        raise InvalidArgumentError(f"meta['stack'] must be 'new' or 'old', got {meta.get('stack')!r}")
    doc: Dict[str, Any] = OrderedDict(format_version=FORMAT_VERSION, policy_id=str(policy_id))
    for key in META_KEYS:
        value = meta.get(key)
        if isinstance(value, SpaceView):
            value = value.to_dict()
        doc[key] = value
    doc["tensors"] = OrderedDict()
    for k, v in weights.items():
        arr = v if isinstance(v, (np.ndarray, LazyArray)) else np.asarray(v)
        doc["tensors"][str(k)] = {"shape": [int(d) for d in arr.shape], "dtype": arr.dtype.name}
    return doc


def _space(d: object, ckpt: CheckpointDir) -> Optional[SpaceView]:
    if not isinstance(d, dict):
        return None
    with malformed(ckpt.child(META_FILE), "a space is malformed", "; rewrite the policy with save_policy/extract_policy",
                   catch=(KeyError, TypeError, ValueError, AttributeError, RecursionError)):
        return SpaceView.from_dict(d)


def _check_index(index: object, found: Mapping[str, Tuple[Tuple[int, ...], str]], ckpt: CheckpointDir) -> None:
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
