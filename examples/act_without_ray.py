"""Take one policy out of a multi-agent checkpoint and play it with numpy, then with ONNX.

    python examples/act_without_ray.py [--stack new|old] [--out DIR] [--checkpoint CKPT]

1. (unless --checkpoint) a child process trains a 3-policy PPO on SignGame for one
   iteration and saves it: the only step that starts Ray and imports torch.
2. ``rllib_ext.extract_policy`` writes ``policy_1`` as its own directory (Ray-free reader).
3. ``NumpyPolicy`` plays an episode of SignGame for ``agent_1`` in a plain Python loop.
4. ``export_onnx`` writes the same policy as ``policy_1.onnx`` (torch is imported for the
   export only), and onnxruntime plays the same episode: same actions, same return.

SignGame's reward is 1 per step when the action is 1 for a positive first observation
entry, else 0; an episode has 10 steps.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
POLICY, AGENT, SEED = "policy_1", "agent_1", 7


def train(out: str, stack: str) -> None:
    """Child process: one PPO iteration on SignGame (3 policies), saved to ``out``."""
    from ray.rllib.algorithms.ppo import PPOConfig

    from rllib_ext.envs import SignGame, agent_to_policy

    config = (
        PPOConfig()
        .environment(SignGame, env_config={"obs_dims": [4, 4, 4], "episode_len": 10})
        .env_runners(num_env_runners=0)
        .training(train_batch_size=200, minibatch_size=50, num_epochs=1)
        .multi_agent(policies={"policy_0", "policy_1", "policy_2"}, policy_mapping_fn=agent_to_policy)
        .debugging(seed=0)
    )
    if stack == "old":
        config = config.api_stack(enable_rl_module_and_learner=False, enable_env_runner_and_connector_v2=False).training(
            model={"fcnet_hiddens": [8, 8]})
    else:
        config = config.rl_module(model_config={"fcnet_hiddens": [8, 8]})
    algo = config.build_algo()
    algo.train()
    algo.save(out)
    algo.stop()


def play(act) -> "tuple[list, float]":
    """One SignGame episode for AGENT; ``act(obs) -> action``. Returns (actions, return)."""
    from rllib_ext.envs import SignGame

    env = SignGame({"obs_dims": [4, 4, 4], "episode_len": 10})
    obs, _ = env.reset(seed=SEED)
    actions, total, done = [], 0.0, False
    while not done:
        a = int(act(obs[AGENT]))
        obs, rewards, terminated, _, _ = env.step({AGENT: a})
        actions.append(a)
        total += rewards[AGENT]
        done = terminated["__all__"]
    return actions, total


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--stack", choices=["new", "old"], default="new")
    parser.add_argument("--out", default=None, help="working directory (default: a temporary one)")
    parser.add_argument("--checkpoint", default=None, help="use this multi-agent checkpoint instead of training one")
    parser.add_argument("--train-into", default=None, help=argparse.SUPPRESS)  # the child process
    args = parser.parse_args()
    if args.train_into:
        return train(args.train_into, args.stack)

    out = args.out or tempfile.mkdtemp(prefix="act_without_ray-")
    ckpt = args.checkpoint
    if ckpt is None:
        ckpt = os.path.join(out, "checkpoint")
        subprocess.run([sys.executable, __file__, "--stack", args.stack, "--train-into", ckpt], check=True)
        print(f"[1/4] trained 3 policies ({args.stack} stack) -> {ckpt}")

    import rllib_ext

    single = rllib_ext.extract_policy(ckpt, POLICY, os.path.join(out, POLICY))
    print(f"[2/4] extracted {POLICY} -> {single}")

    policy = rllib_ext.NumpyPolicy.from_checkpoint(single)
    np_actions, np_return = play(policy.compute_action)
    print(f"[3/4] {policy!r}: actions {np_actions}, return {np_return:g}")

    import onnxruntime as ort

    onnx_file = rllib_ext.export_onnx(policy, os.path.join(out, f"{POLICY}.onnx"))
    session = ort.InferenceSession(onnx_file, providers=["CPUExecutionProvider"])

    def onnx_act(obs: np.ndarray) -> int:
        return int(session.run(["greedy_action"], {"obs": np.asarray(obs, np.float32)[None]})[0][0])

    ort_actions, ort_return = play(onnx_act)
    print(f"[4/4] onnxruntime ({os.path.basename(onnx_file)}): actions {ort_actions}, return {ort_return:g}")
    same = np_actions == ort_actions
    print(f"same actions with numpy and onnxruntime: {same}")
    if not same:
        sys.exit(1)


if __name__ == "__main__":
    main()
