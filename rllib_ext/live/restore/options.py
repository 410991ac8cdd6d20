"""The restore options, declared once: every entry point that restores takes these keywords.

``algo.restore(..., policies=)``, ``restore_policies``, ``config.restore_policies(...)``
(and its plain-dict key ``"restore_policies"``) and ``algo.load_policy`` each build one
:class:`RestoreOptions` from their keywords, so the names, the defaults and the checks
live here and nowhere else. Imports no Ray.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any, Dict, Mapping, Optional, Tuple

import numpy as np

from ...convert.mapping import NameMapping
from ...errors import InvalidArgumentError, did_you_mean


@dataclass(frozen=True, kw_only=True)
class RestoreOptions:
    """How chosen policies are restored into a live algorithm (beyond which ones, and from where).

    Raises:
        InvalidArgumentError: a value of the wrong kind (naming the option, the value and
            what it takes), or an unknown option (:meth:`from_keywords`).
    """

    freeze: bool = False
    """Take the restored ids out of ``policies_to_train``, so an opponent or a pretrained part stays as loaded."""

    trusted: bool = False
    """Fully unpickle old-stack policy files; the default safe mode runs no code from the checkpoint."""

    mapping: Optional[NameMapping] = None
    """For old-stack checkpoints into new-stack algorithms only, ``{old tensor name: new name or None}`` or a
    callable ``old weights -> new weights``, for models the built-in conversion table does not cover."""

    filters: bool = True
    """Carry the observation-filter statistics with the weights, so a policy acts on what it was trained on."""

    agents: Optional[Mapping[str, str]] = None
    """For new-stack checkpoints, ``{target agent: source agent}`` whose filter statistics to carry, where the
    source's policy mapping function cannot be read (a lambda pickled by value)."""

    training_state: bool = False
    """Also carry optimizer state, KL coefficient and SAC's alpha, so training goes on where it stopped."""

    def __post_init__(self) -> None:
        for name in ("freeze", "trusted", "filters", "training_state"):
            value = getattr(self, name)
            if not _is_flag(value):
                raise InvalidArgumentError(f"restore option {name}={value!r}: expected True or False")
            object.__setattr__(self, name, bool(value))
        if self.mapping is not None and not isinstance(self.mapping, Mapping) and not callable(self.mapping):
            raise InvalidArgumentError(
                f"restore option mapping={self.mapping!r}: expected None, a dict {{old tensor name: new name or "
                "None} or a callable (old weights -> new weights)"
            )
        if self.agents is not None:
            if not isinstance(self.agents, Mapping):
                raise InvalidArgumentError(
                    f"restore option agents={self.agents!r}: expected None or a dict {{target agent: source agent}}"
                )
            object.__setattr__(self, "agents", dict(self.agents))

    @classmethod
    def names(cls) -> Tuple[str, ...]:
        """The option names, in declaration order (what each entry point's ``**options`` takes)."""
        return tuple(f.name for f in fields(cls))

    @classmethod
    def from_keywords(cls, keywords: Mapping[str, Any]) -> "RestoreOptions":
        """The options an entry point was called with; an unknown name is an InvalidArgumentError
        with a near-match hint (a dataclass would raise a bare TypeError)."""
        for name in keywords:
            if name not in cls.names():
                raise InvalidArgumentError(
                    f"unknown restore option {name!r}; allowed: {', '.join(cls.names())}{did_you_mean(name, cls.names())}"
                )
        return cls(**keywords)

    def keywords(self) -> Dict[str, Any]:
        """``{name: value}`` of every option: what a config's restore spec stores (plain data)."""
        return {name: getattr(self, name) for name in self.names()}


def _is_flag(value: object) -> bool:
    """True, False, or what plain data writes for them (0, 1, numpy's bool)."""
    return isinstance(value, (bool, np.bool_)) or (type(value) is int and value in (0, 1))
