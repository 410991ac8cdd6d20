"""Fixtures for the pages' code blocks (``pytest --markdown-docs README.md docs``).

Which block runs where, and what its directory holds: tests/docs_blocks.py.
"""

from __future__ import annotations

import os

import pytest

from docs_blocks import prepare

# The site's own Python (conf.py, _ext/) holds no blocks; only the pages are collected.
collect_ignore_glob = ["*.py", "_build/*", "generated/*"]


@pytest.fixture
def docs_dir(tmp_path, monkeypatch):
    """A fresh directory with ``ckpt``, ``old_stack_ckpt``, ``policies/p1``, ``runs/main_policy``."""
    prepare(tmp_path)
    monkeypatch.chdir(tmp_path)
    return tmp_path


@pytest.fixture
def ray_docs(docs_dir):
    """The same directory, for a block that starts Ray: only in the torch-new cell (or when
    RLLIB_EXT_DOCS_RAY=1 is set by hand), where the Ray tests of the new stack run."""
    if os.environ.get("RLLIB_EXT_CELL", "torch-new") != "torch-new" and os.environ.get("RLLIB_EXT_DOCS_RAY") != "1":
        pytest.skip("a block that needs Ray: it runs in the torch-new cell")
    pytest.importorskip("ray")
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    return docs_dir


@pytest.fixture
def config(ray_docs):
    """The config of docs/partial-restore.md's first block: PPOPartial for ``ckpt``'s policies."""
    from rllib_ext import PPOPartialConfig
    from rllib_ext.envs import SignGame, agent_to_policy

    return (
        PPOPartialConfig()
        .environment(SignGame, env_config={"obs_dims": [4, 4, 4]})
        .multi_agent(policies={"policy_0", "policy_1", "policy_2"}, policy_mapping_fn=agent_to_policy)
        .rl_module(model_config={"fcnet_hiddens": [8, 8]})
        .env_runners(num_env_runners=0)
    )


@pytest.fixture
def onnx_docs(docs_dir):
    """The same directory, for a block that writes or runs ONNX (torch + onnx, the test extra)."""
    pytest.importorskip("torch")
    pytest.importorskip("onnx")
    pytest.importorskip("onnxruntime")
    return docs_dir
