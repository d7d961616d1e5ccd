#!/usr/bin/env python
# SPDX-License-Identifier: GPL-3.0-or-later
# Copyright: kernelnic.kni contributors
"""kni-pump figures, in one guest (root, rte_kni loaded or loadable, hugepages reservable):

* egress and ingress packet rates for 64- and 1500-byte frames through KNI + pump, beside the same pump loop over a
  TAP device (one read()/write() per frame), and their ratio. Egress: the kernel's pktgen transmits through the
  interface as fast as it can; the pump (null backend) counts the frames it drained, and the interface's
  ``tx_dropped`` (frames the kernel had no room for) is printed beside. Ingress: the pump (null backend as a source)
  feeds one UDP frame over and over; a UDP app in another process counts the datagrams it receives, 64 per
  ``recvmmsg()``. "no app" repeats ingress with nobody listening and counts the frames the interface passed to the
  stack: what the pump and the driver move when the app (and the UDP delivery) do not share the CPUs with them.
  Each ingress figure also says where the CPU time went per datagram: the pump process, the app process, the rest
  (kernel threads and softirqs: the driver and the stack), and how much of the CPUs stayed idle. The CPUs cap a rate
  at CPUs x 10^6 / microseconds per datagram, which is what a ratio is up against once they are all busy.
  Without pktgen (a kernel built without it), egress falls back to a UDP sender process, which is slower than either
  pump and is said so.
* request round-trip latency: RTM_SETLINK MTU changes on the idle KNI interface (kernel -> pump -> kernel), median;
* idle CPU of the pump process and the KNI kernel thread over a few seconds with nothing to do;
* restart to ready: ``kill -9`` of the service (``kni-pump run``, compiled bytecode as the role installs it), then a
  new one from the persisted state, from the new process's start until both interfaces exist again with their MAC,
  MTU, administrative state (up, persisted) and carrier; and how much of that was the interpreter and imports (from
  the pump's own "ready" log line). The first start after compiling is reported apart: the guest's root is 9p, and
  files read for the first time since boot are slow (cold); restarts read them from the page cache (warm).

``KNI_BENCH_PARTS`` (default ``rates,latency,restart``) picks the figures, ``KNI_BENCH_SECONDS`` their duration,
``KNI_BENCH_REPEAT`` (default 3) how many runs of each rate figure give its median.

Run inside a guest: ``python -m tests.vmharness run --kernel 6.1 -- 'cd /work/main && .venv/bin/python
bench/bench_pump.py /path/to/rte_kni.ko'``. It prints figures and asserts nothing about them.
"""

from __future__ import annotations

import importlib
import multiprocessing
import os
import signal
import socket
import statistics
import subprocess
import sys
import time
from typing import Callable, List, NamedTuple, Optional, Tuple

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
importlib.import_module("pump_lab")  # first: it sets up the collection's import path
from ansible_collections.kernelnic.kni.plugins.module_utils._pump.netlink import RtnlClient
from ansible_collections.kernelnic.kni.plugins.module_utils._pump.pacing import (
    WARM_IDLE,
)
from pump_lab import (
    KNI_MAC,
    KNI_NAME,
    REPO,
    TAP_NAME,
    UDP_PORT,
    KniSide,
    TapSide,
    pktgen_available,
    pktgen_send,
    prepare_guest,
    udp_frame,
    udp_receiver,
)

DURATION = float(os.environ.get("KNI_BENCH_SECONDS", "3"))
REPEAT = int(os.environ.get("KNI_BENCH_REPEAT", "3"))
FRAME_SIZES = (64, 1500)


# --- helper processes ---------------------------------------------------------------------------------------------


def udp_sender(destination: str, size: int, seconds: float, result: multiprocessing.Queue) -> None:
    """Send datagrams making ``size``-byte frames as fast as one process can, for ``seconds``."""
    payload = bytes(size - 14 - 20 - 8)
    sent = 0
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            for _repeat in range(64):
                try:
                    sock.sendto(payload, (destination, UDP_PORT))
                    sent += 1
                except OSError:
                    pass
    result.put(sent)


