"""Old-stack policies into new-stack RLModules: the migrated module computes what the old policy did.

The proof is behavioural: on 1,000 random observations the old policy's action-distribution
inputs and value predictions equal the new module's (torch -> torch within 1e-5, tf2 -> torch
within 1e-4). Tests marked ``stack("old")`` run in the torch-old and tf2-old cells, so the
source policies are torch or tf2 as the cell says; the target is always new-stack torch.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys

import numpy as np
import pytest

from builders import (
    ROOT, assert_imports_no_framework, assert_weights_equal, framework_for_cell, live_weights, max_diffs,
    new_outputs, old_outputs, ppo_config, tolerance, train_then_save,
)

from rllib_ext import PPOPartialConfig
from rllib_ext.errors import InvalidArgumentError, MigrationError
from rllib_ext.live.restore.migration import migrate

N_OBS = 1000
HIDDENS = (8, 8)


@pytest.fixture(scope="module")
def old_run(ray_session, tmp_path_factory):
    """Old-stack 2-policy PPO checkpoints (trained 1 iteration) and each policy's outputs
    on the same random observations: ``old_run(share)`` -> (path, obs, {pid: outputs})."""
    cache = {}

    def get(share: bool, **model):
        key = (share, repr(sorted(model.items())))
        if key not in cache:
            path = str(tmp_path_factory.mktemp(f"old_share{int(share)}"))
            cfg = ppo_config("old", obs_dims=(4, 4), hiddens=HIDDENS).training(
                model={"vf_share_layers": share, **model}
            )
            obs = np.random.default_rng(0).uniform(-1, 1, (N_OBS, 4)).astype(np.float32)
            outputs = train_then_save(path, cfg, lambda algo: {
                pid: old_outputs(algo.get_policy(pid), obs) for pid in ("policy_0", "policy_1")})
            cache[key] = (path, obs, outputs)
        return cache[key]

    return get


@pytest.fixture
def new_algo(ray_session):
    built = []

    def make(share: bool, hiddens=HIDDENS):
        cfg = ppo_config("new", obs_dims=(4, 4), hiddens=hiddens, config_cls=PPOPartialConfig)
        algo = cfg.rl_module(model_config={"fcnet_hiddens": list(hiddens), "vf_share_layers": share}).build_algo()
        built.append(algo)
        return algo

    yield make
    for algo in built:
        algo.stop()


# ---------------------------------------------------------------- end to end, per cell


def post_fcnet_mapping():
    """A user's mapping for fcnet_hiddens=[8] + post_fcnet_hiddens=[8] onto fcnet_hiddens=[8, 8]:
    a dict of names for torch, a callable (it transposes kernels) for tf2's positional list."""
    if framework_for_cell() == "tf2":
        # Keras order: fc_1, fc_value_1, fc_2 (the post layer), fc_value_2, fc_out, value_out.
        layers = ["actor_encoder.net.mlp.0", "critic_encoder.net.mlp.0", "actor_encoder.net.mlp.2",
                  "critic_encoder.net.mlp.2", "pi", "vf"]

        def mapping(w):
            out = {}
            for k, layer in enumerate(layers):
                prefix = f"{layer}.net.mlp.0" if layer in ("pi", "vf") else f"encoder.{layer}"
                out[f"{prefix}.weight"] = w[str(2 * k)].T
                out[f"{prefix}.bias"] = w[str(2 * k + 1)]
            return out
    else:
        mapping = {
            "_hidden_layers.0._model.0.weight": "encoder.actor_encoder.net.mlp.0.weight",
            "_hidden_layers.0._model.0.bias": "encoder.actor_encoder.net.mlp.0.bias",
            "_hidden_layers.1._model.0.weight": "encoder.actor_encoder.net.mlp.2.weight",
            "_hidden_layers.1._model.0.bias": "encoder.actor_encoder.net.mlp.2.bias",
            "_value_branch_separate.0._model.0.weight": "encoder.critic_encoder.net.mlp.0.weight",
            "_value_branch_separate.0._model.0.bias": "encoder.critic_encoder.net.mlp.0.bias",
            "_value_branch_separate.1._model.0.weight": "encoder.critic_encoder.net.mlp.2.weight",
            "_value_branch_separate.1._model.0.bias": "encoder.critic_encoder.net.mlp.2.bias",
            "_logits._model.0.weight": "pi.net.mlp.0.weight",
            "_logits._model.0.bias": "pi.net.mlp.0.bias",
            "_value_branch._model.0.weight": "vf.net.mlp.0.weight",
            "_value_branch._model.0.bias": "vf.net.mlp.0.bias",
        }
    return mapping


