"""More of the old API stack across: continuous actions (free_log_std too), APPO and IMPALA.

Behaviour is the proof, as in test_migration: the old policy and the migrated (or
cross-stack restored) module get the same raw observations; their action-distribution
inputs and values must agree within 1e-5 (torch) / 1e-4 (tf2). RLlib's own
``MultiRLModule.from_checkpoint`` loads what ``migrate`` wrote; a live new-stack algorithm
is compared on its learner and on a remote env runner.
"""

from __future__ import annotations

import os

import numpy as np
import pytest

from builders import (
    assert_weights_equal, framework_for_cell, learner_outputs, live_weights, max_diffs, new_outputs, old_outputs, ppo_config,
    remote_outputs, tolerance,
)

from rllib_ext.errors import MigrationError
from rllib_ext.live.restore.migration import migrate
from rllib_ext.convert.families import TARGET_MODULES, source_algorithm, source_model

N_OBS = 500
HIDDENS = (8, 8)


def _config_cls(algo: str, partial: bool = False):
    if algo == "PPO":
        from rllib_ext import PPOPartialConfig
        from ray.rllib.algorithms.ppo import PPOConfig

        return PPOPartialConfig if partial else PPOConfig
    if algo == "APPO":
        from rllib_ext import APPOPartialConfig
        from ray.rllib.algorithms.appo import APPOConfig

        return APPOPartialConfig if partial else APPOConfig
    from rllib_ext import IMPALAPartialConfig
    from ray.rllib.algorithms.impala import IMPALAConfig

    return IMPALAPartialConfig if partial else IMPALAConfig


def _with_env(cfg, box: int):
    env_config = dict(cfg.env_config, box_actions=box)
    cfg = cfg.environment(cfg.env, env_config=env_config)
    if type(cfg).__name__.startswith(("APPO", "IMPALA")):  # no "auto" fragments for these
        cfg = cfg.env_runners(rollout_fragment_length=50).resources(num_gpus=0)
    return cfg


@pytest.fixture(scope="module")
def old_run(ray_session, tmp_path_factory):
    """``old_run(algo, box, **model)`` -> (checkpoint path, obs, {pid: (logits, values)})."""
    cache = {}

    def get(algo: str = "PPO", box: int = 0, **model):
        key = (algo, box, repr(sorted(model.items())))
        if key not in cache:
            path = str(tmp_path_factory.mktemp(f"old_{algo}_{box}"))
            cfg = _with_env(ppo_config("old", obs_dims=(4, 4), hiddens=HIDDENS, config_cls=_config_cls(algo)), box)
            cfg = cfg.training(model={"fcnet_hiddens": list(HIDDENS), **model})
            built = cfg.build_algo()
            try:
                built.train()
                built.save(path)
            finally:
                built.stop()
            # The reference is the policy as saved: old-stack APPO/IMPALA keep learning in a
            # background thread after train() returns, so the live policy may have moved on.
            from ray.rllib.policy.policy import Policy

            obs = np.random.default_rng(1).uniform(-1, 1, (N_OBS, 4)).astype(np.float32)
            outputs = {  # (recurrent sources: see test_convert_lstm)
                pid: old_outputs(Policy.from_checkpoint(os.path.join(path, "policies", pid)), obs)
                for pid in ("policy_0", "policy_1") if not model.get("use_lstm")
            }
            cache[key] = (path, obs, outputs)
        return cache[key]

    return get


@pytest.fixture
def new_algo(ray_session):
    built = []

    def make(algo: str = "PPO", box: int = 0, **model_config):
        cfg = ppo_config("new", obs_dims=(4, 4), hiddens=HIDDENS, num_env_runners=1, config_cls=_config_cls(algo, True))
        cfg = _with_env(cfg, box).rl_module(model_config={"fcnet_hiddens": list(HIDDENS), **model_config})
        built.append(cfg.build_algo())
        return built[-1]

    yield make
    for algo in built:
        algo.stop()


FREE = [False, pytest.param(True, marks=pytest.mark.torch_only)]


@pytest.mark.parametrize("free_log_std", FREE, ids=["state_log_std", "free_log_std"])
@pytest.mark.stack("old")
def test_migrate_box_actions_module_computes_what_the_old_policy_did(old_run, tmp_path, free_log_std):
    from ray.rllib.core.rl_module.multi_rl_module import MultiRLModule

    path, obs, want = old_run("PPO", box=2, free_log_std=free_log_std)
    assert want["policy_0"][0].shape == (N_OBS, 4)  # DiagGaussian: 2 means, 2 log-stds

    report = migrate(path, tmp_path / "new", policies=["policy_0"])

    assert report.model_configs["policy_0"].get("free_log_std", False) is free_log_std
    module = MultiRLModule.from_checkpoint(str(tmp_path / "new"))["policy_0"]
    assert max(max_diffs(want["policy_0"], new_outputs(module, obs), "Box(2) migrate")) < tolerance()


