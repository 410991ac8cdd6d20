"""A restored policy trains as its source would: optimizer state, KL coefficient and SAC's
alpha travel with it (``training_state=True``), and the ``...Partial`` algorithms' own
resume keeps KL coefficient and alpha, which plain RLlib 2.60 loses.

The proof is the next step: source and restored target each do one learner update of the
policy on the *same* batch (one minibatch); weights, KL coefficient and alpha after it
agree within 1e-6, and without the training state they differ by more than 1e-3.
"""

from __future__ import annotations

import re

import numpy as np
import pytest

from builders import fixed_batch, framework_for_cell, gap, one_update, ray_release, train_config

from rllib_ext.checkpoint.training_state import OptimizerState, TrainingState, check_training_state
from rllib_ext.errors import MissingTrainingStateError, TrainingStateError

TOL, APART = 1e-6, 1e-3
# DQN's default lr (5e-4) bounds a fresh Adam's first step near 1e-3 (0.99e-3 measured on
# Ray 2.45): a larger lr keeps the negative control clear of APART.
LR = {"DQN": 3e-3}


def moved(algo, pid: str, name: str) -> None:
    """The state under test has left its initial value (else the proof proves nothing)."""
    from rllib_ext.live.seam.backends import backend_for

    ts = backend_for(algo).training_states([pid])[pid]
    assert ts.optimizers and all(o.step for o in ts.optimizers.values()), ts.describe()
    if name in ("PPO", "APPO"):
        assert ts.kl_coeff is not None and abs(ts.kl_coeff - 0.2) > 1e-3, ts.describe()
    if name == "SAC" and ts.stack == "new":
        assert ts.log_alpha is not None and abs(ts.log_alpha) > 1e-4, ts.describe()


def trained(name: str, stack: str, iters: int = 2, **kw):
    algo = train_config(name, stack, **kw).build_algo()
    for _ in range(iters):
        algo.train()
    return algo


def flat(scalars) -> dict:
    """``{(module, name): value}`` of algorithm_scalars() (pytest.approx takes flat dicts)."""
    return {(m, k): v for m, entry in scalars.items() for k, v in entry.items()}


# ---------------------------------------------------------------- Ray-free: the data and its checks


def _opt(shapes, kind="Adam", step=3):
    bufs = {i: {"step": np.array(float(step), np.float32), "exp_avg": np.ones(s, np.float32),
                "exp_avg_sq": np.ones(s, np.float32)} for i, s in enumerate(shapes)}
    return OptimizerState(kind, bufs, [tuple(s) for s in shapes], {"lr": 1e-3, "betas": [0.9, 0.999]})


def test_check_training_state_names_what_is_missing():
    target = TrainingState("new", {"default_optimizer": _opt([(8, 4)], step=0)}, kl_coeff=0.2)
    source = TrainingState("new", {"default_optimizer": _opt([(8, 4)])})
    with pytest.raises(MissingTrainingStateError, match=re.escape(
        "policy 'p0' -> 'hero': ckpt/x has no KL coefficient (plain RLlib 2.60 does not save it; the ...Partial "
        "algorithms do) (the algorithm has)"
    )):
        check_training_state("policy 'p0' -> 'hero'", source, target, "ckpt/x")


@pytest.mark.parametrize(
    "source,message",
    [
        ({"default_optimizer": _opt([(8, 4)], kind="SGD")}, "optimizer 'default_optimizer' is SGD in ckpt/x but Adam in the algorithm"),
        ({"default_optimizer": _opt([(8, 4), (8,)])}, "optimizer 'default_optimizer' updates 2 parameters in ckpt/x but 1 in the algorithm"),
        ({"default_optimizer": _opt([(8, 6)])}, "optimizer 'default_optimizer' parameter 0 is (8, 6) in ckpt/x but (8, 4) in the algorithm"),
        ({"default_optimizer": _opt([(8, 4)]), "qf": _opt([(2,)])}, "optimizers are default_optimizer, qf in ckpt/x but default_optimizer in the algorithm"),
    ],
    ids=["kind", "count", "shape", "optimizers"],
)
def test_check_training_state_refuses_other_optimizers(source, message):
    target = TrainingState("new", {"default_optimizer": _opt([(8, 4)], step=0)})
    with pytest.raises(TrainingStateError, match="^" + re.escape(f"policy 'p0': {message}") + "$"):
        check_training_state("policy 'p0'", TrainingState("new", source), target, "ckpt/x")


