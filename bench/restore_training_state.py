"""What carrying the training state costs: restore time and checkpoint size, side by side.

One 3-policy PPOPartial per API stack (two hidden layers of ``--hidden`` units, one local
learner, no remote runners), trained one iteration and saved. Then, in the same process:

* restore time: ``algo.restore(ckpt, policies={"policy_0": "policy_0"}, training_state=...)``
  into that algorithm, median of ``--repeats`` (validation, reading, setting, syncing);
* size: the single-policy file of ``policy_0`` written by ``save_policy(...,
  training_state=...)`` (format 1.1 without, 1.2 with).

Run: python bench/restore_training_state.py [--hidden 256] [--repeats 5] [--stack new|old|both]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests"))


def dir_size(path: str) -> int:
    return sum(os.path.getsize(os.path.join(d, f)) for d, _, files in os.walk(path) for f in files)


def measure(stack: str, hidden: int, repeats: int, tmp: str) -> dict:
    from builders import train_config

    cfg = train_config("PPO", stack, policies=("policy_0", "policy_1", "policy_2"))
    if stack == "new":
        cfg = cfg.rl_module(model_config={"fcnet_hiddens": [hidden, hidden]})
    else:
        cfg = cfg.training(model={"fcnet_hiddens": [hidden, hidden]})
    algo = cfg.build_algo()
    try:
        algo.train()
        ckpt = os.path.join(tmp, f"ckpt_{stack}")
        algo.save(ckpt)
        out = {}
        for carry in (False, True):
            times = []
            for _ in range(repeats):
                t0 = time.perf_counter()
                algo.restore(ckpt, policies={"policy_0": "policy_0"}, training_state=carry)
                times.append(time.perf_counter() - t0)
            path = algo.save_policy("policy_0", os.path.join(tmp, f"p0_{stack}_{carry}"), training_state=carry)
            out[carry] = (statistics.median(times), dir_size(path))
        return out
    finally:
        algo.stop()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--hidden", type=int, default=256)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--stack", choices=("new", "old", "both"), default="both")
    args = ap.parse_args()
    import ray

    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False)
    stacks = ("new", "old") if args.stack == "both" else (args.stack,)
    rows = []
    with tempfile.TemporaryDirectory(prefix="bench-training-state-") as tmp:
        for stack in stacks:
            r = measure(stack, args.hidden, args.repeats, tmp)
            rows.append((stack, r[False], r[True]))
    ray.shutdown()
    print(f"PPO, 3 policies, fcnet [{args.hidden}, {args.hidden}], restore of policy_0 (median of {args.repeats})")
    print(f"{'stack':<6} {'restore, weights+filters':>25} {'restore, +training state':>25} "
          f"{'file, weights only':>19} {'file, +training state':>22}")
    for stack, (t0, s0), (t1, s1) in rows:
        print(f"{stack:<6} {t0 * 1000:>22.1f} ms {t1 * 1000:>22.1f} ms {s0 / 1024:>16.1f} KB {s1 / 1024:>19.1f} KB")


if __name__ == "__main__":
    main()
