# SPDX-License-Identifier: GPL-3.0-or-later
"""rte_kni data path in IOVA=PA, IOVA=VA and strict mode: ingress to a UDP socket, egress from one, counters,
loopback modes, and ingress under overload delivered to another process without backlog drops."""

from __future__ import annotations

import contextlib
import os
import socket
from collections.abc import Callable

import pytest

from tests.frames import parse_udp
from tests.guest.kni_fixtures import (
    KNI_IP,
    MODES,
    PEER_IP,
    PEER_MAC,
    kni_module,
    overload,
    rig,
    sh,
    stat,
    udp_frame,
    udp_rcvbuf_errors,
    wait_for,
)

pytestmark = pytest.mark.usefixtures("kni_hugepages")
PORT = 7777


def payloads(count: int, seed: int) -> list:
    return [bytes((seed + index + offset) & 0xFF for offset in range(20 + index * 37 % 1400)) for index in range(count)]


@pytest.mark.parametrize("mode", MODES)
def test_ingress_single_and_chained_mbufs_reach_a_udp_socket(mode: str) -> None:
    with kni_module(), rig(mode) as bench, contextlib.ExitStack() as stack:
        bench.add("kni0")
        bench.configure_ip()
        receiver = stack.enter_context(socket.socket(socket.AF_INET, socket.SOCK_DGRAM))
        receiver.bind((KNI_IP, PORT))
        receiver.settimeout(10)
        rx_packets, rx_bytes = stat("kni0", "rx_packets"), stat("kni0", "rx_bytes")
        single = payloads(40, 1)
        chained = [*payloads(40, 2), bytes(range(256)) * 5]  # 1280 bytes over up to 21 segments of 64
        frames_single = [udp_frame(data, PORT) for data in single]
        frames_chained = [udp_frame(data, PORT) for data in chained]
        bench.inject("kni0", frames_single)
        got = [receiver.recv(2048) for _index in single]
        assert got == single
        bench.inject("kni0", frames_chained[:20], segment_size=64)
        bench.inject("kni0", frames_chained[20:], segment_size=500)
        got = [receiver.recv(2048) for _index in chained]
        assert got == chained
        frames = frames_single + frames_chained
        assert wait_for(lambda: stat("kni0", "rx_packets") - rx_packets == len(frames))
        assert stat("kni0", "rx_bytes") - rx_bytes == sum(map(len, frames))
        assert stat("kni0", "rx_errors") == 0 and stat("kni0", "rx_dropped") == 0
        device = bench.devices["kni0"]
        assert wait_for(lambda: device.free_completed() >= 0 and bench.pool.in_use <= device.alloc_q_target)


@pytest.mark.parametrize("mode", MODES)
def test_egress_udp_datagrams_read_back_from_tx_q(mode: str) -> None:
    with kni_module(), rig(mode) as bench, contextlib.ExitStack() as stack:
        bench.add("kni0")
        bench.configure_ip()
        tx_packets, tx_bytes = stat("kni0", "tx_packets"), stat("kni0", "tx_bytes")
        sender = stack.enter_context(socket.socket(socket.AF_INET, socket.SOCK_DGRAM))
        sender.bind((KNI_IP, 0))
        data = payloads(100, 3)
        frames = []
        for index in range(0, len(data), 20):  # at most 20 in flight: alloc_q holds 128 mbufs
            for payload in data[index : index + 20]:
                sender.sendto(payload, (PEER_IP, PORT))
            frames += bench.collect("kni0", 20, keep=lambda frame: (parse_udp(frame) or (0,))[0] == PORT)
        assert [parse_udp(frame)[1] for frame in frames] == data
        assert all(frame[:6] == PEER_MAC for frame in frames)
        assert stat("kni0", "tx_packets") - tx_packets == len(frames)
        assert stat("kni0", "tx_bytes") - tx_bytes == sum(map(len, frames))


@pytest.mark.parametrize("lo_mode", ["lo_mode_fifo", "lo_mode_fifo_skb"])
@pytest.mark.parametrize("mode", MODES)
def test_loopback_modes_return_what_was_injected(lo_mode: str, mode: str) -> None:
    with kni_module(f"lo_mode={lo_mode}"), rig(mode) as bench:
        bench.add("kni0")
        frames = [udp_frame(data, PORT) for data in payloads(60, 4)]
        back = []
        for index in range(0, len(frames), 30):
            bench.inject("kni0", frames[index : index + 30])
            back += bench.collect("kni0", 30)
        assert back == frames
        if lo_mode == "lo_mode_fifo_skb":
            assert stat("kni0", "rx_packets") == len(frames) and stat("kni0", "tx_packets") == len(frames)


@pytest.mark.parametrize("mode", MODES)
def test_ingress_overload_delivers_everything_to_another_process(mode: str, report: Callable[[str], None]) -> None:
    with kni_module(), rig(mode, mbufs=2048) as bench:
        bench.add("kni0")
        bench.configure_ip()
        rcvbuf_errors = udp_rcvbuf_errors()
        injected, delivered, rx_packets, elapsed = overload(bench, 2.0, PORT)
        report(
            f"{mode}: injected {injected} in {elapsed:.2f} s, rx_packets {rx_packets}, delivered to the app {delivered}"
            f" ({delivered / elapsed:.0f}/s), rx_dropped {stat('kni0', 'rx_dropped')}, "
            f"UDP RcvbufErrors +{udp_rcvbuf_errors() - rcvbuf_errors}"
        )
        assert injected > 0
        assert rx_packets == injected
        assert delivered == rx_packets
        assert stat("kni0", "rx_dropped") == 0


def test_va_translation_is_exercised() -> None:
    """IOVA=VA: FIFOs and mbufs are reached through user virtual addresses only (the dmesg scan checks for WARNs)."""
    with kni_module("kthread_mode=multiple"), rig("va") as bench, contextlib.ExitStack() as stack:
        assert bench.arena.iova(bench.arena.base_va) == bench.arena.base_va
        for name in ("kni0", "kni1"):
            bench.add(name)
        bench.configure_ip("kni0")
        sh("ip link set kni1 up")
        receiver = stack.enter_context(socket.socket(socket.AF_INET, socket.SOCK_DGRAM))
        receiver.bind((KNI_IP, PORT))
        receiver.settimeout(10)
        data = payloads(50, 5)
        bench.inject("kni0", [udp_frame(payload, PORT) for payload in data], segment_size=256)
        assert [receiver.recv(2048) for _index in data] == data
    assert os.path.isdir("/sys/module") and not os.path.isdir("/sys/module/rte_kni")
