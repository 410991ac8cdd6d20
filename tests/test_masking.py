"""Action masking (issue 35 point 5): what plays is what is judged, on Leduc poker's legal actions only.

A PPO module that masks the illegal actions (``rllib_ext.masking``) on ``OpenSpielGame``
with ``action_mask=True``: training takes no illegal action (the env counts them; the same
run unmasked takes some: the negative control), and the module, its snapshot read by
``NumpyPolicy``, the ONNX export and the table ``exploitability()`` judges give the same
action-distribution inputs for the same raw observations, with no probability on an
illegal action.
"""

from __future__ import annotations

from typing import Any, Dict, List, Tuple

import numpy as np
import pytest

pytest.importorskip("pyspiel")

GAME = "leduc_poker"
COUNT: Dict[str, int] = {}


def _counting_callbacks() -> type:
    from ray.rllib.callbacks.callbacks import RLlibCallback

    class CountIllegal(RLlibCallback):
        """Counts the env's ``illegal_action`` infos (env runners are local: one process)."""

        def on_episode_end(self, *, episode: Any, **kwargs: Any) -> None:
            for agent_episode in episode.agent_episodes.values():
                for info in agent_episode.get_infos():
                    COUNT["moves"] = COUNT.get("moves", 0) + 1
                    COUNT["illegal"] = COUNT.get("illegal", 0) + int(bool(info.get("illegal_action")))

    return CountIllegal


def _algo(mask: bool, information_state: bool = False) -> Any:
    from ray.rllib.core.rl_module.default_model_config import DefaultModelConfig
    from ray.rllib.core.rl_module.rl_module import RLModuleSpec

    from rllib_ext import PPOPartialConfig
    from rllib_ext.envs import OpenSpielGame
    from rllib_ext.masking import MaskedPPOTorchRLModule

    config = PPOPartialConfig()
    if mask:
        config = config.rl_module(rl_module_spec=RLModuleSpec(module_class=MaskedPPOTorchRLModule))
    env_config = {"game": GAME, "illegal_penalty": False, "action_mask": mask, "report_illegal": True,
                  "information_state": information_state}
    return (config.environment(OpenSpielGame, env_config=env_config)
            .env_runners(num_env_runners=0, episodes_to_numpy=False)
            .learners(num_learners=0)
            .training(train_batch_size_per_learner=1000, minibatch_size=250, num_epochs=1)
            .rl_module(model_config=DefaultModelConfig(fcnet_hiddens=[16], vf_share_layers=False))
            .multi_agent(policies={"main"}, policy_mapping_fn=lambda *a, **k: "main")
            .callbacks(_counting_callbacks())
            .debugging(seed=0)
            .build_algo())


def _trained(mask: bool) -> Tuple[Any, Dict[str, int]]:
    COUNT.clear()
    algo = _algo(mask)
    algo.train()
    return algo, dict(COUNT)


@pytest.fixture(scope="module")
def masked(ray_session, tmp_path_factory):
    """A masked PPO trained one iteration on Leduc: (algo, illegal-move counts, checkpoint, snapshot dir)."""
    from rllib_ext import PolicyPool

    algo, counted = _trained(mask=True)
    root = tmp_path_factory.mktemp("masked")
    ckpt = algo.save(str(root / "ckpt")).checkpoint.path
    entry = algo.snapshot_policy("main", PolicyPool(str(root / "pool")))
    yield algo, counted, ckpt, entry.path
    algo.stop()


def _states(n: int = 60) -> List[Any]:
    """Leduc decision states from random play (seeded): a mix of legal-action sets."""
    import pyspiel

    game, rng, out = pyspiel.load_game(GAME), np.random.default_rng(0), []
    while len(out) < n:
        state = game.new_initial_state()
        while not state.is_terminal():
            if state.is_chance_node():
                actions, probs = zip(*state.chance_outcomes())
                state.apply_action(int(rng.choice(actions, p=probs)))
                continue
            out.append(state.clone())
            state.apply_action(int(rng.choice(state.legal_actions())))
    return out[:n]


