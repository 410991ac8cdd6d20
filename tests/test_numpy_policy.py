"""NumpyPolicy acts as RLlib's own forward pass does, with numpy alone.

Two sources of truth: (1) RLlib's default models built directly (new stack:
``DefaultPPOTorchRLModule``, old stack: the algorithm's default policy class), saved as
RLlib saves them, and asked for ``forward_inference``/``compute_values`` or
``compute_actions`` on 1,000 observations, LSTMs on 16 sequences of 20 steps with the state
carried; (2) a PPO run trained with a MeanStdFilter, whose env runner filters raw
observations and acts (``builders.rllib_dist_inputs``). Action-distribution inputs must
agree within 1e-5; the negative control (filter dropped) must differ by more than 1e-3.
"""

from __future__ import annotations

import numpy as np
import pytest

from builders import ACT_OBS, STACKS, assert_imports_no_framework, framework_for_cell, gap

import gymnasium as gym

from rllib_ext import NumpyPolicy, PolicyNotFoundError, UnsupportedModelError
from rllib_ext.checkpoint.views import PolicyView, SpaceView
from rllib_ext.act.numpy_policy import build_network

TOL = 1e-5
NEGATIVE = 1e-3
OBS_SPACE = gym.spaces.Box(-1.0, 1.0, (4,), np.float32)
DISCRETE = gym.spaces.Discrete(3)
BOX = gym.spaces.Box(-1.0, 1.0, (2,), np.float32)
RAW = np.random.default_rng(3).normal(0.0, 2.0, size=(1000, 4)).astype(np.float32)
SEQS = np.random.default_rng(4).normal(0.0, 2.0, size=(16, 20, 4)).astype(np.float32)

# name: (action space, model config); "clip" models get log-std biases above the ±20 clip.
NEW_MODELS = {
    "mlp-shared-tanh": (DISCRETE, {"fcnet_hiddens": [8, 8]}),
    "mlp-separate-relu-box-clip": (BOX, {"fcnet_hiddens": [8, 8], "fcnet_activation": "relu", "vf_share_layers": False}),
    "mlp-swish-head-tanh": (DISCRETE, {"fcnet_hiddens": [8], "fcnet_activation": "swish",
                                       "head_fcnet_hiddens": [8], "head_fcnet_activation": "tanh"}),
    "mlp-elu-head-relu-box": (BOX, {"fcnet_hiddens": [8, 8], "fcnet_activation": "elu", "head_fcnet_hiddens": [8]}),
    "lstm-shared": (DISCRETE, {"fcnet_hiddens": [8], "use_lstm": True, "lstm_cell_size": 8}),
    "lstm-separate-box": (BOX, {"fcnet_hiddens": [8], "use_lstm": True, "lstm_cell_size": 8, "vf_share_layers": False}),
}
OLD_MODELS = {
    "fc-separate-tanh": (DISCRETE, {"fcnet_hiddens": [8, 8], "vf_share_layers": False}),
    "fc-shared-relu-box": (BOX, {"fcnet_hiddens": [8, 8], "fcnet_activation": "relu", "vf_share_layers": True}),
    "fc-swish": (DISCRETE, {"fcnet_hiddens": [8], "fcnet_activation": "swish", "vf_share_layers": False}),
    "fc-elu-box": (BOX, {"fcnet_hiddens": [8, 8], "fcnet_activation": "elu", "vf_share_layers": False}),
}


def new_module(name: str):
    import torch
    from ray.rllib.algorithms.ppo.torch.default_ppo_torch_rl_module import DefaultPPOTorchRLModule

    act, mc = NEW_MODELS[name]
    torch.manual_seed(0)
    module = DefaultPPOTorchRLModule(observation_space=OBS_SPACE, action_space=act, inference_only=False, model_config=mc)
    if name.endswith("-clip"):  # push every log-std past the clip, so clipping is what is tested
        with torch.no_grad():
            module.pi.net.mlp[-1].bias[act.shape[0]:] += 25.0
    module.eval()
    return module


