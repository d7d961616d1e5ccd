# SPDX-License-Identifier: GPL-3.0-or-later
# Copyright: kernelnic.kni contributors
"""Every ``kni-abi.md`` citation in the repository names ``docs/kni-abi.md`` and a section it has."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Dict, List, Set

ROOT = Path(__file__).resolve().parents[2]
DOC = ROOT / "docs" / "kni-abi.md"
# "docs/kni-abi.md §2.1, §2.4" or "docs/kni-abi.md`` §4.1" or "docs/kni-abi.md (§1.2, §2.1-§2.4)".
CITATION = re.compile(r"docs/kni-abi\.md\W{0,3}§")


def doc_sections() -> Set[str]:
    return set(re.findall(r"^#{2,3} (\d+(?:\.\d+)?)\.? ", DOC.read_text(encoding="utf-8"), re.M))


def citing_lines() -> Dict[str, List[str]]:
    """Lines of the code and tests (C and Python) that mention kni-abi.md, by path."""
    found: Dict[str, List[str]] = {}
    for top in ("kmod", "plugins", "tests"):
        for path in sorted((ROOT / top).rglob("*")):
            if path.suffix not in (".py", ".c", ".h") or path == Path(__file__) or not path.is_file():
                continue
            for text in path.read_text(encoding="utf-8", errors="replace").splitlines():
                if "kni-abi.md" in text:
                    found.setdefault(str(path.relative_to(ROOT)), []).append(text)
    return found


def test_the_doc_numbers_its_sections() -> None:
    assert {"1.2", "2.1", "2.2", "2.3", "2.4", "2.5", "3.5", "4.1", "7.1", "9"} <= doc_sections()


def test_code_cites_only_sections_the_doc_has() -> None:
    sections = doc_sections()
    lines = citing_lines()
    assert lines, "no file cites docs/kni-abi.md"
    for path, texts in lines.items():
        for text in texts:
            assert "docs/kni-abi.md" in text, f"{path}: cites a kni-abi.md outside docs/: {text}"
            match = CITATION.search(text)
            assert match, f"{path}: cites docs/kni-abi.md without a section: {text}"
            cited = re.findall(r"§(\d+(?:\.\d+)?)", text[match.start() :])
            missing = [number for number in cited if number not in sections]
            assert not missing, f"{path}: docs/kni-abi.md has no section {missing}: {text}"
