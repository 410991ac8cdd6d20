"""Everything that touches a live RLlib algorithm (imports Ray), by concern.

Rule: ``live`` may import ``pool``, ``act``, ``convert``, ``checkpoint``, ``errors`` and
``_version``, and nothing above it. Inside, one room per concern: ``seam`` (Ray's private
names, its releases, the API stacks behind ``Backend``) at the bottom; ``restore`` and
``serving`` on it; the features ``league`` and ``population``, which never import each
other; at the top, ``hooks`` (what a feature is), ``features`` (their registration),
``snapshot`` (a live policy into a pool), ``tune`` and ``partial`` (the base classes).
``tests/test_layout.py``'s ``LIVE_ALLOWED`` holds the exact table. Importing this package
checks nothing: the Ray version is checked where a live feature is first used
(``seam.compat.require_supported_ray``).
"""
