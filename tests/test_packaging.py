"""The wheel as a user installs it: built from this repo, into a fresh venv, no extras.

``pip install rllib_ext`` must give the Ray-free reader, the CLI and single-policy files
with numpy as the only dependency, and ``pip install rllib_ext[msgpack]`` must add msgpack
checkpoints. So we build the wheel (``pip wheel``, as pip builds it for a user), install
it into a new ``python -m venv``, and run the console script and the reader *inside that
venv* on the checkpoints that old Ray releases wrote (``tests/fixtures``), where ray,
torch and tensorflow are not even installed.

Cell-independent, so it runs in the torch-new cell; slow (a venv and a numpy download
or pip-cache hit), so ``make test-quick`` leaves it out. One venv per test module (per
xdist worker); the msgpack test uninstalls its extra again, so test order does not matter.
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[1]
FIXTURES = REPO / "tests" / "fixtures"
VERSION = re.search(r'^__version__ = "([^"]+)"$', (REPO / "rllib_ext" / "_version.py").read_text(), re.M).group(1)
# What `python -m venv` itself brings (Python 3.11: pip and setuptools; wheel on some setups).
VENV_OWN = {"pip", "setuptools", "wheel"}
FRAMEWORKS = ("ray", "torch", "tensorflow")
PIP_TIMEOUT = 600


def _release_fixtures() -> list:
    dirs = [d for d in FIXTURES.glob("ray-*") if (d / "meta.json").is_file()]
    return sorted(dirs, key=lambda d: (tuple(int(x) for x in d.name.split("-")[1].split(".")), d.name))


def _dist_name(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


class Venv:
    """A fresh virtual environment; every command runs outside the repo, without PYTHONPATH."""

    def __init__(self, root: Path, workdir: Path):
        self.root = root
        self.workdir = workdir  # cwd of every command: python -c puts the cwd on sys.path
        self.python = str(root / "bin" / "python")
        self.env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "VIRTUAL_ENV"))}
        self.env.update(PYTHONNOUSERSITE="1", PIP_DISABLE_PIP_VERSION_CHECK="1", PIP_NO_INPUT="1")

    def run(self, *args: str, check: bool = True, timeout: float = 120) -> subprocess.CompletedProcess:
        res = subprocess.run(
            [str(a) for a in args], capture_output=True, text=True, cwd=self.workdir, env=self.env, timeout=timeout
        )
        if check:
            assert res.returncode == 0, f"{args}\nstdout:\n{res.stdout}\nstderr:\n{res.stderr}"
        return res

    def py(self, code: str, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        return self.run(self.python, "-c", code, *args, check=check)

    def cli(self, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        return self.run(str(self.root / "bin" / "rllib-ext"), *args, check=check)

    def pip(self, *args: str) -> subprocess.CompletedProcess:
        return self.run(self.python, "-m", "pip", *args, timeout=PIP_TIMEOUT)

    def distributions(self) -> set:
        listed = json.loads(self.pip("list", "--format=json").stdout)
        return {_dist_name(d["name"]) for d in listed}


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    """The wheel pip builds from a clean copy of the sources (no stale build/ of the repo)."""
    src = tmp_path_factory.mktemp("src")
    for name in ("setup.py", "README.md", "LICENSE"):
        shutil.copy2(REPO / name, src / name)
    shutil.copytree(REPO / "rllib_ext", src / "rllib_ext", ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    out = tmp_path_factory.mktemp("wheelhouse")
    res = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--disable-pip-version-check", "-w", str(out), str(src)],
        capture_output=True, text=True, timeout=PIP_TIMEOUT,
    )
    assert res.returncode == 0, res.stdout + res.stderr
    wheels = list(out.glob("rllib_ext-*.whl"))
    assert [w.name for w in wheels] == [f"rllib_ext-{VERSION}-py3-none-any.whl"]
    return wheels[0]


@pytest.fixture(scope="module")
def venv(tmp_path_factory, wheel) -> Venv:
    """A new venv with the wheel installed without extras."""
    root = tmp_path_factory.mktemp("venv")
    subprocess.run([sys.executable, "-m", "venv", "--clear", str(root)], check=True, capture_output=True, timeout=300)
    v = Venv(root, tmp_path_factory.mktemp("cwd"))
    v.pip("install", str(wheel))
    return v


def test_wheel_without_extras_installs_numpy_only(venv):
    assert venv.distributions() - VENV_OWN == {"rllib-ext", "numpy"}
    venv.pip("check")
    code = (
        "import importlib.metadata as md, importlib.util, json, os, sys\n"
        "import rllib_ext\n"
        "dist = md.distribution('rllib_ext')\n"
        "files = [str(f) for f in dist.files]\n"
        "print(json.dumps({\n"
        "    'version': rllib_ext.__version__, 'meta_version': dist.version,\n"
        "    'file': rllib_ext.__file__, 'requires': dist.requires,\n"
        "    'license': dist.metadata['License'], 'python': dist.metadata['Requires-Python'],\n"
        "    'extras': sorted(dist.metadata.get_all('Provides-Extra')),\n"
        "    'typed': 'rllib_ext/py.typed' in files,\n"
        "    'license_file': any(f.endswith('LICENSE') and '.dist-info/' in f for f in files),\n"
        "    'top_level': sorted({f.split('/')[0] for f in files if not f.startswith(('rllib_ext-', '../'))}),\n"
        f"    'importable': [m for m in {FRAMEWORKS!r} if importlib.util.find_spec(m)],\n"
        "}))\n"
    )
    got = json.loads(venv.py(code).stdout)
    assert got["version"] == got["meta_version"] == VERSION
    assert got["file"].startswith(str(venv.root)), got["file"]  # the installed copy, not the repo
    assert [r for r in got["requires"] if "extra ==" not in r] == ["numpy"]
    assert got["extras"] == ["docs", "league", "msgpack", "onnx", "plot", "remote", "rllib", "test", "tf"]
    assert (got["license"], got["python"]) == ("Apache-2.0", ">=3.11,<3.12")
    assert got["typed"] and got["license_file"]
    assert got["top_level"] == ["rllib_ext"]  # rllib-ext console script lives in bin/, tests/ not shipped
    assert got["importable"] == []


def test_console_script_version_inspect_extract(venv, tmp_path):
    assert venv.cli("--version").stdout == f"rllib-ext {VERSION}\n"
    for name in ("ray-2.10.0-old-tf2", "ray-2.55.1-new-torch"):
        ckpt = FIXTURES / name / "checkpoint"
        lines = venv.cli("inspect", ckpt).stdout.splitlines()
        assert lines[0] == str(ckpt)
        rows = [line for line in lines if line.startswith("policy_")]
        assert [r.split()[0] for r in rows] == ["policy_0", "policy_1"], lines
        assert all("Box(4,) float32 [-1.0, 1.0]  Discrete(2)" in r for r in rows), lines

    ckpt = FIXTURES / "ray-2.5.1-old-torch" / "checkpoint"
    out = tmp_path / "p0"
    assert venv.cli("extract", ckpt, "--policy", "policy_0", "--out", out).stdout.strip() == str(out)
    assert sorted(os.listdir(out)) == ["policy.json", "weights.safetensors"]
    res = venv.cli("extract", ckpt, "--policy", "policy_0", "--out", tmp_path / "p0.npz", "--format", "npz")
    with np.load(FIXTURES / "ray-2.5.1-old-torch" / "expected.npz") as want, np.load(res.stdout.strip()) as got:
        expected = {k.split("/", 1)[1]: want[k] for k in want.files if k.startswith("policy_0/")}
        assert list(got.files) == list(expected)
        for name, array in expected.items():
            assert got[name].dtype == array.dtype, name
            np.testing.assert_array_equal(got[name], array, err_msg=name)

    bad = venv.cli("extract", ckpt, "--policy", "polcy_1", "--out", tmp_path / "x", check=False)
    assert (bad.returncode, bad.stdout) == (1, "")
    assert bad.stderr.startswith(f"rllib-ext: error: policy 'polcy_1' not in {ckpt}; available: policy_0, policy_1")


# Runs inside the venv: every release fixture read with read_weights, compared to the
# weights that release's own getter returned (expected.npz), and the extracted
# single-policy directory read back. Prints what it checked; fails loudly otherwise.
READ_FIXTURES = """
import json, sys
from pathlib import Path
import numpy as np
import rllib_ext

