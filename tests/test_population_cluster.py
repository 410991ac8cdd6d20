"""Per-policy PBT across machines: two trials on two nodes of a ``ray.cluster_utils.Cluster``
share a pool on (moto) S3.

Each trial is an actor pinned to its node by a custom resource and builds its algorithm
with ``config.population(...)``; the pool is the test's moto server, reached over HTTP by
every node. What is proven: a trial exploits a snapshot that a trial on the other node
wrote (the live weights equal the pool entry's); and when a node dies while its trial
is uploading a snapshot, the half-written snapshot is in the bucket but never in the
pool's index (the data goes before ``policy.json``, the index record after both), so the
surviving trial, which would take a better snapshot, takes none and goes on training.

A cluster cannot share a process with the session's own Ray (``ray_session``), so each
test runs its cluster in a fresh interpreter (:func:`run_scenario`), which shuts it down
in a ``finally`` (also on SIGTERM, which the test sends on a timeout).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from typing import Any, Dict, List

import pytest

pytestmark = [pytest.mark.torch_only, pytest.mark.stack("new"), pytest.mark.slow]

POLICIES = ["policy_0", "policy_1"]
EVERY = 2
HERE = os.path.dirname(os.path.abspath(__file__))


def score_better(result, policy_id):  # module level: the actor's config refers to it by name
    return 1.0 if policy_id == "policy_0" else 0.5


def score_worse(result, policy_id):
    return 0.0 if policy_id == "policy_0" else 0.5


# ---------------------------------------------------------------- in the test's process
def run_scenario(name: str, uri: str, timeout: float = 300.0) -> Dict[str, Any]:
    """Run ``name`` (a function below) in a fresh interpreter; its JSON report."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([HERE, os.path.dirname(HERE), os.environ.get("PYTHONPATH", "")])}
    code = "import sys, test_population_cluster as m; m.main(sys.argv[1], sys.argv[2])"
    proc = subprocess.Popen([sys.executable, "-c", code, name, uri], cwd=HERE, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.send_signal(signal.SIGTERM)  # its finally shuts the cluster down
        try:
            out, err = proc.communicate(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
            out, err = proc.communicate()
        pytest.fail(f"{name} did not finish in {timeout:.0f}s:\n{err[-3000:]}")
    assert proc.returncode == 0, err[-4000:]
    return json.loads(out.strip().splitlines()[-1])


def test_a_trial_exploits_a_snapshot_written_on_the_other_node(s3_bucket):
    report = run_scenario("exploit_across_nodes", f"{s3_bucket}/pop")
    assert report["nodes"]["trial_a"] != report["nodes"]["trial_b"], report["nodes"]
    assert report["writer_node"] == report["nodes"]["trial_a"]  # the donor's snapshot was written there
    taken = report["worse_round"]
    assert taken["policy_0"]["exploited_from"] == "policy_0-0000@trial_a", taken
    assert taken["policy_1"]["exploited_from"] is None, taken  # a tie: nothing to take
    assert report["entry_path"].startswith("s3://")
    assert report["max_diff_to_donor"]["policy_0"] == 0.0, report
    assert report["max_diff_to_donor"]["policy_1"] > 0.0, "policy_1 was not to be exploited"


def test_a_node_dying_mid_upload_leaves_no_snapshot_in_use_and_the_other_trial_goes_on(s3_bucket):
    report = run_scenario("node_dies_mid_round", f"{s3_bucket}/pop")
    assert report["dead_trial_error"] in ("ActorDiedError", "RayActorError", "ActorUnavailableError"), report
    half = report["half_written"]
    assert "weights.safetensors" in half and "policy.json" not in half, half  # killed mid-upload
    assert report["half_written_reads"] is False
    assert report["writers_in_pool"] == ["trial_a"], report
    # trial_a's policy_0 scores worst: a whole trial_b snapshot would have been taken.
    assert [r["policy_0"]["exploited_from"] for r in report["survivor_rounds"]] == [None, None], report
    assert report["survivor_iterations"] == [EVERY, 2 * EVERY], report
    assert report["survivor_entries"] == ["policy_0-0000@trial_a", "policy_0-0001@trial_a"], report


# ---------------------------------------------------------------- in the fresh interpreter
def main(name: str, uri: str) -> None:
    """Start a head node and one worker node, run the scenario, print its report; always shut down."""
    import ray
    from ray.cluster_utils import Cluster

    signal.signal(signal.SIGTERM, lambda *_: sys.exit(1))
    # Quick node-death detection: the default health check takes ~30 s to give up on a node.
    system = {"health_check_period_ms": 500, "health_check_failure_threshold": 3, "health_check_timeout_ms": 500}
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1, "resources": {"node_a": 1},
                                                            "include_dashboard": False, "_system_config": system})
    try:
        worker = cluster.add_node(num_cpus=1, resources={"node_b": 1})
        cluster.wait_for_nodes()
        ray.init(address=cluster.address, log_to_driver=False)
        report = globals()[name](cluster, worker, uri)
        print(json.dumps(report))
    finally:
        ray.shutdown()
        cluster.shutdown()


