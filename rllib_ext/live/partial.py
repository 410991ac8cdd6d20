"""The methods every ``...Partial`` algorithm and config class adds to its RLlib parent.

:func:`rllib_ext.algorithms.partial` puts these mixins in front of an RLlib class; the work
itself lives in :mod:`.restore`, :mod:`.lightweight`, :mod:`.policy_io` and :mod:`.snapshot`.
"""

from __future__ import annotations

import logging
import os
from typing import Any, Dict, List, Mapping, Optional

from ..pool.index import PoolEntry
from ..pool.policy_pool import PolicyPool
from ..pool.rules import DEFAULT_RATING
from ..checkpoint.reader import ids_in, open_checkpoint
from ..checkpoint.storage import resolve_path
from ..checkpoint.training_state import SCALARS_KEY
from ..convert.mapping import NameMapping
from ..errors import not_found
from . import lightweight as _lw
from . import policy_io, snapshot
from .carry_filters import ask_source_agents
from .restore import PartialRestoreReport, PolicySelection, normalize_selection, restore_policies
from .carry_training import algorithm_scalars, set_algorithm_scalars

logger = logging.getLogger(__name__)

CONFIG_KEY = "restore_policies"  # the plain-dict spelling for tune.run(config={...})
TRIAL_INFO_KEY = "__trial_info__"  # ray.tune.result.TRIAL_INFO: how Tune passes a trial's identity


# Config class -> its algorithm class. Kept outside the classes: Ray disassembles an
# actor class recursively through class attributes, and a class<->class cycle there
# recurses forever.
ALGO_OF_CONFIG: Dict[type, type] = {}


class PartialConfigMixin:
    """Adds ``restore_policies()`` to an AlgorithmConfig subclass."""

    def __init__(self, algo_class: Optional[type] = None) -> None:
        super().__init__(algo_class=algo_class or ALGO_OF_CONFIG.get(type(self)))  # type: ignore[call-arg]
        # A list of plain dicts, so it survives to_dict()/get_state() and Tune.
        self._partial_restores: List[Dict[str, Any]] = []

    def restore_policies(
        self,
        checkpoint: "str | os.PathLike[str]",
        policies: PolicySelection,
        *,
        freeze: bool = False,
        trusted: bool = False,
        filters: bool = True,
        agents: Optional[Mapping[str, str]] = None,
        training_state: bool = False,
    ):
        """Restore ``policies`` from ``checkpoint`` when the algorithm is set up.

        May be called several times (several source checkpoints). Ids are checked
        against the checkpoint right away (Ray-free), so a typo fails here, in the
        driver, not minutes later inside a Tune trial; so is whether the new-stack
        filter statistics to carry can be told apart (``agents=``, see
        :func:`rllib_ext.live.filters.ask_source_agents`).

        Args:
            checkpoint: checkpoint directory; relative paths are resolved now.
            policies: ids, or ``{checkpoint id: algorithm id}``.
            freeze: keep the restored policies out of ``policies_to_train``.
            trusted: fully unpickle old-stack policy files (default: safe mode).
            filters: carry the observation-filter statistics (False: weights alone).
            agents: ``{target agent: source agent}`` for new-stack filter statistics.
            training_state: also carry optimizer state, KL coefficient, alpha (see
                :mod:`rllib_ext.live.training_state`).
        """
        path = resolve_path(checkpoint)
        mapping = normalize_selection(policies)
        if "://" not in path:
            ckpt, layout = open_checkpoint(path)
            available = ids_in(ckpt, layout)
            for src in mapping:
                if src not in available:
                    raise not_found("policy", src, path, available)
            ask_source_agents(ckpt, layout, mapping, trusted=trusted, filters=filters, agents=agents)
        self._partial_restores = list(getattr(self, "_partial_restores", None) or []) + [
            {"checkpoint": path, "policies": mapping, "freeze": bool(freeze), "trusted": bool(trusted),
             "filters": bool(filters), "agents": dict(agents) if agents is not None else None,
             "training_state": bool(training_state)}
        ]
        return self

    def lightweight(self):
        """Zero remote workers, learners and evaluation runners, 0 CPUs for the algorithm.

        With ``restore_policies(...)`` given first, the algorithm holds only the restored
        policies and the training env is not built: their spaces come from the checkpoints.
        Without, the env is kept (nothing else records the spaces). For acting, saving and
        ``save_policy``, not for training.
        """
        spaces = {}
        for spec in getattr(self, "_partial_restores", None) or []:
            found = _lw.checkpoint_spaces(*open_checkpoint(spec["checkpoint"]), list(spec["policies"]))
            for src, tgt in spec["policies"].items():
                spaces[tgt] = found[src]
        return _lw.make_lightweight(self, spaces) if spaces else _lw.zero_resources(self)

    def update_from_dict(self, config_dict: Mapping[str, Any]):
        """Also accept ``{"restore_policies": {...} or [{...}, ...]}`` in plain dicts."""
        config_dict = dict(config_dict)
        specs = config_dict.pop(CONFIG_KEY, None)
        super().update_from_dict(config_dict)  # type: ignore[misc]
        if specs:
            for spec in [specs] if isinstance(specs, Mapping) else list(specs):
                spec = dict(spec)
                self.restore_policies(
                    spec.pop("checkpoint"),
                    spec.pop("policies"),
                    freeze=spec.pop("freeze", False),
                    trusted=spec.pop("trusted", False),
                    filters=spec.pop("filters", True),
                    agents=spec.pop("agents", None),
                    training_state=spec.pop("training_state", False),
                )
                if spec:
                    raise ValueError(f"unknown key(s) in {CONFIG_KEY!r}: {', '.join(spec)}")
        return self


