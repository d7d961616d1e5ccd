# SPDX-License-Identifier: GPL-3.0-or-later
"""rte_kni requests: every type accepted and refused by userspace, round-trip latency, enable_bifurcated."""

from __future__ import annotations

import errno
import select
import socket
import statistics
import subprocess
import threading
import time
from collections.abc import Callable

import pytest

from tests.guest.kni_fixtures import (
    KNI_MAC,
    PEER_IP,
    kni_module,
    link_json,
    rig,
    set_mtu_ioctl,
    sh,
    sysfs,
    wait_for,
)

pytestmark = pytest.mark.usefixtures("kni_hugepages")


def ip(command: str) -> subprocess.CompletedProcess:
    return sh(f"ip link set dev kni0 {command}", check=False)


def flags() -> list:
    return link_json("kni0")["flags"]


def test_every_request_type_accepted() -> None:
    with kni_module(), rig() as bench:
        bench.add("kni0", max_mtu=9000)
        assert ip("up").returncode == 0 and "UP" in flags()
        assert ip("mtu 1280").returncode == 0 and sysfs("kni0", "mtu") == "1280"
        assert ip("address 02:00:00:00:00:42").returncode == 0 and sysfs("kni0", "address") == "02:00:00:00:00:42"
        assert ip("promisc on").returncode == 0 and "PROMISC" in flags()
        assert ip("allmulticast on").returncode == 0 and "ALLMULTI" in flags()
        assert ip("promisc off").returncode == 0 and "PROMISC" not in flags()
        assert ip("allmulticast off").returncode == 0 and "ALLMULTI" not in flags()
        assert ip("down").returncode == 0 and "UP" not in flags()
        assert wait_for(lambda: ("config_network_if", False) in bench.seen)
        assert [kind for kind, _argument in bench.seen] == [
            "config_network_if",
            "change_mtu",
            "config_mac_address",
            "config_promiscuity",
            "config_allmulticast",
            "config_promiscuity",
            "config_allmulticast",
            "config_network_if",
        ]
        assert bench.seen[1] == ("change_mtu", 1280)
        assert bench.seen[2] == ("config_mac_address", bytes.fromhex("020000000042"))
        assert [argument for _kind, argument in bench.seen[3:7]] == [True, True, False, False]


def test_refused_requests_fail_the_ip_command_and_keep_the_state(report: Callable[[str], None]) -> None:
    with kni_module(), rig() as bench:
        bench.add("kni0", max_mtu=9000)
        bench.fail = {"config_network_if": errno.EIO, "change_mtu": errno.EINVAL, "config_mac_address": errno.EPERM}
        result = ip("up")
        assert result.returncode != 0 and "UP" not in flags(), result.stderr
        report(f"refused up: {result.stderr.strip()}")
        bench.fail.pop("config_network_if")
        assert ip("up").returncode == 0 and "UP" in flags()
        result = ip("mtu 1280")
        assert result.returncode != 0 and sysfs("kni0", "mtu") == "1500", result.stderr
        report(f"refused mtu: {result.stderr.strip()}")
        result = ip("address 02:00:00:00:00:42")
        assert result.returncode != 0 and sysfs("kni0", "address") == KNI_MAC.hex(":"), result.stderr
        report(f"refused mac: {result.stderr.strip()}")
        # A positive result is not a valid errno: reported as EINVAL.
        bench.fail = {"change_mtu": -5}
        assert ip("mtu 1300").returncode != 0 and sysfs("kni0", "mtu") == "1500"
        # promisc, allmulti and down go through void kernel callbacks (ndo_change_rx_flags, ndo_stop): the kernel
        # cannot refuse them, so `ip` succeeds whatever userspace answers; the refusal must still be harmless.
        bench.fail = {"config_promiscuity": errno.EIO, "config_allmulticast": errno.EIO, "config_network_if": errno.EIO}
        bench.seen.clear()
        for command in ("promisc on", "allmulticast on", "down"):
            assert ip(command).returncode == 0
        assert wait_for(lambda: len(bench.seen) == 3)
        assert [kind for kind, _argument in bench.seen] == [
            "config_promiscuity",
            "config_allmulticast",
            "config_network_if",
        ]
        bench.fail = {}
        assert ip("up").returncode == 0 and ip("mtu 1400").returncode == 0 and sysfs("kni0", "mtu") == "1400"


