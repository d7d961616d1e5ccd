# SPDX-License-Identifier: GPL-3.0-or-later
# Copyright: kernelnic.kni contributors
"""MbufFrames' one-pack_into ingress writes, and the afpacket receive path's choice between them (fake ring)."""

from __future__ import annotations

from typing import List, Optional, Tuple

import pytest
from ansible_collections.kernelnic.kni.plugins.module_utils._kni.abi import MBUF_SIZE
from ansible_collections.kernelnic.kni.plugins.module_utils._kni.frames import MbufFrames
from ansible_collections.kernelnic.kni.plugins.module_utils._kni.mbuf import MbufPool
from ansible_collections.kernelnic.kni.plugins.module_utils._kni.memory import anonymous_arena
from ansible_collections.kernelnic.kni.plugins.module_utils._pump.afpacket import RxBurst
from ansible_collections.kernelnic.kni.plugins.module_utils._pump.backends import AfPacketBackend

FRAMES = [bytes([n]) * length for n, length in enumerate((60, 64, 61, 1514, 2048, 14, 0))]


@pytest.fixture
def pool() -> MbufPool:
    return MbufPool(anonymous_arena(8 << 20), "pool", 64)


def raw(pool: MbufPool, va: int) -> bytes:
    """The whole object of one mbuf (header, headroom, data room)."""
    offset = va - pool.arena.base_va
    return pool.arena.view[offset : offset + pool.object_size].tobytes()


def assert_like_write_packet(pool: MbufPool, vas: List[int], frames: List[bytes]) -> None:
    """Each mbuf reads back like one written with MbufPool.write_packet, the reference encoder."""
    reference = MbufPool(anonymous_arena(8 << 20), "reference", len(frames))
    expected = reference.write_packets(frames)
    for va, want, frame in zip(vas, expected, frames):
        got_header, want_header = pool.read_header(va), reference.read_header(want)
        assert got_header._replace(buf_addr=0, buf_iova=0) == want_header._replace(buf_addr=0, buf_iova=0)
        assert got_header.buf_addr == va + MBUF_SIZE
        assert pool.read_packet(va) == frame


def test_fill_frames_writes_what_write_packet_writes(pool: MbufPool) -> None:
    frames = MbufFrames(pool)
    padded = [frame + b"\xee" * 37 for frame in FRAMES]  # gathered slots carry bytes past the frame
    vas = frames.fill_frames(padded, [len(frame) for frame in FRAMES])
    assert_like_write_packet(pool, vas, FRAMES)


def test_fill_from_a_buffer_and_fill_same(pool: MbufPool) -> None:
    frames = MbufFrames(pool)
    source = memoryview(b"".join(FRAMES))
    offsets, position = [], 0
    for frame in FRAMES:
        offsets.append(position)
        position += len(frame)
    vas = frames.fill(source, offsets, [len(frame) for frame in FRAMES])
    assert_like_write_packet(pool, vas, FRAMES)
    same = frames.fill_same(FRAMES[3], 5)
    assert_like_write_packet(pool, same, [FRAMES[3]] * 5)


def test_writes_stay_inside_their_mbuf(pool: MbufPool) -> None:
    frames = MbufFrames(pool)
    vas = pool.alloc_burst(pool.available)
    pool.free_burst(vas[1:2])  # the only free mbuf, between two in use
    neighbours = {va: raw(pool, va) for va in (vas[0], vas[2])}
    (written,) = frames.fill_frames([b"\xff" * 2048], [2048])
    assert written == vas[1]
    assert {va: raw(pool, va) for va in neighbours} == neighbours


def test_a_frame_longer_than_the_data_room_is_refused(pool: MbufPool) -> None:
    frames = MbufFrames(pool)
    with pytest.raises(ValueError, match="2049-byte frame does not fit a 2048-byte mbuf"):
        frames.fill_frames([bytes(2049)], [2049])


