"""Population-based training per policy: a trial's weak policy takes a better trial's.

Tune's PopulationBasedTraining copies whole trials. Here four trials share a pool; every
``--every`` iterations each trial snapshots both of its policies (weights, filter,
optimizer state, score, hyperparameters), and a policy in the bottom quarter of its
policy's latest snapshots loads a top trial's snapshot of that policy alone, then
perturbs its own lr and entropy coefficient. The trial's other policy stays as it is.

    python examples/population.py --trials 4 --iters 6 --every 2

Prints, per trial and policy, the last score, hyperparameters and the snapshots it took.
"""

from __future__ import annotations

import argparse
import os
import tempfile

from ray import tune

import rllib_ext
from rllib_ext.envs import SignGame, agent_to_policy

POLICIES = ["policy_0", "policy_1"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=4)
    parser.add_argument("--iters", type=int, default=6)
    parser.add_argument("--every", type=int, default=2)
    parser.add_argument("--dir", default=None, help="where the pool and Tune's results go (default: a temp dir)")
    args = parser.parse_args()
    base = os.path.abspath(args.dir or tempfile.mkdtemp(prefix="population-"))

    config = (
        rllib_ext.PPOPartialConfig()
        .environment(SignGame, env_config={"obs_dims": [4, 4], "episode_len": 10})
        .env_runners(num_env_runners=0)
        .training(train_batch_size=200, minibatch_size=50, num_epochs=1,
                  lr=tune.grid_search([1e-4, 1e-3, 3e-3, 1e-2][: args.trials]))
        .rl_module(model_config={"fcnet_hiddens": [8, 8]})
        .multi_agent(policies=set(POLICIES), policy_mapping_fn=agent_to_policy)
        .population(os.path.join(base, "pool"), policies=POLICIES, every=args.every, quantile=0.25,
                    score="return", perturb={"lr": (0.8, 1.25), "entropy_coeff": [0.0, 0.01]}, seed=0)
    )
    analysis = tune.run("PPOPartial", config=config.to_dict(), stop={"training_iteration": args.iters},
                        storage_path=os.path.join(base, "tune"), name="population", verbose=0)
    print(f"{'trial':<14}{'policy':<10}{'score':>8}{'lr':>10}{'entropy':>9}  exploited")
    for trial in analysis.trials:
        for pid, row in trial.last_result["rllib_ext"]["population"].items():
            taken = rllib_ext.PolicyPool(os.path.join(base, "pool")).entries(policy=pid, writer=trial.trial_id)
            print(f"{trial.trial_id:<14}{pid:<10}{row['score']:>8.2f}{row['hyperparams']['lr']:>10.2e}"
                  f"{row['hyperparams']['entropy_coeff']:>9.3f}  {row['exploited_from'] or '-'}"
                  f" ({len(taken)} snapshots)")


if __name__ == "__main__":
    main()
