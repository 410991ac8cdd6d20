"""Population-based training per policy: ``config.population(pool, policies=, every=, ...)``.

Tune's ``PopulationBasedTraining`` copies whole trials. Here each policy of a
multi-agent trial is exploited on its own, through a pool the trials share:

* **snapshot**: every ``every`` iterations each trial adds each population policy to
  the pool with its training state, and, as the entry's ``meta``, its score and
  hyperparameters (the writer is the Tune trial, see :func:`~rllib_ext.live.snapshot.pool_for`);
* **exploit**: a policy whose score is in the bottom ``quantile`` of the latest snapshots
  of that policy across writers loads the snapshot of a top-``quantile`` writer through
  the partial restore (weights, observation filter, optimizer moments, KL coefficient,
  log alpha; validated first, nothing changes on error). The trial's other policies
  are untouched;
* **explore**: the donor's hyperparameters, perturbed, are set for that module only
  (:mod:`rllib_ext.live.population.hyperparams`), so the next update uses them.

The hyperparameters, the sampler's RNG and the iteration of the last round are this
feature's state: they ride in the algorithm's checkpoint and are set again after every
restore (RLlib rebuilds optimizers and schedulers from the config, which would lose them).
"""

from __future__ import annotations

import logging
import math
import os
import random
from dataclasses import asdict, dataclass, field
from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence

from ...errors import InvalidArgumentError, not_found
from ...pool.index import PoolEntry
from ...pool.policy_pool import PolicyPool
from ..hooks import Feature
from ..restore.policies import restore_policies
from ..seam.backends import backend_for
from ..seam.ray_internals import config_extra, set_config_extra
from ..seam.rllib_types import Algorithm, AlgorithmConfig, ConfigT, config_of
from ..snapshot import drop_writer_entries_after, pool_for, pool_path, snapshot_policy
from .engine import META_TAG, Perturb, donor_for, perturbed
from .hyperparams import check_names, config_values, set_hyperparams

logger = logging.getLogger(__name__)

CONFIG_KEY = "population"
SPEC_ATTR = "_rllib_ext_population"  # on the config
STATE_KEY = "rllib_ext_population"  # in the algorithm's state
SCORES = ("return", "elo")

#: ``(result, policy_id) -> score``: higher is better.
ScoreFn = Callable[[Mapping[str, Any], str], float]


@dataclass
class PopulationSpec:
    """``config.population(...)`` as plain data (``score`` may be a callable)."""

    pool: str
    policies: List[str]
    every: int = 10
    quantile: float = 0.25
    score: "str | ScoreFn" = "return"
    perturb: Dict[str, Sequence[float]] = field(default_factory=dict)  # a Perturb
    seed: int = 0
    writer: Optional[str] = None  # an explicit pool writer (outside Tune; a trial uses its id)


def check_spec(spec: PopulationSpec, config: AlgorithmConfig, policy_ids: Sequence[str]) -> None:
    """Refuse what cannot work, naming the policy or the hyperparameter (driver side)."""
    ids = sorted(policy_ids)
    if not spec.policies:
        raise InvalidArgumentError("population(policies=[]): name at least one policy")
    to_train = getattr(config, "policies_to_train", None)
    for pid in spec.policies:
        if pid not in ids:
            raise not_found("policy", pid, "the algorithm's policies", ids)
        if isinstance(to_train, (list, tuple, set, frozenset)) and pid not in to_train:
            raise InvalidArgumentError(f"population policy {pid!r} is not trained (not in policies_to_train: "
                             f"{', '.join(sorted(to_train)) or '-'}): exploiting a frozen policy changes nothing")
    if int(spec.every) < 1:
        raise InvalidArgumentError(f"population(every={spec.every}): every must be >= 1")
    if not 0 < float(spec.quantile) <= 0.5:
        raise InvalidArgumentError(f"population(quantile={spec.quantile}): quantile must be in (0, 0.5]")
    if not (callable(spec.score) or spec.score in SCORES):
        raise InvalidArgumentError(f"population(score={spec.score!r}): give 'return', 'elo' or a callable(result, policy_id)")
    check_names(config, list(spec.perturb))
    for name, choice in spec.perturb.items():
        values = list(choice) if isinstance(choice, (list, tuple)) else None
        if not values or not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values):
            raise InvalidArgumentError(f"population(perturb={{{name!r}: {choice!r}}}): give a tuple of factors or a list "
                             "of values (numbers)")
        if isinstance(choice, tuple) and any(v <= 0 for v in values):
            raise InvalidArgumentError(f"population(perturb={{{name!r}: {choice!r}}}): every factor must be > 0")