class FakeRing:
    """The PacketRing surface AfPacketBackend.receive uses, over a bytearray of 256-byte frames."""

    frame_size = 256 * 16

    def __init__(self, frames: List[bytes], macs: List[int], lengths: Optional[List[int]] = None) -> None:
        self.rx_view = memoryview(bytearray(self.frame_size * len(frames)))
        self.offsets = []
        for index, (frame, mac) in enumerate(zip(frames, macs)):
            start = index * self.frame_size + mac
            self.rx_view[start : start + len(frame)] = frame
            self.offsets.append(start)
        self.lengths = lengths if lengths is not None else [len(frame) for frame in frames]
        self.macs = macs
        self.released: List[RxBurst] = []
        self.gathered = 0

    def rx_peek(self, max_count: int) -> RxBurst:
        mac = self.macs[0] if len(set(self.macs)) == 1 else -1
        return RxBurst(0, len(self.offsets), list(self.offsets), list(self.lengths), [], mac)

    def rx_frames(self, burst: RxBurst) -> Optional[Tuple[bytes, ...]]:
        if burst.mac < 0:
            return None
        self.gathered += 1
        return tuple(self.rx_view[offset : offset + self.frame_size - burst.mac].tobytes() for offset in burst.offsets)

    def rx_release(self, burst: RxBurst) -> None:
        self.released.append(burst)


def receiving_backend(pool: MbufPool, ring: FakeRing) -> AfPacketBackend:
    backend = AfPacketBackend.__new__(AfPacketBackend)
    backend.pool, backend.frames, backend.ring, backend.admin_up = pool, MbufFrames(pool), ring, True
    return backend


@pytest.mark.parametrize("macs", [[66] * 4, [66, 82, 66, 66]], ids=["gathered", "copied"])
def test_receive_takes_every_frame_that_fits(pool: MbufPool, macs: List[int]) -> None:
    frames = [bytes([n]) * (60 + 300 * n) for n in range(4)]
    ring = FakeRing(frames, macs)
    vas, received_bytes, dropped = receiving_backend(pool, ring).receive(32)
    assert [pool.read_packet(va) for va in vas] == frames
    assert (received_bytes, dropped, len(ring.released)) == (sum(map(len, frames)), 0, 1)
    assert ring.gathered == (1 if len(set(macs)) == 1 else 0)


@pytest.mark.parametrize("truncated", [False, True], ids=["oversized only", "and a truncated one"])
def test_receive_drops_frames_longer_than_an_mbuf(pool: MbufPool, truncated: bool) -> None:
    frames = [b"\x01" * 60, b"\x02" * 3000, b"\x03" * 70, b"\x04" * 100]
    lengths = [60, 3000, 70, -1 if truncated else 100]  # -1: the ring truncated the frame
    ring = FakeRing(frames, [66] * 4, lengths=lengths)
    available = pool.available
    vas, received_bytes, dropped = receiving_backend(pool, ring).receive(32)
    kept = [frames[0], frames[2]] + ([] if truncated else [frames[3]])
    assert [pool.read_packet(va) for va in vas] == kept
    assert (received_bytes, dropped) == (sum(map(len, kept)), 4 - len(kept))
    assert pool.available == available - len(kept)


@pytest.mark.parametrize("order", ["stretch", "wrapping stretch", "descending", "shuffled", "short"])
def test_lengths_of_stretches_and_of_scattered_mbufs(pool: MbufPool, order: str) -> None:
    """Stretches of the pool's cyclic order take strided reads, others the per-mbuf one: both give every data_len."""
    frames = MbufFrames(pool)
    vas = pool.alloc_burst(pool.available)
    if order == "wrapping stretch":
        pool.free_burst(vas)
        pool.free_burst(pool.alloc_burst(len(vas) - 12))
        vas = pool.alloc_burst(40)  # the last 12 mbufs of the order, then its first 28
        assert pool.cycle_position(vas) >= 0 and len(pool.stretches(pool.cycle_position(vas), 40)) == 2
    elif order == "descending":
        vas = vas[33:3:-1]
    elif order == "shuffled":
        vas = vas[1:40:3] + vas[:40:3]
    elif order == "short":
        vas = vas[5:7]
    else:
        vas = vas[2:38]
    written = {va: 60 + index * 7 for index, va in enumerate(vas)}
    for va, length in written.items():
        pool.write_packet(va, bytes(length))
    assert frames.lengths(vas) == [written[va] for va in vas]


