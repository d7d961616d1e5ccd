# SPDX-License-Identifier: GPL-3.0-or-later
# Copyright: kernelnic.kni contributors
"""Sizes a reader can take in at once: no Python file in plugins/ over 400 lines, no function over 60 (the modules'
DOCUMENTATION, EXAMPLES and RETURN are strings, not functions, so they do not count)."""

from __future__ import annotations

import ast
from pathlib import Path
from typing import List

import pytest

PLUGINS = Path(__file__).resolve().parents[2] / "plugins"
FILES = sorted(PLUGINS.rglob("*.py"))
MAX_FILE_LINES = 400
MAX_FUNCTION_LINES = 60


@pytest.mark.parametrize("path", FILES, ids=[str(path.relative_to(PLUGINS)) for path in FILES])
def test_file_and_function_sizes(path: Path) -> None:
    text = path.read_text(encoding="utf-8")
    assert len(text.splitlines()) <= MAX_FILE_LINES
    long: List[str] = []
    for node in ast.walk(ast.parse(text)):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            length = (node.end_lineno or node.lineno) - node.lineno + 1
            if length > MAX_FUNCTION_LINES:
                long.append(f"{node.name} (line {node.lineno}): {length} lines")
    assert not long
