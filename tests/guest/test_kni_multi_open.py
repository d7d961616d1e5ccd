# SPDX-License-Identifier: GPL-3.0-or-later
"""rte_kni multi_open=on (extension): several /dev/kni openers in one network namespace, each owning what it created,
also kni-pump beside another application; with the default (off) a second open still gets EBUSY, and the pump says
so in one line."""

from __future__ import annotations

import errno
import json
import os
import select
import shutil
import socket
import subprocess
import sys
from collections.abc import Callable, Iterator

import pytest
from ansible_collections.kernelnic.kni.plugins.module_utils._kni.device import KniControl, KniDeviceError

from tests.frames import parse_udp
from tests.guest import test_pump_kni as pump_tests
from tests.guest.kni_fixtures import (
    PEER_MAC,
    Rig,
    insmod,
    kni_module,
    kthread_pids,
    module_path,
    sh,
    stat,
    udp_frame,
    wait_for,
)

pytestmark = pytest.mark.usefixtures("kni_hugepages")
PORT = 7788
# Each opener's interface gets its own subnet: (interface address, peer address).
SUBNETS = {"knia": ("10.98.1.1", "10.98.1.2"), "knib": ("10.98.2.1", "10.98.2.2")}


def exists(name: str) -> bool:
    return os.path.isdir(f"/sys/class/net/{name}")


def configure(bench: Rig, name: str) -> None:
    address, peer = SUBNETS[name]
    sh(
        f"ip addr add {address}/24 dev {name} && ip link set {name} up && "
        f"ip neigh replace {peer} lladdr {PEER_MAC.hex(':')} dev {name} nud permanent"
    )
    bench.devices[name].update_link(True)


def traffic_passes(bench: Rig, name: str, seed: int) -> None:
    """Datagrams from the peer reach a socket on the interface, and datagrams to the peer come out of its tx_q."""
    address, peer = SUBNETS[name]
    rx_before, tx_before = stat(name, "rx_packets"), stat(name, "tx_packets")
    data = [bytes([seed, index]) * (10 + 7 * index) for index in range(20)]
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as receiver:
        receiver.bind((address, PORT))
        receiver.settimeout(10)
        bench.inject(name, [udp_frame(payload, PORT, src=peer, dst=address) for payload in data])
        assert [receiver.recv(2048) for _payload in data] == data, f"{name}: ingress"
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sender:
        sender.bind((address, 0))
        for payload in data:
            sender.sendto(payload, (peer, PORT))
        frames = bench.collect(name, len(data), keep=lambda frame: (parse_udp(frame) or (0,))[0] == PORT)
    assert [parse_udp(frame)[1] for frame in frames] == data, f"{name}: egress"
    assert stat(name, "rx_packets") - rx_before >= len(data)
    assert stat(name, "tx_packets") - tx_before >= len(data)


def readable(control: KniControl) -> bool:
    return bool(select.select([control.fileno()], [], [], 0)[0])


def drain(bench: Rig, name: str) -> None:
    """Empty the interface's tx_q (stray egress such as IGMP) so that poll() readiness says only what follows."""
    assert wait_for(lambda: not bench.collect(name, 64, timeout=0.2) and bench.devices[name].fifo("tx").count() == 0)


def test_two_openers_each_own_their_interfaces(report: Callable[[str], None]) -> None:
    with kni_module("multi_open=on"):
        with open("/sys/module/rte_kni/parameters/multi_open", encoding="ascii") as handle:
            assert handle.read().strip() == "on"
        first = Rig("strict")
        second = None
        try:
            first.add("knia")
            # The second opener registers its own memory although the first already created an interface.
            second = Rig("strict")
            second.add("knib")
            configure(first, "knia")
            configure(second, "knib")
            traffic_passes(first, "knia", 1)
            traffic_passes(second, "knib", 2)

            for bench, other in ((first, "knib"), (second, "knia")):
                with pytest.raises(KniDeviceError) as caught:
                    bench.control.release(other)
                assert caught.value.errno == errno.EINVAL
                report(f"RELEASE of the other opener's {other}: {caught.value}")
            with pytest.raises(KniDeviceError) as caught:
                second.add("knia")  # names stay unique per namespace
            assert caught.value.errno == errno.EINVAL
            assert exists("knia") and exists("knib")

            # poll(): readable only for the opener whose interface has egress waiting.
            if first.control.kernel_wakes_pollers():
                drain(first, "knia")
                drain(second, "knib")
                assert not readable(first.control) and not readable(second.control)
                with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sender:
                    sender.bind((SUBNETS["knib"][0], 0))
                    sender.sendto(b"poll", (SUBNETS["knib"][1], PORT))
                assert wait_for(lambda: readable(second.control), timeout=5)
                assert not readable(first.control)
                drain(second, "knib")

            threads = kthread_pids("kni_single")
            assert len(threads) == 1
            first.close()
            assert not exists("knia"), "closing the first opener must remove its interface"
            assert exists("knib"), "closing the first opener must not touch the second's interface"
            assert kthread_pids("kni_single") == threads, "kni_single serves the remaining opener"
            traffic_passes(second, "knib", 3)
            # The first opener's name is free again, for the remaining opener too.
            second.add("knia")
            second.remove("knia")
        finally:
            first.close()
            if second is not None:
                second.close()
        assert not exists("knib")
        assert wait_for(lambda: not kthread_pids("kni_single")), "kni_single must stop with the last opener"


