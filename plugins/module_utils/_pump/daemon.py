# SPDX-License-Identifier: GPL-3.0-or-later
# Copyright: kernelnic.kni contributors
"""The kni-pump daemon: owns /dev/kni, keeps the KNI interfaces matching the desired state and moves their frames.

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

import errno
import select
import socket
import time
from typing import Any, Callable, Dict, List, NamedTuple, Optional, Protocol, Sequence, Tuple, TypeVar, Union

from ansible_collections.kernelnic.kni.plugins.module_utils._kni.abi import KniError
from ansible_collections.kernelnic.kni.plugins.module_utils._kni.device import DeviceConfig, KniDevice
from ansible_collections.kernelnic.kni.plugins.module_utils._kni.mbuf import MbufPool
from ansible_collections.kernelnic.kni.plugins.module_utils._kni.request_protocol import KniRequest, RequestCallbacks
from ansible_collections.kernelnic.kni.plugins.module_utils._pump.backends import (
    AfPacketBackend,
    Backend,
    interface_running,
    open_backend,
)
from ansible_collections.kernelnic.kni.plugins.module_utils._pump.control import (
    ControlRequest,
    ControlServer,
    error_reply,
    ok_reply,
)
from ansible_collections.kernelnic.kni.plugins.module_utils._pump.log import LOG
from ansible_collections.kernelnic.kni.plugins.module_utils._pump.netlink import AddressEvent, Job, LinkEvent
from ansible_collections.kernelnic.kni.plugins.module_utils._pump.plan import Action, assign_macs, by_name, plan
from ansible_collections.kernelnic.kni.plugins.module_utils._pump.schema import (
    MAX_FRAME_LEN,
    ConfigError,
    InterfaceConfig,
    check_runtime,
    check_unique,
    host_links,
    host_online_cpus,
    mac_bytes,
    mac_text,
)
from ansible_collections.kernelnic.kni.plugins.module_utils._pump.schema import (
    Backend as BackendSpec,
)
from ansible_collections.kernelnic.kni.plugins.module_utils._pump.sizing import (
    EGRESS_BURST,
    FREE_BURST,
    INGRESS_BURST,
    ingress_in_flight,
)
from ansible_collections.kernelnic.kni.plugins.module_utils._pump.state import StateError, write_state

T = TypeVar("T")
SPIN_TIME = 300e-6  # seconds of empty rounds before the first sleep: a spinning pump takes the CPU from the kernel
BUSY_CHECK_INTERVAL = 0.002  # seconds between descriptor checks (control socket, netlink) while busy
# A busy pump reads the clock once every this many rounds: in a VM whose clock source is an emulated HPET, reading
# it is a trap to the hypervisor and cost an eighth of the pump's time when read every round.
BUSY_CLOCK_ROUNDS = 4
FIRST_SLEEP = 50e-6
# While ingress waits for the kernel to take what is already in rx_q, the pump sleeps until rx_q should have room for
# a burst again, at the pace the kernel has been draining it, between these bounds. Polling at a fixed short pace
# instead kept a pump waiting on a slow kernel (1500-byte frames in the 6.1 guest) as busy as a spinning one, with
# the CPU the kernel and the app needed; backing off like an idle pump would leave the kernel idle once it has
# drained rx_q, for as long as the pump then sleeps.
THROTTLED_SLEEP = 50e-6
MAX_THROTTLED_SLEEP = 0.002
# The pump sleeps for this share of the expected wait, then looks again: a loaded guest wakes it late (in the 6.1
# guest a 2 ms sleep took 2.3 to 2.7 ms), and sleeping the whole wait let the kernel nearly empty rx_q first.
THROTTLED_SHARE = 0.5
THROTTLED_LIMIT = 0.1
REQUEST_POLL = 0.002  # idle sleep for WARM_IDLE after the last activity: bounds the wait of a kernel request
WARM_IDLE = 2.0  # requests come in bunches (ip link set up, mtu, address...): stay responsive this long
DEEP_POLL = 0.100  # idle sleep after that: bounds the wait of the first request or frame after a long silence
MAX_IDLE_SLEEP = 0.500  # an idle pump does a full round (free_q, alloc_q, backends, retries) at least this often
RETRY_INTERVAL = 2.0  # failed interfaces (e.g. a backend link that does not exist yet) are retried this often
JOB_TIMEOUT = 8.0


class KniHost(Protocol):
    """Creates and releases KNI devices with their mbuf pools (the kernel, or a fake in tests)."""

    def create(
        self, config: DeviceConfig, callbacks: RequestCallbacks, on_error: Callable[[KniRequest, BaseException], None]
    ) -> Tuple[KniDevice, MbufPool]: ...

    def release(self, device: KniDevice, pool: MbufPool) -> None: ...

    # A descriptor that turns readable when the kernel posts a request or egress frames, if there is one.
    def fileno(self) -> Optional[int]: ...

    def close(self) -> None: ...


class LinkOps(Protocol):
    """RTNL-taking link changes (run on the worker thread)."""

    def set_link(
        self,
        ifindex: int,
        *,
        carrier: Optional[bool] = None,
        mtu: Optional[int] = None,
        address: bytes = b"",
        up: Optional[bool] = None,
    ) -> None: ...

    def add_address(self, ifindex: int, address: str) -> None: ...


class Worker(Protocol):
    def submit(self, function: Callable[[], None], description: str) -> Job: ...


class Monitor(Protocol):
    overflowed: bool

    def fileno(self) -> int: ...

    def read_events(self) -> Sequence[Union[LinkEvent, AddressEvent]]: ...


class SystemView(NamedTuple):
    """Host facts for validation, replaceable in tests."""

    links: Callable[[], List[str]]
    online_cpus: Callable[[], List[int]]
    ifindex: Callable[[str], int]


HOST = SystemView(host_links, host_online_cpus, socket.if_nametoindex)


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


class Settings:  # pylint: disable=too-few-public-methods,too-many-instance-attributes
    """The daemon's knobs (a plain class: dataclasses would import inspect, which costs start-up time)."""

    def __init__(  # pylint: disable=too-many-arguments
        self,
        state_dir: str,
        socket_path: Optional[str] = None,
        socket_group: Optional[int] = None,
        max_interfaces: int = 4,
        config_digest: Optional[str] = None,
        *,
        max_idle_sleep: float = MAX_IDLE_SLEEP,
        request_poll: float = REQUEST_POLL,
        deep_poll: float = DEEP_POLL,
        warm_idle: float = WARM_IDLE,
    ) -> None:
        self.state_dir = state_dir
        self.socket_path = socket_path
        self.socket_group = socket_group
        self.max_interfaces = max_interfaces
        self.config_digest = config_digest
        self.max_idle_sleep = max_idle_sleep
        self.request_poll = request_poll
        self.deep_poll = deep_poll
        self.warm_idle = warm_idle


