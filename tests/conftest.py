"""Fixtures: one Ray instance per xdist worker, tiny checkpoints built once per worker."""

from __future__ import annotations

import os
import sys

import pytest

os.environ.setdefault("RAY_DEDUP_LOGS", "0")
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
if os.environ.get("RLLIB_EXT_CELL", "").startswith("tf2"):
    os.environ["RLLIB_EXT_FRAMEWORK"] = "tf2"
if os.environ.get("RLLIB_EXT_FRAMEWORK") == "tf2":
    # tf2 must be imported before RLlib, or RLlib disables eager mode (see README).
    os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
    import tensorflow  # noqa: F401


# RLlib's msgpack helpers call msgpack_numpy.patch(), which rebinds msgpack's functions
# for the whole process. Ray serializes task arguments with msgpack too, so after one
# test touches RLlib's msgpack code, arrays sent to remote workers arrive as raw bytes
# (a remote env runner then dies in set_weights). Snapshot now, restore after each test.
try:
    import msgpack as _msgpack

    _MSGPACK_ORIGINALS = {
        n: getattr(_msgpack, n)
        for n in ("Packer", "Unpacker", "load", "loads", "dump", "dumps", "pack", "packb", "unpack", "unpackb")
        if hasattr(_msgpack, n)
    }
except ImportError:  # pragma: no cover
    _msgpack, _MSGPACK_ORIGINALS = None, {}


@pytest.fixture(autouse=True)
def _undo_msgpack_numpy_patch():
    yield
    for name, fn in _MSGPACK_ORIGINALS.items():
        setattr(_msgpack, name, fn)


# ---------------------------------------------------------------- S3 on loopback
# A moto S3 server on 127.0.0.1, one per test process, started on first use. Its
# endpoint and fake credentials go into the environment *now*, before Ray starts, so
# Tune's trial actors (other processes) talk to the same server through pyarrow, and
# no test can reach a real AWS account whatever the developer's own environment holds.
def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


S3_PORT = _free_port()
S3_ENV = {
    "AWS_ENDPOINT_URL": f"http://127.0.0.1:{S3_PORT}",
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_DEFAULT_REGION": "us-east-1",
}
os.environ.update(S3_ENV)
for _var in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_SECURITY_TOKEN"):
    os.environ.pop(_var, None)


@pytest.fixture(scope="session")
def s3_server():
    """The endpoint URL of a local S3-compatible server (moto), loopback only."""
    import logging

    from moto.server import ThreadedMotoServer

    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # one line per request otherwise
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=S3_PORT, verbose=False)
    server.start()
    yield S3_ENV["AWS_ENDPOINT_URL"]
    server.stop()


@pytest.fixture
def s3_bucket(s3_server, request):
    """A fresh bucket for this test: ``s3://<bucket>``."""
    import re

    import boto3

    name = re.sub(r"[^a-z0-9-]", "-", request.node.name.lower())[:40].strip("-") + f"-{os.getpid()}"
    boto3.client("s3").create_bucket(Bucket=name)
    return f"s3://{name}"


@pytest.fixture(scope="session")
def ray_session():
    """A small local Ray, shared by every test of this worker."""
    import ray

    if not ray.is_initialized():
        # Workers import test helpers (callbacks) from tests/ by name.
        here = os.path.dirname(os.path.abspath(__file__))
        ray.init(
            num_cpus=2,
            include_dashboard=False,
            log_to_driver=False,
            configure_logging=False,
            runtime_env={"env_vars": {"PYTHONPATH": here, "RAY_DEDUP_LOGS": "0", **S3_ENV}},
        )
    yield ray
    ray.shutdown()


@pytest.fixture(scope="session")
def ckpts(ray_session, tmp_path_factory):
    """Lazily built 3-policy checkpoints: ``ckpts('new')`` -> (path, {pid: weights})."""
    from builders import build_checkpoint

    cache = {}

    def get(stack: str, **kw):
        key = (stack, tuple(sorted(kw.items())))
        if key not in cache:
            path = str(tmp_path_factory.mktemp(f"ckpt_{stack}"))
            cache[key] = (path, build_checkpoint(path, stack, **kw))
        return cache[key]

    return get


@pytest.fixture(scope="session")
def stored():
    """Committed 3-policy checkpoints, no Ray: ``stored('new')`` -> (path, {pid: weights}).

    The same PPO as ``ckpts`` builds, made once by tests/fixtures/make_current.py; the
    old stack's is tf2 in the tf2 cell. Never write into the path: copy it first.
    """
    from builders import stored_checkpoint, stored_name

    return lambda stack: stored_checkpoint(stored_name(stack))


