"""Register the ``...Partial`` algorithms with Tune under their class names.

After this, ``tune.run("PPOPartial", config=...)`` and ``Tuner("PPOPartial", ...)`` work.
Importing :mod:`rllib_ext` calls it when Ray is already imported; otherwise the first
access to a ``...Partial`` name (or :func:`rllib_ext.register_trainables`) does.
"""

from __future__ import annotations

_registered = False


def register_all() -> None:
    """Register every algorithm in :data:`rllib_ext.algorithms.ALGORITHMS` (idempotent)."""
    global _registered
    if _registered:
        return
    from ray.tune.registry import register_trainable

    from .algorithms import ALGORITHMS

    for name, cls in ALGORITHMS.items():
        register_trainable(name, cls)
    _registered = True
