"""Move a trained tf2 policy from RLlib's old API stack to a new-stack torch RLModule.

Story (read top to bottom):
  1. Train two policies with old-stack PPO in TensorFlow 2 (the way many projects still
     run) and save an ordinary checkpoint.
  2. Look into the checkpoint without Ray: framework, model config, tensor list.
  3. `rllib_ext.migrate(ckpt, out)` writes a new-stack MultiRLModule checkpoint
     (DefaultPPOTorchRLModule, same fcnet_hiddens / activation / vf_share_layers), which
     RLlib's own `MultiRLModule.from_checkpoint` loads. The CLI does the same:
         rllib-ext migrate CKPT --out NEW_DIR
  4. Proof: on 1,000 random observations the torch module's action logits and values
     equal the tf2 policy's (printed: max |difference|).
  5. Carry on training on the new stack: a new-stack PPOPartial restores `policy_0`
     straight from the *old* checkpoint (converted on the way) and trains.

Run (tf2 needs TensorFlow + tf-keras in the environment):
    python examples/migrate_tf2_policy.py               # tf2 source
    python examples/migrate_tf2_policy.py --framework torch   # the same with an old-stack torch source
"""

from __future__ import annotations

import argparse
import os
import tempfile

os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")

parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
parser.add_argument("--framework", choices=["tf2", "torch"], default="tf2", help="framework of the old-stack policies")
parser.add_argument("--out", default=None, help="working directory (default: a temporary one)")
parser.add_argument("--shared-vf", action="store_true", help="vf_share_layers=True in both stacks")
args = parser.parse_args()

if args.framework == "tf2":
    import tensorflow  # noqa: F401  (before RLlib, or RLlib turns eager mode off)

import numpy as np  # noqa: E402
import ray  # noqa: E402
import torch  # noqa: E402
from ray.rllib.algorithms.ppo import PPOConfig  # noqa: E402
from ray.rllib.core.rl_module.multi_rl_module import MultiRLModule  # noqa: E402

import rllib_ext  # noqa: E402
from rllib_ext import PPOPartialConfig  # noqa: E402
from rllib_ext.envs import SignGame, agent_to_policy  # noqa: E402
from rllib_ext import migrate  # noqa: E402

MODEL = {"fcnet_hiddens": [8, 8], "fcnet_activation": "tanh", "vf_share_layers": args.shared_vf}
ENV_CONFIG = {"obs_dims": [4, 4], "episode_len": 10}


def base_config(cls=PPOConfig):
    return (
        cls()
        .environment(SignGame, env_config=ENV_CONFIG)
        .env_runners(num_env_runners=0)
        .training(train_batch_size=200, minibatch_size=50, num_epochs=1)
        .multi_agent(policies={"policy_0", "policy_1"}, policy_mapping_fn=agent_to_policy)
        .debugging(seed=0)
    )


def main() -> None:
    work = args.out or tempfile.mkdtemp(prefix="migrate_")
    old_ckpt, new_dir = os.path.join(work, "old_ckpt"), os.path.join(work, "new_modules")
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)

    # 1. Old stack, tf2 (or torch): train, save, and remember what the policy computes.
    old_cfg = (
        base_config()
        .framework(args.framework)
        .api_stack(enable_rl_module_and_learner=False, enable_env_runner_and_connector_v2=False)
        .training(model=MODEL)
    )
    algo = old_cfg.build_algo()
    algo.train()
    algo.save(old_ckpt)
    obs = np.random.default_rng(0).uniform(-1, 1, (1000, 4)).astype(np.float32)
    _, _, extra = algo.get_policy("policy_0").compute_actions(obs, explore=False)
    old_logits, old_values = np.array(extra["action_dist_inputs"]), np.array(extra["vf_preds"])
    algo.stop()
    print(f"[1] old-stack {args.framework} checkpoint -> {old_ckpt}")

    # 2. What is in it (Ray-free reader).
    view = rllib_ext.inspect(old_ckpt).policies["policy_0"]
    mc = view.model_config
    print(f"[2] policy_0: {view.policy_class}, fcnet_hiddens={mc['fcnet_hiddens']}, "
          f"activation={mc['fcnet_activation']!r}, vf_share_layers={mc['vf_share_layers']}, tensors: {', '.join(view.tensors)}")

    # 3. Migrate: a new-stack MultiRLModule checkpoint, loaded by RLlib itself.
    report = migrate(old_ckpt, new_dir)
    print(f"[3] {report}")
    module = MultiRLModule.from_checkpoint(new_dir)["policy_0"]

    # 4. Same numbers.
    batch = {"obs": torch.from_numpy(obs)}
    with torch.no_grad():
        new_logits = module.forward_inference(batch)["action_dist_inputs"].numpy()
        new_values = module.compute_values(batch).numpy()
    d_logits = float(np.max(np.abs(new_logits - old_logits)))
    d_values = float(np.max(np.abs(new_values - old_values)))
    print(f"[4] on {len(obs)} observations: max|Δ| logits {d_logits:.2e}, values {d_values:.2e}")
    assert d_logits < 1e-4 and d_values < 1e-4, "migrated module differs from the old policy"

    # 5. Keep training on the new stack, starting from the old checkpoint's policy_0.
    new_cfg = base_config(PPOPartialConfig).rl_module(model_config=MODEL)
    new_algo = new_cfg.build_algo()
    restore_report = new_algo.restore(old_ckpt, policies=["policy_0"])
    result = new_algo.train()
    new_algo.stop()
    print(f"[5] {restore_report}")
    print(f"    new-stack training iteration {result['training_iteration']} done")
    ray.shutdown()


if __name__ == "__main__":
    main()
