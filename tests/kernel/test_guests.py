# SPDX-License-Identifier: GPL-3.0-or-later
"""Every matrix kernel boots, runs the in-guest test session cleanly and leaves a clean dmesg."""

from __future__ import annotations

import pytest

from tests.kernel.guest_session import GuestSession

pytestmark = pytest.mark.kernel


def test_guest_session_passes(guest_run: GuestSession) -> None:
    result = guest_run.result
    assert guest_run.tests > 0, f"the guest ran no test:\n{result.output}"
    assert not guest_run.failures, f"failed in the guest: {guest_run.failures}\n{result.output}"
    # A skip is not a pass: every guest test must run on every kernel.
    assert not guest_run.skipped, f"skipped in the guest: {guest_run.skipped}\n{result.output}"
    assert result.exit_code == 0, result.output


def test_guest_dmesg_is_clean(guest_run: GuestSession) -> None:
    problems = guest_run.result.dmesg_problems()
    assert not problems, "kernel log problems:\n" + "\n".join(problems) + "\n\n" + guest_run.result.dmesg[-4000:]
