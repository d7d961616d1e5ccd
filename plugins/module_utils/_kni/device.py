# SPDX-License-Identifier: GPL-3.0-or-later
# Copyright: kernelnic.kni contributors
"""KNI devices: the ``/dev/kni`` control file and one object per KNI network interface.

``KniControl`` is the open ``/dev/kni`` (one opener per network namespace; closing it removes every KNI interface
of the namespace). ``KniDevice`` owns an interface's seven memzones, its FIFOs and its request handler, and moves
packets in bursts:

* ``tx_burst`` hands packets to the Linux stack (rx_q), ``rx_burst`` takes what Linux sent (tx_q);
* ``poll_requests`` answers the kernel's MTU/up/down/MAC/promisc/allmulti requests through callbacks;
* ``update_link`` sets the carrier through sysfs.

All failures raise ``KniError`` subclasses that name the failing step and the errno.
"""

from __future__ import annotations

import errno
import fcntl
import mmap
import os
import select
from typing import Dict, List, NamedTuple, Optional, Sequence

from ansible_collections.kernelnic.kni.plugins.module_utils._kni.abi import (
    DEVICE_INFO,
    DEVICE_INFO_SIZE,
    FIFO_AREA_SIZE,
    FIFO_COUNT_MAX,
    FORCE_BIND_BIT,
    KNI_IOCTL_CREATE,
    KNI_IOCTL_REGISTER_MEM,
    KNI_IOCTL_RELEASE,
    KNI_IOCTL_TEST,
    MAC_ADDR_LEN,
    MAX_MBUF_BURST,
    MEM_REGION,
    MEM_REGION_INDEX_OFFSET,
    MEM_REGION_MAX_LEN,
    MEM_REGION_SIZE,
    NAMESIZE,
    IovaMode,
    KniDeviceError,
    KniError,
    KniFifoError,
    KniMbufError,
    KniMemoryError,
    KniRequestError,
)
from ansible_collections.kernelnic.kni.plugins.module_utils._kni.fifo import KniFifo
from ansible_collections.kernelnic.kni.plugins.module_utils._kni.mbuf import MbufPool
from ansible_collections.kernelnic.kni.plugins.module_utils._kni.memory import Arena, Memzone
from ansible_collections.kernelnic.kni.plugins.module_utils._kni.request_protocol import (
    ErrorHook,
    KniRequest,
    RequestCallbacks,
    RequestHandler,
)

__all__ = [
    "DeviceConfig",
    "KniControl",
    "KniDevice",
    "KniDeviceError",
    "KniError",
    "KniFifoError",
    "KniMbufError",
    "KniMemoryError",
    "KniRequestError",
    "pack_device_info",
    "validate_name",
]

KNI_DEVICE_PATH = "/dev/kni"
SYSFS_NET = "/sys/class/net"
DEFAULT_ALLOC_Q_TARGET = 4 * MAX_MBUF_BURST
QUEUES = ("tx", "rx", "alloc", "free", "req", "resp")  # memzone kni_<queue>_<name>; device_info <queue>_phys

_OPEN_HINTS = {
    errno.ENOENT: "the rte_kni module is not loaded (no /dev/kni)",
    errno.ENODEV: "the rte_kni module is not loaded",
    errno.EBUSY: "held by another process in this network namespace; load rte_kni with multi_open=on to share it",
    errno.EACCES: "permission denied: root is needed",
    errno.EPERM: "permission denied: root is needed",
}
_CREATE_HINTS = {
    errno.EINVAL: "rejected: duplicate KNI name in this network namespace, name not NUL-terminated, force_bind "
    "core offline, or IOVA=VA unsupported by the module",
    errno.EFAULT: "the kernel could not read the device info",
    errno.EBUSY: "the kernel could not allocate the network device",
    errno.ENODEV: "register_netdev failed: is the name already used by another interface, or invalid?",
    errno.ECANCELED: "the kernel thread could not be started",
    errno.EPERM: "the module requires strict mode: register the arena (register_arena) before creating devices",
}
_REGISTER_HINTS = {
    errno.EINVAL: "rejected: bad alignment, length or flags, overlap with a registered region, or an upstream "
    "rte_kni module without strict mode",
    errno.ENOSPC: "too many registered regions",
    errno.E2BIG: "region too large",
    errno.EBUSY: "KNI devices already exist on this /dev/kni: register memory before creating devices",
    errno.EFAULT: "the kernel could not pin the region",
}
_CARRIER_HINTS = {
    errno.EINVAL: "the carrier can only be read or set while the interface is up",
    errno.ENOENT: "no such network interface",
    errno.EACCES: "CAP_NET_ADMIN is needed",
    errno.EPERM: "CAP_NET_ADMIN is needed",
}


