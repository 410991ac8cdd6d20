"""Hold an asynchronous learner still while weights are set (new-stack APPO and IMPALA).

RLlib's ``IMPALALearner`` (and ``APPOLearner``) updates in a background thread from
batches queued earlier: a queue, or APPO's circular buffer, which replays each batch K
times. Weights set from the outside race with that thread: an update in flight overwrites
them (or dies, when torch finds a tensor it saved modified in place), and batches sampled
with the old weights keep training the policy after its restore.

A :class:`Gate`, put once around the thread's update call, closes the race. The driver
(:meth:`rllib_ext.live.seam.backends.NewStackBackend.quiesced`) calls, on every learner:

  :func:`hold`    no new update starts; returns the learner's weights version;
  :func:`settle`  wait until none is in flight, bump the weights version;
  :func:`resume`  mark the restored modules with that version and let the thread go on.

From then on the gate checks every batch the thread takes: a restored module's data with a
row sampled under older weights (RLlib's ``weights_seq_no`` column, which env runners stamp
on every step) is dropped; other modules' data stays. A batch left empty is skipped, and
still counted by RLlib's thread, whose result aggregation counts items. The functions run
inside the learner's process (``LearnerGroup.foreach_learner``) and import no Ray here.

Where Ray has ``patches/0004`` (the learner thread holds ``IMPALALearner._update_lock``
during each update), :func:`hold` takes that lock until :func:`resume`, and the gate only
filters. Without it, the gate holds new updates, and putting the gate in waits for an
update begun before it by polling the thread's stack (the fallback, in :mod:`.ray_internals`).
A wait that does not end in :data:`SETTLE_TIMEOUT_S` raises :class:`~rllib_ext.errors.LearnerBusyError`.

One learner (local, or RLlib's default single remote one), or several that have not
trained yet: DDP needs every learner to take the same updates in lockstep, which neither
a per-learner hold nor a per-learner data filter keeps (the backend refuses, unchanged).
"""

from __future__ import annotations

import inspect
import threading
from typing import Any, Callable, Dict, Optional, Sequence

from ...errors import LearnerBusyError
from .ray_internals import (
    bump_weights_seq_no,
    drop_cached_learner_state,
    learner_thread,
    raise_weights_seq_no,
    set_thread_update,
    thread_update,
    update_lock,
    wait_until_out_of,
    weights_seq_no,
)
from .rllib_types import Learner, MultiAgentBatch

SETTLE_TIMEOUT_S = 120.0  # an update that never ends (a stuck learner): fail, do not hang
_ATTR = "_rllib_ext_gate"


class Gate:
    """Wraps RLlib's learner-thread update: counts updates, holds new ones, filters stale data."""

    def __init__(self, update: Callable[..., object]) -> None:
        self.update = update  # RLlib's own (``Learner.update``), called as update(self=learner, ...)
        self.cond = threading.Condition()
        self.started = 0
        self.finished = 0
        self.limit: Optional[int] = None  # None: run freely; else no update numbered above it starts
        self.marks: Dict[str, int] = {}  # module id -> the weights version its restore made
        self.held: Optional[threading.RLock] = None  # the learner's update lock (patch 0004), taken by hold()

    def __call__(self, /, **kwargs: Any) -> object:  # RLlib passes the learner as self=
        with self.cond:
            self.cond.wait_for(lambda: self.limit is None or self.started < self.limit)
            self.started += 1
        try:
            data = kwargs["training_data"]
            batch = fresh_part(data.batch, self.marks)
            if batch is None:
                return None  # nothing sampled after the restore: no update at all
            if batch is not data.batch:
                kwargs["training_data"] = type(data)(batch=batch)
            return self.update(**kwargs)
        finally:
            with self.cond:
                self.finished += 1
                self.cond.notify_all()


def fresh_part(batch: MultiAgentBatch, marks: Dict[str, int]) -> Optional[MultiAgentBatch]:
    """``batch`` without the restored modules' data sampled before their restore.

    Returns ``batch`` itself when nothing is stale, None when nothing is left. A module's
    data goes whole: APPO/IMPALA batches are trajectories, rows cannot be cut out.
    """
    stale = [mid for mid, pb in batch.policy_batches.items() if mid in marks and _sampled_before(pb, marks[mid])]
    if not stale:
        return batch
    kept = {mid: pb for mid, pb in batch.policy_batches.items() if mid not in stale}
    if not kept:
        return None
    return type(batch)(kept, batch.env_steps())


