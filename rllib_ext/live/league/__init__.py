"""The self-play league: snapshots, slots, sampling, evaluation matches, exploiters.

``engine`` (:class:`~rllib_ext.live.league.engine.League`), ``play`` (outcomes counted on
the env runners), ``evaluation`` (matches between snapshots for the payoff table),
``exploiters``, and ``feature`` (``config.snapshot_policies``/``config.league`` and the
hooks). Who plays next is decided Ray-free, in :mod:`rllib_ext.pool.matchmaking`.
"""
