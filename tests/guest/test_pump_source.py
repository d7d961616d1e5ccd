# SPDX-License-Identifier: GPL-3.0-or-later
# Copyright: kernelnic.kni contributors
"""The null backend as a traffic source (what bench_pump measures ingress with), on the real rte_kni module.

The source leaves mbufs that still hold its frame as they are. Its mbufs come from the same pool as alloc_q's, which
the kernel fills with egress frames: every frame the stack receives must still be the source's frame, byte for byte,
while egress traffic runs through the same pool.
"""

from __future__ import annotations

import ctypes
import fcntl
import json
import os
import socket
import struct
import subprocess
import sys
import threading
import time

import pytest

from tests.guest.kni_fixtures import KNI_IP, KNI_MAC, PEER_IP, PEER_MAC, udp_frame
from tests.guest.test_pump_kni import ENV, sh, teardown, wait_for

RUN_DIR = "/tmp/kni-pump-source"
NAME = "ksource0"
PORT = 9898
SECONDS = 3.0
ETH_P_ALL = 0x0003
PACKET_OUTGOING = 4

# A pump with one interface whose null backend feeds it FRAME (hex, argv[1]) until the file argv[2] exists; then
# prints the interface's counters as JSON.
SOURCE_PUMP = f"""
import json, os, sys
from ansible_collections.kernelnic.kni.plugins.module_utils._pump.backends import NullBackend
from ansible_collections.kernelnic.kni.plugins.module_utils._pump.schema import parse_interface
from ansible_collections.kernelnic.kni.plugins.module_utils._pump.daemon import PumpDaemon, Settings
from ansible_collections.kernelnic.kni.plugins.module_utils._pump.kernel_adapter import KernelKni
from ansible_collections.kernelnic.kni.plugins.module_utils._pump.netlink import RtnlClient, RtnlWorker

worker, kni = RtnlWorker(), KernelKni(max_interfaces=1)
daemon = PumpDaemon(Settings("{RUN_DIR}/state", max_interfaces=1), kni, RtnlClient(), worker)
daemon.start([parse_interface({{"name": "{NAME}", "mac": "{KNI_MAC.hex(":")}", "backend": "null", "carrier": "on"}})])
port = daemon.ports["{NAME}"]
port.backend.close()
port.backend = NullBackend(port.pool, daemon._defer, bytes.fromhex(sys.argv[1]))
print("ready", flush=True)
daemon.run(until=lambda: os.path.exists(sys.argv[2]))
print(json.dumps(port.counters), flush=True)
daemon.close()
worker.stop()
kni.close()
"""


def gro_off(name: str) -> None:
    """ETHTOOL_SGRO 0 through the SIOCETHTOOL ioctl."""
    value = ctypes.create_string_buffer(struct.pack("II", 0x2C, 0))
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        fcntl.ioctl(sock.fileno(), 0x8946, struct.pack("16sP8x", name.encode(), ctypes.addressof(value)))


def send_egress(length: int, stop: threading.Event, sent: list[int]) -> None:
    """Datagrams that make ``length``-byte frames with other bytes than the source's, out through the interface."""
    payload = b"\xee" * (length - 42)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        while not stop.is_set():
            try:
                sock.sendto(payload, (PEER_IP, PORT))
                sent[0] += 1
            except OSError:  # ENOBUFS while the interface's queue is full
                time.sleep(0.001)


def receive(frame: bytes) -> tuple[int, list[bytes]]:
    """(frames equal to ``frame``, the first few that differ) among what the interface received for SECONDS."""
    matching, different = 0, []
    with socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ALL)) as sock:
        sock.bind((NAME, 0))
        sock.settimeout(0.2)
        deadline = time.monotonic() + SECONDS
        while time.monotonic() < deadline:
            try:
                data, address = sock.recvfrom(4096)
            except socket.timeout:
                continue
            if address[2] == PACKET_OUTGOING:
                continue
            if data == frame:
                matching += 1
            elif len(different) < 4:
                different.append(data)
    return matching, different


@pytest.mark.parametrize("length", [64, 1514])
def test_source_frames_arrive_intact_while_egress_shares_the_pool(length: int) -> None:
    teardown()
    sh(f"insmod {os.path.join(os.environ['KNI_TEST_MODULES'], 'rte_kni.ko')}")
    sh("echo 16 > /proc/sys/vm/nr_hugepages")
    sh(f"rm -rf {RUN_DIR} && mkdir -p {RUN_DIR}/state")
    frame = udp_frame((bytes(range(256)) * 6)[: length - 42], PORT)  # from the peer to the interface
    stop_file = f"{RUN_DIR}/stop"
    command = [sys.executable, "-S", "-c", SOURCE_PUMP, frame.hex(), stop_file]
    process = subprocess.Popen(command, env=ENV, stdout=subprocess.PIPE, text=True)
    stop, sent = threading.Event(), [0]
    sender = threading.Thread(target=send_egress, args=(length, stop, sent))
    try:
        assert process.stdout is not None and process.stdout.readline().strip() == "ready"
        assert wait_for(lambda: os.path.exists(f"/sys/class/net/{NAME}"))
        gro_off(NAME)  # frames arrive one by one
        sh(f"ip link set {NAME} up && ip addr add {KNI_IP}/24 dev {NAME}")
        sh(f"ip neigh replace {PEER_IP} lladdr {PEER_MAC.hex(':')} dev {NAME}")
        sender.start()
        matching, different = receive(frame)
        stop.set()
        sender.join(30)
        with open(stop_file, "w", encoding="ascii"):
            pass
        output, _unused = process.communicate(timeout=60)
        counters = json.loads(output.strip().splitlines()[-1])
    finally:
        stop.set()
        if process.poll() is None:
            process.kill()
            process.wait(30)
        teardown()
    assert not different, f"{len(different)}+ frames are not the source's, e.g. {different[0][:64].hex()}"
    assert matching >= 100, f"only {matching} source frames received"
    assert sent[0] >= 100 and counters["egress_packets"] >= 100, (sent[0], counters)
