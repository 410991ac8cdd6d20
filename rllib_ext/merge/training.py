"""``merge_checkpoints(..., training_state=True)``: the taken policies' training state too.

New stack only. Each taken module's optimizer buffers (``learner_group/learner/state.pkl``)
come from its source (an algorithm checkpoint, or a single-policy file of format 1.2), the
base's ``param_groups`` (learning rate etc.) stay; its KL coefficient / log alpha go to
``algorithm_state.pkl`` under :data:`~rllib_ext.checkpoint.training_state.SCALARS_KEY`, where the ``...Partial``
algorithms read them back on load. Everything is checked before ``files`` is touched: a
source without training state, or with other optimizers than the base's, is an error.
"""

from __future__ import annotations

import collections
import pickle
from typing import Dict, Mapping, MutableMapping, Tuple

import numpy as np

from ..checkpoint import format as fmt
from ..checkpoint.decode import decode_file
from ..checkpoint.storage import CheckpointDir
from ..checkpoint.training_state import ALGORITHM_STATE_FILES, LEARNER_STATE_FILES, SCALARS_KEY, check_training_state, read_training_state
from ..errors import CheckpointError

Source = Tuple[CheckpointDir, fmt.Layout, str]
_ATOMS = (str, bytes, int, float, bool, type(None), np.ndarray, np.generic, np.dtype)


def plain_data(obj: object) -> bool:
    """True when ``obj`` is containers, numbers, strings and numpy arrays only (safe to re-pickle)."""
    return not first_foreign(obj)


def first_foreign(obj: object, path: str = "", depth: int = 0) -> str:
    """Where the first object :func:`plain_data` rejects sits, and what it is ('' if none)."""
    if depth > 50:
        return f"{path or 'the state'} (nested over 50 levels)"
    if isinstance(obj, _ATOMS):
        return f"an object array at {path or 'the top'}" if isinstance(obj, np.ndarray) and obj.dtype.hasobject else ""
    if isinstance(obj, dict):
        items = [(f"{path}[{k!r}]", v) for k, v in obj.items()] + [(f"{path} (a key)", k) for k in obj]
    elif isinstance(obj, (list, tuple, set, frozenset, collections.deque)):  # deque: metrics windows
        items = [(f"{path}[{i}]", v) for i, v in enumerate(obj)]
    else:
        return f"{obj!r} at {path or 'the top'}"
    for where, value in items:
        found = first_foreign(value, where, depth + 1)
        if found:
            return found
    return ""


def merge_training_state(
    base: CheckpointDir, layout: fmt.Layout, sources: Mapping[str, Source], files: MutableMapping[str, bytes],
    *, trusted: bool = False,
) -> Dict[str, str]:
    """Put each target's training state from its source into ``files`` (relative path -> bytes).

    Returns:
        ``{target id: what was taken}``.

    Raises:
        MissingTrainingStateError, TrainingStateError: a source lacks training state or
            does not fit the base (nothing added to ``files``).
        CheckpointError: the base is old-stack, or its state files hold more than plain data.
    """
    if layout.stack is not fmt.Stack.NEW:
        raise CheckpointError(
            f"{base.uri}: merge_checkpoints(training_state=True) takes new-API-stack checkpoints; on the old "
            "stack the base's optimizer state and counters are kept (merge with training_state=False)"
        )
    learner_rel = next((f for f in LEARNER_STATE_FILES if base.exists(f)), None)
    algo_rel = next((f for f in ALGORITHM_STATE_FILES if base.exists(f)), None)
    learner = decode_file(base, learner_rel) if learner_rel else None
    algo_state = decode_file(base, algo_rel) if algo_rel else None
    for rel, state in ((learner_rel, learner), (algo_rel, algo_state)):
        if rel is None or not rel.endswith(".pkl") or not isinstance(state, dict):
            raise CheckpointError(f"{base.child(rel or 'learner_group/learner/state.pkl')}: missing; there is no "
                                  "training state to rewrite (merge with training_state=False)")
        if not plain_data(state):  # e.g. Ray 2.45 pickles torch tensors in its metrics logger's state
            raise CheckpointError(
                f"{base.child(rel)}: holds {first_foreign(state)}, not plain data, so its training state cannot be "
                "rewritten faithfully; merge with training_state=False, or restore into a live algorithm with "
                "restore(..., training_state=True)"
            )
    # Checked just above; said again for the type checker.
    assert learner_rel is not None and algo_rel is not None and isinstance(learner, dict) and isinstance(algo_state, dict)
    taken, scalars = {}, dict(algo_state.get(SCALARS_KEY) or {})
    for target, (src_ckpt, src_layout, src_id) in sources.items():
        label = f"policy {target!r}" if src_id == target else f"policy {src_id!r} -> {target!r}"
        source = read_training_state(src_ckpt, src_layout, src_id if src_layout.kind is fmt.Kind.ALGORITHM else None,
                                     trusted=trusted)
        mine = read_training_state(base, layout, target)
        check_training_state(label, source, mine, src_ckpt.uri)
        for name, opt in source.optimizers.items():
            learner["optimizer"][f"{target}_{name}"]["state"]["state"] = {i: dict(b) for i, b in opt.buffers.items()}
        entry = {k: v for k, v in (("kl_coeff", source.kl_coeff), ("log_alpha", source.log_alpha)) if v is not None}
        if entry:
            scalars[target] = entry
        taken[target] = source.describe()
    files[learner_rel] = pickle.dumps(learner, protocol=5)
    if scalars:
        files[algo_rel] = pickle.dumps({**algo_state, SCALARS_KEY: scalars}, protocol=5)
    return taken
