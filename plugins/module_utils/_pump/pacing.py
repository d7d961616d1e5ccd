# SPDX-License-Identifier: GPL-3.0-or-later
# Copyright: kernelnic.kni contributors
"""How kni-pump paces its event loop: how long it spins, how it sleeps when idle or while the kernel drains rx_q,
how often it retries and how long it waits for a link change (seconds)."""

from __future__ import annotations

SPIN_TIME = 300e-6  # seconds of empty rounds before the first sleep: a spinning pump takes the CPU from the kernel
BUSY_CHECK_INTERVAL = 0.002  # seconds between descriptor checks (control socket, netlink) while busy
# A busy pump reads the clock once every this many rounds: in a VM whose clock source is an emulated HPET, reading
# it is a trap to the hypervisor.
BUSY_CLOCK_ROUNDS = 4
FIRST_SLEEP = 50e-6
# While ingress waits for the kernel to take what is already in rx_q, the pump sleeps until rx_q should have room for
# a burst again, at the pace the kernel has been draining it, between these bounds: a pump waiting on a slow kernel
# leaves the CPU to the kernel and the application, and is back before the kernel has drained rx_q (an idle pump's
# back-off would leave the kernel idle for as long as the pump then sleeps).
THROTTLED_SLEEP = 50e-6
MAX_THROTTLED_SLEEP = 0.002
# The pump sleeps for this share of the expected wait, then looks again: a loaded host wakes it late, and the kernel
# should not find rx_q empty first.
THROTTLED_SHARE = 0.5
THROTTLED_LIMIT = 0.1
REQUEST_POLL = 0.002  # idle sleep for WARM_IDLE after the last activity: bounds the wait of a kernel request
WARM_IDLE = 2.0  # requests come in bunches (ip link set up, mtu, address...): stay responsive this long
DEEP_POLL = 0.100  # idle sleep after that: bounds the wait of the first request or frame after a long silence
MAX_IDLE_SLEEP = 0.500  # an idle pump does a full round (free_q, alloc_q, backends, retries) at least this often
RETRY_INTERVAL = 2.0  # failed interfaces (e.g. a backend link that does not exist yet) are retried this often
JOB_TIMEOUT = 8.0
