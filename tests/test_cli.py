"""The CLI, run as users run it: in a subprocess, checking output and exit codes (Ray-free)."""

from __future__ import annotations

import json
import os
import pickle
import shutil
import subprocess
import sys
from collections import OrderedDict
from unittest import mock

import numpy as np
import pytest

from builders import MODULES_DIR, assert_imports_no_framework, assert_weights_equal, pool_policy_dir

from rllib_ext.checkpoint import CheckpointView, SpaceView, inspect, read_policy_dir, read_weights
from rllib_ext.checkpoint.diff import diff_checkpoints
from rllib_ext.checkpoint.spaces import space_from_rllib_dict
from rllib_ext.checkpoint.views import make_policy_view
from rllib_ext.checkpoint.storage import CheckpointDir
from rllib_ext.checkpoint.decode import decode_file
from rllib_ext.cli import main
from rllib_ext.formatting import compact_space, format_view
from rllib_ext import errors
from rllib_ext.errors import (CheckpointError, CheckpointFormatError, InvalidArgumentError, MetaStrategyError,
                              MissingDependencyError, NotACheckpointError, PolicyNotFoundError, RecurrentStateError,
                              ShapeMismatchError)

pytestmark = pytest.mark.ray_free  # never imports Ray: tests/test_ray_free.py checks it

FIXTURES = os.path.join(os.path.dirname(os.path.abspath(__file__)), "fixtures")
F32_MAX = float(np.finfo(np.float32).max)


def run_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "rllib_ext.cli", *map(str, args)], capture_output=True, text=True, env=dict(os.environ)
    )


@pytest.mark.parametrize("stack", ["new", "old"])
def test_cli_inspect_prints_table(stored, stack):
    path, _ = stored(stack)
    res = run_cli("inspect", path)
    assert res.returncode == 0, res.stderr
    lines = res.stdout.splitlines()
    assert lines[0] == path
    assert f"({stack} API stack" in lines[1] and "algorithm PPO" in lines[1]
    rows = [line for line in lines if line.startswith("policy_")]
    assert [r.split()[0] for r in rows] == ["policy_0", "policy_1", "policy_2"]
    assert all("Box(4,) float32 [-1.0, 1.0]  Discrete(2)" in r for r in rows)
    full = run_cli("inspect", path, "--full")
    assert full.returncode == 0, full.stderr
    full_rows = [line for line in full.stdout.splitlines() if line.startswith("policy_")]
    assert all("Box(-1.0, 1.0, (4,), float32)  Discrete(2)" in r for r in full_rows)


def test_cli_inspect_json_matches_library(stored):
    path, _ = stored("new")
    res = run_cli("inspect", path, "--json")
    assert res.returncode == 0, res.stderr
    assert json.loads(res.stdout) == json.loads(json.dumps(inspect(path).to_dict()))


@pytest.mark.parametrize("fmt", ["safetensors", "npz"])
def test_cli_extract_writes_policy(stored, tmp_path, fmt):
    path, expected = stored("old")
    out = tmp_path / "p0"
    res = run_cli("extract", path, "--policy", "policy_0", "--out", out, "--format", fmt)
    assert res.returncode == 0, res.stderr
    assert res.stdout.strip() == str(out)
    if fmt == "safetensors":
        got = read_policy_dir(out)[1]
    else:
        with np.load(out) as z:
            got = {k: z[k] for k in z.files}
    assert_weights_equal(got, expected["policy_0"], "policy_0", ordered=False)


def test_cli_diff_reports_changed_policy(stored, tmp_path):
    path, expected = stored("new")
    other = tmp_path / "other"
    shutil.copytree(path, other)
    changed = OrderedDict((k, np.array(v, copy=True)) for k, v in expected["policy_1"].items())
    changed["pi.net.mlp.0.bias"] = changed["pi.net.mlp.0.bias"] + np.float32(0.5)
    (other / MODULES_DIR / "policy_1" / "module_state.pkl").write_bytes(pickle.dumps(changed, protocol=5))

    res = run_cli("diff", path, other, "--json")
    assert res.returncode == 0, res.stderr
    d = json.loads(res.stdout)
    assert d["differing"] == ["policy_1"]
    assert d["policies"]["policy_0"]["status"] == "equal"
    assert d["policies"]["policy_1"]["max_abs_delta"] == pytest.approx(0.5)
    changed_tensors = [n for n, t in d["policies"]["policy_1"]["tensors"].items() if t["status"] == "changed"]
    assert changed_tensors == ["pi.net.mlp.0.bias"]

    table = run_cli("diff", path, other).stdout
    assert "policy_1  changed" in table and "pi.net.mlp.0.bias" in table