# --- the pump over KNI --------------------------------------------------------------------------------------------


# --- the same pump loop over TAP (one syscall per frame) ----------------------------------------------------------


# --- measurements -------------------------------------------------------------------------------------------------


def tx_dropped(device: str) -> int:
    with open(f"/sys/class/net/{device}/statistics/tx_dropped", encoding="ascii") as handle:
        return int(handle.read())


def egress_rate(side_factory: Callable[[], object], device: str, size: int, use_pktgen: bool) -> Tuple[float, float]:
    """(frames/s the pump drained, frames/s the interface dropped for want of room)."""
    side = side_factory()
    dropped_before = tx_dropped(device)
    if use_pktgen:
        pktgen_send(device, size, DURATION)
    else:
        result: multiprocessing.Queue = multiprocessing.Queue()
        sender = multiprocessing.Process(target=udp_sender, args=("10.88.0.2", size, DURATION, result))
        sender.start()
        sender.join()
        result.get()
    dropped = tx_dropped(device) - dropped_before
    time.sleep(0.2)
    counters = side.stop()  # type: ignore[attr-defined]
    return counters["egress_packets"] / DURATION, dropped / DURATION


def rx_packets(device: str) -> int:
    with open(f"/sys/class/net/{device}/statistics/rx_packets", encoding="ascii") as handle:
        return int(handle.read())


def ingress_capacity(side_factory: Callable[[bytes], object], device: str, size: int) -> float:
    """Frames/s the interface passes to the stack while the pump feeds it and no app listens (the stack drops them
    at the UDP layer): what the pump and the driver can move, without the app's share of the CPU."""
    side = side_factory(udp_frame(size, KNI_MAC, "10.88.0.2", "10.88.0.1"))
    time.sleep(0.5)
    before = rx_packets(device)
    time.sleep(DURATION)
    passed = rx_packets(device) - before
    side.stop()  # type: ignore[attr-defined]
    return passed / DURATION


def udp_receive_buffer_errors() -> int:
    """The Udp RcvbufErrors counter of /proc/net/snmp: datagrams dropped because the app's socket was full."""
    with open("/proc/net/snmp", encoding="ascii") as handle:
        udp = [line.split() for line in handle if line.startswith("Udp:")]
    return int(udp[1][udp[0].index("RcvbufErrors")])


class IngressRun(NamedTuple):
    """One ingress measurement: datagrams/s the app received, datagrams/s dropped because its socket was full, and
    where the guest's CPU time went, in microseconds per received datagram."""

    rate: float
    dropped: float
    pump_us: float
    app_us: float
    other_us: float  # kernel threads, softirqs and anything else: all busy CPU time not in the pump or the app
    idle_percent: float  # of all CPUs
    busy_percents: Tuple[float, ...]  # of each CPU, busiest first: one CPU at 100 % while another idles is a bottleneck


def busy_and_idle_seconds() -> List[Tuple[float, float]]:
    """Busy and idle CPU seconds since boot of all CPUs together, then of each CPU, from /proc/stat (iowait counts
    as idle)."""
    seconds = []
    with open("/proc/stat", encoding="ascii") as handle:
        for line in handle:
            if not line.startswith("cpu"):
                break
            ticks = [int(value) for value in line.split()[1:]]
            idle = ticks[3] + ticks[4]
            seconds.append(((sum(ticks[:8]) - idle) / os.sysconf("SC_CLK_TCK"), idle / os.sysconf("SC_CLK_TCK")))
    return seconds


def share_percent(part: float, rest: float) -> float:
    """``part`` as a percentage of ``part + rest`` (0 when both are 0)."""
    return 100 * part / max(part + rest, 1e-9)


