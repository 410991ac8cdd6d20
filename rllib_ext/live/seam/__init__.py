"""The seam to Ray and to Ray's releases: the one place that knows RLlib's private names.

``rllib_types`` names RLlib's classes for annotations, ``ray_internals`` every private
attribute we touch, ``compat`` the supported releases and their differences, ``backends``
(over ``backend_base``) every difference between the API stacks; ``bridge``,
``filter_state``, ``carry_training`` and ``quiesce`` move plain data in and out of live
learners, policies and env runners for them. Everything else in ``live/`` builds on this.
"""
