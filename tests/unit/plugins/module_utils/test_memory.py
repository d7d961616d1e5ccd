# SPDX-License-Identifier: GPL-3.0-or-later
# Copyright: kernelnic.kni contributors
"""Arena, memzones, IOVA translation and pagemap parsing, without hugepages or privileges."""

from __future__ import annotations

import errno
import mmap
import struct
from pathlib import Path

import pytest
from ansible_collections.kernelnic.kni.plugins.module_utils._kni.abi import IovaMode, KniMemoryError
from ansible_collections.kernelnic.kni.plugins.module_utils._kni.memory import (
    Arena,
    PagemapReader,
    PhysicalIova,
    VirtualIova,
    anonymous_arena,
    buffer_address,
    hugepage_size,
    map_hugepages,
    read_meminfo,
)

SEGMENT = 64 * 1024
PRESENT = 1 << 63

MEMINFO_NO_HUGEPAGES = """MemTotal:        8000000 kB
HugePages_Total:       0
HugePages_Free:        0
HugePages_Rsvd:        0
Hugepagesize:       2048 kB
"""


def write_pagemap(path: Path, entries: dict[int, int], pages: int = 16) -> Path:
    path.write_bytes(b"".join(struct.pack("<Q", entries.get(page, 0)) for page in range(pages)))
    return path


def test_read_meminfo_converts_kb(tmp_path: Path) -> None:
    meminfo = tmp_path / "meminfo"
    meminfo.write_text(MEMINFO_NO_HUGEPAGES)
    values = read_meminfo(str(meminfo))
    assert values["Hugepagesize"] == 2 * 1024 * 1024
    assert values["HugePages_Free"] == 0
    assert hugepage_size(values) == 2 * 1024 * 1024
    with pytest.raises(KniMemoryError, match="no hugepage support"):
        hugepage_size({})


def test_map_hugepages_explains_missing_reservation(tmp_path: Path) -> None:
    meminfo = tmp_path / "meminfo"
    meminfo.write_text(MEMINFO_NO_HUGEPAGES)
    with pytest.raises(KniMemoryError) as caught:
        map_hugepages(5 * 1024 * 1024, meminfo_path=str(meminfo))
    error = caught.value
    assert (error.step, error.errno) == ("hugepage map", errno.ENOMEM)
    assert "need 3 hugepages of 2048 kB but HugePages_Free is 0" in str(error)
    assert "vm.nr_hugepages=3" in str(error)


def test_pagemap_translates_present_pages(tmp_path: Path) -> None:
    pagemap = write_pagemap(tmp_path / "pagemap", {2: PRESENT | 0x1234, 3: PRESENT | (1 << 55) | 0x99})
    reader = PagemapReader(str(pagemap), page_size=4096)
    assert reader.physical_address(2 * 4096 + 0x10) == 0x1234 * 4096 + 0x10
    assert reader.physical_addresses([3 * 4096]) == [0x99 * 4096]  # soft-dirty bit 55 is not part of the PFN


def test_pagemap_zero_pfn_means_missing_capability(tmp_path: Path) -> None:
    reader = PagemapReader(str(write_pagemap(tmp_path / "pagemap", {1: PRESENT})), page_size=4096)
    with pytest.raises(KniMemoryError) as caught:
        reader.physical_address(4096)
    assert caught.value.errno == errno.EPERM
    assert "CAP_SYS_ADMIN" in str(caught.value)


def test_pagemap_absent_swapped_and_short(tmp_path: Path) -> None:
    reader = PagemapReader(str(write_pagemap(tmp_path / "pagemap", {1: 1 << 62}, pages=2)), page_size=4096)
    with pytest.raises(KniMemoryError, match="not resident"):
        reader.physical_address(0)
    with pytest.raises(KniMemoryError, match="swapped out"):
        reader.physical_address(4096)
    with pytest.raises(KniMemoryError, match="short read"):
        reader.physical_address(5 * 4096)
    with pytest.raises(KniMemoryError) as caught:
        PagemapReader(str(tmp_path / "missing")).physical_address(0)
    assert (caught.value.step, caught.value.errno) == ("pagemap open", errno.ENOENT)


def test_real_pagemap_gives_an_address_or_a_clear_error() -> None:
    buffer = mmap.mmap(-1, mmap.PAGESIZE)
    buffer[0] = 1
    try:
        address = PagemapReader().physical_address(buffer_address(buffer))
    except KniMemoryError as error:
        assert error.errno == errno.EPERM  # unprivileged: zeroed PFNs
    else:
        assert address > 0 and address % mmap.PAGESIZE == 0
    finally:
        buffer.close()


