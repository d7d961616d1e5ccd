#!/usr/bin/env python
# SPDX-License-Identifier: GPL-3.0-or-later
# Copyright: kernelnic.kni contributors
"""A C application's figures: dpdk-testpmd (DPDK 22.11, built by the set-up) as the userspace of

(a) our rte_kni.ko (``--vdev=net_kni0``),
(b) DPDK 22.11's own KNI module, built by this bench from the same Debian source package (a comparison baseline,
    never part of kmod/; on kernels it does not build on, the table says why),
(c) virtio-user over vhost-net (``--vdev=virtio_user0,path=/dev/vhost-net``), DPDK's recommended replacement for KNI,

plus kni-pump (null backend) on our module, so that the cost of the Python userspace is on record beside testpmd.

* ingress: testpmd's ``txonly`` sends UDP as fast as it can; a UDP app in another process counts the datagrams it
  receives (``recvmmsg``, 64 at a time): datagrams per second delivered to a socket.
* egress: the kernel's pktgen transmits through the interface; testpmd's ``rxonly`` counts what it received: frames
  per second, with the interface's ``tx_dropped`` per second beside.

Runs alternate the order of (a), (b), (c) per round; each figure is the median of the rounds, with the range, and
the ratio of (a) to it. Prints, asserts nothing.

On the host: ``.venv/bin/python bench/bench_dpdk.py [--kernel 6.1 --kernel 7.x] [--rounds 2] [--seconds 3]`` builds
both modules per kernel and boots one guest per kernel that runs ``bench_dpdk.py guest ...``.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import multiprocessing
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from types import ModuleType
from typing import TYPE_CHECKING, Dict, List, Optional, Tuple

if TYPE_CHECKING:
    from tests.guest.dpdk_apps import TestPmd
    from tests.vmharness.matrix import Kernel

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)
sys.path.insert(0, os.path.join(REPO, "tests"))
importlib.import_module("conftest")  # makes ansible_collections.kernelnic.kni importable

SIZES = (64, 1500)
INGRESS_SRC, INGRESS_DST = "198.18.0.1", "198.18.0.2"
IFACE_MAC = "02:00:00:88:00:01"
VIRTIO_IFACE = "vbench0"
PUMP_IP, PUMP_PEER_IP = "10.88.0.1", "10.88.0.2"  # pump_lab.KniSide's addresses
HUGEPAGES = 256
# testpmd's txonly sends UDP from INGRESS_SRC:40000 to INGRESS_DST at bench_pump's port (its receiver's).
TX_ADDRESSES = (f"--tx-ip={INGRESS_SRC},{INGRESS_DST}", "--tx-udp=40000,9999")
UPSTREAM_FILES = {
    "kernel/linux/kni": ("kni_misc.c", "kni_net.c", "kni_dev.h", "kni_fifo.h", "compat.h"),
    "lib/kni": ("rte_kni_common.h",),
    "config": ("rte_config.h",),
}
# Our own build glue for the baseline: DPDK's meson passes its Kbuild the same flags (and HAVE_ARG_TX_QUEUE, which
# only SUSE kernels need).
UPSTREAM_KBUILD = """obj-m := rte_kni.o
rte_kni-y := kni_misc.o kni_net.o
ccflags-y := -include $(src)/rte_config.h -I$(src)
"""


# --- on the host ----------------------------------------------------------------------------------------------------


def stage_upstream_module(directory: str) -> None:
    """A Kbuild tree of DPDK 22.11's KNI module from the set-up's source package."""
    from tests.vmharness import dpdk

    record = dpdk.load()
    for subdir, names in UPSTREAM_FILES.items():
        for name in names:
            shutil.copy2(os.path.join(record.source, subdir, name), directory)
    shutil.copy2(os.path.join(record.prefix, "include", "rte_build_config.h"), directory)
    with open(os.path.join(directory, "Kbuild"), "w", encoding="ascii") as handle:
        handle.write(UPSTREAM_KBUILD)


def first_error(log: str) -> str:
    for line in log.splitlines():
        if " error: " in line:
            return line.split("/")[-1].strip()
    return log.strip().splitlines()[-1] if log.strip() else "no output"


def build_modules(kernel: Kernel, output: str, ours_source: str) -> Tuple[str, str]:
    """(path of our module, path of upstream's or "n/a: <why>") for ``kernel``."""
    from tests.vmharness import kbuild

    ours = kbuild.build_module(kernel, ours_source, os.path.join(output, "ours"))[0]
    staging = tempfile.mkdtemp(prefix="kni-upstream-")
    try:
        stage_upstream_module(staging)
        upstream = kbuild.build_module(kernel, staging, os.path.join(output, "upstream"), werror=False)[0]
    except kbuild.BuildError as exc:
        upstream = f"n/a: does not build on {kernel.release}: {first_error(str(exc))}"
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return ours, upstream


def host_main(args: argparse.Namespace) -> int:
    from tests.vmharness import guest, matrix

    status = 0
    for name in args.kernel or ["6.1", "7.x"]:
        kernel = matrix.kernel(name)
        output = tempfile.mkdtemp(prefix=f"kni-bench-dpdk-{name}-", dir="/var/tmp")
        os.chmod(output, 0o755)
        try:
            ours, upstream = build_modules(kernel, output, args.kmod)
            for path in (ours, upstream):
                if os.path.exists(path):
                    os.chmod(path, 0o644)
            script = (
                f"cd {REPO} && {sys.executable} bench/bench_dpdk.py guest --ours {ours} "
                f"--upstream '{upstream}' --rounds {args.rounds} --seconds {args.seconds}"
            )
            result = guest.run_script(kernel, script, timeout=3600, memory_mb=3072)
        finally:
            shutil.rmtree(output, ignore_errors=True)
        print(result.output, end="" if result.output.endswith("\n") else "\n")
        problems = result.dmesg_problems()
        if result.exit_code or problems:
            print(f"{name}: guest exit {result.exit_code}; dmesg: {problems}")
            status = 1
    return status


# --- in the guest ---------------------------------------------------------------------------------------------------


def sh(command: str) -> str:
    return subprocess.run(command, shell=True, check=True, capture_output=True, text=True).stdout


def address_of(device: str) -> str:
    with open(f"/sys/class/net/{device}/address", encoding="ascii") as handle:
        return handle.read().strip()


def counter(device: str, name: str) -> int:
    with open(f"/sys/class/net/{device}/statistics/{name}", encoding="ascii") as handle:
        return int(handle.read())


class Variant:
    """One userspace/kernel pair: how to set the kernel up, the testpmd vdev, its IOVA mode and interface."""

    def __init__(self, label: str, module: str, vdev: str, iova: str, iface: str) -> None:
        self.label, self.module, self.vdev, self.iova, self.iface = label, module, vdev, iova, iface

    @property
    def unavailable(self) -> str:
        return self.module if self.module.startswith("n/a") else ""

    @contextlib.contextmanager
    def kernel_side(self) -> Iterator[None]:
        if self.module:
            sh(f"insmod {self.module} carrier=on")
        else:
            sh("modprobe vhost_net && modprobe tun")
        try:
            yield
        finally:
            if self.module:
                sh("rmmod rte_kni")


def wait_link(name: str, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not os.path.exists(f"/sys/class/net/{name}"):
        if time.monotonic() > deadline:
            raise RuntimeError(f"{name} did not appear")
        time.sleep(0.1)


def datagrams_per_second(address: str, seconds: float, lab: ModuleType) -> float:
    """Datagrams/s a UDP app in another process receives on ``address`` over ``seconds`` (after a warm-up)."""
    time.sleep(0.5)
    ready = multiprocessing.Event()
    result: multiprocessing.Queue = multiprocessing.Queue()
    receiver = multiprocessing.Process(target=lab.udp_receiver, args=(address, seconds, ready, result))
    receiver.start()
    received, _cpu = result.get(timeout=seconds + 60)
    receiver.join()
    return received / seconds


def measure_ingress(app: TestPmd, size: int, seconds: float, lab: ModuleType) -> float:
    """Datagrams/s delivered to a UDP socket while testpmd's txonly sends ``size``-byte frames."""
    app.cmd(f"set txpkts {size}")
    app.cmd("set fwd txonly")
    app.cmd("start")
    try:
        return datagrams_per_second(INGRESS_DST, seconds, lab)
    finally:
        app.cmd("stop")


def measure_egress(app: TestPmd, variant: Variant, size: int, seconds: float, lab: ModuleType) -> Tuple[float, float]:
    """(frames/s testpmd's rxonly received, frames/s the interface dropped) while pktgen transmits."""
    app.cmd("set fwd rxonly")
    app.cmd("clear port stats all")
    app.cmd("start")
    dropped_before = counter(variant.iface, "tx_dropped")
    lab.pktgen_send(variant.iface, size, seconds)
    time.sleep(0.3)
    app.cmd("stop")
    received = app.port_stats(0)["RX-packets"]
    return received / seconds, (counter(variant.iface, "tx_dropped") - dropped_before) / seconds


def run_variant(variant: Variant, seconds: float, lab: ModuleType) -> Dict[str, float]:
    from tests.guest.dpdk_apps import TestPmd, remove_hugepage_files

    figures: Dict[str, float] = {}
    with variant.kernel_side():
        app = TestPmd.dpdk_22_11(variant.iova, (variant.vdev,), *TX_ADDRESSES)
        try:
            wait_link(variant.iface)
            sh(f"sysctl -qw net.ipv6.conf.{variant.iface}.disable_ipv6=1")
            sh(f"ip addr add {INGRESS_DST}/24 dev {variant.iface} && ip link set {variant.iface} up")
            app.cmd(f"set eth-peer 0 {address_of(variant.iface)}")
            for size in SIZES:
                figures[f"ingress {size}"] = measure_ingress(app, size, seconds, lab)
                figures[f"egress {size}"], figures[f"dropped {size}"] = measure_egress(app, variant, size, seconds, lab)
            app.quit()
        finally:
            if app.process.poll() is None:
                app.kill()
            remove_hugepage_files()
    return figures


def pump_ingress(size: int, seconds: float, lab: ModuleType) -> float:
    """Datagrams/s delivered to a UDP socket while kni-pump's null backend feeds ``size``-byte frames."""
    frame = lab.udp_frame(size, lab.KNI_MAC, PUMP_PEER_IP, PUMP_IP)
    side = lab.KniSide(frame)
    try:
        return datagrams_per_second(PUMP_IP, seconds, lab)
    finally:
        side.stop()


def pump_egress(size: int, seconds: float, lab: ModuleType) -> Tuple[float, float]:
    """(frames/s kni-pump's null backend drained, frames/s the interface dropped) while pktgen transmits."""
    side = lab.KniSide()
    try:
        dropped_before = counter(lab.KNI_NAME, "tx_dropped")
        lab.pktgen_send(lab.KNI_NAME, size, seconds)
        dropped = counter(lab.KNI_NAME, "tx_dropped") - dropped_before
        time.sleep(0.3)
    finally:
        counters = side.stop()
    return counters["egress_packets"] / seconds, dropped / seconds


def run_pump(module: str, seconds: float, lab: ModuleType) -> Dict[str, float]:
    """kni-pump (null backend) on our module: the same two figures with the Python userspace."""
    figures: Dict[str, float] = {}
    sh(f"insmod {module}")
    try:
        for size in SIZES:
            figures[f"ingress {size}"] = pump_ingress(size, seconds, lab)
            figures[f"egress {size}"], figures[f"dropped {size}"] = pump_egress(size, seconds, lab)
    finally:
        sh("rmmod rte_kni")
    return figures


def text(samples: List[float]) -> str:
    value = statistics.median(samples)
    if len(samples) > 1:
        return f"{value / 1e3:7.1f}k [{min(samples) / 1e3:.0f}-{max(samples) / 1e3:.0f}]"
    return f"{value / 1e3:7.1f}k"


def print_table(rows: Dict[str, Dict[str, List[float]]], notes: Dict[str, str], reference: str) -> None:
    columns = [f"{direction} {size}" for direction in ("ingress", "egress") for size in SIZES]
    print(f"{'':34}" + "".join(f"{column + ' B':>30}" for column in columns))
    for label, figures in rows.items():
        if label in notes:
            print(f"{label:34}{notes[label]}")
            continue
        cells = []
        for column in columns:
            samples = figures.get(column, [])
            cell = text(samples) if samples else "-"
            if column.startswith("egress"):
                dropped = figures.get(column.replace("egress", "dropped"), [])
                cell += f" drop {statistics.median(dropped) / 1e3:.0f}k" if dropped else ""
            if label != reference and samples and rows[reference].get(column):
                cell += f" ({statistics.median(rows[reference][column]) / max(statistics.median(samples), 1e-9):.2f}x)"
            cells.append(f"{cell:>30}")
        print(f"{label:34}" + "".join(cells))


def guest_main(args: argparse.Namespace) -> int:
    lab = importlib.import_module("pump_lab")
    lab.prepare_guest()
    if not lab.pktgen_available():  # loads it
        print("pktgen is not available in this kernel: the egress figures need it", file=sys.stderr)
        return 2
    with open("/proc/sys/vm/nr_hugepages", "w", encoding="ascii") as handle:
        handle.write(str(HUGEPAGES))
    variants = [
        Variant("(a) our rte_kni.ko", args.ours, "net_kni0", "pa", "kni0"),
        Variant("(b) DPDK 22.11's rte_kni.ko", args.upstream, "net_kni0", "pa", "kni0"),
        Variant(
            "(c) virtio-user + vhost-net",
            "",
            f"virtio_user0,path=/dev/vhost-net,queues=1,queue_size=1024,iface={VIRTIO_IFACE},mac={IFACE_MAC}",
            "va",
            VIRTIO_IFACE,
        ),
    ]
    rows: Dict[str, Dict[str, List[float]]] = {variant.label: {} for variant in variants}
    notes = {variant.label: variant.unavailable for variant in variants if variant.unavailable}
    measured = [variant for variant in variants if not variant.unavailable]
    for round_index in range(args.rounds):
        order = measured[round_index % len(measured) :] + measured[: round_index % len(measured)]
        for variant in order:
            for column, value in run_variant(variant, args.seconds, lab).items():
                rows[variant.label].setdefault(column, []).append(value)
    pump_label = "kni-pump (null backend) on (a)"
    rows[pump_label] = {}
    for column, value in run_pump(args.ours, args.seconds, lab).items():
        rows[pump_label].setdefault(column, []).append(value)
    release = os.uname().release
    print(
        f"\n{release}: {os.cpu_count()} vCPUs, testpmd --lcores 0@0,1@1,2@1, {args.seconds:g} s per figure, "
        f"{args.rounds} alternating rounds: median [range] per second; (n.nnx) = (a) / this row"
    )
    print("ingress: UDP datagrams delivered to a socket from testpmd txonly; egress: frames testpmd rxonly received")
    print("from pktgen through the interface, drop = the interface's tx_dropped per second; (a) and (b) IOVA=PA,")
    print("kthread_mode=single, carrier=on; (c) IOVA=VA (virtio-user needs it); kni-pump: one run")
    print_table(rows, notes, variants[0].label)
    return 0


def main(argv: Optional[List[str]] = None) -> int:
    timing = argparse.ArgumentParser(add_help=False)
    timing.add_argument("--rounds", type=int, default=2)
    timing.add_argument("--seconds", type=float, default=3.0)
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0], parents=[timing])
    # Without a subcommand the host side runs with its defaults.
    parser.set_defaults(kernel=None, kmod=os.path.join(REPO, "kmod"))
    sub = parser.add_subparsers(dest="where")
    host = sub.add_parser("host", parents=[timing], help="build the modules, boot one guest per kernel (the default)")
    host.add_argument("--kernel", action="append", help="a matrix kernel (repeatable; default 6.1 and 7.x)")
    host.add_argument("--kmod", default=os.path.join(REPO, "kmod"), help="build (a) from this tree (before/after)")
    inside = sub.add_parser("guest", parents=[timing], help="run in a guest with the modules built")
    inside.add_argument("--ours", required=True)
    inside.add_argument("--upstream", required=True)
    args = parser.parse_args(argv)
    return guest_main(args) if args.where == "guest" else host_main(args)


if __name__ == "__main__":
    sys.exit(main())
