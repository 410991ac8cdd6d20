"""A ``package-layout`` directive: the package tree, read from the source at build time.

Each package is listed with its docstring, each module with its docstring's first line,
so the layout page cannot drift from the code and no hand-kept module list exists. The
modules are parsed with :mod:`ast`, never imported (the live layer needs Ray).

Usage in a MyST page (the directive writes reST, so it sits in ``eval-rst``)::

    ```{eval-rst}
    .. package-layout:: rllib_ext
    ```
"""

from __future__ import annotations

import ast
import re
import os
from typing import List

from docutils import nodes
from docutils.statemachine import StringList
from sphinx.util.docutils import SphinxDirective
from sphinx.util.nodes import nested_parse_with_titles


def _docstring(path: str) -> str:
    with open(path, encoding="utf-8") as f:
        return ast.get_docstring(ast.parse(f.read(), filename=path)) or ""


def _first_line(doc: str) -> str:
    return doc.strip().split("\n\n")[0].replace("\n", " ").strip()


def _literal_text(line: str) -> str:
    """A docstring line with its roles made literals (``:func:`x``` -> ````x````): the
    layout lists modules, it does not resolve their references."""
    return re.sub(r":[\w:]+:`~?\.?([^`]+)`", r"``\1``", line)


def layout_lines(root: str, package: str) -> List[str]:
    """Markdown-free reST lines: one section per package, one definition per module."""
    base = os.path.join(root, *package.split("."))
    out: List[str] = []
    for dirpath, dirnames, filenames in os.walk(base):
        dirnames[:] = sorted(d for d in dirnames if os.path.isfile(os.path.join(dirpath, d, "__init__.py")))
        if "__init__.py" not in filenames:
            continue
        rel = os.path.relpath(dirpath, root).replace(os.sep, ".")
        title = f"``{rel}/``"
        out += [title, "-" * len(title), ""]
        doc = _docstring(os.path.join(dirpath, "__init__.py"))
        out += [f".. py:module:: {rel}", ""]
        out += ["::", ""] + ["    " + l for l in (doc or "(no docstring)").splitlines()] + [""]
        for name in sorted(f for f in filenames if f.endswith(".py") and f != "__init__.py"):
            line = _first_line(_docstring(os.path.join(dirpath, name))) or "(no docstring)"
            out += [f".. py:module:: {rel}.{name[:-3]}", ""]
            out += [f"``{name}``", f"    {_literal_text(line)}", ""]
    return out


class PackageLayout(SphinxDirective):
    required_arguments = 1
    has_content = False

    def run(self):
        root = os.path.normpath(os.path.join(self.env.srcdir, self.config.package_layout_root))
        package = self.arguments[0]
        base = os.path.join(root, *package.split("."))
        for dirpath, _dirs, files in os.walk(base):  # rebuild this page when any module changes
            for f in files:
                if f.endswith(".py"):
                    self.env.note_dependency(os.path.join(dirpath, f))
        node = nodes.section()
        node.document = self.state.document
        nested_parse_with_titles(self.state, StringList(layout_lines(root, package), source="package-layout"), node)
        return node.children


def setup(app):
    app.add_config_value("package_layout_root", "..", "env")
    app.add_directive("package-layout", PackageLayout)
    return {"version": "1", "parallel_read_safe": True, "parallel_write_safe": True}
