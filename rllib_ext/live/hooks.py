"""The contract between :class:`~rllib_ext.live.partial.PartialAlgorithm` and a feature.

A feature is one capability a ``...Partial`` algorithm carries (partial restore, training
scalars, the league, ...). The base class calls the same hooks on every feature, in the
order of :data:`rllib_ext.live.features.FEATURES`, so no feature depends on the order of
a class's bases, and adding one touches its own room and the lines of that module.
Features find each other through the algorithm (``algo.feature("league")``), by name,
never by importing each other: removing one breaks no other.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, ClassVar, Dict, Mapping, Optional, Tuple

if TYPE_CHECKING:
    from .seam.rllib_types import Algorithm


class Feature:
    """One capability of a ``...Partial`` algorithm, with hooks the base class calls.

    Config side (class methods, no instance): the config methods (``config.league(...)``)
    are declared on a class of the feature's own, which ``PartialConfig`` inherits through
    :mod:`rllib_ext.live.features`; ``config_keys`` are the plain-dict spellings
    (``tune.run(config={"league": {...}})``), handed to :meth:`configure`.
    Algorithm side: :meth:`build` makes the instance (None: the config does not ask for
    it), then :meth:`setup`, :meth:`after_step`, :meth:`state`/:meth:`set_state` and :meth:`stop`.
    """

    #: What other features ask the algorithm for: ``algo.feature(name)``.
    name: ClassVar[str] = ""
    #: Plain-dict keys this feature takes out of a config dict (see :meth:`configure`).
    config_keys: ClassVar[Tuple[str, ...]] = ()
    #: Where this feature's state sits in the algorithm's state (None: it keeps none).
    state_key: ClassVar[Optional[str]] = None

    @classmethod
    def configure(cls, config: object, key: str, value: object) -> None:
        """Apply the plain-dict spelling ``{key: value}`` through the config methods."""
        raise NotImplementedError(f"{cls.__name__} takes no plain-dict key {key!r}")

    @classmethod
    def prepare_trial_config(cls, config: Dict[str, Any]) -> None:
        """Driver side, before Tune ships ``config`` to a trial actor (whose working
        directory differs): make what the feature reads there independent of the driver."""

    @classmethod
    def build(cls, algo: Algorithm) -> Optional["Feature"]:
        """This feature for ``algo`` (after RLlib's setup), or None when not asked for."""
        return cls()

    def setup(self, algo: Algorithm) -> None:
        """Once, after RLlib's own setup and the features before this one."""

    def after_step(self, algo: Algorithm, result: Dict[str, Any]) -> Mapping[str, object]:
        """After every ``step()``; what to add under ``result["rllib_ext"]``."""
        return {}

    def state(self, algo: Algorithm) -> Optional[Dict[str, Any]]:
        """Plain data for the algorithm's checkpoint (None: nothing to keep)."""
        return None

    def set_state(self, algo: Algorithm, state: Mapping[str, object]) -> None:
        """Continue from :meth:`state` (called after RLlib restored its own state)."""

    def stop(self, algo: Algorithm) -> None:
        """When the algorithm stops (``algo.stop()``), before RLlib's cleanup: end what the feature started."""
