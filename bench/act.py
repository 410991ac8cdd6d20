"""Act with one policy: RLlib's own way vs LoadedPolicy vs NumpyPolicy vs onnxruntime.

Two tables, for both API stacks, on the same policy (``policy_1`` of a 3-policy PPO on
SignGame, 8-unit layers, untrained):

* in one warm process: latency per action at batch 1 (median of 2,000 calls) and
  throughput at batch 256 (actions per second, median of 200 calls), greedy actions;
    rllib        old: ``Policy.compute_single_action`` / ``compute_actions``;
                 new: the env runner's module ``forward_inference`` + argmax
                 (from ``Algorithm.from_checkpoint``)
    LoadedPolicy ``rllib_ext.build_policy(dir).compute_action`` on the directory
                 ``rllib_ext.extract_policy`` writes (batch: its model, as rllib)
    NumpyPolicy  ``compute_action`` / ``compute_actions``
    onnxruntime  ``InferenceSession.run(["greedy_action"], ...)``
* load and act once from a fresh process: whole-process seconds and peak RSS (``wait4``).

    python bench/act.py [--repeats N] [--cache DIR]
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
from typing import Dict, List

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
sys.path.insert(0, HERE)
from read_one_policy import BUILD, cpu_model, measure  # noqa: E402  (same fresh-process pattern)

POLICY = "policy_1"
WAYS = ("rllib", "LoadedPolicy", "NumpyPolicy", "onnxruntime")

# Warm timings: prints one JSON line {way: [us per action at batch 1, actions/s at batch 256]}.
WARM = """
import json, time, statistics, numpy as np, ray
import onnxruntime as ort, torch
import rllib_ext
from ray.rllib.algorithms.algorithm import Algorithm
ckpt, single, onnx_file, pid = {ckpt!r}, {single!r}, {onnx!r}, {pid!r}
obs1 = np.random.default_rng(0).uniform(-1, 1, (1, 4)).astype(np.float32)
obsb = np.random.default_rng(1).uniform(-1, 1, (256, 4)).astype(np.float32)

def timed(fn, arg, n):
    for _ in range(20):
        fn(arg)
    out = []
    for _ in range(n):
        t0 = time.perf_counter(); fn(arg); out.append(time.perf_counter() - t0)
    return statistics.median(out)

algo = Algorithm.from_checkpoint(ckpt)
if algo.config.enable_rl_module_and_learner:
    module = algo.env_runner.module[pid]
    def rl_batch(o):
        with torch.no_grad():
            return module.forward_inference({{"obs": torch.as_tensor(o)}})["action_dist_inputs"].argmax(-1).numpy()
    rl_one = lambda o: rl_batch(o)[0]
else:
    policy = algo.get_policy(pid)
    rl_one = lambda o: policy.compute_single_action(o[0], explore=False)[0]
    rl_batch = lambda o: policy.compute_actions(o, explore=False)[0]
loaded = rllib_ext.build_policy(rllib_ext.extract_policy(ckpt, pid, single))
if loaded.meta["stack"] == "new":
    def lp_batch(o):
        with torch.no_grad():
            return loaded.model.forward_inference({{"obs": torch.as_tensor(o)}})["action_dist_inputs"].argmax(-1).numpy()
else:
    lp_batch = lambda o: loaded.model.compute_actions(o, explore=False)[0]