def test_a_state_that_is_not_plain_data_is_named_where_it_is():
    """The merge refuses such a state: its message says what and where (Ray 2.45 pickles
    torch tensors in the metrics logger); deques (metrics windows) are plain data."""
    import collections

    from rllib_ext.merge.training import first_foreign, plain_data

    state = {"optimizer": {"m_default_optimizer": {"state": {0: np.zeros(2)}}},
             "metrics": {"kl": collections.deque([0.1], maxlen=1), "ok": (1, "a", None)}}
    assert plain_data(state) and first_foreign(state) == ""
    state["metrics"]["bad"] = [1.0, complex(1, 2)]
    assert first_foreign(state) == "(1+2j) at ['metrics']['bad'][1]" and not plain_data(state)


def test_tf_keras_optimizer_variables_are_read_in_safe_mode(monkeypatch):
    """tf-keras pickles ``optimizer.variables()`` as a ``CallableList`` (a list subclass) of
    ``functools.partial(ResourceVariable, initial_value=...)()``: safe mode builds neither,
    yet the values are read (stand-ins under the real module names, no TensorFlow)."""
    import functools
    import pickle
    import sys
    import types

    from rllib_ext.checkpoint.codecs.safe_pickle import loads
    from rllib_ext.checkpoint.training_state import training_state_of_policy_state

    for name in ("tf_keras", "tf_keras.src", "tf_keras.src.optimizers", "tf_keras.src.optimizers.optimizer", "tf_rv"):
        if name not in sys.modules:  # pickle imports a class's module by name
            monkeypatch.setitem(sys.modules, name, types.ModuleType(name))
    opt_mod, var_mod = sys.modules["tf_keras.src.optimizers.optimizer"], sys.modules["tf_rv"]
    CallableList = type("CallableList", (list,), {"__module__": opt_mod.__name__})
    ResourceVariable = type("ResourceVariable", (), {"__module__": var_mod.__name__})
    Var = type("Var", (), {"__init__": lambda self, v: setattr(self, "v", v),
                           "__reduce__": lambda self: (functools.partial(ResourceVariable, initial_value=self.v), ())})
    monkeypatch.setattr(opt_mod, "CallableList", CallableList, raising=False)
    monkeypatch.setattr(var_mod, "ResourceVariable", ResourceVariable, raising=False)
    values = [np.int64(7), np.full((2, 3), 0.5, np.float32), np.ones(3, np.float32)]
    state = loads(pickle.dumps({"_optimizer_variables": CallableList(Var(v) for v in values)}))
    ts = training_state_of_policy_state(state, "policy_state.pkl")
    opt = ts.optimizers["0"]
    assert opt.kind == "keras" and opt.step == 7 and opt.param_shapes == [(), (2, 3), (3,)]
    assert all(np.array_equal(opt.buffers[i]["value"], v) for i, v in enumerate(values))


