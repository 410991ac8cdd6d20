"""Bad input gives a typed error from one hierarchy, with a message naming file and problem.

The corpus is a table of named cases, each a small function that damages a *copy* of a
real checkpoint: the 3-policy Ray checkpoint of the cell's stack (``ckpts``), or a
single-policy directory extracted from it. Every case is checked three ways:

* the reader (``read_weights`` / ``inspect``) raises the case's exact error class, and the
  message holds the offending file's path and words for the problem;
* a live ``PPOPartial`` handed the same input (``restore(bad, policies=...)``, and
  ``load_policy`` for policy directories) raises it too and keeps every weight of every
  policy, learner and local env runner, tensor by tensor;
* a hypothesis test mutates bytes of real files and gets back the same weights or a
  typed error: never another exception, never a hang.
"""

from __future__ import annotations

import errno
import json
import os
import pickle
import random
import shutil
import signal
import struct
import subprocess
import sys
import tempfile
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Dict, Optional, Sequence, Tuple, Union

import numpy as np
import pytest

from builders import MODULES_DIR, POLICIES3, STACKS, assert_weights_equal, env_runner_weights, live_weights, ppo_config

from rllib_ext import (
    CheckpointError,
    CheckpointFormatError,
    NotACheckpointError,
    PolicyNotFoundError,
    ShapeMismatchError,
    UnsafePickleError,
    inspect,
    read_weights,
)
from rllib_ext.checkpoint import extract_policy, read_policy_dir, write_policy_dir

WEIGHTS = {"new": f"{MODULES_DIR}/policy_1/module_state.pkl", "old": "policies/policy_1/policy_state.pkl"}
POLICY_DIR = {"new": f"{MODULES_DIR}/policy_1", "old": "policies/policy_1"}
COMPONENT_META = {"new": "metadata.json", "old": "rllib_checkpoint.json"}  # inside POLICY_DIR
# A file only `inspect` reads: the module's constructor args (new), the algorithm state (old).
INSPECT_ONLY = {"new": f"{MODULES_DIR}/policy_1/class_and_ctor_args.pkl",
                "old": "algorithm_state.pkl"}
ST, PJ = "weights.safetensors", "policy.json"


class Foreign:
    """Pickled by reference: safe mode turns it into an inert placeholder."""


# ---------------------------------------------------------------- the corpus


@dataclass(frozen=True)
class Case:
    """One malformed input.

    ``damage(root, stack)`` mutates the copy at ``root`` and returns the path handed to the
    library (usually ``root``). ``file`` is the offending file relative to ``root`` (None:
    the returned path itself); the message must contain its absolute path and ``words``.
    """

    name: str
    source: str  # "ckpt": the Ray checkpoint; "dir": a single-policy directory
    damage: Callable[[Path, str], Path]
    error: type
    words: Union[Sequence[str], Dict[str, Sequence[str]]]
    file: Union[None, str, Dict[str, str]] = None
    policy: str = "policy_1"
    read: bool = True  # read_weights raises (else only inspect does)
    live: bool = True  # the live algorithm's restore/load_policy raises

    def words_for(self, stack: str) -> Sequence[str]:
        return self.words[stack] if isinstance(self.words, dict) else self.words

    def file_for(self, stack: str) -> Optional[str]:
        return self.file[stack] if isinstance(self.file, dict) else self.file


def _write(root: Path, rel: str, data: bytes) -> Path:
    (root / rel).write_bytes(data)
    return root


def _cut(rel: str, keep: Callable[[int], int]) -> Callable[[Path, str], Path]:
    def damage(root: Path, stack: str) -> Path:
        data = (root / rel).read_bytes()
        return _write(root, rel, data[: keep(len(data))])
    return damage


def _weights(fn: Callable[[bytes], bytes]) -> Callable[[Path, str], Path]:
    """Rewrite the stack's policy_1 weights file with ``fn(old bytes)``."""
    def damage(root: Path, stack: str) -> Path:
        return _write(root, WEIGHTS[stack], fn((root / WEIGHTS[stack]).read_bytes()))
    return damage


