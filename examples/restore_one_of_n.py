"""Start a new Tune run from ONE policy of an old multi-agent checkpoint.

Story (read top to bottom):
  1. Pre-train three policies (policy_0..2) on SignGame with plain `tune.run(PPO)`.
  2. A second `tune.run("PPOPartial")` restores only `policy_0` from that checkpoint and
     freezes it; `policy_1` starts fresh; agent_2 is now served by `newcomer`, a new
     policy whose observation space (6 floats) differs from every policy in the
     checkpoint (4 floats). One config line does the restore:
         config.restore_policies(checkpoint, ["policy_0"], freeze=True)
  3. Print, per policy: restored? frozen? max |weight change| against the old
     checkpoint and during the second run, and the mean episode return.

Run: `make demo` (creates its own venv), or `python examples/restore_one_of_n.py`.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time

import numpy as np

os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")  # with verbose=0: no progress boxes

import ray  # noqa: E402
from ray import tune  # noqa: E402
from ray.rllib.algorithms.ppo import PPO, PPOConfig  # noqa: E402

import rllib_ext  # noqa: E402  (registers "PPOPartial" with Tune)
from rllib_ext import PPOPartialConfig, read_weights  # noqa: E402
from rllib_ext.envs import SignGame  # noqa: E402


def map_first_run(agent_id, *args, **kwargs):
    return "policy_" + agent_id.split("_")[1]


def map_second_run(agent_id, *args, **kwargs):
    return {"agent_0": "policy_0", "agent_1": "policy_1"}.get(agent_id, "newcomer")


def base_config(config_cls, stack: str, obs_dims, policies, mapping):
    cfg = (
        config_cls()
        .environment(SignGame, env_config={"obs_dims": list(obs_dims), "episode_len": 10})
        .env_runners(num_env_runners=1)
        .training(train_batch_size=400, minibatch_size=100, num_epochs=2, lr=3e-3)
        .multi_agent(policies=set(policies), policy_mapping_fn=mapping)
        .debugging(seed=0)
    )
    if stack == "old":
        return cfg.api_stack(
            enable_rl_module_and_learner=False, enable_env_runner_and_connector_v2=False
        ).training(model={"fcnet_hiddens": [32, 32]})
    return cfg.rl_module(model_config={"fcnet_hiddens": [32, 32]})


def last_checkpoint(analysis) -> str:
    trial = analysis.trials[0]
    return trial.checkpoint.path


def mean_returns(result: dict, stack: str) -> dict:
    if stack == "old":
        return result.get("env_runners", {}).get("policy_reward_mean", {})
    return result.get("env_runners", {}).get("module_episode_returns_mean", {})


def max_abs_delta(a: dict, b: dict):
    if sorted(a) != sorted(b) or any(a[k].shape != b[k].shape for k in a):
        return None  # not comparable: another architecture / observation space
    return max(float(np.max(np.abs(a[k] - b[k]))) for k in a)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--stack", choices=["new", "old"], default="new")
    parser.add_argument("--pretrain-iters", type=int, default=4)
    parser.add_argument("--iters", type=int, default=4)
    parser.add_argument("--out", default=None, help="where Tune writes (default: a temp dir)")
    args = parser.parse_args(argv)
    out = os.path.abspath(args.out or tempfile.mkdtemp(prefix="rllib_ext_demo_"))
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    t0 = time.perf_counter()

    # 1. Pre-train three policies with plain RLlib PPO.
    first = base_config(PPOConfig, args.stack, (4, 4, 4), ["policy_0", "policy_1", "policy_2"], map_first_run)
    # The class, not the string "PPO": a string makes Tune import every RLlib algorithm,
    # and DreamerV3's import builds and resets an env of its own, with gymnasium warnings.
    analysis = tune.run(
        PPO, config=first, stop={"training_iteration": args.pretrain_iters},
        checkpoint_at_end=True, storage_path=out, name="pretrain", verbose=0,
    )
    old_ckpt = last_checkpoint(analysis)
    t1 = time.perf_counter()
    print(f"[1/2] pre-trained policy_0..2 in {t1 - t0:.1f}s -> {old_ckpt}")

    # 2. New run: only policy_0 from the checkpoint (frozen); newcomer has 6-float obs.
    second = base_config(
        PPOPartialConfig, args.stack, (4, 4, 6), ["policy_0", "policy_1", "newcomer"], map_second_run
    ).restore_policies(old_ckpt, ["policy_0"], freeze=True)
    analysis = tune.run(
        "PPOPartial", config=second, stop={"training_iteration": args.iters},
        checkpoint_freq=1, checkpoint_at_end=True, storage_path=out, name="restore_one", verbose=0,
    )
    trial = analysis.trials[0]
    new_ckpts = sorted(
        os.path.join(trial.path, d) for d in os.listdir(trial.path) if d.startswith("checkpoint_")
    )
    t2 = time.perf_counter()
    print(f"[2/2] second run ({args.iters} iterations) in {t2 - t1:.1f}s -> {new_ckpts[-1]}\n")

    # 3. The table, from checkpoint files only (Ray-free reader).
    returns = mean_returns(trial.last_result, args.stack)
    did = trial.last_result.get("rllib_ext", {})  # what PPOPartial reports it restored
    restored_ids, frozen_ids = set(did.get("restored", {})), set(filter(None, did.get("frozen", "").split(",")))
    header = f"{'policy':<10} {'restored':<9} {'frozen':<7} {'max|Δ| vs old ckpt':>19} {'max|Δ| in run':>14} {'mean return':>12}"
    print(header)
    print("-" * len(header))
    old_ids = set(rllib_ext.policy_ids(old_ckpt))
    for pid in ["policy_0", "policy_1", "newcomer"]:
        final = read_weights(new_ckpts[-1], pid)
        vs_old = max_abs_delta(final, read_weights(old_ckpt, pid)) if pid in old_ids else None
        in_run = max_abs_delta(final, read_weights(new_ckpts[0], pid))
        restored = "yes" if pid in restored_ids else "no"
        frozen = "yes" if pid in frozen_ids else "no"
        vs_old_s = "n/a (new id)" if vs_old is None else f"{vs_old:.6f}"
        ret = returns.get(pid)
        print(
            f"{pid:<10} {restored:<9} {frozen:<7} {vs_old_s:>19} {in_run:>14.6f} "
            f"{'-' if ret is None else f'{ret:.2f}':>12}"
        )
    print(f"\nwhole demo: {time.perf_counter() - t0:.1f}s; outputs under {out}")
    print("max|Δ| in run compares the first and last checkpoint of the second run "
          "(the first is taken after iteration 1).")
    ray.shutdown()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
