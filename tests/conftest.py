# SPDX-License-Identifier: GPL-3.0-or-later
"""Make the collection importable as ``ansible_collections.kernelnic.kni`` for plain pytest runs.

ansible-test arranges this path itself; pytest (on the host and inside test guests) needs a
symlink tree, kept in ``.collection-root/`` at the repository root.
"""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Iterator

import pytest

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
COLLECTION_ROOT = os.path.join(REPO_ROOT, ".collection-root")


def _ensure_collection_path() -> None:
    link = os.path.join(COLLECTION_ROOT, "ansible_collections", "kernelnic", "kni")
    if not os.path.islink(link):
        os.makedirs(os.path.dirname(link), exist_ok=True)
        with contextlib.suppress(FileExistsError):  # another pytest process made it first
            os.symlink(REPO_ROOT, link)
    if COLLECTION_ROOT not in sys.path:
        sys.path.insert(0, COLLECTION_ROOT)


_ensure_collection_path()


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo) -> Iterator[None]:
    """A skipped test is reported as a failure: here a skip would hide a test that never ran."""
    outcome = yield
    report = outcome.get_result()
    if report.skipped and not hasattr(report, "wasxfail"):
        reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else str(report.longrepr)
        report.outcome = "failed"
        report.longrepr = f"skipped, and a skip is not a pass: {reason}"
