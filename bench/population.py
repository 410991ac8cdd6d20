"""Per-policy PBT (``config.population(...)``) against Tune's ``PopulationBasedTraining``.

The task has two policies whose best learning rates differ: ``ScaledSignGame`` is
rllib_ext's ``SignGame`` (match the sign of the first observation entry; 10 steps, at
most 10 per episode) with each agent's observation multiplied by its own scale:
``agent_0`` (``policy_0``) sees it x100, so a large lr blows its first layer up and a
small one is best; ``agent_1`` (``policy_1``) sees it x0.1, so only a large lr learns
within the budget. Whole-trial PBT moves both policies together, so it cannot take
policy_0 from one trial and policy_1 from another; per-policy PBT can.

Both methods run ``--trials`` PPO trials at once (4: one per lr of the grid, the same lr
for both policies at the start, the same seed), ``--iters`` iterations each, a round
every ``--every`` iterations, quantile 0.25, lr perturbed by x0.8 or x1.25 (Tune:
``resample_probability=0``; its metric is the sum of both policies' returns, ours ranks
each policy by its own return). fcnet [16, 16], 200-step batches, no remote env runners,
0.5 CPU per trial, ``ray.init(num_cpus=2)``.

Measured per exploit:
  * ours: the bytes of the one-policy snapshot (weights + training state) it loads from
    the pool, and the seconds of the exploit (partial restore + setting the lr);
  * Tune: the bytes of the whole-trial checkpoint it restores, the seconds of its save
    and of its restore, and the seconds of rebuilding the trial (Tune starts a new actor:
    ``Algorithm`` has no ``reset_config``). Tune's exploits are the lines of its
    ``pbt_global.txt``; it also restores (and rebuilds) a trial it paused and resumed.
Final per-policy scores: each policy's mean episode return in the last result, best
trial and mean over trials.

Run: python bench/population.py [--quick] [--trials 4] [--iters 60] [--every 6] [--seed S --json RUNS.jsonl]
     python bench/population.py --summarize RUNS.jsonl   (mean and standard error over the runs)
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import random
import statistics
import sys
import tempfile
import time
from typing import Any, Dict, List

import gymnasium as gym
import numpy as np

from rllib_ext.envs import SignGame, agent_to_policy

POLICIES = ["policy_0", "policy_1"]
SCALES = [100.0, 0.1]
FLIPS = [0, 0]
LR_GRID = [1e-4, 1e-3, 1e-2, 1e-1]
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


def dir_size(path: str) -> int:
    return sum(os.path.getsize(os.path.join(d, f)) for d, _, files in os.walk(path) for f in files)


def base_config(config_cls: type, lr: Any, seed: int = 0) -> Any:
    return (
        config_cls()
        .environment(ScaledSignGame, env_config={"obs_dims": [4, 4], "episode_len": 10})
        .env_runners(num_env_runners=0)
        .training(train_batch_size=200, minibatch_size=50, num_epochs=1, lr=lr)
        .rl_module(model_config={"fcnet_hiddens": [16, 16]})
        .multi_agent(policies=set(POLICIES), policy_mapping_fn=agent_to_policy)
        .resources(num_cpus_for_main_process=0.5)
        .learners(num_cpus_per_learner=0.5)  # the local learner's CPU is the main process's: 4 trials at once
        .debugging(seed=seed)
    )


def timed_classes():
    """The two trainables, each adding its timings to its results under ``BENCH_KEY``."""
    from ray.rllib.algorithms.ppo import PPO

    from rllib_ext import PPOPartial
    # TODO(public API): the seconds of one exploit are not reported (the result gives only
    # the donor, result["rllib_ext"]["population"][pid]["exploited_from"]), so the bench
    # wraps the population feature's exploit to time it.
    from rllib_ext.live.population.feature import PopulationFeature

    class Timed:
        def setup(self, config: Any) -> None:
            self._events: List[Dict[str, Any]] = []
            t0 = time.perf_counter()
            super().setup(config)
            self._events.append({"kind": "setup", "seconds": time.perf_counter() - t0})

        def load_checkpoint(self, checkpoint: Any) -> None:  # a restore right after setup: a rebuilt trial
            if self._events and self._events[-1]["kind"] == "setup":
                self._events[-1]["kind"] = "rebuild"
            super().load_checkpoint(checkpoint)

        def step(self) -> Dict[str, Any]:
            result = super().step()
            result[BENCH_KEY], self._events = json.dumps(self._events), []  # a string: Tune's loggers take it
            return result

    class TimedPPOPartial(Timed, PPOPartial):
        def setup(self, config: Any) -> None:
            super().setup(config)
            feature = next(f for f in self.features if isinstance(f, PopulationFeature))
            exploit = feature.exploit

            def timed_exploit(algo: Any, policy_id: str, donor: Any) -> str:
                t0 = time.perf_counter()
                out = exploit(algo, policy_id, donor)
                self._events.append({"kind": "exploit", "seconds": time.perf_counter() - t0,
                                     "bytes": dir_size(donor.path), "policy": policy_id})
                return out

            feature.exploit = timed_exploit

    class TimedPPO(Timed, PPO):
        def save_checkpoint(self, checkpoint_dir: str) -> Any:
            t0 = time.perf_counter()
            out = super().save_checkpoint(checkpoint_dir)
            self._events.append({"kind": "save", "seconds": time.perf_counter() - t0, "bytes": dir_size(checkpoint_dir)})
            return out

        def load_checkpoint(self, checkpoint: Any) -> None:
            t0 = time.perf_counter()
            super().load_checkpoint(checkpoint)
            path = checkpoint if isinstance(checkpoint, str) else getattr(checkpoint, "path", "")
            self._events.append({"kind": "restore", "seconds": time.perf_counter() - t0,
                                 "bytes": dir_size(path) if path and os.path.isdir(path) else 0})

    return TimedPPOPartial, TimedPPO


def run(method: str, args: argparse.Namespace, base: str) -> Dict[str, Any]:
    """One sweep; returns the per-trial final returns, the timing events and the wall time."""
    from ray import tune
    from ray.tune.schedulers import PopulationBasedTraining

    from rllib_ext import PPOPartialConfig
    from ray.rllib.algorithms.ppo import PPOConfig

    ours_cls, tune_cls = timed_classes()
    events: List[Dict[str, Any]] = []

    class Collect(tune.Callback):
        def on_trial_result(self, iteration: int, trials: Any, trial: Any, result: Dict[str, Any], **info: Any) -> None:
            events.extend(json.loads(result.get(BENCH_KEY) or "[]"))

    grid = tune.grid_search(LR_GRID[: args.trials])
    kwargs: Dict[str, Any] = {}
    if method == "ours":
        trainable = ours_cls
        config = base_config(PPOPartialConfig, grid, args.seed).population(
            os.path.join(base, "pool"), policies=POLICIES, every=args.every, quantile=QUANTILE,
            score="return", perturb={"lr": FACTORS}, seed=args.seed)
    else:
        trainable = tune_cls
        config = base_config(PPOConfig, grid, args.seed)
        kwargs["scheduler"] = PopulationBasedTraining(
            time_attr="training_iteration", metric="env_runners/episode_return_mean", mode="max",
            perturbation_interval=args.every, quantile_fraction=QUANTILE, resample_probability=0.0,
            perturbation_factors=tuple(sorted(FACTORS, reverse=True)),
            hyperparam_mutations={"lr": tune.loguniform(1e-6, 1.0)})
    random.seed(args.seed)  # Tune's PBT draws its donors and factors from `random`
    t0 = time.perf_counter()
    analysis = tune.run(trainable, config=config.to_dict(), stop={"training_iteration": args.iters},
                        storage_path=os.path.join(base, f"tune_{method}"), name=method, verbose=0,
                        callbacks=[Collect()], **kwargs)
    wall = time.perf_counter() - t0
    finals = [{pid: float(t.last_result["env_runners"]["module_episode_returns_mean"][pid]) for pid in POLICIES}
              for t in analysis.trials]
    out: Dict[str, Any] = {"finals": finals, "events": events, "wall": wall}
    if method == "ours":
        out["pool_bytes"] = dir_size(os.path.join(base, "pool"))
    else:  # one line per exploit; Tune also restores a trial it paused and resumed
        with open(os.path.join(base, f"tune_{method}", method, "pbt_global.txt")) as f:
            out["exploits"] = sum(1 for line in f if line.strip())
    return out


def med(events: List[Dict[str, Any]], kind: str, key: str) -> float:
    values = [e[key] for e in events if e["kind"] == kind]
    return statistics.median(values) if values else float("nan")


def report(results: Dict[str, Dict[str, Any]], args: argparse.Namespace, started: Any, command: str) -> None:
    ours, theirs = results["ours"], results["tune"]
    n_ours = sum(e["kind"] == "exploit" for e in ours["events"])
    n_tune = theirs["exploits"]
    n_restores = sum(e["kind"] == "restore" for e in theirs["events"])
    rebuilds = [e["seconds"] for e in theirs["events"] if e["kind"] == "rebuild"]
    print(f"\nper-policy PBT (rllib_ext population) vs Tune PopulationBasedTraining; {args.trials} trials x "
          f"{args.iters} iterations, a round every {args.every}, quantile {QUANTILE}, lr x{FACTORS[0]}/x{FACTORS[1]}, "
          f"initial lr {LR_GRID[: args.trials]}")
    print(f"{started:%Y-%m-%d %H:%M %Z}, nproc {os.cpu_count()}; command: {command}")
    print(f"task: ScaledSignGame, policy_0 obs x{SCALES[0]:g} (small lr best), policy_1 obs x{SCALES[1]:g} "
          "(large lr best); returns are out of 10\n")
    w = 30
    print(f"{'':<{w}}{'rllib_ext (per policy)':>24}{'Tune PBT (whole trial)':>24}")
    print(f"{'exploits':<{w}}{n_ours:>24}{n_tune:>24}")
    print(f"{'whole-trial restores':<{w}}{0:>24}{f'{n_restores} (incl. resumes)':>24}")
    print(f"{'bytes per exploit (median)':<{w}}{med(ours['events'], 'exploit', 'bytes') / 1024:>21.1f} KB"
          f"{med(theirs['events'], 'restore', 'bytes') / 1024:>21.1f} KB")
    print(f"{'  what moves':<{w}}{'one policy + opt. state':>24}{'whole trial checkpoint':>24}")
    print(f"{'save s per exploit (median)':<{w}}{'- (pool snapshot)':>24}{med(theirs['events'], 'save', 'seconds'):>22.3f} s")
    print(f"{'restore s per exploit (median)':<{w}}{med(ours['events'], 'exploit', 'seconds'):>22.3f} s"
          f"{med(theirs['events'], 'restore', 'seconds'):>22.3f} s")
    rebuild = statistics.median(rebuilds) if rebuilds else float("nan")
    print(f"{'trial rebuilt per restore':<{w}}{'no':>24}{f'yes, {rebuild:.2f} s (median)':>24}")
    for pid in POLICIES:
        for label, fn in (("best trial", max), ("mean over trials", statistics.mean)):
            a = fn(f[pid] for f in ours["finals"])
            b = fn(f[pid] for f in theirs["finals"])
            print(f"{f'{pid} return, {label}':<{w}}{a:>24.2f}{b:>24.2f}")
    a, b = (max(sum(f.values()) for f in r["finals"]) for r in (ours, theirs))
    print(f"{'sum of both, best trial':<{w}}{a:>24.2f}{b:>24.2f}")
    print(f"{'wall time of the sweep':<{w}}{ours['wall']:>22.0f} s{theirs['wall']:>22.0f} s")
    rounds = max(1, args.iters // args.every)
    print(f"(ours also writes every policy of every trial to the pool each round: "
          f"{ours['pool_bytes'] / rounds / 1024:.0f} KB per round, all trials)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a smoke run: 16 iterations, a round every 4")
    parser.add_argument("--trials", type=int, default=4)
    parser.add_argument("--iters", type=int, default=60)
    parser.add_argument("--every", type=int, default=6)
    parser.add_argument("--seed", type=int, default=0, help="the trials' seed, and both PBTs' draws")
    parser.add_argument("--json", default=None, help="append the run's figures here as one JSON line")
    parser.add_argument("--dir", default=None, help="where the pools and Tune's results go (default: a temp dir)")
    parser.add_argument("--summarize", metavar="JSONL", default=None,
                        help="print the figures of the runs --json appended there, instead of running")
    args = parser.parse_args()
    if args.summarize:
        summarize(args.summarize)
        return
    if args.quick:
        args.iters, args.every = 16, 4
    command = "python " + " ".join(sys.argv)
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    import ray

    started = datetime.datetime.now().astimezone()
    base = os.path.abspath(args.dir or tempfile.mkdtemp(prefix="bench-population-"))
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False)
    results = {}
    for method in ("ours", "tune"):
        results[method] = run(method, args, base)
        print(f"{method}: {results[method]['wall']:.0f} s", flush=True)
    ray.shutdown()
    report(results, args, started, command)
    if args.json:
        with open(args.json, "a") as f:
            f.write(json.dumps({"seed": args.seed, "iters": args.iters, "every": args.every, "trials": args.trials,
                                "started": f"{started:%Y-%m-%d %H:%M %Z}", "command": command,
                                **{m: {"finals": r["finals"], "wall": r["wall"]} for m, r in results.items()}}) + "\n")


def summarize(path: str) -> None:
    """Per policy, over the runs in ``path``: the mean (and its standard error) of each
    run's best trial and of each run's mean over trials, for both methods."""
    runs = [json.loads(line) for line in open(path) if line.strip()]
    print(f"{len(runs)} runs from {path} (seeds {sorted(r['seed'] for r in runs)}); "
          "mean +- standard error over runs")
    w = 30
    print(f"{'':<{w}}{'rllib_ext (per policy)':>24}{'Tune PBT (whole trial)':>24}")
    for pid in POLICIES:
        for label, fn in (("best trial", max), ("mean over trials", statistics.mean)):
            cells = []
            for method in ("ours", "tune"):
                xs = [fn(f[pid] for f in r[method]["finals"]) for r in runs]
                se = statistics.stdev(xs) / len(xs) ** 0.5 if len(xs) > 1 else float("nan")
                cells.append(f"{statistics.mean(xs):.2f} +- {se:.2f}")
            print(f"{f'{pid} return, {label}':<{w}}{cells[0]:>24}{cells[1]:>24}")


if __name__ == "__main__":
    main()
