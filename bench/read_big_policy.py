"""One big policy out of a checkpoint: what it costs in time and peak memory (issue 14).

Every measurement is a whole fresh Python process (spawn to exit; peak RSS is
``ru_maxrss`` of that child, from ``os.wait4``), the minimum of ``--repeats`` runs (the
reader against plain ``pickle.load`` is also given as the median, with both ratios):

  reader       rllib_ext.read_weights(ckpt, pid)                    (safe mode)
  inspect      rllib_ext.inspect(ckpt)                              (every policy's shapes)
  extract-st   rllib-ext extract ckpt --policy pid --format safetensors
  extract-npz  rllib-ext extract ckpt --policy pid --format npz
  pickle.load  plain pickle.load of the policy's weights file (the floor; on the old
               stack it imports Ray, because the file pickles the config by reference)
  lightest     RLlib's lightest way: RLModule.from_checkpoint / Policy.from_checkpoint
               on the policy's directory (as in read_one_policy.py)
  python       python -c "import numpy, rllib_ext": the interpreter and numpy alone

for PPO checkpoints (untrained, 0 env runners) with ``fcnet_hiddens`` [2048, 2048]
(~33 MB of tensors per policy) and [4096]*3 (~258 MB) on 64-dim observations, both API
stacks, and 1-of-3 vs 1-of-30 policies at the small size. Built once with Ray into the
cache dir (~4 GB; delete it afterwards). Every child prints a checksum of the numbers it
read (extract: of the file it wrote), so the table also shows that all read the same.

"above python" is a method's peak RSS minus the bare interpreter + numpy; the memory
targets divide it by the policy's tensor bytes.

    python bench/read_big_policy.py [--cache DIR] [--repeats N] [--only new_s_3,old_l_3]

Building the checkpoints starts Ray (once); measuring does not, on the new stack.
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from typing import Dict, List, Tuple

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
sys.path.insert(0, HERE)
from read_one_policy import CHILD, cpu_model, measure  # noqa: E402

# "<number of tensors> <sum of all numbers>", summed in float64 1 Mi values at a time the
# same way for numpy arrays and torch tensors (no float64 copy of a whole tensor, which
# would add its own peak to the figures).
_CHECKSUM = (
    "import numpy as _np\n"
    "def _sum(v):\n"
    "    a = v.detach().cpu().numpy() if hasattr(v, 'detach') else _np.asarray(v)\n"
    "    f = a.reshape(-1)\n"
    "    return sum(float(f[i:i + 1048576].sum(dtype=_np.float64)) for i in range(0, f.size, 1048576))\n"
    "def report(w):\n"
    "    w = dict(enumerate(w)) if isinstance(w, (list, tuple)) else w\n"
    "    print(len(w), repr(round(sum(_sum(v) for v in w.values()), 6)))\n"
)

POLICY = "policy_1"
SIZES = {"s": [2048, 2048], "l": [4096, 4096, 4096]}
CELLS = [("new", "s", 3), ("new", "s", 30), ("new", "l", 3), ("old", "s", 3), ("old", "s", 30), ("old", "l", 3)]
TARGET_MEMORY = 1.3  # reader / extract: peak above python <= 1.3x the policy's tensor bytes
TARGET_PICKLE = 1.2  # new-stack reader time <= 1.2x plain pickle.load (whole processes)
TARGET_INSPECT = 1.5  # inspect (all policies) <= 1.5x reading one policy
TARGET_SCALING = 0.2  # 1-of-30 within 20% of 1-of-3 (time and memory above python)

BUILD = """
import sys
sys.path.insert(0, {tests!r})
import ray
from builders import ppo_config
ray.init(num_cpus=1, include_dashboard=False, log_to_driver=False, configure_logging=False)
ids = ["policy_%d" % i for i in range({n})]
algo = ppo_config({stack!r}, obs_dims=[64] * {n}, policies=ids, hiddens={hiddens!r}).build_algo()
algo.save({path!r})
algo.stop()
ray.shutdown()
"""

CHILDREN = {
    "reader": "import rllib_ext\nreport(rllib_ext.read_weights({ckpt!r}, {pid!r}))\n",
    "inspect": (
        "import rllib_ext\nv = rllib_ext.inspect({ckpt!r})\n"
        "p = v.policies[{pid!r}]\nprint(len(p.tensors), 'tensors', p.nbytes, 'bytes', len(v.policies), 'policies')\n"
    ),
    "pickle.load": (
        "import pickle\nwith open({file!r}, 'rb') as f:\n    s = pickle.load(f)\n"
        "report(s['weights'] if {old!r} else s)\n"
    ),
    "python": "import numpy, rllib_ext\nprint('-')\n",
}


def weights_file(stack: str, ckpt: str) -> str:
    if stack == "new":
        return os.path.join(ckpt, "learner_group/learner/rl_module", POLICY, "module_state.pkl")
    return os.path.join(ckpt, "policies", POLICY, "policy_state.pkl")


def build(cache: str, stack: str, size: str, n: int, env: Dict[str, str]) -> str:
    path = os.path.join(cache, f"{stack}_{size}_{n}")
    if os.path.exists(os.path.join(path, "rllib_checkpoint.json")):
        return path
    shutil.rmtree(path, ignore_errors=True)
    t0 = time.perf_counter()
    code = BUILD.format(tests=os.path.join(REPO, "tests"), n=n, stack=stack, hiddens=SIZES[size], path=path)
    subprocess.run([sys.executable, "-c", code], check=True, env=env, cwd=REPO, capture_output=True)
    print(f"built {path} in {time.perf_counter() - t0:.0f}s", flush=True)
    return path


def command(method: str, stack: str, ckpt: str, scratch: str) -> List[str]:
    if method.startswith("extract-"):
        fmt = "safetensors" if method == "extract-st" else "npz"
        out = os.path.join(scratch, "p" if fmt == "safetensors" else "p.npz")
        shutil.rmtree(out, ignore_errors=True) if os.path.isdir(out) else None
        return [sys.executable, "-m", "rllib_ext.cli", "extract", ckpt, "--policy", POLICY, "--out", out, "--format", fmt]
    if method == "lightest":
        code = CHILD[f"lightest-{stack}"].format(ckpt=ckpt, pid=POLICY)
    else:
        code = CHILDREN[method].format(ckpt=ckpt, pid=POLICY, file=weights_file(stack, ckpt), old=stack == "old")
    return [sys.executable, "-c", _CHECKSUM + code]


def in_child(code: str, env: Dict[str, str]) -> str:
    """Last line printed by ``code`` in a child: the parent stays small, because a child's
    ru_maxrss starts from the RSS of the process it was forked from."""
    out = subprocess.run([sys.executable, "-c", _CHECKSUM + code], env=env, cwd=REPO, capture_output=True, text=True, check=True)
    return out.stdout.strip().splitlines()[-1]


def output_checksum(method: str, scratch: str, env: Dict[str, str]) -> str:
    if method == "extract-npz":
        code = f"import numpy\nwith numpy.load({os.path.join(scratch, 'p.npz')!r}) as z:\n    report({{k: z[k] for k in z.files}})\n"
    else:
        code = f"from rllib_ext.checkpoint import read_policy_dir\nreport(read_policy_dir({os.path.join(scratch, 'p')!r})[1])\n"
    return in_child(code, env)


def main(argv: "List[str] | None" = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeats", type=int, default=5, help="fresh processes per cell (minimum reported; median too)")
    parser.add_argument("--cache", default=os.path.join(tempfile.gettempdir(), "rllib_ext_bigbench"))
    parser.add_argument("--only", default="", help="comma-separated cells, e.g. new_s_3,old_l_3")
    parser.add_argument("--skip", default="", help="comma-separated methods to leave out")
    args = parser.parse_args(argv)
    # Bytecode is cached (under the cache dir), as it is for an installed package: without
    # it every child would compile rllib_ext anew (~80 ms), while numpy's is precompiled.
    env = dict(os.environ, RAY_USAGE_STATS_ENABLED="0", PYTHONWARNINGS="ignore",
               PYTHONPYCACHEPREFIX=os.path.join(args.cache, "pycache"),
               PYTHONPATH=os.pathsep.join(p for p in (REPO, os.environ.get("PYTHONPATH")) if p))
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    cells = [c for c in CELLS if not args.only or f"{c[0]}_{c[1]}_{c[2]}" in args.only.split(",")]
    os.makedirs(args.cache, exist_ok=True)
    ckpts = {c: build(args.cache, *c, env) for c in cells}
    in_child("import rllib_ext.cli\nprint('bytecode cached')", env)
    methods = [m for m in ("python", "reader", "inspect", "extract-st", "extract-npz", "pickle.load", "lightest")
               if m not in args.skip.split(",")]

    started = datetime.datetime.now().astimezone()
    load_before = os.getloadavg()[0]
    results: Dict[Tuple, Tuple[float, float, set]] = {}
    medians: Dict[Tuple, float] = {}
    nbytes = {}
    with tempfile.TemporaryDirectory() as scratch:
        for cell, ckpt in ckpts.items():
            nbytes[cell] = int(in_child(f"import rllib_ext\nprint(rllib_ext.inspect({ckpt!r}).policies[{POLICY!r}].nbytes)", env))
            for method in methods:
                times, mbs, sums = [], [], set()
                for _ in range(args.repeats):
                    seconds, mb, last, _ = measure(command(method, cell[0], ckpt, scratch), env)
                    times.append(seconds)
                    mbs.append(mb)
                    sums.add(output_checksum(method, scratch, env) if method.startswith("extract-") else last)
                results[cell + (method,)] = (min(times), min(mbs), sums)
                medians[cell + (method,)] = statistics.median(times)
                print(f"  {cell} {method:11} {min(times):6.3f} s (median {medians[cell + (method,)]:.3f}) "
                      f"{min(mbs):7.1f} MB", flush=True)
    load_after = os.getloadavg()[0]

    print()
    print(f"one policy ({POLICY}) out of big checkpoints; each a fresh process, minimum of {args.repeats}")
    print(f"{started:%Y-%m-%d %H:%M %Z}, nproc {os.cpu_count()}, {cpu_model()}, Python {platform.python_version()}; "
          f"1-min load {load_before:.2f} before, {load_after:.2f} after")
    print()
    head = f"{'stack':5}  {'tensors MB':>10}  {'#pol':>4}  {'method':11}  {'seconds':>7}  {'peak MB':>7}  {'above python':>12}  {'x tensors':>9}  same numbers"
    print(head)
    print("-" * len(head))
    for cell in ckpts:
        base = results.get(cell + ("python",), (0, 0, set()))[1]
        ref = results.get(cell + ("reader",), (0, 0, set()))[2]
        for method in methods:
            sec, mb, sums = results[cell + (method,)]
            above = mb - base
            same = "-" if method in ("python", "inspect") else ("yes" if sums == ref and len(sums) == 1 else f"NO {sorted(sums)}")
            ratio = f"{above * 2**20 / nbytes[cell]:9.2f}" if method != "python" else f"{'':9}"
            print(f"{cell[0]:5}  {nbytes[cell] / 2**20:10.1f}  {cell[2]:>4}  {method:11}  {sec:7.2f}  {mb:7.1f}  "
                  f"{above if method != 'python' else 0:12.1f}  {ratio}  {same}")
    print()
    for cell in ckpts:
        if cell + ("reader",) in results and cell + ("pickle.load",) in results:
            (r, p), (rm, pm) = ((results[cell + (m,)][0] for m in ("reader", "pickle.load")),
                                (medians[cell + (m,)] for m in ("reader", "pickle.load")))
            print(f"{cell[0]} stack, {nbytes[cell] / 2**20:.1f} MB policy, 1 of {cell[2]}: rllib_ext.read_weights "
                  f"min {r:.3f} s / median {rm:.3f} s; pickle.load min {p:.3f} s / median {pm:.3f} s; "
                  f"ratio x{r / p:.2f} (min), x{rm / pm:.2f} (median)")
    print()
    ok_all = True

    def verdict(label: str, ok: bool, detail: str) -> None:
        nonlocal ok_all
        ok_all &= ok
        print(f"target {label}: {'met' if ok else 'MISSED'} ({detail})")

    for cell in ckpts:
        base = results[cell + ("python",)][1] if "python" in methods else 0.0
        for method in ("reader", "extract-st", "extract-npz"):
            if cell + (method,) in results:
                x = (results[cell + (method,)][1] - base) * 2**20 / nbytes[cell]
                verdict(f"{method} {cell} peak above python <= {TARGET_MEMORY}x tensors", x <= TARGET_MEMORY, f"{x:.2f}x")
        if cell[0] == "new" and cell + ("pickle.load",) in results:
            r, p = results[cell + ("reader",)][0], results[cell + ("pickle.load",)][0]
            verdict(f"reader {cell} time <= {TARGET_PICKLE}x pickle.load", r <= TARGET_PICKLE * p, f"{r / p:.2f}x: {r:.2f} s vs {p:.2f} s")
        if cell + ("inspect",) in results:
            i, r = results[cell + ("inspect",)][0], results[cell + ("reader",)][0]
            verdict(f"inspect {cell} time <= {TARGET_INSPECT}x reader", i <= TARGET_INSPECT * r, f"{i / r:.2f}x: {i:.2f} s vs {r:.2f} s")
    for stack in ("new", "old"):
        small, big = (stack, "s", 3), (stack, "s", 30)
        if small + ("reader",) in results and big + ("reader",) in results:
            t3, t30 = results[small + ("reader",)][0], results[big + ("reader",)][0]
            verdict(f"reader {stack} 1-of-30 time within {TARGET_SCALING:.0%} of 1-of-3", t30 <= t3 * (1 + TARGET_SCALING), f"{t30:.2f} s vs {t3:.2f} s")
            m3, m30 = results[small + ("reader",)][1], results[big + ("reader",)][1]
            verdict(f"reader {stack} 1-of-30 peak within {TARGET_SCALING:.0%} of 1-of-3", m30 <= m3 * (1 + TARGET_SCALING), f"{m30:.0f} MB vs {m3:.0f} MB")
    return 0 if ok_all else 1


if __name__ == "__main__":
    sys.exit(main())