def _os_error(step: str, exc: OSError, hints: Dict[int, str], subject: str) -> KniDeviceError:
    code = exc.errno or 0
    return KniDeviceError(step, code, f"{subject}: {hints.get(code, exc.strerror or 'failed')}")


def validate_name(name: str) -> bytes:
    """The name as the NUL-padded 16 bytes of ``rte_kni_device_info.name``; rejects names Linux would refuse."""
    encoded = name.encode("ascii", "replace")
    if (
        not name.isascii()
        or not name
        or len(encoded) >= NAMESIZE
        or name in (".", "..")
        or any(c in name for c in "/: \t\n")
    ):
        raise KniDeviceError(
            "device name", errno.EINVAL, f"{name!r} is not a valid interface name (1-{NAMESIZE - 1} ASCII characters)"
        )
    return encoded


class DeviceConfig(NamedTuple):
    """What ``rte_kni_conf`` carried; zeros mean "kernel default" (docs/kni-abi.md §1.3, §2.1)."""

    name: str
    mbuf_size: int = 0  # 0: the pool's largest single-segment packet
    mtu: int = 0
    min_mtu: int = 0
    max_mtu: int = 0
    mac_addr: bytes = b""  # empty or invalid: the kernel picks a random MAC
    core_id: int = 0
    force_bind: bool = False
    group_id: int = 0


def pack_device_info(
    config: DeviceConfig,
    queue_iovas: Dict[str, int],
    sync_va: int,
    sync_iova: int,
    iova_mode: IovaMode,
    mbuf_size: int,
) -> bytearray:
    """A zero-filled ``rte_kni_device_info`` (136 bytes) ready for CREATE."""
    if config.mac_addr and len(config.mac_addr) != MAC_ADDR_LEN:
        raise KniDeviceError("device info", errno.EINVAL, f"MAC address must be {MAC_ADDR_LEN} bytes")
    info = bytearray(DEVICE_INFO_SIZE)
    DEVICE_INFO.pack_into(
        info,
        0,
        validate_name(config.name),
        *(queue_iovas[queue] for queue in QUEUES),
        sync_iova,
        sync_va,
        0,  # mbuf_va: unused by the kernel
        0,  # mbuf_phys: unused
        config.group_id,
        config.core_id,
        FORCE_BIND_BIT if config.force_bind else 0,
        mbuf_size,
        config.mtu,
        config.min_mtu,
        config.max_mtu,
        config.mac_addr or bytes(MAC_ADDR_LEN),
        int(iova_mode),
    )
    return info


