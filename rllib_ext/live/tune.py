"""Register algorithms with Tune under their class names.

After :func:`rllib_ext.register_trainables`, ``tune.run("PPOPartial", config=...)`` and
``Tuner("PPOPartial", ...)`` work. The first access to a ``...Partial`` name through
:mod:`rllib_ext` calls it, and making a ``...Partial`` config registers its algorithm;
importing the package registers nothing.
"""

from __future__ import annotations

from typing import Mapping, Set

_registered: Set[str] = set()


def register(algorithms: Mapping[str, type]) -> None:
    """Register each ``{name: Algorithm class}`` with Tune once."""
    from ray.tune.registry import register_trainable

    for name, cls in algorithms.items():
        if name not in _registered:
            register_trainable(name, cls)
            _registered.add(name)
