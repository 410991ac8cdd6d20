"""Partial restore when the algorithm is set up: ``config.restore_policies(...)``.

Specs are kept on the config as a list of plain dicts, so they survive ``to_dict()``,
``get_state()`` and Tune. The restores run once, in ``setup``; when Tune then restores
the trial from its *own* checkpoint (resume after a crash), that later restore
overwrites the initial one, so trained weights win. Every result reports them.
"""

from __future__ import annotations

import logging
import os
from typing import Any, Dict, List, Mapping

from ...checkpoint.reader import ids_in, open_checkpoint
from ...checkpoint.storage import resolve_path
from ...errors import InvalidArgumentError, did_you_mean, not_found
from ..hooks import Feature
from ..seam.ray_internals import config_extra, set_config_extra
from ..seam.rllib_types import AlgorithmConfig, ConfigT
from .filters import ask_source_agents
from .options import RestoreOptions
from .policies import PolicySelection, normalize_selection, restore_policies

logger = logging.getLogger(__name__)

CONFIG_KEY = "restore_policies"  # the plain-dict spelling for tune.run(config={...})
SPECS_ATTR = "_partial_restores"  # on the config; the name rllib_ext 0.3 checkpoints carry


def specs_of(config: AlgorithmConfig) -> List[Dict[str, Any]]:
    """The restore specs recorded on ``config`` (a list of plain dicts)."""
    return list(config_extra(config, SPECS_ATTR) or [])


def restore_policies_on_setup(
    config: ConfigT,
    checkpoint: "str | os.PathLike[str]",
    policies: PolicySelection,
    **options: object,
) -> ConfigT:
    """Restore ``policies`` from ``checkpoint`` when the algorithm is set up.

    May be called several times (several source checkpoints). Ids are checked against
    the checkpoint right away (Ray-free), so a typo fails here, in the driver, not
    minutes later inside a Tune trial; so is whether the new-stack filter statistics to
    carry can be told apart (``agents=``, see :func:`rllib_ext.live.restore.filters.ask_source_agents`).

    Args:
        checkpoint: checkpoint directory; relative paths are resolved now.
        policies: ids, or ``{checkpoint id: algorithm id}``.
        options: the :class:`~rllib_ext.RestoreOptions` keywords, as ``algo.restore`` takes
            them (``freeze``, ``trusted``, ``mapping``, ``filters``, ``agents``, ``training_state``).

    Returns:
        The config, for chaining.

    Raises:
        InvalidArgumentError: ``policies`` does not fit; an unknown option or a value that does not fit it.
        PolicyNotFoundError: a policy id is not in the checkpoint.
        CheckpointError: the checkpoint cannot be read, or its filters cannot be told apart.
    """
    chosen = RestoreOptions.from_keywords(options)
    path = resolve_path(checkpoint)
    selection = normalize_selection(policies)
    if "://" not in path:
        ckpt, layout = open_checkpoint(path)
        available = ids_in(ckpt, layout)
        for src in selection:
            if src not in available:
                raise not_found("policy", src, path, available)
        ask_source_agents(ckpt, layout, selection, trusted=chosen.trusted, filters=chosen.filters,
                          agents=chosen.agents)
    spec = {"checkpoint": path, "policies": selection, **chosen.keywords()}
    set_config_extra(config, SPECS_ATTR, specs_of(config) + [spec])
    return config


class RestoreConfig:
    """``config.restore_policies(...)``, declared on every ``...Partial`` config."""

    restore_policies = restore_policies_on_setup


class RestoreFeature(Feature):
    """Runs the config's restore specs in ``setup``; reports every partial restore."""

    name = "restore"
    config_keys = (CONFIG_KEY,)

    @classmethod
    def configure(cls, config: Any, key: str, value: Any) -> None:  # a plain dict's entry, checked below
        allowed = ("checkpoint", "policies", *RestoreOptions.names())
        for spec in value if isinstance(value, (list, tuple)) else [value]:
            if not isinstance(spec, Mapping):
                raise InvalidArgumentError(f"{CONFIG_KEY!r}: a restore is a dict with the keys {', '.join(allowed)} "
                                           f"(or a list of such dicts), got {spec!r}")
            spec = dict(spec)
            missing = [k for k in ("checkpoint", "policies") if k not in spec]
            if missing:
                raise InvalidArgumentError(f"{CONFIG_KEY!r}: a restore needs {' and '.join(missing)}; given: "
                                           f"{', '.join(spec) or 'no key'}; allowed: {', '.join(allowed)}")
            unknown = [k for k in spec if k not in allowed]
            if unknown:
                raise InvalidArgumentError(f"unknown key(s) in {CONFIG_KEY!r}: {', '.join(unknown)}; allowed: "
                                           f"{', '.join(allowed)}{did_you_mean(unknown[0], allowed)}")
            restore_policies_on_setup(config, spec.pop("checkpoint"), spec.pop("policies"), **spec)

    @classmethod
    def prepare_trial_config(cls, config: Dict[str, Any]) -> None:
        # The trial actor's working directory is the trial dir: resolve relative paths now.
        specs = config.get(CONFIG_KEY)
        if not specs:
            return
        specs = [specs] if isinstance(specs, Mapping) else list(specs)
        config[CONFIG_KEY] = [
            {**spec, "checkpoint": resolve_path(spec["checkpoint"])}
            if isinstance(spec, Mapping) and "checkpoint" in spec else spec
            for spec in specs
        ]

    def setup(self, algo: Any) -> None:  # a ...Partial algorithm: its partial_restore_reports
        for spec in specs_of(algo.config):
            # Specs written before an option existed (0.3 checkpoints) lack it: its default.
            options = {k: v for k, v in spec.items() if k in RestoreOptions.names()}
            report = restore_policies(algo, spec["checkpoint"], spec["policies"], **options)
            logger.info("rllib_ext: %s", report)
            algo.partial_restore_reports.append(report)

    def after_step(self, algo: Any, result: Dict[str, Any]) -> Mapping[str, object]:  # as setup
        """What the partial restores did, as strings (loggers skip them quietly; TensorBoard
        warns on a list of strings): ``restored`` maps target id -> "checkpoint:source id",
        ``frozen`` is "id,id,..."."""
        reports = algo.partial_restore_reports
        if not reports:
            return {}
        return {
            "restored": {t: f"{r.checkpoint}:{s}" for r in reports for s, t in r.restored.items()},
            "frozen": ",".join(sorted({p for r in reports for p in r.frozen})),
        }
