"""Self-play on disk: train ``main`` against its past selves, then rate every snapshot.

    python examples/self_play_league.py [--iterations 30] [--stack new|old] [--pool DIR]

1. A PPO trains ``main`` on HighCard (a two-player zero-sum card game in rllib_ext.envs:
   call or fold on a private card; a learned threshold beats an untrained player). Two
   frozen slots, ``opponent_0`` and ``opponent_1``, hold snapshots of ``main`` drawn from
   the pool by prioritized fictitious self-play; ``main`` is snapshotted once before training
   (``algo.snapshot_policy``) and then every 3 iterations (``snapshot_policies``).
   The algorithm holds three policies however large the pool grows.
2. Every snapshot is then played against the final ``main`` with numpy alone
   (``NumpyPolicy`` reads the pool's policy directories as they are): the table shows each
   snapshot's iteration, its Elo rating from the league, and the final main's win rate
   against it (draws count half).
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time

import numpy as np

SLOTS = ["opponent_0", "opponent_1"]


def train(pool: str, iterations: int, stack: str) -> str:
    """Train the league; return the final main as a single-policy directory."""
    import ray

    from rllib_ext import PPOPartialConfig
    from rllib_ext.envs import HighCard, seat_mapping

    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False)
    config = (
        PPOPartialConfig()
        .environment(HighCard, env_config={"cards": 10})
        # episodes_to_numpy=False: RLlib 2.60 numpy-izes every finished episode again at every
        # step of a sample() call, quadratic in HighCard's one-step episodes (README "Notes").
        .env_runners(num_env_runners=1, rollout_fragment_length="auto", episodes_to_numpy=False)
        .training(train_batch_size=1000, minibatch_size=250, num_epochs=4, lr=3e-3)
        .multi_agent(policies={"main", *SLOTS}, policy_mapping_fn=seat_mapping("main", SLOTS),
                     policies_to_train=["main"])
        .debugging(seed=0)
        .snapshot_policies(pool, ["main"], every=3)
        .league(pool, of="main", slots=SLOTS, sample="pfsp", refresh_every=3, seed=0)
    )
    if stack == "old":
        config = config.api_stack(enable_rl_module_and_learner=False, enable_env_runner_and_connector_v2=False)
        config = config.training(model={"fcnet_hiddens": [16]})
    else:
        config = config.rl_module(model_config={"fcnet_hiddens": [16]})
    algo = config.build()
    algo.snapshot_policy("main", pool)  # the untrained main: the first snapshot, iteration 0
    t0 = time.time()
    for _ in range(iterations):
        result = algo.train()
        league = result["rllib_ext"]
        games = league["league_games"]
        won = sum(g["win"] for g in games.values())
        played = sum(g["win"] + g["draw"] + g["loss"] for g in games.values())
        print(f"iter {algo.iteration:3d}  main rating {league['league_main_rating']:7.1f}  "
              f"main won {won}/{played} against {sorted({g['snapshot'] for g in games.values()})}  "
              f"({time.time() - t0:.0f} s)", flush=True)
    final = algo.save_policy("main", os.path.join(os.path.dirname(pool), "final_main"))
    algo.stop()
    ray.shutdown()
    return final


def win_rate(final: str, snapshot: str, games: int = 4000, seed: int = 0) -> float:
    """The final main's score against ``snapshot`` in HighCard, numpy only (draws count half)."""
    from rllib_ext import NumpyPolicy

    a, b = NumpyPolicy.from_checkpoint(final), NumpyPolicy.from_checkpoint(snapshot)
    rng = np.random.default_rng(seed)
    cards = rng.integers(10, size=(games, 2))
    obs = (cards / 9.0).astype(np.float32)
    act_a = np.array([a.compute_action(o[:1], explore=True, rng=rng) for o in obs])
    act_b = np.array([b.compute_action(o[1:], explore=True, rng=rng) for o in obs])
    both = (act_a == 1) & (act_b == 1)
    reward = np.where(both, 2.0 * np.sign(cards[:, 0] - cards[:, 1]), act_a - act_b)
    return float(np.mean((reward > 0) + 0.5 * (reward == 0)))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--iterations", type=int, default=30)
    parser.add_argument("--stack", choices=["new", "old"], default="new")
    parser.add_argument("--pool", help="pool directory (default: a new temporary one)")
    args = parser.parse_args()
    pool = args.pool or os.path.join(tempfile.mkdtemp(prefix="league-"), "pool")
    final = train(pool, args.iterations, args.stack)

    from rllib_ext import PolicyPool

    print(f"\npool {pool}\n{'snapshot':<28} {'iteration':>9} {'Elo':>7} {'games':>6}  final main's score")
    for entry in PolicyPool(pool).entries():
        print(f"{entry.id:<28} {entry.iteration:>9} {entry.rating:>7.1f} {entry.games:>6}  "
              f"{win_rate(final, entry.path):.3f}")


if __name__ == "__main__":
    main()
