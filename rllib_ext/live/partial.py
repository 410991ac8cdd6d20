"""The two bases of every ``...Partial`` class: :class:`PartialConfig` and :class:`PartialAlgorithm`.

Subclass each once, in front of the RLlib class::

    class PPOPartialConfig(PartialConfig, PPOConfig): ...
    class PPOPartial(PartialAlgorithm, PPO, config=PPOPartialConfig): ...

What the classes can do is a list of feature objects (:mod:`rllib_ext.live.features`):
the config class inherits each feature's declared config methods, the algorithm calls
each feature's hooks and hands one feature to another by name (:meth:`PartialAlgorithm.feature`);
this module names no feature. The methods here are the algorithm's own verbs
(``restore(policies=)``, ``act``, ``save_policy``, ...); the work lives in
:mod:`.restore`, :mod:`.serving` and :mod:`.snapshot`.
"""

from __future__ import annotations

import logging
import os
from typing import (TYPE_CHECKING, Any, ClassVar, Collection, Dict, List, Mapping, Optional, Self, Type, TypeVar, Union,
                    overload)

from ..checkpoint.storage import resolve_path
from ..errors import InvalidArgumentError
from ..pool.index import PoolEntry
from ..pool.policy_pool import PolicyPool
from ..pool.rules import DEFAULT_RATING
from .serving import lightweight as _lw
from .serving import policy_io
from . import snapshot
from . import tune
from .features import FEATURES, FeatureConfig
from .hooks import Feature
from .seam.backends import backend_class
from .seam.bridge import State
from .seam.ray_internals import set_trial_info, trial_info
from .restore.options import RestoreOptions
from .restore.policies import PartialRestoreReport, PolicySelection, restore_policies

if TYPE_CHECKING:  # for the checker, each base is what it stands in front of: an RLlib config / algorithm
    from .seam.rllib_types import Algorithm, AlgorithmConfig

    class _ConfigBase(FeatureConfig, AlgorithmConfig): ...

    _AlgorithmBase = Algorithm
else:  # at run time the RLlib class comes after it in the subclass's bases
    _ConfigBase = FeatureConfig
    _AlgorithmBase = object

logger = logging.getLogger(__name__)

TRIAL_INFO_KEY = "__trial_info__"  # ray.tune.result.TRIAL_INFO: how Tune passes a trial's identity

# Config class -> its algorithm class. Kept outside the classes: Ray disassembles an
# actor class recursively through class attributes, and a class<->class cycle there
# recurses forever.
ALGO_OF_CONFIG: Dict[type, type] = {}


F = TypeVar("F", bound=Feature)


class PartialConfig(_ConfigBase):
    """In front of an RLlib ``AlgorithmConfig``: the features' config methods
    (``restore_policies()``, ``lightweight()``, ``snapshot_policies()``, ``league()``,
    ``population()``) and their plain-dict keys."""

    def __init__(self, algo_class: Optional[type] = None) -> None:
        algo_class = algo_class or ALGO_OF_CONFIG.get(type(self))
        if algo_class is not None:  # a config in use: tune.run("XPartial") must know the name
            tune.register({algo_class.__name__: algo_class})
        super().__init__(algo_class=algo_class)

    def update_from_dict(self, config_dict: Mapping[str, Any]) -> Self:
        """Also accept each feature's plain-dict key, e.g. ``{"restore_policies": {...}}``."""
        rest = dict(config_dict)
        taken = [(f, key, rest.pop(key)) for f in FEATURES for key in f.config_keys if rest.get(key)]
        super().update_from_dict(rest)
        for feature, key, value in taken:
            feature.configure(self, key, value)
        return self

    def validate(self) -> None:
        """RLlib's checks, after the features' entries in RLlib's callbacks list are made what
        this stack instantiates (the old stack: one class composing them)."""
        composed = backend_class(self).callbacks_class(self.callbacks_class)
        if composed is not self.callbacks_class:
            self.callbacks_class = composed
        super().validate()