def test_physical_iova_per_segment() -> None:
    translator = PhysicalIova(0x10000, SEGMENT, [0x900000, 0x100000])
    assert translator.mode == IovaMode.PA
    assert translator.iova(0x10000 + 5) == 0x900005
    assert translator.iova(0x10000 + SEGMENT + 7) == 0x100007
    with pytest.raises(KniMemoryError, match="outside the arena"):
        translator.iova(0x10000 + 2 * SEGMENT)
    assert VirtualIova().iova(1234) == 1234 and VirtualIova.mode == IovaMode.VA


def test_memzones_are_aligned_zeroed_and_within_one_segment() -> None:
    buffer = mmap.mmap(-1, 4 * SEGMENT)  # page aligned, like hugepages
    buffer.write(b"\xff" * (4 * SEGMENT))
    arena = Arena(buffer, SEGMENT, VirtualIova())
    first = arena.reserve("a", 100)
    second = arena.reserve("b", 8208)
    assert first.va % 64 == 0 and second.va % 64 == 0
    assert second.offset == 128  # 100 rounded up to the next cache line
    unaligned = Arena(bytearray(2 * SEGMENT), SEGMENT, VirtualIova())
    assert unaligned.reserve("u", 1).va % 64 == 0 and unaligned.reserve("v", 1).va % 64 == 0
    assert bytes(second.view) == bytes(8208)
    big = arena.reserve("c", SEGMENT - 64)  # does not fit in segment 0 any more: starts segment 1
    assert big.offset == SEGMENT
    assert arena.memzone("b") is second
    for zone in (first, second, big):
        assert zone.offset // SEGMENT == (zone.offset + zone.size - 1) // SEGMENT


def test_reserve_errors() -> None:
    arena = anonymous_arena(2 * SEGMENT, segment_size=SEGMENT)
    arena.reserve("x", 10)
    with pytest.raises(KniMemoryError) as caught:
        arena.reserve("x", 10)
    assert caught.value.errno == errno.EEXIST
    with pytest.raises(KniMemoryError, match="between 1 and the segment size"):
        arena.reserve("huge", SEGMENT + 1)
    arena.reserve("y", SEGMENT)
    with pytest.raises(KniMemoryError) as caught:
        arena.reserve("z", SEGMENT)
    assert caught.value.errno == errno.ENOMEM
    with pytest.raises(KniMemoryError, match="segment size"):
        Arena(bytearray(1000), SEGMENT, VirtualIova())


def test_free_coalesces_and_space_is_reused() -> None:
    arena = anonymous_arena(SEGMENT, segment_size=SEGMENT)
    zones = [arena.reserve(f"z{index}", SEGMENT // 4) for index in range(4)]
    for zone in zones[1:3]:
        arena.free(zone)
    middle = arena.reserve("middle", SEGMENT // 2)
    assert middle.offset == SEGMENT // 4
    with pytest.raises(KniMemoryError) as caught:
        arena.free(zones[1])
    assert caught.value.errno == errno.ENOENT
    for zone in (zones[0], middle, zones[3]):
        arena.free(zone)
    assert arena.reserve("all", SEGMENT).offset == 0
    arena.close()


def test_pa_arena_gives_memzones_physical_iovas() -> None:
    buffer = bytearray(2 * SEGMENT)
    base = buffer_address(buffer)
    arena = Arena(buffer, SEGMENT, PhysicalIova(base, SEGMENT, [0x4000_0000, 0x1000_0000]))
    assert arena.iova_mode == IovaMode.PA
    arena.reserve("pad", SEGMENT - 100)
    zone = arena.reserve("fifo", 8208)  # cannot straddle: moves to segment 1
    assert zone.iova == 0x1000_0000
    assert arena.contains(zone.va, zone.size) and not arena.contains(base + 2 * SEGMENT)


def test_close_refuses_while_views_are_alive() -> None:
    arena = anonymous_arena(SEGMENT, segment_size=SEGMENT)
    zone = arena.reserve("z", 64)
    leaked = zone.view[:8]
    with pytest.raises(KniMemoryError) as caught:
        arena.close()
    assert (caught.value.step, caught.value.errno) == ("arena close", errno.EBUSY)
    leaked.release()
    arena.close()
