"""Where one policy's weights are in a checkpoint of a known layout (step 3 of a read).

A read is one pass, each step in its own module and each called once by the top-level
function (:func:`.reader.read_weights`): open (:mod:`.storage`) -> layout (:mod:`.format`)
-> locate (here) -> decode (:mod:`.decode`). This step turns a policy id into the path of
its weights file, relative to the checkpoint root; it reads directory entries, never a file.
"""

from __future__ import annotations

import os
from typing import List, Optional, Tuple

from ..errors import CheckpointFormatError, not_found
from .format import (
    LEGACY_MODULE_STATE,
    MODULE_STATE_STEMS,
    POLICY_STATE_FILES,
    SINGLE_POLICY_WEIGHTS,
    Kind,
    Layout,
    Stack,
)
from .storage import CheckpointDir

ONE_POLICY_KINDS = (Kind.POLICY, Kind.MODULE, Kind.SINGLE_POLICY)  # a checkpoint that *is* one policy


def ids_in(ckpt: CheckpointDir, layout: Layout) -> List[str]:
    """The policy (old stack) or module (new stack) ids in an opened checkpoint, sorted."""
    if layout.kind is Kind.SINGLE_POLICY:
        return [str(layout.metadata.get("policy_id") or os.path.basename(ckpt.uri.rstrip("/")))]
    if layout.kind in ONE_POLICY_KINDS:
        return [os.path.basename(ckpt.uri.rstrip("/"))]
    base = layout.policies_dir
    if base and not ckpt.is_dir(base):
        return []
    return [d for d in ckpt.listdir(base) if ckpt.is_dir(f"{base}/{d}" if base else d)]


def resolve_policy(ckpt: CheckpointDir, layout: Layout, policy_id: Optional[str]) -> Tuple[Optional[str], str]:
    """Resolve ``policy_id`` to ``(policy_id, weights file relative to the root)``.

    For a checkpoint that *is* one policy, any ``policy_id`` names it (its directory
    name is only a guess at the id) and ``None`` is returned as the id. A given id is
    checked against one directory listing; the other policies' directories are stat'ed
    only when it is missing (to list them) or not given (to find the one).

    Raises:
        PolicyNotFoundError: ``policy_id`` is not in the checkpoint (lists what is).
        CheckpointFormatError: the policy has no weights file.
    """
    if layout.kind in ONE_POLICY_KINDS:
        return None, weights_file(ckpt, layout, None)
    base = layout.policies_dir
    if policy_id is None or not _is_policy_dir(ckpt, base, policy_id):
        ids = ids_in(ckpt, layout)
        if policy_id is None and len(ids) == 1:
            policy_id = ids[0]
        else:
            raise not_found("policy", "<none given>" if policy_id is None else policy_id, ckpt.uri, ids)
    return policy_id, weights_file(ckpt, layout, policy_id)


def _is_policy_dir(ckpt: CheckpointDir, base: str, policy_id: str) -> bool:
    """``policy_id in ids_in(...)``, with one listing and one stat instead of one stat per policy."""
    if base and not ckpt.is_dir(base):
        return False
    return policy_id in ckpt.listdir(base) and ckpt.is_dir(f"{base}/{policy_id}" if base else policy_id)


def policy_dir(layout: Layout, policy_id: Optional[str]) -> str:
    """Relative directory of ``policy_id`` ("" when the checkpoint is that one policy)."""
    if layout.kind is Kind.MULTI_MODULE and policy_id:
        return policy_id
    if layout.policies_dir and policy_id:
        return f"{layout.policies_dir}/{policy_id}"
    return ""


def weights_file(ckpt: CheckpointDir, layout: Layout, policy_id: Optional[str]) -> str:
    """Relative path of the file holding ``policy_id``'s weights in ``layout``.

    Raises:
        CheckpointFormatError: none of the layout's weights files is there.
    """
    base = policy_dir(layout, policy_id)
    if layout.kind is Kind.SINGLE_POLICY:
        return SINGLE_POLICY_WEIGHTS
    if layout.stack is Stack.NEW and layout.version == "1.2":
        return f"{base}/{LEGACY_MODULE_STATE}" if base else LEGACY_MODULE_STATE
    candidates = MODULE_STATE_STEMS if layout.stack is Stack.NEW else POLICY_STATE_FILES
    for name in candidates:
        rel = f"{base}/{name}" if base else name
        if ckpt.lexists(rel):  # a looping/broken link too: reading it says what is wrong
            return rel
    raise CheckpointFormatError(
        f"{ckpt.child(base)}: no weights file ({' or '.join(candidates)}) for "
        f"{'policy ' + repr(policy_id) if policy_id else 'this checkpoint'}"
    )