npp = rllib_ext.NumpyPolicy.from_checkpoint(ckpt, pid)
sess = ort.InferenceSession(onnx_file, providers=["CPUExecutionProvider"])
ways = {{
    "rllib": (rl_one, rl_batch),
    "LoadedPolicy": (lambda o: loaded.compute_action(o[0]), lp_batch),
    "NumpyPolicy": (lambda o: npp.compute_action(o[0]), lambda o: npp.compute_actions(o)[0]),
    "onnxruntime": (lambda o: sess.run(["greedy_action"], {{"obs": o}})[0][0], lambda o: sess.run(["greedy_action"], {{"obs": o}})[0]),
}}
same = len({{tuple(np.asarray(b(obsb)).ravel().tolist()) for _, b in ways.values()}}) == 1
res = {{w: [timed(one, obs1, 2000) * 1e6, 256 / timed(batch, obsb, 200)] for w, (one, batch) in ways.items()}}
res["same_actions"] = same
algo.stop()
print(json.dumps(res))
"""

# Fresh process: load the policy and act once.
COLD = {
    "rllib": (
        "import numpy as np\n"
        "from ray.rllib.algorithms.algorithm import Algorithm\n"
        "algo = Algorithm.from_checkpoint({ckpt!r})\n"
        "obs = np.zeros(4, np.float32)\n"
        "if algo.config.enable_rl_module_and_learner:\n"
        "    import torch\n"
        "    m = algo.env_runner.module[{pid!r}]\n"
        "    print(int(m.forward_inference({{'obs': torch.as_tensor(obs[None])}})['action_dist_inputs'].argmax()))\n"
        "else:\n"
        "    print(algo.get_policy({pid!r}).compute_single_action(obs, explore=False)[0])\n"
        "algo.stop()\n"
    ),
    "LoadedPolicy": (
        "import numpy as np, rllib_ext\n"
        "print(rllib_ext.build_policy({single!r}).compute_action(np.zeros(4, np.float32)))\n"
    ),
    "NumpyPolicy": (
        "import numpy as np, rllib_ext\n"
        "print(rllib_ext.NumpyPolicy.from_checkpoint({ckpt!r}, {pid!r}).compute_action(np.zeros(4, np.float32)))\n"
    ),
    "onnxruntime": (
        "import numpy as np, onnxruntime as ort\n"
        "s = ort.InferenceSession({onnx!r}, providers=['CPUExecutionProvider'])\n"
        "print(s.run(['greedy_action'], {{'obs': np.zeros((1, 4), np.float32)}})[0][0])\n"
    ),
}


def prepare(cache: str, stack: str, env: Dict[str, str]) -> Dict[str, str]:
    """The checkpoint, where policy_1's single-policy directory goes, and its ONNX file."""
    ckpt = os.path.join(cache, f"act_{stack}")
    if not os.path.exists(os.path.join(ckpt, "rllib_checkpoint.json")):
        code = BUILD.format(tests=os.path.join(REPO, "tests"), n=3, stack=stack, path=ckpt)
        subprocess.run([sys.executable, "-c", code], check=True, env=env, cwd=REPO, capture_output=True)
    single = os.path.join(cache, f"act_{stack}_{POLICY}")  # written by extract_policy in the warm run
    # In a child (the CLI): importing torch here would inflate every later child's peak RSS,
    # which Linux counts from fork, before exec.
    onnx = os.path.join(cache, f"act_{stack}_{POLICY}.onnx")
    subprocess.run([sys.executable, "-m", "rllib_ext.cli", "export", ckpt, "--policy", POLICY, "--out", onnx],
                   check=True, env=env, cwd=REPO, capture_output=True)
    return {"ckpt": ckpt, "single": single, "onnx": onnx, "pid": POLICY}


def main(argv: "List[str] | None" = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeats", type=int, default=3, help="fresh-process runs per cell (median)")
    parser.add_argument("--cache", default=os.path.join(tempfile.gettempdir(), "rllib_ext_bench"))
    args = parser.parse_args(argv)
    env = dict(os.environ, RAY_USAGE_STATS_ENABLED="0", RAY_DEDUP_LOGS="0", PYTHONWARNINGS="ignore")
    os.makedirs(args.cache, exist_ok=True)
    started, load_before = datetime.datetime.now().astimezone(), os.getloadavg()[0]
    warm, cold = {}, {}
    for stack in ("new", "old"):
        paths = prepare(args.cache, stack, env)
        res = subprocess.run([sys.executable, "-c", WARM.format(**paths)], env=env, cwd=REPO, capture_output=True, text=True)
        if res.returncode != 0:
            raise RuntimeError(f"warm timings ({stack} stack) exited {res.returncode}:\n{res.stderr[-3000:]}")
        warm[stack] = json.loads(res.stdout.strip().splitlines()[-1])
        for way in WAYS:
            runs = [measure([sys.executable, "-c", COLD[way].format(**paths)], env)[:2] for _ in range(args.repeats)]
            cold[(stack, way)] = (statistics.median(r[0] for r in runs), statistics.median(r[1] for r in runs))
            print(f"  {stack} {way:12} {cold[(stack, way)][0]:6.2f} s {cold[(stack, way)][1]:7.1f} MB", flush=True)

    print()
    print(f"act with {POLICY} (8-unit MLP, Discrete(2)), greedy; warm: median of 2,000 calls (batch 1) / 200 calls (batch 256);"
          f" fresh process: median of {args.repeats}")
    print(f"{started:%Y-%m-%d %H:%M %Z}, nproc {os.cpu_count()}, {cpu_model()}, Python {platform.python_version()}; "
          f"1-min load average {load_before:.2f} before, {os.getloadavg()[0]:.2f} after")
    print()
    head = f"{'stack':5}  {'way':12}  {'us/action b=1':>13}  {'actions/s b=256':>15}  {'fresh: load+act s':>17}  {'peak RSS MB':>11}"
    print(head)
    print("  ".join("-" * len(c) for c in ("stack", "-" * 12, "-" * 13, "-" * 15, "-" * 17, "-" * 11)))
    for stack in ("new", "old"):
        for way in WAYS:
            us, per_s = warm[stack][way]
            sec, mb = cold[(stack, way)]
            print(f"{stack:5}  {way:12}  {us:13.1f}  {per_s:15,.0f}  {sec:17.2f}  {mb:11.1f}")
    print("same greedy actions at batch 256, all four ways: "
          + ", ".join(f"{s} {'yes' if warm[s]['same_actions'] else 'NO'}" for s in ("new", "old")))
    return 0 if all(warm[s]["same_actions"] for s in warm) else 1


if __name__ == "__main__":
    sys.exit(main())
