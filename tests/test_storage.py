"""Checkpoints behind URIs: file:// as a local path, other schemes through pyarrow.fs (Ray-free)."""

from __future__ import annotations

import pytest

from builders import assert_weights_equal

from rllib_ext import NotACheckpointError, inspect, policy_ids, read_weights
from rllib_ext.checkpoint.storage import CheckpointDir, RemoteCheckpointDir

pytestmark = pytest.mark.ray_free  # never imports Ray: tests/test_ray_free.py checks it


@pytest.mark.parametrize("stack", ["new", "old"])
def test_read_weights_file_uri_matches_local(stored, stack):
    path, expected = stored(stack)
    assert policy_ids("file://" + path) == sorted(expected)
    for pid, want in expected.items():
        assert_weights_equal(read_weights("file://" + path, pid), want, pid)


@pytest.mark.parametrize("stack", ["new", "old"])
def test_pyarrow_backed_dir_reads_same_files_as_local(stored, stack):
    path, _ = stored(stack)
    local, remote = CheckpointDir(path), RemoteCheckpointDir("file://" + path)
    assert remote.listdir() == local.listdir()
    for rel in local.listdir():
        assert remote.is_dir(rel) == local.is_dir(rel)
        if not local.is_dir(rel):
            assert remote.read_bytes(rel) == local.read_bytes(rel), rel
    assert remote.read_json("rllib_checkpoint.json") == local.read_json("rllib_checkpoint.json")


def test_remote_dir_missing_is_not_a_checkpoint(tmp_path):
    with pytest.raises(NotACheckpointError, match="no such file or directory"):
        RemoteCheckpointDir(f"file://{tmp_path}/nope")


def test_inspect_file_uri(stored):
    path, expected = stored("new")
    view = inspect("file://" + path)
    assert list(view.policies) == sorted(expected)
    assert view.stack == "new" and view.policies["policy_0"].observation_space.shape == (4,)