def population(
    config: ConfigT, pool: "PolicyPool | str | os.PathLike[str]", *, policies: Sequence[str], every: int = 10,
    quantile: float = 0.25, score: "str | ScoreFn" = "return", perturb: Optional[Perturb] = None, seed: int = 0,
) -> ConfigT:
    """Population-based training per policy, across the trials that share ``pool``.

    Args:
        pool: a :class:`~rllib_ext.PolicyPool` or its directory / object-store URI. In a
            Tune trial each trial writes as itself; a pool made with ``writer=`` keeps
            that writer outside Tune.
        policies: the policies exploited and perturbed, each on its own.
        every: iterations between rounds (snapshot, then exploit and explore).
        quantile: a policy in the bottom ``quantile`` of the latest snapshots of that
            policy (one per writer) takes a top-``quantile`` writer's; in (0, 0.5].
        score: ``"return"`` (the policy's mean episode return in the result), ``"elo"``
            (the league's rating of its ``of``) or ``callable(result, policy_id) -> float``.
        perturb: ``{hyperparameter: (factor, ...)}`` multiplies the donor's value by one
            of the factors; ``{hyperparameter: [value, ...]}`` resamples one of the values.
            Settable per module: see :data:`rllib_ext.live.population.hyperparams.SETTABLE`.
        seed: seeds the draws (donor and perturbation); its state is checkpointed.

    Returns:
        The config, for chaining.

    Raises:
        PolicyNotFoundError: a policy is not one of the algorithm's.
        InvalidArgumentError: a policy that is not trained, an unknown hyperparameter or one that
            cannot be set per module on this stack, ``quantile`` outside (0, 0.5], a
            factor <= 0, ``every`` < 1, an unknown ``score``.
    """
    writer = None if isinstance(pool, (str, os.PathLike)) or getattr(pool, "writer_is_default", True) else pool.writer
    perturb = {str(k): (tuple(v) if isinstance(v, tuple) else list(v) if isinstance(v, list) else v)
               for k, v in (perturb or {}).items()}
    spec = PopulationSpec(pool_path(pool), [str(p) for p in policies], _number("every", every, int),
                          _number("quantile", quantile, float), score, perturb, _number("seed", seed, int), writer)
    check_spec(spec, config, list(config.policies or {}) or spec.policies)
    set_config_extra(config, SPEC_ATTR, asdict(spec))
    return config


def _number(name: str, value: Any, kind: type) -> Any:
    """``kind(value)``, or an InvalidArgumentError naming the argument (``int("x")`` is a bare ValueError)."""
    try:
        return kind(value)
    except (TypeError, ValueError):
        raise InvalidArgumentError(f"population({name}={value!r}): {name} must be "
                                   f"{'an int' if kind is int else 'a number'}") from None


class PopulationConfig:
    """``config.population(...)``, declared on every ``...Partial`` config."""

    population = population


def check_elo(policies: Sequence[str], learner: Optional[str]) -> None:
    """``score="elo"`` ranks by the league's rating of its learner: only that policy has one."""
    for pid in policies:
        if pid != learner:
            raise InvalidArgumentError(f"population(score='elo'): policy {pid!r} is not a league's of ({learner!r}); "
                             "'elo' ranks by the league's rating of its learner")


def policy_return(result: Mapping[str, Any], policy_id: str) -> float:
    """The policy's mean episode return in a result (either stack); NaN before any episode ended."""
    runners = result.get("env_runners") or {}
    for key in ("module_episode_returns_mean", "policy_reward_mean"):
        value = (runners.get(key) or {}).get(policy_id)
        if value is not None:
            return float(value)
    return float("nan")


def drop_lost_rounds(pool: PolicyPool, iteration: int) -> List[str]:
    """Remove this writer's population snapshots taken after ``iteration`` (the checkpoint's).

    A resume rewinds the trial to its checkpoint; the rounds a crashed run played after it
    are played again. Left in the pool, the lost run's snapshots would rank beside their
    re-run twins (and other trials could exploit a policy this trial no longer has).
    """
    lost = drop_writer_entries_after(pool, iteration, where=lambda e: (e.meta or {}).get(META_TAG))
    if lost:
        logger.warning("population resumed at iteration %d: removed %s, taken after it by the run that was lost",
                       iteration, ", ".join(lost))
    return lost


