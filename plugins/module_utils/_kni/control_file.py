# SPDX-License-Identifier: GPL-3.0-or-later
# Copyright: kernelnic.kni contributors
"""The ``/dev/kni`` control file: opening it, its ioctls (TEST, CREATE, RELEASE, REGISTER_MEM) and the
``rte_kni_device_info`` that CREATE and RELEASE carry (docs/kni-abi.md §1, §2.1).

``KniControl`` is the open ``/dev/kni``: one opener per network namespace (unless rte_kni has multi_open=on);
closing it removes every KNI interface of the namespace.
"""

from __future__ import annotations

import errno
import fcntl
import mmap
import os
import select
from typing import Dict, NamedTuple, Optional

from ansible_collections.kernelnic.kni.plugins.module_utils._kni.abi import (
    DEVICE_INFO,
    DEVICE_INFO_SIZE,
    FORCE_BIND_BIT,
    KNI_IOCTL_CREATE,
    KNI_IOCTL_REGISTER_MEM,
    KNI_IOCTL_RELEASE,
    KNI_IOCTL_TEST,
    MAC_ADDR_LEN,
    MEM_REGION,
    MEM_REGION_INDEX_OFFSET,
    MEM_REGION_MAX_LEN,
    MEM_REGION_SIZE,
    NAMESIZE,
    IovaMode,
    KniDeviceError,
)
from ansible_collections.kernelnic.kni.plugins.module_utils._kni.memory import Arena

KNI_DEVICE_PATH = "/dev/kni"

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


def os_error(step: str, exc: OSError, hints: Dict[int, str], subject: str) -> KniDeviceError:
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
            raise os_error("open /dev/kni", exc, _OPEN_HINTS, path) from exc

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
            raise os_error(step, exc, hints, subject) from exc

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