def test_diff_checkpoints_policy_on_one_side_only(stored, tmp_path):
    path, _ = stored("new")
    single = os.path.join(path, MODULES_DIR, "policy_2")  # a module checkpoint: id 'policy_2'
    result = diff_checkpoints(path, single)
    assert [(p.id, p.status) for p in result.policies] == [
        ("policy_0", "only_a"), ("policy_1", "only_a"), ("policy_2", "equal")
    ]
    assert result.differing == ("policy_0", "policy_1")


def test_cli_missing_policy_exits_1_with_one_line_error(stored, tmp_path):
    path, _ = stored("new")
    res = run_cli("extract", path, "--policy", "polcy_1", "--out", tmp_path / "x")
    assert res.returncode == 1
    assert res.stdout == ""
    assert res.stderr == (
        f"rllib-ext: error: policy 'polcy_1' not in {path}; available: policy_0, policy_1, policy_2 "
        "(did you mean 'policy_1'?)\n"
    )
    assert not (tmp_path / "x").exists()


def test_cli_not_a_checkpoint_exits_1(tmp_path):
    res = run_cli("inspect", tmp_path / "nope")
    assert (res.returncode, res.stderr) == (1, f"rllib-ext: error: {tmp_path / 'nope'}: no such file or directory\n")


@pytest.mark.parametrize(
    "args",
    [(), ("inspect",), ("extract", "x"), ("extract", "x", "--out", "y", "--format", "onnx"), ("frobnicate",)],
    ids=["no-command", "no-ckpt", "no-out", "bad-format", "unknown-command"],
)
def test_cli_usage_error_exits_2(args):
    from rllib_ext.cli import main

    assert main(list(args)) == 2


def test_cli_imports_no_framework(stored, tmp_path):
    path, _ = stored("old")
    assert_imports_no_framework(
        "from rllib_ext.cli import main\n"
        f"assert main(['inspect', {path!r}]) == 0\n"
        f"assert main(['extract', {path!r}, '--policy', 'policy_1', '--out', {str(tmp_path / 'p')!r}]) == 0\n"
        f"assert main(['diff', {path!r}, {str(tmp_path / 'p')!r}]) == 0\n"
    )
    assert_weights_equal(read_weights(tmp_path / "p"), read_weights(path, "policy_1"), "policy_1")


def test_cli_version_is_the_package_version(capsys):
    import rllib_ext
    from rllib_ext.cli import main

    assert main(["--version"]) == 0
    assert capsys.readouterr().out == f"rllib-ext {rllib_ext.__version__}\n"
    assert "__version__" in rllib_ext.__all__


def test_cli_console_script_runs(stored):
    exe = shutil.which("rllib-ext", path=os.path.dirname(sys.executable))
    if exe is None:
        pytest.skip("rllib-ext console script not installed (pip install -e .)")
    path, _ = stored("new")
    res = subprocess.run([exe, "inspect", path, "--json"], capture_output=True, text=True)
    assert res.returncode == 0, res.stderr
    assert sorted(json.loads(res.stdout)["policies"]) == ["policy_0", "policy_1", "policy_2"]


def test_diff_weights_shape_change_and_extra_tensors():
    from rllib_ext.checkpoint.diff import diff_weights

    a = {"w": np.zeros((2, 3), np.float32), "b": np.array([1.0, np.nan]), "old": np.ones(1)}
    b = {"w": np.zeros((3, 3), np.float32), "b": np.array([1.25, np.nan]), "new": np.ones(1)}
    d = diff_weights("p", a, b)
    assert [(t.name, t.status, t.max_abs_delta) for t in d.tensors] == [
        ("w", "shape", None), ("b", "changed", 0.25), ("old", "only_a", None), ("new", "only_b", None)
    ]
    assert (d.status, d.max_abs_delta) == ("changed", None)
    assert diff_weights("p", {"b": a["b"]}, {"b": a["b"].copy()}).status == "equal"  # NaN == NaN here