# ---------------------------------------------------------------- Ray-free modules
# builders.RAY_FREE (modules marked ray_free) read committed checkpoints and never import Ray. A run of nothing but
# them refuses `import ray` where it happens (tests/test_ray_free.py runs them so).
def pytest_collection_finish(session):
    from builders import RAY_FREE, NoRay

    files = {os.path.basename(str(item.fspath)) for item in session.items}
    if not files or not files <= set(RAY_FREE):
        return
    if "ray" in sys.modules:
        raise pytest.UsageError("a Ray-free test module imported ray while it was collected")
    sys.meta_path.insert(0, NoRay())


# ---------------------------------------------------------------- matrix cells
# RLLIB_EXT_CELL=torch-new | torch-old | tf2-old runs one cell of the tox matrix:
# tests parametrized by `stack`, or marked `stack("new"|"old")`, run in the cells of that
# stack; tests without a stack run in torch-new only (they do not depend on the cell),
# unless marked `all_cells`. Unset: every torch test of both stacks (the quickest full local run).
# torch-ray245 (the oldest Ray, tox.ini's [live] files): both stacks, but the slow end-to-end
# tests (Tune runs, resumes) on the new stack only.
_CELLS = {"torch-new": "new", "torch-old": "old", "tf2-old": "old"}


def pytest_configure(config):
    config.addinivalue_line("markers", "all_cells: run in every matrix cell")
    config.addinivalue_line("markers", "ray_free: the module never imports Ray (tests/test_ray_free.py proves it)")
    config.addinivalue_line("markers", "torch_only: needs torch tensors, not in the tf2 cell")
    config.addinivalue_line(
        "markers", "framework_neutral: the code under test never sees the policy's framework (Tune plumbing, "
        "numpy filters, storage, file atomicity): its old-stack run is torch-old's, not repeated in tf2-old")
    config.addinivalue_line(
        "markers", "stack(name): an old- or new-stack test not parametrized by stack: runs in that stack's cells"
    )


def _stack_of(item) -> "str | None":
    """'new'/'old' from a stack(...) marker or a `stack` parameter; None if cell-independent."""
    marker = item.get_closest_marker("stack")
    if marker is not None:
        (name,) = marker.args
        if name not in ("new", "old"):
            raise pytest.UsageError(f"{item.nodeid}: stack({name!r}); expected 'new' or 'old'")
        return name
    callspec = getattr(item, "callspec", None)
    return callspec.params.get("stack") if callspec else None


def pytest_collection_modifyitems(config, items):
    cell = os.environ.get("RLLIB_EXT_CELL")
    if not cell or cell == "docs":  # the docs cell runs what tox.ini names there, unfiltered
        return
    if cell == "torch-ray245":  # both stacks on the oldest Ray; end to end (slow) on the new stack only
        for item in items:
            if _stack_of(item) == "old" and item.get_closest_marker("slow"):
                item.add_marker(pytest.mark.skip(
                    reason="old-stack end-to-end run: torch-old runs it on Ray 2.60, this cell on the new stack"))
        return
    if cell not in _CELLS:
        raise pytest.UsageError(f"RLLIB_EXT_CELL={cell!r}; expected one of {', '.join(_CELLS)}, torch-ray245, docs")
    stack = _CELLS[cell]
    for item in items:
        item_stack = _stack_of(item)
        if cell.startswith("tf2") and item.get_closest_marker("torch_only"):
            item.add_marker(pytest.mark.skip(reason="torch only; not in the tf2 cell"))
        elif cell.startswith("tf2") and item.get_closest_marker("framework_neutral"):
            item.add_marker(pytest.mark.skip(reason="framework-neutral; its old-stack run is in torch-old"))
        elif item_stack is None:
            if cell != "torch-new" and not item.get_closest_marker("all_cells"):
                item.add_marker(pytest.mark.skip(reason=f"cell-independent; runs in torch-new, not {cell}"))
        elif item_stack != stack:
            item.add_marker(pytest.mark.skip(reason=f"{item_stack}-stack test; runs in its own cell, not {cell}"))


@pytest.fixture(scope="session")
def acting_source(ray_session, tmp_path_factory):
    """``acting_source(stack)`` -> (checkpoint, {policy id: RLlib's action-dist inputs on ACT_OBS}).

    A 3-policy PPO on SignGame with observations around 5.0, trained one iteration with a
    MeanStdFilter (old stack: per policy; new stack: the connector, per agent), so acting
    without the filter is measurably different. Shared by the NumpyPolicy and ONNX tests.
    """
    from builders import ACT_OBS, filtered_config, rllib_dist_inputs, train_then_save

    cache = {}

    def get(stack: str):
        if stack not in cache:
            path = str(tmp_path_factory.mktemp(f"acting_{stack}"))
            ref = train_then_save(path, filtered_config(stack, num_env_runners=0), lambda algo: {
                f"policy_{i}": rllib_dist_inputs(algo, f"policy_{i}", f"agent_{i}", ACT_OBS) for i in range(3)})
            cache[stack] = (path, ref)
        return cache[stack]

    return get
