# SPDX-License-Identifier: GPL-3.0-or-later
# Copyright: kernelnic.kni contributors
"""``PumpDaemon``'s event loop: rounds while frames move, adaptive sleeps when they do not, and what it serves
between rounds (control socket, netlink events, reloads, retries).

One thread does everything that touches the KNI FIFOs (they are single-producer/single-consumer): answering
requests, moving frames each way per interface (a round takes up to EGRESS_BURST from tx_q and hands up to
INGRESS_BURST to rx_q), the control socket and netlink events. A second
thread (``RtnlWorker``) runs what needs RTNL (carrier, MTU/MAC changes the pump initiates, packet socket
memberships, the CREATE and RELEASE ioctls), because the kernel holds RTNL while it waits for a request answer.

Polling adapts: while a round moves frames the loop spins, checking its descriptors only every few rounds; once
rounds come back empty it sleeps in select() on the control socket, netlink and afpacket descriptors with a timeout
that doubles from 50 us to ``request_poll`` (2 ms). Any readable descriptor or moved frame resets it. At the end
of the ladder each wake-up only reads the write and read indices of every interface's req_q and tx_q (no syscall,
no allocation) and does a full round (free_q, alloc_q, backends, retries) only when they hold something or every
``max_idle_sleep`` (500 ms).

This collection's rte_kni makes /dev/kni readable while a req_q or tx_q holds something and wakes a poll() on it
when it posts there: with it in the select() set an idle pump sleeps until the kernel has work for it or its next
full round, so a request after a long silence is answered at once and a silent pump wakes about four times a
second. Upstream's module has no poll() (``KniHost.fileno`` is None): the FIFOs are then looked at every
``request_poll`` for ``warm_idle`` (2 s) after the last activity and every ``deep_poll`` (100 ms) after that, so a
request waits at most 2 ms for a recently busy pump and at most 100 ms after a long silence (the kernel waits 3 s).
"""

from __future__ import annotations

import select
import time
from typing import Callable, List, Optional

from ansible_collections.kernelnic.kni.plugins.module_utils._pump.daemon_control import ControlApi
from ansible_collections.kernelnic.kni.plugins.module_utils._pump.log import LOG
from ansible_collections.kernelnic.kni.plugins.module_utils._pump.pacing import (
    BUSY_CHECK_INTERVAL,
    BUSY_CLOCK_ROUNDS,
    FIRST_SLEEP,
    MAX_THROTTLED_SLEEP,
    RETRY_INTERVAL,
    SPIN_TIME,
    THROTTLED_LIMIT,
    THROTTLED_SHARE,
    THROTTLED_SLEEP,
)
from ansible_collections.kernelnic.kni.plugins.module_utils._pump.schema import ConfigError