def _rewrite_weights(edit: Callable[["OrderedDict[str, np.ndarray]"], object]) -> Callable[[Path, str], Path]:
    """A valid pickle of policy_1's tensors after ``edit`` (old stack: inside {'weights': ...})."""
    def damage(root: Path, stack: str) -> Path:
        w = OrderedDict(read_weights(str(root), "policy_1"))
        payload = edit(w)
        if stack == "old":
            payload = {"weights": payload}
        return _write(root, WEIGHTS[stack], pickle.dumps(payload, protocol=5))
    return damage


def _first(w: "OrderedDict[str, np.ndarray]") -> str:
    return next(iter(w))


def _set_first(value_fn: Callable[[np.ndarray], object]) -> Callable:
    def edit(w):
        w[_first(w)] = value_fn(w[_first(w)])
        return w
    return edit


def _rename_first(w):
    name = _first(w)
    return OrderedDict((n + "_renamed" if n == name else n, v) for n, v in w.items())


def _json(rel: str, edit: Callable[[dict], object]) -> Callable[[Path, str], Path]:
    def damage(root: Path, stack: str) -> Path:
        doc = json.loads((root / rel).read_text())
        out = edit(doc)
        return _write(root, rel, json.dumps(doc if out is None else out).encode())
    return damage


def _version(v: str) -> Callable:
    return _json("rllib_checkpoint.json", lambda d: d.update(checkpoint_version=v))


def _remove(rel: Union[str, Dict[str, str]]) -> Callable[[Path, str], Path]:
    def damage(root: Path, stack: str) -> Path:
        target = root / (rel[stack] if isinstance(rel, dict) else rel)
        shutil.rmtree(target) if target.is_dir() else target.unlink()
        return root
    return damage


def _loop(rel: Union[str, Dict[str, str]]) -> Callable[[Path, str], Path]:
    def damage(root: Path, stack: str) -> Path:
        target = root / (rel[stack] if isinstance(rel, dict) else rel)
        target.unlink()
        os.symlink(target.name, target)  # a link to itself
        return root
    return damage


def _dir_instead(rel: str) -> Callable[[Path, str], Path]:
    def damage(root: Path, stack: str) -> Path:
        (root / rel).unlink()
        (root / rel).mkdir()
        return root
    return damage


def _weights_dir_instead(root: Path, stack: str) -> Path:
    return _dir_instead(WEIGHTS[stack])(root, stack)


def _component_without_meta(root: Path, stack: str) -> Path:
    (root / POLICY_DIR[stack] / COMPONENT_META[stack]).unlink()
    return root / POLICY_DIR[stack]


def _empty_dir(root: Path, stack: str) -> Path:
    empty = root.parent / "empty"
    empty.mkdir()
    return empty


def _unrelated_dir(root: Path, stack: str) -> Path:
    other = root.parent / "notes"
    other.mkdir()
    (other / "notes.txt").write_text("not a checkpoint")
    return other


def _file_instead(root: Path, stack: str) -> Path:
    return root / WEIGHTS[stack]


def _missing_path(root: Path, stack: str) -> Path:
    return root.parent / "no_such_checkpoint"


def _root_loop(root: Path, stack: str) -> Path:
    link = root.parent / "loop"
    os.symlink(link.name, link)
    return link


# Single-policy directory: weights.safetensors is 8 bytes of header size, the JSON header, the data.


def _st_parts(root: Path) -> Tuple[dict, bytes]:
    data = (root / ST).read_bytes()
    (n,) = struct.unpack("<Q", data[:8])
    return json.loads(data[8 : 8 + n]), data[8 + n :]


def _st_header(edit: Callable[[dict], object]) -> Callable[[Path, str], Path]:
    """Re-encode weights.safetensors with an edited (lying) header and the same data."""
    def damage(root: Path, stack: str) -> Path:
        header, body = _st_parts(root)
        out = edit(header)
        head = json.dumps(header if out is None else out).encode()
        return _write(root, ST, struct.pack("<Q", len(head)) + head + body)
    return damage


