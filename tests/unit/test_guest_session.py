# SPDX-License-Identifier: GPL-3.0-or-later
"""The kernel tests' guest session: a guest that never reaches its command is booted again once, and only once."""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import ClassVar, Iterator, List

import pytest

from tests.kernel import guest_session
from tests.vmharness import guest, matrix

KERNEL = matrix.Kernel("6.1", "6.1.0-99-amd64", None)
JUNIT = '<testsuite><testcase classname="tests.guest.test_x" name="test_y"/></testsuite>'


class FakeGuest:
    """Plays one QEMU guest per instance: the next outcome is a boot hang (an exception) or a finished session."""

    outcomes: ClassVar[List[object]] = []
    booted = 0

    def __init__(self, kernel: matrix.Kernel, script: str) -> None:
        self.results = str(Path(FakeGuest.results_root) / str(FakeGuest.booted))
        Path(self.results).mkdir(parents=True)
        FakeGuest.booted += 1

    results_root = ""

    def __enter__(self) -> FakeGuest:
        return self

    def __exit__(self, *exc: object) -> None:
        pass

    def wait(self, timeout: float) -> guest.GuestResult:
        outcome = FakeGuest.outcomes.pop(0)
        if isinstance(outcome, Exception):
            raise outcome
        (Path(self.results) / "junit.xml").write_text(JUNIT, encoding="utf-8")
        return guest.GuestResult("6.1", 0, "", "", "", 5.0, 60.0)


@pytest.fixture
def fake_guests(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[type]:
    FakeGuest.results_root, FakeGuest.booted, FakeGuest.outcomes = str(tmp_path), 0, []
    modules = tmp_path / "modules"

    def build_test_modules(kernel: matrix.Kernel) -> str:
        modules.mkdir()
        (modules / "rte_kni.ko").write_bytes(b"")
        return str(modules)

    monkeypatch.setattr(guest_session, "build_test_modules", build_test_modules)
    monkeypatch.setattr(guest_session.guest, "Guest", FakeGuest)
    yield FakeGuest


def test_a_boot_hang_is_booted_again_once_and_reported(fake_guests: type) -> None:
    fake_guests.outcomes = [guest.BootTimeout("6.1 did not boot within 180s; console:\n"), "finished"]
    session = guest_session.run(KERNEL)
    assert fake_guests.booted == 2
    assert session.tests == 1 and not session.failures
    assert session.boot_retries == ["6.1 did not boot within 180s; console:\n"]


def test_a_second_boot_hang_fails(fake_guests: type) -> None:
    fake_guests.outcomes = [guest.BootTimeout("first"), guest.BootTimeout("second"), "finished"]
    with pytest.raises(guest.BootTimeout, match="second"):
        guest_session.run(KERNEL)
    assert fake_guests.booted == guest_session.BOOT_ATTEMPTS


def test_other_guest_errors_are_not_retried(fake_guests: type) -> None:
    """A guest that died or overran after its command started is a result, not a boot hang."""
    fake_guests.outcomes = [guest.GuestError("6.1: command overran 1200s"), "finished"]
    with pytest.raises(guest.GuestError, match="overran"):
        guest_session.run(KERNEL)
    assert fake_guests.booted == 1


def test_a_clean_boot_records_no_retry(fake_guests: type) -> None:
    fake_guests.outcomes = ["finished"]
    assert guest_session.run(KERNEL).boot_retries == []
    assert fake_guests.booted == 1


@pytest.mark.parametrize("outcomes", [["finished"], [guest.GuestError("died")]], ids=["passed", "failed"])
def test_the_modules_built_for_a_session_are_removed(fake_guests: type, tmp_path: Path, outcomes: list) -> None:
    """Each session builds its modules into a new directory under /var/tmp: left behind, CI runs pile them up."""
    fake_guests.outcomes = outcomes
    with contextlib.suppress(guest.GuestError):
        guest_session.run(KERNEL)
    assert fake_guests.booted == 1
    assert not (tmp_path / "modules").exists()


def test_the_guest_session_uses_the_hosts_cache(monkeypatch: pytest.MonkeyPatch) -> None:
    # Guest tests read dpdk.json and matrix.json from the cache the set-up used, not the default one.
    monkeypatch.setattr(matrix, "CACHE_DIR", "/srv/other cache")
    script = guest_session.guest_script(KERNEL, "/var/tmp/m", ["tests/guest"])
    assert "KNI_CACHE='/srv/other cache'" in script.split("\n")[1]


def test_idle_percent_counts_idle_and_iowait_of_the_cpu_line() -> None:
    # user nice system idle iowait irq softirq steal
    assert guest_session.idle_percent("cpu  100 0 50 300 50 0 0 0 0 0\n") == pytest.approx(70.0)
    assert guest_session.idle_percent("cpu0 1 2 3 4 5 6 7 8") is None
    assert guest_session.idle_percent("") is None
