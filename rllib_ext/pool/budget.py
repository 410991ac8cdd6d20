"""What a pool cost to fill: env steps of training and of evaluation games, per writer. Ray-free.

```
<pool>/budget/<writer>.json   {"budget_version": 1, "writer", "training_env_steps",
                               "evaluation_env_steps", "evaluation_games"}
```
``budget_version`` history: 1 (rllib_ext 0.4.0) the first. A pool written before it has no
``budget/`` directory and reads as a budget of nothing recorded (``recorded=False``).

A league's evaluation games are paid for in env steps exactly as training is, so a figure
read from a pool must say what both cost. Each writer keeps its *cumulative* counts in its
own file, replaced whole (so a resume that rewinds the counts just writes them again); a
reader sums the writers' files.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Dict

from ..errors import CheckpointFormatError, InvalidArgumentError
from .index import Store
from .journal import parse_json

BUDGET_DIR = "budget"
BUDGET_VERSION = 1
FIELDS = ("training_env_steps", "evaluation_env_steps", "evaluation_games")


@dataclass(frozen=True)
class Budget:
    """Env steps spent on a pool: training (every learner's samples) and evaluation games."""

    training_env_steps: int = 0
    evaluation_env_steps: int = 0
    evaluation_games: int = 0
    recorded: bool = False  # False: no writer recorded a budget (a pool from before 0.4.0, or none kept)
    by_writer: Dict[str, "Budget"] = field(default_factory=dict, compare=False, repr=False)

    @property
    def total_env_steps(self) -> int:
        """What the pool cost, training plus evaluation."""
        return self.training_env_steps + self.evaluation_env_steps

    def line(self) -> str:
        """``budget: training=N evaluation=M total=T`` (what the examples print)."""
        return (f"budget: training={self.training_env_steps} evaluation={self.evaluation_env_steps} "
                f"total={self.total_env_steps}")


def check_budget(training_env_steps: object, evaluation_env_steps: object, evaluation_games: object) -> Dict[str, int]:
    """The three counts as ints >= 0, or an InvalidArgumentError naming the bad one."""
    out = {}
    for name, value in zip(FIELDS, (training_env_steps, evaluation_env_steps, evaluation_games)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise InvalidArgumentError(f"record_budget({name}={value!r}): give an int >= 0")
        out[name] = value
    return out


def write_budget(store: Store, writer: str, counts: Dict[str, int]) -> None:
    """Replace ``writer``'s budget file whole with its cumulative ``counts``."""
    doc = {"budget_version": BUDGET_VERSION, "writer": writer, **counts}
    store.write(f"{BUDGET_DIR}/{writer}.json", (json.dumps(doc, indent=1) + "\n").encode())


def read_budget(store: Store) -> Budget:
    """Every writer's budget, summed (``recorded=False`` when none is there)."""
    writers: Dict[str, Budget] = {}
    for name in store.listdir(BUDGET_DIR):
        if name.startswith(".") or not name.endswith(".json"):
            continue  # a killed writer's temporary file
        raw = store.read(f"{BUDGET_DIR}/{name}")
        if raw is None:
            continue
        where = store.where(f"{BUDGET_DIR}/{name}")
        doc = parse_json(raw, where, "the pool's budget")
        if not isinstance(doc, dict) or doc.get("budget_version") != BUDGET_VERSION:
            version = doc.get("budget_version") if isinstance(doc, dict) else None
            raise CheckpointFormatError(f"{where}: budget_version {version!r} is not supported (this reader knows "
                                        f"{BUDGET_VERSION})")
        try:
            training, evaluation, games = (int(doc[k]) for k in FIELDS)
        except (KeyError, TypeError, ValueError) as e:
            raise CheckpointFormatError(f"{where}: a budget needs {', '.join(FIELDS)} as integers ({e})") from e
        writers[name[: -len(".json")]] = Budget(training, evaluation, games, recorded=True)
    sums = {k: sum(getattr(b, k) for b in writers.values()) for k in FIELDS}
    return Budget(**sums, recorded=bool(writers), by_writer=writers)
