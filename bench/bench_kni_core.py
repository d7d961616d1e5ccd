#!/usr/bin/env python
# SPDX-License-Identifier: GPL-3.0-or-later
# Copyright: kernelnic.kni contributors
"""rte_kni core figures, in one guest (root; hugepages reservable), with the Python KNI library as userspace:

* ingress under overload: userspace fills rx_q as fast as it can; frames/s delivered to a UDP socket in another
  process beside the module's own rx_packets (equal means no backlog drops);
* idle CPU % of the kni_single kthread with an interface up and no traffic;
* release-while-up latency (RELEASE ioctl of an interface that is up, nobody answering its down request), median;
* request round-trip latency (SIOCSIFMTU: kernel -> userspace callback -> kernel), median;
* the kernel transmit path's packet rate: pktgen into the KNI interface (userspace recycling tx_q into alloc_q)
  beside pktgen into a veth pair on the same guest, and their ratio.

Run inside a guest: ``python -m tests.vmharness run --kernel 6.1 -- 'cd /work/main && .venv/bin/python
bench/bench_kni_core.py [/path/to/rte_kni.ko]'`` (default: ``$KNI_TEST_MODULES/rte_kni.ko``). It prints figures
and asserts nothing about them.
"""

from __future__ import annotations

import importlib
import os
import statistics
import subprocess
import sys
import threading
import time
from typing import List

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(REPO, "tests"))
importlib.import_module("conftest")  # makes ansible_collections.kernelnic.kni importable
sys.path.insert(0, REPO)
kni = importlib.import_module("tests.guest.kni_fixtures")

DURATION = float(os.environ.get("KNI_BENCH_SECONDS", "3"))
REPEATS = int(os.environ.get("KNI_BENCH_REPEATS", "9"))
PKTGEN_COUNT = int(os.environ.get("KNI_BENCH_PKTGEN_COUNT", "200000"))
PORT = 9998


def load(module: str, params: str = "") -> None:
    subprocess.run("rmmod rte_kni 2>/dev/null", shell=True, check=False)
    subprocess.run(f"insmod {module} {params}", shell=True, check=True)


def unload() -> None:
    subprocess.run(["rmmod", "rte_kni"], check=True)


def overload_figures() -> None:
    with kni.rig("pa", mbufs=2048) as bench:
        bench.add("kni0")
        bench.configure_ip()
        injected, delivered, rx_packets, elapsed = kni.overload(bench, DURATION, PORT)
        print(
            f"ingress overload: {injected} frames injected in {elapsed:.2f} s; rx_packets {rx_packets} "
            f"({rx_packets / elapsed:.0f}/s), delivered to the UDP app {delivered} ({delivered / elapsed:.0f}/s), "
            f"delivered/rx_packets {delivered / max(rx_packets, 1):.4f}, rx_dropped {kni.stat('kni0', 'rx_dropped')}"
        )


def idle_figures() -> None:
    with kni.rig("pa") as bench:
        bench.add("kni0")
        kni.sh("ip link set kni0 up")
        time.sleep(1)
        (pid,) = kni.kthread_pids("kni_single")
        before, started = kni.cpu_ticks(pid), time.monotonic()
        time.sleep(max(DURATION, 5))
        used = (kni.cpu_ticks(pid) - before) / os.sysconf("SC_CLK_TCK") / (time.monotonic() - started)
        print(f"idle: kni_single CPU {used * 100:.2f} % over {time.monotonic() - started:.1f} s (interface up)")


def _summary(samples: List[float]) -> str:
    return (
        f"median {statistics.median(samples) * 1e3:.1f} ms over {len(samples)} "
        f"(min {min(samples) * 1e3:.1f}, max {max(samples) * 1e3:.1f})"
    )


def release_figures() -> None:
    answered: List[float] = []
    unanswered: List[float] = []
    closed: List[float] = []
    for _attempt in range(REPEATS):
        with kni.rig("pa") as bench:
            for name in ("rel0", "rel1", "rel2", "rel3", "rel4"):
                bench.add(name)
                kni.sh(f"ip link set {name} up")
            answered.append(bench.remove("rel0"))
            bench.close_control_thread()  # from here on nobody answers requests, as after a crash
            unanswered.append(bench.remove("rel1"))
            closed.append(bench.close())  # three interfaces still up
    print(f"release while up (requests answered): {_summary(answered)}; upstream stalls 3100-3300 ms")
    print(f"release while up (nobody answering): {_summary(unanswered)}")
    print(f"close /dev/kni with 3 interfaces up: {_summary(closed)}")


