# SPDX-License-Identifier: GPL-3.0-or-later
"""Make the collection importable as ``ansible_collections.kernelnic.kni`` for plain pytest runs.

ansible-test arranges this path itself; pytest (on the host and inside test guests) needs the symlink tree
that ``tests/collection_path.py`` keeps in ``.collection-root/``. Also: skips are failures here.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator

import pytest

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if REPO_ROOT not in sys.path:  # the benchmarks import this file with only tests/ on the path
    sys.path.insert(0, REPO_ROOT)

from tests.collection_path import ensure_collection_path  # noqa: E402

ensure_collection_path()


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo) -> Iterator[None]:
    """A skipped test is reported as a failure: here a skip would hide a test that never ran."""
    outcome = yield
    report = outcome.get_result()
    if report.skipped and not hasattr(report, "wasxfail"):
        reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else str(report.longrepr)
        report.outcome = "failed"
        report.longrepr = f"skipped, and a skip is not a pass: {reason}"
