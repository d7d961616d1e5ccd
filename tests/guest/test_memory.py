# SPDX-License-Identifier: GPL-3.0-or-later
"""The KNI library's hugepage memory on a real kernel: reservation, both mapping paths, PA and VA."""

from __future__ import annotations

import errno
import os
from collections.abc import Iterator

import pytest
from ansible_collections.kernelnic.kni.plugins.module_utils._kni.abi import IovaMode, KniMemoryError
from ansible_collections.kernelnic.kni.plugins.module_utils._kni.memory import (
    PagemapReader,
    map_hugepages,
    read_meminfo,
)

HUGEPAGE = 2 * 1024 * 1024


def _set_hugepages(count: int) -> None:
    with open("/proc/sys/vm/nr_hugepages", "w", encoding="ascii") as handle:
        handle.write(str(count))


@pytest.fixture
def hugepages() -> Iterator[int]:
    _set_hugepages(8)
    assert read_meminfo()["HugePages_Free"] == 8
    yield 8
    _set_hugepages(0)


@pytest.mark.parametrize("via_hugetlbfs", [False, True], ids=["map_hugetlb", "hugetlbfs_file"])
def test_pa_mode_iova_is_the_physical_address(hugepages: int, via_hugetlbfs: bool) -> None:
    arena = map_hugepages(2 * HUGEPAGE, IovaMode.PA, hugetlbfs_dir="/dev/hugepages" if via_hugetlbfs else None)
    assert read_meminfo()["HugePages_Free"] == hugepages - 2
    zone = arena.reserve("fifo", 8208)
    assert zone.iova % arena.segment_size == 0  # first zone of the first hugepage
    assert zone.iova == PagemapReader().physical_address(zone.va)
    later = arena.reserve("beyond", HUGEPAGE - 8208)  # lands on the second hugepage
    assert later.iova == PagemapReader().physical_address(later.va)
    arena.free(zone)
    arena.free(later)
    arena.close()
    if via_hugetlbfs:
        assert not os.listdir("/dev/hugepages"), "the hugetlbfs file must not outlive the arena"


def test_va_mode_iova_is_the_virtual_address(hugepages: int) -> None:
    arena = map_hugepages(HUGEPAGE, IovaMode.VA)
    zone = arena.reserve("fifo", 8208)
    assert zone.iova == zone.va
    arena.free(zone)
    arena.close()


def test_too_few_hugepages_names_the_fix() -> None:
    _set_hugepages(0)
    with pytest.raises(KniMemoryError) as caught:
        map_hugepages(HUGEPAGE, IovaMode.PA)
    assert caught.value.errno == errno.ENOMEM
    assert "nr_hugepages" in str(caught.value)