class EventLoop(ControlApi):
    """``run`` and what it calls between rounds."""

    def run(self, until: Optional[Callable[[], bool]] = None) -> None:
        """Pump until ``stop()`` (or ``until()`` is true; while busy it is asked every BUSY_CHECK_INTERVAL)."""
        settings = self.settings
        idle = busy_rounds = 0
        last_round = last_activity = last_check = idle_since = time.monotonic()
        while not self.stopping:
            if self.sleep >= settings.request_poll and not self._kernel_pending():
                # Idle: only the FIFO indices are read; a full round now and then for housekeeping.
                if until is not None and until():
                    return
                now = time.monotonic()
                if now - last_round < settings.max_idle_sleep:
                    self.sleep = self._idle_sleep(now - last_round, now - last_activity)
                    if self.wait(self.sleep):
                        idle, self.sleep, last_activity = 0, 0.0, time.monotonic()  # a client or traffic
                    continue
            moved = self.pump_once()
            if moved:
                idle = 0
                self.sleep = 0.0
                busy_rounds += 1
                if busy_rounds < BUSY_CLOCK_ROUNDS:
                    continue
                busy_rounds = 0
                last_round = last_activity = time.monotonic()
                if last_round - last_check >= BUSY_CHECK_INTERVAL:
                    # One select() per interval, not per round: rounds are short when busy, and clients and
                    # link events can wait a couple of milliseconds.
                    last_check = last_round
                    if self._look_around(0.0, until):
                        return
                continue
            last_round = time.monotonic()
            if self.throttled and last_round - last_activity < THROTTLED_LIMIT:
                # Not idle: the kernel has frames of ours to take. Look again soon, at a fixed pace (while it takes
                # some now and then: a kernel that takes nothing for THROTTLED_LIMIT gets the idle back-off).
                idle = 0
                last_check = last_round
                if self._look_around(self._throttled_sleep(last_round), until):
                    return
                continue
            if not idle:
                idle_since = last_round
            idle += 1
            if last_round - idle_since < SPIN_TIME:
                if last_round - last_check >= BUSY_CHECK_INTERVAL:
                    last_check = last_round
                    if self._look_around(0.0, until):
                        return
                continue
            if until is not None and until():
                return
            sleeps = min(int((last_round - idle_since) / FIRST_SLEEP), 1 << 16).bit_length()
            self.sleep = min(settings.request_poll, FIRST_SLEEP * (1 << sleeps))
            last_check = last_round
            if self.wait(self.sleep):
                idle, self.sleep, last_activity = 0, 0.0, time.monotonic()

    def _idle_sleep(self, since_round: float, since_activity: float) -> float:
        """How long an idle pump sleeps, ``since_round`` seconds after its last full round and ``since_activity``
        after it last moved something or served someone."""
        settings = self.settings
        if self._kernel_fd is not None:  # /dev/kni turns readable for requests and egress: sleep until housekeeping
            return max(settings.request_poll, settings.max_idle_sleep - since_round)
        quiet = since_activity > settings.warm_idle
        return settings.deep_poll if quiet else settings.request_poll

    def _look_around(self, timeout: float, until: Optional[Callable[[], bool]]) -> bool:
        """Serve clients and link events (waiting up to ``timeout``); True when ``until()`` says to stop."""
        self.wait(timeout)
        return until is not None and until()

    def _throttled_sleep(self, now: float) -> float:
        """How long to wait for the kernel to make room in rx_q: THROTTLED_SHARE of the shortest expected wait among
        the waiting interfaces, within THROTTLED_SLEEP and MAX_THROTTLED_SLEEP."""
        waits = [port.throttled_wait(now) for port in self.ports.values() if port.throttled]
        return min(max(THROTTLED_SHARE * min(waits, default=0.0), THROTTLED_SLEEP), MAX_THROTTLED_SLEEP)

    def wait(self, timeout: float) -> bool:
        """select() on the control socket, netlink and backend descriptors; handle what is readable."""
        readers: List[int] = []
        writers: List[int] = []
        if self.control is not None:
            readers += self.control.readers()
            writers += self.control.writers()
        if self.monitor is not None:
            readers.append(self.monitor.fileno())
        if self._kernel_fd is not None:
            readers.append(self._kernel_fd)
        for port in self.ports.values():
            fd = port.backend.fileno()
            if fd is not None:
                readers.append(fd)
        if timeout > 0:
            self.stats["sleeps"] += 1
        if not readers and not writers:
            if timeout > 0:  # sleep(0) is no poll: it still waits for a timer interrupt (timer slack included)
                time.sleep(timeout)
            return False
        readable, writable, _unused = select.select(readers, writers, [], timeout)
        if self.monitor is not None and self.monitor.fileno() in readable:
            self.link_events(self.monitor.read_events())
        if self.control is not None and (readable or writable):
            self.control.handle(readable, writable)
        if self._reload:
            self._reload = False
            self._do_reload()
        if self.failed and time.monotonic() - self._last_retry > RETRY_INTERVAL:
            self._last_retry = time.monotonic()
            self._reconcile()
        return bool(readable or writable)

    def stop(self) -> None:
        self.stopping = True

    def request_reload(self) -> None:
        self._reload = True

    def _do_reload(self) -> None:
        if self.reload_requested is None:
            return
        try:
            interfaces = self.reload_requested()
        except (ConfigError, OSError) as exc:
            LOG.error("reload refused, nothing changed: %s", exc)
            return
        if interfaces is not None:
            reply = self.apply(interfaces, replace=True, paths=[f"interfaces[{i}]" for i in range(len(interfaces))])
            if not reply["ok"]:
                LOG.error("reload: %s: %s", reply["error"]["field"], reply["error"]["message"])
