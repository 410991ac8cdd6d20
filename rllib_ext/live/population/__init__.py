"""Per-policy population-based training: rank, exploit, perturb, one policy at a time.

``engine`` (the decisions, plain Python), ``hyperparams`` (one module's hyperparameters
read and set so they hold), ``feature`` (``config.population`` and the hooks).
"""