class PartialAlgorithm(_AlgorithmBase):
    """In front of an RLlib ``Algorithm``: policy-granular restore and the features' hooks.

    ``class XPartial(PartialAlgorithm, X, config=XPartialConfig)`` makes ``XPartialConfig``
    its default config (and ``XPartialConfig().algo_class`` this class).
    """

    partial_config_class: ClassVar[Optional[type]] = None
    partial_restore_reports: List[PartialRestoreReport]
    features: List[Feature]

    def __init_subclass__(cls, config: Optional[type] = None, **kwargs: object) -> None:
        super().__init_subclass__(**kwargs)
        if config is not None:
            cls.partial_config_class = config
            ALGO_OF_CONFIG[config] = cls

    @classmethod
    def get_default_config(cls) -> Any:  # each RLlib algorithm returns its own config class
        if cls.partial_config_class is None:
            return super().get_default_config()
        return cls.partial_config_class()

    def __init__(self, config: Any = None, *args: Any, **kwargs: Any) -> None:
        # Tune names the trial in the config dict it hands the actor (``__trial_info__``);
        # RLlib turns that dict into an AlgorithmConfig and drops the key, so ``trial_id``
        # read "default" in every trial. Kept here, put back first thing in setup().
        self._tune_trial_info = config.get(TRIAL_INFO_KEY) if isinstance(config, Mapping) else None
        self.features = []
        super().__init__(config, *args, **kwargs)

    def setup(self, config: Any) -> None:  # Trainable: a dict; Algorithm: an AlgorithmConfig
        if self._tune_trial_info is not None and trial_info(self) is None:
            set_trial_info(self, self._tune_trial_info)  # Trainable.trial_id / trial_name read it
        super().setup(config)
        self.partial_restore_reports = []
        self.features = [f for f in (cls.build(self) for cls in FEATURES) if f is not None]
        for feature in self.features:
            feature.setup(self)

    def step(self) -> Dict[str, Any]:
        """RLlib's step, plus what each feature reports under ``result["rllib_ext"]``."""
        result = super().step()
        for feature in self.features:
            extra = feature.after_step(self, result)
            if extra:
                result.setdefault("rllib_ext", {}).update(extra)
        return result

    def cleanup(self) -> None:
        """Each feature's :meth:`~rllib_ext.live.hooks.Feature.stop`, then RLlib's cleanup."""
        for feature in self.features:
            feature.stop(self)
        super().cleanup()

    @overload
    def feature(self, kind: str) -> Optional[Feature]: ...

    @overload
    def feature(self, kind: Type[F]) -> Optional[F]: ...

    def feature(self, kind: Union[str, Type[Feature]]) -> Optional[Feature]:
        """The feature this algorithm carries, by name (``"league"``) or class; None if the
        config did not ask for it. How features reach each other without importing each other."""
        for f in self.features:
            if (f.name == kind) if isinstance(kind, str) else isinstance(f, kind):
                return f
        return None

    # The features' state rides in the algorithm's state: new stack get_state/set_state,
    # old stack __getstate__/__setstate__ (what RLlib's own checkpoints call).
    def get_state(self, components: "str | Collection[str] | None" = None, *,
                  not_components: "str | Collection[str] | None" = None, **kwargs: object) -> Dict[str, Any]:
        """RLlib's state, plus each feature's (e.g. every module's KL coefficient / log
        alpha, which RLlib 2.60 saves nowhere, and the league)."""
        state = super().get_state(components, not_components=not_components, **kwargs)
        return self._with_features(state) if components is None else state

    def set_state(self, state: Dict[str, Any]) -> None:
        rest, taken = _split_features(state)
        super().set_state(rest)
        self._continue_features(taken)

    def __getstate__(self) -> Dict[str, Any]:
        return self._with_features(super().__getstate__())

    def __setstate__(self, state: Dict[str, Any]) -> None:
        rest, taken = _split_features(state)
        super().__setstate__(rest)
        self._continue_features(taken)

    def _with_features(self, state: Dict[str, Any]) -> Dict[str, Any]:
        for feature in self.features:
            key = feature.state_key
            data = feature.state(self) if key else None
            if key and data is not None:
                state[key] = data
        return state

    def _continue_features(self, taken: Mapping[str, Mapping[str, object]]) -> None:
        for feature in self.features:
            key = feature.state_key
            if key is not None and key in taken:
                feature.set_state(self, taken[key])

    @classmethod
    def default_resource_request(cls, config: Any) -> Any:
        # Tune calls this in the driver with the very dict it later ships to the trial
        # actor, whose working directory is the trial dir: the features fix paths here,
        # while the user's working directory is still the current one.
        if isinstance(config, dict):
            for feature in FEATURES:
                feature.prepare_trial_config(config)
        return super().default_resource_request(config)

    def restore(
        self, checkpoint_path: object, policies: Optional[PolicySelection] = None, **options: object
    ) -> Optional[PartialRestoreReport]:
        """RLlib's restore, or, with ``policies=``, a partial restore synced everywhere.

        Args:
            checkpoint_path: directory, ``ray.tune.Checkpoint`` or Tune training result.
            policies: ids to take, or ``{checkpoint id: algorithm id}``; None restores
                everything exactly as RLlib does.
            options: with ``policies=``, the :class:`~rllib_ext.RestoreOptions` keywords
                (``freeze``, ``trusted``, ``mapping``, ``filters``, ``agents``,
                ``training_state``); RLlib's full restore keeps the training state anyway.

        Returns:
            A :class:`PartialRestoreReport` for a partial restore, else None.

        Raises:
            InvalidArgumentError: an unknown option or a value that does not fit it;
                ``freeze=True`` or ``mapping=`` without ``policies=``; with ``policies=``, as
                ``restore_policies`` (a string or empty ``policies``, ...).
        """
        chosen = RestoreOptions.from_keywords(options)
        if policies is None:
            if chosen.freeze:
                raise InvalidArgumentError("freeze=True needs policies=[...] (which policies to freeze?)")
            if chosen.mapping is not None:
                raise InvalidArgumentError("mapping= needs policies=[...] (which policies to convert?)")
            return super().restore(absolute_checkpoint(checkpoint_path))
        report = restore_policies(self, local_path(checkpoint_path), policies, **chosen.keywords())
        self.partial_restore_reports.append(report)
        return report

    @classmethod
    def from_checkpoint(
        cls, path: object, *args: Any, lightweight: bool = False, policies: Optional[List[str]] = None,
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

        Raises:
            InvalidArgumentError: ``policies=`` without ``lightweight=True``.
        """
        if not lightweight:
            if policies is not None:
                raise InvalidArgumentError("policies= goes with lightweight=True (RLlib's own: policy_ids=)")
            return super().from_checkpoint(absolute_checkpoint(path), *args, **kwargs)
        return _lw.from_checkpoint(cls, local_path(path), policies, trusted=trusted)

    def act(
        self, obs: object, policy_id: str, explore: bool = False, agent_id: Optional[str] = None,
        state: Optional[State] = None,
    ) -> Any:
        """One action for one raw observation, filter included, on either API stack; a
        recurrent policy takes ``state=`` and returns ``(action, next_state)`` (see lightweight.act)."""
        return _lw.act(self, obs, policy_id, explore, agent_id, state)

    def initial_state(self, policy_id: str) -> Optional[State]:
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
        self, path: "str | os.PathLike[str]", policy_id: Optional[str] = None, **options: object
    ) -> PartialRestoreReport:
        """Add (or replace) a policy from a single-policy directory, with its observation
        filter, synced to all workers; ``options``: the :class:`~rllib_ext.RestoreOptions`
        keywords (``filters=False``: weights alone; ``training_state=True``: its training
        state too; ``freeze=True``: kept out of training, e.g. an opponent)."""
        report = policy_io.add_or_replace(self, path, policy_id, **options)
        self.partial_restore_reports.append(report)
        return report

    def snapshot_policy(
        self, policy_id: str, pool: "PolicyPool | str | os.PathLike[str]", *, rating: float = DEFAULT_RATING
    ) -> PoolEntry:
        """Add ``policy_id`` as it is now (weights + filter) to a :class:`PolicyPool`, with this
        algorithm's iteration and env steps; in a Tune trial, written as that trial."""
        return snapshot.snapshot_policy(self, policy_id, pool, rating=rating)

    def load_checkpoint(self, checkpoint_dir: "str | Dict[str, object] | None") -> None:
        """Tune hands us the trial's own checkpoint directory (resume, or ``tune.run(restore=...)``).

        Trainable's signature also allows a dict (or None): what ``save_checkpoint`` returned
        when it wrote no directory, which ``Algorithm.save_checkpoint`` never does."""
        if not isinstance(checkpoint_dir, str):
            raise InvalidArgumentError(f"load_checkpoint(checkpoint_dir={type(checkpoint_dir).__name__}): an "
                                       "algorithm's checkpoint is a directory (a str)")
        super().load_checkpoint(resolve_path(checkpoint_dir))


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


def _split_features(state: Mapping[str, Any]) -> "tuple[Dict[str, Any], Dict[str, Mapping[str, object]]]":
    """RLlib's part of a state, and the features' parts by state key."""
    rest = dict(state)
    keys = {f.state_key for f in FEATURES if f.state_key}
    return rest, {k: rest.pop(k) for k in keys if rest.get(k) is not None}
