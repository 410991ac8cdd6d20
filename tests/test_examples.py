"""The README's main job, run for real with a tiny budget (as `make demo` runs it)."""

from __future__ import annotations

import os
import re
import subprocess
import sys

import pytest

from builders import ROOT


# The examples build torch policies whatever the cell: their old-stack run is torch-old's.
TORCH_STACKS = ["new", pytest.param("old", marks=pytest.mark.torch_only)]


@pytest.mark.slow
@pytest.mark.parametrize("stack", TORCH_STACKS)
def test_restore_one_of_n_demo_prints_the_table(tmp_path, stack):
    res = subprocess.run(
        [sys.executable, os.path.join(ROOT, "examples", "restore_one_of_n.py"),
         "--stack", stack, "--pretrain-iters", "1", "--iters", "2", "--out", str(tmp_path)],
        capture_output=True, text=True, timeout=600, cwd=str(tmp_path),
    )
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    rows = {m.group(1): m.groups() for m in re.finditer(
        r"^(policy_0|policy_1|newcomer)\s+(yes|no)\s+(yes|no)\s+(\S+(?: \(new id\))?)\s+([\d.]+)\s+(\S+)$",
        res.stdout, re.M)}
    assert set(rows) == {"policy_0", "policy_1", "newcomer"}, res.stdout
    _, restored, frozen, vs_old, in_run, _ = rows["policy_0"]
    assert (restored, frozen, float(vs_old), float(in_run)) == ("yes", "yes", 0.0, 0.0)
    _, restored, frozen, vs_old, in_run, _ = rows["policy_1"]
    assert (restored, frozen) == ("no", "no") and float(vs_old) > 0 and float(in_run) > 0
    _, restored, frozen, vs_old, in_run, _ = rows["newcomer"]
    assert (restored, frozen, vs_old) == ("no", "no", "n/a (new id)") and float(in_run) > 0


@pytest.mark.slow
def test_serve_one_policy_client_acts_with_restored_weights_then_trains(tmp_path):
    res = subprocess.run(
        [sys.executable, os.path.join(ROOT, "examples", "serve_one_policy.py"), "--iters", "1"],
        capture_output=True, text=True, timeout=600, cwd=str(tmp_path),
    )
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    assert re.search(r"equal local inference: True \(20/20\)", res.stdout), res.stdout
    diff = float(re.search(r"max \|Δ action-dist inputs\| = (\S+)", res.stdout).group(1))
    assert diff <= 1e-6
    moved = float(re.search(r"max\|Δ\| vs the checkpoint = ([\d.]+)", res.stdout).group(1))
    assert moved > 0
    assert res.stdout.rstrip().endswith("OK")


@pytest.mark.slow
@pytest.mark.stack("old")
def test_migrate_tf2_policy_example_matches_and_trains(tmp_path):
    from builders import framework_for_cell

    res = subprocess.run(
        [sys.executable, os.path.join(ROOT, "examples", "migrate_tf2_policy.py"),
         "--framework", framework_for_cell(), "--out", str(tmp_path)],
        capture_output=True, text=True, timeout=600, cwd=str(tmp_path),
        env=dict(os.environ, PYTHONPATH=ROOT),
    )
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    m = re.search(r"^\[4\] on 1000 observations: max\|Δ\| logits (\S+), values (\S+)$", res.stdout, re.M)
    assert m and float(m.group(1)) < 1e-4 and float(m.group(2)) < 1e-4, res.stdout
    assert "converted from old-API-stack" in res.stdout and "new-stack training iteration 1 done" in res.stdout
    assert os.path.isfile(os.path.join(tmp_path, "new_modules", "policy_0", "module_state.pkl"))


@pytest.mark.slow
@pytest.mark.parametrize("stack", TORCH_STACKS)
def test_act_without_ray_plays_the_same_episode_with_numpy_and_onnx(tmp_path, stack):
    res = subprocess.run(
        [sys.executable, os.path.join(ROOT, "examples", "act_without_ray.py"), "--stack", stack, "--out", str(tmp_path)],
        capture_output=True, text=True, timeout=600, cwd=str(tmp_path),
        env=dict(os.environ, PYTHONPATH=ROOT),
    )
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    np_line = re.search(r"^\[3/4\] NumpyPolicy\('policy_1'.*actions (\[.*\]), return (\S+)$", res.stdout, re.M)
    ort_line = re.search(r"^\[4/4\] onnxruntime .*actions (\[.*\]), return (\S+)$", res.stdout, re.M)
    assert np_line and ort_line, res.stdout
    assert np_line.groups() == ort_line.groups() and len(eval(np_line.group(1))) == 10
    assert "same actions with numpy and onnxruntime: True" in res.stdout
    assert os.path.isfile(os.path.join(tmp_path, "policy_1.onnx"))


