# SPDX-License-Identifier: GPL-3.0-or-later
# Copyright: kernelnic.kni contributors
"""Hugepage arena, physical address lookup and memzones for the KNI shared memory.

The KNI module translates only the *base* address of each FIFO and of the sync area, and each mbuf header/buffer
pair with one offset (docs/kni-abi.md §3.5), so every memzone must be physically contiguous in both IOVA modes. The
arena is made of hugepages ("segments"): a segment is physically contiguous, so a memzone that never crosses a
segment boundary is too. In IOVA=PA mode the physical address of each segment comes from ``/proc/self/pagemap``.
"""

from __future__ import annotations

import ctypes
import errno
import mmap
import os
import struct
from typing import Dict, List, NamedTuple, Optional, Sequence, Tuple, Union

from ansible_collections.kernelnic.kni.plugins.module_utils._kni.abi import (
    CACHE_LINE_SIZE,
    IovaMode,
    KniMemoryError,
)

PAGEMAP_PATH = "/proc/self/pagemap"
MEMINFO_PATH = "/proc/meminfo"
PAGEMAP_ENTRY = struct.Struct("<Q")
PAGEMAP_PFN_MASK = (1 << 55) - 1  # bits 0-54
PAGEMAP_PRESENT = 1 << 63
PAGEMAP_SWAPPED = 1 << 62
MAP_HUGETLB = getattr(mmap, "MAP_HUGETLB", 0x40000)  # Python < 3.12 lacks the constant; value from asm-generic
MAP_POPULATE = getattr(mmap, "MAP_POPULATE", 0x8000)
DEFAULT_SEGMENT_SIZE = 2 * 1024 * 1024

Buffer = Union[bytearray, mmap.mmap]


# --- /proc/meminfo ----------------------------------------------------------------------------------------------


def read_meminfo(path: str = MEMINFO_PATH) -> Dict[str, int]:
    """Parse ``/proc/meminfo`` into {key: value}; values given in kB are converted to bytes."""
    values: Dict[str, int] = {}
    with open(path, encoding="ascii") as meminfo:
        for line in meminfo:
            key, _unused, rest = line.partition(":")
            fields = rest.split()
            if not fields or not fields[0].isdigit():
                continue
            scale = 1024 if fields[1:2] == ["kB"] else 1
            values[key.strip()] = int(fields[0]) * scale
    return values


def hugepage_size(meminfo: Dict[str, int]) -> int:
    """The default hugepage size in bytes."""
    size = meminfo.get("Hugepagesize", 0)
    if size <= 0:
        raise KniMemoryError("hugepages", errno.ENOTSUP, "the kernel reports no hugepage support (no Hugepagesize)")
    return size


# --- /proc/self/pagemap -----------------------------------------------------------------------------------------


class PagemapReader:
    """Virtual to physical address lookup through a pagemap file (one 64-bit entry per base page)."""

    def __init__(self, path: str = PAGEMAP_PATH, page_size: Optional[int] = None) -> None:
        self.path = path
        self.page_size = page_size or mmap.PAGESIZE

    def physical_addresses(self, virtual_addresses: Sequence[int]) -> List[int]:
        """Physical address of each virtual address; the pages must be resident (touched and not swapped)."""
        try:
            fd = os.open(self.path, os.O_RDONLY | os.O_CLOEXEC)
        except OSError as exc:
            raise KniMemoryError("pagemap open", exc.errno or 0, f"cannot open {self.path}: {exc.strerror}") from exc
        try:
            return [self._lookup(fd, address) for address in virtual_addresses]
        finally:
            os.close(fd)

    def physical_address(self, virtual_address: int) -> int:
        return self.physical_addresses([virtual_address])[0]

    def _lookup(self, fd: int, virtual_address: int) -> int:
        page, offset = divmod(virtual_address, self.page_size)
        try:
            raw = os.pread(fd, PAGEMAP_ENTRY.size, page * PAGEMAP_ENTRY.size)
        except OSError as exc:
            raise KniMemoryError(
                "pagemap read", exc.errno or 0, f"cannot read the entry for 0x{virtual_address:x}: {exc.strerror}"
            ) from exc
        if len(raw) != PAGEMAP_ENTRY.size:
            raise KniMemoryError("pagemap read", errno.EIO, f"short read for 0x{virtual_address:x} in {self.path}")
        (entry,) = PAGEMAP_ENTRY.unpack(raw)
        if not entry & PAGEMAP_PRESENT:
            state = "swapped out" if entry & PAGEMAP_SWAPPED else "not resident"
            raise KniMemoryError("pagemap read", errno.EFAULT, f"page at 0x{virtual_address:x} is {state}")
        frame = entry & PAGEMAP_PFN_MASK
        if frame == 0:
            raise KniMemoryError(
                "pagemap read",
                errno.EPERM,
                f"{self.path} shows page frame 0 for 0x{virtual_address:x}: the kernel hides physical addresses "
                "from processes without CAP_SYS_ADMIN; run as root or use IOVA=VA mode",
            )
        return frame * self.page_size + offset


