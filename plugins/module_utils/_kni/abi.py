# SPDX-License-Identifier: GPL-3.0-or-later
# Copyright: kernelnic.kni contributors
"""The one Python definition of the DPDK 22.11 KNI ABI (x86_64, LP64, 64-byte cache lines, IOVA as PA build).

Everything that must match ``kmod/kni_abi.h`` byte for byte lives here: struct formats, sizes, field offsets,
ioctl numbers and request ids. Other modules import these names and never hard-code a layout.

The ``KniError`` hierarchy lives here too: every other KNI module imports this one, so it is the only place the
base class can be defined without an import cycle. ``device`` re-exports it.
"""

from __future__ import annotations

import enum
import errno as errno_codes
import os
import struct
from typing import Union

# --- sizes and limits (docs/kni-abi.md §2, §3.1, §6) ----------------------------------------------------------

NAMESIZE = 16  # RTE_KNI_NAMESIZE: netdev name including the terminating NUL
CACHE_LINE_SIZE = 64  # RTE_CACHE_LINE_SIZE (and RTE_CACHE_LINE_MIN_SIZE)
POINTER_SIZE = 8
FIFO_COUNT_MAX = 1024  # KNI_FIFO_COUNT_MAX: slots per FIFO (power of two)
MAX_MBUF_BURST = 32  # MAX_MBUF_BURST_NUM: per-call alloc_q refill / free_q drain limit in librte_kni

# --- ioctl numbers (docs/kni-abi.md §1.2) -----------------------------------------------------------------------

_IOC_NRBITS = 8
_IOC_TYPEBITS = 8
_IOC_SIZEBITS = 14
_IOC_NRSHIFT = 0
_IOC_TYPESHIFT = _IOC_NRSHIFT + _IOC_NRBITS
_IOC_SIZESHIFT = _IOC_TYPESHIFT + _IOC_TYPEBITS
_IOC_DIRSHIFT = _IOC_SIZESHIFT + _IOC_SIZEBITS
_IOC_WRITE = 1
_IOC_READ = 2


def ioc(direction: int, ioc_type: int, number: int, size: int) -> int:
    """Encode an ioctl request number the way the Linux ``_IOC`` macro does on x86_64."""
    if not 0 <= size < (1 << _IOC_SIZEBITS):
        raise ValueError(f"ioctl argument size {size} does not fit in {_IOC_SIZEBITS} bits")
    return (
        (direction << _IOC_DIRSHIFT)
        | (ioc_type << _IOC_TYPESHIFT)
        | (number << _IOC_NRSHIFT)
        | (size << _IOC_SIZESHIFT)
    )


def iowr(ioc_type: int, number: int, size: int) -> int:
    """``_IOWR(type, nr, size)``: the kernel both reads and writes the argument."""
    return ioc(_IOC_READ | _IOC_WRITE, ioc_type, number, size)


def ioc_number(request: int) -> int:
    """``_IOC_NR``: the only part of the request the KNI module dispatches on (docs/kni-abi.md §1.3)."""
    return (request >> _IOC_NRSHIFT) & ((1 << _IOC_NRBITS) - 1)


def ioc_size(request: int) -> int:
    """``_IOC_SIZE``: the encoded argument size."""
    return (request >> _IOC_SIZESHIFT) & ((1 << _IOC_SIZEBITS) - 1)


KNI_IOCTL_TYPE = 0  # "magic" 0, as upstream

# --- struct rte_kni_device_info (docs/kni-abi.md §2.1): natural alignment, 136 bytes ------------------------------

DEVICE_INFO = struct.Struct("<16s7QQQQH2xIB3xIIII6sB5x")
DEVICE_INFO_SIZE = DEVICE_INFO.size
DEVICE_INFO_FIELDS = (
    "name",
    "tx_phys",
    "rx_phys",
    "alloc_phys",
    "free_phys",
    "req_phys",
    "resp_phys",
    "sync_phys",
    "sync_va",
    "mbuf_va",
    "mbuf_phys",
    "group_id",
    "core_id",
    "force_bind",
    "mbuf_size",
    "mtu",
    "min_mtu",
    "max_mtu",
    "mac_addr",
    "iova_mode",
)
DEVICE_INFO_OFFSETS = {
    "name": 0,
    "tx_phys": 16,
    "rx_phys": 24,
    "alloc_phys": 32,
    "free_phys": 40,
    "req_phys": 48,
    "resp_phys": 56,
    "sync_phys": 64,
    "sync_va": 72,
    "mbuf_va": 80,
    "mbuf_phys": 88,
    "group_id": 96,
    "core_id": 100,
    "force_bind": 104,  # bit 0 of this byte (a 1-bit bitfield upstream)
    "mbuf_size": 108,
    "mtu": 112,
    "min_mtu": 116,
    "max_mtu": 120,
    "mac_addr": 124,
    "iova_mode": 130,
}
FORCE_BIND_BIT = 0x01

