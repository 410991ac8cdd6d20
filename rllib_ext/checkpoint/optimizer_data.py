"""Framework optimizer objects as plain data (numpy, numbers, strings), without the framework.

Torch keeps an optimizer's settings in ``param_groups`` (Ray 2.45 restores them as
tensors); tf-keras pickles each variable as ``functools.partial(ResourceVariable, ...)()``.
:mod:`rllib_ext.checkpoint.training_state` builds its records from what these return.
"""

from __future__ import annotations

from typing import Any, Dict, Mapping

import numpy as np

from .codecs.safe_pickle import Placeholder
from .lazy import LazyArray


def plain_value(obj: object) -> Any:
    """JSON-able copy: tuples become lists, numpy scalars and 0-d arrays numbers."""
    if isinstance(obj, Mapping):
        return {str(k): plain_value(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [plain_value(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return plain_value(obj.tolist())
    if isinstance(obj, np.generic):
        return obj.item()
    if obj is None or isinstance(obj, (bool, int, float, str)):
        return obj
    if hasattr(obj, "__array__"):  # a CPU tensor: Ray 2.45 restores optimizer settings as tensors
        return plain_value(np.asarray(obj))
    raise TypeError(f"not plain data: {type(obj).__name__}")


def infer_kind(buffers: Mapping[int, Mapping[str, object]], hyper: Mapping[str, object]) -> str:
    """The optimizer class a torch ``state_dict`` came from, by its buffers and settings."""
    keys = set(hyper) | {k for b in buffers.values() for k in b}
    if "betas" in keys or "exp_avg" in keys:
        return "AdamW" if hyper.get("decoupled_weight_decay") else "Adam"
    if "square_avg" in keys or "alpha" in hyper:
        return "RMSprop"
    if "momentum_buffer" in keys or "momentum" in hyper:
        return "SGD"
    return "+".join(sorted(keys)) or "unknown"


def hyperparameters(group: Mapping[str, object]) -> Dict[str, Any]:
    """A torch param group's settings as plain data (``params`` and non-data values dropped)."""
    ok = (bool, int, float, str, type(None), tuple, list, np.generic)
    return {k: plain_value(v) for k, v in group.items() if k != "params" and isinstance(v, ok)}


def tf_variable_value(obj: object) -> object:
    """A pickled tf variable's value, without TensorFlow: ``ResourceVariable.__reduce__`` is
    ``functools.partial(ResourceVariable, initial_value=<array>, ...)()``, which safe mode
    keeps as a placeholder of the call whose ``called`` partial has the state
    ``(func, args, keywords, dict)``. Anything else as it is."""
    if isinstance(obj, Placeholder) and (obj.module, obj.name) == ("functools", "partial()"):
        state = getattr(getattr(obj, "called", None), "state", None)
        if isinstance(state, tuple) and len(state) >= 3 and isinstance(state[2], Mapping):
            value = state[2].get("initial_value")
            if isinstance(value, LazyArray):
                value = value.materialize()
            if isinstance(value, (np.ndarray, np.generic)):  # the iteration counter: a numpy scalar
                return np.asarray(value)
    return obj
