"""Per-policy PBT (``config.population(...)``) against Tune's ``PopulationBasedTraining`` and no PBT.

Two tasks (``--task``), each with two PPO policies (``policy_0`` for ``agent_0``,
``policy_1`` for ``agent_1``):

* ``chain`` (``ChainGame``): each agent walks its own chain of ``CHAIN_LENGTH`` cells.
  Stopping at the first cell pays 1 at once; stopping anywhere else pays 0; walking off
  the far end pays 10. A policy that has not yet reached the end learns to stop (the
  trap), so whether it finds the 10 is luck of its exploration, and each policy's luck is
  its own: the outcome of ``policy_0`` does not predict that of ``policy_1``. Trials
  differ by their seed (the same initial lr and entropy coefficient). Whole-trial PBT can
  only copy a trial, so a trial that found ``policy_0``'s 10 and another that found
  ``policy_1``'s stay apart; per-policy PBT takes each policy from where it is best.
  Returns are out of 10 per policy, 20 for the sum.
* ``scaled`` (``ScaledSignGame``, the default, as before): rllib_ext's ``SignGame`` with
  ``agent_0``'s observation x100 and ``agent_1``'s x0.1, so their best learning rates
  differ. Trials differ by their initial lr (1e-4 / 1e-3 / 1e-2 / 1e-1, the same for both
  policies), the same seed. Returns are out of 10.

Methods (``--method``), at the same number of trials and the same env steps per trial:
``ours`` (``PPOPartial`` with ``config.population(...)``: each policy ranked by its own
return, exploited and perturbed on its own), ``tune`` (plain ``PPO`` under Tune's
``PopulationBasedTraining``, metric the sum of both returns, ``resample_probability=0``),
``tune-patched`` (the same as ``tune``, with RLlib patched by ``patches/``: in Ray 2.60 the
restore after each of Tune's exploits brings the donor's hyperparameters back, see
docs/patches.md), ``none`` (the same trials, no PBT). Both PBTs: a round every ``--every`` iterations,
quantile 0.25, the task's hyperparameters multiplied by 0.8 or 1.25 (``chain``: lr and
entropy_coeff; ``scaled``: lr). fcnet [16, 16], 200-step batches, no remote env runners,
0.5 CPU per trial, ``ray.init(num_cpus=2)``: the trials run at the same time.

Measured per exploit: ours, the bytes of the one-policy snapshot it loads (the pool
entry's size; the result names the entry); Tune, the bytes of the whole-trial checkpoint
it restores, the seconds of its save and restore and of rebuilding the trial (a new actor:
``Algorithm`` has no ``reset_config``); its exploits are the lines of ``pbt_global.txt``.

The envs live in this file. Run as a script it is ``__main__``, which cloudpickle ships to
the trials by value; imported (``import population``), ``main`` registers the module to be
pickled by value too, so Tune's trial actors never need to import it.

``tune-patched`` runs in a child interpreter of its own (one process cannot hold two copies
of ``ray.rllib``): ``patches/check.py --apply-to`` builds the patched copy of ``ray/rllib``,
and a ``sitecustomize.py`` on ``PYTHONPATH`` makes ``import ray.rllib`` find it, in the
child and in every Ray worker its cluster starts (they inherit the environment). Before
the sweep a Ray task, and during it every trial, reports which ``ray.rllib`` it imported;
anything but the patched copy stops the run.

Run: python bench/population.py [--task scaled|chain] [--method ours|tune|tune-patched|none|all] [--seed S]
                                [--trials 4] [--iters N] [--every K] [--json RUNS.jsonl] [--plot FILE.png]
     python bench/population.py --summarize RUNS.jsonl [--plot FILE.png [--seed S]]
"""

from __future__ import annotations

import argparse
import datetime
import json
import math
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, Sequence, Tuple

import gymnasium as gym
import numpy as np
from ray.rllib.env.multi_agent_env import MultiAgentEnv

from rllib_ext.envs import SignGame, agent_to_policy

POLICIES = ["policy_0", "policy_1"]
METHODS = ("ours", "tune", "tune-patched", "none")
LABELS = {"ours": "rllib_ext (per policy)", "tune": "Tune PBT (whole trial)",
          "tune-patched": "Tune PBT, patched RLlib", "none": "no PBT"}
TUNE_METHODS = ("tune", "tune-patched")
PATCHED_ENV = "RLLIB_EXT_BENCH_PATCHED_RLLIB"  # the patched copy's directory (holds rllib/), in the child
RLLIB_KEY = "bench_rllib_file"  # which ray.rllib a trial imported
SCALES = [100.0, 0.1]
FLIPS = [0, 0]
LR_GRID = [1e-4, 1e-3, 1e-2, 1e-1]
CHAIN_LENGTH = 6
FACTORS = (0.8, 1.25)
QUANTILE = 0.25
BENCH_KEY = "bench_population"  # the timings a trial adds to its result