class PumpDaemon:
    """Reconciles and pumps. ``run`` is the event loop; ``handle_request`` serves the control protocol."""

    def __init__(
        self,
        settings: Settings,
        kni: KniHost,
        links: LinkOps,
        worker: Worker,
        monitor: Optional[Monitor] = None,
        system: SystemView = HOST,
    ) -> None:
        self.settings = settings
        self.kni = kni
        self._kernel_fd = kni.fileno()  # /dev/kni when the module wakes a poll() on it (fixed for the daemon's life)
        self.links = links
        self.worker = worker
        self.monitor = monitor
        self.system = system
        self.desired: Dict[str, InterfaceConfig] = {}
        self.ports: Dict[str, Port] = {}
        self.failed: Dict[str, str] = {}
        self.control: Optional[ControlServer] = None
        self.stopping = False
        self.reload_requested: Optional[Callable[[], Optional[List[InterfaceConfig]]]] = None
        self._reload = False
        self._last_retry = 0.0
        self.stats = {"rounds": 0, "sleeps": 0, "requests": 0, "started": time.time()}
        self.sleep = 0.0
        self.throttled = False  # some interface's ingress waits for the kernel to drain rx_q
        # Administrative state (ip link set up/down) by interface name, as the kernel last asked for it; persisted
        # with the desired state so that a restarted daemon brings the same interfaces up again.
        self.admin: Dict[str, bool] = {}
        # Configured addresses by interface name, as address events reported them: persisted too, and put back on an
        # interface this daemon creates (after a crash, a restart or a recreate).
        self.addresses: Dict[str, List[str]] = {}
        self._state_dirty = False
        self._start_jobs: Optional[List[Job]] = None  # link jobs start() waits for (None once started)
        self._restore: List[Port] = []  # created by this reconcile, to be brought up and readdressed once it is over

    # --- start-up ----------------------------------------------------------------------------------------------------

    def start(
        self,
        desired: Sequence[InterfaceConfig],
        admin_up: Sequence[str] = (),
        addresses: Optional[Dict[str, List[str]]] = None,
    ) -> List[str]:
        """Create the initial interfaces, bring up those in ``admin_up`` and put ``addresses`` back (as they were
        when the last daemon ended), and open the control socket; returns per-interface failures."""
        interfaces = assign_macs(list(desired), {})
        self.desired = by_name(interfaces)
        self.admin = {name: True for name in admin_up if name in self.desired}
        self.addresses = {name: list(found) for name, found in (addresses or {}).items() if name in self.desired}
        self._persist()
        jobs: List[Job] = []
        self._start_jobs = jobs
        errors = self._reconcile()
        # Bringing an interface up is a request this thread answers, then a carrier change (appended to ``jobs`` as
        # the request is answered), and addresses go back: pump until they are all done.
        done = self.pump_until(lambda: all(job.done.is_set() for job in jobs))
        self._start_jobs = None
        if not done:
            errors.append("bringing the interfaces up again did not complete")
        for job in jobs:
            if job.error is not None:
                errors.append(f"{job.description}: {job.error}")
        if self.settings.socket_path:
            self.control = ControlServer(self.settings.socket_path, self.handle_request, self.settings.socket_group)
        return errors

    # --- event loop -----------------------------------------------------------------------------------------------

    def run(self, until: Optional[Callable[[], bool]] = None) -> None:
        """Pump until ``stop()`` (or ``until()`` is true; while busy it is asked every BUSY_CHECK_INTERVAL)."""
        settings = self.settings
        kernel_wakes = self._kernel_fd is not None
        idle = busy_rounds = 0
        last_round = last_activity = last_check = idle_since = time.monotonic()
        while not self.stopping:
            if self.sleep >= settings.request_poll and not self._kernel_pending():
                # Idle: only the FIFO indices are read; a full round now and then for housekeeping.
                if until is not None and until():
                    return
                now = time.monotonic()
                if now - last_round < settings.max_idle_sleep:
                    if kernel_wakes:  # /dev/kni turns readable for requests and egress: sleep until housekeeping
                        self.sleep = max(settings.request_poll, settings.max_idle_sleep - (now - last_round))
                    else:
                        quiet = now - last_activity > settings.warm_idle
                        self.sleep = settings.deep_poll if quiet else settings.request_poll
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

    def _look_around(self, timeout: float, until: Optional[Callable[[], bool]]) -> bool:
        """Serve clients and link events (waiting up to ``timeout``); True when ``until()`` says to stop."""
        self.wait(timeout)
        return until is not None and until()

    def _throttled_sleep(self, now: float) -> float:
        """How long to wait for the kernel to make room in rx_q: THROTTLED_SHARE of the shortest expected wait among
        the waiting interfaces, within THROTTLED_SLEEP and MAX_THROTTLED_SLEEP."""
        waits = [port.throttled_wait(now) for port in self.ports.values() if port.throttled]
        return min(max(THROTTLED_SHARE * min(waits, default=0.0), THROTTLED_SLEEP), MAX_THROTTLED_SLEEP)

    def _kernel_pending(self) -> bool:
        return any(port.kernel_pending() for port in self.ports.values())

    def pump_once(self) -> int:
        """One round over every interface: answer a pending request, move a burst each way."""
        self.stats["rounds"] += 1
        moved = 0
        self.throttled = False
        for port in list(self.ports.values()):
            try:
                request = port.device.poll_requests()
            except KniError as exc:
                LOG.error("%s: request handling failed: %s", port.config.name, exc)
                request = None
            if request is not None:
                self.stats["requests"] += 1
                port.counters["requests"] += 1
                if request.result:
                    port.counters["requests_refused"] += 1
                moved += 1
            moved += port.pump()
            self.throttled = self.throttled or port.throttled
        if self._state_dirty:
            self._state_dirty = False
            try:
                self._persist()
            except StateError as exc:
                LOG.error("administrative state not saved: %s", exc)
        return moved

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

    def pump_until(self, condition: Callable[[], bool], timeout: float = JOB_TIMEOUT) -> bool:
        """Keep answering requests and moving frames (but not serving clients) until ``condition()`` holds."""
        deadline = time.monotonic() + timeout
        while not condition():
            if time.monotonic() > deadline:
                return False
            if not self.pump_once():
                time.sleep(FIRST_SLEEP)
        return True

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

    # --- link events and carrier ----------------------------------------------------------------------------------

    def link_events(self, events: Sequence[Union[LinkEvent, AddressEvent]]) -> None:
        if self.monitor is not None and self.monitor.overflowed:
            self.monitor.overflowed = False
            for port in self.ports.values():
                if isinstance(port.backend, AfPacketBackend):
                    self._refresh_backend_link(port)
        for event in events:
            if isinstance(event, AddressEvent):
                self._address_event(event)
                continue
            for port in self.ports.values():
                backend = port.backend
                if (
                    isinstance(backend, AfPacketBackend)
                    and backend.ifindex == event.index
                    and backend.link_up != event.up
                ):
                    state = "up" if event.up else "down"
                    LOG.info("%s: backend %s link %s", port.config.name, backend.ifname, state)
                    backend.link_changed(event.up)
                    self._sync_carrier(port)

    def _address_event(self, event: AddressEvent) -> None:
        """Keep ``addresses`` in step with the configured addresses of our interfaces. Events about an interface
        that is gone (a crash's or a recreate's old one) match no port's ifindex, so they change nothing."""
        if not event.permanent or event.address.startswith("fe80:"):  # dynamic ones, or the kernel's link-local
            return
        name = next((name for name, port in self.ports.items() if port.ifindex == event.index), None)
        if name is None:
            return
        found = self.addresses.setdefault(name, [])
        if event.deleted and event.address in found:
            found.remove(event.address)
        elif not event.deleted and event.address not in found:
            found.append(event.address)
        else:
            return
        self._state_dirty = True

    def _restore_addresses(self, port: Port) -> List[Job]:
        ifindex, name = port.ifindex, port.config.name

        def add(address: str) -> Callable[[], None]:
            return lambda: self.links.add_address(ifindex, address)

        return [self.worker.submit(add(address), f"{name}: address {address} back") for address in self.addresses[name]]

    def _refresh_backend_link(self, port: Port) -> None:
        backend = port.backend
        if not isinstance(backend, AfPacketBackend):
            return
        try:
            backend.link_changed(interface_running(backend.ifname))
        except OSError:
            backend.link_changed(False)
        self._sync_carrier(port)

    def _sync_carrier(self, port: Port) -> Optional[Job]:
        want = port.desired_carrier()
        if port.carrier_set == want or not port.ifindex:
            return None
        if not port.admin_up:
            port.carrier_set = False  # the kernel keeps a down interface's carrier off
            return None
        port.carrier_set = want
        ifindex, name = port.ifindex, port.config.name
        job = self.worker.submit(
            lambda: self.links.set_link(ifindex, carrier=want), f"{name}: carrier {'on' if want else 'off'}"
        )
        if self._start_jobs is not None:
            self._start_jobs.append(job)
        return job

    def _defer(self, function: Callable[[], None], description: str) -> None:
        self.worker.submit(function, description)

    # --- request callbacks (run while the kernel holds RTNL: decide at once, defer the rest) -------------------------

    def _callbacks(self, get_port: Callable[[], Optional[Port]]) -> RequestCallbacks:
        def change_mtu(mtu: int) -> int:
            port = get_port()
            if port is None:
                return 0
            result = port.backend.check_mtu(mtu)
            if result == 0:
                port.mtu = mtu
            else:
                LOG.info("%s: MTU %d refused by backend %s", port.config.name, mtu, port.config.backend)
            return result

        def config_network_if(up: bool) -> int:
            port = get_port()
            if port is None:
                return 0
            port.backend.set_admin_up(up)
            port.admin_up = up
            name = port.config.name
            # Only a live interface's state is remembered: not the down of one being released or recreated.
            if self.ports.get(name) is port and self.admin.get(name, False) != up:
                self.admin[name] = up
                self._state_dirty = True  # saved by the pump loop once this request is answered
            port.carrier_set = None if up else False  # ndo_open reset the carrier; push the policy after answering
            if up:
                self._sync_carrier(port)
            return 0

        def config_mac_address(mac: bytes) -> int:
            port = get_port()
            if port is None:
                return 0
            result = port.backend.set_mac(mac)
            if result == 0:
                port.mac = mac_text(mac)
            return result

        def config_promiscuity(on: bool) -> int:
            port = get_port()
            return 0 if port is None else port.backend.set_promisc(on)

        def config_allmulticast(on: bool) -> int:
            port = get_port()
            return 0 if port is None else port.backend.set_allmulti(on)

        return RequestCallbacks(
            change_mtu, config_network_if, config_mac_address, config_promiscuity, config_allmulticast
        )

    def _request_error(self, request: KniRequest, failure: BaseException) -> None:
        LOG.error("request %s failed: %r", request.describe(), failure)

    # --- reconcile ------------------------------------------------------------------------------------------------

    def _reconcile(self) -> List[str]:
        """Bring the running interfaces to ``self.desired``; returns error messages (also kept in ``failed``)."""
        actual = {name: port.config for name, port in self.ports.items()}
        errors = []
        for action in plan(self.desired, actual):
            try:
                self._execute(action)
                self.failed.pop(action.name, None)
            except (KniError, OSError, ValueError) as exc:
                message = f"{action.describe()} failed: {exc}"
                LOG.error("%s", message)
                self.failed[action.name] = message
                errors.append(message)
        # Only now, with every interface created: the kernel holds RTNL while it waits for this thread to answer the
        # up request, and creating an interface needs RTNL, so an earlier up would stall both until the 3 s timeout.
        ports, self._restore = self._restore, []
        for port in ports:
            jobs = []
            if self.admin.get(port.config.name):
                jobs.append(self._link_job(port, "up again", up=True))
            if self.addresses.get(port.config.name):
                jobs += self._restore_addresses(port)
            if self._start_jobs is not None:
                self._start_jobs.extend(jobs)
        return errors

    def _execute(self, action: Action) -> None:
        LOG.info("%s", action.describe())
        if action.kind in ("delete", "recreate"):
            self._remove(action.name)
        if action.config is None:
            if self.addresses.pop(action.name, None):
                self._state_dirty = True
            return
        if action.kind in ("create", "recreate"):
            self._create(action.config)
        if action.kind == "update":
            self._update(self.ports[action.name], action.config, action.changes)

    def _create(self, config: InterfaceConfig) -> None:
        name = config.name
        mac = mac_bytes(config.mac) if config.mac else b""
        device_config = DeviceConfig(
            name=name,
            mbuf_size=MAX_FRAME_LEN,
            mtu=config.mtu,
            min_mtu=config.min_mtu,
            max_mtu=config.max_mtu,
            mac_addr=mac,
            core_id=config.core or 0,
            force_bind=config.core is not None,
        )
        holder: List[Port] = []
        callbacks = self._callbacks(lambda: holder[0] if holder else None)
        device, pool = self._while_pumping(
            lambda: self.kni.create(device_config, callbacks, self._request_error), f"{name}: create"
        )
        try:
            backend = open_backend(config.backend, pool, self._defer, mac)
        except BaseException:
            self.kni.release(device, pool)
            raise
        port = Port(config, device, pool, backend)
        holder.append(port)
        try:
            port.ifindex = self.system.ifindex(name)
        except OSError:
            port.ifindex = 0
        self.ports[name] = port
        if (self.admin.get(name) or self.addresses.get(name)) and port.ifindex:
            self._restore.append(port)  # it was up or had addresses before (last daemon, or before a recreate)

    def _remove(self, name: str, pumping: bool = True) -> None:
        port = self.ports.pop(name, None)
        if port is None:
            return
        port.backend.close()
        if pumping:
            self._while_pumping(lambda: self.kni.release(port.device, port.pool), f"{name}: release")
        else:
            self.kni.release(port.device, port.pool)

    def _while_pumping(self, function: Callable[[], T], description: str) -> T:
        """``function()`` run on the worker while this thread keeps answering the other interfaces' requests.

        For the CREATE and RELEASE ioctls: registering or unregistering a netdev takes RTNL, and the kernel holds
        RTNL while it waits for this thread to answer a request, e.g. an `ip link set up` of an interface created
        just before (networkd, an operator's script). Called here, both would wait until the request timed out
        (3 s) and the `ip` command failed with "Timer expired"."""
        results: List[T] = []
        failures: List[BaseException] = []

        def call() -> None:
            try:
                results.append(function())
            except BaseException as exc:  # pylint: disable=broad-exception-caught  # raised again on this thread
                failures.append(exc)

        job = self.worker.submit(call, description)
        if not self.ports:
            job.done.wait()  # nobody to answer for
        while not self.pump_until(job.done.is_set):
            pass  # the ioctl always returns: RTNL comes free when the requests time out at the latest
        if failures:
            raise failures[0]
        return results[0]

    def _update(self, port: Port, config: InterfaceConfig, changes: Sequence[str]) -> None:
        port.config = config
        if "backend" in changes:
            old = port.backend
            old.close()
            try:
                port.backend = open_backend(
                    config.backend, port.pool, self._defer, mac_bytes(port.mac) if port.mac else b""
                )
            except BaseException:
                port.backend = open_backend(BackendSpec("null"), port.pool, self._defer)  # keep the interface pumping
                raise
            port.backend.set_admin_up(port.admin_up)
        jobs: List[Job] = []
        if "mtu" in changes and port.mtu != config.mtu:
            jobs.append(self._link_job(port, f"MTU {config.mtu}", mtu=config.mtu))
        if "mac" in changes and config.mac and port.mac != config.mac:
            jobs.append(self._link_job(port, f"MAC {config.mac}", address=mac_bytes(config.mac)))
        carrier_job = self._sync_carrier(port)
        if carrier_job is not None:
            jobs.append(carrier_job)
        # The kernel turns MTU/MAC changes into requests to this thread: keep answering while the worker waits.
        if not self.pump_until(lambda: all(job.done.is_set() for job in jobs)):
            raise OSError(errno.ETIMEDOUT, f"{config.name}: link change did not complete")
        for job in jobs:
            if job.error is not None:
                raise OSError(getattr(job.error, "errno", errno.EIO) or errno.EIO, f"{job.description}: {job.error}")

    def _link_job(self, port: Port, description: str, **change: Any) -> Job:
        ifindex = port.ifindex
        return self.worker.submit(lambda: self.links.set_link(ifindex, **change), f"{port.config.name}: {description}")

    # --- control protocol -----------------------------------------------------------------------------------------

    def handle_request(self, request: ControlRequest) -> Dict[str, Any]:
        op = request.op
        if op == "list":
            return ok_reply(interfaces=[self._summary(name) for name in sorted(self.desired)])
        if op == "get":
            if request.name not in self.desired:
                return error_reply("name", f"no interface {request.name!r}")
            return ok_reply(interface=self._detail(request.name))
        if op == "stats":
            if request.name is not None and request.name not in self.ports:
                return error_reply("name", f"no running interface {request.name!r}")
            names = [request.name] if request.name else sorted(self.ports)
            return ok_reply(daemon=self._daemon_stats(), interfaces={name: self.ports[name].status() for name in names})
        if op == "delete":
            if request.name not in self.desired:
                return error_reply("name", f"no interface {request.name!r}")
            remaining = [config for name, config in self.desired.items() if name != request.name]
            return self.apply(remaining, replace=True, paths=[])
        return self.apply(request.interfaces, replace=request.replace, paths=request.paths)

    def apply(self, interfaces: List[InterfaceConfig], replace: bool, paths: List[str]) -> Dict[str, Any]:
        """Validate everything, persist the new desired state, then reconcile. Invalid: nothing changes."""
        try:
            check_runtime(
                interfaces, self.system.online_cpus(), self.system.links(), list(self.ports), paths=paths or None
            )
            if replace:
                merged = list(interfaces)
            else:
                merged = [config for name, config in self.desired.items() if name != interfaces[0].name]
                merged.append(interfaces[0])
            check_unique(merged, "interfaces")
            if len(merged) > self.settings.max_interfaces:
                field = paths[-1] if paths else "interfaces"
                raise ConfigError(
                    field, f"more than the {self.settings.max_interfaces} interfaces this pump has memory for"
                )
        except ConfigError as exc:
            return error_reply(exc.field, exc.message)
        known = {**self.desired, **{name: port.config for name, port in self.ports.items()}}
        self.desired = by_name(assign_macs(merged, known))
        self.admin = {name: up for name, up in self.admin.items() if name in self.desired}
        self._persist()
        actions = plan(self.desired, {name: port.config for name, port in self.ports.items()})
        errors = self._reconcile()
        described = [action.describe() for action in actions]
        if errors:
            return error_reply("interfaces", "; ".join(errors), actions=described)
        return ok_reply(actions=described, interfaces=[self._summary(name) for name in sorted(self.desired)])

    def _persist(self) -> None:
        admin_up = [name for name in self.desired if self.admin.get(name)]
        addresses = {name: found for name, found in self.addresses.items() if name in self.desired}
        write_state(
            self.settings.state_dir, list(self.desired.values()), self.settings.config_digest, admin_up, addresses
        )

    def _summary(self, name: str) -> Dict[str, Any]:
        port = self.ports.get(name)
        summary: Dict[str, Any] = {"name": name, "backend": str(self.desired[name].backend)}
        if port is None:
            summary.update(state="failed" if name in self.failed else "absent", error=self.failed.get(name))
        else:
            status = port.status()
            summary.update({key: status[key] for key in ("state", "carrier", "mtu", "mac")})
        return summary

    def _detail(self, name: str) -> Dict[str, Any]:
        detail = {"desired": self.desired[name].to_json(), **self._summary(name)}
        port = self.ports.get(name)
        if port is not None:
            detail.update(port.status())
        return detail

    def _daemon_stats(self) -> Dict[str, Any]:
        return {**self.stats, "idle_sleep": self.sleep, "interfaces": len(self.ports), "failed": dict(self.failed)}

    # --- shutdown -------------------------------------------------------------------------------------------------

    def close(self) -> None:
        """Release every interface (the kernel would on close anyway) and the control socket."""
        if self.control is not None:
            self.control.close()
            self.control = None
        for name in list(self.ports):
            try:
                self._remove(name, pumping=False)  # on this thread: a stuck worker cannot hold up the exit
            except (KniError, OSError) as exc:
                LOG.warning("%s: release failed: %s", name, exc)