def _raw(states: List[Any], mask: bool = True) -> Dict[str, np.ndarray]:
    obs = np.array([s.observation_tensor() for s in states], np.float32)
    legal = np.array([s.legal_actions_mask() for s in states], np.float32)
    return {"observations": obs, "action_mask": legal if mask else np.ones_like(legal)}


def _module_logits(algo: Any, raw: Dict[str, np.ndarray]) -> np.ndarray:
    import torch
    from ray.rllib.core.columns import Columns

    module = algo.get_module("main")
    with torch.no_grad():
        out = module.forward_inference({Columns.OBS: {k: torch.as_tensor(v) for k, v in raw.items()}})
    return out[Columns.ACTION_DIST_INPUTS].numpy()


def _same_policy(a: np.ndarray, b: np.ndarray, legal: np.ndarray) -> bool:
    """Equal logits on the legal actions, and both at FLOAT_MIN on the illegal ones."""
    on = legal > 0
    return bool(np.allclose(a[on], b[on], atol=1e-5) and (a[~on] < -1e38).all() and (b[~on] < -1e38).all())


def test_the_env_flags_an_illegal_action():
    """Leduc allows two raises a round: a third raise is illegal, and the env says so."""
    from rllib_ext.envs import OpenSpielGame

    env = OpenSpielGame({"game": GAME, "illegal_penalty": False, "action_mask": True})
    obs, _ = env.reset(seed=0)
    flags = []
    for _ in range(3):
        (player,) = obs
        assert set(obs[player]) == {"observations", "action_mask"}
        legal = obs[player]["action_mask"]
        obs, _, _, _, infos = env.step({player: 2})
        flags.append((bool(legal[2]), infos[player]["illegal_action"]))
    assert flags == [(True, False), (True, False), (False, True)]


def test_a_masked_policy_never_takes_an_illegal_action(masked, ray_session):
    """1000 env steps of training, masked: no illegal action; the same run unmasked (the
    negative control) takes some, so the count can see them."""
    _, counted, _, _ = masked
    assert counted["moves"] > 500 and counted["illegal"] == 0, counted
    algo, unmasked = _trained(mask=False)
    algo.stop()
    assert unmasked["illegal"] > 0, unmasked


def test_numpy_policy_and_onnx_act_as_the_masked_module(masked):
    """The same raw observations (and legal-action masks) into the module, its checkpoint
    and its pool snapshot read by NumpyPolicy, and the ONNX export: the same
    action-distribution inputs. Negative control: a mask of all ones gives NumpyPolicy
    different inputs, which the comparison catches."""
    from rllib_ext import NumpyPolicy

    algo, _, ckpt, snapshot = masked
    raw = _raw(_states())
    legal = raw["action_mask"]
    assert (legal == 0).any()  # some states forbid an action
    expected = _module_logits(algo, raw)
    for source in (ckpt, snapshot):
        policy = NumpyPolicy.from_checkpoint(source, "main" if source == ckpt else None)
        assert policy.masked
        assert _same_policy(policy.forward(raw).action_dist_inputs, expected, legal)
        greedy, _ = policy.compute_actions(raw)
        assert legal[np.arange(len(greedy)), greedy].all()
    unmasked_input = policy.forward(_raw(_states(), mask=False)).action_dist_inputs
    assert not _same_policy(unmasked_input, expected, legal)

    ort = pytest.importorskip("onnxruntime")
    pytest.importorskip("onnxscript")
    from rllib_ext import export_onnx

    session = ort.InferenceSession(export_onnx(policy, str(ckpt) + ".onnx"))
    assert [i.name for i in session.get_inputs()] == ["obs", "action_mask"]
    dist, greedy = session.run(["action_dist_inputs", "greedy_action"],
                               {"obs": raw["observations"], "action_mask": legal})[:2]
    assert _same_policy(dist, expected, legal)
    assert legal[np.arange(len(greedy)), greedy].all()


