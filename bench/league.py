"""Self-play league memory and refresh cost, against RLlib's own self-play pattern.

Memory: the driver's peak RSS (its local learner and local env runner hold every
module) after 3 training iterations, for a pool of 2, 50 and 200 snapshots of ``main``
(a 2x256 MLP), each way in a fresh process:

* ``rllib_ext``: a PPOPartial with ``main`` + 2 slots and ``.league(...)`` over the pool
  (refreshing every iteration);
* ``rllib add_module``: RLlib's self-play example pattern, one ``algo.add_module`` per
  snapshot with ``main``'s weights copied in (``examples/multi_agent/utils/self_play_callback.py``),
  so the algorithm holds every snapshot.

Time: the median training iteration with a refresh (``refresh_every=1``) and without
(``refresh_every=10**6``), pool of 50, same seed; the ratio is what a refresh costs.

Run: python bench/league.py [--sizes 2,50,200] [--iterations 8]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile

HIDDEN = [256, 256]
SLOTS = ["opponent_0", "opponent_1"]


def config(base_cls, policies, mapping):
    return (
        base_cls()
        .environment("rllib_ext_highcard")
        # episodes_to_numpy=False: RLlib 2.60's MultiAgentEnvRunner numpy-izes every finished
        # episode again at every step of a sample() call, quadratic in HighCard's one-step
        # episodes (a 1600-step iteration: 45 s with it, 3.5 s without; README "Notes").
        .env_runners(num_env_runners=0, episodes_to_numpy=False)
        .training(train_batch_size=2000, minibatch_size=500, num_epochs=1)
        .multi_agent(policies=set(policies), policy_mapping_fn=mapping, policies_to_train=["main"])
        .rl_module(model_config={"fcnet_hiddens": HIDDEN})
        .debugging(seed=0)
    )


def fill_pool(pool_path: str, size: int) -> None:
    """``size`` snapshots of a fresh ``main`` (their values do not matter for memory)."""
    from rllib_ext import PolicyPool, PPOPartialConfig
    from rllib_ext.envs import seat_mapping

    built = config(PPOPartialConfig, ["main", *SLOTS], seat_mapping("main", SLOTS)).build()
    with tempfile.TemporaryDirectory() as tmp:
        path = built.save_policy("main", os.path.join(tmp, "main"))
        pool = PolicyPool(pool_path)
        for i in range(size):
            pool.add(path, policy="main", iteration=i)
    built.stop()


def child(mode: str, pool: str, size: int, iterations: int, refresh_every: int) -> dict:
    import resource
    import time

    import ray
    from ray.rllib.algorithms.ppo import PPOConfig
    from ray.tune.registry import register_env

    from rllib_ext import PPOPartialConfig
    from rllib_ext.envs import HighCard, seat_mapping

    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False)
    register_env("rllib_ext_highcard", lambda cfg: HighCard(cfg))
    times = []
    if mode == "fill":
        fill_pool(pool, size)
        return {}
    if mode == "rllib_ext":
        cfg = config(PPOPartialConfig, ["main", *SLOTS], seat_mapping("main", SLOTS))
        algo = cfg.league(pool, of="main", slots=SLOTS, sample="uniform", refresh_every=refresh_every).build()
    else:
        from ray.rllib.core.rl_module.rl_module import RLModuleSpec

        algo = config(PPOConfig, ["main", *SLOTS], seat_mapping("main", SLOTS)).build()
        main = algo.get_module("main")
        names = []
        for i in range(size):  # RLlib's own pattern: one add_module per snapshot
            names.append(f"main_v{i}")
            algo.add_module(module_id=names[-1], module_spec=RLModuleSpec.from_module(main),
                            new_agent_to_module_mapping_fn=seat_mapping("main", names))
            algo.set_state({"learner_group": {"learner": {"rl_module": {names[-1]: main.get_state()}}}})
    for _ in range(iterations):
        t0 = time.perf_counter()
        algo.train()
        times.append(time.perf_counter() - t0)
    algo.stop()
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    return {"peak_rss": peak, "times": times}


def run(mode: str, size: int, iterations: int, refresh_every: int = 1) -> dict:
    """One measurement in a fresh process (the pool is filled by another one first)."""
    with tempfile.TemporaryDirectory() as tmp:
        pool = os.path.join(tmp, "pool")
        for step in (["fill"] if mode == "rllib_ext" else []) + [mode]:
            out = subprocess.run(
                [sys.executable, __file__, "--child", step, pool, str(size), str(iterations), str(refresh_every)],
                capture_output=True, text=True, check=True,
            ).stdout
        return json.loads(out.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="2,50,200")
    parser.add_argument("--iterations", type=int, default=8)
    parser.add_argument("--child", nargs=5, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        mode, pool, size, iterations, refresh = args.child
        print(json.dumps(child(mode, pool, int(size), int(iterations), int(refresh))))
        return
    sizes = [int(s) for s in args.sizes.split(",")]
    print(f"driver peak RSS after 3 iterations, MLP {HIDDEN}, 2 slots (MB)")
    print(f"{'pool':>6} {'rllib_ext slots':>16} {'rllib add_module':>17}")
    base = None
    for size in sizes:
        ours = run("rllib_ext", size, 3)["peak_rss"] / 2**20
        theirs = run("rllib", size, 3)["peak_rss"] / 2**20
        base = base or ours
        print(f"{size:>6} {ours:>16.0f} {theirs:>17.0f}   (ours vs pool {sizes[0]}: {ours / base:.3f}x)", flush=True)
    with_refresh = run("rllib_ext", 50, args.iterations, 1)["times"][1:]
    without = run("rllib_ext", 50, args.iterations, 10**6)["times"][1:]
    a, b = statistics.median(with_refresh), statistics.median(without)
    print(f"\ntraining iteration, pool 50 (median of {len(without)}; the first is not counted)")
    print(f"  with a refresh every iteration: {a:.3f} s")
    print(f"  without refresh:                {b:.3f} s")
    print(f"  ratio: {a / b:.3f}x")


if __name__ == "__main__":
    main()
