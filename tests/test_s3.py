"""Checkpoints under s3:// on a local S3 server (moto on 127.0.0.1; see conftest).

inspect, read_weights, restore(..., policies=...), save_policy (+ load back), and Tune's
storage_path, each against real RLlib checkpoints uploaded to the server.
"""

from __future__ import annotations

import numpy as np
import pytest

from builders import STACKS, assert_weights_equal, live_weights, ppo_config

import rllib_ext
from rllib_ext import PPOPartial

# Storage paths and URIs: torch-old runs these, tf2-old does not.
pytestmark = pytest.mark.framework_neutral


def upload(local: str, uri: str) -> str:
    import pyarrow.fs as pafs

    pafs.copy_files(local, uri)
    return uri


def listing(uri: str):
    import pyarrow.fs as pafs

    fs, root = pafs.FileSystem.from_uri(uri)
    return sorted(i.path[len(root) + 1:] for i in fs.get_file_info(pafs.FileSelector(root, recursive=True)))


@pytest.mark.parametrize("stack", STACKS)
def test_inspect_and_read_weights_from_s3(ckpts, s3_bucket, stack):
    path, saved = ckpts(stack)
    uri = upload(path, f"{s3_bucket}/runs/ckpt")

    view = rllib_ext.inspect(uri)
    assert sorted(view.policies) == sorted(saved)
    assert rllib_ext.policy_ids(uri) == sorted(saved)
    for pid, want in saved.items():
        assert_weights_equal(rllib_ext.read_weights(uri, pid), want, f"{uri} {pid}", ordered=False)


@pytest.mark.parametrize("stack", STACKS)
def test_restore_one_policy_from_s3_leaves_the_others(ckpts, s3_bucket, ray_session, stack):
    path, saved = ckpts(stack)
    uri = upload(path, f"{s3_bucket}/ckpt")
    algo = ppo_config(stack, config_cls=PPOPartial.get_default_config().__class__).debugging(seed=5).build_algo()
    try:
        before = {pid: live_weights(algo, pid) for pid in saved}
        assert any(not np.array_equal(before["policy_0"][k], saved["policy_0"][k]) for k in saved["policy_0"])
        report = algo.restore(uri, policies=["policy_0"])
        assert report.restored == {"policy_0": "policy_0"}
        assert_weights_equal(live_weights(algo, "policy_0"), saved["policy_0"], "restored from s3", ordered=False)
        for pid in ("policy_1", "policy_2"):
            assert_weights_equal(live_weights(algo, pid), before[pid], f"{pid} untouched", ordered=False)
    finally:
        algo.stop()


@pytest.mark.parametrize("stack", STACKS)
def test_save_policy_to_s3_then_load_it_back(ckpts, s3_bucket, ray_session, stack):
    path, saved = ckpts(stack)
    algo = ppo_config(stack, config_cls=PPOPartial.get_default_config().__class__).build_algo()
    try:
        algo.restore(path, policies=["policy_1"])
        uri = algo.save_policy("policy_1", f"{s3_bucket}/policies/p1/")
        assert uri == f"{s3_bucket}/policies/p1"
        assert listing(uri) == ["policy.json", "weights.safetensors"], "no temporary debris in the bucket"
        loaded = rllib_ext.build_policy(uri)
        assert_weights_equal(loaded.weights, saved["policy_1"], "policy file read back from s3", ordered=False)
        # ...and into a live algorithm again, under another id.
        algo.load_policy(uri, "policy_2")
        assert_weights_equal(live_weights(algo, "policy_2"), saved["policy_1"], "load_policy from s3", ordered=False)
        # Overwriting in place is fine too (the manifest goes last).
        algo.save_policy("policy_0", uri)
        assert_weights_equal(rllib_ext.build_policy(uri).weights, live_weights(algo, "policy_0"),
                             "overwritten", ordered=False)
    finally:
        algo.stop()


@pytest.mark.slow
@pytest.mark.parametrize("stack", STACKS)
def test_tune_storage_path_and_restore_source_on_s3(ckpts, s3_bucket, ray_session, stack):
    from ray import tune

    path, saved = ckpts(stack)
    src = upload(path, f"{s3_bucket}/source")
    config = (
        ppo_config(stack, config_cls=PPOPartial.get_default_config().__class__)
        .debugging(seed=11)  # the source was built with seed 0: fresh policies differ from it
        .restore_policies(src, ["policy_0"], freeze=True)
    )
    analysis = tune.run(
        "PPOPartial", config=config, storage_path=f"{s3_bucket}/tune", name="s3run", verbose=0,
        stop={"training_iteration": 1}, checkpoint_at_end=True, raise_on_failed_trial=True,
    )
    ckpt = analysis.trials[0].checkpoint
    assert ckpt is not None and ckpt.filesystem.type_name == "s3", ckpt
    uri = f"s3://{ckpt.path}"
    assert uri.startswith(f"{s3_bucket}/tune/s3run/")
    assert_weights_equal(rllib_ext.read_weights(uri, "policy_0"), saved["policy_0"],
                         "frozen policy in the s3 trial checkpoint", ordered=False)
    assert any(
        not np.array_equal(rllib_ext.read_weights(uri, "policy_1")[k], saved["policy_1"][k]) for k in saved["policy_1"]
    ), "policy_1 should be fresh and trained, not the source's"


def test_policy_pool_round_trip_on_s3(s3_bucket, tmp_path):
    """Ray-free: a pool under s3://, two writers, each in its own namespace."""
    from rllib_ext import Outcome, PolicyPool, PoolNamespaceError, Retention
    from rllib_ext.checkpoint import write_policy_dir

    weights = {"w": np.arange(6, dtype=np.float32).reshape(2, 3)}
    src = write_policy_dir(tmp_path / "src", "main", weights, {"stack": "new"})
    uri = f"{s3_bucket}/league"
    pool = PolicyPool(uri, writer="trial_a")
    assert pool.entries() == [] and listing(uri) == ["pool.json"]
    a = pool.add(src, iteration=5, env_steps=100)
    b = pool.add(src, iteration=10)
    c = pool.with_writer("trial_b").add(src)
    assert a.path == f"{uri}/snapshots/main-0000@trial_a"
    assert [e.id for e in PolicyPool(uri).entries()] == [a.id, b.id, c.id]
    assert pool.get(a.id) == a
    assert_weights_equal(rllib_ext.read_weights(a.path), weights, "snapshot read from s3")
    rating, updated = pool.record([Outcome(a.id, wins=1)])
    assert updated[a.id].games == 1 and rating > 1200.0
    # No lock on object storage: another writer's entries are refused, the pool unchanged.
    for call in (lambda: pool.remove(c.id), lambda: pool.record([Outcome(c.id, wins=1)]),
                 lambda: pool.prune(Retention(last=1), everyone=True)):
        with pytest.raises(PoolNamespaceError, match="writer 'trial_b'"):
            call()
    assert len(pool) == 3
    assert pool.remove(b.id) == b
    assert [e.id for e in pool.entries()] == [a.id, c.id]
    assert not any(b.id in p for p in listing(uri)), "a removed snapshot's objects are gone"
    assert [p for p in listing(uri) if p.endswith((".json", ".safetensors"))] == ["index/trial_a.json", "index/trial_b.json", "pool.json",
                            f"snapshots/{a.id}/policy.json", f"snapshots/{a.id}/weights.safetensors",
                            f"snapshots/{c.id}/policy.json", f"snapshots/{c.id}/weights.safetensors"]