def test_exploitability_judges_the_masked_policy_as_it_plays(masked):
    """The table OpenSpiel judges holds, at every Leduc decision, the module's softmax over
    the legal actions and exactly 0 on the illegal ones."""
    import pyspiel

    from rllib_ext import NumpyPolicy, exploitability
    from rllib_ext.act.openspiel import tabular_policy

    algo, _, ckpt, _ = masked
    policy = NumpyPolicy.from_checkpoint(ckpt, "main")
    table = tabular_policy(pyspiel.load_game(GAME), policy)
    legal = np.array([s.legal_actions_mask() for s in table.states], np.float32)
    probs = table.action_probability_array
    assert (probs[legal == 0] == 0).all() and np.allclose(probs.sum(axis=1), 1.0)
    logits = _module_logits(algo, _raw(table.states[:50]))
    softmax = np.exp(logits - logits.max(axis=1, keepdims=True))
    assert np.allclose(probs[:50], softmax / softmax.sum(axis=1, keepdims=True), atol=1e-5)
    assert 0.0 < exploitability(GAME, {policy: 1.0}) < 5.0


def _twins(game: Any) -> Tuple[Any, Any]:
    """Two Leduc decisions with one observation tensor but two information states (and legal actions)."""
    seen: Dict[Tuple[float, ...], Any] = {}
    for state in _states(400):
        key = tuple(state.observation_tensor()) + tuple(state.legal_actions_mask())
        other = seen.setdefault(key, state)
        if other.information_state_string() != state.information_state_string():
            return other, state
    raise AssertionError("no two Leduc decisions share an observation")


def test_an_information_state_policy_is_judged_on_what_it_reads(masked, tmp_path):
    """OpenSpielGame(information_state=True) observes the information-state tensor, and the
    referee feeds a policy trained on it the same: its table equals the module's softmax on
    those tensors, and it tells apart two decisions that share one observation tensor. The
    observation-tensor policy (the negative control) cannot: it plays both alike."""
    import pyspiel

    from rllib_ext import InvalidArgumentError, NumpyPolicy
    from rllib_ext.act.openspiel import tabular_policy
    from rllib_ext.envs import OpenSpielGame

    game = pyspiel.load_game(GAME)
    env = OpenSpielGame({"game": GAME, "action_mask": True, "information_state": True})
    obs, _ = env.reset(seed=3)
    (player, first), = obs.items()
    assert np.array_equal(first["observations"], env.state.information_state_tensor(player))
    assert env.observation_space[player]["observations"].shape == (game.information_state_tensor_size(),)

    algo = _algo(mask=True, information_state=True)
    algo.train()
    ckpt = algo.save(str(tmp_path / "info")).checkpoint.path
    info_policy = NumpyPolicy.from_checkpoint(ckpt, "main")
    table = tabular_policy(game, info_policy)
    raw = {"observations": np.array([s.information_state_tensor() for s in table.states[:50]], np.float32),
           "action_mask": np.array([s.legal_actions_mask() for s in table.states[:50]], np.float32)}
    logits = _module_logits(algo, raw)
    algo.stop()
    softmax = np.exp(logits - logits.max(axis=1, keepdims=True))
    assert np.allclose(table.action_probability_array[:50], softmax / softmax.sum(axis=1, keepdims=True), atol=1e-5)

    a, b = _twins(game)
    rows = [table.state_lookup[s.information_state_string()] for s in (a, b)]
    assert not np.allclose(*table.action_probability_array[rows], atol=1e-6)
    obs_table = tabular_policy(game, NumpyPolicy.from_checkpoint(masked[2], "main"))
    assert np.allclose(*obs_table.action_probability_array[rows], atol=1e-7)

    with pytest.raises(InvalidArgumentError, match=r"reads 30 numbers, but kuhn_poker\(\) gives 7 \(observation_tensor\)"):
        tabular_policy(pyspiel.load_game("kuhn_poker"), info_policy)


def test_a_masked_module_needs_the_masked_observation_space():
    """Built on a plain Box, the module says what it needs (the env option that gives it)."""
    import gymnasium as gym

    from rllib_ext import InvalidArgumentError
    from rllib_ext.masking import MaskedPPOTorchRLModule

    with pytest.raises(InvalidArgumentError, match="action_mask=True"):
        MaskedPPOTorchRLModule(observation_space=gym.spaces.Box(-1, 1, (4,)), action_space=gym.spaces.Discrete(3))
