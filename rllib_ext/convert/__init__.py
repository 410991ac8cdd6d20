"""Old-stack -> new-stack tensor mapping for RLlib's default models, numpy only.

Rule: imports :mod:`rllib_ext.checkpoint` and :mod:`rllib_ext.errors` only (not
:mod:`rllib_ext.act`, which builds on it).
"""