def test_policy_file_1_2_round_trips_training_state_and_1_1_still_reads(tmp_path):
    from builders import sample_weights

    from rllib_ext.checkpoint import inspect, read_policy_dir, write_policy_dir
    from rllib_ext.checkpoint.reader import open_checkpoint
    from rllib_ext.checkpoint.training_state import read_training_state

    ts = TrainingState("new", {"qf": _opt([(8, 4), (8,)], step=7), "alpha": _opt([(1,)], step=7)},
                       kl_coeff=None, log_alpha=-0.25)
    path = write_policy_dir(tmp_path / "p", "p0", sample_weights(), {"stack": "new"}, ts.to_json())
    meta, _ = read_policy_dir(path)
    assert meta["format_version"] == "1.2" and meta["training_state"]["log_alpha"] == -0.25
    back = read_training_state(*open_checkpoint(path), None)
    assert back.to_json()[0]["optimizers"] == ts.to_json()[0]["optimizers"]
    for name, opt in ts.optimizers.items():
        for i, bufs in opt.buffers.items():
            for k, v in bufs.items():
                np.testing.assert_array_equal(back.optimizers[name].buffers[i][k], v)
    assert back.log_alpha == -0.25 and back.optimizers["qf"].step == 7
    assert inspect(path).policies["p0"].training_state == "Adam x2 (step 7); alpha 0.778801"

    plain = write_policy_dir(tmp_path / "w", "p0", sample_weights(), {"stack": "new"})
    assert read_policy_dir(plain)[0]["format_version"] == "1.1"
    assert inspect(plain).policies["p0"].training_state is None
    with pytest.raises(MissingTrainingStateError, match=re.escape(
        "single-policy file (format 1.1) holds weights only, no training state (optimizer state, KL coefficient, "
        "alpha); write it with save_policy(..., training_state=True)"
    )):
        read_training_state(*open_checkpoint(plain), None)


def test_policy_file_training_tensors_are_checked(tmp_path):
    from builders import sample_weights

    from rllib_ext.checkpoint import write_policy_dir
    from rllib_ext.checkpoint.reader import open_checkpoint
    from rllib_ext.checkpoint.training_state import read_training_state
    from rllib_ext.errors import CheckpointFormatError

    path = write_policy_dir(tmp_path / "p", "p0", sample_weights(), {"stack": "new"},
                            TrainingState("new", {"default_optimizer": _opt([(8, 4)])}).to_json())
    f = tmp_path / "p" / "training_state.safetensors"
    data = bytearray(f.read_bytes())
    data[-1] ^= 1
    f.write_bytes(bytes(data))
    with pytest.raises(CheckpointFormatError, match="training_state.safetensors: contents do not match the sha256"):
        read_training_state(*open_checkpoint(path), None)


# ---------------------------------------------------------------- RLlib's own resume (new stack)


# Ray 2.45 (torch-ray245 cell): its new-stack SAC builds Box-only heads (AssertionError:
# Discrete(2) in SACCatalog.build_pi_head), so SAC on SignGame cannot be built there.
_SAC_NEW_245 = pytest.mark.skipif(ray_release() < (2, 46), reason="Ray 2.45's new-stack SAC has no Discrete actions")
# Ray 2.45's own resume (Algorithm.from_checkpoint) does not continue a PPO learner exactly:
# weights, optimizer buffers and KL coefficient are equal after it, the next update is not
# (measured gap 1.8e-3; the cause is inside RLlib 2.45, not found). The partial restore into
# a new algorithm is exact there (test_restore_with_training_state_continues_exactly[PPO-new]).
_RESUME_245 = pytest.mark.xfail(ray_release() < (2, 46), strict=True, raises=AssertionError,
                                reason="Ray 2.45's own resume is inexact for the next update")


@pytest.mark.slow
@pytest.mark.stack("new")
@pytest.mark.parametrize("name", [pytest.param("PPO", marks=_RESUME_245), "APPO",
                                  pytest.param("SAC", marks=_SAC_NEW_245)])
