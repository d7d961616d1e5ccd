# SPDX-License-Identifier: GPL-3.0-or-later
# Copyright: kernelnic.kni contributors
"""The afpacket backend over a veth pair in a private network namespace (``unshare -n``; needs root and veth)."""

from __future__ import annotations

import errno
import json
import os
import shutil
import socket
import subprocess
import sys
import textwrap

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))))

SCRIPT = textwrap.dedent(
    """
    import json, os, select, socket, subprocess, sys, time
    sys.path.insert(0, os.path.join(sys.argv[1], "tests"))
    import conftest  # noqa: F401  (makes the collection importable)
    from ansible_collections.kernelnic.kni.plugins.module_utils._kni.memory import anonymous_arena
    from ansible_collections.kernelnic.kni.plugins.module_utils._kni.mbuf import MbufPool
    from ansible_collections.kernelnic.kni.plugins.module_utils._pump.backends import AfPacketBackend, interface_mtu

    def ip(*args):
        subprocess.run(["ip", *args], check=True)

    ip("link", "add", "va", "type", "veth", "peer", "name", "vb")
    ip("link", "set", "va", "up")
    ip("link", "set", "vb", "up")
    ip("link", "set", "vb", "mtu", "1400")
    deferred = []
    pool = MbufPool(anonymous_arena(8 << 20), "pool", 512)
    backend = AfPacketBackend(pool, lambda job, what: deferred.append((job, what)), "vb", bytes.fromhex("020000000001"))
    backend.set_admin_up(True)
    for job, _what in deferred:
        job()  # the unicast membership: runs fine here, no KNI request is holding RTNL
    peer = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(0x88B5))
    peer.bind(("va", 0x88B5))
    peer.setblocking(False)
    dst, src = bytes.fromhex("020000000001"), bytes.fromhex("02000000000a")
    sent = [dst + src + b"\\x88\\xb5" + bytes([n]) * (50 + 20 * n) for n in range(40)]
    for frame in sent:
        peer.send(frame)
    got, deadline = [], time.time() + 5
    while len(got) < len(sent) and time.time() < deadline:
        select.select([backend.fileno()], [], [], 0.1)
        vas, _bytes, dropped = backend.receive(32)
        got += [frame for frame in pool.read_packets(vas) if frame[12:14] == b"\\x88\\xb5"]  # not IPv6 chatter
        pool.free_burst(vas)
    # back the other way: mbufs -> TX ring -> one send() per burst -> the peer
    outgoing = [src + dst + b"\\x88\\xb5" + bytes([n]) * (46 + n) for n in range(70)]
    vas = pool.write_packets(outgoing)
    result = backend.transmit(vas[:32]), backend.transmit(vas[32:64]), backend.transmit(vas[64:])
    echoed, deadline = [], time.time() + 5
    while len(echoed) < len(outgoing) and time.time() < deadline:
        select.select([peer], [], [], 0.1)
        try:
            echoed.append(peer.recv(4096))
        except BlockingIOError:
            pass
    # frames we transmitted on vb must not come back on our own RX ring (PACKET_IGNORE_OUTGOING)
    time.sleep(0.2)
    vas, _bytes, _dropped = backend.receive(32)
    leftovers = [frame for frame in pool.read_packets(vas) if frame[12:14] == b"\\x88\\xb5"]  # not IPv6 chatter
    pool.free_burst(vas)
    link_before = backend.link_up
    mtu_checks = [backend.check_mtu(1400), backend.check_mtu(1401), backend.check_mtu(3000)]
    print(json.dumps({
        "received_ok": got == sent,
        "received": len(got),
        "transmit": result,
        "lengths": [len(frame) for frame in outgoing],
        "echoed_ok": echoed == outgoing,
        "echoed": len(echoed),
        "leftovers": len(leftovers),
        "link_up": link_before,
        "peer_mtu": interface_mtu("vb"),
        "mtu_checks": mtu_checks,
        "deferred": [what for _job, what in deferred],
        "pool_in_use": pool.in_use,
    }))
    backend.close()
    """
)


@pytest.fixture(scope="module")
def veth_run() -> dict:
    if os.geteuid() != 0 or not shutil.which("unshare") or not shutil.which("ip"):
        pytest.fail("this test needs root, unshare(1) and ip(8) to build a veth pair in a private namespace")
    completed = subprocess.run(
        ["unshare", "-n", sys.executable, "-c", SCRIPT, REPO], capture_output=True, text=True, timeout=60, check=False
    )
    assert completed.returncode == 0, completed.stderr
    return json.loads(completed.stdout.strip().splitlines()[-1])


def test_frames_from_the_link_arrive_in_mbufs(veth_run: dict) -> None:
    assert veth_run["received"] == 40 and veth_run["received_ok"]


def test_mbufs_go_out_through_the_tx_ring(veth_run: dict) -> None:
    lengths = veth_run["lengths"]
    assert veth_run["transmit"] == [[32, sum(lengths[:32]), 0], [32, sum(lengths[32:64]), 0], [6, sum(lengths[64:]), 0]]
    assert veth_run["echoed"] == 70 and veth_run["echoed_ok"]
    assert veth_run["pool_in_use"] == 0  # transmit took ownership and freed every mbuf


def test_own_transmissions_are_not_received(veth_run: dict) -> None:
    assert veth_run["leftovers"] == 0


def test_link_state_and_mtu_policy(veth_run: dict) -> None:
    assert veth_run["link_up"] is True
    assert veth_run["peer_mtu"] == 1400
    assert veth_run["mtu_checks"] == [0, -22, -22]  # above the peer's MTU, above an mbuf


def test_mac_goes_to_the_unicast_filter_off_thread(veth_run: dict) -> None:
    assert veth_run["deferred"] == ["vb: add unicast membership"]


def test_setsockopt_releasing_gil_reports_the_errno() -> None:
    from ansible_collections.kernelnic.kni.plugins.module_utils._pump.afpacket import setsockopt_releasing_gil

    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as unix, pytest.raises(OSError) as raised:
        setsockopt_releasing_gil(unix.fileno(), 263, 1, b"\0" * 16)  # SOL_PACKET on a Unix socket
    assert raised.value.errno in (errno.ENOPROTOOPT, errno.EOPNOTSUPP, errno.EINVAL)
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as unix:
        setsockopt_releasing_gil(unix.fileno(), socket.SOL_SOCKET, socket.SO_PASSCRED, (1).to_bytes(4, "little"))
        assert unix.getsockopt(socket.SOL_SOCKET, socket.SO_PASSCRED) == 1
