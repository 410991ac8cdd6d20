"""Read one policy's weights out of a checkpoint: rllib_ext vs RLlib's own ways.

Every measurement is a whole fresh Python process, timed from spawn to exit, with its
peak resident memory (``ru_maxrss`` of that child, from ``os.wait4``):

  reader     python -c "rllib_ext.read_weights(ckpt, pid)"
  cli-npz    rllib-ext extract ckpt --policy pid --out x.npz --format npz
  algorithm  Algorithm.from_checkpoint(ckpt), then the policy's weights
             (new stack: algo.learner_group.get_weights(module_ids=[pid]);
              old stack: algo.get_policy(pid).get_weights())
  lightest   new stack: RLModule.from_checkpoint(<ckpt>/learner_group/learner/rl_module/<pid>).get_state()
             old stack: Policy.from_checkpoint(<ckpt>/policies/<pid>).get_weights()

for both API stacks and for checkpoints of 3 and of 100 policies (tiny 8-unit models on
SignGame; built once into the cache dir, untrained). Each child prints a checksum of the
weights it read, so the table also shows that every method read the same numbers.
RSS counts the measured process (and children it reaped), not Ray's own daemons started
by ``Algorithm.from_checkpoint``, so upstream's figure is a lower bound.

    python bench/read_one_policy.py [--quick] [--cache DIR] [--repeats N]

--quick: one repeat, no 100-policy runs of the two upstream methods, no idle wait.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from typing import Dict, List, Optional, Tuple

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
POLICY = "policy_1"
TARGET_SECONDS = 0.3
TARGET_MB = 80.0
TARGET_SCALING = 0.20  # 1-of-100 within 20% of 1-of-3

# Each child prints "<number of tensors> <sum of all weights>" on its last line.
_CHECKSUM = (
    "import numpy as _np\n"
    "def _np_of(v):\n"
    "    return _np.asarray(v.detach().cpu().numpy() if hasattr(v, 'detach') else v, dtype=_np.float64)\n"
    "def report(w):\n"
    "    w = dict(enumerate(w)) if isinstance(w, (list, tuple)) else w\n"
    "    print(len(w), repr(round(sum(float(_np_of(v).sum()) for v in w.values()), 6)))\n"
)

CHILD = {
    "reader": (
        "import time, rllib_ext\n"
        "t0 = time.perf_counter()\n"
        "w = rllib_ext.read_weights({ckpt!r}, {pid!r})\n"
        "call_ms = (time.perf_counter() - t0) * 1e3\n"
        "report(w)\n"
        "print('call_ms', call_ms)\n"
    ),
    "algorithm": (
        "from ray.rllib.algorithms.algorithm import Algorithm\n"
        "algo = Algorithm.from_checkpoint({ckpt!r})\n"
        "if algo.config.enable_rl_module_and_learner:\n"
        "    w = algo.learner_group.get_weights(module_ids=[{pid!r}])[{pid!r}]\n"
        "else:\n"
        "    w = algo.get_policy({pid!r}).get_weights()\n"
        "report(w)\n"
        "algo.stop()\n"
    ),
    "lightest-new": (
        "from ray.rllib.core.rl_module.rl_module import RLModule\n"
        "module = RLModule.from_checkpoint({ckpt!r} + '/learner_group/learner/rl_module/' + {pid!r})\n"
        "report(module.get_state())\n"
    ),
    "lightest-old": (
        "from ray.rllib.policy.policy import Policy\n"
        "policy = Policy.from_checkpoint({ckpt!r} + '/policies/' + {pid!r})\n"
        "report(policy.get_weights())\n"
    ),
}

BUILD = """
import os, sys
sys.path.insert(0, {tests!r})
import ray
from builders import ppo_config
ray.init(num_cpus=1, include_dashboard=False, log_to_driver=False, configure_logging=False)
ids = ["policy_%d" % i for i in range({n})]
algo = ppo_config({stack!r}, policies=ids).build_algo()
algo.save({path!r})
algo.stop()
ray.shutdown()
"""


def measure(argv: List[str], env: Dict[str, str]) -> Tuple[float, float, str, Optional[float]]:
    """Run ``argv`` as a fresh process.

    Returns:
        wall seconds spawn->exit, peak RSS MB, the checksum line, and the in-process
        milliseconds of the read call if the child reports them (the reader does).
    """
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        t0 = time.perf_counter()
        proc = subprocess.Popen(argv, stdout=out, stderr=err, env=env, cwd=REPO)
        _, status, usage = os.wait4(proc.pid, 0)
        seconds = time.perf_counter() - t0
        proc.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        err.seek(0)
        stdout, stderr = out.read().decode(), err.read().decode()
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(argv[:3])} ... exited {proc.returncode}:\n{stderr[-3000:]}")
    lines = stdout.strip().splitlines()
    call_ms = None
    if lines and lines[-1].startswith("call_ms "):
        call_ms = float(lines.pop().split()[1])
    return seconds, usage.ru_maxrss / 1024.0, lines[-1] if lines else "", call_ms


def build(cache: str, stack: str, n: int, env: Dict[str, str]) -> str:
    path = os.path.join(cache, f"{stack}_{n}")
    if os.path.exists(os.path.join(path, "rllib_checkpoint.json")):
        return path
    shutil.rmtree(path, ignore_errors=True)
    t0 = time.perf_counter()
    code = BUILD.format(tests=os.path.join(REPO, "tests"), n=n, stack=stack, path=path)
    subprocess.run([sys.executable, "-c", code], check=True, env=env, cwd=REPO, capture_output=True)
    print(f"built {stack}-stack checkpoint with {n} policies in {time.perf_counter() - t0:.1f}s -> {path}", flush=True)
    return path


def commands(method: str, stack: str, ckpt: str, scratch: str) -> List[str]:
    if method == "cli-npz":
        exe = shutil.which("rllib-ext", path=os.path.dirname(sys.executable))
        head = [exe] if exe else [sys.executable, "-m", "rllib_ext.cli"]
        return head + ["extract", ckpt, "--policy", POLICY, "--out", os.path.join(scratch, "p.npz"), "--format", "npz"]
    key = f"lightest-{stack}" if method == "lightest" else method
    return [sys.executable, "-c", _CHECKSUM + CHILD[key].format(ckpt=ckpt, pid=POLICY)]


def npz_checksum(scratch: str) -> str:
    import numpy as np

    with np.load(os.path.join(scratch, "p.npz")) as z:
        return f"{len(z.files)} {round(sum(float(z[k].astype(np.float64).sum()) for k in z.files), 6)!r}"


def wait_for_idle(limit_s: float = 600.0, poll_s: float = 20.0, threshold: float = 1.0) -> float:
    """Wait until the 1-minute load average is below ``threshold`` (at most ``limit_s``)."""
    t0 = time.monotonic()
    while True:
        load = os.getloadavg()[0]
        if load < threshold:
            print(f"machine idle: 1-min load average {load:.2f}", flush=True)
            return load
        if time.monotonic() - t0 >= limit_s:
            print(f"machine NOT idle after {limit_s:.0f}s: 1-min load average {load:.2f}; measuring anyway", flush=True)
            return load
        print(f"waiting for an idle machine: 1-min load average {load:.2f}", flush=True)
        time.sleep(poll_s)


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="1 repeat, skip 100-policy upstream runs, no idle wait")
    parser.add_argument("--repeats", type=int, default=None, help="runs per cell (median reported); default 3")
    parser.add_argument("--cache", default=os.path.join(tempfile.gettempdir(), "rllib_ext_bench"), help="checkpoint cache")
    parser.add_argument("--json", metavar="FILE", help="also write every run as JSON")
    args = parser.parse_args(argv)
    repeats = args.repeats or (1 if args.quick else 3)

    env = dict(os.environ, RAY_USAGE_STATS_ENABLED="0", RAY_DEDUP_LOGS="0", PYTHONWARNINGS="ignore")
    os.makedirs(args.cache, exist_ok=True)
    ckpts = {(stack, n): build(args.cache, stack, n, env) for stack in ("new", "old") for n in (3, 100)}

    load_before = None if args.quick else wait_for_idle()
    started = datetime.datetime.now().astimezone()
    methods = ("reader", "cli-npz", "algorithm", "lightest")
    rows, runs = [], []
    with tempfile.TemporaryDirectory() as scratch:
        for (stack, n), ckpt in ckpts.items():
            for method in methods:
                if args.quick and n == 100 and method in ("algorithm", "lightest"):
                    continue
                times, mbs, sums, calls = [], [], set(), []
                for _ in range(repeats):
                    seconds, mb, last, call_ms = measure(commands(method, stack, ckpt, scratch), env)
                    if call_ms is not None:
                        calls.append(call_ms)
                    times.append(seconds)
                    mbs.append(mb)
                    sums.add(npz_checksum(scratch) if method == "cli-npz" else last)
                    runs.append({"stack": stack, "policies": n, "method": method, "seconds": seconds, "peak_rss_mb": mb})
                call = statistics.median(calls) if calls else None
                rows.append((stack, n, method, statistics.median(times), statistics.median(mbs), sums, call))
                print(f"  {stack:3} {n:3} {method:9} {statistics.median(times):7.2f} s {statistics.median(mbs):7.1f} MB", flush=True)
    load_after = os.getloadavg()[0]

    print()
    print(f"read one policy ({POLICY}) out of a checkpoint, each a whole fresh process; median of {repeats}")
    print(
        f"{started:%Y-%m-%d %H:%M %Z}, nproc {os.cpu_count()}, {cpu_model()}, Python {platform.python_version()}; "
        f"1-min load average {'-' if load_before is None else f'{load_before:.2f}'} before, {load_after:.2f} after"
    )
    print()
    print(f"{'stack':5}  {'#policies':>9}  {'method':9}  {'seconds':>7}  {'peak RSS MB':>11}  {'read call ms':>12}  same weights")
    print(f"{'-' * 5}  {'-' * 9}  {'-' * 9}  {'-' * 7}  {'-' * 11}  {'-' * 12}  {'-' * 12}")
    reference = {(s, n): r[5] for r in rows for s, n in [(r[0], r[1])] if r[2] == "reader"}
    for stack, n, method, sec, mb, sums, call in rows:
        same = "yes" if sums == reference.get((stack, n)) and len(sums) == 1 else f"NO {sorted(sums)}"
        call_s = "-" if call is None else f"{call:.2f}"
        print(f"{stack:5}  {n:>9}  {method:9}  {sec:7.2f}  {mb:11.1f}  {call_s:>12}  {same}")
    python_only = [measure([sys.executable, "-c", c], env)[0] for c in ("pass", "import numpy") for _ in range(repeats)]
    print(f"(for scale: a bare 'python -c pass' {statistics.median(python_only[:repeats]):.2f} s, "
          f"'python -c \"import numpy\"' {statistics.median(python_only[repeats:]):.2f} s)")

    print()
    ok_all = True
    by = {(r[0], r[1], r[2]): r for r in rows}
    for stack in ("new", "old"):
        for n in (3, 100):
            _, _, _, sec, mb, _, _ = by[(stack, n, "reader")]
            ok = sec <= TARGET_SECONDS and mb <= TARGET_MB
            ok_all &= ok
            print(f"target reader {stack}/{n}: <= {TARGET_SECONDS} s and <= {TARGET_MB:.0f} MB: "
                  f"{'met' if ok else 'MISSED'} ({sec:.2f} s, {mb:.1f} MB)")
        small, large = by[(stack, 3, "reader")][3], by[(stack, 100, "reader")][3]
        ok = large <= small * (1 + TARGET_SCALING)
        ok_all &= ok
        print(f"target reader {stack}: 1-of-100 within {TARGET_SCALING:.0%} of 1-of-3: "
              f"{'met' if ok else 'MISSED'} ({large:.3f} s vs {small:.3f} s, {large / small - 1:+.0%})")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"started": started.isoformat(), "runs": runs}, f, indent=1)
    return 0 if ok_all else 1


if __name__ == "__main__":
    sys.exit(main())
