# SPDX-License-Identifier: GPL-3.0-or-later
"""dpdk-testpmd with DPDK's KNI PMD (`--vdev=net_kni0 --vdev=net_kni1`) against our rte_kni.ko: DPDK 22.11 built
by the set-up and bullseye's packaged 20.11 (run in the bullseye chroot). UDP that testpmd generates reaches a
socket count for count; datagrams the stack sends are counted by testpmd; `ip link set` requests are answered by
net_kni's request handling; a SIGKILLed testpmd leaves nothing behind."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator

import pytest

from tests.guest.dpdk_apps import (
    TestPmd,
    bullseye_chroot,
    disable_ipv6,
    flags_of,
    free_hugepages,
    kni_kthreads,
    link_exists,
    mac_of,
    running,
    wait_link,
)
from tests.guest.kni_fixtures import kni_module, receiver_count, sh, start_receiver, stat, sysfs, wait_for

pytestmark = pytest.mark.usefixtures("kni_hugepages")

VDEVS = ("net_kni0", "net_kni1")
# testpmd's txonly engine sends UDP from 198.18.0.1:9 to 198.18.0.2:9 (its defaults).
INGRESS_IP = "198.18.0.2"
UDP_PORT = 9
EGRESS_IP, EGRESS_PEER, EGRESS_PEER_MAC = "198.19.0.2", "198.19.0.1", "02:00:00:00:00:01"
IFF_UP, IFF_PROMISC, IFF_ALLMULTI = 0x1, 0x100, 0x200
UNKNOWN_MAC = "02:00:00:00:00:99"
# net_kni never reports a link state, so operators load the module with the carrier on: without it the stack
# does not transmit through the interface.
CARRIER = "carrier=on"


def prepare_links() -> None:
    for name in ("kni0", "kni1"):
        assert wait_link(name), f"{name} did not appear"
        disable_ipv6(name)  # no router solicitations or MLD reports among the counted frames


@contextlib.contextmanager
def udp_receiver(address: str, port: int) -> Iterator[subprocess.Popen]:
    """A separate process counting datagrams (kni_fixtures.RECEIVER)."""
    receiver = start_receiver(address, port)
    try:
        yield receiver
    finally:
        if receiver.poll() is None:
            receiver.kill()
        receiver.wait()


def ingress_count_for_count(app: TestPmd) -> int:
    """testpmd's txonly on port 0 (kni0): every datagram it transmitted reaches the socket."""
    sh(f"ip addr add {INGRESS_IP}/24 dev kni0 && ip link set kni0 up")
    with udp_receiver(INGRESS_IP, UDP_PORT) as receiver:
        app.cmd(f"set eth-peer 0 {mac_of('kni0')}")
        app.cmd("set portlist 0")
        app.cmd("set fwd txonly")
        app.cmd("start")
        time.sleep(1.0)
        app.cmd("stop")
        sent = app.port_stats(0)["TX-packets"]
        # The kernel takes a frame from rx_q only when free_q has room for its mbuf, and only rte_kni_tx_burst()
        # empties free_q (upstream's ABI): what is still in rx_q when testpmd stops waits for its next transmit.
        # So transmit more, to a MAC nobody has (the stack drops those), until every counted frame was taken.
        app.cmd(f"set eth-peer 0 {UNKNOWN_MAC}")
        app.cmd("start")
        time.sleep(0.5)
        app.cmd("stop")
        received = receiver_count(receiver, sent)
    counters = {name: stat("kni0", name) for name in ("rx_packets", "rx_errors", "rx_dropped")}
    assert sent > 0
    assert received == sent, f"testpmd sent {sent}, the socket received {received}; kni0: {counters}, {udp_mib()}"
    assert counters["rx_errors"] == 0 and counters["rx_dropped"] == 0
    return sent


def udp_mib() -> dict[str, int]:
    with open("/proc/net/snmp", encoding="ascii") as handle:
        names, values = (line.split()[1:] for line in handle if line.startswith("Udp:"))
    return {name: int(value) for name, value in zip(names, values) if name.endswith("Errors")}


def egress_count_for_count(app: TestPmd, count: int = 480) -> None:
    """Datagrams sent through kni1 are all received by testpmd's rxonly on port 1."""
    sh(
        f"ip addr add {EGRESS_IP}/24 dev kni1 && ip link set kni1 up && "
        f"ip neigh replace {EGRESS_PEER} lladdr {EGRESS_PEER_MAC} dev kni1 nud permanent"
    )
    app.cmd("set portlist 1")
    app.cmd("set fwd rxonly")
    app.cmd("start")
    tx_before = stat("kni1", "tx_packets")
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sender:
        sender.bind((EGRESS_IP, 0))
        for index in range(count):
            sender.sendto(b"egress %d" % index, (EGRESS_PEER, 7777))
            if index % 16 == 15:
                time.sleep(0.02)  # net_kni keeps only 32 mbufs in alloc_q
    assert wait_for(lambda: stat("kni1", "tx_packets") - tx_before == count)
    assert wait_for(lambda: app.port_stats(1)["RX-packets"] >= count, 5)
    app.cmd("stop")
    assert stat("kni1", "tx_dropped") == 0
    assert app.port_stats(1)["RX-packets"] == count


