# SPDX-License-Identifier: GPL-3.0-or-later
# Copyright: kernelnic.kni contributors
"""How much kni-pump moves per round and how much memory it takes: the burst sizes, the pool per interface and the
hugepage arena for all of them (pure). The daemon and its kernel adapter both size from here.
"""

from __future__ import annotations

from ansible_collections.kernelnic.kni.plugins.module_utils._kni.abi import (
    CACHE_LINE_SIZE,
    DEFAULT_DATA_ROOM,
    FIFO_AREA_SIZE,
    FIFO_COUNT_MAX,
    MAX_MBUF_BURST,
    MBUF_SIZE,
)

# Egress drains whatever tx_q holds, up to this many per round: under load, fewer and bigger rounds leave more CPU
# to the senders and the kernel thread. alloc_q is kept topped up to as many (at most half the pool), so the kernel
# rarely finds it empty between two rounds.
EGRESS_BURST = 16 * MAX_MBUF_BURST
ALLOC_Q_TARGET = EGRESS_BURST
# Ingress moves up to this many frames per round, once rx_q has room for as many: each round has a fixed cost.
INGRESS_BURST = 8 * MAX_MBUF_BURST
FREE_BURST = 16 * MAX_MBUF_BURST  # mbufs taken back from free_q per round: at least what a round can hand out
# At most this many of our mbufs (all rx_q holds, and at most 3/8 of the pool) wait in rx_q, so the pool keeps egress
# buffers. What the kernel still has queued when the pump starts waiting for room covers the pump's late wakeups,
# since a pump that shares its CPU with the application can wait several milliseconds for it.
INGRESS_IN_FLIGHT = FIFO_COUNT_MAX - 1
# mbufs per interface. alloc_q keeps up to 512 of them and rx_q up to 1023; 3072 leaves the ingress bursts enough
# free mbufs side by side to be allocated and freed in whole bursts.
DEFAULT_POOL_SIZE = 3072
# One mbuf in the pool: its header and data room, rounded up to a cache line.
MBUF_OBJECT_SIZE = -(-(MBUF_SIZE + DEFAULT_DATA_ROOM) // CACHE_LINE_SIZE) * CACHE_LINE_SIZE


def alloc_q_target(pool_size: int) -> int:
    """How many empty mbufs alloc_q is kept topped up to, for a pool of ``pool_size``."""
    return max(1, min(ALLOC_Q_TARGET, pool_size // 2))


def ingress_in_flight(pool_size: int) -> int:
    """How many mbufs at most wait in rx_q, for a pool of ``pool_size``."""
    return max(1, min(INGRESS_IN_FLIGHT, pool_size * 3 // 8))


def arena_bytes(max_interfaces: int, pool_size: int, object_size: int, segment_size: int) -> int:
    """Hugepage memory for ``max_interfaces`` interfaces: pools, 7 FIFO/sync zones each, and per-segment slack."""
    per_chunk = max(1, segment_size // object_size)
    chunks = -(-pool_size // per_chunk)
    per_interface = pool_size * object_size + 7 * (FIFO_AREA_SIZE + 64) + chunks * object_size
    total = max_interfaces * per_interface
    return (-(-total // segment_size) + 2) * segment_size
