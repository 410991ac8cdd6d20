"""Nested (Dict/Tuple) observation-filter statistics: one typed error at every entry point.

rllib_ext carries one ``MeanStdFilter`` statistic per policy (old stack) or agent (new
stack) over one flat observation. A filter over a Dict observation keeps one statistic
per key; reading or carrying it is refused with :class:`UnsupportedFilterError` (a
``CheckpointError``, so ``restore``'s promise and the CLI's exit code 1 hold), naming the
file and the policy or agent, never called "malformed". What does not need the filter
(reading weights, extracting a policy, ``filters=False``) still works.

Ray-free: the checkpoints are committed (tests/fixtures/make_current.py: nested-old,
nested-new); the live entry points are in test_filters.py.
"""

from __future__ import annotations

import os
import re

import numpy as np
import pytest

from builders import assert_weights_equal, stored_checkpoint

from rllib_ext import CheckpointError, CheckpointFormatError, NumpyPolicy, UnsupportedFilterError
from rllib_ext.checkpoint import extract_policy, inspect, read_filters, read_policy, read_policy_dir
from rllib_ext.merge import merge_checkpoints
from rllib_ext.cli import main

pytestmark = pytest.mark.ray_free  # never imports Ray: tests/test_ray_free.py checks it

# stack -> (fixture, the file holding the filter state, whose statistics are nested)
NESTED = {
    "old": ("nested-old", "algorithm_state.pkl", "policy 'policy_1'"),
    "new": ("nested-new", "env_runner/env_to_module_connector/MeanStdFilter/state.pkl", "agent 'agent_1'"),
}


@pytest.fixture(params=sorted(NESTED))
def nested(request):
    """(path, expected weights, the start of the error message) of a nested-filter checkpoint."""
    name, rel, whose = NESTED[request.param]
    path, expected = stored_checkpoint(name)
    return path, expected, f"{os.path.join(path, rel)}: {whose}: its MeanStdFilter keeps nested statistics (2 running"


def _raises_unsupported(call, message: str) -> UnsupportedFilterError:
    with pytest.raises(UnsupportedFilterError, match=re.escape(message)) as e:
        call()
    assert isinstance(e.value, CheckpointError) and not isinstance(e.value, CheckpointFormatError)
    assert "Dict/Tuple" in str(e.value) and "filters=False" in str(e.value)
    return e.value


def test_read_filters_refuses_nested_statistics(nested):
    path, _, message = nested
    _raises_unsupported(lambda: read_filters(path), message)


def test_inspect_refuses_nested_statistics(nested):
    path, _, message = nested
    _raises_unsupported(lambda: inspect(path), message)


def test_read_policy_needs_no_filter(nested):
    path, expected, _ = nested
    for pid in ("policy_0", "policy_1"):
        view, weights = read_policy(path, pid)
        assert list(view.policies) == [pid]
        assert_weights_equal(weights, expected[pid], pid)


def test_numpy_policy_refuses_nested_statistics_unless_filters_false(nested):
    path, _, message = nested
    _raises_unsupported(lambda: NumpyPolicy.from_checkpoint(path, "policy_1", agent_id="agent_1"), message)
    policy = NumpyPolicy.from_checkpoint(path, "policy_1", filters=False)
    assert policy.obs_filter is None
    assert np.all(np.isfinite(policy.forward(np.zeros((3, 4), np.float32)).action_dist_inputs))


def test_merge_refuses_nested_statistics_unless_filters_false(nested, tmp_path):
    path, expected, message = nested
    out = tmp_path / "merged"
    _raises_unsupported(lambda: merge_checkpoints(path, [("policy_0", path, "policy_1")], out), message)
    assert not out.exists()  # nothing written
    report = merge_checkpoints(path, [("policy_0", path, "policy_1")], out, filters=False)
    assert report.taken == {"policy_0": f"{path}:policy_1"}
    assert_weights_equal(read_policy(out, "policy_0")[1], expected["policy_1"], "merged policy_0", ordered=False)


def test_extract_policy_needs_no_filter(nested, tmp_path):
    path, expected, _ = nested
    out = extract_policy(path, "policy_1", tmp_path / "p1")
    meta, weights = read_policy_dir(out)
    assert_weights_equal(weights, expected["policy_1"], "policy_1")
    assert meta.get("observation_filter") is None


def test_cli_exits_1_on_nested_statistics(nested, tmp_path, capsys):
    path, _, message = nested
    assert main(["inspect", path]) == 1
    err = capsys.readouterr().err
    assert err.startswith(f"rllib-ext: error: {message}") and err.count("\n") == 1
    assert main(["merge", "--base", path, "--take", f"policy_0={path}:policy_1", "--out", str(tmp_path / "m")]) == 1
    assert capsys.readouterr().err.startswith(f"rllib-ext: error: {message}")
    assert main(["extract", path, "--policy", "policy_1", "--out", str(tmp_path / "p1")]) == 0
