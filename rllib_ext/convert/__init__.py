"""Old-stack -> new-stack tensor mapping, numpy only: which old model a policy holds
(:mod:`.families`), how its tensors map onto the new stack's default modules
(:mod:`.lstm`, :mod:`.vision`, and :mod:`.mapping` for the whole policy)."""
