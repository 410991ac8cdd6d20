"""The on-disk layouts RLlib writes, and how to tell them apart (step 2 of a read, after open).

Where one policy's file is in a layout is the next step's job (:mod:`.locate`).

Version history (``checkpoint_version`` in ``rllib_checkpoint.json`` / ``metadata.json``):
  0.1  Ray < 2.0: a single ``checkpoint-<n>`` file. Not supported (no per-policy data).
  1.0  Ray 2.0-2.x old stack: ``algorithm_state.pkl`` + ``policies/<pid>/policy_state.pkl``.
  1.1  old stack, adds msgpack (``*.msgpck``); still what Ray 2.60 writes on the old stack.
  1.2  Ray ~2.30 new stack: ``learner/module_state/<mid>/module_state_dir/module_state.pt``.
  2.0+ Ray >= 2.36 new stack (Checkpointable): ``learner_group/learner/rl_module/<mid>/
       module_state.pkl`` (or ``.msgpack``); every component dir has ``metadata.json``.
       Torch modules of Ray <= 2.40 write ``module_state.pt`` (a ``torch.save`` zip of the
       state dict) instead; Ray 2.41 moved them to ``module_state.pkl``.
We dispatch on that version string and on which files exist, never on exception text.

rllib_ext's own single-policy directory (``policy.json`` + ``weights.safetensors``) carries
``format_version`` instead; see ``policy_file.py``:
  1.0  first version.
  1.1  adds ``observation_filter``: the policy's MeanStdFilter statistics (JSON), or null.
       1.0 files still load (no filter).
  1.2  adds ``training_state`` (JSON: optimizers, KL coefficient, log alpha, counters) and
       ``training_state.safetensors`` (the optimizer buffers); written only with
       ``training_state=True`` (otherwise 1.1 is written). 1.0 and 1.1 still load.
"""

from __future__ import annotations

import enum
from typing import Any, Dict, NamedTuple, Tuple

from ..errors import CheckpointFormatError, NotACheckpointError
from .storage import CheckpointDir

RLLIB_METADATA = "rllib_checkpoint.json"
COMPONENT_METADATA = "metadata.json"
NEW_STACK_MODULES_DIR = "learner_group/learner/rl_module"
OLD_STACK_POLICIES_DIR = "policies"
MODULE_STATE_STEMS = ("module_state.pkl", "module_state.msgpack", "module_state.pt")  # .pt: torch, Ray <= 2.40
LEGACY_MODULE_STATE = "module_state_dir/module_state.pt"  # layout 1.2 (Ray ~2.30)
LEGACY_MODULE_METADATA = "rl_module_metadata.json"  # layout 1.2: the module spec, spaces included
CTOR_ARGS_FILE = "class_and_ctor_args.pkl"
POLICY_STATE_FILES = ("policy_state.pkl", "policy_state.msgpck")
SINGLE_POLICY_META = "policy.json"  # rllib_ext's own single-policy format
SINGLE_POLICY_WEIGHTS = "weights.safetensors"
SINGLE_POLICY_VERSIONS = ("1.0", "1.1", "1.2")
SINGLE_POLICY_TRAINING = "training_state.safetensors"  # format 1.2, with training_state=True


class Kind(str, enum.Enum):
    """What a checkpoint directory holds."""

    ALGORITHM = "algorithm"
    MULTI_MODULE = "multi-module"
    MODULE = "module"
    POLICY = "policy"
    SINGLE_POLICY = "single-policy"  # rllib_ext's policy.json + weights.safetensors


class Stack(str, enum.Enum):
    NEW = "new"
    OLD = "old"


class Layout(NamedTuple):  # a NamedTuple, not a dataclass: reading one policy imports no dataclasses
    """Where a checkpoint keeps its per-policy weights."""

    kind: Kind
    stack: Stack
    version: str
    # Directory (relative to the root) whose subdirectories are the policies/modules;
    # "" for a checkpoint that *is* one policy/module.
    policies_dir: str
    metadata: Dict[str, Any]


def parse_version(text: object, where: str) -> Tuple[int, int]:
    """'1.1' -> (1, 1); a clear error for anything else."""
    try:
        major, minor = str(text).split(".")[:2]
        return int(major), int(minor)
    except (ValueError, TypeError) as e:
        raise CheckpointFormatError(
            f"{where}: checkpoint_version {text!r} is not of the form 'MAJOR.MINOR'"
        ) from e