def test_cli_merge_takes_policies_and_prints_table(stored, tmp_path):
    path, expected = stored("old")
    out = tmp_path / "merged"
    res = run_cli("merge", "--base", path, "--take", f"policy_1={path}:policy_0", "--take", f"policy_2={path}", "--out", out)
    assert res.returncode == 0, res.stderr
    lines = res.stdout.splitlines()
    assert lines[:2] == [str(out), f"  old API stack, copy of {path}"]
    assert lines[5].split() == ["policy_1", f"{path}:policy_0", "base"]
    assert lines[7].split() == ["policy_0", "(base)", "base"]
    for pid, src in (("policy_0", "policy_0"), ("policy_1", "policy_0"), ("policy_2", "policy_2")):
        got = read_weights(out, pid)
        for name, want in expected[src].items():
            np.testing.assert_array_equal(got[name], want, err_msg=f"{pid}: {name}")


def test_cli_merge_errors_exit_codes(stored, tmp_path):
    path, _ = stored("new")
    out = tmp_path / "merged"
    res = run_cli("merge", "--base", path, "--take", f"polcy_1={path}", "--out", out)
    assert (res.returncode, res.stdout) == (1, "")
    assert res.stderr == (
        f"rllib-ext: error: policy 'polcy_1' not in the base {path}; available: policy_0, policy_1, policy_2 "
        "(did you mean 'policy_1'?)\n"
    )
    res = run_cli("merge", "--base", path, "--take", "policy_1", "--out", out)
    assert res.returncode == 2 and "expected ID=CKPT[:SRC_ID], got 'policy_1'" in res.stderr
    res = run_cli("merge", "--base", path, "--take", f"policy_1={path}", "--take", f"policy_1={path}", "--out", out)
    assert (res.returncode, res.stderr) == (2, "rllib-ext: error: policy 'policy_1' is taken twice\n")
    assert not out.exists()


def test_parse_take_source_id_after_last_colon():
    from rllib_ext.cli import parse_take

    assert parse_take("a=/x/ckpt") == ("a", "/x/ckpt", None)
    assert parse_take("a=/x/ckpt:b") == ("a", "/x/ckpt", "b")
    assert parse_take("a=/x:y/ckpt") == ("a", "/x:y/ckpt", None)


@pytest.mark.parametrize(
    "space,want",
    [
        (SpaceView("Box", (4,), "float32", -1.0, 1.0), "Box(4,) float32 [-1.0, 1.0]"),
        (SpaceView("Box", (2,), "float32", (-4.8, -4.8), (4.8, 4.8)), "Box(2,) float32 [-4.8, 4.8]"),
        (SpaceView("Box", (2,), "float64", (-1.0, -2.0), (1.0, 0.5)), "Box(2,) float64 [-2.0, 1.0]"),
        (SpaceView("Box", (3,), "float32", float("-inf"), float("inf")), "Box(3,) float32 [-inf, inf]"),
        (SpaceView("Box", (2,), "float32", (float("-inf"), 0.0), (1.0, 2.0)), "Box(2,) float32 [-inf, 2.0]"),
        (SpaceView("Box", (84, 84, 3), "uint8", 0.0, 255.0), "Box(84, 84, 3) uint8 [0, 255]"),
        (SpaceView("Discrete", (), "int64", n=2, start=0), "Discrete(2)"),
        (SpaceView("Discrete", (), "int64", n=3, start=-1), "Discrete(3, start=-1)"),
        (SpaceView("MultiDiscrete", (3,), "int64", nvec=(3, 3, 2)), "MultiDiscrete([3, 3, 2])"),
        (SpaceView("MultiDiscrete", (20,), "int64", nvec=(3,) * 20), "MultiDiscrete(20,) n=3"),
        (SpaceView("MultiDiscrete", (10,), "int64", nvec=tuple(range(2, 12))), "MultiDiscrete(10,) n=2..11"),
        (SpaceView("MultiBinary", (5,), "int8", n=5), "MultiBinary(5)"),
        (
            SpaceView("Tuple", spaces={"0": SpaceView("Discrete", n=2), "1": SpaceView("Box", (2,), "float32", 0.0, 1.0)}),
            "Tuple(Discrete(2), Box(2,) float32 [0.0, 1.0])",
        ),
        (
            SpaceView("Dict", spaces={"pos": SpaceView("Box", (2,), "float32", -1.0, 1.0), "id": SpaceView("Discrete", n=3)}),
            "Dict('pos': Box(2,) float32 [-1.0, 1.0], 'id': Discrete(3))",
        ),
        (SpaceView("Simplex", (3,), "float32"), "Simplex(3,) float32"),
    ],
)
def test_compact_space_spellings(space, want):
    assert compact_space(space) == want