# --- IOVA translation -------------------------------------------------------------------------------------------


class IovaTranslator:
    """Maps arena virtual addresses to the IOVA the kernel expects."""

    mode = IovaMode.VA

    def iova(self, virtual_address: int) -> int:
        return virtual_address


class VirtualIova(IovaTranslator):
    """IOVA=VA: the kernel is given our virtual addresses and walks our page tables itself."""


class PhysicalIova(IovaTranslator):
    """IOVA=PA: per-segment physical base addresses (each segment is one physically contiguous hugepage)."""

    mode = IovaMode.PA

    def __init__(self, base_va: int, segment_size: int, segment_physical: Sequence[int]) -> None:
        self.base_va = base_va
        self.segment_size = segment_size
        self.segment_physical = list(segment_physical)

    def iova(self, virtual_address: int) -> int:
        segment, offset = divmod(virtual_address - self.base_va, self.segment_size)
        if not 0 <= segment < len(self.segment_physical):
            raise KniMemoryError("iova", errno.EFAULT, f"0x{virtual_address:x} is outside the arena")
        return self.segment_physical[segment] + offset


# --- memzones and the arena ---------------------------------------------------------------------------------------


class Memzone(NamedTuple):
    """A named, cache-line aligned, physically contiguous slice of the arena."""

    name: str
    offset: int
    size: int
    va: int
    iova: int
    view: memoryview

    def __repr__(self) -> str:
        return f"Memzone({self.name!r}, va=0x{self.va:x}, iova=0x{self.iova:x}, size={self.size})"


def _align_up(value: int, alignment: int) -> int:
    return (value + alignment - 1) & ~(alignment - 1)


def buffer_address(buffer: Buffer) -> int:
    """Virtual address of the first byte of a writable buffer."""
    anchor = ctypes.c_char.from_buffer(buffer)
    try:
        return ctypes.addressof(anchor)
    finally:
        del anchor  # drop the buffer export so an mmap can still be closed


class Arena:
    """Shared memory for KNI: a buffer split into segments, each physically contiguous, carved into memzones."""

    def __init__(self, buffer: Buffer, segment_size: int, translator: IovaTranslator) -> None:
        if segment_size <= 0 or segment_size & (segment_size - 1) or len(buffer) % segment_size:
            raise KniMemoryError(
                "arena", errno.EINVAL, f"size {len(buffer)} is not a multiple of the segment size {segment_size}"
            )
        self._buffer = buffer
        self.base_va = buffer_address(buffer)
        self.size = len(buffer)
        self.segment_size = segment_size
        self.translator = translator
        self.view = memoryview(buffer)
        self._holes: List[Tuple[int, int]] = [(0, self.size)]  # (offset, size), sorted, non-adjacent
        self._zones: Dict[str, Memzone] = {}

    @property
    def iova_mode(self) -> IovaMode:
        return self.translator.mode

    def iova(self, virtual_address: int) -> int:
        return self.translator.iova(virtual_address)

    def contains(self, virtual_address: int, size: int = 1) -> bool:
        return self.base_va <= virtual_address and virtual_address + size <= self.base_va + self.size

    def memzone(self, name: str) -> Memzone:
        return self._zones[name]

    def reserve(self, name: str, size: int, align: int = CACHE_LINE_SIZE) -> Memzone:
        """Carve a zeroed memzone that does not cross a segment boundary."""
        if name in self._zones:
            raise KniMemoryError("memzone reserve", errno.EEXIST, f"memzone {name!r} already exists")
        if size <= 0 or size > self.segment_size:
            raise KniMemoryError(
                "memzone reserve",
                errno.EINVAL,
                f"memzone {name!r}: size {size} must be between 1 and the segment size {self.segment_size}",
            )
        align = max(align, CACHE_LINE_SIZE)
        for index, (hole_offset, hole_size) in enumerate(self._holes):
            start = self._fit(hole_offset, hole_size, size, align)
            if start is not None:
                self._take(index, start, size)
                break
        else:
            raise KniMemoryError(
                "memzone reserve", errno.ENOMEM, f"no room for memzone {name!r} of {size} bytes in the arena"
            )
        view = self.view[start : start + size]
        view[:] = bytes(size)
        va = self.base_va + start
        zone = Memzone(name, start, size, va, self.iova(va), view)
        self._zones[name] = zone
        return zone

    def free(self, zone: Memzone) -> None:
        """Return a memzone's space to the arena."""
        if self._zones.pop(zone.name, None) is not zone:
            raise KniMemoryError("memzone free", errno.ENOENT, f"memzone {zone.name!r} is not from this arena")
        zone.view.release()
        self._holes.append((zone.offset, zone.size))
        self._holes.sort()
        merged: List[Tuple[int, int]] = []
        for offset, size in self._holes:
            if merged and merged[-1][0] + merged[-1][1] == offset:
                merged[-1] = (merged[-1][0], merged[-1][1] + size)
            else:
                merged.append((offset, size))
        self._holes = merged

    def _fit(self, hole_offset: int, hole_size: int, size: int, align: int) -> Optional[int]:
        start = _align_up(self.base_va + hole_offset, align) - self.base_va  # align the address, not the offset
        if (start + size - 1) // self.segment_size != start // self.segment_size:
            start = _align_up(start, self.segment_size)  # would straddle two segments: start at the next one
        return start if start + size <= hole_offset + hole_size else None

    def _take(self, index: int, start: int, size: int) -> None:
        hole_offset, hole_size = self._holes[index]
        pieces = [(hole_offset, start - hole_offset), (start + size, hole_offset + hole_size - start - size)]
        self._holes[index : index + 1] = [piece for piece in pieces if piece[1] > 0]

    def close(self) -> None:
        """Release all views and unmap the arena; memzones become unusable."""
        for zone in self._zones.values():
            zone.view.release()
        self._zones.clear()
        try:
            self.view.release()
            if isinstance(self._buffer, mmap.mmap):
                self._buffer.close()
        except BufferError as exc:
            raise KniMemoryError(
                "arena close", errno.EBUSY, "arena memory is still referenced: release devices and pools first"
            ) from exc


