"""Spaces as the checkpoints store them -> :class:`~.views.SpaceView`, without gymnasium.

* new stack: ``<module dir>/class_and_ctor_args.pkl`` -- gymnasium spaces pickled by
  value, which safe mode turns into Placeholders whose ``state`` holds low/high/n/...
* old stack: ``policy_spec`` inside ``policy_state.pkl`` -- RLlib's serialised space dicts
  (``ray.rllib.utils.serialization.gym_space_to_dict``: arrays as base64 of zlib of
  ``np.save`` bytes).
"""

from __future__ import annotations

import base64
import io
import zlib
from collections import OrderedDict
from typing import Any, Callable, Optional

import numpy as np

from ..errors import CheckpointFormatError, malformed
from .codecs.safe_pickle import Placeholder
from .views import Bound, SpaceView

# RLlib's serialised space names -> gymnasium class names.
_OLD_SPACE_NAMES = {
    "box": "Box",
    "discrete": "Discrete",
    "multi-binary": "MultiBinary",
    "multi-discrete": "MultiDiscrete",
    "tuple": "Tuple",
    "dict": "Dict",
    "simplex": "Simplex",
    "repeated": "Repeated",
    "flex_dict": "FlexDict",
    "text": "Text",
}


def space_from_object(space: object, where: str) -> Optional[SpaceView]:
    """A gymnasium space (real, or a Placeholder from safe mode) as a :class:`SpaceView`."""
    if space is None:
        return None
    if isinstance(space, Placeholder):
        type_name = type(space).name.rsplit(".", 1)[-1]
        state = space.state if isinstance(space.state, dict) else {}
    else:
        type_name = type(space).__name__
        state = dict(getattr(space, "__dict__", {}))
    get: Callable[..., Any] = state.get  # the pickled attributes: any object
    dtype = get("dtype")
    dtype_s = np.dtype(dtype).name if isinstance(dtype, (np.dtype, str)) else None
    shape = get("_shape", get("shape"))
    shape_t = tuple(int(d) for d in shape) if isinstance(shape, (tuple, list)) else None
    if type_name == "Box":
        low, high = get("low"), get("high")
        if not isinstance(low, np.ndarray) or not isinstance(high, np.ndarray):
            raise CheckpointFormatError(f"{where}: Box space without low/high arrays")
        return SpaceView("Box", shape_t, dtype_s, _bound(low), _bound(high))
    if type_name == "Discrete":
        return SpaceView("Discrete", shape_t, dtype_s, n=_int(get("n")), start=_int(get("start", 0)))
    if type_name == "MultiBinary":
        n = get("n")
        return SpaceView("MultiBinary", shape_t, dtype_s, n=_int(n) if np.ndim(n) == 0 else None)
    if type_name == "MultiDiscrete":
        nvec = get("nvec")
        return SpaceView("MultiDiscrete", shape_t, dtype_s, nvec=tuple(int(x) for x in np.ravel(nvec)))
    if type_name in ("Tuple", "Dict"):
        subs = get("spaces")
        items = subs.items() if isinstance(subs, dict) else enumerate(subs or ())
        return SpaceView(type_name, spaces=OrderedDict((str(k), _sub(space_from_object(s, where), where)) for k, s in items))
    return SpaceView(type_name, shape_t, dtype_s)


def space_from_rllib_dict(d: object, where: str) -> Optional[SpaceView]:
    """A space serialised by RLlib's ``space_to_dict`` as a :class:`SpaceView`."""
    if d is None:
        return None
    if isinstance(d, dict) and isinstance(d.get("space"), dict):  # space_to_dict wrapper
        d = d["space"]
    if isinstance(d, Placeholder) or not isinstance(d, dict):  # a pickled space object
        return space_from_object(d, where)
    kind = d.get("space")
    type_name = _OLD_SPACE_NAMES.get(str(kind), str(kind))
    dtype = d.get("dtype")
    dtype_s = np.dtype(dtype).name if dtype is not None else None
    shape = d.get("shape")
    shape_t = tuple(int(x) for x in shape) if shape is not None else None
    if kind == "box":
        low = decode_rllib_ndarray(d["low"], where)
        high = decode_rllib_ndarray(d["high"], where)
        return SpaceView("Box", shape_t or tuple(low.shape), dtype_s, _bound(low), _bound(high))
    if kind == "discrete":
        return SpaceView("Discrete", (), "int64", n=_int(d.get("n")), start=_int(d.get("start", 0)))
    if kind == "multi-binary":
        n = d.get("n")
        return SpaceView("MultiBinary", shape_t, dtype_s, n=n if isinstance(n, int) else None)
    if kind == "multi-discrete":
        nvec = decode_rllib_ndarray(d["nvec"], where)
        return SpaceView("MultiDiscrete", tuple(nvec.shape), dtype_s, nvec=tuple(int(x) for x in nvec.ravel()))
    if kind in ("tuple", "dict"):
        subs = d.get("spaces")
        items = subs.items() if isinstance(subs, dict) else enumerate(subs or ())
        return SpaceView(type_name, spaces=OrderedDict((str(k), _sub(space_from_rllib_dict(s, where), where)) for k, s in items))
    return SpaceView(type_name, shape_t, dtype_s)


def _sub(view: Optional[SpaceView], where: str) -> SpaceView:
    if view is None:
        raise CheckpointFormatError(f"{where}: a Tuple or Dict space holds no space (None)")
    return view


def decode_rllib_ndarray(text: "str | bytes", where: str) -> np.ndarray:
    """RLlib's ``_serialize_ndarray``: base64(zlib(np.save bytes)); no pickles allowed."""
    with malformed(where, "cannot decode a serialised space array"):
        raw = zlib.decompress(base64.b64decode(text))
        arr: np.ndarray = np.load(io.BytesIO(raw), allow_pickle=False)
        return arr


def _bound(arr: np.ndarray) -> Bound:
    arr = np.asarray(arr)
    if arr.size and np.all(arr == arr.flat[0]):
        return float(arr.flat[0])
    if arr.size and np.all(np.isnan(arr)):
        return float("nan")
    return tuple(float(x) for x in arr.ravel())


def _int(value: Any) -> Optional[int]:
    return None if value is None else int(value)