class KniControl:
    """The open ``/dev/kni``. Closing it makes the kernel remove every KNI interface created through it."""

    def __init__(self, path: str = KNI_DEVICE_PATH) -> None:
        self.path = path
        try:
            self._fd: Optional[int] = os.open(path, os.O_RDWR | os.O_CLOEXEC)
        except OSError as exc:
            raise _os_error("open /dev/kni", exc, _OPEN_HINTS, path) from exc

    def fileno(self) -> int:
        if self._fd is None:
            raise KniDeviceError("ioctl", errno.EBADF, f"{self.path} is closed")
        return self._fd

    def kernel_wakes_pollers(self) -> bool:
        """Whether poll() on /dev/kni sleeps until the kernel posts a request or egress frames (an extension of this
        collection's module). A module without it (upstream's) reports the file as always readable and writable."""
        poller = select.poll()
        poller.register(self.fileno(), select.POLLIN | select.POLLOUT)
        return not any(events & select.POLLOUT for _fd, events in poller.poll(0))

    def ioctl(self, step: str, request: int, argument: bytearray, hints: Dict[int, str], subject: str) -> None:
        try:
            fcntl.ioctl(self.fileno(), request, argument, True)
        except OSError as exc:
            raise _os_error(step, exc, hints, subject) from exc

    def create(self, info: bytearray) -> None:
        """RTE_KNI_IOCTL_CREATE with a packed ``rte_kni_device_info``."""
        name = bytes(info[:NAMESIZE]).split(b"\0", 1)[0].decode("ascii", "replace")
        self.ioctl("ioctl CREATE", KNI_IOCTL_CREATE, info, _CREATE_HINTS, f"KNI device {name!r}")

    def release(self, name: str) -> None:
        """RTE_KNI_IOCTL_RELEASE: the kernel reads only the name."""
        info = bytearray(DEVICE_INFO_SIZE)
        info[:NAMESIZE] = validate_name(name).ljust(NAMESIZE, b"\0")
        hints = {errno.EINVAL: "no KNI device of that name was created through this /dev/kni"}
        self.ioctl("ioctl RELEASE", KNI_IOCTL_RELEASE, info, hints, f"KNI device {name!r}")

    def register_memory(self, va: int, length: int) -> int:
        """RTE_KNI_IOCTL_REGISTER_MEM (this module's strict mode): pin ``[va, va + length)``; returns the index.

        Devices created after a registration only accept memory inside registered regions. Register before the
        first CREATE on this file; the pin lasts until the file is closed.
        """
        subject = f"region 0x{va:x}+0x{length:x}"
        if va % mmap.PAGESIZE or length % mmap.PAGESIZE or not 0 < length <= MEM_REGION_MAX_LEN:
            raise KniDeviceError(
                "ioctl REGISTER_MEM",
                errno.EINVAL,
                f"{subject}: start and length must be page aligned and the length 1 page to {MEM_REGION_MAX_LEN >> 30} "
                "GiB",
            )
        region = bytearray(MEM_REGION_SIZE)
        MEM_REGION.pack_into(region, 0, va, length, 0, 0)
        self.ioctl("ioctl REGISTER_MEM", KNI_IOCTL_REGISTER_MEM, region, _REGISTER_HINTS, subject)
        return int.from_bytes(region[MEM_REGION_INDEX_OFFSET : MEM_REGION_INDEX_OFFSET + 4], "little")

    def register_arena(self, arena: Arena) -> int:
        """Register a whole arena (FIFOs, sync areas and mbuf pools all live in it) for strict mode."""
        return self.register_memory(arena.base_va, arena.size)

    def probe(self) -> bool:
        """True if the driver behind the file answers RTE_KNI_IOCTL_TEST like a KNI module (0 or EINVAL)."""
        try:
            fcntl.ioctl(self.fileno(), KNI_IOCTL_TEST, bytearray(4), True)
        except OSError as exc:
            return exc.errno == errno.EINVAL  # upstream's TEST case falls through to -EINVAL
        return True

    def close(self) -> None:
        if self._fd is not None:
            fd, self._fd = self._fd, None
            os.close(fd)

    def __enter__(self) -> KniControl:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


