"""PSRO with an RLlib PPO oracle on OpenSpiel poker, judged by OpenSpiel's exact exploitability.

A standalone prototype (RLlib, OpenSpiel, numpy, scipy; no rllib_ext) to find the recipe the
league's ``sample="nash"`` should ship with (issue 27). One loop:

1. a PPO policy ``learner`` (new API stack, torch) plays both seats of RLlib's own
   ``OpenSpielEnv`` against frozen population members ``pop_k``; each episode draws its
   opponent from the current meta-strategy (``--mode psro``), or the learner plays itself
   (``--mode selfplay``, the plain baseline at the same env-step budget);
2. after ``--phase`` env steps the learner is snapshotted into the next free ``pop_k`` slot,
   and (``--fresh``) restarted from fresh weights for the next best response;
3. the payoff table of the population is computed exactly (sequence-form products over
   OpenSpiel's terminal histories, checked against ``expected_game_score.policy_value``) and
   by ``--games`` sampled matches per pair; the meta-game (symmetric, zero-sum) is solved
   with scipy's HiGHS ``linprog``;
4. the exploitability of the Nash mixture (the behaviour policy of the mixed strategy, as
   OpenSpiel's ``policy_aggregator`` builds it) and of the latest learner are measured by
   ``open_spiel.python.algorithms.exploitability``.

Each policy is read out as a table: for every information state, the module's logits on the
observation tensor ``OpenSpielEnv`` gives it (``state.observation_tensor(player)``), masked to
the legal actions and softmaxed. Uniform random Kuhn play scores 0.458; Nash scores 0.

Run (under the shared lock):
    flock /tmp/ray-heavy.lock python bench/kuhn_psro_prototype.py --mode psro --steps 100000
    python bench/kuhn_psro_prototype.py --plot bench/notes/runs/A.jsonl bench/notes/runs/B.jsonl --out fig.png
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

import numpy as np

# ---------------------------------------------------------------- game tables (no Ray)


class GameTables:
    """Information states and terminal histories of a 2-player zero-sum OpenSpiel game.

    Policies are arrays ``(S, A)`` over the rows of an OpenSpiel ``TabularPolicy``; one extra
    row ``S`` (all ones) pads the sequences so that products vectorize.
    """

    def __init__(self, game):
        from open_spiel.python import policy as os_policy

        self.game = game
        self.tab = os_policy.TabularPolicy(game)
        self.S, self.A = self.tab.action_probability_array.shape
        self.mask = self.tab.legal_actions_mask.astype(bool)
        self.obs = np.array(
            [s.observation_tensor(s.current_player()) for s in self.tab.states], np.float32
        )
        self.player = np.array([s.current_player() for s in self.tab.states])
        term = {"c": [], "u": [], "seq": ([], [])}
        own = {}  # info-state row -> own sequence [(row, action), ...] leading to it
        self._walk(game.new_initial_state(), 1.0, ([], []), term, own)
        self.chance = np.array(term["c"])
        self.u0 = np.array(term["u"])
        self.z_idx, self.z_act = [], []
        for p in range(2):
            idx, act = self._pad(term["seq"][p])
            self.z_idx.append(idx)
            self.z_act.append(act)
        self.s_idx, self.s_act = self._pad([own[i] for i in range(self.S)])

    def _walk(self, state, c, seqs, term, own):
        if state.is_terminal():
            term["c"].append(c)
            term["u"].append(state.returns()[0])
            for p in range(2):
                term["seq"][p].append(list(seqs[p]))
            return
        if state.is_chance_node():
            for a, pr in state.chance_outcomes():
                self._walk(state.child(a), c * pr, seqs, term, own)
            return
        p = state.current_player()
        row = self.tab.state_lookup[state.information_state_string(p)]
        own.setdefault(row, list(seqs[p]))
        for a in state.legal_actions():
            nxt = (seqs[0] + [(row, a)], seqs[1]) if p == 0 else (seqs[0], seqs[1] + [(row, a)])
            self._walk(state.child(a), c, nxt, term, own)

    def _pad(self, seqs):
        d = max(1, max(len(s) for s in seqs))
        idx = np.full((len(seqs), d), self.S, np.int64)
        act = np.zeros((len(seqs), d), np.int64)
        for i, s in enumerate(seqs):
            for j, (r, a) in enumerate(s):
                idx[i, j], act[i, j] = r, a
        return idx, act

    @staticmethod
    def _padded(pols):
        pols = np.asarray(pols)
        return np.concatenate([pols, np.ones((pols.shape[0], 1, pols.shape[2]))], axis=1)

    def reach(self, pols, p):
        """(K, Z): own reach of each terminal history for seat p under each policy."""
        P = self._padded(pols)
        return np.prod(P[:, self.z_idx[p], self.z_act[p]], axis=-1)

    def payoff(self, pols):
        """(K, K) symmetric zero-sum table: row's mean return against column, seats averaged."""
        r0, r1 = self.reach(pols, 0), self.reach(pols, 1)
        u = (r0 * (self.chance * self.u0)) @ r1.T  # u[i, j]: i in seat 0 vs j in seat 1
        return 0.5 * (u - u.T)

    def sampled_payoff(self, pols, games, rng, prev=None):
        """Table of ``games`` sampled matches per pair (half in each seat); ``prev`` keeps old cells."""
        k = len(pols)
        r0, r1 = self.reach(pols, 0), self.reach(pols, 1)
        out = np.zeros((k, k))
        if prev is not None:
            out[: prev.shape[0], : prev.shape[0]] = prev
        start = 0 if prev is None else prev.shape[0]
        for i in range(k):
            for j in range(max(i + 1, start), k):
                tot = 0.0
                for a, b, sign in ((i, j, 1.0), (j, i, -1.0)):
                    pz = self.chance * r0[a] * r1[b]
                    z = rng.choice(len(pz), size=games // 2, p=pz / pz.sum())
                    tot += sign * self.u0[z].sum()
                out[i, j] = tot / (2 * (games // 2))
                out[j, i] = -out[i, j]
        return out

    def mixture(self, pols, weights):
        """Behaviour policy of the mixed strategy (what OpenSpiel's policy_aggregator computes)."""
        pols, w = np.asarray(pols), np.asarray(weights, float)
        P = self._padded(pols)
        r = np.prod(P[:, self.s_idx, self.s_act], axis=-1) * w[:, None]  # (K, S)
        num = np.einsum("ks,ksa->sa", r, pols)
        den = r.sum(0)[:, None]
        uniform = self.mask / self.mask.sum(1, keepdims=True)
        return np.where(den > 1e-12, num / np.maximum(den, 1e-300), uniform)

    def exploitability(self, probs):
        from open_spiel.python.algorithms import exploitability

        self.tab.action_probability_array[:] = probs
        return float(exploitability.exploitability(self.game, self.tab))

    def value_check(self, a, b):
        """OpenSpiel's own expected_game_score for a in seat 0 vs b in seat 1 (cross-check)."""
        import copy

        from open_spiel.python.algorithms import expected_game_score

        pa, pb = copy.deepcopy(self.tab), copy.deepcopy(self.tab)
        pa.action_probability_array[:] = a
        pb.action_probability_array[:] = b
        return expected_game_score.policy_value(self.game.new_initial_state(), [pa, pb])[0]


def solve_symmetric_zero_sum(M):
    """Nash mixture of the symmetric zero-sum game M (row payoff), by scipy HiGHS."""
    from scipy.optimize import linprog

    k = M.shape[0]
    # max v  s.t.  x^T M[:, j] >= v for all j, sum x = 1, x >= 0
    c = np.zeros(k + 1)
    c[-1] = -1.0
    A_ub = np.hstack([-M.T, np.ones((k, 1))])
    res = linprog(
        c, A_ub=A_ub, b_ub=np.zeros(k), A_eq=np.r_[np.ones(k), 0.0][None], b_eq=[1.0],
        bounds=[(0, None)] * k + [(None, None)], method="highs",
    )
    x = np.clip(res.x[:k], 0, None)
    return x / x.sum()


# ---------------------------------------------------------------- RLlib part

META = {"probs": np.array([1.0]), "mode": "psro", "selfplay_share": 0.0}


def mapping(agent_id, episode, **kwargs):
    if META["mode"] == "selfplay":
        return "learner"
    rng = np.random.default_rng(hash(episode.id_) & 0xFFFFFFFF)
    if rng.random() < META["selfplay_share"]:  # this episode: the learner against itself
        return "learner"
    seat = int(rng.integers(2))
    opp = int(rng.choice(len(META["probs"]), p=META["probs"]))
    return "learner" if agent_id == seat else f"pop_{opp}"


def build(args, slots):
    import pyspiel
    from ray.rllib.algorithms.ppo import PPOConfig
    from ray.rllib.core.rl_module.default_model_config import DefaultModelConfig
    from ray.rllib.env.wrappers.open_spiel import OpenSpielEnv
    from ray.tune.registry import register_env

    game = args.game
    register_env("os_env", lambda _: OpenSpielEnv(pyspiel.load_game(game)))
    policies = {"learner", *(f"pop_{k}" for k in range(slots))}
    config = (
        PPOConfig()
        .environment("os_env")
        .env_runners(num_env_runners=0, episodes_to_numpy=False)
        .learners(num_learners=0)
        .training(
            lr=args.lr, entropy_coeff=args.entropy, train_batch_size_per_learner=args.batch,
            minibatch_size=args.minibatch, num_epochs=args.epochs, gamma=1.0, lambda_=args.lam,
            vf_loss_coeff=args.vf_coeff, use_kl_loss=bool(args.kl), clip_param=args.clip,
        )
        .multi_agent(policies=policies, policy_mapping_fn=mapping, policies_to_train=["learner"])
        .rl_module(model_config=DefaultModelConfig(fcnet_hiddens=args.hidden, vf_share_layers=False))
        .debugging(seed=args.seed)
    )
    return config.build_algo()


def module_probs(algo, mid, tables):
    import torch

    module = algo.get_module(mid)
    with torch.no_grad():
        logits = module.forward_inference({"obs": torch.from_numpy(tables.obs)})["action_dist_inputs"]
    logits = logits.numpy().astype(np.float64)
    logits = np.where(tables.mask, logits, -np.inf)
    logits -= logits.max(1, keepdims=True)
    p = np.exp(logits)
    return p / p.sum(1, keepdims=True)


def env_steps(result):
    return int(result["env_runners"]["num_env_steps_sampled_lifetime"])


def run(args):
    import pyspiel
    import ray

    tables = GameTables(pyspiel.load_game(args.game))
    rng = np.random.default_rng(args.seed)
    if args.schedule:  # explicit phase lengths, e.g. 5000,5000,10000,...
        lengths = [int(x) for x in args.schedule.split(",")]
    else:
        lengths = [args.phase] * -(-args.steps // args.phase)
    ends = list(np.minimum(np.cumsum(lengths), args.steps))
    n_phases = len(lengths)
    args.snap_every = args.snap_every or args.phase
    snaps = [max(1, n // args.snap_every) for n in lengths]
    slots = sum(snaps) + 1
    META["mode"] = args.mode
    META["selfplay_share"] = args.selfplay_share
    ray.init(num_cpus=1, include_dashboard=False, log_to_driver=False, configure_logging=False)
    t0 = time.time()
    algo = build(args, slots)
    init = algo.learner_group.get_weights()  # fresh, independent inits for every slot
    log = open(args.log, "w") if args.log else None

    def emit(rec):
        rec = {"t": round(time.time() - t0, 1), **rec}
        print(json.dumps(rec), flush=True)
        if log:
            log.write(json.dumps(rec) + "\n")
            log.flush()

    emit({"args": vars(args)})
    pop = [module_probs(algo, "pop_0", tables)]  # pop_0: its random init (near uniform)
    algo.set_weights({"learner": init["pop_1"]})
    exact = tables.payoff(pop)
    sampled = np.zeros((1, 1))
    meta = np.array([1.0])
    steps = iters = 0
    for phase in range(n_phases):
        begin, snaps_per_phase = (ends[phase - 1] if phase else 0), snaps[phase]
        META["probs"] = np.r_[meta, np.zeros(len(pop) - len(meta))] if args.mode == "psro" else meta
        if args.fresh and phase > 0 and args.mode == "psro":  # plain self-play never restarts
            algo.set_weights({"learner": init[f"pop_{len(pop)}"]})
        start = len(meta)
        for snap in range(snaps_per_phase):
            target = min(args.steps, begin + (snap + 1) * args.snap_every)
            if snap == snaps_per_phase - 1:
                target = ends[phase]
            while steps < target:
                steps = env_steps(algo.train())
                iters += 1
                if args.log_every_iter and iters % args.log_every_iter == 0:
                    latest = module_probs(algo, "learner", tables)
                    emit({"steps": steps, "latest": tables.exploitability(latest)})
            # snapshot the learner into the population (a frozen slot for later phases)
            if len(pop) < slots:
                algo.set_weights({f"pop_{len(pop)}": algo.learner_group.get_weights(["learner"])["learner"]})
            latest = module_probs(algo, "learner", tables)
            pop.append(latest)
        exact = tables.payoff(pop)
        if args.games:
            sampled = tables.sampled_payoff(pop, args.games, rng, prev=sampled)
        # best-response quality: learner's value against the mixture it trained on
        br_value = float(exact[-1, :start] @ meta)
        nash_exact = solve_symmetric_zero_sum(exact)
        rec = {
            "phase": phase, "steps": steps, "pop": len(pop),
            "latest": tables.exploitability(latest),
            "mix_exact": tables.exploitability(tables.mixture(pop, nash_exact)),
            "br_value": round(br_value, 4),
            "target_expl": tables.exploitability(tables.mixture(pop[:start], meta)),
            "support_exact": int((nash_exact > 1e-3).sum()),
        }
        if args.games:
            nash_sampled = solve_symmetric_zero_sum(sampled)
            rec["mix_sampled"] = tables.exploitability(tables.mixture(pop, nash_sampled))
        if args.mode == "selfplay":
            rec["mix_uniform"] = tables.exploitability(tables.mixture(pop[1:], np.ones(len(pop) - 1)))
        meta = nash_sampled if (args.games and args.table == "sampled") else nash_exact
        rec["meta"] = [round(float(x), 3) for x in meta]
        emit(rec)
        if args.log:  # the population as tables, for post-hoc sampled-table analysis (--sampled-study)
            np.savez_compressed(os.path.splitext(args.log)[0] + ".npz", pop=np.asarray(pop), meta=meta)
    emit({"done": True, "steps": steps, "wall": round(time.time() - t0, 1)})
    algo.stop()
    ray.shutdown()


def selftest(game_name):
    """Check the vectorized tables against OpenSpiel's own evaluators on random policies."""
    import pyspiel
    from open_spiel.python.algorithms import policy_aggregator

    t = GameTables(pyspiel.load_game(game_name))
    rng = np.random.default_rng(0)
    pols = []
    for _ in range(3):
        p = rng.random((t.S, t.A)) * t.mask
        pols.append(p / p.sum(1, keepdims=True))
    M = t.payoff(pols)
    v01 = t.value_check(pols[0], pols[1])
    v10 = t.value_check(pols[1], pols[0])
    assert abs(M[0, 1] - 0.5 * (v01 - v10)) < 1e-9, (M[0, 1], v01, v10)
    w = np.array([0.2, 0.5, 0.3])
    mix = t.mixture(pols, w)
    import copy

    tabs = []
    for p in pols:
        tp = copy.deepcopy(t.tab)
        tp.action_probability_array[:] = p
        tabs.append(tp)
    agg = policy_aggregator.PolicyAggregator(t.game).aggregate([0, 1], [tabs, tabs], [list(w), list(w)])
    err = 0.0
    for i, s in enumerate(t.tab.states):
        ap = agg.action_probabilities(s)
        for a, pr in ap.items():
            err = max(err, abs(pr - mix[i, a]))
    assert err < 1e-6, err
    x = solve_symmetric_zero_sum(M)
    assert (x @ M).min() > -1e-9
    print(f"selftest {game_name}: S={t.S} Z={len(t.u0)} ok (aggregator max diff {err:.2e}); "
          f"uniform exploitability {t.exploitability(t.mask / t.mask.sum(1, keepdims=True)):.4f}")


def sampled_study(path, game_name, stride=1, reps=10):
    """Nash mixture of a finished population from N sampled games per pair, vs the exact table.

    ``stride`` keeps every stride-th policy (pop_0 and, with --snap-every, the phase ends).
    """
    import pyspiel

    t = GameTables(pyspiel.load_game(game_name))
    pop = list(np.load(path)["pop"])[::stride]
    exact = solve_symmetric_zero_sum(t.payoff(pop))
    print(f"{path}: {len(pop)} policies; exact-table Nash mixture {t.exploitability(t.mixture(pop, exact)):.4f}")
    for games in (20, 50, 100, 200, 500, 1000, 2000, 5000, 10000):
        vals = []
        for rep in range(reps):
            rng = np.random.default_rng(rep)
            x = solve_symmetric_zero_sum(t.sampled_payoff(pop, games, rng))
            vals.append(t.exploitability(t.mixture(pop, x)))
        print(f"  {games:6d} games/pair: mixture {np.mean(vals):.4f} +- {np.std(vals):.4f} "
              f"(max {np.max(vals):.4f}, {reps} draws)")


def exact_oracle_psro(game_name, iterations):
    """Reference without RL: PSRO whose oracle is OpenSpiel's exact (deterministic) best response."""
    import pyspiel
    from open_spiel.python.algorithms import exploitability

    t = GameTables(pyspiel.load_game(game_name))
    uniform = t.mask / t.mask.sum(1, keepdims=True)
    pop, meta = [uniform], np.array([1.0])
    for it in range(iterations):
        t.tab.action_probability_array[:] = t.mixture(pop, meta)
        br = np.zeros_like(uniform)
        for p in range(2):
            for key, a in exploitability.best_response(t.game, t.tab, p)["best_response_action"].items():
                br[t.tab.state_lookup[key], a] = 1.0
        br[br.sum(1) == 0] = uniform[br.sum(1) == 0]
        pop.append(br)
        meta = solve_symmetric_zero_sum(t.payoff(pop))
        print(f"best responses {it + 1}: Nash mixture exploitability {t.exploitability(t.mixture(pop, meta)):.4f}")


def plot(paths, out):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5))
    for n, path in enumerate(paths):
        color = f"C{n}"
        recs = [json.loads(line) for line in open(path)]
        name = os.path.splitext(os.path.basename(path))[0]
        ph = [r for r in recs if "phase" in r]
        it = [r for r in recs if "latest" in r and "phase" not in r]
        mode = recs[0]["args"]["mode"]
        if it:
            ax.plot([r["steps"] for r in it], [r["latest"] for r in it], lw=0.8, alpha=0.5,
                    color=color, label=f"{name} ({mode}): latest policy")
        if ph:
            ax.plot([r["steps"] for r in ph], [r["mix_exact"] for r in ph], "o-" if mode == "psro" else "o:",
                    color=color, label=f"{name} ({mode}): Nash mixture of its snapshots (exact table)")
            if "mix_sampled" in ph[0]:
                ax.plot([r["steps"] for r in ph], [r["mix_sampled"] for r in ph], "x--", color=color,
                        label=f"{name}: Nash mixture (sampled table)")
    ax.axhline(0.4583, color="grey", ls=":", lw=0.8, label="uniform random")
    ax.axhline(0.05, color="green", ls=":", lw=0.8, label="goal 0.05")
    ax.set_xlabel("env steps")
    ax.set_ylabel("exploitability (OpenSpiel, exact)")
    ax.set_ylim(0, 0.7)
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    print("wrote", out)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--game", default="kuhn_poker")
    ap.add_argument("--mode", choices=["psro", "selfplay"], default="psro")
    ap.add_argument("--steps", type=int, default=100_000)
    ap.add_argument("--phase", type=int, default=10_000, help="env steps per best response")
    ap.add_argument("--schedule", default="", help="phase lengths in env steps, comma-separated (overrides --phase)")
    ap.add_argument("--selfplay-share", type=float, default=0.0,
                    help="share of episodes in which the learner plays itself instead of the mixture")
    ap.add_argument("--snap-every", type=int, default=0,
                    help="env steps between snapshots into the population (default: one per phase)")
    ap.add_argument("--fresh", type=int, default=1, help="1: restart the learner from fresh weights each phase")
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--entropy", type=float, default=0.0)
    ap.add_argument("--batch", type=int, default=2000)
    ap.add_argument("--minibatch", type=int, default=256)
    ap.add_argument("--epochs", type=int, default=5)
    ap.add_argument("--lam", type=float, default=1.0)
    ap.add_argument("--kl", type=int, default=1, help="PPO's adaptive KL penalty (RLlib default: on)")
    ap.add_argument("--clip", type=float, default=0.2)
    ap.add_argument("--vf-coeff", type=float, default=1.0)
    ap.add_argument("--hidden", type=lambda s: [int(x) for x in s.split(",")], default=[64, 64])
    ap.add_argument("--games", type=int, default=0, help="sampled matches per pair (0: exact table only)")
    ap.add_argument("--table", choices=["exact", "sampled"], default="exact", help="which table drives the meta-strategy")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--log", default=None, help="JSON-lines log")
    ap.add_argument("--log-every-iter", type=int, default=1, help="latest policy's exploitability every k iterations (0: never)")
    ap.add_argument("--selftest", action="store_true")
    ap.add_argument("--plot", nargs="*", default=None)
    ap.add_argument("--sampled-study", default=None, help="a run's .npz: sampled vs exact table")
    ap.add_argument("--study-stride", type=int, default=1)
    ap.add_argument("--exact-oracle", type=int, default=0, help="N: PSRO with exact best responses, N iterations (no Ray)")
    ap.add_argument("--out", default="kuhn_psro.png")
    args = ap.parse_args(argv)
    if args.selftest:
        selftest(args.game)
    elif args.exact_oracle:
        exact_oracle_psro(args.game, args.exact_oracle)
    elif args.sampled_study:
        sampled_study(args.sampled_study, args.game, args.study_stride)
    elif args.plot:
        plot(args.plot, args.out)
    else:
        run(args)


if __name__ == "__main__":
    sys.exit(main())