KNI_IOCTL_TEST = iowr(KNI_IOCTL_TYPE, 1, struct.calcsize("i"))
KNI_IOCTL_CREATE = iowr(KNI_IOCTL_TYPE, 2, DEVICE_INFO_SIZE)
KNI_IOCTL_RELEASE = iowr(KNI_IOCTL_TYPE, 3, DEVICE_INFO_SIZE)

# --- this module's strict-mode extension (kmod/kni_abi.h): RTE_KNI_IOCTL_REGISTER_MEM ------------------------------

# struct rte_kni_mem_region {u64 va; u64 len; u32 flags (must be 0); u32 index (out)}: pins [va, va + len) for as
# long as /dev/kni stays open. Devices created after a registration are "strict": FIFOs, sync area, mbufs and data
# buffers must lie inside registered regions. Upstream rte_kni.ko answers -EINVAL.
MEM_REGION = struct.Struct("<QQII")
MEM_REGION_SIZE = MEM_REGION.size
MEM_REGION_INDEX_OFFSET = 20
MEM_REGIONS_MAX = 32
MEM_REGION_MAX_LEN = 16 << 30
KNI_IOCTL_REGISTER_MEM = iowr(KNI_IOCTL_TYPE, 0x10, MEM_REGION_SIZE)

# --- struct rte_kni_fifo (docs/kni-abi.md §2.2) -------------------------------------------------------------------

FIFO_HEADER = struct.Struct("<IIII")  # write, read, len, elem_size
FIFO_HEADER_SIZE = FIFO_HEADER.size
FIFO_WRITE_OFFSET = 0
FIFO_READ_OFFSET = 4
FIFO_LEN_OFFSET = 8
FIFO_ELEM_SIZE_OFFSET = 12
FIFO_BUFFER_OFFSET = 16
FIFO_AREA_SIZE = FIFO_COUNT_MAX * POINTER_SIZE + FIFO_HEADER_SIZE  # KNI_FIFO_SIZE, 8208 bytes

# --- struct rte_kni_mbuf / rte_mbuf (docs/kni-abi.md §2.3) ---------------------------------------------------------

# Offsets the kernel reads or writes (rte_kni_mbuf names).
MBUF_BUF_ADDR_OFFSET = 0
MBUF_BUF_IOVA_OFFSET = 8
MBUF_DATA_OFF_OFFSET = 16
MBUF_REFCNT_OFFSET = 18  # rte_kni_mbuf pad1
MBUF_NB_SEGS_OFFSET = 20
MBUF_PORT_OFFSET = 22  # rte_kni_mbuf pad4
MBUF_OL_FLAGS_OFFSET = 24
MBUF_PACKET_TYPE_OFFSET = 32  # rte_kni_mbuf pad2
MBUF_PKT_LEN_OFFSET = 36
MBUF_DATA_LEN_OFFSET = 40
MBUF_BUF_LEN_OFFSET = 54  # inside rte_kni_mbuf pad3; rte_mbuf buf_len, unused by the kernel
MBUF_POOL_OFFSET = 56
MBUF_NEXT_OFFSET = 64  # second cache line
MBUF_SIZE = 128  # sizeof(struct rte_mbuf); rte_kni_mbuf rounds up to the same thanks to its 64-byte alignment
# The data room of the mbufs this library makes, as DPDK pools usually are: RTE_MBUF_DEFAULT_DATAROOM (the largest
# frame an mbuf holds) behind RTE_PKTMBUF_HEADROOM.
DEFAULT_HEADROOM = 128  # RTE_PKTMBUF_HEADROOM
DEFAULT_DATA_ROOM = 2048 + DEFAULT_HEADROOM
MBUF_ALIGN = CACHE_LINE_SIZE

