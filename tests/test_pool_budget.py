"""What a pool cost: each writer's training and evaluation env steps, summed (``PolicyPool.budget``)."""

from __future__ import annotations

import re

import pytest

from rllib_ext import PolicyPool
from rllib_ext.errors import CheckpointFormatError, InvalidArgumentError

pytestmark = pytest.mark.ray_free


def test_budget_sums_writers_and_a_writer_record_replaces_its_last(tmp_path):
    a, b = PolicyPool(tmp_path / "pool", writer="a"), PolicyPool(tmp_path / "pool", writer="b")
    a.record_budget(training_env_steps=1000, evaluation_env_steps=300, evaluation_games=120)
    a.record_budget(training_env_steps=2000, evaluation_env_steps=500, evaluation_games=200)  # cumulative
    b.record_budget(training_env_steps=10, evaluation_env_steps=0, evaluation_games=0)
    spent = PolicyPool(tmp_path / "pool").budget()
    assert spent.recorded
    assert (spent.training_env_steps, spent.evaluation_env_steps, spent.evaluation_games) == (2010, 500, 200)
    assert spent.total_env_steps == 2510
    assert spent.by_writer["a"].total_env_steps == 2500 and spent.by_writer["b"].training_env_steps == 10
    assert spent.line() == "budget: training=2010 evaluation=500 total=2510"


def test_a_pool_without_a_budget_reads_as_nothing_recorded(tmp_path):
    spent = PolicyPool(tmp_path / "pool").budget()
    assert not spent.recorded and spent.total_env_steps == 0


def test_bad_counts_are_refused_and_nothing_is_written(tmp_path):
    pool = PolicyPool(tmp_path / "pool", writer="a")
    with pytest.raises(InvalidArgumentError, match=re.escape("record_budget(evaluation_env_steps=-1): give an int >= 0")):
        pool.record_budget(training_env_steps=1, evaluation_env_steps=-1, evaluation_games=0)
    with pytest.raises(InvalidArgumentError, match=re.escape("record_budget(training_env_steps=1.5)")):
        pool.record_budget(training_env_steps=1.5, evaluation_env_steps=0, evaluation_games=0)
    assert not pool.budget().recorded


def test_a_garbled_budget_file_is_named(tmp_path):
    pool = PolicyPool(tmp_path / "pool", writer="a")
    pool.record_budget(training_env_steps=1, evaluation_env_steps=2, evaluation_games=1)
    path = tmp_path / "pool" / "budget" / "a.json"
    path.write_text('{"budget_version": 9}')
    with pytest.raises(CheckpointFormatError, match=re.escape(f"{path}: budget_version 9 is not supported")):
        pool.budget()
