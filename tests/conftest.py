"""Fixtures: one Ray instance per xdist worker, tiny checkpoints built once per worker."""

from __future__ import annotations

import os

import pytest

os.environ.setdefault("RAY_DEDUP_LOGS", "0")
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
if os.environ.get("RLLIB_EXT_FRAMEWORK") == "tf2":
    # tf2 must be imported before RLlib, or RLlib disables eager mode (see README).
    os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
    import tensorflow  # noqa: F401


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
            runtime_env={"env_vars": {"PYTHONPATH": here, "RAY_DEDUP_LOGS": "0"}},
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