def old_policy(name: str, model=None):
    from ray.rllib.algorithms.ppo import PPO, PPOConfig

    act, mc = OLD_MODELS[name] if name else (DISCRETE, model)
    cfg = (
        PPOConfig()
        .api_stack(enable_rl_module_and_learner=False, enable_env_runner_and_connector_v2=False)
        .framework(framework_for_cell())
        .training(model=mc)
        .debugging(seed=0)
    )
    return PPO.get_default_policy_class(cfg)(OBS_SPACE, act, cfg.to_dict())


def new_reference(module, obs, state=None):
    """(dist inputs, values, state out) from the module itself (obs [B, D] or [B, T, D])."""
    import torch

    batch = {"obs": torch.as_tensor(obs)}
    if state is not None:
        batch["state_in"] = state
    with torch.no_grad():
        out = module.forward_inference(batch)
        values = module.compute_values(batch)
    tree = torch.utils._pytree
    state_out = out.get("state_out")
    return (out["action_dist_inputs"].numpy(), values.numpy(),
            None if state_out is None else tree.tree_map(lambda s: s.numpy(), state_out))


@pytest.mark.stack("new")
@pytest.mark.parametrize("name", [n for n in NEW_MODELS if n.startswith("mlp")])
def test_new_stack_mlp_equals_forward_inference(tmp_path, name):
    module = new_module(name)
    module.save_to_path(str(tmp_path))
    want_dist, want_values, _ = new_reference(module, RAW)
    policy = NumpyPolicy.from_checkpoint(str(tmp_path))
    out = policy.forward(RAW)
    assert gap(out.action_dist_inputs, want_dist) <= TOL
    assert gap(out.values, want_values) <= TOL
    assert out.state_out is None and not policy.recurrent
    if name.endswith("-clip"):
        assert np.all(out.action_dist_inputs[:, 2:] == 20.0)


@pytest.mark.stack("new")
@pytest.mark.parametrize("name", [n for n in NEW_MODELS if n.startswith("lstm")])
def test_new_stack_lstm_equals_forward_inference_over_sequences(tmp_path, name):
    import torch

    module = new_module(name)
    module.save_to_path(str(tmp_path))
    init = torch.utils._pytree.tree_map(lambda s: s[None].repeat(16, 1, 1), module.get_initial_state())
    want_dist, want_values, want_state = new_reference(module, SEQS, init)
    policy = NumpyPolicy.from_checkpoint(str(tmp_path))
    state, dists, values = policy.initial_state(16), [], []
    for t in range(SEQS.shape[1]):
        out = policy.forward(SEQS[:, t], state)
        dists.append(out.action_dist_inputs)
        values.append(out.values)
        state = out.state_out
    assert gap(np.stack(dists, 1), want_dist) <= TOL
    assert gap(np.stack(values, 1), want_values) <= TOL
    flat_want = torch.utils._pytree.tree_leaves(want_state)
    flat_got = torch.utils._pytree.tree_leaves(state)
    assert len(flat_want) == len(flat_got) == (2 if "shared" in name else 4)
    for w, g in zip(flat_want, flat_got):
        assert gap(w[:, 0], g) <= TOL  # RLlib's state is [B, num_layers=1, cell]
    # Negative control: the state matters (a reset state gives other outputs).
    assert gap(policy.forward(SEQS[:, -1]).action_dist_inputs, np.stack(dists, 1)[:, -1]) > NEGATIVE


@pytest.mark.parametrize("stack", ["old"])
@pytest.mark.parametrize("name", list(OLD_MODELS))
def test_old_stack_fcnet_equals_compute_actions(tmp_path, stack, name):
    policy = old_policy(name)
    _, _, info = policy.compute_actions(RAW, explore=False)
    policy.export_checkpoint(str(tmp_path))
    mine = NumpyPolicy.from_checkpoint(str(tmp_path))
    out = mine.forward(RAW)
    assert gap(out.action_dist_inputs, info["action_dist_inputs"]) <= TOL
    assert gap(out.values, info["vf_preds"]) <= TOL