def ingress_rate(side_factory: Callable[[bytes], object], size: int) -> IngressRun:
    """Datagrams/s a UDP app in another process receives while the pump feeds frames as fast as it can, datagrams/s
    dropped meanwhile because the app's socket buffer was full, and the CPU time per datagram."""
    frame = udp_frame(size, KNI_MAC, "10.88.0.2", "10.88.0.1")
    ready = multiprocessing.Event()
    result: multiprocessing.Queue = multiprocessing.Queue()
    side = side_factory(frame)
    pump_pid = side.process.pid or 0  # type: ignore[attr-defined]
    receiver = multiprocessing.Process(target=udp_receiver, args=("10.88.0.1", DURATION, ready, result))
    receiver.start()
    ready.wait(30)
    errors_before = udp_receive_buffer_errors()
    pump_before, cpus_before = cpu_seconds(pump_pid), busy_and_idle_seconds()
    received, app_cpu = result.get()
    pump_cpu = cpu_seconds(pump_pid) - pump_before
    cpus = [
        (busy - busy_before, idle - idle_before)
        for (busy, idle), (busy_before, idle_before) in zip(busy_and_idle_seconds(), cpus_before)
    ]
    busy, idle = cpus[0]
    receiver.join()
    errors = udp_receive_buffer_errors() - errors_before
    side.stop()  # type: ignore[attr-defined]
    per_datagram = 1e6 / max(received, 1)
    return IngressRun(
        received / DURATION,
        errors / DURATION,
        pump_cpu * per_datagram,
        app_cpu * per_datagram,
        max(busy - pump_cpu - app_cpu, 0.0) * per_datagram,
        share_percent(idle, busy),
        tuple(sorted((share_percent(*cpu) for cpu in cpus[1:]), reverse=True)),
    )


def cpu_seconds(pid: int) -> float:
    """CPU time of the live threads of ``pid`` so far, in nanoseconds from each one's schedstat where the kernel has
    it: /proc/<pid>/stat counts 10 ms clock ticks, a fifth of the idle figure's whole budget over its 5 s."""
    if not os.path.exists(f"/proc/{pid}/schedstat"):
        with open(f"/proc/{pid}/stat", encoding="ascii") as handle:
            fields = handle.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    total = 0
    for task in os.listdir(f"/proc/{pid}/task"):
        try:
            with open(f"/proc/{pid}/task/{task}/schedstat", encoding="ascii") as handle:
                total += int(handle.read().split()[0])
        except FileNotFoundError:  # the thread ended meanwhile
            pass
    return total / 1e9


def kni_threads() -> List[int]:
    pids = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/comm", encoding="ascii") as handle:
                    if handle.read().startswith("kni_"):
                        pids.append(int(entry))
            except OSError:
                pass
    return pids


def latency_and_idle_cpu() -> Tuple[float, float, float, float, float]:
    """(median and p90 request round trip in ms 50 ms after the previous one, median after a silence, idle CPU %
    of the pump and of the KNI kernel threads)."""
    side = KniSide()
    links = RtnlClient()
    index = socket.if_nametoindex(KNI_NAME)
    samples = []
    for round_trip in range(40):
        time.sleep(0.05)  # let the pump fall back to its idle sleep: the figure includes waking it
        began = time.perf_counter()
        links.set_link(index, mtu=1500 - (round_trip % 2))
        samples.append((time.perf_counter() - began) * 1000)
    silent = []
    for round_trip in range(5):
        time.sleep(WARM_IDLE + 0.5)  # the pump has fallen back to its deep idle sleep
        began = time.perf_counter()
        links.set_link(index, mtu=1500 - (round_trip % 2))
        silent.append((time.perf_counter() - began) * 1000)
    time.sleep(WARM_IDLE + 0.5)
    pump_pid = side.process.pid or 0
    threads = kni_threads()
    before = cpu_seconds(pump_pid), sum(map(cpu_seconds, threads))
    time.sleep(DURATION + 2)
    after = cpu_seconds(pump_pid), sum(map(cpu_seconds, threads))
    side.stop()
    links.close()
    seconds = DURATION + 2
    return (
        statistics.median(samples),
        sorted(samples)[int(len(samples) * 0.9)],
        statistics.median(silent),
        100 * (after[0] - before[0]) / seconds,
        100 * (after[1] - before[1]) / seconds,
    )


