#!/usr/bin/env python
# SPDX-License-Identifier: GPL-3.0-or-later
# Copyright: kernelnic.kni contributors
"""The cost of one kni-pump round (``Port.pump``), on the host, with the kernel's side played in Python (not timed).

* egress: the kernel takes mbufs from alloc_q, writes a frame length into each and posts them on tx_q; the pump
  drains tx_q into the null backend (a sink) and tops alloc_q up again. "all" has the kernel take everything alloc_q
  holds between two rounds (a sender faster than the pump); "part" only 100 mbufs, so tx_q bursts straddle two
  alloc_q refills.
* ingress: the null backend is a source: the pump writes a frame into each mbuf it posts on rx_q; the kernel hands
  them all back through free_q between rounds.

Prints microseconds per round and nanoseconds per frame; compare runs before and after a change of the hot path.
No kernel module, no hugepages: ``python bench/bench_pump_round.py``.
"""

from __future__ import annotations

import importlib
import os
import statistics
import struct
import sys
import tempfile
import time
from typing import Callable, List, Tuple

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(REPO, "tests"))
sys.path.insert(0, os.path.join(REPO, "tests", "unit", "plugins", "module_utils"))
importlib.import_module("conftest")  # makes ansible_collections.kernelnic.kni importable
from ansible_collections.kernelnic.kni.plugins.module_utils._kni.abi import MBUF_PKT_LEN_OFFSET
from ansible_collections.kernelnic.kni.plugins.module_utils._pump.backends import NullBackend
from ansible_collections.kernelnic.kni.plugins.module_utils._pump.daemon import PumpDaemon, Settings
from ansible_collections.kernelnic.kni.plugins.module_utils._pump.port import Port
from ansible_collections.kernelnic.kni.plugins.module_utils._pump.schema import parse_interface
from ansible_collections.kernelnic.kni.plugins.module_utils._pump.sizing import DEFAULT_POOL_SIZE
from pump_fakes import FakeKni, FakeLinks, ThreadWorker, fake_system  # pylint: disable=import-error

ROUNDS = 3000
LENGTHS = struct.Struct("<IH")


def make_port(directory: str, source_frame: bytes) -> Tuple[PumpDaemon, Port]:
    kni = FakeKni(pool_size=DEFAULT_POOL_SIZE)  # a pool and alloc_q as KernelKni makes them
    daemon = PumpDaemon(Settings(directory, max_interfaces=1), kni, FakeLinks(), ThreadWorker(), None, fake_system())
    daemon.start([parse_interface({"name": "kbench0", "backend": "null", "carrier": "on"})])
    port = daemon.ports["kbench0"]
    if source_frame:
        port.backend.close()
        port.backend = NullBackend(port.pool, daemon._defer, source_frame)  # pylint: disable=protected-access
    return daemon, port


def kernel_transmits(port: Port, size: int, limit: int) -> Callable[[], None]:
    """Between rounds: move up to ``limit`` mbufs from alloc_q to tx_q, each holding a ``size``-byte frame."""
    alloc_q, tx_q = port.device.fifo("alloc"), port.device.fifo("tx")
    view, base = port.device.arena.view, port.device.arena.base_va

    def play() -> None:
        vas = alloc_q.get(min(limit, tx_q.free_count()))
        for va in vas:
            LENGTHS.pack_into(view, va - base + MBUF_PKT_LEN_OFFSET, size, size)
        tx_q.put(vas)

    return play


def kernel_receives(port: Port) -> Callable[[], None]:
    """Between rounds: take everything on rx_q and hand it back through free_q."""
    rx_q, free_q = port.device.fifo("rx"), port.device.fifo("free")

    def play() -> None:
        free_q.put(rx_q.get())

    return play


def measure(port: Port, kernel: Callable[[], None]) -> Tuple[float, float, float]:
    """(median microseconds per round, frames per round, nanoseconds per frame) over ROUNDS timed rounds."""
    times: List[float] = []
    moved = 0
    for _round in range(200):  # settle: the pool's order after start-up is not the steady state
        kernel()
        port.pump()
    for _round in range(ROUNDS):
        kernel()
        start = time.perf_counter_ns()
        moved += port.pump()
        times.append(time.perf_counter_ns() - start)
    return statistics.median(times) / 1000, moved / ROUNDS, sum(times) / max(moved, 1)


def main() -> None:
    print(f"kni-pump round on the host, Python {sys.version.split()[0]}, median of {ROUNDS} rounds")
    print("direction  case  frame  us/round  frames/round  ns/frame")
    for size in (64, 1500):
        for case, limit in (("all", 1 << 16), ("part", 100)):
            with tempfile.TemporaryDirectory() as directory:
                daemon, port = make_port(directory, b"")
                per_round, frames, per_frame = measure(port, kernel_transmits(port, size, limit))
                daemon.close()
            print(f"egress     {case:4}  {size:5}  {per_round:8.1f}  {frames:12.0f}  {per_frame:8.0f}")
        with tempfile.TemporaryDirectory() as directory:
            daemon, port = make_port(directory, bytes(size))
            per_round, frames, per_frame = measure(port, kernel_receives(port))
            daemon.close()
        print(f"ingress    all   {size:5}  {per_round:8.1f}  {frames:12.0f}  {per_frame:8.0f}")


if __name__ == "__main__":
    main()