def _first_entry(header: dict) -> dict:
    return next(v for k, v in header.items() if k != "__metadata__")


def _st_raw_header(head: bytes) -> Callable[[Path, str], Path]:
    def damage(root: Path, stack: str) -> Path:
        _, body = _st_parts(root)
        return _write(root, ST, struct.pack("<Q", len(head)) + head + body)
    return damage


def _st_size_field(size: int) -> Callable[[Path, str], Path]:
    def damage(root: Path, stack: str) -> Path:
        data = (root / ST).read_bytes()
        return _write(root, ST, struct.pack("<Q", size) + data[8:])
    return damage


def _dir_with_weights(edit: Callable) -> Callable[[Path, str], Path]:
    """A well-formed policy directory (write_policy_dir) whose tensors were edited."""
    def damage(root: Path, stack: str) -> Path:
        meta, w = read_policy_dir(root)
        keep = {k: meta[k] for k in ("stack", "framework", "observation_space", "action_space",
                                     "model_config", "algorithm_class", "policy_class")}
        write_policy_dir(root, meta["policy_id"], edit(OrderedDict(w)), keep)
        return root
    return damage


def _pj(edit: Callable[[dict], object]) -> Callable[[Path, str], Path]:
    return _json(PJ, edit)


def _first_index_shape(d: dict) -> None:
    entry = next(iter(d["tensors"].values()))
    entry["shape"] = entry["shape"][::-1] + [2]


_GARBAGE = bytes(random.Random(7).randrange(256) for _ in range(300))
_W = {"new": WEIGHTS["new"], "old": WEIGHTS["old"]}
_PICKLE = ["truncated or corrupt pickle"]
NOT_CKPT = "not an RLlib checkpoint (no rllib_checkpoint.json or metadata.json)"

