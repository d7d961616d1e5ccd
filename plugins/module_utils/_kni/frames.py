# SPDX-License-Identifier: GPL-3.0-or-later
# Copyright: kernelnic.kni contributors
"""Frames in and out of a pool's mbufs: ``MbufFrames`` copies them between mbufs and other buffers in bursts."""

from __future__ import annotations

import struct
from array import array
from typing import Dict, List, Optional, Sequence, Tuple

from ansible_collections.kernelnic.kni.plugins.module_utils._kni.abi import (
    MBUF_DATA_LEN_OFFSET,
    MBUF_HEADER_TAIL,
    MBUF_LENGTHS,
    MBUF_PKT_LEN_OFFSET,
    MBUF_SIZE,
)
from ansible_collections.kernelnic.kni.plugins.module_utils._kni.mbuf import MbufPool

COLUMN_FRAME_MAX = 96  # fill_same writes frames up to this long column by column (see MbufFrames)


class MbufFrames:
    """Copies frames between a pool's mbufs and other buffers.

    Relies on the pool's invariant that a free mbuf is one segment with ``data_off`` at the headroom, and on the
    kernel writing only ``pkt_len``/``data_len`` on egress (docs/kni-abi.md §3.3): data of any mbuf we hold starts at
    ``va + MBUF_SIZE + headroom``.

    Ingress writes each frame with a single ``pack_into``, from ``pkt_len`` to the frame's last byte: the two
    lengths, the rest of the header exactly as a free mbuf has it (one pre-packed constant), zeros over the
    headroom, then the frame. One C call per frame instead of a copy plus a length write; the struct for each
    frame length is compiled once. Frames longer than the mbuf's data room are never written (the caller drops
    them): a longer copy would run into the next mbuf.

    ``fill_same`` (the null backend's traffic source) writes a frame of up to COLUMN_FRAME_MAX bytes into a run of
    neighbouring mbufs column by column instead: one strided memoryview assignment per length field and per
    8-byte word of the frame, each covering every mbuf of the run. The header's other fields are left as the pool's
    invariant keeps them. Under TCG that costs 40 % less than a ``pack_into`` per mbuf for a 64-byte frame, the
    same at 128 bytes, more above. A burst whose mbufs all still hold the frame (``MbufPool.alloc_same``) is not
    written at all: the steady state of a source, as its mbufs come back from free_q untouched.
    """

    def __init__(self, pool: MbufPool) -> None:
        arena = pool.arena
        self.pool = pool
        self.view = arena.view
        self.base = arena.base_va
        self.data_start = MBUF_SIZE + pool.headroom
        self.max_frame = pool.max_packet_size
        self._words = arena.view.cast("H")
        self._header_tail = MBUF_HEADER_TAIL.pack(0, b"", 0, pool.data_room, 0, 0)
        self._writers: Dict[int, struct.Struct] = {}
        self._write_at = MBUF_PKT_LEN_OFFSET - self.base
        self._longs = arena.view.cast("I")
        self._quads = arena.view.cast("Q")
        self._columns: Tuple[bytes, Tuple[int, ...]] = (b"", ())  # the last frame fill_same wrote, as 8-byte words
        # Columns need every field and the data start at a multiple of its size from each object's start.
        aligned = (self.data_start % 8, pool.object_size % 8) == (0, 0)
        self._column_frame_max = min(COLUMN_FRAME_MAX, self.max_frame - 7) if aligned else -1

    def lengths(self, vas: Sequence[int], position: Optional[int] = None) -> List[int]:
        """``data_len`` of each single-segment mbuf (what the kernel wrote on egress).

        A burst is usually a stretch of the pool's cyclic order (see ``MbufPool``): then one strided slice per run
        of neighbours reads every length. ``position`` is ``pool.cycle_position(vas)`` when the caller has it."""
        if not vas:
            return []
        words, shift = self._words, MBUF_DATA_LEN_OFFSET - self.base
        if position is None:
            position = self.pool.cycle_position(vas)
        if position < 0:
            return [words[(va + shift) >> 1] for va in vas]
        stride = self.pool.object_size >> 1
        lengths: List[int] = []
        for first, count in self.pool.stretches(position, len(vas)):
            start = (first + shift) >> 1
            lengths += words[start : start + count * stride : stride].tolist()
        return lengths

    def copy_out(self, vas: Sequence[int], lengths: Sequence[int], target: memoryview, offsets: Sequence[int]) -> None:
        view, shift = self.view, self.data_start - self.base
        for va, length, offset in zip(vas, lengths, offsets):
            source = va + shift
            target[offset : offset + length] = view[source : source + length]

    def writer(self, length: int) -> struct.Struct:
        """The ``pack_into`` format that writes one ``length``-byte frame (see the class comment)."""
        writer = self._writers.get(length)
        if writer is None:
            if not 0 <= length <= self.max_frame:
                raise ValueError(f"a {length}-byte frame does not fit a {self.max_frame}-byte mbuf")
            gap = MBUF_SIZE - MBUF_PKT_LEN_OFFSET - MBUF_LENGTHS.size - MBUF_HEADER_TAIL.size + self.pool.headroom
            writer = self._writers[length] = struct.Struct(f"<IH{MBUF_HEADER_TAIL.size}s{gap}x{length}s")
        return writer

    def fill_frames(self, frames: Sequence[bytes], lengths: Sequence[int]) -> List[int]:
        """New mbufs holding the first ``lengths[i]`` bytes of ``frames[i]``; fewer if the pool runs short.

        Every length must be at most ``max_frame``."""
        vas = self.pool.alloc_burst(len(frames))
        view, at, tail = self.view, self._write_at, self._header_tail
        writers, writer = self._writers.get, self.writer
        for va, frame, length in zip(vas, frames, lengths):
            (writers(length) or writer(length)).pack_into(view, va + at, length, length, tail, frame)
        return vas

    def fill_same(self, frame: bytes, count: int) -> List[int]:
        """Up to ``count`` new mbufs each holding ``frame`` (a traffic source).

        Mbufs that still hold ``frame`` from an earlier call (the pool knows: ``alloc_same``) are not written
        again, as a DPDK null device leaves its mbufs' data alone."""
        writer = self.writer(len(frame))  # (first: refuses a frame longer than the mbuf before anything is taken)
        vas, unchanged = self.pool.alloc_same(count, frame)
        if unchanged:
            return vas
        if len(frame) <= self._column_frame_max and vas:
            position = self.pool.cycle_position(vas)
            if position >= 0:
                for first, run in self.pool.stretches(position, len(vas)):
                    self._fill_columns(first, run, frame)
                return vas
        view, at, tail, length, pack_into = self.view, self._write_at, self._header_tail, len(frame), writer.pack_into
        for va in vas:
            pack_into(view, va + at, length, length, tail, frame)
        return vas

    def _fill_columns(self, first: int, count: int, frame: bytes) -> None:
        """Write ``frame`` into ``count`` neighbouring mbufs from ``first``, a column (one field, or one 8-byte word
        of the frame, in every mbuf) at a time."""
        if self._columns[0] != frame:
            padded = frame + bytes(-len(frame) % 8)  # (up to 7 bytes past the frame: inside the data room)
            self._columns = (frame, struct.unpack(f"<{len(padded) // 8}Q", padded))
        stride, offset, length = self.pool.object_size, first - self.base, len(frame)
        start = (offset + MBUF_PKT_LEN_OFFSET) // 4
        self._longs[start : start + count * stride // 4 : stride // 4] = array("I", [length]) * count
        start = (offset + MBUF_DATA_LEN_OFFSET) // 2
        self._words[start : start + count * stride // 2 : stride // 2] = array("H", [length]) * count
        quads, step = self._quads, stride // 8
        start = (offset + self.data_start) // 8
        for index, word in enumerate(self._columns[1], start):
            quads[index : index + count * step : step] = array("Q", [word]) * count

    def fill(self, source: memoryview, offsets: Sequence[int], lengths: Sequence[int]) -> List[int]:
        """New mbufs holding the frames at ``source[offset:offset+length]``; fewer if the pool runs short.

        Every length must be at most ``max_frame``."""
        frames = [source[offset : offset + length].tobytes() for offset, length in zip(offsets, lengths)]
        return self.fill_frames(frames, lengths)

    def release(self) -> None:
        self._words.release()
        self._longs.release()
        self._quads.release()