class PartialAlgorithmMixin:
    """Adds policy-granular restore to an RLlib Algorithm subclass."""

    partial_restore_reports: List[PartialRestoreReport]

    def __init__(self, config: Any = None, *args: Any, **kwargs: Any) -> None:
        # Tune names the trial in the config dict it hands the actor (``__trial_info__``);
        # RLlib turns that dict into an AlgorithmConfig and drops the key, so ``trial_id``
        # read "default" in every trial. Kept here, put back first thing in setup().
        self._tune_trial_info = config.get(TRIAL_INFO_KEY) if isinstance(config, Mapping) else None
        super().__init__(config, *args, **kwargs)  # type: ignore[call-arg]

    def setup(self, config: Any) -> None:
        if getattr(self, "_tune_trial_info", None) is not None and getattr(self, "_trial_info", None) is None:
            self._trial_info = self._tune_trial_info  # Trainable.trial_id / trial_name read it
        super().setup(config)  # type: ignore[misc]
        self.partial_restore_reports = []
        for spec in getattr(self.config, "_partial_restores", None) or []:
            report = restore_policies(
                self, spec["checkpoint"], spec["policies"], freeze=spec["freeze"], trusted=spec["trusted"],
                filters=spec.get("filters", True), agents=spec.get("agents"),
                training_state=spec.get("training_state", False),
            )
            logger.info("rllib_ext: %s", report)
            self.partial_restore_reports.append(report)

    def step(self) -> Dict[str, Any]:
        """RLlib's step, plus what the partial restores did, so Tune results show it.

        Strings only (loggers skip them quietly; TensorBoard warns on a list of strings):
        ``restored`` maps target id -> "checkpoint:source id", ``frozen`` is "id,id,...".
        """
        result = super().step()  # type: ignore[misc]
        if self.partial_restore_reports:
            result["rllib_ext"] = {
                "restored": {
                    t: f"{r.checkpoint}:{s}" for r in self.partial_restore_reports for s, t in r.restored.items()
                },
                "frozen": ",".join(sorted({p for r in self.partial_restore_reports for p in r.frozen})),
            }
        return result

    @classmethod
    def default_resource_request(cls, config: Any) -> Any:
        # Tune calls this in the driver with the very dict it later ships to the trial
        # actor, whose working directory is the trial dir: make relative paths absolute
        # here, while the user's working directory is still the current one.
        if isinstance(config, dict) and config.get(CONFIG_KEY):
            specs = config[CONFIG_KEY]
            specs = [specs] if isinstance(specs, Mapping) else list(specs)
            config[CONFIG_KEY] = [
                {**spec, "checkpoint": resolve_path(spec["checkpoint"])}
                if isinstance(spec, Mapping) and "checkpoint" in spec
                else spec
                for spec in specs
            ]
        return super().default_resource_request(config)  # type: ignore[misc]

    def restore(
        self,
        checkpoint_path: Any,
        policies: Optional[PolicySelection] = None,
        *,
        freeze: bool = False,
        trusted: bool = False,
        mapping: Optional[NameMapping] = None,
        filters: bool = True,
        agents: Optional[Mapping[str, str]] = None,
        training_state: bool = False,
    ) -> Optional[PartialRestoreReport]:
        """RLlib's restore, or, with ``policies=``, a partial restore synced everywhere.

        Args:
            checkpoint_path: directory, ``ray.tune.Checkpoint`` or Tune training result.
            policies: ids to take, or ``{checkpoint id: algorithm id}``; None restores
                everything exactly as RLlib does.
            freeze: with ``policies=``, stop training the restored ids.
            trusted: with ``policies=``, fully unpickle old-stack policy files.
            mapping: with ``policies=``, an old-stack checkpoint into this new-stack
                algorithm: ``{old tensor name: new name or None}`` or a callable
                ``old weights -> new weights`` for models the built-in table does not
                cover (see :mod:`rllib_ext.convert`).
            filters: with ``policies=``, carry the observation-filter statistics with
                the weights (see :mod:`rllib_ext.live.filters`); False: weights alone.
            agents: with ``policies=``, new-stack checkpoints: ``{target agent: source
                agent}`` whose filter statistics to carry.
            training_state: with ``policies=``, also carry optimizer state, KL
                coefficient and alpha (RLlib's full restore keeps them here anyway).

        Returns:
            A :class:`PartialRestoreReport` for a partial restore, else None.
        """
        if policies is None:
            if freeze:
                raise ValueError("freeze=True needs policies=[...] (which policies to freeze?)")
            if mapping is not None:
                raise ValueError("mapping= needs policies=[...] (which policies to convert?)")
            return super().restore(absolute_checkpoint(checkpoint_path))  # type: ignore[misc]
        report = restore_policies(
            self, local_path(checkpoint_path), policies, freeze=freeze, trusted=trusted, mapping=mapping,
            filters=filters, agents=agents, training_state=training_state,
        )
        self.partial_restore_reports.append(report)
        return report

    def get_state(self, components: Any = None, *, not_components: Any = None, **kwargs: Any) -> Dict[str, Any]:
        """RLlib's state, plus every module's KL coefficient / log alpha (RLlib 2.60 saves
        neither), so ``Algorithm.from_checkpoint`` and a Tune resume continue exactly."""
        state = super().get_state(components, not_components=not_components, **kwargs)  # type: ignore[misc]
        if components is None:  # (the old stack never calls this: RLlib raises there first)
            scalars = algorithm_scalars(self)
            if scalars:
                state[SCALARS_KEY] = scalars
        return state

    def set_state(self, state: Dict[str, Any]) -> None:
        super().set_state(state)  # type: ignore[misc]
        if state.get(SCALARS_KEY):
            set_algorithm_scalars(self, state[SCALARS_KEY])

    @classmethod
    def from_checkpoint(
        cls, path: Any, *args: Any, lightweight: bool = False, policies: Optional[List[str]] = None,
        trusted: bool = False, **kwargs: Any,
    ) -> Any:
        """RLlib's ``from_checkpoint``; with ``lightweight=True`` a zero-resource build.

        Args:
            path: checkpoint directory (relative paths are fine).
            lightweight: no remote workers/learners/evaluation, 0 CPUs, no training env,
                only ``policies`` (default: all of the checkpoint's).
            policies: with ``lightweight=True``: which policies to hold.
            trusted: with ``lightweight=True``: full unpickling of old-stack policy files.
                (The checkpoint's config is cloudpickled either way, as upstream does.)
        """
        if not lightweight:
            if policies is not None:
                raise ValueError("policies= goes with lightweight=True (RLlib's own: policy_ids=)")
            return super().from_checkpoint(absolute_checkpoint(path), *args, **kwargs)  # type: ignore[misc]
        return _lw.from_checkpoint(cls, local_path(path), policies, trusted=trusted)

    def act(
        self, obs: Any, policy_id: str, explore: bool = False, agent_id: Optional[str] = None, state: Any = None
    ) -> Any:
        """One action for one raw observation, filter included, on either API stack; a
        recurrent policy takes ``state=`` and returns ``(action, next_state)`` (see lightweight.act)."""
        return _lw.act(self, obs, policy_id, explore, agent_id, state)

    def initial_state(self, policy_id: str) -> Any:
        """A recurrent policy's initial state for :meth:`act` (None without state)."""
        return _lw.initial_state(self, policy_id)

    def save_policy(
        self, policy_id: str, path: "str | os.PathLike[str]", *, agent_id: Optional[str] = None,
        training_state: bool = False,
    ) -> str:
        """Write one policy (with its observation-filter statistics; ``training_state=True``:
        its optimizer state, KL coefficient, alpha too, format 1.2) as a single-policy directory."""
        return policy_io.save_policy(self, policy_id, path, agent_id=agent_id, training_state=training_state)

    def load_policy(
        self, path: "str | os.PathLike[str]", policy_id: Optional[str] = None, *, trusted: bool = False,
        filters: bool = True, training_state: bool = False,
    ) -> PartialRestoreReport:
        """Add (or replace) a policy from a single-policy directory, with its observation
        filter (``filters=False``: weights alone; ``training_state=True``: its training
        state too), synced to all workers."""
        report = policy_io.add_or_replace(self, path, policy_id, trusted=trusted, filters=filters,
                                          training_state=training_state)
        self.partial_restore_reports.append(report)
        return report

    def snapshot_policy(
        self, policy_id: str, pool: "PolicyPool | str | os.PathLike[str]", *, rating: float = DEFAULT_RATING
    ) -> PoolEntry:
        """Add ``policy_id`` as it is now (weights + filter) to a :class:`PolicyPool`, with this
        algorithm's iteration and env steps; in a Tune trial, written as that trial."""
        return snapshot.snapshot_policy(self, policy_id, pool, rating=rating)

    def load_checkpoint(self, checkpoint_dir: str) -> None:
        # Tune hands us the trial's own checkpoint (resume, or tune.run(restore=...)).
        super().load_checkpoint(resolve_path(checkpoint_dir))  # type: ignore[misc]


