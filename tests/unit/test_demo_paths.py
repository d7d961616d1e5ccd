# SPDX-License-Identifier: GPL-3.0-or-later
# Copyright: kernelnic.kni contributors
"""`make demo` ends by naming the README's path it showed and how to try the other two, with files that exist and
commands the README gives."""

from __future__ import annotations

import re
from pathlib import Path

from tests.vmharness import demo

ROOT = Path(__file__).resolve().parents[2]


def test_demo_names_its_path_and_the_other_two() -> None:
    text = demo.paths_summary()
    assert all(line.startswith("[demo] ") for line in text.splitlines()), text
    assert "This was path 2" in text
    assert "Path 1," in text and "Path 3," in text
    for path in re.findall(r"\b(?:playbooks|molecule)/[\w/.-]+\.yml\b", text):
        assert (ROOT / path).is_file(), path
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    for command in re.findall(r"then: (.*)$", text, re.M):
        assert command in readme, command


def test_readme_shows_the_three_ways_first_and_the_operator_path_first() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    headings = re.findall(r"^## (.*)$", readme, re.M)
    assert headings[0] == "Three ways to use this collection", headings
    section = readme.split("## Three ways to use this collection", 1)[1].split("\n## ", 1)[0]
    first, second, third = (
        section.index(name) for name in ("playbooks/operator.yml", "playbooks/pump.yml", "molecule")
    )
    assert first < second < third