def test_request_round_trip_latency(report: Callable[[str], None]) -> None:
    with kni_module(), rig() as bench:
        bench.add("kni0", max_mtu=9000)
        samples = []
        for index in range(30):
            started = time.monotonic()
            set_mtu_ioctl("kni0", 1000 + index)
            samples.append(time.monotonic() - started)
        assert sysfs("kni0", "mtu") == "1029"
        report(
            f"request round trip (SIOCSIFMTU): median {statistics.median(samples) * 1e3:.2f} ms, "
            f"min {min(samples) * 1e3:.2f} ms, max {max(samples) * 1e3:.2f} ms"
        )
        assert statistics.median(samples) < 1.5


def test_bifurcated_interface_down_does_not_deadlock(report: Callable[[str], None]) -> None:
    """The userspace side may take RTNL while answering (a bifurcated driver would): no deadlock, no 3 s wait."""
    with kni_module("enable_bifurcated=on"), rig() as bench:
        bench.add("kni0")
        outcomes = []

        def needs_rtnl(argument: object) -> None:
            result = sh("ip link set dev lo mtu 65536", check=False)
            outcomes.append((argument, result.returncode))

        bench.hooks["config_network_if"] = needs_rtnl
        started = time.monotonic()
        sh("ip link show dev kni0")
        baseline = time.monotonic() - started  # what starting `ip` costs on this (emulated, shared) machine
        started = time.monotonic()
        assert ip("up").returncode == 0  # a request held up by the callback would time out (3 s) and fail this
        up = time.monotonic() - started
        started = time.monotonic()
        assert ip("down").returncode == 0
        down = time.monotonic() - started
        assert wait_for(lambda: len(outcomes) == 2, timeout=20)
        report(
            f"enable_bifurcated: up {up * 1e3:.1f} ms, down {down * 1e3:.1f} ms (`ip link show` {baseline * 1e3:.1f}"
            f" ms), callbacks {outcomes}"
        )
        assert outcomes == [(True, 0), (False, 0)]
        assert down - baseline < 1.5 and "UP" not in flags()
        assert ip("up").returncode == 0
        bench.remove("kni0")  # released while up, with the RTNL-taking callback still installed


def poll_woken_by(poller: select.poll, action: Callable[[], None]) -> tuple[float, list]:
    """(seconds a poll() with a 10 s timeout slept, its events) when ``action`` runs 0.3 s into it."""
    outcome: dict = {}

    def sleeper() -> None:
        started = time.monotonic()
        outcome["events"] = poller.poll(10_000)
        outcome["slept"] = time.monotonic() - started

    thread = threading.Thread(target=sleeper)
    thread.start()
    time.sleep(0.3)
    action()
    thread.join(15)
    return outcome["slept"], outcome["events"]


def test_poll_on_dev_kni_wakes_for_egress_and_requests() -> None:
    """Extension: /dev/kni turns readable when the kernel posts egress frames or a request (and never writable), so
    an idle opener can sleep in poll() instead of polling the FIFOs."""
    with kni_module(), rig() as bench:
        device = bench.add("kni0", max_mtu=9000)
        bench.configure_ip("kni0")
        assert bench.control.kernel_wakes_pollers()
        bench.collect("kni0", 1000, timeout=0.5)  # whatever the interface sent on its way up
        fd = bench.control.fileno()
        poller = select.poll()
        poller.register(fd, select.POLLIN | select.POLLOUT)
        assert poller.poll(0) == []  # nothing pending: not readable, and never writable

        def transmit() -> None:
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
                sock.sendto(b"wake", (PEER_IP, 9))

        slept, events = poll_woken_by(poller, transmit)
        assert events == [(fd, select.POLLIN)] and 0.25 < slept < 2.0, (slept, events)
        assert len(bench.collect("kni0", 1)) == 1
        assert poller.poll(0) == []  # tx_q drained

        bench.close_control_thread()  # this thread answers the request itself
        changes: list = []

        def change_mtu() -> None:
            changes.append(subprocess.Popen(["ip", "link", "set", "dev", "kni0", "mtu", "1400"]))

        slept, events = poll_woken_by(poller, change_mtu)
        assert events == [(fd, select.POLLIN)] and 0.25 < slept < 2.0, (slept, events)
        deadline = time.monotonic() + 10
        while changes[0].poll() is None and time.monotonic() < deadline:
            device.poll_requests()
            time.sleep(0.001)
        assert changes[0].wait(10) == 0 and sysfs("kni0", "mtu") == "1400"
        assert poller.poll(0) == []
