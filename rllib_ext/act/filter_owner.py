"""Whose observation filter a new-stack module acts through: the agent its mapping function names.

Why its own module: on the new stack filters are kept per agent, not per module, so
``NumpyPolicy`` must find the one agent that plays the module, calling the checkpoint's
``policy_mapping_fn`` only when that runs no new code.
"""

from __future__ import annotations

import sys
from typing import Callable, List, Mapping, Optional

from ..checkpoint import format as fmt
from ..checkpoint.codecs.safe_pickle import Placeholder
from ..checkpoint.reader import decode_file
from ..checkpoint.storage import CheckpointDir
from ..errors import CheckpointError, not_found


def agent_of(label: str, ckpt: CheckpointDir, module_id: str, agents: List[str], agent_id: Optional[str], trusted: bool) -> str:
    """The agent whose filter statistics the module's observations go through."""
    if agent_id is not None:
        if agent_id not in agents:
            raise not_found("agent", agent_id, f"the observation filters of {ckpt.uri}", agents)
        return agent_id
    fn = mapping_fn(ckpt, trusted)
    if fn is not None:
        mine = [a for a in agents if str(fn(a, None)) == module_id]
        if len(mine) == 1:
            return mine[0]
        if not mine:
            raise CheckpointError(
                f"{label}: no agent with an observation filter ({', '.join(agents)}) is mapped to it by "
                "the checkpoint's policy_mapping_fn; pass agent_id= or filters=False"
            )
        agents = mine
    elif len(agents) == 1:
        return agents[0]
    raise CheckpointError(
        f"{label}: agents {', '.join(agents)} each have their own observation filter and "
        f"{'several play this module' if fn is not None else 'the policy_mapping_fn cannot be called safely'}; "
        "pass agent_id= to say whose observations these are"
    )


def mapping_fn(ckpt: CheckpointDir, trusted: bool) -> Optional[Callable[..., object]]:
    """The source config's ``policy_mapping_fn`` if callable without importing or running new code."""
    if not ckpt.exists(fmt.CTOR_ARGS_FILE):
        return None
    try:
        cfg = decode_file(ckpt, fmt.CTOR_ARGS_FILE, trusted=trusted)["ctor_args_and_kwargs"][0][0]
        state = cfg.state if isinstance(cfg, Placeholder) else (cfg if isinstance(cfg, dict) else vars(cfg))
        if not isinstance(state, Mapping):  # a pickled config's state; anything else has no mapping fn
            return None
        fn = state["policy_mapping_fn"]
    except (KeyError, IndexError, TypeError, CheckpointError):
        return None
    if isinstance(fn, type) and issubclass(fn, Placeholder):
        found = sys.modules.get(fn.module)
        for part in fn.name.split("."):
            found = getattr(found, part, None)
        return found if callable(found) else None
    return fn if callable(fn) and not isinstance(fn, Placeholder) else None