@pytest.mark.parametrize("share", [False, True], ids=["separate_vf", "shared_vf"])
@pytest.mark.stack("old")
def test_migrate_module_computes_what_the_old_policy_did(old_run, tmp_path, share):
    from ray.rllib.core.rl_module.multi_rl_module import MultiRLModule
    from ray.rllib.core.rl_module.rl_module import RLModule

    path, obs, want = old_run(share)
    out = tmp_path / "new"

    report = migrate(path, out, policies=["policy_0"])

    assert list(report.converted) == ["policy_0"]
    assert report.model_configs["policy_0"]["vf_share_layers"] is share
    multi = MultiRLModule.from_checkpoint(str(out))  # RLlib's own loader
    assert list(multi.keys()) == ["policy_0"]
    d_logits, d_values = max_diffs(want["policy_0"], new_outputs(multi["policy_0"], obs))
    assert d_logits < tolerance() and d_values < tolerance()
    single = RLModule.from_checkpoint(str(out / "policy_0"))
    assert max(max_diffs(want["policy_0"], new_outputs(single, obs))) < tolerance()
    assert not [p for p in os.listdir(tmp_path) if p.startswith(".")], "temporary sibling left behind"


@pytest.mark.parametrize("share", [False, True], ids=["separate_vf", "shared_vf"])
@pytest.mark.stack("old")
def test_restore_old_stack_checkpoint_into_new_stack_algorithm(old_run, new_algo, share):
    path, obs, want = old_run(share)
    algo = new_algo(share)
    before_1 = live_weights(algo, "policy_1")
    fresh = new_outputs(algo.learner_group._learner.module["policy_0"], obs)
    assert min(max_diffs(want["policy_0"], fresh)) > 100 * tolerance()  # the comparison can tell them apart

    report = algo.restore(path, policies=["policy_0"])

    assert report.restored == {"policy_0": "policy_0"}
    assert report.converted_from == f"old-API-stack {framework_for_cell()}"
    learner_module = algo.learner_group._learner.module["policy_0"]
    assert max(max_diffs(want["policy_0"], new_outputs(learner_module, obs))) < tolerance()
    runner_module = algo.env_runner.module["policy_0"]  # inference-only copy: logits only
    d_logits, _ = max_diffs(want["policy_0"], new_outputs(runner_module, obs, values=False))
    assert d_logits < tolerance()
    assert_weights_equal(live_weights(algo, "policy_1"), before_1, "untouched policy_1", ordered=False)
    algo.train()  # the converted module trains


@pytest.mark.stack("old")
def test_restore_old_stack_refuses_other_hidden_sizes_and_changes_nothing(old_run, new_algo):
    path, _, _ = old_run(False)
    algo = new_algo(False, hiddens=(16,))
    before = live_weights(algo, "policy_0")

    with pytest.raises(MigrationError) as err:
        algo.restore(path, policies=["policy_0"])

    assert str(err.value).startswith(
        "policy 'policy_0': the checkpoint's model has fcnet_hiddens=[8, 8], fcnet_activation='tanh', "
        "vf_share_layers=False but the algorithm's module has fcnet_hiddens=[16], fcnet_activation='tanh', "
        "vf_share_layers=False; configure the new stack with the checkpoint's values"
    )
    assert_weights_equal(live_weights(algo, "policy_0"), before, "policy_0 after the refused restore", ordered=False)


@pytest.mark.stack("old")
def test_migrate_unsupported_model_lists_tensors_and_writes_nothing(old_run, tmp_path):
    # post_fcnet_hiddens: still RLlib's FullyConnectedNetwork, but not a shape the table knows.
    path, _, _ = old_run(False, post_fcnet_hiddens=[8])
    out = tmp_path / "new"

    with pytest.raises(MigrationError) as err:
        migrate(path, out, policies=["policy_0"])

    msg = str(err.value)
    assert msg.startswith(
        "policy 'policy_0': cannot map the old-stack model onto the new DefaultPPOTorchRLModule "
        "(post_fcnet_hiddens=[8]); pass mapping="
    )
    first = "0 (4, 8)" if framework_for_cell() == "tf2" else "_hidden_layers.0._model.0.weight (8, 4)"
    assert "source tensors with no mapped target: " in msg and first in msg
    assert "target tensors left unset: encoder.actor_encoder.net.mlp.0.weight (8, 4)" in msg
    assert "log_std_clip_param_const" not in msg  # constants are kept, never asked for
    assert not out.exists()
    assert os.listdir(tmp_path) == []


