"""Partial restore: chosen policies of a checkpoint into a live algorithm, and what rides along.

``policies`` (the restore itself, validated before anything changes), ``filters`` (the
observation-filter statistics carried with a policy), ``migration`` (old-stack policies
written as a new-stack checkpoint), and two features: ``feature`` (``config.restore_policies``)
and ``scalars`` (each module's KL coefficient / log alpha in the algorithm's checkpoint).
"""