RESTART_DIR = "/tmp/kni-bench-restart"
RESTART_INTERFACES = (("kbench1", "02:00:00:88:01:01", 1400), ("kbench2", "02:00:00:88:01:02", 1500))


def pump_command(*args: str) -> List[str]:
    """The service's command line (without -B: bytecode compiled beforehand, as the role installs it)."""
    return [sys.executable, "-S", "-m", "ansible_collections.kernelnic.kni.plugins.module_utils._pump.cli", *args]


def restarted(expected: Tuple[Tuple[str, str, int], ...]) -> bool:
    try:
        for name, mac, mtu in expected:
            with open(f"/sys/class/net/{name}/address", encoding="ascii") as handle:
                if handle.read().strip() != mac:
                    return False
            with open(f"/sys/class/net/{name}/mtu", encoding="ascii") as handle:
                if int(handle.read()) != mtu:
                    return False
            with open(f"/sys/class/net/{name}/carrier", encoding="ascii") as handle:
                if handle.read().strip() != "1":
                    return False
    except OSError:  # absent, or down (no carrier to read)
        return False
    return True


def restart_to_ready(rounds: int = 5) -> Tuple[float, List[float]]:
    """kill -9 the daemon, start it again from its persisted state: seconds until every interface is back.

    "Back" means it exists with the persisted MAC and MTU, up (the pump persisted that the operator set them up
    before the kill) and carrier on. Returns (the first start, cold; the restarts, warm).
    """
    os.makedirs(RESTART_DIR, exist_ok=True)
    env = {
        **{key: value for key, value in os.environ.items() if key != "PYTHONDONTWRITEBYTECODE"},
        "PYTHONPATH": os.path.join(REPO, ".collection-root"),
    }
    # The role installs the collection with compiled bytecode; the guest's tree is a fresh overlay: compile it.
    subprocess.run(
        [sys.executable, "-m", "compileall", "-q", os.path.join(REPO, "plugins")],
        env=env,
        check=True,
    )
    config = f"{RESTART_DIR}/config.json"
    with open(config, "w", encoding="utf-8") as handle:
        interfaces = [
            f'{{"name": "{name}", "mac": "{mac}", "mtu": {mtu}, "backend": "null", "carrier": "on"}}'
            for name, mac, mtu in RESTART_INTERFACES
        ]
        handle.write(f'{{"version": 1, "interfaces": [{", ".join(interfaces)}]}}')
    args = ["run", "--state-dir", f"{RESTART_DIR}/state", "--socket", f"{RESTART_DIR}/control.sock"]
    names = [name for name, _mac, _mtu in RESTART_INTERFACES]
    up = " && ".join(f"ip link set {name} up" for name in names)
    bring_up = ["sh", "-c", f"until {{ {up}; }} 2>/dev/null; do sleep 0.01; done"]
    log = open(f"{RESTART_DIR}/pump.log", "a", encoding="utf-8")  # noqa: SIM115  # pylint: disable=consider-using-with
    began = time.monotonic()
    process = subprocess.Popen(pump_command(*args, "--config", config), env=env, stdout=log, stderr=log)
    samples = []
    try:
        subprocess.run(bring_up, check=True, timeout=120)  # the operator's `ip link set up`, once
        wait_restarted(began)
        first = time.monotonic() - began
        wait_logged_ready(1)
        for _round in range(rounds):
            process.kill()
            process.wait(30)
            while any(os.path.exists(f"/sys/class/net/{name}") for name in names):
                time.sleep(0.01)
            time.sleep(0.5)
            began = time.monotonic()
            process = subprocess.Popen(pump_command(*args), env=env, stdout=log, stderr=log)
            wait_restarted(began)
            samples.append(time.monotonic() - began)
            log.flush()
            wait_logged_ready(2 + _round)  # its "ready" line (start_breakdown) comes just after the interfaces
    finally:
        process.kill()
        process.wait(30)
        log.close()
    return first, samples