def _ray_serialized_array(arr: np.ndarray) -> str:
    """RLlib's ``_serialize_ndarray`` (what Ray 2.x writes into policy_spec): base64(zlib(np.save))."""
    import base64
    import io
    import zlib

    buf = io.BytesIO()
    np.save(buf, arr)
    return base64.b64encode(zlib.compress(buf.getvalue())).decode("ascii")


def _cartpole_like_view() -> CheckpointView:
    """A Ray 2.10 MultiAgentCartPole-like old-stack view: per-dimension bounds up to float32's max."""
    high = np.array([4.8, np.finfo(np.float32).max, 0.41887903, np.finfo(np.float32).max], np.float32)
    spec = {"space": {"space": "box", "low": _ray_serialized_array(-high), "high": _ray_serialized_array(high),
                      "shape": (4,), "dtype": "<f4"}}
    obs = space_from_rllib_dict(spec, "test")
    act = space_from_rllib_dict({"space": {"space": "discrete", "n": 2, "start": 0}}, "test")
    weights = {"w": np.zeros((4, 2), np.float32)}
    policies = {pid: make_policy_view(pid, weights, obs, act, "PPOTorchPolicy") for pid in ("policy_0", "policy_1")}
    return CheckpointView("/ckpt", "algorithm", "old", "1.1", "torch", "2.10.0", "PPO", policies)


def test_ray_serialized_array_is_what_ray_2_10_wrote():
    # The encoder above reproduces the fixture's bytes, so the CartPole case below is in Ray's own format.
    ckpt = CheckpointDir(os.path.join(FIXTURES, "ray-2.10.0-old-torch", "checkpoint"))
    spec = decode_file(ckpt, "policies/policy_0/policy_state.pkl")["policy_spec"]["observation_space"]["space"]
    assert spec["low"] == _ray_serialized_array(np.full(4, -1.0, np.float32))
    assert spec["high"] == _ray_serialized_array(np.full(4, 1.0, np.float32))


def test_format_view_compacts_per_dimension_bounds():
    view = _cartpole_like_view()
    obs = view.policies["policy_0"].observation_space
    assert obs.low == (-4.800000190734863, -F32_MAX, -0.41887903213500977, -F32_MAX)
    assert compact_space(obs) == "Box(4,) float32 [-3.4028235e+38, 3.4028235e+38]"

    rows = [line for line in format_view(view).splitlines() if line.startswith("policy_")]
    assert [r.split("  ")[1] for r in rows] == ["Box(4,) float32 [-3.4028235e+38, 3.4028235e+38]"] * 2
    assert len(compact_space(obs)) < 50

    full_rows = [line for line in format_view(view, full=True).splitlines() if line.startswith("policy_")]
    assert all(obs.describe() in r for r in full_rows)
    assert "-4.1887903e-01" in full_rows[0] and len(full_rows[0]) > 150


def test_cli_inspect_old_release_fixture_compact_and_full(capsys):
    path = os.path.join(FIXTURES, "ray-2.10.0-old-torch", "checkpoint")
    assert main(["inspect", path]) == 0
    rows = [line for line in capsys.readouterr().out.splitlines() if line.startswith("policy_")]
    assert [r.split()[:5] for r in rows] == [[pid, "Box(4,)", "float32", "[-1.0,", "1.0]"] for pid in ("policy_0", "policy_1")]
    assert all("Box(4,) float32 [-1.0, 1.0]  Discrete(2)" in r for r in rows)
    assert main(["inspect", path, "--full"]) == 0
    rows = [line for line in capsys.readouterr().out.splitlines() if line.startswith("policy_")]
    assert all("Box(-1.0, 1.0, (4,), float32)  Discrete(2)" in r for r in rows)
    assert main(["inspect", path, "--json"]) == 0
    d = json.loads(capsys.readouterr().out)
    assert d["policies"]["policy_0"]["observation_space"] == {
        "type": "Box", "shape": [4], "dtype": "float32", "low": -1.0, "high": 1.0
    }


