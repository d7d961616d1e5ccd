# SPDX-License-Identifier: GPL-3.0-or-later
"""Tests in this folder run only inside a harness guest (see tests/kernel/guest_session.py)."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator

import pytest

ANSIBLE_INTEGRATION = os.environ.get("KNI_ANSIBLE_INTEGRATION") == "1"


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "only_kernels(*names): run only on these matrix kernels (others deselect it)")
    config.addinivalue_line(
        "markers", "ansible_integration: ansible-playbook runs in the guest; only with KNI_ANSIBLE_INTEGRATION=1"
    )


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if items and not os.path.isdir("/kni-results"):
        raise pytest.UsageError("tests/guest runs only inside a test guest: use `pytest tests/kernel` on the host")
    # A test limited to some kernels is deselected elsewhere: it neither passes nor skips where it cannot run.
    kernel = os.environ.get("KNI_KERNEL_NAME", "")
    kept, dropped = [], []
    for item in items:
        marker = item.get_closest_marker("only_kernels")
        wrong_kernel = marker is not None and kernel not in marker.args
        # ansible-playbook under emulation takes minutes per target: `make integration` runs these, not `make test`.
        not_asked = item.get_closest_marker("ansible_integration") is not None and not ANSIBLE_INTEGRATION
        (dropped if wrong_kernel or not_asked else kept).append(item)
    if dropped:
        config.hook.pytest_deselected(items=dropped)
        items[:] = kept


@pytest.fixture
def kernel_release() -> str:
    return os.environ["KNI_KERNEL_RELEASE"]


@pytest.fixture
def test_modules_dir() -> str:
    return os.environ["KNI_TEST_MODULES"]


@pytest.fixture
def kni_hugepages() -> Iterator[None]:
    """64 hugepages for KNI arenas, given back afterwards."""
    with open("/proc/sys/vm/nr_hugepages", "w", encoding="ascii") as handle:
        handle.write("64")
    yield
    with open("/proc/sys/vm/nr_hugepages", "w", encoding="ascii") as handle:
        handle.write("0")


@pytest.fixture
def report(capsys: pytest.CaptureFixture[str]) -> Callable[[str], None]:
    """Print a figure straight to the session's output, even for a passing test (the host shows it)."""

    def emit(message: str) -> None:
        with capsys.disabled():
            print(message, flush=True)

    return emit
