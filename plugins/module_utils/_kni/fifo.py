# SPDX-License-Identifier: GPL-3.0-or-later
# Copyright: kernelnic.kni contributors
"""Single-producer/single-consumer KNI FIFO (``struct rte_kni_fifo``) over shared memory.

Layout and algorithm per docs/kni-abi.md §2.2: a 16-byte header (write, read, len, elem_size) and ``len`` 64-bit slots;
indices are kept masked to ``len - 1``; one slot always stays empty, so capacity is ``len - 1``.

Memory ordering. The kernel side uses acquire loads of the peer's index and release stores of its own. CPython has
no barriers, but on x86-64 (TSO) stores become visible in program order and loads are not reordered with other
loads, so "copy the entries, then store the index" (producer) and "load the index, then copy the entries"
(consumer) give the same guarantees. Other architectures would need real barriers (ctypes or a C helper).

The index store must be a single aligned 4-byte store: ``struct.pack_into`` zeroes the target bytes before writing
them, so a concurrent reader could briefly see index 0 (docs/kni-abi.md §9). Indices therefore go through a memoryview
cast to ``'I'`` (CPython stores one ``unsigned int`` with one fixed-size memcpy, a single ``mov`` on x86-64).

Each burst costs one ``struct.pack_into`` (put) or one memoryview slice copy (get), two when it wraps around the
end of the slots, plus two index accesses: never one operation per entry. Writing entries with ``pack_into`` is safe
because nothing reads them before the index store that follows publishes them.

``put_packed``/``get_packed`` move the entries as bytes (8-byte little-endian words, the slots' own form), for
callers that never need them as Python ints: a guest under TCG spends about 0.3 us per entry converting between
the two, which is most of what a 512-entry get or put costs.
"""

from __future__ import annotations

import mmap
import struct
from typing import Dict, Sequence, Tuple, Union

from ansible_collections.kernelnic.kni.plugins.module_utils._kni.abi import (
    FIFO_BUFFER_OFFSET,
    FIFO_COUNT_MAX,
    FIFO_ELEM_SIZE_OFFSET,
    FIFO_HEADER_SIZE,
    FIFO_LEN_OFFSET,
    FIFO_READ_OFFSET,
    FIFO_WRITE_OFFSET,
    POINTER_SIZE,
    KniFifoError,
)

WritableBuffer = Union[bytearray, memoryview, mmap.mmap]

_WRITE = FIFO_WRITE_OFFSET // 4
_READ = FIFO_READ_OFFSET // 4
_LEN = FIFO_LEN_OFFSET // 4
_ELEM_SIZE = FIFO_ELEM_SIZE_OFFSET // 4


def fifo_area_size(length: int = FIFO_COUNT_MAX) -> int:
    """Bytes needed for a FIFO with ``length`` slots."""
    return FIFO_HEADER_SIZE + length * POINTER_SIZE


_PACKERS: Dict[int, struct.Struct] = {}


def _packer(count: int) -> struct.Struct:
    """A compiled ``<countQ`` struct; cached because compiling one costs more than packing a small burst."""
    packer = _PACKERS.get(count)
    if packer is None:
        packer = _PACKERS[count] = struct.Struct(f"<{count}Q")
    return packer


def _check_length(length: int) -> None:
    if length < 2 or length & (length - 1):
        raise KniFifoError("fifo init", 0, f"FIFO length {length} is not a power of two >= 2")