def test_second_open_gets_ebusy_by_default() -> None:
    with kni_module(), KniControl():
        with pytest.raises(KniDeviceError) as caught:
            KniControl()
        assert caught.value.errno == errno.EBUSY
        assert "multi_open=on" in str(caught.value)
    with kni_module("multi_open=off"), KniControl():
        with pytest.raises(KniDeviceError) as caught:
            KniControl()
        assert caught.value.errno == errno.EBUSY


def test_invalid_multi_open_refused() -> None:
    sh("dmesg -C")
    result = insmod("multi_open=yes")
    if result.returncode == 0:
        sh("rmmod rte_kni")
    assert result.returncode != 0, "insmod accepted multi_open=yes"
    assert "multi_open: invalid value 'yes'" in sh("dmesg").stdout


@pytest.fixture
def pump_peer() -> Iterator[None]:
    """The pump tests' veth topology and configuration (kpump0 bridged to pvb), without the module loaded."""
    pump_tests.teardown()
    sh("echo 64 > /proc/sys/vm/nr_hugepages")  # teardown gives hugepages back, kni_hugepages' too
    shutil.rmtree(pump_tests.RUN_DIR, ignore_errors=True)
    os.makedirs(pump_tests.STATE_DIR)
    netns = pump_tests.NETNS
    try:
        sh(f"ip netns add {netns}")
        sh(f"ip link add pvb type veth peer name pva netns {netns}")
        sh("ip link set pvb up")
        sh(f"ip -n {netns} link set pva up && ip -n {netns} addr add 10.77.0.2/24 dev pva")
        for prefix, name in ((["ip", "netns", "exec", netns], "pva"), ([], "pvb")):
            subprocess.run([*prefix, sys.executable, "-c", pump_tests.OFFLOADS_OFF, name], check=True, timeout=60)
        interface = {"name": pump_tests.KNI, "mac": pump_tests.MAC, "backend": "afpacket:pvb", "carrier": "follow"}
        with open(pump_tests.CONFIG, "w", encoding="utf-8") as handle:
            json.dump({"version": 1, "interfaces": [interface]}, handle)
        yield
    finally:
        pump_tests.teardown()


def pump_pings(pump: pump_tests.Pump) -> None:
    out = sh("busybox ping -c 2 -W 3 10.77.0.2", check=False)
    assert out.returncode == 0, out.stdout + out.stderr + pump.tail()


def start_pump(pump: pump_tests.Pump) -> None:
    pump.start(timeout=60)
    # A restarted pump restores the state and address it saved: replace, not add.
    sh(f"ip link set {pump_tests.KNI} up && ip addr replace 10.77.0.1/24 dev {pump_tests.KNI}")


@pytest.mark.usefixtures("pump_peer")
def test_pump_beside_another_application() -> None:
    """With multi_open=on the pump and an application each keep their interfaces through the other's exit."""
    sh(f"insmod {module_path()} multi_open=on")
    app = Rig("va")
    pump = pump_tests.Pump()
    try:
        app.add("knia")
        configure(app, "knia")
        start_pump(pump)  # opens /dev/kni while the application holds it
        pump_pings(pump)
        traffic_passes(app, "knia", 4)

        pump.stop()
        assert not exists(pump_tests.KNI), "the pump's exit must remove its interface"
        assert exists("knia"), "the pump's exit must not touch the application's interface"
        traffic_passes(app, "knia", 5)

        start_pump(pump)
        app.close()
        assert not exists("knia")
        assert exists(pump_tests.KNI), "the application's exit must not touch the pump's interface"
        pump_pings(pump)
    finally:
        app.close()
        if pump.process is not None:
            pump.stop()
    assert not exists(pump_tests.KNI)
    unloaded = sh("rmmod rte_kni", check=False)
    assert unloaded.returncode == 0, unloaded.stderr