# The rte_mbuf-compatible head of an mbuf, 72 bytes: buf_addr, buf_iova, data_off, refcnt, nb_segs, port, ol_flags,
# packet_type, pkt_len, data_len, vlan_tci, hash (8 opaque bytes), vlan_tci_outer, buf_len, pool, next.
MBUF_HEAD = struct.Struct("<QQHHHHQIIHH8sHHQQ")
MBUF_HEAD_SIZE = MBUF_HEAD.size
MBUF_HEAD_FIELDS = (
    "buf_addr",
    "buf_iova",
    "data_off",
    "refcnt",
    "nb_segs",
    "port",
    "ol_flags",
    "packet_type",
    "pkt_len",
    "data_len",
    "vlan_tci",
    "hash",
    "vlan_tci_outer",
    "buf_len",
    "pool",
    "next",
)
# Just the fields a packet write sets, from data_off (16) to data_len (42): data_off, refcnt, nb_segs, port,
# ol_flags, packet_type, pkt_len, data_len.
MBUF_PACKET_FIELDS = struct.Struct("<HHHHQIIH")
MBUF_LENGTHS = struct.Struct("<IH")  # pkt_len @36, data_len @40 (packed: the gap is 0 bytes)
# The rest of the head after data_len, 42 to 72: vlan_tci, hash, vlan_tci_outer, buf_len, pool, next.
MBUF_HEADER_TAIL = struct.Struct("<H8sHHQQ")
MBUF_PORT_NONE = 0xFFFF  # RTE_MBUF_PORT_INVALID


def pack_mbuf_head(buffer: Union[bytearray, memoryview], offset: int, **fields: Union[int, bytes]) -> None:
    """Write an mbuf head at ``offset`` of ``buffer`` from named fields (``MBUF_HEAD_FIELDS``); the rest are 0."""
    unknown = set(fields) - set(MBUF_HEAD_FIELDS)
    if unknown:
        raise TypeError(f"not mbuf head fields: {sorted(unknown)}")
    values = [fields.get(name, b"" if name == "hash" else 0) for name in MBUF_HEAD_FIELDS]
    MBUF_HEAD.pack_into(buffer, offset, *values)


# --- struct rte_kni_request (docs/kni-abi.md §2.4): packed, 17 bytes -------------------------------------------------

REQUEST = struct.Struct("<I8sBi")  # req_id, union, async byte (bit 0), result
REQUEST_SIZE = REQUEST.size
REQUEST_ID_OFFSET = 0
REQUEST_UNION_OFFSET = 4
REQUEST_UNION_SIZE = 8
REQUEST_ASYNC_OFFSET = 12
REQUEST_ASYNC_BIT = 0x01
REQUEST_RESULT_OFFSET = 13
REQUEST_RESULT = struct.Struct("<i")
REQUEST_NEW_MTU = struct.Struct("<I")  # union member new_mtu; if_up, promiscusity, allmulti are its first byte
MAC_ADDR_LEN = 6


class RequestId(enum.IntEnum):
    """``enum rte_kni_req_id``."""

    UNKNOWN = 0
    CHANGE_MTU = 1
    CFG_NETWORK_IF = 2
    CHANGE_MAC_ADDR = 3
    CHANGE_PROMISC = 4
    CHANGE_ALLMULTI = 5
    MAX = 6


class IovaMode(enum.IntEnum):
    """Value of ``rte_kni_device_info.iova_mode``: how the kernel turns the addresses we give it into memory."""

    PA = 0  # addresses are physical: phys_to_virt() in the kernel
    VA = 1  # addresses are our virtual addresses: the kernel walks our page tables


# --- errors --------------------------------------------------------------------------------------------------------


class KniError(Exception):
    """A KNI operation failed: ``step`` names what was being done, ``errno`` is the OS error (0 when none)."""

    def __init__(self, step: str, errno: int, message: str) -> None:
        self.step = step
        self.errno = errno
        self.message = message
        super().__init__(step, errno, message)

    def __str__(self) -> str:
        if self.errno:
            name = errno_codes.errorcode.get(self.errno, str(self.errno))
            return f"{self.step}: {self.message} [{name}: {os.strerror(self.errno)}]"
        return f"{self.step}: {self.message}"


class KniMemoryError(KniError):
    """Hugepage mapping, physical address lookup or memzone reservation failed."""


class KniFifoError(KniError):
    """A FIFO area is malformed (bad length) or too small."""


class KniMbufError(KniError):
    """The mbuf pool was misused or is exhausted where that is an error."""


class KniRequestError(KniError):
    """The kernel's request protocol was violated, or a callback failed."""


class KniDeviceError(KniError):
    """Opening ``/dev/kni``, CREATE, RELEASE or a carrier update failed."""