def detect(ckpt: CheckpointDir) -> Layout:
    """Work out the layout of the checkpoint at ``ckpt``.

    Raises:
        NotACheckpointError: no RLlib metadata file at all.
        CheckpointFormatError: metadata present but unreadable or of an unknown version.
    """
    if ckpt.lexists(SINGLE_POLICY_META):
        return _detect_single_policy(ckpt)
    if ckpt.lexists(RLLIB_METADATA):
        meta_file = RLLIB_METADATA
    elif ckpt.lexists(COMPONENT_METADATA):
        meta_file = COMPONENT_METADATA
    else:
        raise NotACheckpointError(
            f"{ckpt.uri}: not an RLlib checkpoint (no {RLLIB_METADATA} or {COMPONENT_METADATA}); "
            f"found: {', '.join(ckpt.listdir()[:10]) or '(empty directory)'}"
        )
    meta = ckpt.read_json(meta_file)
    where = ckpt.child(meta_file)
    if not isinstance(meta, dict):
        raise CheckpointFormatError(f"{where}: expected a JSON object, got {type(meta).__name__}")
    version = meta.get("checkpoint_version")
    if version is None:
        raise CheckpointFormatError(f"{where}: no 'checkpoint_version' key")
    major, minor = parse_version(version, where)
    version_s = f"{major}.{minor}"

    if major >= 3 or major == 0:
        raise CheckpointFormatError(
            f"{where}: checkpoint_version {version_s} is not supported "
            "(this reader knows 1.0-1.2 and 2.x)"
        )
    if major == 2:
        if ckpt.is_dir(NEW_STACK_MODULES_DIR):
            return Layout(Kind.ALGORITHM, Stack.NEW, version_s, NEW_STACK_MODULES_DIR, meta)
        if any(ckpt.exists(f) for f in MODULE_STATE_STEMS):
            subdirs = [d for d in ckpt.listdir() if _is_module_dir(ckpt, d)]
            if subdirs:
                return Layout(Kind.MULTI_MODULE, Stack.NEW, version_s, "", meta)
            return Layout(Kind.MODULE, Stack.NEW, version_s, "", meta)
        raise CheckpointFormatError(
            f"{ckpt.uri}: a version {version_s} checkpoint, but neither "
            f"{NEW_STACK_MODULES_DIR}/ nor {' or '.join(MODULE_STATE_STEMS)} is in it"
        )
    # major == 1
    if meta.get("type") == "Policy" or any(ckpt.exists(f) for f in POLICY_STATE_FILES):
        return Layout(Kind.POLICY, Stack.OLD, version_s, "", meta)
    if ckpt.is_dir("learner/module_state"):
        return Layout(Kind.ALGORITHM, Stack.NEW, version_s, "learner/module_state", meta)
    return Layout(Kind.ALGORITHM, Stack.OLD, version_s, OLD_STACK_POLICIES_DIR, meta)


def _detect_single_policy(ckpt: CheckpointDir) -> Layout:
    where = ckpt.child(SINGLE_POLICY_META)
    meta = ckpt.read_json(SINGLE_POLICY_META)
    if not isinstance(meta, dict):
        raise CheckpointFormatError(f"{where}: expected a JSON object, got {type(meta).__name__}")
    version = meta.get("format_version")
    if version not in SINGLE_POLICY_VERSIONS:
        raise CheckpointFormatError(
            f"{where}: format_version {version!r} is not supported "
            f"(this reader knows {', '.join(SINGLE_POLICY_VERSIONS)})"
        )
    stack = meta.get("stack")
    if stack not in (Stack.NEW.value, Stack.OLD.value):
        raise CheckpointFormatError(f"{where}: 'stack' is {stack!r}, expected 'new' or 'old'")
    return Layout(Kind.SINGLE_POLICY, Stack(stack), str(version), "", meta)


def _is_module_dir(ckpt: CheckpointDir, rel: str) -> bool:
    return ckpt.is_dir(rel) and any(ckpt.exists(f"{rel}/{f}") for f in MODULE_STATE_STEMS)
