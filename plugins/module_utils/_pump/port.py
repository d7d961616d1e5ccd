# SPDX-License-Identifier: GPL-3.0-or-later
# Copyright: kernelnic.kni contributors
"""One running interface of kni-pump (``Port``): its KNI device, pool and backend, and the round that moves a burst
each way between them (the hot path)."""

from __future__ import annotations

from typing import Any, Dict, Optional, Tuple

from ansible_collections.kernelnic.kni.plugins.module_utils._kni.device import KniDevice
from ansible_collections.kernelnic.kni.plugins.module_utils._kni.mbuf import MbufPool
from ansible_collections.kernelnic.kni.plugins.module_utils._pump.backends import Backend
from ansible_collections.kernelnic.kni.plugins.module_utils._pump.schema import InterfaceConfig
from ansible_collections.kernelnic.kni.plugins.module_utils._pump.sizing import (
    EGRESS_BURST,
    FREE_BURST,
    INGRESS_BURST,
    ingress_in_flight,
)

COUNTERS = (
    "ingress_packets",  # backend -> KNI (the Linux stack receives)
    "ingress_bytes",
    "ingress_dropped",
    "egress_packets",  # KNI -> backend (the Linux stack transmitted)
    "egress_bytes",
    "egress_dropped",
    "requests",
    "requests_refused",
)


class Port:
    """One running interface: the KNI device, its pool, its backend, what the kernel last agreed to, counters."""

    def __init__(self, config: InterfaceConfig, device: KniDevice, pool: MbufPool, backend: Backend) -> None:
        self.config = config
        self.device = device
        self.pool = pool
        self.backend = backend
        self.ifindex = 0
        self.admin_up = False
        self.mtu = config.mtu
        self.mac = config.mac or ""
        self.carrier_set: Optional[bool] = False  # None: unknown (the kernel reset it), push the policy again
        self.counters = dict.fromkeys(COUNTERS, 0)
        self.rx_q = device.fifo("rx")
        self.req_q = device.fifo("req")
        self.tx_q = device.fifo("tx")
        self.throttled = False  # the last round's ingress burst was cut short by the in-flight limit
        self.in_flight_limit = ingress_in_flight(pool.count)
        self.refill_at = max(1, min(INGRESS_BURST, self.in_flight_limit // 2))  # room in rx_q worth a round
        self.drain_rate = 0.0  # frames/s the kernel took from rx_q while ingress waited (0: not seen yet)
        self._drain_mark: Optional[Tuple[int, float]] = None  # (rx_q count, time) when ingress last waited

    def kernel_pending(self) -> bool:
        """The kernel posted a request or transmitted frames (two index reads per FIFO, for idle polling)."""
        return bool(self.req_q.count() or self.tx_q.count())

    def pump(self) -> int:
        """Move one burst each way; returns the number of frames moved (the hot path)."""
        device, counters = self.device, self.counters
        moved = 0
        egress = device.rx_burst(EGRESS_BURST)
        if egress:
            packets, sent_bytes, dropped = self.backend.transmit(egress)
            counters["egress_packets"] += packets
            counters["egress_bytes"] += sent_bytes
            counters["egress_dropped"] += dropped
            moved = len(egress)
        device.free_completed(FREE_BURST)  # what the kernel consumed, before the backend asks the pool for more
        room = self.in_flight_limit - self.rx_q.count()
        if room >= self.refill_at:
            ingress, received_bytes, dropped = self.backend.receive(min(INGRESS_BURST, room))
            self.throttled = len(ingress) == room
        else:
            # rx_q is nearly full: wait until the kernel has taken a burst's worth instead of topping it up a few
            # frames at a time, since a round costs far more than a frame.
            ingress, received_bytes, dropped = [], 0, 0
            self.throttled = True
        if dropped:
            counters["ingress_dropped"] += dropped
        if ingress:
            self._drain_mark = None  # rx_q grows: the kernel's pace is measured anew
            taken = device.tx_burst(ingress, reclaim=0)  # free_q was read above, once per round
            if taken < len(ingress):
                self.pool.free_burst(ingress[taken:])
                counters["ingress_dropped"] += len(ingress) - taken
                received_bytes = sum(self.backend.frames.lengths(ingress[:taken]))
            counters["ingress_packets"] += taken
            counters["ingress_bytes"] += received_bytes
            moved += len(ingress)
        return moved + dropped

    def throttled_wait(self, now: float) -> float:
        """Seconds until rx_q should have room for a burst again, at the pace the kernel drained it while ingress
        waited (0 until that pace is known). Called, with the current time, only while ingress waits."""
        count = self.rx_q.count()
        mark = self._drain_mark
        # A bigger count: the pump refilled since. An empty rx_q: the kernel may have idled part of the time.
        if mark is not None and 0 < count < mark[0] and now > mark[1]:
            rate = (mark[0] - count) / (now - mark[1])
            self.drain_rate = (self.drain_rate + rate) / 2 if self.drain_rate else rate
        self._drain_mark = (count, now)
        excess = count - (self.in_flight_limit - self.refill_at)
        return excess / self.drain_rate if self.drain_rate and excess > 0 else 0.0

    def desired_carrier(self) -> bool:
        policy = self.config.carrier
        return self.admin_up and (policy == "on" or (policy == "follow" and self.backend.link_up))

    def status(self) -> Dict[str, Any]:
        return {
            "name": self.config.name,
            "state": "up" if self.admin_up else "down",
            "carrier": bool(self.carrier_set),
            "mtu": self.mtu,
            "mac": self.mac,
            "backend": str(self.config.backend),
            "backend_state": self.backend.state(),
            "ifindex": self.ifindex,
            "counters": dict(self.counters),
            "pool_available": self.pool.available,
        }
