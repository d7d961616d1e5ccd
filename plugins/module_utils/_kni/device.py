# SPDX-License-Identifier: GPL-3.0-or-later
# Copyright: kernelnic.kni contributors
"""KNI devices: one object per KNI network interface (the ``/dev/kni`` control file is in ``control_file``).

``KniDevice`` owns an interface's seven memzones, its FIFOs and its request handler, and moves packets in bursts:

* ``tx_burst`` hands packets to the Linux stack (rx_q), ``rx_burst`` takes what Linux sent (tx_q);
* ``poll_requests`` answers the kernel's MTU/up/down/MAC/promisc/allmulti requests through callbacks;
* ``update_link`` sets the carrier through sysfs.

All failures raise ``KniError`` subclasses that name the failing step and the errno.
"""

from __future__ import annotations

import errno
import os
from typing import Dict, List, Optional, Sequence

from ansible_collections.kernelnic.kni.plugins.module_utils._kni.abi import (
    FIFO_AREA_SIZE,
    FIFO_COUNT_MAX,
    MAX_MBUF_BURST,
    KniDeviceError,
    KniError,
    KniFifoError,
    KniMbufError,
    KniMemoryError,
    KniRequestError,
)
from ansible_collections.kernelnic.kni.plugins.module_utils._kni.control_file import (
    QUEUES,
    DeviceConfig,
    KniControl,
    os_error,
    pack_device_info,
    validate_name,
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

SYSFS_NET = "/sys/class/net"

DEFAULT_ALLOC_Q_TARGET = 4 * MAX_MBUF_BURST

_CARRIER_HINTS = {
    errno.EINVAL: "the carrier can only be read or set while the interface is up",
    errno.ENOENT: "no such network interface",
    errno.EACCES: "CAP_NET_ADMIN is needed",
    errno.EPERM: "CAP_NET_ADMIN is needed",
}


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
            raise os_error("carrier update", exc, _CARRIER_HINTS, path) from exc
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
