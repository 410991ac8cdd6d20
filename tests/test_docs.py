"""The documentation: every code block accounted for, and a strict build that fails.

The blocks themselves run under ``pytest --markdown-docs README.md docs`` (in torch-new;
tests/docs_blocks.py says which need Ray).
Here: every Python block either runs somewhere or says why not, and the strict build
(``sphinx-build -nW``, what ``make docs`` runs) fails on one planted broken reference.
"""

from __future__ import annotations

import shutil
import subprocess
import sys

import pytest

from docs_blocks import REPO, all_blocks, counts

pytest.importorskip("markdown_it")


def test_every_python_block_runs_somewhere_or_says_why_not():
    blocks = all_blocks()
    assert blocks, "no Python blocks found in README.md and docs/"
    unplaced = [f"{b.page}:{b.line}" for b in blocks if b.kind == "?"]
    assert not unplaced, f"blocks with no fixture:docs_dir / ray_docs / onnx_docs and no notest: {unplaced}"
    silent = [f"{b.page}:{b.line}" for b in blocks if b.kind == "notest" and not b.reason]
    assert not silent, f"notest blocks without '<!-- notest: reason -->' on the line before: {silent}"
    stray = [f"{b.page}:{b.line}" for b in blocks if b.reason and b.kind != "notest"]
    assert not stray, f"a notest reason above a block that runs: {stray}"
    c = counts()
    print(f"\npython blocks: {c['total']} in all; run: {c['ray-free']} Ray-free, {c['ray']} with Ray, "
          f"{c['onnx']} with onnx; not run: {c['notest']}")


def test_readme_is_a_front_page():
    text = (REPO / "README.md").read_text(encoding="utf-8")
    assert len(text.splitlines()) <= 300
    for page in ("getting-started", "partial-restore", "releases", "benchmarks", "api", "cli"):
        assert f"docs/{page}.md" in text


@pytest.mark.slow
def test_strict_build_fails_on_a_planted_broken_reference(tmp_path):
    """A copy of docs/ with one ``{func}`` reference to a name that does not exist fails the
    strict build, and the planted reference is the only complaint: the same pages without it
    build (the docs cell builds them strictly), so one build here is enough."""
    pytest.importorskip("sphinx")
    pytest.importorskip("myst_parser")
    src = tmp_path / "repo"
    shutil.copytree(REPO / "docs", src / "docs", ignore=shutil.ignore_patterns("_build", "generated"))
    for name in ("README.md", "CHANGELOG.md"):
        shutil.copy(REPO / name, src / name)
    (src / "rllib_ext").symlink_to(REPO / "rllib_ext")
    page = src / "docs" / "reading.md"
    page.write_text(page.read_text() + "\nSee {func}`rllib_ext.read_wieghts`.\n")

    broken = subprocess.run(
        [sys.executable, "-m", "sphinx", "-nW", "--keep-going", "-q", "-b", "html", str(src / "docs"),
         str(src / "docs" / "_build" / "html")],
        capture_output=True, text=True, timeout=600,
    )
    assert broken.returncode != 0
    complaints = [line for line in broken.stderr.splitlines() if "WARNING" in line or "ERROR" in line]
    assert complaints, broken.stderr[-2000:]
    assert all("rllib_ext.read_wieghts" in line for line in complaints), broken.stderr[-3000:]
