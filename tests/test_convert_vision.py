"""The old stack's VisionNetwork becomes a new-stack CNN module that computes the same.

An old-stack PPO on 10x10x3 image observations (``conv_filters`` with RLlib's "same"
padding, the last layer "valid" to 1x1) is migrated and restored; the new module gets the
same raw images and its action-distribution inputs and values must agree within 1e-5.
"""

from __future__ import annotations

import copy
import os
import re

import numpy as np
import pytest

from builders import assert_weights_equal, live_weights, max_diffs, new_outputs, old_outputs, ppo_config, remote_outputs

from rllib_ext import PPOPartialConfig
from rllib_ext.errors import MigrationError
from rllib_ext.live.restore.migration import migrate

IMAGE = (10, 10, 3)
FILTERS = [[4, [3, 3], 2], [8, [5, 5], 1]]  # 10x10 -> 5x5 (same) -> 1x1 (valid)
NEW_CONFIG = {"conv_filters": [[4, [3, 3], 2, "same"], [8, [5, 5], 1, "valid"]], "conv_activation": "relu",
              "head_fcnet_hiddens": []}
TOL = 1e-5
pytestmark = pytest.mark.torch_only  # tf2 VisionNetworks are refused


def image_config(stack, **kw):
    cfg = ppo_config(stack, obs_dims=(1, 1), **kw)
    return cfg.environment(cfg.env, env_config=dict(cfg.env_config, image_obs=list(IMAGE)))


@pytest.fixture(scope="module")
def vision_run(ray_session, tmp_path_factory):
    """Old-stack PPO with the VisionNetwork (vf_share_layers=False), trained once and saved;
    the saved policy's outputs on 200 random images."""
    from ray.rllib.policy.policy import Policy

    path = str(tmp_path_factory.mktemp("old_vision"))
    algo = image_config("old").training(model={"conv_filters": FILTERS, "vf_share_layers": False}).build_algo()
    try:
        algo.train()
        algo.save(path)
    finally:
        algo.stop()
    obs = np.random.default_rng(5).uniform(-1, 1, (200,) + IMAGE).astype(np.float32)
    return path, obs, old_outputs(Policy.from_checkpoint(os.path.join(path, "policies", "policy_0")), obs)


@pytest.mark.stack("old")
def test_migrate_vision_module_computes_what_the_old_policy_did(vision_run, tmp_path):
    from ray.rllib.core.rl_module.multi_rl_module import MultiRLModule

    path, obs, want = vision_run

    report = migrate(path, tmp_path / "new", policies=["policy_0"])

    assert report.model_configs["policy_0"] == dict(NEW_CONFIG, vf_share_layers=False)
    module = MultiRLModule.from_checkpoint(str(tmp_path / "new"))["policy_0"]
    assert max(max_diffs(want, new_outputs(module, obs), "VisionNetwork migrate")) < TOL


@pytest.mark.stack("old")
def test_restore_vision_into_new_stack_algorithm_learner_and_remote_runner(vision_run):
    path, obs, want = vision_run
    cfg = image_config("new", num_env_runners=1, config_cls=PPOPartialConfig)
    algo = cfg.rl_module(model_config=dict(NEW_CONFIG, vf_share_layers=False)).build_algo()
    try:
        fresh = new_outputs(algo.learner_group._learner.module["policy_0"], obs)
        assert max_diffs(want, fresh, "fresh (negative control)")[0] > 1e-3

        algo.restore(path, policies=["policy_0"])

        learner = new_outputs(algo.learner_group._learner.module["policy_0"], obs)
        assert max(max_diffs(want, learner, "VisionNetwork learner")) < TOL
        remote = remote_outputs(algo, "policy_0", obs)
        assert max_diffs(want, (remote[0], None), "VisionNetwork remote runner")[0] < TOL
    finally:
        algo.stop()


@pytest.mark.stack("old")
def test_restore_vision_into_default_same_padding_is_refused_with_the_config_to_use(vision_run):
    path, _, _ = vision_run
    cfg = image_config("new", config_cls=PPOPartialConfig)
    algo = cfg.rl_module(model_config={"conv_filters": FILTERS[:1] + [[8, [5, 5], 1, "valid"]]}).build_algo()
    try:
        before = live_weights(algo, "policy_0")
        with pytest.raises(MigrationError, match=re.escape(
            "policy 'policy_0': the checkpoint's model is a VisionNetwork, conv_filters=[[4, [3, 3], 2], [8, [5, 5], 1]], "
            "conv_activation='relu', vf_share_layers=False but the algorithm's module has conv_filters=[[4, [3, 3], 2], "
            "[8, [5, 5], 1, 'valid']]; configure the new stack with config.rl_module(model_config={'conv_filters': "
            "[[4, [3, 3], 2, 'same'], [8, [5, 5], 1, 'valid']], 'conv_activation': 'relu', 'vf_share_layers': False, "
            "'head_fcnet_hiddens': []})"
        )):
            algo.restore(path, policies=["policy_0"])
        assert_weights_equal(live_weights(algo, "policy_0"), before, "after the refused restore", ordered=False)
    finally:
        algo.stop()


@pytest.mark.parametrize("share", [True, False], ids=["shared_vf", "separate_vf"])
def test_convert_vision_network_matches_rllibs_own_model(share):
    """RLlib's VisionNetwork and DefaultPPOTorchRLModule built side by side (no Ray runtime)."""
    import gymnasium as gym
    import torch
    from ray.rllib.algorithms.ppo.torch.default_ppo_torch_rl_module import DefaultPPOTorchRLModule
    from ray.rllib.core.rl_module.rl_module import RLModuleSpec
    from ray.rllib.models.catalog import MODEL_DEFAULTS
    from ray.rllib.models.torch.visionnet import VisionNetwork

    from rllib_ext.live.seam.bridge import effective_model_config
    from rllib_ext.checkpoint.views import SpaceView
    from rllib_ext.convert.mapping import convert_policy
    from rllib_ext.convert.families import source_model

    space = gym.spaces.Box(-1, 1, IMAGE, np.float32)
    old_mc = dict(copy.deepcopy(MODEL_DEFAULTS), conv_filters=FILTERS, vf_share_layers=share)
    old = VisionNetwork(space, gym.spaces.Discrete(3), 3, copy.deepcopy(old_mc), "old")
    view = SpaceView(type="Box", shape=IMAGE, dtype="float32")
    cfg = source_model(old_mc, view).target_config()
    new = RLModuleSpec(module_class=DefaultPPOTorchRLModule, observation_space=space, action_space=gym.spaces.Discrete(3),
                       model_config=cfg).build()
    source = {k: v.numpy() for k, v in old.state_dict().items()}
    template = {k: np.asarray(v) for k, v in new.get_state().items()}
    new.set_state(convert_policy("policy 'p'", source, template, old_mc, effective_model_config(cfg), observation_space=view))
    obs = np.random.default_rng(0).uniform(-1, 1, (100,) + IMAGE).astype(np.float32)
    with torch.no_grad():
        logits, _ = old({"obs": torch.from_numpy(obs)}, [], None)
        want = (logits.numpy(), old.value_function().numpy())
    assert max(max_diffs(want, new_outputs(new, obs), f"VisionNetwork {'shared' if share else 'separate'} vf")) < TOL