class ScaledSignGame(SignGame):
    """``SignGame`` with agent ``i``'s observation multiplied by ``env_config["obs_scales"][i]``
    and, if ``env_config["flip_every"][i]`` is > 0, its rule flipped every that many env
    steps (the rewarded action is then the other one: a moving target)."""

    def __init__(self, config: Any = None) -> None:
        config = dict(config or {})
        self.scales = [float(s) for s in config.pop("obs_scales", SCALES)]
        self.flips = [int(f) for f in config.pop("flip_every", FLIPS)]
        super().__init__(config)
        self.observation_spaces = {a: gym.spaces.Box(-s, s, space.shape, np.float32)
                                   for (a, space), s in zip(self.observation_spaces.items(), self.scales)}
        self.steps = 0  # env steps over all episodes: the clock of the flips

    def _observe(self) -> Dict[str, np.ndarray]:
        super()._observe()
        return {a: (o * np.float32(s)).astype(np.float32) for (a, o), s in zip(self._obs.items(), self.scales)}

    def _reward(self, agent: str, act: Any) -> float:
        flip = self.flips[self.agents.index(agent)]
        right = super()._reward(agent, act)
        return 1.0 - right if flip and (self.steps // flip) % 2 else right

    def step(self, action_dict: Dict[str, Any]) -> Any:
        out = super().step(action_dict)
        self.steps += 1
        return out


class ChainGame(MultiAgentEnv):
    """Two agents, each on its own chain of ``env_config["length"]`` cells (one-hot observed).

    Action 0 stops: ``small`` (1) at the first cell, 0 elsewhere; action 1 steps right, and
    off the last cell pays ``big`` (10). Either ends that agent's episode; the episode ends
    when both have. Stopping at once is the greedy answer; walking the whole chain pays ten
    times more, and only a policy that happened to get there learns it.
    """

    def __init__(self, config: Optional[Dict[str, Any]] = None) -> None:
        super().__init__()
        config = dict(config or {})
        self.length = int(config.get("length", CHAIN_LENGTH))
        self.small, self.big = float(config.get("small", 1.0)), float(config.get("big", 10.0))
        self.agents = self.possible_agents = ["agent_0", "agent_1"]
        self.observation_spaces = {a: gym.spaces.Box(0.0, 1.0, (self.length,), np.float32) for a in self.agents}
        self.action_spaces = {a: gym.spaces.Discrete(2) for a in self.agents}
        self.pos: Dict[str, int] = {}

    def _observe(self, agent: str) -> np.ndarray:
        obs = np.zeros(self.length, np.float32)
        obs[self.pos[agent]] = 1.0
        return obs

    def reset(self, *, seed: Optional[int] = None, options: Optional[dict] = None) -> Any:
        self.pos = {a: 0 for a in self.agents}
        return {a: self._observe(a) for a in self.agents}, {}

    def step(self, action_dict: Dict[str, Any]) -> Any:
        obs, rewards, terminateds = {}, {}, {}
        for agent, act in action_dict.items():
            if int(act) == 0:
                rewards[agent], done = (self.small if self.pos[agent] == 0 else 0.0), True
            else:
                self.pos[agent] += 1
                done = self.pos[agent] >= self.length
                rewards[agent] = self.big if done else 0.0
            terminateds[agent] = done
            if done:
                self.pos[agent] = -1
            else:
                obs[agent] = self._observe(agent)
        terminateds["__all__"] = all(p < 0 for p in self.pos.values())
        return obs, rewards, terminateds, {"__all__": False}, {}


@dataclass
class Task:
    """What differs between the tasks: the env, how the trials differ, what PBT perturbs."""

    env: type
    env_config: Dict[str, Any]
    perturbed: Dict[str, float]  # hyperparameter -> initial value (lr may be a grid instead)
    lr_grid: bool  # trials differ by lr (scaled) or by seed (chain)
    iters: int
    every: int
    best: float  # the best return per policy
    note: str = ""
    mutations: Dict[str, Tuple[float, float]] = field(default_factory=dict)  # Tune's bounds (never resampled)


TASKS = {
    "scaled": Task(ScaledSignGame, {"obs_dims": [4, 4], "episode_len": 10}, {"lr": 0.0}, True, 60, 6, 10.0,
                   f"ScaledSignGame, policy_0 obs x{SCALES[0]:g} (small lr best), policy_1 obs x{SCALES[1]:g} "
                   "(large lr best)", {"lr": (1e-6, 1.0)}),
    "chain": Task(ChainGame, {"length": CHAIN_LENGTH}, {"lr": 1e-3, "entropy_coeff": 0.01}, False, 30, 5, 10.0,
                  f"ChainGame, length {CHAIN_LENGTH}: stop at once pays 1, the far end 10, per agent",
                  {"lr": (1e-6, 1.0), "entropy_coeff": (1e-6, 1.0)}),
}


def dir_size(path: str) -> int:
    return sum(os.path.getsize(os.path.join(d, f)) for d, _, files in os.walk(path) for f in files)


def base_config(config_cls: type, task: Task, trials: int, seed: int) -> Any:
    """The trials' config: a grid over the initial lr (scaled) or over the seed (chain)."""
    from ray import tune

    if task.lr_grid:
        training, seed_value = {"lr": tune.grid_search(LR_GRID[:trials])}, seed
    else:
        training, seed_value = dict(task.perturbed), tune.grid_search([seed * 100 + i for i in range(trials)])
    return (
        config_cls()
        .environment(task.env, env_config=dict(task.env_config))
        .env_runners(num_env_runners=0)
        .training(train_batch_size=200, minibatch_size=50, num_epochs=1, **training)
        .rl_module(model_config={"fcnet_hiddens": [16, 16]})
        .multi_agent(policies=set(POLICIES), policy_mapping_fn=agent_to_policy)
        .resources(num_cpus_for_main_process=0.5)
        .learners(num_cpus_per_learner=0.5)  # the local learner's CPU is the main process's: 4 trials at once
        .debugging(seed=seed_value)
    )


def timed_classes() -> Tuple[type, type]:
    """The trainables (ours, plain PPO), each adding its timings to its results under ``BENCH_KEY``."""
    from ray.rllib.algorithms.ppo import PPO

    from rllib_ext import PPOPartial

    class Timed:
        def setup(self, config: Any) -> None:
            self._events: List[Dict[str, Any]] = []
            t0 = time.perf_counter()
            super().setup(config)  # type: ignore[misc]
            self._events.append({"kind": "setup", "seconds": time.perf_counter() - t0})

        def load_checkpoint(self, checkpoint: Any) -> None:  # a restore right after setup: a rebuilt trial
            if self._events and self._events[-1]["kind"] == "setup":
                self._events[-1]["kind"] = "rebuild"
            super().load_checkpoint(checkpoint)  # type: ignore[misc]

        def step(self) -> Dict[str, Any]:
            import ray.rllib

            result = super().step()  # type: ignore[misc]
            result[BENCH_KEY], self._events = json.dumps(self._events), []  # a string: Tune's loggers take it
            result[RLLIB_KEY] = ray.rllib.__file__
            return result

    class TimedPPOPartial(Timed, PPOPartial):
        pass

    class TimedPPO(Timed, PPO):
        def save_checkpoint(self, checkpoint_dir: str) -> Any:
            t0 = time.perf_counter()
            out = super().save_checkpoint(checkpoint_dir)
            self._events.append({"kind": "save", "seconds": time.perf_counter() - t0, "bytes": dir_size(checkpoint_dir)})
            return out

        def load_checkpoint(self, checkpoint: Any) -> None:
            t0 = time.perf_counter()
            super().load_checkpoint(checkpoint)
            seconds = time.perf_counter() - t0
            path = checkpoint if isinstance(checkpoint, str) else getattr(checkpoint, "path", "")
            kept = all(all(r.get()) for r in self.learner_group.foreach_learner(own_lr_kept))
            self._events.append({"kind": "restore", "seconds": seconds, "lr_kept": kept,
                                 "bytes": dir_size(path) if path and os.path.isdir(path) else 0})

    return TimedPPOPartial, TimedPPO


def own_lr_kept(learner: Any) -> List[bool]:
    """Per optimizer group: does the optimizer train with the lr of this trial's config (not the
    donor's, which unpatched Ray 2.60 restores for one iteration)? Read right after a restore."""
    kept = []
    for module_id in learner.module.keys():
        lr = learner.config.get_config_for_module(module_id).lr
        for _, optimizer in learner.get_optimizers_for_module(module_id):
            kept += [math.isclose(group["lr"], lr, rel_tol=1e-9) for group in optimizer.param_groups]
    return kept


def trial_index(trial: Any) -> int:
    """The trial's place in the grid: Tune's tags start with it (``"2_seed=2"``, also after a perturbation)."""
    return int(str(trial.experiment_tag).split("_", 1)[0])


def tag_index(tag: str) -> int:
    return int(str(tag).split("_", 1)[0])


def run(method: str, task_name: str, args: argparse.Namespace, base: str) -> Dict[str, Any]:
    """One sweep of ``args.trials`` trials; returns per trial its final returns and its curve,
    the exploits (iteration, trial, policy or None for the whole trial, donor) and the timings."""
    from ray import tune
    from ray.rllib.algorithms.ppo import PPOConfig
    from ray.tune.schedulers import PopulationBasedTraining

    from rllib_ext import PolicyPool, PPOPartialConfig

    task = TASKS[task_name]
    ours_cls, tune_cls = timed_classes()
    events: List[Dict[str, Any]] = []
    curves: Dict[int, List[List[float]]] = {}
    taken: List[Tuple[int, int, str, str]] = []  # (iteration, trial, policy, snapshot id): ours
    rllib_files: set = set()  # the ray.rllib each trial imported

    class Collect(tune.Callback):
        def on_trial_result(self, iteration: int, trials: Any, trial: Any, result: Dict[str, Any], **info: Any) -> None:
            events.extend(json.loads(result.get(BENCH_KEY) or "[]"))
            rllib_files.add(str(result.get(RLLIB_KEY)))
            i, it = trial_index(trial), int(result["training_iteration"])
            returns = (result.get("env_runners") or {}).get("module_episode_returns_mean") or {}
            curves.setdefault(i, []).append([it] + [float(returns.get(pid, float("nan"))) for pid in POLICIES])
            for pid, rec in ((result.get("rllib_ext") or {}).get("population") or {}).items():
                if rec.get("exploited_from"):
                    taken.append((it, i, pid, rec["exploited_from"]))

    kwargs: Dict[str, Any] = {}
    pool_dir = os.path.join(base, f"pool_{method}")
    if method == "ours":
        trainable = ours_cls
        config = base_config(PPOPartialConfig, task, args.trials, args.seed).population(
            pool_dir, policies=POLICIES, every=args.every, quantile=QUANTILE, score="return",
            perturb={name: FACTORS for name in task.perturbed}, seed=args.seed)
    else:
        trainable = tune_cls
        config = base_config(PPOConfig, task, args.trials, args.seed)
        if method in TUNE_METHODS:
            kwargs["scheduler"] = PopulationBasedTraining(
                time_attr="training_iteration", metric="env_runners/episode_return_mean", mode="max",
                perturbation_interval=args.every, quantile_fraction=QUANTILE, resample_probability=0.0,
                perturbation_factors=tuple(sorted(FACTORS, reverse=True)),
                hyperparam_mutations={name: tune.loguniform(*task.mutations[name]) for name in task.perturbed})
    random.seed(args.seed)  # Tune's PBT draws its donors and factors from `random`
    t0 = time.perf_counter()
    analysis = tune.run(trainable, config=config.to_dict(), stop={"training_iteration": args.iters},
                        storage_path=os.path.join(base, f"tune_{method}"), name=method, verbose=0,
                        callbacks=[Collect()], **kwargs)
    wall = time.perf_counter() - t0
    check_rllib(rllib_files, f"the trials of {method!r}")
    trials = sorted(analysis.trials, key=trial_index)
    finals = [{pid: float(t.last_result["env_runners"]["module_episode_returns_mean"][pid]) for pid in POLICIES}
              for t in trials]
    index = {t.trial_id: trial_index(t) for t in trials}
    out: Dict[str, Any] = {"finals": finals, "events": events, "wall": wall,
                           "curves": [curves.get(i, []) for i in range(len(trials))]}
    if method == "ours":  # the donor's trial and bytes, from the pool entry the result names
        pool = PolicyPool(pool_dir)
        out["exploits"] = [{"iteration": it, "trial": i, "policy": pid, "donor": index.get(pool.get(sid).writer),
                            "bytes": pool.get(sid).size} for it, i, pid, sid in taken]
        out["pool_bytes"] = dir_size(pool_dir)
    elif method in TUNE_METHODS:  # [target tag, clone tag, target iteration, clone iteration, old config, new config]
        path = os.path.join(base, f"tune_{method}", method, "pbt_global.txt")
        lines = [json.loads(line) for line in open(path)] if os.path.exists(path) else []
        out["exploits"] = [{"iteration": int(line[3]), "trial": tag_index(line[0]), "policy": None,
                            "donor": tag_index(line[1])} for line in lines]
    else:
        out["exploits"] = []
    return out


SITECUSTOMIZE = f'''"""Written by bench/population.py: ``import ray.rllib`` finds the patched copy in ${PATCHED_ENV}."""
import importlib.util
import os
import sys


class PatchedRLlib:
    """Finds ``ray.rllib`` in the patched copy (its submodules follow its ``__path__``); nothing else."""

    def find_spec(self, fullname, path=None, target=None):
        if fullname != "ray.rllib" or not os.environ.get("{PATCHED_ENV}"):
            return None
        root = os.path.join(os.environ["{PATCHED_ENV}"], "rllib")
        return importlib.util.spec_from_file_location(fullname, os.path.join(root, "__init__.py"),
                                                      submodule_search_locations=[root])


sys.meta_path.insert(0, PatchedRLlib())
'''


def expected_rllib() -> str:
    """The ``ray.rllib`` directory this process and its workers must use: the patched copy in the
    tune-patched child, the installed one elsewhere."""
    import ray.rllib

    overlay = os.environ.get(PATCHED_ENV)
    return os.path.join(overlay, "rllib") if overlay else os.path.dirname(ray.rllib.__file__)


def check_rllib(files: Any, who: str) -> None:
    """Stop the run, loudly, if ``who`` imported another ``ray.rllib`` than :func:`expected_rllib`."""
    want = expected_rllib() + os.sep
    wrong = sorted(f for f in files if not f.startswith(want))
    if wrong or not files:
        raise SystemExit(f"bench/population.py: {who} imported ray.rllib from {wrong or 'nowhere'}, "
                         f"not from {want}: the comparison would not be the one asked for")


def run_patched(args: argparse.Namespace, base: str) -> Dict[str, Any]:
    """``tune-patched`` in a child interpreter whose ``ray.rllib``, and its Ray workers', is the
    copy ``patches/check.py --apply-to`` patched (see the module docstring); returns its result."""
    overlay, site = os.path.join(base, "patched-ray"), os.path.join(base, "patched-site")
    if not os.path.isdir(os.path.join(overlay, "rllib")):
        check = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "patches", "check.py")
        subprocess.run([sys.executable, check, "--apply-to", overlay], check=True, stdout=subprocess.DEVNULL)
    os.makedirs(site, exist_ok=True)
    with open(os.path.join(site, "sitecustomize.py"), "w") as f:
        f.write(SITECUSTOMIZE)
    env = {**os.environ, PATCHED_ENV: overlay,
           "PYTHONPATH": os.pathsep.join(p for p in (site, os.environ.get("PYTHONPATH")) if p)}
    out = os.path.join(base, "tune-patched.json")
    cmd = [sys.executable, os.path.abspath(__file__), "--task", args.task, "--method", "tune-patched",
           "--seed", str(args.seed), "--trials", str(args.trials), "--iters", str(args.iters),
           "--every", str(args.every), "--dir", base, "--child-result", out]
    subprocess.run(cmd, env=env, check=True)
    with open(out) as f:
        return json.load(f)


