# SPDX-License-Identifier: GPL-3.0-or-later
"""Host side of the kernel tests: one guest boot per matrix kernel, shared by the tests that read it."""

from __future__ import annotations

import concurrent.futures
import os

import pytest

from tests.kernel import guest_session
from tests.vmharness import matrix


def selected_kernels(entries: tuple[matrix.KernelSpec, ...] = matrix.MATRIX) -> list[str]:
    """KNI_KERNELS=6.1,7.x narrows the matrix (booted and build-only); the default is every kernel."""
    wanted = os.environ.get("KNI_KERNELS", "")
    names = [entry.name for entry in entries]
    every = [entry.name for entry in matrix.MATRIX + matrix.BUILD_ONLY]
    if not wanted:
        return names
    chosen = [name.strip() for name in wanted.split(",") if name.strip()]
    unknown = sorted(set(chosen) - set(every))
    if unknown:
        raise pytest.UsageError(f"KNI_KERNELS names unknown kernels {unknown}; known: {every}")
    return [name for name in chosen if name in names]


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "kernel_name" in metafunc.fixturenames:
        metafunc.parametrize("kernel_name", selected_kernels())
    if "build_only_kernel" in metafunc.fixturenames:
        metafunc.parametrize("build_only_kernel", selected_kernels(matrix.BUILD_ONLY))


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """KNI_KERNELS naming only build-only kernels (or only booted ones) leaves the other tests without a kernel:
    deselect them rather than let them "skip"."""
    empty = [
        item
        for item in items
        if any(
            "got empty parameter set" in str(marker.kwargs.get("reason", ""))
            for marker in item.iter_markers(name="skip")
        )
    ]
    if empty:
        config.hook.pytest_deselected(items=empty)
        items[:] = [item for item in items if item not in empty]


# A guest session keeps about one of the host's CPUs busy on average (its tests are mostly one Python process, or
# wait on the kernel), so two sessions side by side use a 2-CPU host fully. KNI_GUEST_PARALLEL=1 runs them one by one.
GUEST_PARALLEL = max(1, int(os.environ.get("KNI_GUEST_PARALLEL", "2")))
_SESSIONS: dict[str, guest_session.GuestSession] = {}
_PENDING: dict[str, concurrent.futures.Future] = {}
_POOL: list[concurrent.futures.ThreadPoolExecutor] = []


def _start_sessions() -> None:
    """Start every selected kernel's session, GUEST_PARALLEL at a time, in matrix order."""
    pool = concurrent.futures.ThreadPoolExecutor(max_workers=GUEST_PARALLEL, thread_name_prefix="guest-session")
    _POOL.append(pool)
    for name in selected_kernels():
        _PENDING[name] = pool.submit(guest_session.run, matrix.kernel(name))


@pytest.fixture
def guest_run(kernel_name: str) -> guest_session.GuestSession:
    """The in-guest session of this kernel, booted once and shared by every test that asks."""
    if kernel_name not in _SESSIONS:
        if not _POOL:
            _start_sessions()
        _SESSIONS[kernel_name] = _PENDING[kernel_name].result()
    return _SESSIONS[kernel_name]


def pytest_sessionfinish(session: pytest.Session) -> None:
    """Sessions nobody asked for yet (an interrupted run) are not started."""
    for pool in _POOL:
        pool.shutdown(wait=False, cancel_futures=True)


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if not _SESSIONS:
        return
    terminalreporter.section("kernel guests")
    for name, session in _SESSIONS.items():
        result = session.result
        terminalreporter.write_line(
            f"{name:8} {session.kernel.release:26} boot-to-command {result.boot_seconds:5.1f}s  "
            f"total {result.total_seconds:6.1f}s  guest tests {session.tests}  "
            f"failed {len(session.failures)}  skipped {len(session.skipped)}"
            + (f"  vCPUs idle {session.idle_percent:.0f}%" if session.idle_percent is not None else "")
            + (f"  boot retried {len(session.boot_retries)}x" if session.boot_retries else "")
        )
        for reason in session.boot_retries:
            terminalreporter.write_line(f"  {name}: an earlier boot was given up: {reason}")