class KniFifo:
    """One KNI FIFO. Use ``put`` only on FIFOs this process produces and ``get`` only on ones it consumes."""

    __slots__ = ("_bytes", "_header", "_mask", "_size", "_slots")

    def __init__(self, area: WritableBuffer, length: int) -> None:
        """Attach to an already initialised FIFO of ``length`` slots; see ``initialise`` and ``attach``."""
        _check_length(length)
        view = memoryview(area)
        needed = fifo_area_size(length)
        if view.nbytes < needed:
            raise KniFifoError("fifo attach", 0, f"area of {view.nbytes} bytes is smaller than {needed} bytes")
        view = view.cast("B")
        self._bytes = view[:needed]
        self._header = view[:FIFO_HEADER_SIZE].cast("I")
        self._slots = view[FIFO_BUFFER_OFFSET:needed].cast("Q")
        self._size = length
        self._mask = length - 1

    @classmethod
    def initialise(cls, area: WritableBuffer, length: int = FIFO_COUNT_MAX) -> KniFifo:
        """Set up an empty FIFO in ``area`` (userspace's job: the kernel never initialises one)."""
        _check_length(length)
        fifo = cls(area, length)
        header = fifo._header
        header[_WRITE] = 0
        header[_READ] = 0
        header[_ELEM_SIZE] = POINTER_SIZE
        header[_LEN] = length
        return fifo

    @classmethod
    def attach(cls, area: WritableBuffer) -> KniFifo:
        """Attach to a FIFO someone else initialised, taking ``len`` from its header."""
        view = memoryview(area).cast("B")
        if view.nbytes < FIFO_HEADER_SIZE:
            raise KniFifoError("fifo attach", 0, f"area of {view.nbytes} bytes has no room for a FIFO header")
        return cls(area, view[:FIFO_HEADER_SIZE].cast("I")[_LEN])

    @property
    def length(self) -> int:
        """Number of slots; capacity is one less."""
        return self._size

    @property
    def capacity(self) -> int:
        return self._mask

    def count(self) -> int:
        """Entries waiting to be read."""
        header = self._header
        return (header[_WRITE] - header[_READ]) & self._mask

    def free_count(self) -> int:
        """Entries that can be written now."""
        header = self._header
        return (header[_READ] - header[_WRITE] - 1) & self._mask

    def put(self, values: Sequence[int]) -> int:
        """Append as many of ``values`` as fit; return how many were written (the caller keeps the rest)."""
        write, count = self._room(len(values))
        if count <= 0:
            return 0
        first = min(count, self._size - write)
        offset = FIFO_BUFFER_OFFSET + write * POINTER_SIZE
        if first == len(values):
            _packer(first).pack_into(self._bytes, offset, *values)
        else:
            _packer(first).pack_into(self._bytes, offset, *values[:first])
            if count > first:
                _packer(count - first).pack_into(self._bytes, FIFO_BUFFER_OFFSET, *values[first:count])
        self._header[_WRITE] = (write + count) & self._mask  # publish after the entries: the "release" store
        return count

    def put_packed(self, packed: bytes) -> int:
        """``put`` for entries already packed as 8-byte little-endian words."""
        if len(packed) % POINTER_SIZE:
            raise KniFifoError("fifo put", 0, f"{len(packed)} bytes are not whole {POINTER_SIZE}-byte entries")
        write, count = self._room(len(packed) // POINTER_SIZE)
        if count <= 0:
            return 0
        first = min(count, self._size - write) * POINTER_SIZE
        offset = FIFO_BUFFER_OFFSET + write * POINTER_SIZE
        self._bytes[offset : offset + first] = packed[:first]
        if count * POINTER_SIZE > first:
            self._bytes[FIFO_BUFFER_OFFSET : FIFO_BUFFER_OFFSET + count * POINTER_SIZE - first] = packed[
                first : count * POINTER_SIZE
            ]
        self._header[_WRITE] = (write + count) & self._mask  # publish after the entries: the "release" store
        return count

    def _room(self, wanted: int) -> Tuple[int, int]:
        """(slot to write next, how many of ``wanted`` entries fit)."""
        header = self._header
        mask = self._mask
        write = header[_WRITE] & mask  # masked like the kernel does: a corrupt index picks a wrong slot, no more
        read = header[_READ] & mask  # peer's index: the "acquire" load
        return write, min(wanted, (read - write - 1) & mask)

    def get(self, max_count: int = FIFO_COUNT_MAX) -> list[int]:
        """Remove and return up to ``max_count`` entries, oldest first."""
        read, count = self._waiting(max_count)
        if count <= 0:
            return []
        first = min(count, self._size - read)
        slots = self._slots
        entries = slots[read : read + first].tolist()
        if count > first:
            entries += slots[: count - first].tolist()
        self._header[_READ] = (read + count) & self._mask  # release the slots only after copying them out
        return entries

    def get_packed(self, max_count: int = FIFO_COUNT_MAX) -> bytes:
        """``get`` returning the entries as 8-byte little-endian words."""
        read, count = self._waiting(max_count)
        if count <= 0:
            return b""
        first = min(count, self._size - read)
        start = FIFO_BUFFER_OFFSET + read * POINTER_SIZE
        packed = self._bytes[start : start + first * POINTER_SIZE].tobytes()
        if count > first:
            packed += self._bytes[FIFO_BUFFER_OFFSET : FIFO_BUFFER_OFFSET + (count - first) * POINTER_SIZE].tobytes()
        self._header[_READ] = (read + count) & self._mask  # release the slots only after copying them out
        return packed

    def _waiting(self, max_count: int) -> Tuple[int, int]:
        """(slot to read next, how many entries to take: up to ``max_count``)."""
        header = self._header
        mask = self._mask
        read = header[_READ] & mask
        write = header[_WRITE] & mask  # peer's index: the "acquire" load
        return read, min(max_count, (write - read) & mask)

    def release(self) -> None:
        """Drop the views so the underlying mmap can be closed."""
        self._slots.release()
        self._header.release()
        self._bytes.release()