def wait_logged_ready(count: int) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        with open(f"{RESTART_DIR}/pump.log", encoding="utf-8") as handle:
            if sum(" ready " in line for line in handle) >= count:
                return
        time.sleep(0.01)


def wait_restarted(began: float) -> None:
    while not restarted(RESTART_INTERFACES):
        if time.monotonic() - began > 120:
            raise RuntimeError("the pump did not restart its interfaces within 120 s")
        time.sleep(0.002)


PHASES = ("interpreter and imports", "state and config", "/dev/kni and hugepages", "interfaces up with carrier")


def startup_breakdown() -> Tuple[List[float], List[float]]:
    """Seconds per start-up phase (``PHASES``) from the pump's "ready" log lines: the first start's, and the medians
    over the restarts'."""
    starts = []
    with open(f"{RESTART_DIR}/pump.log", encoding="utf-8") as handle:
        for line in handle:
            words = line.replace(",", " ").replace("):", " ").split()
            if "ready" in words and "loaded" in words:
                marks = [float(words[words.index(word) + offset]) for word, offset in (("loaded", 2), ("read", 2))]
                marks.append(float(words[words.index("hugepages") + 2]))
                marks.append(float(words[words.index("ready") + 1]))
                starts.append([marks[0]] + [later - earlier for earlier, later in zip(marks, marks[1:])])
    if not starts:
        return [0.0] * len(PHASES), [0.0] * len(PHASES)
    rest = starts[1:] or [[0.0] * len(PHASES)]
    return starts[0], [statistics.median(phase) for phase in zip(*rest)]


def phases_text(values: List[float]) -> str:
    return ", ".join(f"{name} {value:.2f} s" for name, value in zip(PHASES, values))


def main(argv: List[str]) -> int:
    module: Optional[str] = argv[1] if len(argv) > 1 else None
    if module and not os.path.exists("/sys/module/rte_kni"):
        subprocess.run(["insmod", module], check=True)
    prepare_guest()
    sys.stdout.write(
        f"kni-pump bench: {DURATION:.0f} s per figure, kernel {os.uname().release}, {os.cpu_count()} CPUs\n\n"
    )
    parts = os.environ.get("KNI_BENCH_PARTS", "rates,latency,restart").split(",")
    if "restart" in parts:
        first, samples = restart_to_ready()
        first_phases, phases = startup_breakdown()
        sys.stdout.write(
            f"start to ready (process start to 2 interfaces with MAC/MTU/up/carrier), first start after boot "
            f"(cold 9p reads): {first:.2f} s ({phases_text(first_phases)})\n"
            f"restart to ready (kill -9, start from the persisted state, warm): median "
            f"{statistics.median(samples):.2f} s, max {max(samples):.2f} s over {len(samples)} restarts\n"
            f"  medians: {phases_text(phases)}\n\n"
        )
    if "rates" in parts:
        rates()
    if "latency" in parts:
        median, p90, silent, pump_cpu, kthread_cpu = latency_and_idle_cpu()
        sys.stdout.write(
            f"\nrequest round trip (RTM_SETLINK mtu, idle pump, 50 ms apart): median {median:.2f} ms, "
            f"p90 {p90:.2f} ms; after {WARM_IDLE + 0.5:.1f} s of silence: median {silent:.2f} ms\n"
        )
        sys.stdout.write(f"idle CPU: pump {pump_cpu:.2f} %, KNI kernel threads {kthread_cpu:.2f} %\n")
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    return 0