CASES = [
    # --- Ray checkpoints: the weights file
    Case("weights_empty", "ckpt", _weights(lambda b: b""), CheckpointFormatError, ["file is empty"], _W),
    Case("weights_truncated_half", "ckpt", _weights(lambda b: b[: len(b) // 2]), CheckpointFormatError, _PICKLE, _W),
    Case("weights_truncated_2_bytes", "ckpt", _weights(lambda b: b[:2]), CheckpointFormatError, _PICKLE, _W),
    Case("weights_garbage", "ckpt", _weights(lambda b: _GARBAGE), CheckpointFormatError, _PICKLE, _W),
    Case("weights_missing", "ckpt", _remove(_W), CheckpointFormatError, ["no weights file", "for policy 'policy_1'"], POLICY_DIR),
    Case("weights_is_directory", "ckpt", _weights_dir_instead, CheckpointFormatError, ["is a directory where a file was expected"], _W),
    Case("weights_symlink_loop", "ckpt", _loop(_W), CheckpointFormatError, ["symbolic link loop"], _W),
    Case("weights_not_a_mapping", "ckpt", _rewrite_weights(lambda w: 42), CheckpointFormatError,
         ["expected a mapping of tensor names to arrays, got int"], _W),
    Case("weights_tensor_is_text", "ckpt", _rewrite_weights(_set_first(lambda v: "oops")), CheckpointFormatError,
         ["is a str, not an array"], _W),
    Case("weights_tensor_foreign_object", "ckpt", _rewrite_weights(_set_first(lambda v: Foreign())), UnsafePickleError,
         ["test_bad_input.Foreign object, which safe mode does not build", "trusted=True"], _W),
    Case("shape_mismatch", "ckpt", _rewrite_weights(_set_first(lambda v: np.zeros(v.shape + (2,), v.dtype))),
         ShapeMismatchError, ["in the checkpoint but", "(checkpoint "], None, read=False),
    Case("dtype_mismatch", "ckpt", _rewrite_weights(_set_first(lambda v: v.astype(np.complex64))),
         ShapeMismatchError, ["complex64 in the checkpoint but float32 in the algorithm", "(checkpoint "], None, read=False),
    Case("tensor_names_differ", "ckpt", _rewrite_weights(_rename_first), ShapeMismatchError,
         ["tensor names differ", "_renamed", "(checkpoint "], None, read=False),
    # --- ids
    Case("unknown_policy_id", "ckpt", lambda r, s: r, PolicyNotFoundError,
         ["policy 'polcy_1' not in", "available: policy_0, policy_1, policy_2 (did you mean 'policy_1'?)"], None,
         policy="polcy_1"),
    Case("policy_dir_removed", "ckpt", _remove(POLICY_DIR), PolicyNotFoundError,
         ["policy 'policy_1' not in", "available: policy_0, policy_2"]),
    # --- metadata
    Case("metadata_missing", "ckpt", _remove("rllib_checkpoint.json"), NotACheckpointError, [NOT_CKPT, "found: "]),
    Case("metadata_empty", "ckpt", lambda r, s: _write(r, "rllib_checkpoint.json", b""), CheckpointFormatError,
         ["not valid JSON"], "rllib_checkpoint.json"),
    Case("metadata_truncated", "ckpt", _cut("rllib_checkpoint.json", lambda n: n // 2), CheckpointFormatError,
         ["not valid JSON"], "rllib_checkpoint.json"),
    Case("metadata_not_utf8", "ckpt", lambda r, s: _write(r, "rllib_checkpoint.json", b'{"\xff\xfe": 1}'),
         CheckpointFormatError, ["not valid JSON", "utf-8"], "rllib_checkpoint.json"),
    Case("metadata_not_an_object", "ckpt", _json("rllib_checkpoint.json", lambda d: [d]), CheckpointFormatError,
         ["expected a JSON object, got list"], "rllib_checkpoint.json"),
    Case("metadata_no_version", "ckpt", _json("rllib_checkpoint.json", lambda d: d.pop("checkpoint_version") and None),
         CheckpointFormatError, ["no 'checkpoint_version' key"], "rllib_checkpoint.json"),
    Case("version_unknown", "ckpt", _version("9.0"), CheckpointFormatError,
         ["checkpoint_version 9.0 is not supported (this reader knows 1.0-1.2 and 2.x)"], "rllib_checkpoint.json"),
    Case("version_garbled", "ckpt", _version("banana"), CheckpointFormatError,
         ["checkpoint_version 'banana' is not of the form 'MAJOR.MINOR'"], "rllib_checkpoint.json"),
    Case("version_pre_2_0", "ckpt", _version("0.1"), CheckpointFormatError,
         ["checkpoint_version 0.1 is not supported"], "rllib_checkpoint.json"),
    Case("metadata_symlink_loop", "ckpt", _loop("rllib_checkpoint.json"), CheckpointFormatError,
         ["symbolic link loop"], "rllib_checkpoint.json"),
    Case("component_metadata_missing", "ckpt", _component_without_meta, NotACheckpointError, [NOT_CKPT, "found: "]),
    # --- not a checkpoint at all
    Case("empty_directory", "ckpt", _empty_dir, NotACheckpointError, [NOT_CKPT, "(empty directory)"]),
    Case("unrelated_directory", "ckpt", _unrelated_dir, NotACheckpointError, [NOT_CKPT, "found: notes.txt"]),
    Case("file_instead_of_directory", "ckpt", _file_instead, NotACheckpointError,
         ["is a file, not a checkpoint directory; give the directory that holds it"]),
    Case("path_missing", "ckpt", _missing_path, NotACheckpointError, ["no such file or directory"]),
    Case("path_symlink_loop", "ckpt", _root_loop, NotACheckpointError, ["symbolic link loop"]),
    # --- a file only inspect reads (restore does not need it)
    Case("inspect_only_file_truncated", "ckpt", lambda r, s: _cut(INSPECT_ONLY[s], lambda n: n // 2)(r, s),
         CheckpointFormatError, _PICKLE, INSPECT_ONLY, read=False, live=False),
    # --- single-policy directory: weights.safetensors
    Case("st_empty", "dir", lambda r, s: _write(r, ST, b""), CheckpointFormatError, ["file is empty"], ST),
    Case("st_too_short", "dir", _cut(ST, lambda n: 5), CheckpointFormatError,
         ["too short for a safetensors file (5 bytes)"], ST),
    Case("st_truncated_in_header", "dir", _cut(ST, lambda n: 40), CheckpointFormatError,
         ["safetensors header size", "does not fit a 40-byte file"], ST),
    Case("st_truncated_data", "dir", _cut(ST, lambda n: n - 12), CheckpointFormatError,
         ["do not fit the", "-byte data section"], ST),
    Case("st_header_size_lies", "dir", _st_size_field(2**40), CheckpointFormatError,
         [f"safetensors header size {2**40} does not fit"], ST),
    Case("st_offsets_lie", "dir", _st_header(lambda h: _first_entry(h).update(data_offsets=[0, 10**6])),
         CheckpointFormatError, ["its offsets [0, 1000000] do not fit"], ST),
    Case("st_shape_lies", "dir", _st_header(lambda h: _first_entry(h).update(shape=_first_entry(h)["shape"] + [3])),
         CheckpointFormatError, ["needs", "bytes, its offsets"], ST),
    Case("st_shape_overflows_int64", "dir", _st_header(lambda h: _first_entry(h).update(shape=[2**62, 8], data_offsets=[0, 0])),
         CheckpointFormatError, ["of shape (4611686018427387904, 8)", "its offsets [0, 0] do not fit"], ST),
    Case("st_offsets_not_ints", "dir", _st_header(lambda h: _first_entry(h).update(data_offsets=["0", "a"])),
         CheckpointFormatError, ["malformed header entry"], ST),
    Case("st_dtype_unknown", "dir", _st_header(lambda h: _first_entry(h).update(dtype="F8_E4M3")),
         CheckpointFormatError, ["dtype 'F8_E4M3', which numpy cannot hold"], ST),
    Case("st_header_not_json", "dir", _st_raw_header(b"{not json" + b" " * 7), CheckpointFormatError,
         ["safetensors header is not valid JSON"], ST),
    Case("st_header_not_an_object", "dir", _st_raw_header(b"[1, 2, 3]       "), CheckpointFormatError,
         ["safetensors header is not a JSON object"], ST),
    Case("st_missing", "dir", _remove(ST), CheckpointFormatError, ["file missing from the checkpoint"], ST),
    Case("st_symlink_loop", "dir", _loop(ST), CheckpointFormatError, ["symbolic link loop"], ST),
    # --- single-policy directory: policy.json
    Case("pj_missing", "dir", _remove(PJ), NotACheckpointError, ["found: weights.safetensors"]),
    Case("pj_truncated", "dir", _cut(PJ, lambda n: n // 2), CheckpointFormatError, ["not valid JSON"], PJ),
    Case("pj_version_unknown", "dir", _pj(lambda d: d.update(format_version="9.9")), CheckpointFormatError,
         ["format_version '9.9' is not supported (this reader knows 1.0, 1.1, 1.2)"], PJ),
    Case("pj_stack_garbled", "dir", _pj(lambda d: d.update(stack="neu")), CheckpointFormatError,
         ["'stack' is 'neu', expected 'new' or 'old'"], PJ),
    Case("pj_index_disagrees", "dir", _pj(_first_index_shape), CheckpointFormatError,
         ["in the index but", "in weights.safetensors"], PJ),
    Case("pj_space_malformed", "dir", _pj(lambda d: d["observation_space"].update(shape="four")),
         CheckpointFormatError, ["a space is malformed"], PJ, read=False, live=False),
    # --- single-policy directory: well-formed, but does not fit the algorithm
    Case("dir_shape_mismatch", "dir", _dir_with_weights(_set_first(lambda v: np.zeros(v.shape + (2,), v.dtype))),
         ShapeMismatchError, ["in the checkpoint but", "(checkpoint "], None, read=False),
]
CASES_BY_NAME = {c.name: c for c in CASES}
assert len(CASES_BY_NAME) == len(CASES) >= 30


# ---------------------------------------------------------------- fixtures


@pytest.fixture
def damaged(ckpts, tmp_path):
    """``damaged(case, stack)`` -> (path to hand over, root of the copy)."""
    def make(case: Case, stack: str) -> Tuple[str, Path]:
        path, _ = ckpts(stack)
        root = tmp_path / "copy"
        if case.source == "dir":
            extract_policy(path, "policy_1", root)
        else:
            shutil.copytree(path, root)
        return str(case.damage(root, stack)), root
    return make


def _expected_text(case: Case, stack: str, given: str, root: Path) -> Sequence[str]:
    rel = case.file_for(stack)
    if case.error is ShapeMismatchError:
        return [*case.words_for(stack), given]
    return [str(root / rel) if rel else given, *case.words_for(stack)]


def _check_message(err: BaseException, texts: Sequence[str]) -> None:
    msg = str(err)
    for text in texts:
        assert text in msg, f"{text!r} not in the message {msg!r}"


# ---------------------------------------------------------------- the reader


@pytest.mark.parametrize("stack", STACKS)
@pytest.mark.parametrize("case", CASES, ids=lambda c: c.name)
def test_bad_input_gives_typed_error_naming_file(damaged, case, stack):
    given, root = damaged(case, stack)
    texts = _expected_text(case, stack, given, root)
    calls = [("inspect", lambda: inspect(given))]
    if case.read:
        calls.append(("read_weights", lambda: read_weights(given, case.policy)))
    if case.source == "dir" and case.read:
        calls.append(("read_policy_dir", lambda: read_policy_dir(given)))
    if case.error is ShapeMismatchError:  # well-formed files: the reader is fine, restore is not
        assert read_weights(given, case.policy)
        return
    if case.error is PolicyNotFoundError:  # inspect lists what is there; asking for the id fails
        calls = [("read_weights", lambda: read_weights(given, case.policy))]
    for name, call in calls:
        with pytest.raises(case.error) as info:
            call()
        assert type(info.value) is case.error, f"{name}: {type(info.value).__name__}: {info.value}"
        _check_message(info.value, texts)


def test_case_table_is_large_and_named():
    assert len(CASES) >= 30
    assert all(c.name.isidentifier() for c in CASES)


def test_every_error_is_a_checkpoint_error():
    for cls in (CheckpointFormatError, NotACheckpointError, PolicyNotFoundError, ShapeMismatchError, UnsafePickleError):
        assert issubclass(cls, CheckpointError)


# ---------------------------------------------------------------- a live algorithm


@pytest.fixture(scope="module")
def live_algo(ray_session):
    """One cheap PPOPartial per stack (no remote env runners), built on first use."""
    from rllib_ext import PPOPartialConfig

    algos = {}

    def get(stack: str):
        if stack not in algos:
            algos[stack] = ppo_config(stack, config_cls=PPOPartialConfig, num_env_runners=0).build_algo()
        return algos[stack]

    yield get
    for algo in algos.values():
        algo.stop()


def _snapshot(algo) -> Dict[str, Dict[str, np.ndarray]]:
    """Every policy's weights, on the learner (or local worker) and on the local env runner."""
    out = {}
    for pid in POLICIES3:
        out[f"learner/{pid}"] = live_weights(algo, pid)
        out[f"env_runner/{pid}"] = env_runner_weights(algo, pid, remote=False)
    return out


def _assert_unchanged(algo, before) -> None:
    after = _snapshot(algo)
    assert list(after) == list(before)
    for key in before:
        assert_weights_equal(after[key], before[key], key)


@pytest.mark.parametrize("stack", STACKS)
@pytest.mark.parametrize("case", [c for c in CASES if c.live], ids=lambda c: c.name)
def test_bad_input_leaves_live_algorithm_unchanged(live_algo, damaged, case, stack):
    algo = live_algo(stack)
    given, root = damaged(case, stack)
    texts = _expected_text(case, stack, given, root)
    before = _snapshot(algo)
    calls = [("restore", lambda: algo.restore(given, policies=[case.policy]))]
    if case.source == "dir":
        calls.append(("load_policy", lambda: algo.load_policy(given, policy_id="policy_1")))
    for name, call in calls:
        with pytest.raises(case.error) as info:
            call()
        assert type(info.value) is case.error, f"{name}: {type(info.value).__name__}: {info.value}"
        _check_message(info.value, texts)
        _assert_unchanged(algo, before)


# ---------------------------------------------------------------- permissions


def _unreadable_copy(ckpts, stack: str) -> Tuple[Path, Path]:
    """A copy of the checkpoint any user may traverse, with policy_1's weights mode 000."""
    path, _ = ckpts(stack)
    base = Path(tempfile.mkdtemp(prefix="rllib_ext_perm_"))
    root = base / "ckpt"
    shutil.copytree(path, root)
    for dirpath, dirnames, filenames in os.walk(base):
        os.chmod(dirpath, 0o755)
        for f in filenames:
            os.chmod(os.path.join(dirpath, f), 0o644)
    os.chmod(root / WEIGHTS[stack], 0o000)
    return base, root


_READ_AS_NOBODY = """
import json, os, sys
from rllib_ext import CheckpointError, read_weights   # imported while still root
os.setgroups([]); os.setgid(65534); os.setuid(65534)
try:
    read_weights(sys.argv[1], "policy_1")
    print(json.dumps({"error": None}))
except CheckpointError as e:
    print(json.dumps({"error": type(e).__name__, "message": str(e)}))
"""


@pytest.mark.parametrize("stack", STACKS)
def test_unreadable_weights_file_gives_typed_error(ckpts, stack):
    """A real EACCES. As root, mode 000 does not stop reads, so the read runs in a child
    process that imports as root and then drops to uid/gid 65534 (nobody)."""
    base, root = _unreadable_copy(ckpts, stack)
    target = root / WEIGHTS[stack]
    try:
        if os.geteuid() != 0:
            with pytest.raises(CheckpointFormatError) as info:
                read_weights(str(root), "policy_1")
            got = {"error": type(info.value).__name__, "message": str(info.value)}
        else:
            res = subprocess.run([sys.executable, "-c", _READ_AS_NOBODY, str(root)],
                                 capture_output=True, text=True, timeout=60)
            if res.returncode != 0 and "Operation not permitted" in res.stderr:
                pytest.skip("running as root without CAP_SETUID: cannot make a file unreadable")
            assert res.returncode == 0, res.stderr
            got = json.loads(res.stdout.strip().splitlines()[-1])
    finally:
        shutil.rmtree(base, ignore_errors=True)
    assert got["error"] == "CheckpointFormatError", got
    assert f"{target}: cannot read: permission denied; make it readable by this user" in got["message"]


@pytest.mark.parametrize("stack", STACKS)
def test_unreadable_weights_file_leaves_live_algorithm_unchanged(live_algo, damaged, monkeypatch, stack):
    """The live algorithm runs in this (root) process, where no file is unreadable: the
    reader's ``open`` is patched to raise the EACCES the child process above really got."""
    import rllib_ext.checkpoint.storage as storage

    algo = live_algo(stack)
    given, root = damaged(CASES_BY_NAME["unknown_policy_id"], stack)  # an intact copy
    target = str(root / WEIGHTS[stack])

    def deny(path, *args, **kwargs):
        if os.fspath(path) == target:
            raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), path)
        return open(path, *args, **kwargs)

    monkeypatch.setattr(storage, "open", deny, raising=False)
    before = _snapshot(algo)
    with pytest.raises(CheckpointFormatError, match=f"{target}: cannot read: permission denied"):
        algo.restore(given, policies=["policy_1"])
    _assert_unchanged(algo, before)


# ---------------------------------------------------------------- mutated bytes (hypothesis)


FUZZ_FILES = {
    "new": [("ckpt", WEIGHTS["new"]), ("ckpt", "rllib_checkpoint.json"), ("ckpt", INSPECT_ONLY["new"]),
            ("ckpt", "class_and_ctor_args.pkl"), ("ckpt", f"{MODULES_DIR}/policy_1/metadata.json"),
            ("dir", ST), ("dir", PJ)],
    "old": [("ckpt", WEIGHTS["old"]), ("ckpt", "rllib_checkpoint.json"), ("ckpt", INSPECT_ONLY["old"]),
            ("ckpt", "policies/policy_1/rllib_checkpoint.json"), ("dir", ST), ("dir", PJ)],
}
# RLlib's pickles carry tensor bytes and names with no checksum: a flipped bit there can
# yield other valid weights, which no reader can detect. Every other file, our
# weights.safetensors included (policy.json records its sha256), must give the same
# weights or a typed error.
UNCHECKED_TENSOR_FILES = {WEIGHTS["new"], WEIGHTS["old"]}
EXAMPLES_PER_STACK = 200
SECONDS_PER_EXAMPLE = 5


class _Hang(Exception):
    pass


def _alarm(signum, frame):
    raise _Hang(f"one read took more than {SECONDS_PER_EXAMPLE} s")


@pytest.mark.parametrize("stack", STACKS)
def test_mutated_bytes_give_same_weights_or_typed_error(ckpts, tmp_path, stack):
    from hypothesis import HealthCheck, given, settings
    from hypothesis import strategies as st

    path, _ = ckpts(stack)
    roots = {"ckpt": tmp_path / "ckpt", "dir": tmp_path / "dir"}
    shutil.copytree(path, roots["ckpt"])
    extract_policy(path, "policy_1", roots["dir"])
    want = {k: read_weights(str(r), "policy_1") for k, r in roots.items()}
    originals = {(k, rel): (roots[k] / rel).read_bytes() for k, rel in FUZZ_FILES[stack]}
    outcomes = {"same": 0, "typed error": 0, "other weights (no checksum)": 0}

    edit = st.tuples(st.sampled_from(["flip", "insert", "delete", "truncate"]),
                     st.floats(0, 1, exclude_max=True), st.integers(0, 255))

    @settings(max_examples=EXAMPLES_PER_STACK, derandomize=True, database=None, deadline=None,
              suppress_health_check=list(HealthCheck), print_blob=True)
    @given(target=st.sampled_from(sorted(originals)), edits=st.lists(edit, min_size=1, max_size=4))
    def check(target, edits):
        kind, rel = target
        data = bytearray(originals[target])
        for op, where, byte in edits:
            i = int(where * max(len(data), 1))
            if op == "flip" and data:
                data[i] ^= 1 << (byte % 8)
            elif op == "insert":
                data[i:i] = bytes([byte])
            elif op == "delete" and data:
                del data[i]
            elif op == "truncate":
                del data[i:]
        file = roots[kind] / rel
        file.write_bytes(bytes(data))
        old = signal.signal(signal.SIGALRM, _alarm)
        signal.alarm(SECONDS_PER_EXAMPLE)
        try:
            try:
                got = read_weights(str(roots[kind]), "policy_1")
            except CheckpointError:
                outcomes["typed error"] += 1
            else:
                try:
                    assert_weights_equal(got, want[kind])
                    outcomes["same"] += 1
                except AssertionError:
                    assert rel in UNCHECKED_TENSOR_FILES, f"{rel}: other weights came back without an error"
                    assert all(isinstance(v, np.ndarray) for v in got.values())
                    outcomes["other weights (no checksum)"] += 1
            try:
                view = inspect(str(roots[kind]))
                assert view.policies
            except CheckpointError:
                pass
        finally:
            signal.alarm(0)
            signal.signal(signal.SIGALRM, old)
            file.write_bytes(originals[target])

    check()
    print(f"\n{stack}: {EXAMPLES_PER_STACK} mutated files: {outcomes}")
    assert outcomes["typed error"] > 0 and outcomes["same"] + outcomes["typed error"] > EXAMPLES_PER_STACK // 2