def request_figures() -> None:
    samples: List[float] = []
    with kni.rig("pa") as bench:
        bench.add("kni0", max_mtu=9000)
        for index in range(max(REPEATS * 5, 30)):
            started = time.monotonic()
            kni.set_mtu_ioctl("kni0", 1000 + index)
            samples.append(time.monotonic() - started)
    print(
        f"request round trip (SIOCSIFMTU): median {statistics.median(samples) * 1e3:.2f} ms over {len(samples)} "
        f"(min {min(samples) * 1e3:.2f}, max {max(samples) * 1e3:.2f})"
    )


def pktgen(device: str) -> float:
    """Run pktgen on ``device`` for PKTGEN_COUNT 60-byte frames; returns its packets per second."""
    control = "/proc/net/pktgen/"

    def write(path: str, line: str) -> None:
        with open(control + path, "w", encoding="ascii") as handle:
            handle.write(line + "\n")

    write("kpktgend_0", f"add_device {device}")
    for line in (
        f"count {PKTGEN_COUNT}",
        "pkt_size 60",
        "clone_skb 0",
        "delay 0",
        f"dst {kni.PEER_IP}",
        f"dst_mac {kni.PEER_MAC.hex(':')}",
    ):
        write(device, line)
    write("pgctrl", "start")
    with open(control + device, encoding="ascii") as handle:
        result = handle.read()
    write("kpktgend_0", "rem_device_all")  # asynchronous: wait until the thread let go of the device
    deadline = time.monotonic() + 30
    while os.path.exists(control + device) and time.monotonic() < deadline:
        time.sleep(0.05)
    for line in result.splitlines():
        if "pps" in line:
            return float(line.split("pps")[0].split()[-1])
    raise RuntimeError(f"no pps in pktgen result: {result}")


def pktgen_figures() -> None:
    if subprocess.run(["modprobe", "pktgen"], check=False, capture_output=True).returncode:
        print("kernel path: pktgen is not available on this kernel")
        return
    kni.sh("ip link add kbv0 type veth peer name kbv1 && ip link set kbv1 up && ip link set kbv0 up")
    try:
        veth = pktgen("kbv0")
    finally:
        kni.sh("ip link del kbv0", check=False)
    with kni.rig("pa", mbufs=2048) as bench:
        device = bench.add("kni0")
        device.alloc_q_target = 1000
        bench.configure_ip()
        stop = threading.Event()

        def recycle() -> None:  # userspace side: give transmitted mbufs straight back to alloc_q
            while not stop.is_set():
                mbufs = device.rx_burst(512)
                bench.pool.free_burst(mbufs)
                if not mbufs:
                    time.sleep(0.0002)

        worker = threading.Thread(target=recycle, daemon=True)
        worker.start()
        tx_before, dropped_before = kni.stat("kni0", "tx_packets"), kni.stat("kni0", "tx_dropped")
        try:
            rate = pktgen("kni0")
        finally:
            stop.set()
            worker.join()
        sent = kni.stat("kni0", "tx_packets") - tx_before
        dropped = kni.stat("kni0", "tx_dropped") - dropped_before
    print(
        f"kernel path (pktgen, 60-byte frames, {PKTGEN_COUNT}): kni0 {rate:.0f} pps ({sent} to tx_q, {dropped} dropped"
        f" for want of alloc_q mbufs), veth {veth:.0f} pps, kni/veth ratio {rate / veth:.2f}"
    )


def main(argv: List[str]) -> int:
    module = argv[1] if len(argv) > 1 else os.path.join(os.environ["KNI_TEST_MODULES"], "rte_kni.ko")
    print(f"kernel {os.uname().release}, module {module}, {DURATION:.0f} s runs")
    kni.set_hugepages(64)
    try:
        load(module)
        only = os.environ.get("KNI_BENCH_ONLY", "")  # e.g. "pktgen,idle"
        for figures in (overload_figures, idle_figures, release_figures, request_figures, pktgen_figures):
            if only and figures.__name__.split("_", maxsplit=1)[0] not in only.split(","):
                continue
            figures()
            sys.stdout.flush()
        unload()
    finally:
        kni.set_hugepages(0)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