def lr_kept(events: List[Dict[str, Any]]) -> List[int]:
    """``[restores that train with the trial's own lr, restores]``."""
    restores = [e for e in events if e["kind"] == "restore"]
    return [sum(bool(e.get("lr_kept")) for e in restores), len(restores)]


def med(events: List[Dict[str, Any]], kind: str, key: str) -> float:
    values = [e[key] for e in events if e["kind"] == kind]
    return statistics.median(values) if values else float("nan")


def figures(finals: Sequence[Dict[str, float]]) -> Dict[str, float]:
    """One run's scores: per policy the best trial and the mean over trials; the sum of a trial's
    two returns, for its best trial (the one you would keep) and averaged over trials."""
    out: Dict[str, float] = {}
    for pid in POLICIES:
        out[f"{pid} best"] = max(f[pid] for f in finals)
        out[f"{pid} mean"] = statistics.mean(f[pid] for f in finals)
    sums = [sum(f[pid] for pid in POLICIES) for f in finals]
    out["sum best trial"], out["sum mean"] = max(sums), statistics.mean(sums)
    return out


FIGURE_LABELS = {"policy_0 best": "policy_0 return, best trial", "policy_0 mean": "policy_0 return, mean over trials",
                 "policy_1 best": "policy_1 return, best trial", "policy_1 mean": "policy_1 return, mean over trials",
                 "sum best trial": "sum of both, best trial", "sum mean": "sum of both, mean over trials"}