def test_partial_resume_keeps_kl_coeff_and_alpha(ray_session, tmp_path, name):
    """PPOPartial/APPOPartial/SACPartial: save, Algorithm.from_checkpoint, then the next update is the same."""
    import rllib_ext

    src = trained(name, "new", iters=2 if name != "APPO" else 4)
    try:
        if name != "APPO":  # APPO's learner trains asynchronously: the KL coeff may move later
            moved(src, "policy_0", name)
        src.save(str(tmp_path))
        restored = getattr(rllib_ext, f"{name}Partial").from_checkpoint(str(tmp_path))
        try:
            if name == "APPO":  # asynchronous learner: compare the saved scalars, not a next update
                from rllib_ext.checkpoint.codecs.safe_pickle import load
                from rllib_ext.checkpoint.training_state import SCALARS_KEY
                from rllib_ext.live.seam.carry_training import algorithm_scalars

                # What the checkpoint holds: the learner thread may move the live ones after save().
                with open(tmp_path / "algorithm_state.pkl", "rb") as f:
                    want = flat(load(f)[SCALARS_KEY])
                assert any(abs(v - 1.0) > 1e-3 for v in want.values()), want  # moved from APPO's kl_coeff=1.0
                assert flat(algorithm_scalars(restored)) == pytest.approx(want, abs=TOL)
                return
            batch = fixed_batch(name)
            want, got = one_update(src, "policy_0", batch), one_update(restored, "policy_0", batch)
            assert gap(want, got) < TOL
        finally:
            restored.stop()
    finally:
        src.stop()


@pytest.mark.slow
@pytest.mark.stack("new")
@pytest.mark.xfail(strict=True, raises=AssertionError,
                   reason="RLlib 2.60's Learner.get_state() saves neither curr_kl_coeffs_per_module nor curr_log_alpha")
@pytest.mark.parametrize("name", ["PPO", pytest.param("SAC", marks=_SAC_NEW_245)])
def test_plain_rllib_resume_loses_kl_coeff_and_alpha(ray_session, tmp_path, name):
    from ray.rllib.algorithms.registry import ALGORITHMS

    from rllib_ext.live.seam.carry_training import algorithm_scalars

    algo_cls, _ = ALGORITHMS[name]()
    src = trained(name, "new", config_cls=type(algo_cls.get_default_config()))  # plain RLlib class
    try:
        assert type(src) is algo_cls
        moved(src, "policy_0", name)
        want = algorithm_scalars(src)
        src.save(str(tmp_path))
        restored = algo_cls.from_checkpoint(str(tmp_path))
        try:
            got = algorithm_scalars(restored)
        finally:
            restored.stop()
    finally:
        src.stop()
    assert flat(got) == pytest.approx(flat(want), abs=TOL)


# ---------------------------------------------------------------- restore(policies=, training_state=True)

_OLD_DQN_BROKEN = pytest.mark.xfail(
    strict=True, raises=TypeError,
    reason="RLlib 2.60 cannot build old-stack DQN (see tests/test_algorithms.py)",
)
_TF2_SAC_BROKEN = pytest.mark.xfail(
    framework_for_cell() == "tf2", strict=True, raises=ValueError,
    reason="RLlib 2.60 cannot build old-stack tf2 SAC (see tests/test_algorithms.py)",
)
CELLS = [("PPO", "new"), pytest.param("SAC", "new", marks=_SAC_NEW_245), ("DQN", "new"), ("PPO", "old"),
         pytest.param("SAC", "old", marks=_TF2_SAC_BROKEN), pytest.param("DQN", "old", marks=_OLD_DQN_BROKEN)]


@pytest.mark.slow
@pytest.mark.parametrize("name,stack", CELLS)
def test_restore_with_training_state_continues_exactly(ray_session, tmp_path, name, stack):
    """Source trained until its state moved; a fresh algorithm with other policies takes
    policy_0 as 'hero' with training_state=True: the next update is the same. Negative
    control: training_state=False."""
    batch = fixed_batch(name)
    src = trained(name, stack, **({"lr": LR[name]} if name in LR else {}))
    try:
        moved(src, "policy_0", name)
        src.save(str(tmp_path / "ckpt"))
        want = one_update(src, "policy_0", batch)
    finally:
        src.stop()
    got = {}
    for carry in (True, False):
        algo = train_config(name, stack, policies=("hero", "other"), seed=1,
                            **({"lr": LR[name]} if name in LR else {})).build_algo()
        try:
            report = algo.restore(str(tmp_path / "ckpt"), policies={"policy_0": "hero"}, training_state=carry)
            assert bool(report.training) is carry
            got[carry] = one_update(algo, "hero", batch)
        finally:
            algo.stop()
    assert gap(want, got[True]) < TOL, gap(want, got[True])
    assert gap(want, got[False]) > APART, gap(want, got[False])


