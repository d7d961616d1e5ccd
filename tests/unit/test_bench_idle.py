# SPDX-License-Identifier: GPL-3.0-or-later
"""bench/bench_idle.py's reading of a scheduler trace: idle time per CPU and by who slept and who woke."""

from __future__ import annotations

import os
import sys

import pytest

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))), "bench"))
import bench_idle


def switch(cpu: int, when: float, prev: str, prev_pid: int, state: str, after: str, next_pid: int) -> str:
    return (
        f"[{cpu:03d}] {when:.6f}: sched:sched_switch: prev_comm={prev} prev_pid={prev_pid} prev_prio=120 "
        f"prev_state={state} ==> next_comm={after} next_pid={next_pid} next_prio=120"
    )


def test_idle_is_charged_to_the_sleeper_before_it_and_the_task_that_ended_it() -> None:
    lines = [
        switch(0, 10.000, "kni_single", 30, "S", "swapper/0", 0),  # cpu0 idles 300 us
        "[000] 10.0001: sched:sched_wakeup: comm=kni_single pid=30",  # not a switch: ignored
        switch(0, 10.0003, "swapper/0", 0, "R", "kni_single", 30),
        switch(1, 10.0005, "python", 41, "S", "swapper/1", 0),  # the app (pid 41) sleeps, cpu1 idles 100 us
        switch(1, 10.0006, "swapper/1", 0, "R", "python", 40),  # until the pump (pid 40) runs
        switch(0, 10.0008, "kni_single", 30, "S", "swapper/0", 0),  # another 200 us on cpu0
        switch(0, 10.0010, "swapper/0", 0, "R", "ksoftirqd/0", 9),
        switch(1, 10.0020, "python", 40, "R+", "python", 41),  # busy to busy: no idle
    ]
    per_cpu, causes, span = bench_idle.idle_causes(lines, {"40": "PUMP", "41": "APP"})
    assert span == pytest.approx(0.002)
    assert per_cpu == {0: pytest.approx(0.0005), 1: pytest.approx(0.0001)}
    assert causes == {
        ("kni_single:S", "kni_single"): pytest.approx(0.0003),
        ("APP:S", "PUMP"): pytest.approx(0.0001),
        ("kni_single:S", "ksoftirqd"): pytest.approx(0.0002),
    }


def test_an_idle_period_still_open_when_the_trace_ends_is_not_counted() -> None:
    lines = [switch(0, 1.0, "python", 5, "S", "swapper/0", 0)]
    per_cpu, causes, span = bench_idle.idle_causes(lines, {})
    assert (dict(per_cpu), dict(causes), span) == ({}, {}, 0.0)