class KniDevice:
    """One KNI interface: its shared memory, FIFOs, request handling and carrier."""

    def __init__(
        self,
        control: KniControl,
        config: DeviceConfig,
        arena: Arena,
        pool: MbufPool,
        callbacks: Optional[RequestCallbacks] = None,
        on_request_error: Optional[ErrorHook] = None,
        sysfs_net: str = SYSFS_NET,
        alloc_q_target: int = DEFAULT_ALLOC_Q_TARGET,
    ) -> None:
        """Reserve the memzones, set up the FIFOs, CREATE the interface and pre-fill alloc_q.

        ``alloc_q_target`` is how many empty mbufs alloc_q is kept topped up to, i.e. how many frames Linux can send
        between two ``rx_burst`` calls before it drops. librte_kni instead adds up to 32 per call until alloc_q is
        full, parking 1023 mbufs per device.
        """
        validate_name(config.name)
        if pool.arena is not arena:
            raise KniDeviceError("device create", errno.EINVAL, "the mbuf pool must live in the device's arena")
        self.name = config.name
        self.control = control
        self.arena = arena
        self.pool = pool
        self.sysfs_net = sysfs_net
        self.alloc_q_target = max(1, min(alloc_q_target, FIFO_COUNT_MAX - 1))
        self._zones: List[Memzone] = []
        self._fifos: Dict[str, KniFifo] = {}
        self._created = False
        try:
            for queue in QUEUES:
                zone = self._reserve(queue)
                self._fifos[queue] = KniFifo.initialise(zone.view, FIFO_COUNT_MAX)
            sync = self._reserve("sync")
            self.requests = RequestHandler(
                self._fifos["req"],
                self._fifos["resp"],
                sync.view,
                sync.va,
                callbacks or RequestCallbacks(),
                on_request_error,
            )
            mbuf_size = config.mbuf_size or pool.max_packet_size
            if mbuf_size > pool.max_packet_size:
                raise KniDeviceError(
                    "device create",
                    errno.EINVAL,
                    f"mbuf_size {mbuf_size} exceeds the pool's {pool.max_packet_size}-byte mbufs",
                )
            queue_iovas = {queue: zone.iova for queue, zone in zip(QUEUES, self._zones)}
            info = pack_device_info(config, queue_iovas, sync.va, sync.iova, arena.iova_mode, mbuf_size)
            control.create(info)
            self._created = True
            self._refill_alloc_q()
        except BaseException:
            self._teardown()
            raise

    def _reserve(self, queue: str) -> Memzone:
        zone = self.arena.reserve(f"kni_{queue}_{self.name}", FIFO_AREA_SIZE)
        self._zones.append(zone)
        return zone

    # --- packets (hot path) --------------------------------------------------------------------------------------

    def tx_burst(self, packets: Sequence[int], reclaim: int = MAX_MBUF_BURST) -> int:
        """Give packets (mbuf heads) to the Linux stack; returns how many were taken, the caller keeps the rest.

        Then takes back up to ``reclaim`` mbufs the kernel is done with, as rte_kni_tx_burst() does; a caller that
        calls ``free_completed`` itself every round passes 0 and spares a FIFO read that finds a few at most."""
        rx_q = self._fifos["rx"]
        count = min(len(packets), rx_q.free_count())
        sent = rx_q.put_packed(self.pool.to_pa_form_packed(packets[:count])) if count else 0
        if reclaim:
            self.free_completed(reclaim)
        return sent

    def rx_burst(self, max_count: int = MAX_MBUF_BURST) -> List[int]:
        """Packets the Linux stack transmitted (single-segment mbufs, now owned by the caller)."""
        packets = self._fifos["tx"].get(max_count)
        if packets and not self.pool.owns_all(packets):
            raise KniFifoError("tx_q read", errno.EFAULT, f"{self.name}: tx_q returned mbufs outside the pool")
        alloc_q = self._fifos["alloc"]
        if packets or alloc_q.count() == 0:  # refilling on empty too avoids alloc_q starvation (upstream 676ed80ad9)
            self._refill_alloc_q()
        return packets

    def free_completed(self, max_count: int = FIFO_COUNT_MAX) -> int:
        """Return the mbufs the kernel finished with (free_q) to the pool."""
        return self.pool.free_packed(self._fifos["free"].get_packed(max_count))

    def _refill_alloc_q(self) -> None:
        alloc_q = self._fifos["alloc"]
        mbufs = self.pool.alloc_burst(min(self.alloc_q_target - alloc_q.count(), alloc_q.free_count()))
        if not mbufs:
            return
        taken = alloc_q.put_packed(self.pool.to_pa_form_packed(mbufs))
        if taken < len(mbufs):
            self.pool.free_burst(mbufs[taken:])

    # --- control ---------------------------------------------------------------------------------------------------

    def poll_requests(self) -> Optional[KniRequest]:
        """Answer the kernel's pending request, if any (call at least every few hundred ms; it waits 3 s)."""
        return self.requests.poll()

    def update_link(self, up: bool) -> bool:
        """Set the carrier through sysfs, writing only on change; returns the previous state."""
        path = os.path.join(self.sysfs_net, self.name, "carrier")
        try:
            fd = os.open(path, os.O_RDWR | os.O_CLOEXEC)
            try:
                was_up = os.read(fd, 2)[:1] == b"1"
                if was_up != up:
                    os.pwrite(fd, b"1" if up else b"0", 0)  # offset 0: sysfs ignores it, plain files need it
            finally:
                os.close(fd)
        except OSError as exc:
            raise _os_error("carrier update", exc, _CARRIER_HINTS, path) from exc
        return was_up

    def fifo(self, queue: str) -> KniFifo:
        """Direct FIFO access (diagnostics, tests): one of tx, rx, alloc, free, req, resp."""
        return self._fifos[queue]

    def release(self) -> None:
        """RELEASE the interface, take back every mbuf the kernel held, and free the memzones.

        If RELEASE fails for any reason other than "no such device" (EINVAL) or "/dev/kni already closed" (EBADF;
        closing removed every device), the kernel may still be using the memory, so it stays reserved.
        """
        if self._created:
            try:
                self.control.release(self.name)
            except KniDeviceError as exc:
                if exc.errno not in (errno.EINVAL, errno.EBADF):
                    raise
            self._created = False
        self._teardown()

    def _teardown(self) -> None:
        if self._fifos:
            # The kernel moves rx_q and alloc_q leftovers to free_q at RELEASE; a module that did not leaves them in
            # PA form. A set guards against freeing an mbuf twice; entries that are not ours are dropped.
            fifos = self._fifos
            leftovers = set()
            for queue in ("rx", "alloc"):
                if queue in fifos:
                    leftovers.update(self.pool.from_pa_form(fifos[queue].get(), strict=False))
            for queue in ("tx", "free"):
                if queue in fifos:
                    leftovers.update(va for va in fifos[queue].get() if self.pool.owns(va))
            self.pool.free_burst(sorted(leftovers))
        for fifo in self._fifos.values():
            fifo.release()
        self._fifos = {}
        for zone in self._zones:
            self.arena.free(zone)
        self._zones = []

    def __enter__(self) -> KniDevice:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.release()