@pytest.mark.slow
@pytest.mark.parametrize("stack", ["new", "old"])
def test_single_policy_file_round_trip_continues_exactly(ray_session, tmp_path, stack):
    from rllib_ext.checkpoint import inspect

    name = "PPO"
    batch = fixed_batch(name)
    src = trained(name, stack)
    try:
        moved(src, "policy_0", name)
        path = src.save_policy("policy_0", str(tmp_path / "p0"), training_state=True)
        described = inspect(path).policies["policy_0"].training_state
        assert re.match(r"(Adam|keras) x1 \(step [1-9]", described), described  # tf-keras: one variable list
        want = one_update(src, "policy_0", batch)
    finally:
        src.stop()
    algo = train_config(name, stack, policies=("hero", "other"), seed=1).build_algo()
    try:
        report = algo.load_policy(path, policy_id="hero", training_state=True)
        assert list(report.training) == ["hero"]
        assert gap(want, one_update(algo, "hero", batch)) < TOL
    finally:
        algo.stop()


@pytest.mark.slow
@pytest.mark.parametrize("stack", ["new", "old"])
def test_training_state_refused_before_anything_changes(ray_session, tmp_path, stack):
    """A weights-only source: the error names what is missing and the target is untouched."""
    from builders import live_weights

    from rllib_ext.live.seam.backends import backend_for

    src = trained("PPO", stack, iters=1)
    try:
        path = src.save_policy("policy_0", str(tmp_path / "p0"))  # weights only (format 1.1)
    finally:
        src.stop()
    algo = train_config("PPO", stack, policies=("hero", "other"), seed=1).build_algo()
    try:
        before = live_weights(algo, "hero")
        before_ts = backend_for(algo).training_states(["hero"])["hero"]
        with pytest.raises(MissingTrainingStateError, match=re.escape("holds weights only, no training state")):
            algo.load_policy(path, policy_id="hero", training_state=True)
        after = live_weights(algo, "hero")
        assert all(np.array_equal(after[k], before[k]) for k in before)
        assert backend_for(algo).training_states(["hero"])["hero"].describe() == before_ts.describe()
    finally:
        algo.stop()


@pytest.mark.slow
@pytest.mark.parametrize("stack", ["new", "old"])
def test_tune_trial_restore_policies_with_training_state(ray_session, tmp_path, stack):
    """Through a Tune trial (the plain-dict ``restore_policies`` key): the trial restores
    policy_0 as a frozen 'hero' with its training state and checkpoints; a fresh algorithm
    restored from the *trial's* checkpoint makes the source's next update exactly."""
    from ray import tune

    batch = fixed_batch("PPO")
    src = trained("PPO", stack)
    try:
        moved(src, "policy_0", "PPO")
        src.save(str(tmp_path / "ckpt"))
        want = one_update(src, "policy_0", batch)
    finally:
        src.stop()
    config = train_config("PPO", stack, policies=("hero", "other"), seed=1).to_dict()
    config["restore_policies"] = {"checkpoint": str(tmp_path / "ckpt"), "policies": {"policy_0": "hero"},
                                  "freeze": True, "training_state": True}
    analysis = tune.run("PPOPartial", config=config, stop={"training_iteration": 1},
                        storage_path=str(tmp_path / "tune"), checkpoint_at_end=True, verbose=0)
    trial = analysis.trials[0]
    assert trial.last_result["rllib_ext"]["restored"] == {"hero": f"{tmp_path / 'ckpt'}:policy_0"}
    algo = train_config("PPO", stack, policies=("hero", "other"), seed=2).build_algo()
    try:
        algo.restore(trial.checkpoint.path, policies=["hero"], training_state=True)
        assert gap(want, one_update(algo, "hero", batch)) < TOL
    finally:
        algo.stop()