# ---------------------------------------------------------------- pool --payoff / --plot
def payoff_pool(tmp_path) -> "tuple[str, list]":
    """A pool of 3 snapshots: 0 beat 1 in 3 of 4 games (one draw), 1 and 2 drew twice, 0 and 2 never met."""
    from rllib_ext import PolicyPool

    pool = PolicyPool(tmp_path / "pool", writer="w")
    ids = [pool.add(pool_policy_dir(tmp_path), iteration=2 * k).id for k in range(3)]
    pool.record_games(ids[0], ids[1], wins=3, draws=1, return_a=3.0, return_b=-3.0)
    pool.record_games(ids[1], ids[2], draws=2, return_a=0.0, return_b=0.0)
    return pool.path, ids


def test_cli_pool_payoff_prints_games_value_and_score(tmp_path):
    path, ids = payoff_pool(tmp_path)
    res = run_cli("pool", path, "--payoff")
    assert res.returncode == 0, res.stderr
    lines = res.stdout.splitlines()
    assert lines[:2] == [path, "  payoff table: 3 snapshots, 6 games"]
    assert [ln.split() for ln in lines[5:8]] == [["0", ids[0]], ["1", ids[1]], ["2", ids[2]]]
    at = {title: lines.index(title) for title in ("games (row vs column)", "value (row's mean return per game)",
                                                   "score (row's win share, draws half)")}
    rows = lambda title: [ln.split() for ln in lines[at[title] + 3:at[title] + 6]]  # noqa: E731
    assert rows("games (row vs column)") == [["0", "-", "4", "0"], ["1", "4", "-", "2"], ["2", "0", "2", "-"]]
    assert rows("value (row's mean return per game)") == [
        ["0", "-", "0.750", "-"], ["1", "-0.750", "-", "0.000"], ["2", "-", "0.000", "-"]]
    assert rows("score (row's win share, draws half)") == [
        ["0", "-", "0.875", "-"], ["1", "0.125", "-", "0.500"], ["2", "-", "0.500", "-"]]
    res = run_cli("pool", path, "--payoff", "--json")
    assert res.returncode == 0, res.stderr
    doc = json.loads(res.stdout)
    assert doc["path"] == path and doc["ids"] == ids and doc["games"] == [[0, 4, 0], [4, 0, 2], [0, 2, 0]]
    assert doc["value"][0] == [None, 0.75, None] and doc["score"][1] == [0.125, None, 0.5]


def test_cli_pool_payoff_runs_without_ray_or_matplotlib(tmp_path):
    path, ids = payoff_pool(tmp_path)
    res = assert_imports_no_framework(f"from rllib_ext.cli import main\nmain(['pool', {path!r}, '--payoff'])\n",
                                      extra=("matplotlib",))
    assert ids[2] in res.stdout


def test_cli_pool_plot_draws_a_png(tmp_path):
    pytest.importorskip("matplotlib")
    path, _ = payoff_pool(tmp_path)
    out = tmp_path / "table.png"
    res = run_cli("pool", path, "--plot", out)
    assert res.returncode == 0, res.stderr
    assert res.stdout == f"{out}\n"
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and out.stat().st_size > 10_000


def test_cli_pool_plot_without_matplotlib_is_a_one_line_error(tmp_path, capsys):
    path, _ = payoff_pool(tmp_path)
    with mock.patch.dict(sys.modules, {"matplotlib": None, "matplotlib.figure": None}):
        code = main(["pool", path, "--plot", str(tmp_path / "table.png")])
    assert code != 0 and not (tmp_path / "table.png").exists()
    assert capsys.readouterr().err == (
        "rllib-ext: error: rllib-ext pool --plot needs matplotlib (pip install 'rllib_ext[plot]')\n")


