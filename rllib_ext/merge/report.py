"""What a merge wrote: :class:`MergeReport`, and its JSON form (``rllib-ext merge --json``)."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Tuple, TypedDict

Take = Tuple[str, "str | os.PathLike[str]", Optional[str]]  # (target id, source checkpoint, source id or None)


class MergeReportJson(TypedDict):
    """:meth:`MergeReport.to_dict` (``rllib-ext merge --json``)."""

    out: str
    base: str
    stack: str
    taken: Dict[str, str]
    kept: List[str]
    optimizer: Dict[str, str]
    filters: Dict[str, str]
    training: Dict[str, str]
    files: List[str]
    seconds: float


@dataclass
class MergeReport:
    """What :func:`merge_checkpoints` wrote.

    Attributes:
        out: absolute path of the merged checkpoint.
        base: absolute path of the base checkpoint.
        stack: 'new' or 'old'.
        taken: ``{target id: "source checkpoint:source id"}``.
        kept: ids whose weights are the base's.
        optimizer: ``{target id: 'source' | 'base'}``: whose optimizer state it has.
        filters: ``{target id: what observation-filter statistics it took}``.
        training: ``{target id: the training state it took}`` (``training_state=True``).
        files: rewritten files, relative to ``out``.
        seconds: wall time.
    """

    out: str
    base: str
    stack: str
    taken: Dict[str, str] = field(default_factory=dict)
    kept: List[str] = field(default_factory=list)
    optimizer: Dict[str, str] = field(default_factory=dict)
    filters: Dict[str, str] = field(default_factory=dict)
    training: Dict[str, str] = field(default_factory=dict)
    files: List[str] = field(default_factory=list)
    seconds: float = 0.0

    def __str__(self) -> str:
        taken = ", ".join(f"{t} <- {s}" for t, s in self.taken.items())
        opt = ", ".join(f"{t}: {o}" for t, o in self.optimizer.items())
        return (
            f"merged into {self.out} ({self.stack} API stack, base {self.base}): "
            f"{taken}; kept from base: {', '.join(self.kept) or '-'}; optimizer state: {opt or '-'}"
        )

    def to_dict(self) -> MergeReportJson:
        return {
            "out": self.out,
            "base": self.base,
            "stack": self.stack,
            "taken": dict(self.taken),
            "kept": list(self.kept),
            "optimizer": dict(self.optimizer),
            "filters": dict(self.filters),
            "training": dict(self.training),
            "files": list(self.files),
            "seconds": self.seconds,
        }