def report(results: Dict[str, Dict[str, Any]], task_name: str, args: argparse.Namespace, started: Any,
           command: str) -> None:
    task = TASKS[task_name]
    methods = list(results)
    w, c = 32, 24
    hyper = ", ".join(task.perturbed)
    start = f"initial lr {LR_GRID[: args.trials]}" if task.lr_grid else (
        "initial " + ", ".join(f"{k} {v:g}" for k, v in task.perturbed.items()) + f", trial seeds {args.seed * 100}+i")
    print(f"\n{', '.join(LABELS[m] for m in methods)}; {args.trials} trials x {args.iters} iterations "
          f"(200 env steps each), a round every {args.every}, quantile {QUANTILE}, {hyper} x{FACTORS[0]}/x{FACTORS[1]}, "
          f"{start}")
    print(f"{started:%Y-%m-%d %H:%M %Z}, nproc {os.cpu_count()}; command: {command}")
    print(f"task: {task.note}; returns are out of {task.best:g} per policy\n")
    print(f"{'':<{w}}" + "".join(f"{LABELS[m]:>{c}}" for m in methods))

    def row(label: str, cells: Sequence[str]) -> None:
        print(f"{label:<{w}}" + "".join(f"{x:>{c}}" for x in cells))

    cells: Dict[str, Dict[str, str]] = {m: {} for m in METHODS}
    if "ours" in results:
        r = results["ours"]
        cells["ours"] = {
            "exploits": f"{len(r['exploits'])} (one policy each)",
            "restores": "0",
            "bytes": f"{statistics.median(e['bytes'] for e in r['exploits']) / 1024:.1f} KB" if r["exploits"] else "-",
            "save": "- (pool snapshot)", "restore": "not public", "rebuild": "no"}
    for m in (m for m in TUNE_METHODS if m in results):
        ev = results[m]["events"]
        rebuilds = [e["seconds"] for e in ev if e["kind"] == "rebuild"]
        cells[m] = {
            "exploits": f"{len(results[m]['exploits'])} (whole trial)",
            "restores": f"{lr_kept(ev)[1]} (incl. resumes)",
            "lr kept": "{} of {}".format(*lr_kept(ev)),
            "bytes": f"{med(ev, 'restore', 'bytes') / 1024:.1f} KB",
            "save": f"{med(ev, 'save', 'seconds'):.3f} s", "restore": f"{med(ev, 'restore', 'seconds'):.3f} s",
            "rebuild": f"yes, {statistics.median(rebuilds):.2f} s" if rebuilds else "-"}
    for key, label in (("exploits", "exploits"), ("restores", "whole-trial restores"),
                       ("lr kept", "restores training with own lr"),
                       ("bytes", "bytes per exploit (median)"), ("save", "save s per exploit (median)"),
                       ("restore", "restore s per exploit (median)"), ("rebuild", "trial rebuilt per restore")):
        if any(cells[m] for m in methods if m != "none"):
            row(label, [cells[m].get(key, "-") for m in methods])
    figs = {m: figures(results[m]["finals"]) for m in methods}
    for key, label in FIGURE_LABELS.items():
        row(label, [f"{figs[m][key]:.2f}" for m in methods])
    row("wall time of the sweep", [f"{results[m]['wall']:.0f} s" for m in methods])
    if "ours" in results:
        rounds = max(1, args.iters // args.every)
        print(f"(ours also writes every policy of every trial to the pool each round: "
              f"{results['ours']['pool_bytes'] / rounds / 1024:.0f} KB per round, all trials; the seconds of one "
              "exploit are not in the public results)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--task", choices=sorted(TASKS), default="scaled",
                        help="scaled (the default, as before issue 37) or chain")
    parser.add_argument("--method", choices=[*METHODS, "all"], default=None,
                        help="one method, or all (default: ours and tune for scaled, as before; all for chain)")
    parser.add_argument("--quick", action="store_true", help="a smoke run: 16 iterations, a round every 4")
    parser.add_argument("--trials", type=int, default=4)
    parser.add_argument("--iters", type=int, default=None, help="default: 60 (scaled), 30 (chain)")
    parser.add_argument("--every", type=int, default=None, help="default: 6 (scaled), 5 (chain)")
    parser.add_argument("--seed", type=int, default=0, help="the trials' seed(s), and both PBTs' draws")
    parser.add_argument("--json", default=None, help="append one JSON line per method run here")
    parser.add_argument("--dir", default=None, help="where the pools and Tune's results go (default: a temp dir)")
    parser.add_argument("--plot", metavar="PNG", default=None,
                        help="draw per-policy return over iterations for each trial, exploits marked (with "
                             "--summarize: from the logged run of --seed, or the first logged seed)")
    parser.add_argument("--summarize", metavar="JSONL", default=None,
                        help="print the figures of the runs --json appended there, instead of running")
    parser.add_argument("--child-result", default=None, help=argparse.SUPPRESS)  # run_patched's child writes here
    args = parser.parse_args()
    if args.summarize:
        runs = load_runs(args.summarize)
        summarize(runs, args.summarize)
        if args.plot:
            seed = args.seed if any(r["seed"] == args.seed for r in runs) else min(r["seed"] for r in runs)
            task = next(r["task"] for r in runs if r["seed"] == seed)
            plot([r for r in runs if r["seed"] == seed and r["task"] == task and r.get("curves")], args.plot)
        return
    task = TASKS[args.task]
    args.iters = args.iters or task.iters
    args.every = args.every or task.every
    if args.quick:
        args.iters, args.every = 16, 4
    methods = list(METHODS) if args.method == "all" else [args.method] if args.method else (
        ["ours", "tune"] if args.task == "scaled" else list(METHODS))
    command = "python " + " ".join(sys.argv)
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    import cloudpickle
    import ray

    if __name__ != "__main__":  # imported: ship the envs by value, the trials need not import this module
        cloudpickle.register_pickle_by_value(sys.modules[__name__])
    started = datetime.datetime.now().astimezone()
    base = os.path.abspath(args.dir or tempfile.mkdtemp(prefix="bench-population-"))
    child = bool(args.child_result)
    if child and (methods != ["tune-patched"] or not os.environ.get(PATCHED_ENV)):
        raise SystemExit(f"--child-result is run_patched's: --method tune-patched with ${PATCHED_ENV} set")
    if child:
        import ray.rllib

        check_rllib({ray.rllib.__file__}, "the driver")
    here = [m for m in methods if m != "tune-patched" or child]  # tune-patched: in a child of its own
    results: Dict[str, Dict[str, Any]] = {}
    if here:
        ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False)

        @ray.remote(num_cpus=0)
        def rllib_file() -> str:
            import ray.rllib

            return ray.rllib.__file__

        check_rllib({ray.get(rllib_file.remote())}, "a Ray worker")
        for method in here:
            results[method] = run(method, args.task, args, base)
            print(f"{method}: {results[method]['wall']:.0f} s", flush=True)
        ray.shutdown()
    if child:
        with open(args.child_result, "w") as f:
            json.dump(results["tune-patched"], f)
        return
    if "tune-patched" in methods:
        results["tune-patched"] = run_patched(args, base)
        print(f"tune-patched: {results['tune-patched']['wall']:.0f} s", flush=True)
    results = {m: results[m] for m in methods}
    records = [{"task": args.task, "method": m, "seed": args.seed, "iters": args.iters, "every": args.every,
                "trials": args.trials, "started": f"{started:%Y-%m-%d %H:%M %Z}", "command": command,
                "finals": r["finals"], "wall": r["wall"], "curves": r["curves"],
                "exploits": [{k: e[k] for k in ("iteration", "trial", "policy", "donor")} for e in r["exploits"]],
                **({"restores_lr_kept": lr_kept(r["events"])} if m in TUNE_METHODS else {})}
               for m, r in results.items()]
    if args.json:
        with open(args.json, "a") as f:
            for record in records:
                f.write(json.dumps(record) + "\n")
    if args.plot:
        plot(records, args.plot)
    report(results, args.task, args, started, command)


