"""Patch RLlib's old-stack state files in place: a policy's weights, its observation filter.

Used by :mod:`.checkpoints`. Every ``weights`` array of a ``policy_state.pkl`` is overwritten
with the source's bytes of the same length; observation-filter statistics are patched in
both places the old stack keeps them: the worker's filter in ``algorithm_state.pkl``
(arrays in place, the count as a re-encoded int) and the policy's agent connector in
``policy_state.pkl`` (RLlib's base64 array strings, re-encoded). Nothing else in the files
changes, and every patched file is decoded again and compared with what was meant before
it is returned.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Dict, List, Optional, Tuple

import numpy as np

from ..checkpoint import format as fmt
from ..checkpoint.codecs import safe_pickle
from ..checkpoint.codecs.pickle_patch import (
    ArrayAt,
    RawBytes,
    SpanMap,
    apply_edits,
    array_edit,
    atom_edit,
    decode_with_spans,
    rllib_ndarray_text,
)
from ..checkpoint.filters import FilterStats, connector_stats, stats_from_filter, sum_sq_key
from ..checkpoint.decode import extract_weights
from ..checkpoint.storage import CheckpointDir
from ..checkpoint.tensors import Weights, by_position, check_tensors
from ..errors import CheckpointFormatError


def patch_worker_filter(data: bytes, where: str, label: str, policy_id: str, stats: FilterStats) -> bytes:
    """``algorithm_state.pkl`` bytes (old stack) with ``policy_id``'s worker filter holding ``stats``.

    Raises:
        CheckpointFormatError: no such filter, or it is not stored as plain arrays and ints.
    """
    payload, spans = decode_with_spans(data, where)
    try:
        flt = payload["worker"]["filters"][policy_id]
        rs = flt.state["running_stats"].state
    except (KeyError, TypeError, AttributeError) as e:
        raise CheckpointFormatError(f"{where}: no MeanStdFilter for {policy_id!r} under worker/filters") from e
    edits = [
        atom_edit(spans, rs["num_pushes"], int(stats.count), "num_pushes", where),
        array_edit(spans, rs["mean_array"], stats.mean, "mean_array", where),
        array_edit(spans, rs[sum_sq_key(rs)], stats.sum_sq_diff, sum_sq_key(rs), where),
    ]
    patched = apply_edits(data, spans, edits)
    got = stats_from_filter(safe_pickle.loads(patched)["worker"]["filters"][policy_id], policy_id)
    _check_same(got, stats, label, where)
    return patched


def _connector_filter_edits(payload: object, spans: SpanMap, stats: FilterStats, where: str) -> List[Tuple[int, int, bytes]]:
    """Edits that put ``stats`` into a policy state's MeanStdObservationFilterAgentConnector."""
    pipeline = (payload.get("connector_configs") or {}).get("agent") if isinstance(payload, dict) else None
    found = [
        state for name, state in (pipeline[1] if isinstance(pipeline, (list, tuple)) and len(pipeline) == 2 else [])
        if name == "MeanStdObservationFilterAgentConnector"
    ]
    if not found:
        return []
    rs = found[0]["running_stats"][0]
    return [
        atom_edit(spans, rs["num_pushes"], int(stats.count), "connector num_pushes", where),
        atom_edit(spans, rs["mean_array"], rllib_ndarray_text(stats.mean), "connector mean_array", where),
        atom_edit(spans, rs[sum_sq_key(rs)], rllib_ndarray_text(stats.sum_sq_diff), f"connector {sum_sq_key(rs)}", where),
    ]


def connector_filter_of(payload: object, where: str) -> Optional[FilterStats]:
    """The statistics of a decoded old-stack policy state's filter connector, if it has one."""
    pipeline = (payload.get("connector_configs") or {}).get("agent") if isinstance(payload, dict) else None
    for name, state in (pipeline[1] if isinstance(pipeline, (list, tuple)) and len(pipeline) == 2 else []):
        if name == "MeanStdObservationFilterAgentConnector":
            doc = {"shape": state["shape"], "de_mean_to_zero": state["demean"], "de_std_to_one": state["destd"],
                   "clip_by_value": state["clip"], "running_stats": state["running_stats"]}
            return connector_stats({"p": doc}, where)["p"]
    return None


def _check_same(got: Optional[FilterStats], want: FilterStats, label: str, where: str) -> None:
    if got is None or got.count != want.count or not np.array_equal(got.mean, want.mean) or not np.array_equal(
        got.sum_sq_diff, want.sum_sq_diff
    ):
        raise CheckpointFormatError(f"{where}: {label}: patching the observation filter did not round-trip")


def patch_policy_state(
    ckpt: CheckpointDir, rel: str, label: str, source: Weights, filter_stats: Optional[FilterStats] = None
) -> bytes:
    """The bytes of the base's ``policy_state.pkl`` with its weights' raw bytes replaced
    (and, given ``filter_stats``, its filter connector's statistics).

    Raises:
        ShapeMismatchError: ``source`` does not fit the base's weights.
        CheckpointFormatError: the base does not store its weights as raw numpy buffers.
    """
    data = ckpt.read_bytes(rel)
    where = ckpt.child(rel)
    payload, spans = decode_with_spans(data, where)
    offsets = spans.offsets
    raw = payload.get("weights") if isinstance(payload, dict) else None
    if isinstance(raw, (list, tuple)):  # tf2: a list in variable order, named by position
        raw = by_position(raw)
    if not isinstance(raw, dict):
        raise CheckpointFormatError(f"{where}: policy state has no 'weights' mapping")
    slots: "OrderedDict[str, ArrayAt]" = OrderedDict()
    used = set()
    nths: Dict[str, int] = {}  # each slot's raw-bytes opcode
    for name, at in raw.items():
        if not isinstance(at, ArrayAt) or not isinstance(at.buf, RawBytes) or not isinstance(at.dtype, np.dtype):
            raise CheckpointFormatError(
                f"{where}: tensor {name!r} is not pickled as a raw numpy buffer; this file cannot be patched in place"
            )
        nbytes = int(np.prod(at.shape, dtype=np.int64)) * at.dtype.itemsize
        if at.buf.length != nbytes or at.buf.nth in used or at.buf.nth >= len(offsets):
            raise CheckpointFormatError(f"{where}: tensor {name!r}: its raw bytes are shared or do not match its shape")
        used.add(at.buf.nth)
        slots[str(name)] = at
        nths[str(name)] = at.buf.nth
    base_like = OrderedDict((n, np.empty(at.shape, at.dtype)) for n, at in slots.items())
    ready = check_tensors(label, source, base_like, target_name="base")
    edits = []
    for name, at in slots.items():
        start = offsets[nths[name]]
        chunk = ready[name].tobytes(order="F" if at.order == "F" else "C")
        edits.append((start, start + len(chunk), chunk))
    if filter_stats is not None:
        edits += _connector_filter_edits(payload, spans, filter_stats, where)
    patched = apply_edits(data, spans, edits)
    decoded = safe_pickle.loads(patched)
    check = extract_weights(decoded, fmt.Layout(fmt.Kind.POLICY, fmt.Stack.OLD, "1.1", "", {}), where)
    for name, want in ready.items():
        if not np.array_equal(check[name], want):  # our locating went wrong: write nothing
            raise CheckpointFormatError(f"{where}: patching tensor {name!r} in place did not round-trip")
    if filter_stats is not None and _connector_filter_edits(payload, spans, filter_stats, where):
        _check_same(connector_filter_of(decoded, where), filter_stats, label, where)
    return patched