@pytest.mark.slow
def test_self_play_league_final_main_beats_its_first_snapshot(tmp_path):
    res = subprocess.run(
        [sys.executable, os.path.join(ROOT, "examples", "self_play_league.py"), "--iterations", "9",
         "--pool", str(tmp_path / "pool")],
        capture_output=True, text=True, timeout=900, cwd=str(tmp_path),
    )
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    rows = re.findall(r"^(main-\d{4}@\S+)\s+(\d+)\s+(-?[\d.]+)\s+(\d+)\s+([\d.]+)$", res.stdout, re.M)
    assert len(rows) == 4, res.stdout  # the untrained main, then a snapshot every 3 iterations
    assert rows[0][1] == "0"
    first_score = float(rows[0][4])
    print(res.stdout[-1500:])
    assert first_score > 0.6, f"the final main scores only {first_score} against its first snapshot"


@pytest.mark.slow
def test_poker_league_prints_its_pool_meta_strategy_and_openspiel_figures(tmp_path):
    """The PSRO league on Kuhn poker with a tiny budget: it names its pool, prints the
    meta-strategy per seat, and OpenSpiel's exploitability of it, of one mixture for both
    seats, of the final main and of plain self-play (learning quality is judged in bench/league_quality.py, not here)."""
    pytest.importorskip("pyspiel")
    res = subprocess.run(
        [sys.executable, os.path.join(ROOT, "examples", "poker_league.py"), "--steps", "3000", "--phase", "2000",
         "--snapshot-every", "1000", "--games", "100", "--pool", str(tmp_path / "pool")],
        capture_output=True, text=True, timeout=900, cwd=str(tmp_path),
    )
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    assert f"pool: {tmp_path / 'pool'}" in res.stdout
    assert f"selfplay pool: {tmp_path / 'selfplay'}" in res.stdout
    # The budget line is the league pool's own record: training plus evaluation, at least --steps.
    from rllib_ext import PolicyPool

    training, evaluation, total = map(int, re.search(r"^budget: training=(\d+) evaluation=(\d+) total=(\d+)$",
                                                     res.stdout, re.M).groups())
    spent = PolicyPool(tmp_path / "pool").budget()
    assert (training, evaluation, total) == (spent.training_env_steps, spent.evaluation_env_steps, spent.total_env_steps)
    assert total == training + evaluation >= 3000 and evaluation > 0
    assert len(PolicyPool(tmp_path / "selfplay").entries()) >= 1
    assert re.search(r"^meta-strategy \(snapshot: probability\):\n  player 0:\n    main-\d{4}@\S+: [\d.]+$",
                     res.stdout, re.M), res.stdout  # one mixture per seat
    figures = dict(re.findall(r"^  (league meta-strategy|league Nash mixture for both seats|league final main|"
                              r"plain self-play final main).*?([\d.]+)$", res.stdout, re.M))
    # Figures, not quality (a 3000-step run is near random play, 0.458; bench/league_quality.py judges).
    assert len(figures) == 4 and all(0 <= float(v) <= 1.0 for v in figures.values()), res.stdout


@pytest.mark.slow
def test_population_example_prints_the_table(tmp_path):
    res = subprocess.run(
        [sys.executable, os.path.join(ROOT, "examples", "population.py"), "--trials", "2", "--iters", "2",
         "--every", "1", "--dir", str(tmp_path)],
        capture_output=True, text=True, timeout=600, cwd=str(tmp_path), env=dict(os.environ, PYTHONPATH=ROOT),
    )
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    assert re.search(r"^trial\s+policy\s+score\s+lr\s+entropy\s+exploited$", res.stdout, re.M), res.stdout
    rows = re.findall(r"^(\S+)\s+(policy_[01])\s+(-?[\d.]+|nan)\s+([\d.e+-]+)\s+([\d.]+)\s+(\S+) \((\d+) snapshots\)$",
                      res.stdout, re.M)
    assert len(rows) == 4 and {r[1] for r in rows} == {"policy_0", "policy_1"}, res.stdout
    assert all(r[6] == "2" for r in rows), res.stdout  # --every 1, --iters 2: two snapshots each
