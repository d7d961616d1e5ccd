# SPDX-License-Identifier: GPL-3.0-or-later
"""Empty and short mbufs on rx_q, as DPDK's kni_autotest sends them: loopback modes return them (whatever the
interface's state), normal mode drops and counts them; either way every rx mbuf comes back on free_q and rx_q drains."""

from __future__ import annotations

import pytest

from tests.guest.kni_fixtures import MODES, kni_module, rig, sh, stat, udp_frame, wait_for

pytestmark = pytest.mark.usefixtures("kni_hugepages")

# A freshly allocated mbuf (pkt_len = data_len = 0) and mbufs shorter than an Ethernet header: malformed frames.
RUNTS = [b"", b"\x01" * 5, b"\x02" * 13]
# Loopback also pads what is shorter than ETH_ZLEN when it sends it out as a frame.
SHORT = [*RUNTS, b"\x03" * 42]
FRAME = udp_frame(b"a frame of ordinary length", 9)


def expected_back(lo_mode: str, frame: bytes) -> bytes:
    # lo_mode_fifo copies the mbuf as it is; lo_mode_fifo_skb sends it out as a frame, padded to ETH_ZLEN.
    return frame if lo_mode == "lo_mode_fifo" else frame.ljust(60, b"\0")


@pytest.mark.parametrize("lo_mode", ["lo_mode_fifo", "lo_mode_fifo_skb"])
@pytest.mark.parametrize("mode", MODES)
def test_loopback_returns_empty_and_short_mbufs(mode: str, lo_mode: str) -> None:
    with kni_module(f"lo_mode={lo_mode}"), rig(mode) as bench:
        device = bench.add("kni0")
        baseline = bench.pool.in_use
        for state in ("up", "down"):
            sh(f"ip link set kni0 {state}")
            frames = SHORT * 8 + [FRAME]
            bench.inject("kni0", frames)
            back = bench.collect("kni0", len(frames))
            assert back == [expected_back(lo_mode, frame) for frame in frames], state
            assert device.fifo("rx").count() == 0, state
            # Every injected mbuf came back on free_q: only alloc_q's refill is still out.
            assert wait_for(lambda: device.free_completed() >= 0 and bench.pool.in_use <= baseline), state
        assert stat("kni0", "rx_errors") == 0


@pytest.mark.parametrize("mode", MODES)
def test_normal_mode_drops_and_counts_empty_and_runt_mbufs(mode: str) -> None:
    with kni_module(), rig(mode) as bench:
        device = bench.add("kni0")
        baseline = bench.pool.in_use
        rx_packets = stat("kni0", "rx_packets")
        for count, state in enumerate(("up", "down"), start=1):
            sh(f"ip link set kni0 {state}")
            bench.inject("kni0", RUNTS * 8)
            errors = count * len(RUNTS) * 8
            assert wait_for(lambda errors=errors: stat("kni0", "rx_errors") == errors), state
            assert device.fifo("rx").count() == 0, state
            assert wait_for(lambda: device.free_completed() >= 0 and bench.pool.in_use <= baseline), state
        assert stat("kni0", "rx_packets") == rx_packets
        assert stat("kni0", "rx_dropped") == 0
