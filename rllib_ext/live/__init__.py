"""Everything that touches a live RLlib algorithm (imports Ray).

Rule: ``live`` may import ``pool``, ``act``, ``convert``, ``checkpoint``, ``errors`` and
``_version``, and nothing above it. Every difference between the API stacks sits behind
``backends``' ``Backend``; every private attribute of Ray that we touch is named once, in
``ray_internals``; what a ``...Partial`` algorithm carries is a list of ``features``.
Importing this package checks nothing: the Ray version is checked where a live feature is
first used (``compat.require_supported_ray``).
"""