@pytest.mark.usefixtures("pump_peer")
def test_pump_refused_dev_kni_says_so_in_one_line() -> None:
    sh(f"insmod {module_path()}")
    with KniControl():
        args = ["run", "--state-dir", pump_tests.STATE_DIR, "--socket", pump_tests.SOCKET]
        args += ["--config", pump_tests.CONFIG]
        result = subprocess.run(
            [*pump_tests.CLI, *args], env=pump_tests.ENV, capture_output=True, text=True, timeout=120, check=False
        )
    assert result.returncode == 1, result.stderr
    assert "Traceback" not in result.stderr
    errors = [line for line in result.stderr.splitlines() if " ERROR " in line]
    assert errors == [
        "kni-pump: ERROR open /dev/kni: /dev/kni: held by another process in this network namespace; load rte_kni "
        "with multi_open=on to share it [EBUSY: Device or resource busy]"
    ], result.stderr
    assert not exists(pump_tests.KNI)


TESTPMD_SUBNET = ("10.98.3.1", "10.98.3.2")


class Testpmd:
    """DPDK 22.11's dpdk-testpmd with the KNI PMD (interface kni0), forwarding what it reads back where it came from."""

    def __init__(self) -> None:
        from tests.vmharness import dpdk  # the DPDK that set-up built (its paths are the same in the guest)

        command = [
            dpdk.load().dpdk_testpmd,
            "-l",
            "0,1",
            "--no-pci",
            "--in-memory",
            "--no-telemetry",
            "--vdev=net_kni0",
            "--",
            "--forward-mode=io",
            "--port-topology=loop",
            "--total-num-mbufs=4096",
        ]
        self.log_path = f"{pump_tests.RUN_DIR}/testpmd.log"
        with open(self.log_path, "a", encoding="utf-8") as log:
            self.process = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=log, stderr=subprocess.STDOUT)
        process = self.process
        if not wait_for(lambda: process.poll() is not None or exists("kni0"), 120) or process.poll() is not None:
            self.stop()
            pytest.fail(f"dpdk-testpmd did not create kni0:\n{self.tail()}")
        address, peer = TESTPMD_SUBNET
        sh("ip link set kni0 up")  # answered by the KNI PMD's request thread
        with open("/sys/class/net/kni0/carrier", "w", encoding="ascii") as handle:
            handle.write("1")  # what rte_kni_update_link does
        sh(
            f"ip addr add {address}/24 dev kni0 && "
            f"ip neigh replace {peer} lladdr {PEER_MAC.hex(':')} dev kni0 nud permanent"
        )

    def stop(self) -> int:
        """Press enter, as testpmd asks; it stops forwarding, closes its port and exits."""
        if self.process.poll() is None:
            assert self.process.stdin is not None
            self.process.stdin.write(b"\n")
            self.process.stdin.close()
        return self.process.wait(60)

    def tail(self) -> str:
        with open(self.log_path, encoding="utf-8", errors="replace") as handle:
            return handle.read()[-3000:]

    def loops_back(self, count: int = 20) -> None:
        """Datagrams sent out of kni0 come back into it through testpmd's io forwarding."""
        address, peer = TESTPMD_SUBNET
        rx_before, tx_before = stat("kni0", "rx_packets"), stat("kni0", "tx_packets")
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sender:
            sender.bind((address, 0))
            for index in range(count):
                sender.sendto(bytes([index]) * 100, (peer, PORT))

        def returned() -> bool:
            return stat("kni0", "tx_packets") - tx_before >= count and stat("kni0", "rx_packets") - rx_before >= count

        if not wait_for(returned, 30):
            sent, back = stat("kni0", "tx_packets") - tx_before, stat("kni0", "rx_packets") - rx_before
            pytest.fail(f"kni0: {sent} of {count} datagrams left, {back} came back\n{self.tail()}")


@pytest.mark.usefixtures("pump_peer")
def test_pump_beside_dpdk_testpmd() -> None:
    """kni-pump and an unmodified DPDK 22.11 application (testpmd, KNI PMD) share /dev/kni with multi_open=on."""
    sh(f"insmod {module_path()} multi_open=on")
    pump = pump_tests.Pump()
    testpmd = None
    try:
        start_pump(pump)
        testpmd = Testpmd()
        testpmd.loops_back()
        pump_pings(pump)

        assert testpmd.stop() == 0, testpmd.tail()
        assert not exists("kni0"), "testpmd's exit must remove its interface"
        assert exists(pump_tests.KNI), "testpmd's exit must not touch the pump's interface"
        pump_pings(pump)

        testpmd = Testpmd()  # a second run of the application, beside the same pump
        testpmd.loops_back()
        pump.stop()
        assert not exists(pump_tests.KNI), "the pump's exit must remove its interface"
        assert exists("kni0"), "the pump's exit must not touch testpmd's interface"
        testpmd.loops_back()
        assert testpmd.stop() == 0, testpmd.tail()
        assert not exists("kni0")
    finally:
        if testpmd is not None:
            testpmd.stop()
        if pump.process is not None:
            pump.stop()
    unloaded = sh("rmmod rte_kni", check=False)
    assert unloaded.returncode == 0, unloaded.stderr