checked = {}
for fixture in map(Path, sys.argv[2:]):
    meta = json.loads((fixture / "meta.json").read_text())
    ckpt = fixture / "checkpoint"
    assert rllib_ext.policy_ids(ckpt) == meta["policies"], fixture
    with np.load(fixture / "expected.npz") as npz:
        expected = {}
        for key in npz.files:  # zip order = the release's getter order
            pid, name = key.split("/", 1)
            expected.setdefault(pid, {})[name] = npz[key]
    for pid, want in expected.items():
        got = rllib_ext.read_weights(ckpt, pid)
        assert list(got) == list(want), (fixture.name, pid, list(got))
        for name, array in want.items():
            assert got[name].dtype == array.dtype and got[name].shape == array.shape, (fixture.name, pid, name)
            assert np.array_equal(got[name], array), (fixture.name, pid, name)
    checked[fixture.name] = sum(len(w) for w in expected.values())

single = rllib_ext.read_weights(sys.argv[1])  # extracted from the first fixture's policy_0
source = rllib_ext.read_weights(Path(sys.argv[2]) / "checkpoint", "policy_0")
assert list(single) == list(source) and all(np.array_equal(single[k], source[k]) for k in source)
loaded = sorted(m for m in sys.modules if m.split(".")[0] in ("ray", "torch", "tensorflow"))
print(json.dumps({"checked": checked, "loaded": loaded}))
"""


def test_read_weights_of_every_release_fixture_in_the_venv(venv, tmp_path):
    fixtures = _release_fixtures()
    releases = {json.loads((d / "meta.json").read_text())["ray_version"] for d in fixtures}
    assert len(releases) >= 3 and any("tf2" in d.name for d in fixtures) and any("new" in d.name for d in fixtures)
    single = tmp_path / "single"
    venv.cli("extract", fixtures[0] / "checkpoint", "--policy", "policy_0", "--out", single)
    got = json.loads(venv.py(READ_FIXTURES, str(single), *map(str, fixtures)).stdout)
    assert sorted(got["checked"]) == sorted(d.name for d in fixtures)
    assert all(n > 0 for n in got["checked"].values()), got
    assert got["loaded"] == []


def _msgpack_numpy_map(arr: np.ndarray) -> dict:
    """msgpack-numpy's encoding of an array (what RLlib's msgpack checkpoints hold)."""
    return {b"nd": True, b"type": arr.dtype.str, b"kind": b"", b"shape": list(arr.shape), b"data": arr.tobytes()}


def _write_msgpack_module(path: Path) -> dict:
    """A new-stack RLModule checkpoint dir (layout 2.1) whose state is msgpack, written without Ray."""
    import msgpack  # the test extra's; the venv under test has none until the extra is installed

    rng = np.random.default_rng(15)
    weights = {
        "encoder.net.mlp.0.weight": rng.standard_normal((8, 4)).astype(np.float32),
        "encoder.net.mlp.0.bias": rng.standard_normal(8).astype(np.float32),
        "pi.net.mlp.0.weight": rng.standard_normal((2, 8)).astype(np.float64),
        "step_count": np.array([3, -1, 2**40], np.int64),
        "log_std_clip_param_const": np.array(20.0, np.float32),
    }
    path.mkdir()
    (path / "metadata.json").write_text(json.dumps({"checkpoint_version": "2.1", "state_file": "module_state"}))
    packed = msgpack.packb({k: _msgpack_numpy_map(v) for k, v in weights.items()}, use_bin_type=True)
    try:
        import msgpack_numpy  # cross-check: the same bytes as msgpack-numpy itself writes

        assert packed == msgpack.packb(weights, default=msgpack_numpy.encode, use_bin_type=True)
    except ImportError:
        pass
    (path / "module_state.msgpack").write_bytes(packed)
    return weights


READ_ONE = """
import json, sys
import numpy as np
import rllib_ext
try:
    weights = rllib_ext.read_weights(sys.argv[1])
