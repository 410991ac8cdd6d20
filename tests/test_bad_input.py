"""Bad input gives a typed error from one hierarchy, with a message naming file and problem."""

from __future__ import annotations

import json
import os
import re
import shutil

import pytest

from rllib_ext import (
    CheckpointError,
    CheckpointFormatError,
    NotACheckpointError,
    PolicyNotFoundError,
    inspect,
    read_weights,
)

WEIGHTS = {"new": "learner_group/learner/rl_module/policy_1/module_state.pkl",
           "old": "policies/policy_1/policy_state.pkl"}


@pytest.fixture
def copy_of(ckpts, tmp_path):
    def make(stack):
        path, _ = ckpts(stack)
        dst = tmp_path / f"copy_{stack}"
        shutil.copytree(path, dst)
        return dst
    return make


@pytest.mark.parametrize("stack", ["new", "old"])
def test_read_weights_empty_weights_file(copy_of, stack):
    ckpt = copy_of(stack)
    (ckpt / WEIGHTS[stack]).write_bytes(b"")
    with pytest.raises(CheckpointFormatError, match=re.escape(f"{ckpt / WEIGHTS[stack]}: file is empty")):
        read_weights(str(ckpt), "policy_1")


@pytest.mark.parametrize("stack", ["new", "old"])
def test_read_weights_truncated_weights_file(copy_of, stack):
    ckpt = copy_of(stack)
    data = (ckpt / WEIGHTS[stack]).read_bytes()
    (ckpt / WEIGHTS[stack]).write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointFormatError, match=re.escape(f"{ckpt / WEIGHTS[stack]}: truncated or corrupt pickle")):
        read_weights(str(ckpt), "policy_1")


@pytest.mark.parametrize("stack", ["new", "old"])
@pytest.mark.parametrize(
    "version, message",
    [
        ("9.0", "checkpoint_version 9.0 is not supported (this reader knows 1.0-1.2 and 2.x)"),
        ("banana", "checkpoint_version 'banana' is not of the form 'MAJOR.MINOR'"),
    ],
)
def test_inspect_unknown_or_garbled_version(copy_of, stack, version, message):
    ckpt = copy_of(stack)
    meta_file = ckpt / "rllib_checkpoint.json"
    meta = json.loads(meta_file.read_text())
    meta["checkpoint_version"] = version
    meta_file.write_text(json.dumps(meta))
    with pytest.raises(CheckpointFormatError, match=re.escape(f"{meta_file}: {message}")):
        inspect(str(ckpt))


@pytest.mark.parametrize("stack", ["new", "old"])
def test_read_weights_missing_metadata_is_not_a_checkpoint(copy_of, stack):
    ckpt = copy_of(stack)
    os.remove(ckpt / "rllib_checkpoint.json")
    with pytest.raises(NotACheckpointError, match=re.escape(f"{ckpt}: not an RLlib checkpoint (no rllib_checkpoint.json")):
        read_weights(str(ckpt), "policy_1")


def test_read_weights_file_instead_of_directory(copy_of):
    ckpt = copy_of("new")
    target = ckpt / "rllib_checkpoint.json"
    with pytest.raises(NotACheckpointError, match=re.escape(f"{target}: is a file, not a checkpoint directory")):
        read_weights(str(target), "policy_1")


def test_every_error_is_a_checkpoint_error():
    for cls in (CheckpointFormatError, NotACheckpointError, PolicyNotFoundError):
        assert issubclass(cls, CheckpointError)
