"""Tensors as the reader hands them out: the ``Weights`` alias, tf2's positional names,
and the one check that a policy's tensors fit where they are going (restore, merge).
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Collection, Dict, List, Sequence

import numpy as np

from ..errors import ShapeMismatchError

Weights = Dict[str, np.ndarray]

def by_position(values: Sequence[np.ndarray]) -> Weights:
    """A tf2 policy's weight list (Keras variable order) named "0", "1", ... by position.

    RLlib's tf2 ``get_weights()`` returns a list; every reader and writer here names its
    entries by position, so both stacks and frameworks share one ``{name: array}`` form.
    """
    return OrderedDict((str(i), v) for i, v in enumerate(values))


def is_positional(names: Collection[str]) -> bool:
    """True when the tensor names are positions "0", "1", ...: a tf2 policy's (see :func:`by_position`)."""
    return bool(names) and all(str(name).isdigit() for name in names)


def positional(weights: Weights, count: int) -> List[np.ndarray]:
    """The inverse of :func:`by_position`: the first ``count`` entries "0".."count-1" as a list."""
    return [weights[str(i)] for i in range(count)]


# Buffers of RLlib's modules that are constants of the config, not learned. Older
# releases did not have them (Ray 2.30's PPO modules lack '*.log_std_clip_param_const'),
# so a checkpoint without one keeps the target's value; migrate keeps them from the target too.
CONSTANT_BUFFERS = ("log_std_clip_param_const",)


def is_constant_buffer(name: str) -> bool:
    """True for a module constant such as ``pi.log_std_clip_param_const`` (see above)."""
    return name.rsplit(".", 1)[-1] in CONSTANT_BUFFERS


def policy_label(source_id: str, target_id: str) -> str:
    """How messages name a restored policy: ``policy 'a'``, or ``policy 'a' -> 'b'`` when renamed."""
    return f"policy {source_id!r}" if source_id == target_id else f"policy {source_id!r} -> {target_id!r}"


def check_tensors(label: str, source: Weights, target: Weights, target_name: str = "algorithm") -> Weights:
    """Return ``source`` in the target's key order and dtypes, or raise naming the mismatch.

    Args:
        label: starts every message, e.g. ``policy 'a'`` or ``policy 'a' -> 'b'``.
        source: the checkpoint's tensors.
        target: the tensors they must replace (names, shapes and dtypes; values only for
            the kept constants below).
        target_name: what the target is, for messages ('algorithm', 'base').

    A target tensor that is a module constant (:data:`CONSTANT_BUFFERS`) and absent from
    the source is taken from ``target`` as is (so ``target`` must hold real values then).

    Raises:
        ShapeMismatchError: names differ, a shape differs, or a dtype cannot be cast
            within its kind (float64 -> float32 is fine, bytes -> float32 is not).
    """
    kept = [n for n in target if n not in source and is_constant_buffer(n)]
    missing = [n for n in target if n not in source and n not in kept]
    unexpected = [n for n in source if n not in target]
    if missing or unexpected:
        raise ShapeMismatchError(
            f"{label}: tensor names differ between checkpoint and {target_name}; "
            f"missing in the checkpoint: {', '.join(missing) or '-'}; "
            f"only in the checkpoint: {', '.join(unexpected) or '-'}"
        )
    out: Weights = OrderedDict()
    for name, tgt in target.items():
        if name in kept:
            out[name] = np.array(tgt, copy=True)
            continue
        src = source[name]
        tgt_shape, tgt_dtype = tuple(np.shape(tgt)), np.asarray(tgt).dtype
        if tuple(src.shape) != tgt_shape:
            raise ShapeMismatchError(
                f"{label}: tensor {name!r} is {tuple(src.shape)} in the checkpoint "
                f"but {tgt_shape} in the {target_name}"
            )
        if not np.can_cast(src.dtype, tgt_dtype, casting="same_kind"):
            raise ShapeMismatchError(
                f"{label}: tensor {name!r} is {src.dtype} in the checkpoint but {tgt_dtype} in the {target_name}"
            )
        out[name] = np.ascontiguousarray(src, dtype=tgt_dtype)
    return out