def median_and_range(samples: List[float]) -> str:
    return f"{statistics.median(samples):8.0f} ({min(samples):.0f}-{max(samples):.0f})"


def rates() -> None:
    use_pktgen = pktgen_available()
    sender = (
        "pktgen (reusing its skb, bursts of 32 per tx lock, where the device allows: KNI yes, TAP no)"
        if use_pktgen
        else "a UDP sender process (no pktgen: slower than either pump)"
    )
    sys.stdout.write(
        f"egress driven by {sender}; ingress counted by a recvmmsg() UDP app. Median (min-max) of {REPEAT} runs, "
        'KNI and TAP alternating. "no app": ingress with nobody listening, frames/s the interface passed to the '
        "stack\n"
    )
    sys.stdout.write(
        "frame  direction  KNI+pump (pkt/s)           TAP (pkt/s)               KNI/TAP  dropped KNI / TAP (pkt/s; "
        "egress: no room in the interface, ingress: app socket full)\n"
    )
    cpu_lines = []
    for size in FRAME_SIZES:
        for direction in ("egress", "ingress", "no app"):
            kni: List[float] = []
            tap: List[float] = []
            dropped: Tuple[List[float], List[float]] = ([], [])
            ingress_runs: Tuple[List[IngressRun], List[IngressRun]] = ([], [])
            for _run in range(REPEAT):
                for side, rates_of, drops_of, device, runs in (
                    (KniSide, kni, dropped[0], KNI_NAME, ingress_runs[0]),
                    (TapSide, tap, dropped[1], TAP_NAME, ingress_runs[1]),
                ):
                    if direction == "egress":
                        rate, drop = egress_rate(side, device, size, use_pktgen)
                    elif direction == "no app":
                        rate, drop = ingress_capacity(side, device, size), 0.0
                    else:
                        runs.append(ingress_rate(side, size))
                        rate, drop = runs[-1].rate, runs[-1].dropped
                    rates_of.append(rate)
                    drops_of.append(drop)
            ratio = statistics.median(kni) / max(statistics.median(tap), 1)
            sys.stdout.write(
                f"{size:5d}  {direction:9}  {median_and_range(kni):25}  {median_and_range(tap):24}  {ratio:7.2f}"
                f"  {statistics.median(dropped[0]):.0f} / {statistics.median(dropped[1]):.0f}\n"
            )
            sys.stdout.flush()
            if direction == "ingress":
                cpu_lines.append(f"{size:5d}  KNI {cpu_text(ingress_runs[0])}; TAP {cpu_text(ingress_runs[1])}\n")
    sys.stdout.write(
        f"\ningress CPU time per datagram the app received, in microseconds of all {os.cpu_count()} CPUs (medians): "
        "pump process + app process + the rest (kernel threads, softirqs); and the share of the CPUs left idle, then "
        "how busy each CPU was, busiest first. The CPUs bound the rate at CPUs x 10^6 / total, so twice TAP's rate "
        "needs half its total per datagram; a CPU near 100 % while another idles is a bottleneck the total does not "
        "show\n" + "".join(cpu_lines)
    )


def cpu_text(runs: List[IngressRun]) -> str:
    pump, app, other = (statistics.median(getattr(run, field) for run in runs) for field in IngressRun._fields[2:5])
    idle = statistics.median(run.idle_percent for run in runs)
    busiest = "/".join(f"{statistics.median(column):.0f}" for column in zip(*(run.busy_percents for run in runs)))
    return (
        f"{pump + app + other:5.1f} us = pump {pump:.1f} + app {app:.1f} + rest {other:.1f}, idle {idle:.0f} % "
        f"(CPUs busy {busiest} %)"
    )


if __name__ == "__main__":
    sys.exit(main(sys.argv))