@pytest.mark.slow
@pytest.mark.stack("new")
def test_merge_checkpoints_with_training_state_continues_exactly(ray_session, tmp_path):
    """merge_checkpoints(training_state=True): the merged checkpoint, loaded by RLlib's own
    from_checkpoint (a PPOPartial), makes the source's next update for the taken policy."""
    import rllib_ext
    from rllib_ext.merge import merge_checkpoints

    batch = fixed_batch("PPO")
    for tag, seed in (("src", 0), ("base", 3)):
        algo = trained("PPO", "new", seed=seed)
        try:
            algo.save(str(tmp_path / tag))
            if tag == "src":
                moved(algo, "policy_0", "PPO")
                want = one_update(algo, "policy_0", batch)
        finally:
            algo.stop()
    if ray_release() < (2, 46):  # Ray 2.45 pickles torch tensors in the learner state: refused, nothing written
        from rllib_ext.errors import CheckpointError

        with pytest.raises(CheckpointError, match=r"state\.pkl: holds <not loaded: torch\.\S+> at \['metrics_logger'\].*"
                           r"not plain data.*merge with training_state=False"):
            merge_checkpoints(tmp_path / "base", [("policy_0", tmp_path / "src", None)], tmp_path / "out",
                              training_state=True)
        assert not (tmp_path / "out").exists()
        return
    report = merge_checkpoints(tmp_path / "base", [("policy_0", tmp_path / "src", None)], tmp_path / "out",
                               training_state=True)
    assert list(report.training) == ["policy_0"] and report.optimizer["policy_0"] == "source"
    merged = rllib_ext.PPOPartial.from_checkpoint(str(tmp_path / "out"))
    try:
        assert gap(want, one_update(merged, "policy_0", batch)) < TOL
    finally:
        merged.stop()


def test_new_stack_optimizers_are_taken_by_module_id_not_prefix(tmp_path):
    """'main' and 'main_v1' prefix each other: each takes only its own optimizers, by the
    module_id RLlib stores with them, and under the name after the module id."""
    import json
    import pickle

    from rllib_ext.checkpoint.reader import open_checkpoint
    from rllib_ext.checkpoint.training_state import read_training_state

    (tmp_path / "rllib_checkpoint.json").write_text(json.dumps({"checkpoint_version": "2.1"}))
    for mid in ("main", "main_v1"):
        d = tmp_path / "learner_group" / "learner" / "rl_module" / mid
        d.mkdir(parents=True)
        (d / "module_state.pkl").write_bytes(pickle.dumps({"w": np.zeros((2, 2), np.float32)}))

    def entry(mid, step, shape):
        return {"module_id": mid, "state": {"state": {0: {"step": np.array(float(step), np.float32),
                                                         "exp_avg": np.full(shape, step, np.float32),
                                                         "exp_avg_sq": np.ones(shape, np.float32)}},
                                            "param_groups": [{"lr": 1e-3, "betas": (0.9, 0.999), "params": [0]}]}}

    state = {"optimizer": {"main_default_optimizer": entry("main", 3, (2, 2)),
                           "main_v1_default_optimizer": entry("main_v1", 9, (5,))}}
    (tmp_path / "learner_group" / "learner" / "state.pkl").write_bytes(pickle.dumps(state))
    ckpt, layout = open_checkpoint(tmp_path)
    main, v1 = (read_training_state(ckpt, layout, m) for m in ("main", "main_v1"))
    assert list(main.optimizers) == list(v1.optimizers) == ["default_optimizer"]
    assert main.optimizers["default_optimizer"].step == 3 and main.optimizers["default_optimizer"].param_shapes == [(2, 2)]
    assert v1.optimizers["default_optimizer"].step == 9 and v1.optimizers["default_optimizer"].param_shapes == [(5,)]
    assert main.kl_coeff is None and main.describe() == "Adam x1 (step 3)"