def local_path(checkpoint: Any) -> "str | os.PathLike[str]":
    """A path from a str / PathLike / tune Checkpoint / Tune training result.

    Plain paths are returned as given: the restore resolves them (once).
    """
    checkpoint = getattr(checkpoint, "checkpoint", checkpoint)  # _TrainingResult
    if hasattr(checkpoint, "filesystem"):  # ray.tune.Checkpoint
        if checkpoint.filesystem.type_name == "local":
            return checkpoint.path
        return checkpoint.to_directory()
    return checkpoint


def absolute_checkpoint(checkpoint: Any) -> Any:
    """Make a relative local path absolute before RLlib/Tune sees it (pyarrow needs it).

    Handles a path, a ``ray.tune.Checkpoint`` and Tune's training result (what
    ``tune.run(restore="relative/dir")`` hands the trial actor).
    """
    if hasattr(checkpoint, "filesystem"):  # ray.tune.Checkpoint: PathLike, but refuses fspath
        path = checkpoint.path
        if checkpoint.filesystem.type_name == "local" and not os.path.isabs(path):
            from ray.tune import Checkpoint

            return Checkpoint.from_directory(resolve_path(path))
        return checkpoint
    if isinstance(checkpoint, (str, os.PathLike)):
        return resolve_path(checkpoint)
    inner = getattr(checkpoint, "checkpoint", None)
    if inner is not None and hasattr(checkpoint, "metrics"):  # _TrainingResult
        checkpoint.checkpoint = absolute_checkpoint(inner)
    return checkpoint