def requests_are_answered_by_the_application(app: TestPmd, name: str, stopped_too: bool = True) -> None:
    """Each `ip link set` becomes a request that net_kni answers; with testpmd stopped (checked when
    ``stopped_too``: the kernel waits out its 3 s request timeout), none is answered."""
    new_mac = f"02:11:22:33:44:5{name[-1]}"
    steps = [
        (f"ip link set {name} mtu 1400", lambda: sysfs(name, "mtu") == "1400"),
        (f"ip link set {name} address {new_mac}", lambda: mac_of(name) == new_mac),
        (f"ip link set {name} promisc on", lambda: flags_of(name) & IFF_PROMISC),
        (f"ip link set {name} allmulticast on", lambda: flags_of(name) & IFF_ALLMULTI),
        (f"ip link set {name} promisc off", lambda: not flags_of(name) & IFF_PROMISC),
        (f"ip link set {name} allmulticast off", lambda: not flags_of(name) & IFF_ALLMULTI),
        (f"ip link set {name} down", lambda: not flags_of(name) & IFF_UP),
        (f"ip link set {name} up", lambda: flags_of(name) & IFF_UP),
    ]
    for command, took_effect in steps:
        done = sh(command, check=False)
        assert done.returncode == 0, f"{command}: {done.stderr}"
        assert took_effect(), command
    if not stopped_too:
        return
    # Nobody answers while testpmd is stopped: the request times out and nothing changes.
    app.process.send_signal(signal.SIGSTOP)
    try:
        done = sh(f"ip link set {name} mtu 1300", check=False)
    finally:
        app.process.send_signal(signal.SIGCONT)
    assert done.returncode != 0 and sysfs(name, "mtu") == "1400"
    done = sh(f"ip link set {name} mtu 1500", check=False)
    assert done.returncode == 0 and sysfs(name, "mtu") == "1500", done.stderr


@pytest.mark.parametrize(
    ("kthread_mode", "iova", "threads"),
    [("single", "pa", ["kni_single"]), ("multiple", "va", ["kni_kni0", "kni_kni1"])],
)
def test_testpmd_22_11_traffic_and_requests(kthread_mode: str, iova: str, threads: list[str]) -> None:
    with kni_module(f"kthread_mode={kthread_mode} {CARRIER}"), running(TestPmd.dpdk_22_11, iova, VDEVS) as app:
        prepare_links()
        assert f"Selected IOVA mode '{iova.upper()}'" in app.output
        assert kni_kthreads() == threads
        ingress_count_for_count(app)
        egress_count_for_count(app)
        requests_are_answered_by_the_application(app, "kni0")
        requests_are_answered_by_the_application(app, "kni1", stopped_too=False)
        assert app.quit() == 0
        assert wait_link("kni0", present=False) and wait_link("kni1", present=False)


def test_testpmd_20_11_from_bullseye_traffic_and_requests() -> None:
    """Debian bullseye's packaged DPDK 20.11, unmodified: its KNI ABI is 22.11's."""
    with kni_module(CARRIER), bullseye_chroot() as root, running(TestPmd.dpdk_20_11, root, "pa", VDEVS) as app:
        prepare_links()
        ingress_count_for_count(app)
        egress_count_for_count(app)
        requests_are_answered_by_the_application(app, "kni0")
        assert app.quit() == 0
        assert wait_link("kni0", present=False) and wait_link("kni1", present=False)


def test_testpmd_killed_with_traffic_both_ways_leaves_nothing_behind() -> None:
    before = free_hugepages()
    with kni_module(CARRIER):
        app = TestPmd.dpdk_22_11("pa", VDEVS)
        try:
            prepare_links()
            sh(f"ip addr add {INGRESS_IP}/24 dev kni0 && ip link set kni0 up")
            sh(
                f"ip addr add {EGRESS_IP}/24 dev kni1 && ip link set kni1 up && "
                f"ip neigh replace {EGRESS_PEER} lladdr {EGRESS_PEER_MAC} dev kni1 nud permanent"
            )
            # io forwarding between the two ports: what the stack sends through kni1 comes back in on kni0.
            app.cmd("set fwd io")
            app.cmd("start")
            flood = subprocess.Popen(
                [
                    sys.executable,
                    "-c",
                    "import socket, time\n"
                    "s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\n"
                    "end = time.monotonic() + 30\n"
                    "while time.monotonic() < end:\n"
                    f"    s.sendto(b'x' * 200, ('{EGRESS_PEER}', 7777))\n",
                ]
            )
            assert wait_for(lambda: stat("kni0", "rx_packets") > 1000 and stat("kni1", "tx_packets") > 1000, 30)
            app.kill()
        finally:
            if app.process.poll() is None:
                app.kill()
        assert wait_link("kni0", present=False) and wait_link("kni1", present=False)
        flood.kill()
        flood.wait()
        # Restarted, the application creates its interfaces again.
        with running(TestPmd.dpdk_22_11, "pa", VDEVS) as again:
            prepare_links()
            assert link_exists("kni0") and link_exists("kni1")
            assert again.quit() == 0
        assert wait_link("kni0", present=False) and wait_link("kni1", present=False)
    # rmmod succeeded (kni_module asserts it); no hugepage stayed pinned or mapped.
    assert wait_for(lambda: free_hugepages() == before)
    assert not os.path.exists("/dev/kni")