@pytest.mark.stack("new")
def test_actions_greedy_and_seeded_samples(tmp_path):
    new_module("mlp-shared-tanh").save_to_path(str(tmp_path))
    policy = NumpyPolicy.from_checkpoint(str(tmp_path))
    out = policy.forward(RAW)
    greedy, _ = policy.compute_actions(RAW)
    np.testing.assert_array_equal(greedy, np.argmax(out.action_dist_inputs, axis=-1))
    a, _ = policy.compute_actions(RAW, explore=True, rng=np.random.default_rng(5))
    b, _ = policy.compute_actions(RAW, explore=True, rng=np.random.default_rng(5))
    np.testing.assert_array_equal(a, b)
    assert set(np.unique(a)) <= {0, 1, 2} and not np.array_equal(a, greedy)
    # Sample frequencies follow the softmax (one observation repeated 20,000 times).
    logits = out.action_dist_inputs[0]
    draws, _ = policy.compute_actions(np.repeat(RAW[:1], 20000, 0), explore=True, rng=np.random.default_rng(6))
    probs = np.exp(logits - logits.max()) / np.exp(logits - logits.max()).sum()
    assert gap(np.bincount(draws, minlength=3) / 20000, probs) < 0.02
    assert policy.compute_action(RAW[0]) == greedy[0]


# ---------------------------------------------------------------- trained with a MeanStdFilter


@pytest.mark.slow
@pytest.mark.parametrize("stack", STACKS)
def test_filtered_policy_equals_the_source_run(acting_source, stack):
    path, ref = acting_source(stack)
    for pid in ("policy_0", "policy_2"):
        policy = NumpyPolicy.from_checkpoint(path, pid)
        assert policy.obs_filter is not None and policy.obs_filter.count >= 200
        assert gap(policy.forward(ACT_OBS).action_dist_inputs, ref[pid]) <= TOL, pid
        np.testing.assert_array_equal(policy.compute_actions(ACT_OBS)[0], np.argmax(ref[pid], axis=-1))
    # Negative control: the same weights without the filter act differently.
    raw = NumpyPolicy.from_checkpoint(path, "policy_2", filters=False)
    assert raw.obs_filter is None
    assert gap(raw.forward(ACT_OBS).action_dist_inputs, ref["policy_2"]) > NEGATIVE


@pytest.mark.slow
@pytest.mark.stack("new")
def test_new_stack_filter_is_the_agents(acting_source):
    path, ref = acting_source("new")
    explicit = NumpyPolicy.from_checkpoint(path, "policy_1", agent_id="agent_1")
    assert gap(explicit.forward(ACT_OBS).action_dist_inputs, ref["policy_1"]) <= TOL
    with pytest.raises(PolicyNotFoundError, match=r"agent 'agent_9' not in .*available: agent_0, agent_1, agent_2"):
        NumpyPolicy.from_checkpoint(path, "policy_1", agent_id="agent_9")


@pytest.mark.slow
@pytest.mark.stack("new")
def test_new_stack_ambiguous_agents_raise_without_the_mapping_fn(acting_source):
    """In a process that has not imported the mapping function, whose filter is unknown."""
    path, _ = acting_source("new")
    code = (
        "import rllib_ext\n"
        "try:\n"
        f"    rllib_ext.NumpyPolicy.from_checkpoint({path!r}, 'policy_1')\n"
        "except rllib_ext.CheckpointError as e:\n"
        "    print('ERROR', e)\n"
        f"p = rllib_ext.NumpyPolicy.from_checkpoint({path!r}, 'policy_1', agent_id='agent_1')\n"
        "import numpy as np\n"
        "print('ACTION', p.compute_action(np.full(4, 5.0, np.float32)))\n"
    )
    res = assert_imports_no_framework(code, extra=("gymnasium",))
    assert "agents agent_0, agent_1, agent_2 each have their own observation filter" in res.stdout
    assert "pass agent_id=" in res.stdout and "ACTION" in res.stdout


