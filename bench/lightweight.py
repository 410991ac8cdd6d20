"""Lightweight construction vs RLlib's Algorithm.from_checkpoint, side by side.

Each way runs in a fresh Python process on the same checkpoint (a 3-policy PPO whose
config has num_env_runners=2), against one shared local Ray cluster (2 CPUs), so Ray's
own start-up is not counted. Per way: wall time of the construction (imports excluded),
memory = the driver's peak RSS + the RSS of the Ray worker processes that appeared
for this algorithm (its remote env runners; read from /proc), and the CPUs Ray
reports as taken while the algorithm exists (ray.available_resources before/after).

Run: python bench/lightweight.py [--repeats 3] [--stack new|old|both]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

CHILD = r"""
import json, os, resource, sys, time

def ray_workers():
    # {pid: RSS bytes} of Ray worker processes on this machine, from /proc.
    out = {}
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            cmd = open(f"/proc/{pid}/cmdline", "rb").read().replace(b"\0", b" ").decode()
            if "default_worker.py" in cmd or cmd.startswith("ray::"):
                for line in open(f"/proc/{pid}/status"):
                    if line.startswith("VmRSS:"):
                        out[int(pid)] = int(line.split()[1]) * 1024
        except OSError:
            pass
    return out

t_import = time.perf_counter()
import ray
from ray.rllib.algorithms.algorithm import Algorithm
from rllib_ext import PPOPartial
t_import = time.perf_counter() - t_import
ray.init(address=os.environ["BENCH_RAY_ADDRESS"], log_to_driver=False)
way, path = sys.argv[1], sys.argv[2]
free_before = ray.available_resources().get("CPU", 0.0)
workers_before = ray_workers()
t0 = time.perf_counter()
if way == "upstream":
    algo = Algorithm.from_checkpoint(path)
else:
    algo = PPOPartial.from_checkpoint(path, lightweight=True, policies=["policy_0"])
seconds = time.perf_counter() - t0
time.sleep(1.0)  # let Ray's resource view settle
taken = free_before - ray.available_resources().get("CPU", 0.0)
new_workers = {pid: rss for pid, rss in ray_workers().items() if pid not in workers_before}
algo.stop()
driver = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
workers = sum(new_workers.values()) / 2**20
print(json.dumps({"seconds": seconds, "import_s": t_import, "cpus_taken": taken, "driver_mb": driver,
                  "workers_mb": workers, "total_mb": driver + workers, "n_workers": len(new_workers)}))
"""


def build_checkpoint(stack: str, out: str) -> str:
    """A 3-policy PPO checkpoint whose config asks for 2 remote env runners."""
    sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests"))
    from builders import ppo_config

    algo = ppo_config(stack, num_env_runners=2).build_algo()
    try:
        algo.save(out)
    finally:
        algo.stop()
    return out


def run_child(way: str, path: str, address: str) -> dict:
    env = dict(os.environ, BENCH_RAY_ADDRESS=address, RAY_USAGE_STATS_ENABLED="0")
    res = subprocess.run([sys.executable, "-c", CHILD, way, path], capture_output=True, text=True, env=env)
    if res.returncode != 0:
        raise RuntimeError(f"{way} failed:\n{res.stderr[-3000:]}")
    return json.loads(res.stdout.strip().splitlines()[-1])


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--stack", choices=["new", "old", "both"], default="both")
    args = parser.parse_args(argv)
    import ray

    ctx = ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    address = ctx.address_info["gcs_address"]
    stacks = ["new", "old"] if args.stack == "both" else [args.stack]
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for stack in stacks:
            path = build_checkpoint(stack, os.path.join(tmp, stack))
            for way in ("upstream", "lightweight"):
                runs = [run_child(way, path, address) for _ in range(args.repeats)]
                rows.append((stack, way, {k: statistics.median(r[k] for r in runs) for k in runs[0]}))
                print(f"  measured {stack:>3} {way:<11} x{args.repeats}", file=sys.stderr)
    ray.shutdown()

    cpu = next((line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name")), "?")
    print(f"\n{time.strftime('%Y-%m-%d')} · {os.cpu_count()} cores · {cpu} · median of {args.repeats} · "
          "checkpoint config: 3 policies, num_env_runners=2")
    header = (f"{'stack':<6} {'way':<44} {'build s':>8} {'driver MB':>10} {'+workers MB':>12} "
              f"{'total MB':>9} {'CPUs taken':>11}")
    print(header)
    print("-" * len(header))
    names = {"upstream": "Algorithm.from_checkpoint",
             "lightweight": "PPOPartial.from_checkpoint(lightweight=True)"}
    for stack, way, m in rows:
        print(f"{stack:<6} {names[way]:<44} {m['seconds']:>8.2f} {m['driver_mb']:>10.0f} "
              f"{m['workers_mb']:>12.0f} {m['total_mb']:>9.0f} {m['cpus_taken']:>11.1f}")
    for stack in stacks:
        up = next(m for s, w, m in rows if s == stack and w == "upstream")
        lw = next(m for s, w, m in rows if s == stack and w == "lightweight")
        print(f"{stack}: lightweight is {up['seconds'] / lw['seconds']:.1f}x faster and uses "
              f"{up['total_mb'] / lw['total_mb']:.2f}x less memory, {lw['cpus_taken']:.0f} CPUs "
              f"(targets: >=3x, >=2x, 0)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
