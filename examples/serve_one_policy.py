"""Serve ONE policy of a multi-agent checkpoint to an external client over TCP.

Ray 2.60 has no PolicyServerInput; external clients talk RLlink to an
`EnvRunnerServerForExternalInference`: the client asks for the weights, acts itself,
and sends episodes back for training. This story:

  1. (setup) a 3-policy multi-agent checkpoint, trained briefly on SignGame;
  2. a single-agent `PPOPartial` whose env runner is the RLlink server on a loopback
     port restores only `policy_1` of that checkpoint, renamed to the served module
     id `default_policy`:
         config.restore_policies(ckpt, {"policy_1": "default_policy"})
  3. a separate client process connects, receives the weights, and writes its first
     greedy actions and action-distribution inputs on fixed observations; we compare
     them with inference computed locally from the checkpoint's `policy_1` (equal
     actions, inputs within 1e-6);
  4. the client then plays SignGame episodes, sends them, and the server trains on them.
When the client hangs up at the end, the RLlink server prints a "Messaging/connection
error ... Recycling sockets" line: that is RLlib's server noticing, not a failure.

Run: python examples/serve_one_policy.py [--iters 2] [--port 0]
The old-stack PolicyClient has no server to talk to in Ray 2.60 (PolicyServerInput is
gone), so it is not covered.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import tempfile
import time

import numpy as np

os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")

OBS_DIM = 4
PROBES = np.random.default_rng(123).uniform(-1, 1, (20, OBS_DIM)).astype(np.float32)


# ------------------------------------------------------------------ the client process


def run_client(port: int, out: str, steps: int) -> None:
    """An external simulator: RLlink over TCP, its own inference, SignGame's rule."""
    import pickle

    import torch
    from ray.rllib.core import COMPONENT_RL_MODULE, Columns
    from ray.rllib.env.external.rllink import RLlink, get_rllink_message, send_rllink_message
    from ray.rllib.env.single_agent_episode import SingleAgentEpisode

    deadline = time.time() + 120
    while True:
        try:
            sock = socket.create_connection(("127.0.0.1", port), timeout=120)
            break
        except OSError:
            if time.time() > deadline:
                raise
            time.sleep(0.2)
    send_rllink_message(sock, {"type": RLlink.GET_CONFIG.name})
    _, body = get_rllink_message(sock)
    module = pickle.loads(body["config"]).get_rl_module_spec().build()
    send_rllink_message(sock, {"type": RLlink.GET_STATE.name})
    msg_type, body = get_rllink_message(sock)
    assert msg_type == RLlink.SET_STATE, msg_type
    module.set_state(body["state"][COMPONENT_RL_MODULE])

    with torch.no_grad():
        logits = module.forward_inference({Columns.OBS: torch.as_tensor(PROBES)})[Columns.ACTION_DIST_INPUTS]
    with open(out, "w") as f:
        json.dump({"first_actions": logits.argmax(-1).tolist(), "first_logits": logits.tolist()}, f)

    rng = np.random.default_rng(0)
    obs = rng.uniform(-1, 1, OBS_DIM).astype(np.float32)
    episode = SingleAgentEpisode(observations=[obs])
    episodes, sent = [episode], 0
    while sent < steps:
        with torch.no_grad():
            logits = module.forward_exploration({Columns.OBS: torch.as_tensor(obs[None])})[
                Columns.ACTION_DIST_INPUTS
            ][0].numpy()
        probs = np.exp(logits - logits.max())
        probs /= probs.sum()
        action = int(rng.choice(len(probs), p=probs))
        reward = float(action == int(obs[0] > 0))
        obs = rng.uniform(-1, 1, OBS_DIM).astype(np.float32)
        done = len(episode) + 1 >= 10
        episode.add_env_step(
            observation=obs, action=action, reward=reward, terminated=done,
            extra_model_outputs={Columns.ACTION_DIST_INPUTS: logits, Columns.ACTION_LOGP: float(np.log(probs[action]))},
        )
        if sum(map(len, episodes)) >= 100:
            send_rllink_message(sock, {
                "type": RLlink.EPISODES_AND_GET_STATE.name,
                "episodes": [e.get_state() for e in episodes], "timesteps": 100,
            })
            sent += 100
            msg_type, body = get_rllink_message(sock)
            assert msg_type == RLlink.SET_STATE, msg_type
            module.set_state(body["state"][COMPONENT_RL_MODULE])
            episodes = [] if episode.is_done else [episode := episode.cut()]
        if episode.is_done:
            obs = rng.uniform(-1, 1, OBS_DIM).astype(np.float32)
            episode = SingleAgentEpisode(observations=[obs])
            episodes.append(episode)
    sock.close()


