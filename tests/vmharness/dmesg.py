# SPDX-License-Identifier: GPL-3.0-or-later
"""Scan a guest's kernel log for signs that the kernel went wrong."""

from __future__ import annotations

import re

# Any of these in dmesg fails a kernel test, whatever the test itself asserted.
BAD_PATTERNS = (
    re.compile(r"\bBUG:"),
    re.compile(r"\bOops\b"),
    re.compile(r"\bWARNING:"),
    re.compile(r"\bCall Trace\b"),
    re.compile(r"general protection", re.IGNORECASE),
    re.compile(r"Kernel panic"),
    re.compile(r"\bUBSAN:"),
    re.compile(r"\bKASAN:"),
    re.compile(r"INFO: task .* blocked for more than"),
    re.compile(r"rcu: INFO: .* stall"),
)


def problems(log: str) -> list[str]:
    """The lines of ``log`` that match a bad pattern."""
    return [line for line in log.splitlines() if any(pattern.search(line) for pattern in BAD_PATTERNS)]
