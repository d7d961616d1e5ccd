# SPDX-License-Identifier: GPL-3.0-or-later
# Copyright: kernelnic.kni contributors
"""What every part of ``PumpDaemon`` shares: what it drives (the kernel, links, worker, monitor, host facts, as
Protocols so that tests hand in fakes), its settings, and its state (``PumpCore``), persisted by ``_persist``."""

from __future__ import annotations

import socket
import time
from typing import Callable, Dict, List, NamedTuple, Optional, Protocol, Sequence, Tuple, TypeVar, Union

from ansible_collections.kernelnic.kni.plugins.module_utils._kni.device import DeviceConfig, KniDevice
from ansible_collections.kernelnic.kni.plugins.module_utils._kni.mbuf import MbufPool
from ansible_collections.kernelnic.kni.plugins.module_utils._kni.request_protocol import KniRequest, RequestCallbacks
from ansible_collections.kernelnic.kni.plugins.module_utils._pump.control import ControlServer
from ansible_collections.kernelnic.kni.plugins.module_utils._pump.netlink import AddressEvent, Job, LinkEvent
from ansible_collections.kernelnic.kni.plugins.module_utils._pump.pacing import (
    DEEP_POLL,
    MAX_IDLE_SLEEP,
    REQUEST_POLL,
    WARM_IDLE,
)
from ansible_collections.kernelnic.kni.plugins.module_utils._pump.port import Port
from ansible_collections.kernelnic.kni.plugins.module_utils._pump.schema import (
    InterfaceConfig,
    host_links,
    host_online_cpus,
)
from ansible_collections.kernelnic.kni.plugins.module_utils._pump.state import write_state

T = TypeVar("T")


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
    """RTNL-taking link changes (run on the worker thread), as ``RtnlClient`` makes them: ``set_link(ifindex, *,
    carrier, mtu, address, up)`` changes what is given, ``add_address(ifindex, cidr)`` adds an address."""

    set_link: Callable[..., None]

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


class PumpCore:
    """The daemon's state; the parts above it (links, requests, pumping, reconcile, control API, event loop) act on
    it. ``PumpDaemon`` is the top one."""

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

    def _persist(self) -> None:
        admin_up = [name for name in self.desired if self.admin.get(name)]
        addresses = {name: found for name, found in self.addresses.items() if name in self.desired}
        write_state(
            self.settings.state_dir, list(self.desired.values()), self.settings.config_digest, admin_up, addresses
        )