def _sampled_before(module_batch: Any, version: int) -> bool:
    """Whether a real (not padding) row was sampled with weights older than ``version``.

    Without the column (a custom connector dropped it) freshness cannot be shown: stale.
    """
    seq = module_batch.get("weights_seq_no") if hasattr(module_batch, "get") else None
    if seq is None:
        return True
    mask = module_batch.get("loss_mask")
    if mask is not None:
        seq = seq[mask.bool()] if hasattr(mask, "bool") else seq[mask]
    return len(seq) > 0 and int(seq.min()) < version


def _gate(learner: Learner) -> Optional[Gate]:
    """The learner's gate, put around its update thread on first use; None: no thread."""
    thread = learner_thread(learner)
    if thread is None or not thread.is_alive():
        return None  # a synchronous learner (PPO, ...), or a thread that already died
    found: Optional[Gate] = getattr(learner, _ATTR, None)
    if found is not None and thread_update(thread) is found:
        return found
    original = thread_update(thread)
    gate = Gate(original)
    set_thread_update(thread, gate)  # read on every step: the next update goes through the gate
    setattr(learner, _ATTR, gate)
    if update_lock(learner) is None:  # with the lock (patch 0004), hold() waits for the update by taking it
        _wait_for_ungated_update(thread, original, _name(learner))
    return gate


def _wait_for_ungated_update(thread: threading.Thread, original: Callable[..., object], learner: str) -> None:
    """Return once ``thread`` is not inside an update it began before the gate was put in.

    Unpatched Ray only (no update lock): a poll of the thread's stack, in the seam.
    """
    code = getattr(inspect.unwrap(original), "__code__", None)
    if code is None:
        return
    # Inside the gate, an update is counted: settle() waits for it.
    wait_until_out_of(thread, code, Gate.__call__.__code__, SETTLE_TIMEOUT_S, learner)


def _name(learner: object) -> str:
    return f"learner {type(learner).__name__}"


def hold(learner: Learner, timeout: float = SETTLE_TIMEOUT_S) -> Optional[int]:
    """Let no new update start; the learner's weights version (None: nothing to hold).

    Where Ray has the learner's update lock (patch 0004), this takes it, in the calling
    thread, until :func:`resume`: the update in flight finishes first, the thread starts no
    other, and the restore's ``set_state()`` (which takes the lock too, patched) runs in
    this same thread, so the reentrant lock lets it in. Without it, the gate holds new updates.

    Raises:
        LearnerBusyError: the update lock was not free after ``timeout`` seconds (nothing held).
    """
    gate = _gate(learner)
    if gate is None:
        return None
    lock = update_lock(learner)
    if lock is not None and gate.held is None:
        if not lock.acquire(timeout=timeout):
            raise LearnerBusyError(
                f"{_name(learner)}: its update thread kept the update lock for {timeout:.0f} s; "
                "nothing was held or set"
            )
        gate.held = lock
    with gate.cond:
        gate.limit = gate.started
    return weights_seq_no(learner)


def settle(learner: Learner, timeout: float = SETTLE_TIMEOUT_S) -> Optional[int]:
    """Wait until no update is in flight, after :func:`hold`; the new weights version.

    Raises:
        LearnerBusyError: an update still runs after ``timeout`` seconds (a ``TimeoutError``).
    """
    gate = getattr(learner, _ATTR, None)
    thread = learner_thread(learner)
    if gate is None or thread is None or not thread.is_alive():
        return None
    with gate.cond:
        if not gate.cond.wait_for(lambda: gate.finished == gate.started, timeout):
            raise LearnerBusyError(
                f"{_name(learner)}: the learner thread did not finish its update within {timeout:.0f} s "
                f"({gate.finished} of {gate.started} finished)"
            )
    return bump_weights_seq_no(learner)  # the restore is a new weights version


def resume(learner: Learner, restored: Sequence[str] = (), version: Optional[int] = None) -> None:
    """Mark ``restored`` (their weights are in) at ``version``, then let the thread run again.

    The learner's cached state for env runners predates the restore: dropped, so the next
    sync sends weights from after it.
    """
    gate = getattr(learner, _ATTR, None)
    if gate is None:
        return
    try:
        with gate.cond:
            if restored and version is not None:
                gate.marks = {**gate.marks, **{mid: version for mid in restored}}
                raise_weights_seq_no(learner, version)
                drop_cached_learner_state(learner)
            gate.limit = None
            gate.cond.notify_all()
    finally:
        held, gate.held = gate.held, None
        if held is not None:
            held.release()  # in the thread that took it in hold()

