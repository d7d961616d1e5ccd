# SPDX-License-Identifier: GPL-3.0-or-later
# Copyright: kernelnic.kni contributors
"""KniFifo over plain memory, checked against an independent struct-based model of the kernel side."""

from __future__ import annotations

import mmap
import struct
import threading
import time

import pytest
from ansible_collections.kernelnic.kni.plugins.module_utils._kni.abi import FIFO_AREA_SIZE, KniFifoError
from ansible_collections.kernelnic.kni.plugins.module_utils._kni.fifo import KniFifo, fifo_area_size


class KernelSide:
    """What kni_fifo.h does, written directly against the byte layout (one entry at a time, like the C code)."""

    def __init__(self, area: bytearray) -> None:
        self.area = area

    def header(self) -> tuple[int, int, int, int]:
        return struct.unpack_from("<IIII", self.area, 0)

    def put(self, values: list[int]) -> int:
        write, read, length, _unused = self.header()
        done = 0
        for value in values:
            new_write = (write + 1) & (length - 1)
            if new_write == read:
                break
            struct.pack_into("<Q", self.area, 16 + 8 * write, value)
            write = new_write
            done += 1
        struct.pack_into("<I", self.area, 0, write)
        return done

    def get(self, count: int) -> list[int]:
        write, read, length, _unused = self.header()
        out = []
        while len(out) < count and read != write:
            out.append(struct.unpack_from("<Q", self.area, 16 + 8 * read)[0])
            read = (read + 1) & (length - 1)
        struct.pack_into("<I", self.area, 4, read)
        return out


def make_fifo(length: int = 1024) -> tuple[bytearray, KniFifo]:
    area = bytearray(fifo_area_size(length))
    return area, KniFifo.initialise(area, length)


def test_initialise_writes_the_header() -> None:
    area, fifo = make_fifo()
    assert struct.unpack_from("<IIII", area) == (0, 0, 1024, 8)
    assert fifo_area_size() == FIFO_AREA_SIZE
    assert (fifo.length, fifo.capacity, fifo.count(), fifo.free_count()) == (1024, 1023, 0, 1023)


@pytest.mark.parametrize("length", [0, 1, 3, 1000])
def test_length_must_be_a_power_of_two(length: int) -> None:
    with pytest.raises(KniFifoError, match="power of two"):
        KniFifo.initialise(bytearray(fifo_area_size(max(length, 2))), length)


def test_area_too_small() -> None:
    with pytest.raises(KniFifoError, match="smaller than 8208"):
        KniFifo.initialise(bytearray(8207))


def test_attach_takes_len_from_the_header() -> None:
    area, _unused = make_fifo(64)
    assert KniFifo.attach(area).length == 64
    with pytest.raises(KniFifoError):
        KniFifo.attach(bytearray(8))


def test_put_is_limited_to_capacity() -> None:
    _unused, fifo = make_fifo(8)
    assert fifo.put(list(range(100, 120))) == 7
    assert fifo.put([1]) == 0
    assert fifo.get(100) == list(range(100, 107))
    assert fifo.get() == []


def test_wraparound_keeps_order_and_masked_indices() -> None:
    area, fifo = make_fifo(8)
    fifo.put([1, 2, 3, 4, 5])
    assert fifo.get(4) == [1, 2, 3, 4]
    assert fifo.put([6, 7, 8, 9, 10, 11]) == 6  # crosses the end of the slot array
    assert struct.unpack_from("<II", area) == (3, 4)
    assert fifo.count() == 7 and fifo.free_count() == 0
    assert fifo.get(3) == [5, 6, 7]
    assert fifo.get(10) == [8, 9, 10, 11]


def test_64_bit_entries_survive() -> None:
    _unused, fifo = make_fifo(4)
    values = [0xFFFF_FFFF_FFFF_FFFF, 0x7F00_DEAD_BEEF_0040, 0]
    fifo.put(values)
    assert fifo.get() == values


def test_interoperates_with_the_kernel_algorithm() -> None:
    area, user = make_fifo(16)
    kernel = KernelSide(area)
    received: list[int] = []
    sent = 0
    for burst in range(200):
        sent += user.put(list(range(sent, sent + burst % 13)))
        received += kernel.get(burst % 7 + 1)
    received += kernel.get(100)
    assert received == list(range(sent))

    back: list[int] = []
    produced = 0
    for burst in range(200):
        produced += kernel.put(list(range(produced, produced + burst % 11)))
        back += user.get(burst % 5 + 1)
    back += user.get()
    assert back == list(range(produced))


def packed(values: list[int]) -> bytes:
    return struct.pack(f"<{len(values)}Q", *values)


def test_packed_entries_interoperate_with_the_kernel_algorithm_across_the_wrap() -> None:
    """put_packed/get_packed move the slots' own bytes: what the kernel side sees is the same as with put/get,
    wrap-around and a full FIFO included."""
    area, user = make_fifo(16)
    kernel = KernelSide(area)
    received: list[int] = []
    sent = 0
    for burst in range(200):
        sent += user.put_packed(packed(list(range(sent, sent + burst % 19))))
        received += kernel.get(burst % 7 + 1)
    received += kernel.get(100)
    assert received == list(range(sent)) and sent > 200

    back = b""
    produced = 0
    for burst in range(200):
        produced += kernel.put(list(range(produced, produced + burst % 11)))
        back += user.get_packed(burst % 5 + 1)
    back += user.get_packed()
    assert back == packed(list(range(produced)))
    assert user.get_packed() == b""


def test_put_packed_takes_what_fits_and_whole_entries_only() -> None:
    _unused, fifo = make_fifo(8)
    assert fifo.put_packed(packed(list(range(100, 110)))) == 7
    assert fifo.put_packed(packed([1])) == 0
    assert fifo.get() == list(range(100, 107))
    with pytest.raises(KniFifoError, match="not whole 8-byte entries"):
        fifo.put_packed(b"\x01" * 12)
    assert fifo.count() == 0


def test_works_on_mmap_and_releases_it() -> None:
    area = mmap.mmap(-1, FIFO_AREA_SIZE)
    fifo = KniFifo.initialise(area)
    fifo.put([7])
    assert fifo.get() == [7]
    fifo.release()
    area.close()  # BufferError here would mean a view was leaked


def test_two_threads_spsc_stress() -> None:
    area, producer = make_fifo(64)
    consumer = KniFifo.attach(area)  # same memory, separate views
    total = 20_000
    received: list[int] = []

    def consume() -> None:
        while len(received) < total:
            got = consumer.get(17)
            if got:
                received.extend(got)
            else:
                time.sleep(0)  # let the producer run instead of spinning out the GIL interval

    thread = threading.Thread(target=consume)
    thread.start()
    sent = 0
    while sent < total:
        put = producer.put(list(range(sent, min(total, sent + 23))))
        sent += put
        if not put:
            time.sleep(0)
    thread.join(timeout=30)
    assert received == list(range(total))


def test_corrupt_indices_are_masked() -> None:
    area, fifo = make_fifo(8)
    struct.pack_into("<II", area, 0, 8 + 2, 0xFFFF_FFF8)  # write 10 -> 2, read -> 0
    assert fifo.count() == 2
    assert fifo.get() == [0, 0]
    assert fifo.put([5]) == 1
