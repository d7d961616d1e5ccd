#!/usr/bin/env python
# SPDX-License-Identifier: GPL-3.0-or-later
# Copyright: kernelnic.kni contributors
"""Nanoseconds per entry for KniFifo put+get and MbufPool alloc+free, at burst sizes 1, 8, 32 and 256.

Run from the repository root: ``python bench/bench_fifo.py``. Needs no kernel module and no hugepages.
"""

from __future__ import annotations

import importlib
import os
import sys
import time
from typing import Callable

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "tests"))
importlib.import_module("conftest")  # makes ansible_collections.kernelnic.kni importable
from ansible_collections.kernelnic.kni.plugins.module_utils._kni.fifo import KniFifo
from ansible_collections.kernelnic.kni.plugins.module_utils._kni.mbuf import MbufPool
from ansible_collections.kernelnic.kni.plugins.module_utils._kni.memory import anonymous_arena

BURSTS = (1, 8, 32, 256)
ENTRIES_PER_RUN = 1 << 20


def measure(step: Callable[[], None], burst: int) -> float:
    """Best of three runs, in ns per entry."""
    rounds = max(1, ENTRIES_PER_RUN // burst)
    best = float("inf")
    for _round in range(3):
        start = time.perf_counter_ns()
        for _step in range(rounds):
            step()
        best = min(best, (time.perf_counter_ns() - start) / (rounds * burst))
    return best


def steps(fifo: KniFifo, pool: MbufPool, values: list[int], burst: int) -> tuple[Callable[[], None], ...]:
    """The four measured steps for one burst size."""

    def round_trip() -> None:
        fifo.put(values)
        fifo.get(burst)

    def put_only() -> None:
        if fifo.put(values) == 0:
            fifo.get()

    def get_only() -> None:
        if not fifo.get(burst):
            fifo.put(values * (960 // burst or 1))

    def alloc_free() -> None:
        pool.free_burst(pool.alloc_burst(burst))

    return round_trip, put_only, get_only, alloc_free


def main() -> None:
    arena = anonymous_arena(64 * 1024 * 1024)
    fifo = KniFifo.initialise(arena.reserve("bench_fifo", 8208).view)
    pool = MbufPool(arena, "bench_pool", 4096)
    print(f"{'burst':>6} {'fifo put+get':>14} {'put':>8} {'get':>8} {'pool alloc+free':>16}  (ns/entry)")
    for burst in BURSTS:
        values = list(range(0x7F00_0000_0000, 0x7F00_0000_0000 + burst * 64, 64))
        round_trip, put_only, get_only, alloc_free = steps(fifo, pool, values, burst)
        print(
            f"{burst:>6} {measure(round_trip, burst):>14.1f} {measure(put_only, burst):>8.1f} "
            f"{measure(get_only, burst):>8.1f} {measure(alloc_free, burst):>16.1f}"
        )
        fifo.get()


if __name__ == "__main__":
    main()