class PopulationFeature(Feature):
    """Snapshots, exploits and explores the population policies after every ``every`` iterations."""

    name = "population"
    config_keys = (CONFIG_KEY,)
    state_key = STATE_KEY

    def __init__(self, spec: PopulationSpec) -> None:
        self.spec = spec
        self.hyperparams: Dict[str, Dict[str, float]] = {}
        self.rng = random.Random(spec.seed)
        self.last_round = 0
        self.exploits: Dict[str, List[str]] = {}  # policy -> the snapshot ids it took, in order
        self._pool: Optional[PolicyPool] = None

    @classmethod
    def configure(cls, config: Any, key: str, value: Any) -> None:  # a plain dict's entry, checked by the call
        value = dict(value)
        population(config, value.pop("pool"), **value)

    @classmethod
    def prepare_trial_config(cls, config: Dict[str, Any]) -> None:
        spec = config.get(CONFIG_KEY)
        if isinstance(spec, Mapping) and "pool" in spec:  # the trial's working directory differs
            config[CONFIG_KEY] = {**spec, "pool": pool_path(spec["pool"])}

    @classmethod
    def build(cls, algo: Algorithm) -> Optional["PopulationFeature"]:
        spec = config_extra(config_of(algo), SPEC_ATTR)
        return cls(PopulationSpec(**spec)) if spec else None

    def pool(self, algo: Algorithm) -> PolicyPool:
        """The shared pool, written to as this Tune trial (or the spec's writer outside Tune)."""
        if self._pool is None:
            trial = getattr(algo, "trial_id", "default")
            if self.spec.writer and not (trial and trial != "default"):
                self._pool = PolicyPool(self.spec.pool, writer=self.spec.writer)
            else:
                self._pool = pool_for(algo, self.spec.pool)
        return self._pool

    def setup(self, algo: Any) -> None:  # a ...Partial algorithm: algo.feature("league")
        check_spec(self.spec, algo.config, backend_for(algo).ids())
        league = algo.feature("league")  # by name: the population imports nothing of the league
        if self.spec.score == "elo":
            check_elo(self.spec.policies, league.learner if league is not None else None)
        if league is not None:
            for pid in self.spec.policies:
                if pid in league.slots:
                    raise InvalidArgumentError(f"population policy {pid!r} is a league slot (frozen): it cannot be exploited")
        names = list(self.spec.perturb)
        self.rng = random.Random(f"{self.spec.seed}:{self.pool(algo).writer}")
        self.hyperparams = {pid: config_values(algo.config, pid, names) for pid in self.spec.policies}

    def score(self, algo: Any, result: Mapping[str, Any], policy_id: str) -> float:  # as setup
        if callable(self.spec.score):
            return float(self.spec.score(result, policy_id))
        if self.spec.score == "elo":
            return float(algo.feature("league").rating)
        return policy_return(result, policy_id)

    def after_step(self, algo: Algorithm, result: Dict[str, Any]) -> Mapping[str, object]:
        iteration = algo.iteration + 1
        scores = {pid: self.score(algo, result, pid) for pid in self.spec.policies}
        taken: Dict[str, Optional[str]] = {pid: None for pid in self.spec.policies}
        if iteration - self.last_round >= self.spec.every:
            taken = self.round(algo, iteration, scores)
            self.last_round = iteration
        return {CONFIG_KEY: {pid: {"exploited_from": taken[pid], "hyperparams": dict(self.hyperparams[pid]),
                                   "score": scores[pid]} for pid in self.spec.policies}}

    def round(self, algo: Algorithm, iteration: int, scores: Mapping[str, float]) -> Dict[str, Optional[str]]:
        """Snapshot every population policy, then let each weak one exploit and explore."""
        pool = self.pool(algo)
        for pid in self.spec.policies:
            score = scores[pid] if math.isfinite(scores[pid]) else None
            snapshot_policy(algo, pid, pool, iteration=iteration, training_state=True,
                            meta={META_TAG: True, "score": score, "hyperparams": self.hyperparams[pid]})
        taken: Dict[str, Optional[str]] = {}
        for pid in self.spec.policies:
            donor = donor_for(pool.writer, pool.entries(policy=pid), self.spec.quantile, self.rng)
            taken[pid] = self.exploit(algo, pid, donor) if donor is not None else None
        return taken

    def exploit(self, algo: Algorithm, policy_id: str, donor: PoolEntry) -> str:
        """Load ``donor`` into ``policy_id`` (with training state), then set its perturbed hyperparameters."""
        restore_policies(algo, donor.path, {policy_id: policy_id}, training_state=True)
        values = perturbed((donor.meta or {}).get("hyperparams") or self.hyperparams[policy_id],
                           self.spec.perturb, self.rng)
        set_hyperparams(algo, policy_id, values)
        self.hyperparams[policy_id] = values
        self.exploits.setdefault(policy_id, []).append(donor.id)
        return donor.id

    def state(self, algo: Algorithm) -> Optional[Dict[str, Any]]:
        version, internal, gauss = self.rng.getstate()
        return {"iteration": int(algo.iteration), "hyperparams": {p: dict(v) for p, v in self.hyperparams.items()},
                "last_round": self.last_round, "rng": [version, list(internal), gauss], "exploits": {p: list(v) for p, v in self.exploits.items()}}

    def set_state(self, algo: Algorithm, state: Mapping[str, Any]) -> None:
        if state.get("iteration") is not None:  # absent in states written before it was kept
            drop_lost_rounds(self.pool(algo), int(state["iteration"]))
        version, internal, gauss = state["rng"]
        self.rng.setstate((version, tuple(internal), gauss))
        self.last_round = int(state["last_round"])
        self.exploits = {p: list(v) for p, v in (state.get("exploits") or {}).items()}
        self.hyperparams = {p: dict(v) for p, v in state["hyperparams"].items()}
        for pid in self.exploits:  # RLlib rebuilt optimizers and schedulers: set the perturbed values again
            set_hyperparams(algo, pid, self.hyperparams[pid])