def load_runs(path: str) -> List[Dict[str, Any]]:
    """One record per (task, method, seed). Lines from before issue 37 (both methods in one
    line, the scaled task) are split into two."""
    runs: List[Dict[str, Any]] = []
    for line in open(path):
        if not line.strip():
            continue
        record = json.loads(line)
        if "method" in record:
            runs.append(record)
            continue
        for method in ("ours", "tune"):
            runs.append({**{k: v for k, v in record.items() if k not in METHODS}, "task": "scaled",
                         "method": method, **record[method]})
    return runs


def mean_se(xs: Sequence[float]) -> Tuple[float, float]:
    return statistics.mean(xs), (statistics.stdev(xs) / len(xs) ** 0.5 if len(xs) > 1 else float("nan"))


def summarize(runs: List[Dict[str, Any]], path: str) -> None:
    """Per task: each figure's mean and standard error over the runs (seeds), per method; and
    ours minus each other method (and tune-patched minus tune), paired by seed (mean over the seeds both ran +- its
    standard error, and that difference in standard errors)."""
    for task in sorted({r["task"] for r in runs}):
        mine = [r for r in runs if r["task"] == task]
        methods = [m for m in METHODS if any(r["method"] == m for r in mine)]
        by = {m: {r["seed"]: figures(r["finals"]) for r in mine if r["method"] == m} for m in methods}
        budget = sorted({(r["trials"], r["iters"], r["every"]) for r in mine})
        print(f"\ntask {task}: {len(mine)} runs from {path}; (trials, iterations, every) {budget}; "
              "mean +- standard error over seeds")
        w, c = 32, 26
        print(f"{'':<{w}}" + "".join(f"{LABELS[m]:>{c}}" for m in methods))
        print(f"{'seeds':<{w}}" + "".join(f"{','.join(map(str, sorted(by[m]))):>{c}}" for m in methods))
        for key, label in FIGURE_LABELS.items():
            cells = ["{:.2f} +- {:.2f}".format(*mean_se([f[key] for f in by[m].values()])) for m in methods]
            print(f"{label:<{w}}" + "".join(f"{x:>{c}}" for x in cells))
        for m in (m for m in TUNE_METHODS if m in methods):
            kept = [r["restores_lr_kept"] for r in mine if r["method"] == m and "restores_lr_kept" in r]
            if kept:
                print(f"{LABELS[m]}: restores training with the trial's own lr {sum(k[0] for k in kept)} of "
                      f"{sum(k[1] for k in kept)} (over the {len(kept)} runs that logged it)")
        pairs = [("ours", m) for m in methods if m != "ours" and "ours" in methods]
        if "tune" in methods and "tune-patched" in methods:  # what the patch changes for Tune's PBT
            pairs.append(("tune-patched", "tune"))
        for one, other in pairs:
            seeds = sorted(set(by[one]) & set(by[other]))
            if len(seeds) < 2:
                continue
            print(f"{one} minus {other}, paired over seeds {seeds}:")
            for key in ("sum best trial", "sum mean"):
                d, se = mean_se([by[one][s][key] - by[other][s][key] for s in seeds])
                ahead = sum(by[one][s][key] >= by[other][s][key] for s in seeds)
                print(f"  {FIGURE_LABELS[key]:<{w - 2}}{d:+.2f} +- {se:.2f} ({d / se if se else math.inf:+.1f} SE; "
                      f"{one} >= {other} in {ahead} of {len(seeds)})")