@pytest.mark.parametrize("free_log_std", FREE, ids=["state_log_std", "free_log_std"])
@pytest.mark.stack("old")
def test_restore_box_actions_into_new_stack_algorithm_learner_and_remote_runner(old_run, new_algo, free_log_std):
    path, obs, want = old_run("PPO", box=2, free_log_std=free_log_std)
    algo = new_algo("PPO", box=2, free_log_std=free_log_std)
    fresh = new_outputs(algo.learner_group._learner.module["policy_0"], obs)
    assert max_diffs(want["policy_0"], fresh, "fresh (negative control)")[0] > 100 * tolerance()

    algo.restore(path, policies=["policy_0"])

    learner = new_outputs(algo.learner_group._learner.module["policy_0"], obs)
    assert max(max_diffs(want["policy_0"], learner, "Box(2) learner")) < tolerance()
    remote = remote_outputs(algo, "policy_0", obs)
    assert max_diffs(want["policy_0"], (remote[0], None), "Box(2) remote runner")[0] < tolerance()


@pytest.mark.stack("old")
def test_restore_free_log_std_into_a_module_without_it_names_both(old_run, new_algo):
    if framework_for_cell() == "tf2":
        pytest.skip("free_log_std is refused for tf2 sources (see test_tf2_free_log_std_and_lstm_are_refused_and_nothing_written)")
    path, _, _ = old_run("PPO", box=2, free_log_std=True)
    algo = new_algo("PPO", box=2)
    before = live_weights(algo, "policy_0")

    with pytest.raises(MigrationError, match=r"free_log_std=True but the algorithm's module has .*vf_share_layers=False; "):
        algo.restore(path, policies=["policy_0"])

    assert_weights_equal(live_weights(algo, "policy_0"), before, "after the refused restore", ordered=False)


@pytest.mark.parametrize("algo", ["APPO", "IMPALA"])
@pytest.mark.stack("old")
def test_migrate_appo_impala_policies_become_their_default_modules(old_run, tmp_path, algo):
    from ray.rllib.core.rl_module.multi_rl_module import MultiRLModule

    from rllib_ext.checkpoint.reader import read_weights

    path, obs, want = old_run(algo)

    report = migrate(path, tmp_path / "new")

    assert report.policies["policy_0"].module_class == TARGET_MODULES[algo]
    multi = MultiRLModule.from_checkpoint(str(tmp_path / "new"))
    assert type(multi["policy_0"]).__name__ == TARGET_MODULES[algo]
    for pid in ("policy_0", "policy_1"):
        assert max(max_diffs(want[pid], new_outputs(multi[pid], obs), f"{algo} {pid}")) < tolerance()
    written = read_weights(str(tmp_path / "new"), "policy_0")
    targets = [n for n in written if n.startswith("_old_")]
    assert bool(targets) is (algo == "APPO")
    for name in targets:  # APPO's target networks start as copies, as on the old stack
        main = name.replace("_old_encoder.", "encoder.").replace("_old_pi.", "pi.")
        np.testing.assert_array_equal(written[name], written[main], err_msg=name)


@pytest.mark.stack("old")
def test_migrate_into_another_algorithms_module_only_when_asked(old_run, tmp_path):
    from ray.rllib.core.rl_module.multi_rl_module import MultiRLModule

    path, obs, want = old_run("APPO")

    report = migrate(path, tmp_path / "ppo", policies=["policy_1"], target="PPO")

    assert report.module_class == "DefaultPPOTorchRLModule"
    module = MultiRLModule.from_checkpoint(str(tmp_path / "ppo"))["policy_1"]
    assert type(module).__name__ == "DefaultPPOTorchRLModule"
    assert max(max_diffs(want["policy_1"], new_outputs(module, obs), "APPO -> PPO module")) < tolerance()
    with pytest.raises(ValueError, match=r"^target='DQN'; expected one of PPO, APPO, IMPALA$"):
        migrate(path, tmp_path / "dqn", target="DQN")
    assert not (tmp_path / "dqn").exists()


@pytest.mark.parametrize("algo", ["APPO", "IMPALA"])
@pytest.mark.stack("old")
def test_restore_appo_impala_into_new_stack_learner_targets_and_remote_runner(old_run, new_algo, algo):
    path, obs, want = old_run(algo)
    live_algo = new_algo(algo, vf_share_layers=True)  # the old stack's default; the new APPO's is False

    report = live_algo.restore(path, policies={"policy_1": "policy_0"})

    assert report.restored == {"policy_1": "policy_0"}
    learner = learner_outputs(live_algo, "policy_0", obs)
    assert max(max_diffs(want["policy_1"], learner, f"{algo} learner")) < tolerance()
    remote = remote_outputs(live_algo, "policy_0", obs)
    assert max_diffs(want["policy_1"], (remote[0], None), f"{algo} remote runner")[0] < tolerance()
    live = live_weights(live_algo, "policy_0")
    targets = [n for n in live if n.startswith("_old_")]
    assert bool(targets) is (algo == "APPO"), "APPO's learner has target networks, IMPALA's none"
    for name in targets:
        np.testing.assert_array_equal(live[name], live[name.replace("_old_encoder.", "encoder.").replace("_old_pi.", "pi.")])
    live_algo.train()  # and it trains


