"""Serving: lightweight algorithms and single policies in and out of live RLlib objects.

``lightweight`` (zero-resource algorithms that only act), ``policy_io`` (one policy as a
single-policy directory, in and out; ``build_policy``), ``config`` (``config.lightweight()``).
"""