# --- arena factories ------------------------------------------------------------------------------------------------


def _no_hugepages_error(step: str, code: int, needed: int, page: int, meminfo: Dict[str, int]) -> KniMemoryError:
    free = meminfo.get("HugePages_Free", 0)
    total = meminfo.get("HugePages_Total", 0)
    return KniMemoryError(
        step,
        code,
        f"need {needed} hugepages of {page // 1024} kB but HugePages_Free is {free} (HugePages_Total {total}); "
        f"reserve more, e.g. 'sysctl -w vm.nr_hugepages={total + needed - free}' or 'hugepages=' on the kernel "
        "command line",
    )


def _map_anonymous_hugepages(length: int) -> mmap.mmap:
    # MAP_SHARED, not MAP_PRIVATE: after a fork() a private mapping is copy-on-write, so the parent's next write
    # would move it to new physical pages behind the kernel's back. MAP_POPULATE faults every page in now.
    flags = mmap.MAP_SHARED | MAP_HUGETLB | MAP_POPULATE
    return mmap.mmap(-1, length, flags=flags, prot=mmap.PROT_READ | mmap.PROT_WRITE)


def _map_hugetlbfs_file(directory: str, length: int) -> mmap.mmap:
    import tempfile  # pylint: disable=import-outside-toplevel  # only here: it pulls in shutil, bz2, lzma, random

    fd, path = tempfile.mkstemp(prefix="kni-arena-", dir=directory)
    try:
        os.unlink(path)  # the mapping keeps the pages; nothing is left behind if we die
        os.ftruncate(fd, length)
        return mmap.mmap(fd, length, flags=mmap.MAP_SHARED | MAP_POPULATE, prot=mmap.PROT_READ | mmap.PROT_WRITE)
    finally:
        os.close(fd)


def map_hugepages(
    size: int,
    iova_mode: IovaMode = IovaMode.PA,
    *,
    hugetlbfs_dir: Optional[str] = None,
    meminfo_path: str = MEMINFO_PATH,
    pagemap_path: str = PAGEMAP_PATH,
) -> Arena:
    """Map at least ``size`` bytes of hugepages (anonymous MAP_HUGETLB, or a file on ``hugetlbfs_dir``)."""
    meminfo = read_meminfo(meminfo_path)
    page = hugepage_size(meminfo)
    count = max(1, -(-size // page))
    if meminfo.get("HugePages_Free", 0) < count:
        raise _no_hugepages_error("hugepage map", errno.ENOMEM, count, page, meminfo)
    try:
        if hugetlbfs_dir is None:
            buffer = _map_anonymous_hugepages(count * page)
        else:
            buffer = _map_hugetlbfs_file(hugetlbfs_dir, count * page)
    except OSError as exc:
        if exc.errno in (errno.ENOMEM, errno.ENOSPC, errno.EINVAL):
            raise _no_hugepages_error("hugepage map", exc.errno, count, page, read_meminfo(meminfo_path)) from exc
        raise KniMemoryError("hugepage map", exc.errno or 0, f"mmap of {count} hugepages failed: {exc}") from exc
    for offset in range(0, count * page, page):
        buffer[offset] = 0  # make sure every hugepage is faulted in before its physical address is read
    base = buffer_address(buffer)
    translator: IovaTranslator = VirtualIova()
    if iova_mode == IovaMode.PA:
        try:
            physical = PagemapReader(pagemap_path).physical_addresses(range(base, base + count * page, page))
        except KniMemoryError:
            buffer.close()
            raise
        translator = PhysicalIova(base, page, physical)
    return Arena(buffer, page, translator)


def anonymous_arena(size: int, segment_size: int = DEFAULT_SEGMENT_SIZE) -> Arena:
    """An IOVA=VA arena of ordinary pages: NOT physically contiguous, for tests and kernel-less loopback only."""
    length = _align_up(max(size, 1), segment_size)
    return Arena(mmap.mmap(-1, length, flags=mmap.MAP_SHARED), segment_size, VirtualIova())