@pytest.mark.parametrize("model, box, why", [
    ({"free_log_std": True}, 2, "free_log_std=True with tf2 (the log-std variable's place in the Keras weights list is not mapped"),
    ({"use_lstm": True, "lstm_cell_size": 16}, 0, "use_lstm=True with tf2 (the Keras LSTM wrapper's weights list is not mapped"),
], ids=["free_log_std", "lstm"])
@pytest.mark.stack("old")
def test_tf2_free_log_std_and_lstm_are_refused_and_nothing_written(old_run, tmp_path, model, box, why):
    if framework_for_cell() != "tf2":
        pytest.skip("tf2 sources only (torch: see the equivalence tests)")
    path, _, _ = old_run("PPO", box=box, **model)

    plan = migrate(path, None, policies=["policy_0"], dry_run=True)
    with pytest.raises(MigrationError) as err:
        migrate(path, tmp_path / "new", policies=["policy_0"])

    assert plan.policies["policy_0"].supported is False and why in plan.policies["policy_0"].reason
    assert str(err.value).startswith(f"policy 'policy_0': cannot map the old-stack model onto the new DefaultPPOTorchRLModule ({why}")
    assert not (tmp_path / "new").exists()


@pytest.mark.torch_only  # RLlib 2.60 cannot build old-stack tf2 SAC (see README)
@pytest.mark.stack("old")
def test_other_algorithms_policies_are_refused_by_restore_and_migrate(ray_session, new_algo, tmp_path):
    from ray.rllib.algorithms.sac import SACConfig

    from rllib_ext.envs import SignGame, agent_to_policy

    sac = (
        SACConfig().api_stack(enable_rl_module_and_learner=False, enable_env_runner_and_connector_v2=False)
        .environment(SignGame, env_config={"obs_dims": [4, 4], "box_actions": 2}).framework("torch")
        .multi_agent(policies={"policy_0", "policy_1"}, policy_mapping_fn=agent_to_policy)
        .env_runners(num_env_runners=0)
        .training(replay_buffer_config={"type": "MultiAgentPrioritizedReplayBuffer"}).build_algo()
    )
    try:
        sac.save(str(tmp_path / "sac"))
    finally:
        sac.stop()
    algo = new_algo("PPO", box=2)
    before = live_weights(algo, "policy_0")

    with pytest.raises(MigrationError, match=r"^policy 'policy_0': policy class 'SACTorchPolicy'; built-in conversion "
                                             r"takes PPO, APPO and IMPALA policies \(RLlib's default models\); pass mapping="):
        algo.restore(str(tmp_path / "sac"), policies=["policy_0"])
    with pytest.raises(MigrationError, match=r"^policy 'policy_0': policy class 'SACTorchPolicy'; migrate\(\) writes the "
                                             r"new-stack default modules of PPO, APPO, IMPALA and takes their policies only$"):
        migrate(str(tmp_path / "sac"), tmp_path / "new", policies=["policy_0"])

    assert_weights_equal(live_weights(algo, "policy_0"), before, "after the refused restore", ordered=False)
    assert not (tmp_path / "new").exists()


# ---------------------------------------------------------------- the tables alone (numpy only)


def test_source_algorithm_names_the_old_policy_classes():
    assert [source_algorithm(c) for c in ("PPOTorchPolicy", "PPOTF2Policy", "APPOTorchPolicy", "ImpalaTorchPolicy",
                                          "ImpalaTF2Policy", "DQNTorchPolicy")] == ["PPO", "PPO", "APPO", "IMPALA",
                                                                                    "IMPALA", None]


def test_source_model_refuses_what_is_not_exact_and_says_why():
    assert source_model({"fcnet_hiddens": [8], "free_log_std": True}, framework="tf2").reasons == (
        "free_log_std=True with tf2 (the log-std variable's place in the Keras weights list is not mapped; torch only)",
    )
    lstm = source_model({"fcnet_hiddens": [8], "use_lstm": True, "lstm_use_prev_action": True})
    assert lstm.reasons[0].startswith("lstm_use_prev_action=True (the old wrapper feeds it to the LSTM after")
    image = _space("Box", (42, 42, 3))
    assert source_model({"conv_filters": [[16, [4, 4], 2]]}, image).reasons == ()
    assert source_model({"conv_filters": [[16, [4, 4], 2]]}, image, "tf2").reasons == (
        "a VisionNetwork with tf2 (the Keras VisionNetwork's weights list is not mapped; torch only)",
    )
    assert source_model({}, image).reasons == (
        "conv_filters not recorded in the checkpoint (RLlib's per-shape default is not mapped)",
    )
    assert source_model({"fcnet_hiddens": [8], "use_lstm": True, "lstm_cell_size": 16, "max_seq_len": 5}).target_config() == {
        "fcnet_hiddens": [8], "fcnet_activation": "tanh", "use_lstm": True, "lstm_cell_size": 16, "max_seq_len": 5,
        "vf_share_layers": True,
    }


def _space(kind, shape):
    from rllib_ext.checkpoint.views import SpaceView

    return SpaceView(type=kind, shape=shape, dtype="float32")