@pytest.mark.stack("old")
def test_migrate_with_user_mapping_computes_what_the_old_policy_did(old_run, tmp_path):
    from ray.rllib.core.rl_module.multi_rl_module import MultiRLModule

    # fcnet_hiddens=[8] + post_fcnet_hiddens=[8] is, layer by layer, fcnet_hiddens=[8, 8].
    path, obs, want = old_run(False, fcnet_hiddens=[8], post_fcnet_hiddens=[8])
    mapping = post_fcnet_mapping()
    out = tmp_path / "new"

    migrate(path, out, policies=["policy_0"], mapping=mapping, model_config={"fcnet_hiddens": [8, 8]})

    module = MultiRLModule.from_checkpoint(str(out))["policy_0"]
    assert max(max_diffs(want["policy_0"], new_outputs(module, obs))) < tolerance()


@pytest.mark.stack("old")
def test_restore_custom_model_with_user_mapping_into_new_stack_algorithm(old_run, new_algo):
    path, obs, want = old_run(False, fcnet_hiddens=[8], post_fcnet_hiddens=[8])
    algo = new_algo(False)
    before = live_weights(algo, "policy_0")

    with pytest.raises(MigrationError, match=r"^policy 'policy_0': cannot map .* \(post_fcnet_hiddens=\[8\]\)"):
        algo.restore(path, policies=["policy_0"])
    assert_weights_equal(live_weights(algo, "policy_0"), before, "policy_0 after the refused restore", ordered=False)

    report = algo.restore(path, policies=["policy_0"], mapping=post_fcnet_mapping())

    assert report.restored == {"policy_0": "policy_0"}
    module = algo.learner_group._learner.module["policy_0"]
    assert max(max_diffs(want["policy_0"], new_outputs(module, obs))) < tolerance()


@pytest.mark.stack("old")
@pytest.mark.parametrize("form", ["method", "plain-dict"])
def test_config_restore_policies_takes_mapping_and_restores_under_the_mapped_id(old_run, ray_session, form):
    """``mapping=`` on the config method (and its plain-dict key), as ``algo.restore`` takes it:
    the custom old-stack model becomes the new-stack module ``hero`` when the algorithm is set up."""
    path, obs, want = old_run(False, fcnet_hiddens=[8], post_fcnet_hiddens=[8])
    config = ppo_config("new", obs_dims=(4, 4), policies={"hero", "policy_1"}, config_cls=PPOPartialConfig)
    config = config.rl_module(model_config={"fcnet_hiddens": list(HIDDENS), "vf_share_layers": False})
    if form == "method":
        with pytest.raises(MigrationError, match=r"^policy 'policy_0' -> 'hero': cannot map"):  # the negative control
            config.copy().restore_policies(path, {"policy_0": "hero"}).build_algo()
        config = config.restore_policies(path, {"policy_0": "hero"}, mapping=post_fcnet_mapping())
    else:
        config = config.update_from_dict({"restore_policies": {
            "checkpoint": path, "policies": {"policy_0": "hero"}, "mapping": post_fcnet_mapping()}})
    algo = config.build_algo()
    try:
        (report,) = algo.partial_restore_reports
        assert report.restored == {"policy_0": "hero"} and report.converted_from.startswith("old-API-stack")
        module = algo.learner_group._learner.module["hero"]
        assert max(max_diffs(want["policy_0"], new_outputs(module, obs))) < tolerance()
    finally:
        algo.stop()


@pytest.mark.stack("old")
def test_restore_new_stack_checkpoint_into_old_stack_algorithm_is_refused(old_run, ray_session, tmp_path):
    from rllib_ext.errors import CheckpointError
    from rllib_ext.live.restore.policies import restore_policies

    path, _, _ = old_run(False)
    migrate(path, tmp_path / "new")
    algo = ppo_config("old", obs_dims=(4, 4), hiddens=HIDDENS, config_cls=PPOPartialConfig).build_algo()
    try:
        before = live_weights(algo, "policy_0")
        with pytest.raises(CheckpointError, match=re.escape(
            f"{tmp_path / 'new'}: a new-API-stack checkpoint cannot be restored into an old-API-stack "
            "algorithm: tensor names differ (conversion only goes old -> new stack)"
        )):
            algo.restore(str(tmp_path / "new"), policies=["policy_0"])
        with pytest.raises(InvalidArgumentError, match=re.escape(
            "mapping= converts old-stack checkpoints for new-stack algorithms; here both are on the old API stack"
        )):
            restore_policies(algo, path, ["policy_0"], mapping={})
        assert_weights_equal(live_weights(algo, "policy_0"), before,
                             "policy_0 after the refused restores", ordered=False)
    finally:
        algo.stop()