class Trial:
    """One trial: a population algorithm writing to the pool as ``writer``."""

    def __init__(self, uri: str, writer: str, better: bool) -> None:
        from builders import ppo_config

        from rllib_ext import PolicyPool, PPOPartialConfig

        # Seeds of their own: with one seed both trials would train alike.
        config = ppo_config("new", obs_dims=(4, 4), config_cls=PPOPartialConfig).debugging(seed=0 if writer == "trial_a" else 1)
        self.algo = config.population(PolicyPool(uri, writer=writer), policies=POLICIES, every=EVERY, quantile=0.5,
                                      score=score_better if better else score_worse, perturb={"lr": (0.5, 2.0)},
                                      seed=3).build_algo()

    def node(self) -> str:
        import ray

        return ray.get_runtime_context().get_node_id()

    def train(self, n: int) -> List[Dict[str, Any]]:
        """``n`` iterations: each one's training_iteration and population report."""
        out = []
        for _ in range(n):
            result = self.algo.train()
            out.append({"iteration": result["training_iteration"], **result["rllib_ext"]["population"]})
        return out

    def weights(self, policy_id: str) -> Dict[str, Any]:
        from builders import live_weights

        return live_weights(self.algo, policy_id)

    def hang_in_next_upload(self) -> None:
        """The next snapshot upload writes its data, then hangs before ``policy.json``."""
        import pyarrow.fs as pafs

        import rllib_ext.pool.store as store

        def data_then_hang(local: str, dest: str, *, last=()):
            fs, root = pafs.FileSystem.from_uri(dest)
            for rel in sorted(os.listdir(local)):
                if rel not in last:
                    with open(os.path.join(local, rel), "rb") as src, fs.open_output_stream(f"{root}/{rel}") as out:
                        out.write(src.read())
            time.sleep(3600)  # the node dies here

        store.upload_dir = data_then_hang


def _trials(uri: str, better: str):
    """trial_a on the head node (node_a), trial_b on the worker node (node_b); ``better`` scores higher."""
    import ray

    cls = ray.remote(num_cpus=1)(Trial)
    return {w: cls.options(resources={f"node_{w[-1]}": 0.01}).remote(uri, w, w == better) for w in ("trial_a", "trial_b")}


def _max_diff(a: Dict[str, Any], b: Dict[str, Any]) -> float:
    import numpy as np

    return max(float(np.abs(np.asarray(a[k]) - np.asarray(b[k])).max()) for k in a)


def exploit_across_nodes(cluster, worker, uri: str) -> Dict[str, Any]:
    import ray

    from rllib_ext import PolicyPool, read_weights

    t = _trials(uri, better="trial_a")
    nodes = {w: ray.get(h.node.remote()) for w, h in t.items()}
    ray.get(t["trial_a"].train.remote(EVERY))  # its round: snapshots policy_0-0000@trial_a
    worse_round = ray.get(t["trial_b"].train.remote(EVERY))[-1]  # its round: takes trial_a's policy_0
    entry = PolicyPool(uri).get("policy_0-0000@trial_a")
    donor = {pid: read_weights(PolicyPool(uri).get(f"{pid}-0000@trial_a").path) for pid in POLICIES}
    live = {pid: ray.get(t["trial_b"].weights.remote(pid)) for pid in POLICIES}
    return {"nodes": nodes, "writer_node": nodes[entry.writer], "worse_round": worse_round, "entry_path": entry.path,
            "max_diff_to_donor": {pid: _max_diff(live[pid], donor[pid]) for pid in POLICIES}}


def node_dies_mid_round(cluster, worker, uri: str) -> Dict[str, Any]:
    import pyarrow.fs as pafs
    import ray

    from rllib_ext import PolicyPool, read_weights
    from rllib_ext.errors import CheckpointError

    t = _trials(uri, better="trial_b")
    ray.get(t["trial_b"].hang_in_next_upload.remote())
    pending = t["trial_b"].train.remote(EVERY)  # its round hangs in policy_0's upload
    fs, root = pafs.FileSystem.from_uri(f"{uri}/snapshots/policy_0-0000@trial_b")
    deadline = time.time() + 120
    while fs.get_file_info(f"{root}/weights.safetensors").type == pafs.FileType.NotFound:
        assert time.time() < deadline, "trial_b never started its snapshot upload"
        time.sleep(0.2)
    cluster.remove_node(worker, allow_graceful=False)  # the node dies mid-upload
    try:
        ray.get(pending, timeout=120)
        dead_error = ""
    except (ray.exceptions.RayActorError, ray.exceptions.GetTimeoutError) as e:
        dead_error = type(e).__name__
    half = sorted(i.base_name for i in fs.get_file_info(pafs.FileSelector(root)))
    try:
        read_weights(f"{uri}/snapshots/policy_0-0000@trial_b")
        half_reads = True
    except CheckpointError:
        half_reads = False
    rounds = ray.get(t["trial_a"].train.remote(2 * EVERY))
    entries = PolicyPool(uri).entries(policy="policy_0")
    return {"dead_trial_error": dead_error, "half_written": half, "half_written_reads": half_reads,
            "writers_in_pool": sorted({e.writer for e in PolicyPool(uri).entries()}),
            "survivor_rounds": [r for r in rounds if r["iteration"] % EVERY == 0],
            "survivor_iterations": [r["iteration"] for r in rounds if r["iteration"] % EVERY == 0],
            "survivor_entries": [e.id for e in entries]}
