# SPDX-License-Identifier: GPL-3.0-or-later
# Copyright: kernelnic.kni contributors
"""The kernel side of kni-pump: the open /dev/kni, one hugepage arena for every interface, a pool per interface.

The arena is mapped once, at start, and registered with RTE_KNI_IOCTL_REGISTER_MEM before the first CREATE: this
module's strict mode then checks every address the kernel is handed against it. An upstream rte_kni module refuses
the ioctl with EINVAL; the pump then runs unregistered and says so. This module also wakes a poll() on /dev/kni when
it posts a request or egress frames, so an idle pump sleeps until then (or its housekeeping) instead of polling
the FIFOs; with upstream's it polls them. IOVA=VA is the default: it needs no physical
addresses, hence no CAP_SYS_ADMIN for /proc/self/pagemap.
"""

from __future__ import annotations

import errno
from typing import Callable, Optional, Tuple

from ansible_collections.kernelnic.kni.plugins.module_utils._kni.abi import IovaMode, KniDeviceError
from ansible_collections.kernelnic.kni.plugins.module_utils._kni.device import DeviceConfig, KniControl, KniDevice
from ansible_collections.kernelnic.kni.plugins.module_utils._kni.mbuf import MbufPool
from ansible_collections.kernelnic.kni.plugins.module_utils._kni.memory import (
    Arena,
    hugepage_size,
    map_hugepages,
    read_meminfo,
)
from ansible_collections.kernelnic.kni.plugins.module_utils._kni.request_protocol import KniRequest, RequestCallbacks
from ansible_collections.kernelnic.kni.plugins.module_utils._pump.log import LOG
from ansible_collections.kernelnic.kni.plugins.module_utils._pump.sizing import (
    DEFAULT_POOL_SIZE,
    MBUF_OBJECT_SIZE,
    alloc_q_target,
    arena_bytes,
)


class KernelKni:
    """``KniHost`` backed by the rte_kni module."""

    def __init__(
        self,
        max_interfaces: int,
        pool_size: int = DEFAULT_POOL_SIZE,
        iova_mode: IovaMode = IovaMode.VA,
        require_strict: bool = False,
        device_path: str = "/dev/kni",
    ) -> None:
        self.pool_size = pool_size
        page = hugepage_size(read_meminfo())
        self.control = KniControl(device_path)
        try:
            self._wakeup_fd = self.control.fileno() if self.control.kernel_wakes_pollers() else None
            self.arena: Arena = map_hugepages(arena_bytes(max_interfaces, pool_size, MBUF_OBJECT_SIZE, page), iova_mode)
        except BaseException:
            self.control.close()
            raise
        self.strict = True
        try:
            self.control.register_arena(self.arena)
        except KniDeviceError as exc:
            if exc.errno != errno.EINVAL or require_strict:
                self.close()
                raise
            self.strict = False
            LOG.warning("the rte_kni module has no strict mode (REGISTER_MEM refused): running unregistered")

    def fileno(self) -> Optional[int]:
        """/dev/kni, when this module wakes a poll() on it for requests and egress frames; None with upstream's."""
        return self._wakeup_fd

    def create(
        self, config: DeviceConfig, callbacks: RequestCallbacks, on_error: Callable[[KniRequest, BaseException], None]
    ) -> Tuple[KniDevice, MbufPool]:
        pool = MbufPool(self.arena, f"pool_{config.name}", self.pool_size)
        try:
            target = alloc_q_target(self.pool_size)
            device = KniDevice(self.control, config, self.arena, pool, callbacks, on_error, alloc_q_target=target)
        except BaseException:
            pool.close()
            raise
        return device, pool

    def release(self, device: KniDevice, pool: MbufPool) -> None:
        device.release()
        pool.close()

    def close(self) -> None:
        """Close /dev/kni (the kernel removes any interface left) and unmap the arena."""
        self.control.close()
        self.arena.close()