@pytest.mark.stack("old")
def test_cli_migrate_writes_a_checkpoint_and_exits_1_on_unsupported(old_run, tmp_path):
    path, _, _ = old_run(True)
    env = dict(os.environ, PYTHONPATH=ROOT)
    cmd = [sys.executable, "-m", "rllib_ext.cli", "migrate", path]

    ok = subprocess.run(cmd + ["--out", str(tmp_path / "new"), "--policies", "policy_1", "--json"],
                        capture_output=True, text=True, timeout=300, env=env, cwd=ROOT)

    assert ok.returncode == 0, ok.stderr[-3000:]
    assert list(json.loads(ok.stdout)["converted"]) == ["policy_1"]
    assert sorted(os.listdir(tmp_path / "new")) == ["class_and_ctor_args.pkl", "metadata.json", "module_state.pkl", "policy_1"]

    bad_path, _, _ = old_run(False, post_fcnet_hiddens=[8])
    bad = subprocess.run(cmd[:-1] + [bad_path, "--out", str(tmp_path / "bad")],
                         capture_output=True, text=True, timeout=300, env=env, cwd=ROOT)

    assert bad.returncode == 1
    last = bad.stderr.strip().splitlines()[-1]  # RLlib may log a deprecation warning first
    assert re.match(r"rllib-ext: error: policy 'policy_\d': cannot map the old-stack model", last), bad.stderr[-2000:]
    assert not (tmp_path / "bad").exists()


# ---------------------------------------------------------------- the mapping alone (numpy only)


def test_migrate_module_imports_no_framework():
    assert_imports_no_framework("import rllib_ext.convert.mapping, rllib_ext.live.restore.migration, rllib_ext.live.seam.backends, rllib_ext.live.restore.policies\n")


@pytest.mark.stack("old")
def test_cli_migrate_dry_run_reports_per_policy_and_writes_nothing(old_run, tmp_path):
    env = dict(os.environ, PYTHONPATH=ROOT)
    good, _, _ = old_run(True)
    bad, _, _ = old_run(False, post_fcnet_hiddens=[8])
    cmd = [sys.executable, "-m", "rllib_ext.cli", "migrate"]

    ok = subprocess.run(cmd + [good, "--dry-run", "--out", str(tmp_path / "new")],
                        capture_output=True, text=True, timeout=300, env=env, cwd=ROOT)
    refused = subprocess.run(cmd + [bad, "--dry-run", "--json"], capture_output=True, text=True, timeout=300, env=env, cwd=ROOT)

    assert ok.returncode == 0, ok.stderr[-3000:]
    fw = framework_for_cell()
    policy = "PPOTF2Policy" if fw == "tf2" else "PPOTorchPolicy"
    assert ok.stdout.splitlines()[:6] == [
        f"dry run: {good} -> {tmp_path / 'new'}; nothing written",
        "",
        "policy_0: supported",
        f"  source:       {fw} {policy}: FullyConnectedNetwork, fcnet_hiddens=[8, 8], fcnet_activation='tanh', vf_share_layers=True",
        "  target:       DefaultPPOTorchRLModule",
        '  model_config: {"fcnet_activation": "tanh", "fcnet_hiddens": [8, 8], "vf_share_layers": true}',
    ]
    assert "  not carried:  optimizer state; exploration state and timesteps" in ok.stdout
    assert not (tmp_path / "new").exists()
    assert refused.returncode == 1, refused.stderr[-3000:]
    doc = json.loads(refused.stdout)
    assert doc["dry_run"] is True and doc["converted"] == {}
    assert doc["policies"]["policy_0"]["supported"] is False
    assert doc["policies"]["policy_0"]["reason"].startswith(
        "policy 'policy_0': cannot map the old-stack model onto the new DefaultPPOTorchRLModule (post_fcnet_hiddens=[8])"
    )
    no_out = subprocess.run(cmd + [good], capture_output=True, text=True, timeout=300, env=env, cwd=ROOT)
    assert no_out.returncode == 2 and "--out NEW_DIR is required (or --dry-run)" in no_out.stderr