except rllib_ext.MissingDependencyError as e:
    print(json.dumps({"error": str(e)}))
else:
    np.savez(sys.argv[2], **weights)
    print(json.dumps({"names": list(weights)}))
"""


def test_ray_free_docs_blocks_run_in_the_numpy_only_install(venv, tmp_path):
    """Every Ray-free code block of README.md and docs/ (``fixture:docs_dir``), as written,
    in the venv that has numpy and rllib_ext only, in the directory the docs tests give it."""
    pytest.importorskip("markdown_it")
    from docs_blocks import all_blocks, prepare

    blocks = [b for b in all_blocks() if b.kind == "ray-free"]
    assert blocks
    for i, block in enumerate(blocks):
        here = Venv(venv.root, prepare(tmp_path / f"block{i}"))
        res = here.py(block.code, check=False)
        assert res.returncode == 0, f"{block.page}:{block.line}\n{block.code}\n{res.stderr}"


def test_msgpack_checkpoint_needs_the_msgpack_extra(venv, wheel, tmp_path):
    ckpt = tmp_path / "policy_0"
    want = _write_msgpack_module(ckpt)
    out = tmp_path / "read.npz"
    assert importlib.util.find_spec("msgpack") is not None  # outer env (test extra) wrote it

    got = json.loads(venv.py(READ_ONE, str(ckpt), str(out)).stdout)
    assert got == {
        "error": f"{ckpt / 'module_state.msgpack'}: reading msgpack checkpoints needs the msgpack package: pip install msgpack"
    }
    res = venv.cli("inspect", ckpt, check=False)
    assert (res.returncode, res.stdout) == (1, "")
    assert res.stderr == f"rllib-ext: error: {got['error']}\n"

    try:
        venv.pip("install", f"{wheel}[msgpack]")
        assert venv.distributions() - VENV_OWN == {"rllib-ext", "numpy", "msgpack"}
        got = json.loads(venv.py(READ_ONE, str(ckpt), str(out)).stdout)
        assert got == {"names": list(want)}
        with np.load(out) as z:
            for name, array in want.items():
                assert (z[name].dtype, z[name].shape) == (array.dtype, array.shape), name
                np.testing.assert_array_equal(z[name], array, err_msg=name)
        rows = [line for line in venv.cli("inspect", ckpt).stdout.splitlines() if line.startswith("policy_0")]
        assert rows and rows[0].split()[:4] == ["policy_0", "-", "-", str(len(want))]
    finally:  # back to the no-extras install the other tests assert
        venv.pip("uninstall", "-y", "msgpack")
