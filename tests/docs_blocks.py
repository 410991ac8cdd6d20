"""The code blocks of README.md and docs/*.md: where they run, and what they find there.

pytest-markdown-docs runs every Python block (``pytest --markdown-docs README.md docs``);
a block names its setup as fixtures in its info string (docs/conftest.py):

    ```python fixture:docs_dir     Ray-free: runs in torch-new and in the numpy-only install
    ```python fixture:ray_docs     needs Ray: runs in the torch-new cell, skipped elsewhere
    ```python fixture:onnx_docs    needs torch + onnx (the test extra), not Ray
    ```python notest               not runnable; the line before the block says why:
                                   <!-- notest: the reason -->

Every block runs in a fresh temporary directory that :func:`prepare` fills with what the
pages' blocks name: ``ckpt`` (a 3-policy new-stack PPO checkpoint on SignGame, Ray 2.60,
from tests/fixtures/current/new-torch), ``old_stack_ckpt`` (the same on the old stack),
``policies/p1`` (policy_1 of ``ckpt`` as a single-policy directory) and
``runs/main_policy`` (policy_0's weights as a policy named ``main``, for the pool).
"""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path
from typing import Dict, Iterator, List, NamedTuple

REPO = Path(__file__).resolve().parents[1]
CURRENT = REPO / "tests" / "fixtures" / "current"
FIXTURES = {"docs_dir": "ray-free", "ray_docs": "ray", "onnx_docs": "onnx"}
NOTEST_REASON = re.compile(r"<!--\s*notest:\s*(\S.*?)\s*-->\s*$")


def prepare(path: Path) -> Path:
    """Fill ``path`` with the checkpoints and policy directories the blocks name."""
    from rllib_ext import extract_policy, read_weights, write_policy_dir

    path.mkdir(parents=True, exist_ok=True)
    shutil.copytree(CURRENT / "new-torch" / "checkpoint", path / "ckpt")
    shutil.copytree(CURRENT / "old-torch" / "checkpoint", path / "old_stack_ckpt")
    extract_policy(str(path / "ckpt"), "policy_1", str(path / "policies" / "p1"))
    write_policy_dir(path / "runs" / "main_policy", "main", read_weights(str(path / "ckpt"), "policy_0"), {"stack": "new"})
    return path


class Block(NamedTuple):
    page: str  # relative to the repo
    line: int  # of the opening fence, 1-based
    options: List[str]  # the info string after the language
    reason: str  # why it does not run ("" if it runs)
    code: str

    @property
    def kind(self) -> str:
        """'notest', 'ray-free', 'ray' or 'onnx' ('?' when no fixture says where it runs)."""
        if "notest" in self.options:
            return "notest"
        kinds = {FIXTURES[o[len("fixture:"):]] for o in self.options if o[len("fixture:"):] in FIXTURES}
        for kind in ("ray", "onnx", "ray-free"):
            if kind in kinds:
                return kind
        return "?"


def pages() -> List[Path]:
    return [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]


def blocks(path: Path) -> Iterator[Block]:
    """Every fenced Python block of one page, as markdown-it (the runner's parser) sees it."""
    from markdown_it import MarkdownIt

    text = path.read_text(encoding="utf-8")
    lines = text.split("\n")
    for token in MarkdownIt("commonmark").parse(text):
        if token.type != "fence" or not token.map:
            continue
        info = token.info.split()
        if not info or info[0] not in ("py", "python", "python3"):
            continue
        before = lines[token.map[0] - 1] if token.map[0] > 0 else ""
        match = NOTEST_REASON.match(before.strip())
        yield Block(str(path.relative_to(REPO)), token.map[0] + 1, info[1:], match.group(1) if match else "",
                    token.content)


def all_blocks() -> List[Block]:
    return [b for p in pages() for b in blocks(p)]


def counts() -> Dict[str, int]:
    out: Dict[str, int] = {"total": 0, "notest": 0, "ray-free": 0, "ray": 0, "onnx": 0, "?": 0}
    for b in all_blocks():
        out["total"] += 1
        out[b.kind] += 1
    return out


def environ_for_blocks() -> Dict[str, str]:
    """What a block's process needs: no Ray usage stats, quiet logs."""
    env = dict(os.environ)
    env.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    return env