# ---------------------------------------------------------------- refusals, imports


@pytest.mark.stack("new")
def test_layernorm_is_refused_naming_the_option(tmp_path):
    import torch
    from ray.rllib.algorithms.ppo.torch.default_ppo_torch_rl_module import DefaultPPOTorchRLModule

    torch.manual_seed(0)
    DefaultPPOTorchRLModule(observation_space=OBS_SPACE, action_space=DISCRETE, inference_only=False,
                            model_config={"fcnet_hiddens": [8], "fcnet_use_layernorm": True}).save_to_path(str(tmp_path))
    with pytest.raises(UnsupportedModelError, match=r"model option fcnet_use_layernorm=True is not supported"):
        NumpyPolicy.from_checkpoint(str(tmp_path))


@pytest.mark.parametrize("stack", ["old"])
def test_old_stack_lstm_is_refused_naming_the_option(tmp_path, stack):
    old_policy("", {"fcnet_hiddens": [8], "use_lstm": True, "lstm_cell_size": 8}).export_checkpoint(str(tmp_path))
    with pytest.raises(UnsupportedModelError, match=r"model option use_lstm=True is not supported by NumpyPolicy"):
        NumpyPolicy.from_checkpoint(str(tmp_path))


def test_dict_observations_are_refused():
    obs = SpaceView("Dict", spaces={"a": SpaceView("Box", (4,), "float32", -1.0, 1.0)})
    view = PolicyView("p", obs, SpaceView("Discrete", (), "int64", n=2), {}, 0, 0, "DefaultPPOTorchRLModule", {})
    with pytest.raises(UnsupportedModelError, match=r"policy 'p': observation space Dict\('a': .*only 1-D Box observations"):
        build_network("policy 'p'", "new", view, {})


@pytest.mark.stack("new")
def test_unknown_tensors_are_refused_naming_them(tmp_path):
    from rllib_ext import read_weights, write_policy_dir
    from rllib_ext.checkpoint.policy_file import read_policy_dir

    new_module("mlp-shared-tanh").save_to_path(str(tmp_path / "m"))
    NumpyPolicy.from_checkpoint(str(tmp_path / "m"))
    weights = dict(read_weights(str(tmp_path / "m")), **{"extra.net.weight": np.zeros((2, 2), np.float32)})
    meta = {"stack": "new", "framework": "torch", "model_config": {"fcnet_hiddens": [8, 8]},
            "observation_space": SpaceView("Box", (4,), "float32", -1.0, 1.0).to_dict(),
            "action_space": SpaceView("Discrete", (), "int64", n=3).to_dict(),
            "policy_class": "ray.rllib.algorithms.ppo.torch.default_ppo_torch_rl_module.DefaultPPOTorchRLModule"}
    write_policy_dir(str(tmp_path / "p"), "hero", weights, meta)
    read_policy_dir(str(tmp_path / "p"))
    with pytest.raises(UnsupportedModelError, match=r"tensor\(s\) extra.net.weight belong to layers NumpyPolicy does not compute"):
        NumpyPolicy.from_checkpoint(str(tmp_path / "p"))


@pytest.mark.stack("new")
def test_acting_imports_no_framework(tmp_path):
    new_module("lstm-separate-box").save_to_path(str(tmp_path))
    code = (
        "import numpy as np\n"
        "from rllib_ext import NumpyPolicy\n"
        f"p = NumpyPolicy.from_checkpoint({str(tmp_path)!r})\n"
        "s = p.initial_state(2)\n"
        "a, s = p.compute_actions(np.zeros((2, 4), np.float32), s, explore=True, rng=np.random.default_rng(0))\n"
        "print(a.shape, sorted(s))\n"
    )
    res = assert_imports_no_framework(code, extra=("gymnasium", "onnx", "onnxruntime"))
    assert "(2, 2) ['actor', 'critic']" in res.stdout