@pytest.mark.parametrize("length", [0, 1, 7, 8, 60, 64, 95, 96, 97, 1514])
def test_fill_same_writes_runs_of_mbufs_like_write_packet(length: int) -> None:
    """Short frames go column by column over runs of neighbours: across the pool's wrap-around and from one
    memzone chunk to the next too; every mbuf reads back as write_packet would have made it, and the mbufs around
    a run keep every byte."""
    pool = MbufPool(anonymous_arena(8 << 20), "pool", 1000)  # 910 mbufs per 2 MiB chunk: two chunks
    frames = MbufFrames(pool)
    frame = bytes(range(256))[:length]
    kept = pool.alloc_burst(880)  # the next fill starts at 880 and crosses the chunk's end at 910
    for va in kept[:3] + kept[-3:]:
        pool.write_packet(va, b"\xab" * 100)
    before = {va: raw(pool, va) for va in kept}
    vas = frames.fill_same(frame, 100)
    assert_like_write_packet(pool, vas, [frame] * 100)
    assert {va: raw(pool, va) for va in kept} == before
    pool.free_burst(kept[:60])
    wrapped = frames.fill_same(frame[::-1], 80)  # the order's last 20 mbufs, then its first 60
    assert pool.cycle_position(wrapped) == 980
    assert_like_write_packet(pool, wrapped, [frame[::-1]] * 80)
    pool.free_burst(vas + wrapped)
    scattered = pool.alloc_burst(pool.available)
    pool.free_burst(scattered[::2])
    assert_like_write_packet(pool, frames.fill_same(frame, 5), [frame] * 5)  # not one run: mbuf by mbuf


@pytest.mark.parametrize("length", [64, 1514])
def test_fill_same_writes_only_bursts_with_mbufs_that_do_not_hold_the_frame(length: int) -> None:
    """A burst of mbufs that all come back untouched keeps the frame and is not written again; a burst with any
    that were handed out for something else in between (another frame, egress) is written whole."""
    pool = MbufPool(anonymous_arena(8 << 20), "pool", 64)
    frames = MbufFrames(pool)
    frame = (bytes(range(256)) * 6)[:length]

    def poison(vas: List[int]) -> None:
        """Change the data behind the pool's back: shows whether fill_same writes these mbufs."""
        for va in vas:
            offset = va - pool.arena.base_va + frames.data_start
            pool.arena.view[offset : offset + 4] = b"\xff\xff\xff\xff"

    vas = frames.fill_same(frame, 64)
    assert_like_write_packet(pool, vas, [frame] * 64)
    pool.free_burst(vas)
    other = pool.alloc_burst(8)  # the order's first 8 mbufs, written with something else (as egress would be)
    for va in other:
        pool.write_packet(va, b"\xab" * 100)
    pool.free_burst(other)
    poison(vas[8:16])
    pool.free_burst(pool.alloc_burst(56))  # the next alloc starts at the order's start again
    again = frames.fill_same(frame, 64)
    assert again == vas
    assert_like_write_packet(pool, again, [frame] * 64)
    pool.free_burst(again)
    poison(vas[8:16])
    assert frames.fill_same(frame, 64) == vas
    assert pool.read_packet(vas[8]) == b"\xff" * 4 + frame[4:]  # every mbuf held the frame: none written
    assert_like_write_packet(pool, vas[16:], [frame] * 48)
    pool.free_burst(vas)
    assert_like_write_packet(pool, frames.fill_same(frame[::-1], 64), [frame[::-1]] * 64)