# One case per row of cli.EXIT_CODES (first the row's own class, then subclasses that must follow it).
@pytest.mark.parametrize(
    "error,code",
    [(InvalidArgumentError("policy 'p' is taken twice"), 2),
     (RecurrentStateError("policy 'p' is recurrent: call compute_actions(obs_batch, state)"), 2),
     (MissingDependencyError("needs onnx:\npip install onnx"), 1),
     (CheckpointError("ckpt: exists and is not a directory; refusing to overwrite it"), 1),
     (PolicyNotFoundError("policy 'x' not in ckpt"), 1), (ShapeMismatchError("tensor 'w' is (2,) here"), 1),
     (CheckpointFormatError("ckpt/policy.json: not valid JSON"), 1), (NotACheckpointError("ckpt: no such file"), 1),
     (MetaStrategyError("a meta-strategy per seat needs games of the snapshots in exactly two seats"), 1),
     (PermissionError(13, "Permission denied"), 1)],
    ids=lambda v: type(v).__name__ if isinstance(v, BaseException) else None,
)
def test_cli_maps_each_error_class_to_its_exit_code_with_one_line(monkeypatch, capsys, error, code):
    import rllib_ext.cli as cli

    def raise_it(*args, **kwargs):
        raise error

    monkeypatch.setattr(cli, "inspect", raise_it)
    assert cli.main(["inspect", "ckpt"]) == code
    assert capsys.readouterr().err == f"rllib-ext: error: {' '.join(str(error).splitlines())}\n"


def test_cli_keeps_the_traceback_of_an_error_it_does_not_know(monkeypatch):
    import rllib_ext.cli as cli

    monkeypatch.setattr(cli, "inspect", lambda *a, **k: {}["missing"])
    with pytest.raises(KeyError, match="missing"):
        cli.main(["inspect", "ckpt"])


@pytest.mark.parametrize("error", [ValueError("bare"), TypeError("bare"), RuntimeError("bare")],
                         ids=lambda e: type(e).__name__)
def test_cli_keeps_the_traceback_of_a_bare_builtin_error(monkeypatch, error):
    """A bare ValueError/TypeError/RuntimeError is a bug (STYLE.md 16), not an exit code."""
    import rllib_ext.cli as cli

    def raise_it(*args, **kwargs):
        raise error

    monkeypatch.setattr(cli, "inspect", raise_it)
    with pytest.raises(type(error), match="^bare$"):
        cli.main(["inspect", "ckpt"])


def test_cli_exit_codes_are_one_table_covering_every_error_class():
    """Every class of rllib_ext.errors has its code from cli.EXIT_CODES: 2 for an argument
    mistake, 1 for the rest (data); no row is shadowed by one before it."""
    import rllib_ext.cli as cli

    classes = [c for c in vars(errors).values() if isinstance(c, type) and issubclass(c, CheckpointError)]
    assert len(classes) >= 20
    for cls in classes:
        code = next(code for row, code in cli.EXIT_CODES if issubclass(cls, row))
        assert code == (2 if issubclass(cls, InvalidArgumentError) else 1), cls.__name__
    rows = [row for row, _ in cli.EXIT_CODES]
    for i, row in enumerate(rows):
        assert not any(issubclass(row, earlier) for earlier in rows[:i]), f"{row.__name__} is shadowed"
    assert {code for _, code in cli.EXIT_CODES} == {1, 2}


def test_cli_argument_error_of_the_library_exits_2_in_process(stored, tmp_path, capsys):
    path, _ = stored("new")
    take = f"policy_1={path}"
    assert main(["merge", "--base", path, "--take", take, "--take", take, "--out", str(tmp_path / "m")]) == 2
    assert capsys.readouterr().err == "rllib-ext: error: policy 'policy_1' is taken twice\n"
    assert main(["extract", path, "--policy", "polcy_1", "--out", str(tmp_path / "x")]) == 1
    assert capsys.readouterr().err.startswith("rllib-ext: error: policy 'polcy_1' not in ")
    assert not (tmp_path / "m").exists() and not (tmp_path / "x").exists()


def test_cli_migrate_dry_run_exits_1_saying_which_policies_cannot_be_migrated(monkeypatch, capsys):
    import types

    import rllib_ext.cli as cli

    entry = lambda ok, reason=None: types.SimpleNamespace(supported=ok, reason=reason)  # noqa: E731
    report = types.SimpleNamespace(policies={"p0": entry(True), "p1": entry(False, "policy 'p1': no spaces recorded")},
                                   to_dict=lambda: {})
    fake = types.ModuleType("rllib_ext.live.restore.migration")
    fake.migrate = lambda *a, **k: report
    monkeypatch.setitem(sys.modules, "rllib_ext.live.restore.migration", fake)
    assert cli.main(["migrate", "old", "--dry-run", "--json"]) == 1
    assert capsys.readouterr().err == (
        "rllib-ext: error: dry run: 1 of 2 policies cannot be migrated: policy 'p1': no spaces recorded\n"
    )
