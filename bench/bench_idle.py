#!/usr/bin/env python
# SPDX-License-Identifier: GPL-3.0-or-later
# Copyright: kernelnic.kni contributors
"""Why ingress leaves CPUs idle: a scheduler trace of KNI (or TAP) ingress with the UDP app, in one guest.

pump_lab.py prints how busy each CPU was; this says who was asleep when a CPU went idle. It runs the same
ingress set-up (the pump's null backend as a source, a recvmmsg() app in another process), records one second of
context switches with ``perf sched record``, and prints:

* each CPU's idle share;
* idle time by the task that went to sleep just before (``:S``) and the task that ended it: a kernel thread that
  sleeps with nothing to do while the pump and the app share the other CPU shows up as
  ``after kni_single:S until kni_single``;
* each task's run time, how often it ran and how often it moved between CPUs (``perf sched timehist -s``).

Usage, inside a guest (root, perf installed): ``bench/bench_idle.py [rte_kni.ko] [--size 64|1500] [--tap]``.
It prints figures and asserts nothing.
"""

from __future__ import annotations

import argparse
import collections
import multiprocessing
import os
import re
import shutil
import subprocess
import sys
import time
from typing import Counter, Dict, Iterable, Tuple

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import pump_lab  # after the path: it also sets up the collection's import path

TRACE = "/var/tmp/kni-bench-sched.data"
SWITCH = re.compile(r"\[(\d+)\]\s+([\d.]+):\s+sched:sched_switch:\s+(.*)")
FIELDS = re.compile(r"prev_comm=(.*?) prev_pid=(\d+) .*?prev_state=(\S+) ==> next_comm=(.*?) next_pid=(\d+)")


def idle_causes(lines: Iterable[str], names: Dict[str, str]) -> Tuple[Dict[int, float], Counter, float]:
    """From ``perf script`` lines of sched_switch events: idle seconds per CPU, idle seconds per (task that slept
    before, task that ended the idle), and the traced span. ``names`` labels pids (the pump, the app)."""

    def label(comm: str, pid: str) -> str:
        return names.get(pid, re.sub(r"/\d+$", "", comm))

    idle_since: Dict[int, Tuple[float, str]] = {}
    per_cpu: Dict[int, float] = collections.defaultdict(float)
    causes: Counter = collections.Counter()
    first = last = None
    for line in lines:
        event = SWITCH.search(line)
        fields = FIELDS.search(event.group(3)) if event else None
        if event is None or fields is None:
            continue
        cpu, when = int(event.group(1)), float(event.group(2))
        first = when if first is None else first
        last = when
        prev_comm, prev_pid, prev_state, next_comm, next_pid = fields.groups()
        if next_pid == "0":
            idle_since[cpu] = (when, f"{label(prev_comm, prev_pid)}:{prev_state}")
        elif prev_pid == "0" and cpu in idle_since:
            began, before = idle_since.pop(cpu)
            per_cpu[cpu] += when - began
            causes[(before, label(next_comm, next_pid))] += when - began
    return per_cpu, causes, (last - first) if first is not None and last is not None else 0.0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("module", nargs="?", help="rte_kni.ko to load if it is not loaded")
    parser.add_argument("--size", type=int, default=64, help="frame size (default 64)")
    parser.add_argument("--tap", action="store_true", help="trace the TAP pump instead of KNI")
    parser.add_argument("--seconds", type=float, default=1.0, help="trace length (default 1)")
    args = parser.parse_args()
    if shutil.which("perf") is None:
        sys.exit("bench_idle: needs perf (linux-perf) in the guest")
    if args.module and not os.path.exists("/sys/module/rte_kni"):
        subprocess.run(["insmod", args.module], check=True)
    pump_lab.prepare_guest()
    frame = pump_lab.udp_frame(args.size, pump_lab.KNI_MAC, "10.88.0.2", "10.88.0.1")
    side = (pump_lab.TapSide if args.tap else pump_lab.KniSide)(frame)
    ready = multiprocessing.Event()
    result: multiprocessing.Queue = multiprocessing.Queue()
    app = multiprocessing.Process(target=pump_lab.udp_receiver, args=("10.88.0.1", 60, ready, result))
    app.start()
    ready.wait(30)
    time.sleep(1.5)  # past the start-up
    names = {str(side.process.pid): "PUMP", str(app.pid): "APP"}
    subprocess.run(
        ["perf", "sched", "record", "-q", "-o", TRACE, "--", "sleep", str(args.seconds)],
        check=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    app.terminate()
    app.join()
    side.stop()
    script = ["perf", "script", "-i", TRACE, "-F", "cpu,time,event,trace"]
    lines = subprocess.run(script, capture_output=True, text=True, check=True).stdout.splitlines()
    per_cpu, causes, span = idle_causes(lines, names)
    cpus = os.cpu_count() or 1
    kind = "TAP" if args.tap else "KNI"
    print(f"{kind} ingress, {args.size}-byte frames, {span:.2f} s traced, kernel {os.uname().release}")
    print("idle: " + ", ".join(f"cpu{cpu} {100 * seconds / span:.0f} %" for cpu, seconds in sorted(per_cpu.items())))
    print(f"idle time (share of all {cpus} CPUs) by the task that slept before it and the one that ended it:")
    for (before, after), seconds in causes.most_common(8):
        print(f"  {100 * seconds / span / cpus:5.1f} %  after {before:18} until {after}")
    timehist = ["perf", "sched", "timehist", "-i", TRACE, "-s"]
    summary = subprocess.run(timehist, capture_output=True, text=True, check=True).stdout
    wanted = [str(side.process.pid), str(app.pid), "kni_", "ksoftirqd", "comm ", "idle for"]
    print("\n".join(line for line in summary.splitlines() if any(word in line for word in wanted)))
    print(f"(PUMP is pid {side.process.pid}, APP pid {app.pid})")
    os.unlink(TRACE)
    return 0


if __name__ == "__main__":
    sys.exit(main())