def plot(records: List[Dict[str, Any]], path: str) -> None:
    """Rows: the methods; columns: the policies. Each trial's return over iterations (a line,
    broken where Tune restored it to an earlier iteration); an exploit is a triangle on the
    trial that took it, in the donor trial's colour (Tune's whole-trial exploits in both
    panels of the row)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    records = [r for m in METHODS for r in records if r["method"] == m]
    if not records:
        raise SystemExit("--plot: no run with curves to draw (runs logged before issue 37 have none)")
    colours = plt.get_cmap("tab10").colors
    fig, axes = plt.subplots(len(records), len(POLICIES), figsize=(9, 2.4 * len(records) + 0.6), dpi=100,
                             sharex=True, sharey=True, squeeze=False)
    for row, record in enumerate(records):
        for col, pid in enumerate(POLICIES):
            ax = axes[row][col]
            for i, curve in enumerate(record["curves"]):
                segments: List[List[List[float]]] = [[]]
                for point in curve:
                    if segments[-1] and point[0] <= segments[-1][-1][0]:
                        segments.append([])
                    segments[-1].append(point)
                for n, seg in enumerate(segments):
                    if seg:
                        ax.plot([p[0] for p in seg], [p[1 + col] for p in seg], color=colours[i % 10], lw=1.3,
                                label=f"trial {i}" if n == 0 else None)
                at = {int(p[0]): p[1 + col] for p in curve}
                for e in record["exploits"]:
                    if e["trial"] == i and e["policy"] in (None, pid) and e["iteration"] in at:
                        donor = e["donor"] if e["donor"] is not None else i
                        ax.plot(e["iteration"], at[e["iteration"]], marker="v", ms=8, color=colours[donor % 10],
                                markeredgecolor="black", lw=0)
            ax.set_title(f"{LABELS[record['method']]}: {pid}", fontsize=9)
            ax.grid(alpha=0.3)
            if col == 0:
                ax.set_ylabel("mean episode return")
            if row == len(records) - 1:
                ax.set_xlabel("training iteration")
    axes[0][0].legend(fontsize=7, loc="upper left", ncol=2)
    first = records[0]
    fig.suptitle(f"bench/population.py --task {first['task']}, seed {first['seed']}, {first['started'][:10]}: "
                 "return per trial; \u25bc an exploit, in the donor trial's colour", fontsize=9)
    fig.tight_layout()
    fig.savefig(path)
    print(path)


if __name__ == "__main__":
    main()