# ------------------------------------------------------------------ the server side


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def local_logits(ckpt: str, policy_id: str) -> np.ndarray:
    """Action-distribution inputs of the checkpoint's policy, computed here with RLlib's loader."""
    import torch
    from ray.rllib.core.rl_module.rl_module import RLModule

    module = RLModule.from_checkpoint(os.path.join(ckpt, "learner_group", "learner", "rl_module", policy_id))
    with torch.no_grad():
        return module.forward_inference({"obs": torch.as_tensor(PROBES)})["action_dist_inputs"].numpy()


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--iters", type=int, default=2)
    parser.add_argument("--port", type=int, default=0, help="0: a free loopback port")
    parser.add_argument("--client", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--out", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--steps", type=int, default=0, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.client:
        run_client(args.port, args.out, args.steps)
        return 0

    import gymnasium as gym
    import ray
    from rllib_ext import PPOPartialConfig, read_weights, rllink_server_class

    EnvRunnerServerForExternalInference = rllink_server_class()  # Ray >= 2.49; refuses in one line before

    sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests"))
    from builders import build_checkpoint

    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    tmp = tempfile.mkdtemp(prefix="rllib_ext_serve_")
    ckpt = os.path.join(tmp, "multi_agent_ckpt")
    build_checkpoint(ckpt, "new")
    port = args.port or free_port()
    print(f"[1/4] multi-agent checkpoint with policy_0..2 -> {ckpt}")

    config = (
        PPOPartialConfig()
        .environment(
            observation_space=gym.spaces.Box(-1.0, 1.0, (OBS_DIM,), np.float32),
            action_space=gym.spaces.Discrete(2),
            env_config={"port": port},
        )
        .env_runners(env_runner_cls=EnvRunnerServerForExternalInference, num_env_runners=0,
                     rollout_fragment_length=100)
        .training(train_batch_size=100, minibatch_size=50, num_epochs=1)
        .rl_module(model_config={"fcnet_hiddens": [8, 8]})
        .restore_policies(ckpt, {"policy_1": "default_policy"})
    )
    algo = config.build_algo()
    print(f"[2/4] serving policy_1 as 'default_policy' on 127.0.0.1:{port}: {algo.partial_restore_reports[0]}")

    out = os.path.join(tmp, "client.json")
    client = subprocess.Popen(
        [sys.executable, os.path.abspath(__file__), "--client", "--port", str(port), "--out", out,
         "--steps", str(100 * args.iters)],
    )
    before = read_weights(os.path.join(ckpt, "learner_group", "learner", "rl_module", "policy_1"))
    for i in range(args.iters):
        result = algo.train()
        print(f"      train iteration {i + 1}: {result['env_runners'].get('num_env_steps_sampled', '?')} "
              "env steps from the client")
    client.wait(timeout=120)
    client_out = json.load(open(out))
    got, got_logits = client_out["first_actions"], np.asarray(client_out["first_logits"])
    want_logits = local_logits(ckpt, "policy_1")
    want = want_logits.argmax(-1).tolist()
    max_diff = float(np.max(np.abs(got_logits - want_logits)))
    after = algo.learner_group.get_weights(module_ids=["default_policy"])["default_policy"]
    moved = max(float(np.max(np.abs(np.asarray(after[k]) - before[k]))) for k in before)
    print(f"[3/4] client's first actions from the served weights equal local inference: {got == want} "
          f"({sum(a == b for a, b in zip(got, want))}/{len(want)}); "
          f"max |Δ action-dist inputs| = {max_diff:.2e}")
    print(f"[4/4] trained on the client's samples: max|Δ| vs the checkpoint = {moved:.6f}")
    algo.stop()
    ray.shutdown()
    # Compare the distribution inputs, not only greedy actions: a briefly trained policy
    # may pick one action everywhere, and equal action lists would then prove little.
    ok = got == want and max_diff <= 1e-6 and moved > 0 and client.returncode == 0
    print("OK" if ok else "FAILED")
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
