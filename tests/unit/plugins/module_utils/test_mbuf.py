# SPDX-License-Identifier: GPL-3.0-or-later
# Copyright: kernelnic.kni contributors
"""MbufPool: rte_mbuf-compatible headers, burst alloc/free, chains and address forms."""

from __future__ import annotations

import errno
import mmap
import random
import struct
from typing import Callable, List, Tuple

import pytest
from ansible_collections.kernelnic.kni.plugins.module_utils._kni.abi import (
    MBUF_NEXT_OFFSET,
    MBUF_SIZE,
    KniMbufError,
)
from ansible_collections.kernelnic.kni.plugins.module_utils._kni.mbuf import MAX_FREE_RUNS, MbufPool
from ansible_collections.kernelnic.kni.plugins.module_utils._kni.memory import (
    Arena,
    PhysicalIova,
    anonymous_arena,
    buffer_address,
)

SEGMENT = 2 * 1024 * 1024
PA_BASES = [0x7_0000_0000, 0x1_0000_0000, 0x3_0000_0000]


def pa_arena() -> Arena:
    buffer = mmap.mmap(-1, len(PA_BASES) * SEGMENT)
    return Arena(buffer, SEGMENT, PhysicalIova(buffer_address(buffer), SEGMENT, PA_BASES))


def test_headers_are_initialised_like_a_pktmbuf_pool() -> None:
    arena = anonymous_arena(4 * SEGMENT)
    pool = MbufPool(arena, "pool", 10)
    va = pool.alloc_burst(1)[0]
    header = pool.read_header(va)
    assert header.buf_addr == va + MBUF_SIZE == header.buf_iova
    assert (header.data_off, header.refcnt, header.nb_segs, header.port) == (128, 1, 1, 0xFFFF)
    assert (header.pkt_len, header.data_len, header.buf_len, header.next) == (0, 0, 2176, 0)
    assert pool.object_size == 2304 and va % 64 == 0
    assert pool.max_packet_size == 2048


def test_objects_never_straddle_a_segment() -> None:
    arena = anonymous_arena(4 * SEGMENT)
    pool = MbufPool(arena, "pool", 2000)  # 910 objects per 2 MiB chunk: three chunks
    vas = pool.alloc_burst(2000)
    assert len(vas) == len(set(vas)) == 2000
    for va in vas:
        offset = va - arena.base_va
        assert offset // SEGMENT == (offset + pool.object_size - 1) // SEGMENT


def test_burst_alloc_and_free_accounting() -> None:
    pool = MbufPool(anonymous_arena(SEGMENT), "pool", 64)
    first = pool.alloc_burst(40)
    assert (len(first), pool.available, pool.in_use) == (40, 24, 40)
    assert len(pool.alloc_burst(40)) == 24  # only what is left
    assert pool.alloc_burst(1) == [] and pool.alloc_burst(0) == []
    pool.free_burst(first)
    assert pool.available == 40
    assert sorted(pool.alloc_burst(40)) == sorted(first)


def test_free_rejects_foreign_pointers() -> None:
    pool = MbufPool(anonymous_arena(SEGMENT), "pool", 4)
    mine = pool.alloc_burst(1)[0]
    with pytest.raises(KniMbufError) as caught:
        pool.free_burst([mine, mine + 8])
    assert caught.value.errno == errno.EFAULT
    assert pool.available == 4  # the genuine one was still freed


def test_write_and_read_packets() -> None:
    pool = MbufPool(anonymous_arena(SEGMENT), "pool", 8)
    payloads = [b"\x01" * 60, b"hello", b""]
    vas = pool.write_packets(payloads)
    assert pool.read_packets(vas) == payloads
    header = pool.read_header(vas[1])
    assert (header.pkt_len, header.data_len, header.nb_segs, header.data_off) == (5, 5, 1, 128)
    with pytest.raises(KniMbufError) as caught:
        pool.write_packet(vas[0], bytes(2049))
    assert caught.value.errno == errno.EMSGSIZE


def test_chains_round_trip_and_reset_on_free() -> None:
    pool = MbufPool(anonymous_arena(SEGMENT), "pool", 8)
    payload = bytes(range(256)) * 20  # 5120 bytes
    head = pool.write_chain(payload, segment_size=2000)
    segments = pool.segments(head)
    assert len(segments) == 3 and pool.available == 5
    header = pool.read_header(head)
    assert (header.nb_segs, header.pkt_len, header.data_len, header.next) == (3, 5120, 2000, segments[1])
    assert pool.read_header(segments[1]).next == segments[2]
    assert pool.read_header(segments[2]).next == 0
    assert pool.read_packet(head) == payload
    pool.free_burst([head])
    assert pool.available == 8
    for va in segments:
        reset = pool.read_header(va)
        assert (reset.nb_segs, reset.next) == (1, 0)


def test_chain_needs_enough_mbufs() -> None:
    pool = MbufPool(anonymous_arena(SEGMENT), "pool", 2)
    with pytest.raises(KniMbufError) as caught:
        pool.write_chain(bytes(5000))
    assert caught.value.errno == errno.ENOBUFS
    assert pool.available == 2


def test_va_mode_pa_form_is_identity() -> None:
    pool = MbufPool(anonymous_arena(SEGMENT), "pool", 4)
    vas = pool.alloc_burst(4)
    assert pool.to_pa_form(vas) == vas
    assert pool.from_pa_form(vas) == vas


def test_pa_mode_pa_form_and_chain_next_translation() -> None:
    arena = pa_arena()
    pool = MbufPool(arena, "pool", 1000)  # spans two chunks with unrelated physical bases
    vas = pool.alloc_burst(1000)
    for va in (vas[0], vas[-1]):
        header = pool.read_header(va)
        # va2pa(m) = m - (buf_addr - buf_iova) must be the header's physical address.
        assert va - (header.buf_addr - header.buf_iova) == arena.iova(va)
    assert pool.to_pa_form(vas[:2]) == [arena.iova(vas[0]), arena.iova(vas[1])]
    pool.free_burst(vas)

    head = pool.write_chain(bytes(3000), segment_size=1500)
    tail = pool.segments(head)[1]
    assert pool.to_pa_form([head]) == [arena.iova(head)]
    raw_next = struct.unpack_from("<Q", arena.view, head - arena.base_va + MBUF_NEXT_OFFSET)[0]
    assert raw_next == arena.iova(tail)  # rewritten for the kernel
    assert pool.from_pa_form([arena.iova(head)]) == [head]
    with pytest.raises(KniMbufError):
        pool.from_pa_form([123])
    assert pool.from_pa_form([123, arena.iova(head)], strict=False) == [head]
    pool.free_burst([head])  # the Python-side chain record frees the tail even with next in PA form
    assert pool.available == 1000


def test_close_returns_memory() -> None:
    arena = anonymous_arena(SEGMENT)
    pool = MbufPool(arena, "pool", 900)
    pool.close()
    MbufPool(arena, "pool", 900)  # same names, same room


def test_pool_argument_checks() -> None:
    arena = anonymous_arena(SEGMENT)
    with pytest.raises(KniMbufError, match="count must be positive"):
        MbufPool(arena, "p", 0)
    with pytest.raises(KniMbufError, match="headroom"):
        MbufPool(arena, "p", 1, data_room=64, headroom=64)
    with pytest.raises(KniMbufError, match="exceeds a segment"):
        MbufPool(anonymous_arena(2048, segment_size=2048), "p", 1)


def test_double_free_is_caught() -> None:
    pool = MbufPool(anonymous_arena(SEGMENT), "pool", 4)
    first, second = pool.alloc_burst(2)
    pool.free_burst([first])
    with pytest.raises(KniMbufError, match="already free") as caught:
        pool.free_burst([first])
    assert caught.value.errno == errno.EINVAL
    with pytest.raises(KniMbufError, match="twice in one burst"):
        pool.free_burst([second, second])
    assert pool.available == 4 and pool.in_use == 0
    assert len(set(pool.alloc_burst(4))) == 4


def test_double_frees_within_stretches_are_caught() -> None:
    """A burst that is a stretch of the cyclic order is checked a stretch at a time, wrapping around included."""
    pool = MbufPool(anonymous_arena(SEGMENT), "pool", 64)
    pool.free_burst(pool.alloc_burst(50))
    stretch = pool.alloc_burst(30)  # the last 14 of the order, then its first 16
    assert pool.cycle_position(stretch) == 50
    pool.free_burst(stretch)
    with pytest.raises(KniMbufError, match="already free"):
        pool.free_burst(stretch)
    assert (pool.available, pool.in_use) == (64, 0)
    stretch = pool.alloc_burst(20)
    pool.free_burst(stretch[7:8])
    with pytest.raises(KniMbufError, match=hex(stretch[7])):
        pool.free_burst(stretch)  # the other 19 are still freed
    assert (pool.available, pool.in_use) == (64, 0)
    assert len(set(pool.alloc_burst(64))) == 64
    fresh = MbufPool(anonymous_arena(SEGMENT), "fresh", 16)
    everything = fresh.alloc_burst(16)
    assert fresh.cycle_position(everything) == 0
    with pytest.raises(KniMbufError, match="twice in one burst"):
        fresh.free_burst(everything + everything)  # matches the doubled order, but holds each mbuf twice
    assert (fresh.available, fresh.in_use) == (16, 0)


def test_owns_all_checks_stretches_and_scattered_addresses() -> None:
    """Stretches of the cyclic order take one list comparison; anything else the per-address check. Both refuse
    strangers."""
    arena = anonymous_arena(8 * SEGMENT)
    pool = MbufPool(arena, "pool", 2000)  # more than one chunk: a 2 MiB segment holds fewer than 1000 objects
    other = MbufPool(arena, "other", 8)
    vas = pool.alloc_burst(2000)
    assert vas == sorted(vas)  # the cyclic order starts in address order
    size = pool.object_size
    assert pool.owns_all(vas[10:50]) and pool.owns_all(vas[50:10:-1]) and pool.owns_all(vas[::7])
    chunk_end = next(index for index in range(1, len(vas)) if vas[index] - vas[index - 1] != size)
    assert pool.owns_all(vas[chunk_end - 3 : chunk_end + 3])  # a stretch across two chunks
    across = list(range(vas[chunk_end - 3], vas[chunk_end - 3] + 6 * size, size))  # runs past the chunk's end
    assert not pool.owns_all(across)
    assert not pool.owns_all([va + 64 for va in vas[10:20]])  # not on an object boundary
    assert not pool.owns_all(vas[10:20] + other.alloc_burst(1))
    assert not pool.owns_all(list(range(vas[0] - 4 * size, vas[0] + 4 * size, size)))  # starts before the pool


def test_mbufs_circulate_in_a_cyclic_order_that_stretches_split_into_runs() -> None:
    arena = anonymous_arena(8 * SEGMENT)
    pool = MbufPool(arena, "pool", 2000)
    order = pool.alloc_burst(2000)
    pool.free_burst(order[:1500])
    pool.free_burst(order[1500:])
    again = pool.alloc_burst(1990)
    assert again == order[:1990]  # first in, first out
    pool.free_burst(again)
    wrapped = pool.alloc_burst(30)  # the last 10 of the order, then its first 20
    assert wrapped == order[1990:] + order[:20]
    position = pool.cycle_position(wrapped)
    assert position == 1990
    assert pool.cycle_position(wrapped[::-1]) == -1 and pool.cycle_position(order[:5] + order[6:9]) == -1
    runs = pool.stretches(position, len(wrapped))
    assert runs == [(order[1990], 10), (order[0], 20)]
    chunk_end = next(index for index in range(1, 2000) if order[index] - order[index - 1] != pool.object_size)
    assert pool.stretches(chunk_end - 2, 5) == [(order[chunk_end - 2], 2), (order[chunk_end], 3)]
    for first, count in runs + pool.stretches(chunk_end - 2, 5):  # each run: neighbours, one object apart
        start = order.index(first)
        assert order[start : start + count] == list(range(first, first + count * pool.object_size, pool.object_size))


def test_an_mbuf_freed_out_of_turn_does_not_break_up_later_bursts() -> None:
    """Two flows share the pool: most mbufs circulate in bursts, a few wait elsewhere (alloc_q) and come back at
    another time. A free list would carry such an mbuf on among the others and break up bursts for good."""
    pool = MbufPool(anonymous_arena(SEGMENT), "pool", 64)
    parked = pool.alloc_burst(8)
    in_flight, stretch = [], []
    for index in range(40):
        burst = pool.alloc_burst(12)
        stretch.append(pool.cycle_position(burst) >= 0)
        in_flight.append(burst)
        if len(in_flight) > 2:
            pool.free_burst(in_flight.pop(0))
        if index in (5, 9):
            pool.free_burst(parked[index - 2 : index - 1])  # one mbuf back out of turn
    assert len(stretch) - sum(stretch) <= 4 and all(stretch[-20:])
    assert pool.available == 64 - 6 - 24


def test_alloc_gathers_scattered_free_mbufs() -> None:
    pool = MbufPool(anonymous_arena(SEGMENT), "pool", 64)
    order = pool.alloc_burst(64)
    pool.free_burst(order[::2])  # no two free mbufs are neighbours
    burst = pool.alloc_burst(40)
    assert len(burst) == 32 and sorted(burst) == sorted(order[::2]) and pool.available == 0
    pool.free_burst(burst[5:9])
    assert pool.alloc_burst(9) == sorted(burst[5:9])  # fewer when the pool runs low
    pool.free_burst(order[1:2])
    with pytest.raises(KniMbufError, match="already free"):
        pool.free_burst(order[1:2])


def test_random_alloc_and_free_never_hand_out_an_mbuf_twice() -> None:
    """Bursts of random sizes freed in random pieces and orders, with some double frees: the pool's count of free
    mbufs stays exact and no mbuf is ever out twice."""
    rng = random.Random(7)
    pool = MbufPool(anonymous_arena(SEGMENT), "pool", 200)
    out: List[int] = []
    for _round in range(2000):
        if rng.random() < 0.5:
            burst = pool.alloc_burst(rng.randint(1, 80))
            assert not set(burst) & set(out) and len(set(burst)) == len(burst)
            out += burst
        elif out:
            start = rng.randrange(len(out))
            piece = out[start : start + rng.randint(1, 60)]
            del out[start : start + len(piece)]
            if rng.random() < 0.3:
                rng.shuffle(piece)
            pool.free_burst(piece)
            if rng.random() < 0.05:
                with pytest.raises(KniMbufError):
                    pool.free_burst(piece[:1])
        assert pool.available == 200 - len(out) and pool.in_use == len(out)


def test_a_burst_joining_stretches_is_freed_a_stretch_at_a_time(monkeypatch: pytest.MonkeyPatch) -> None:
    """free_q often returns two alloc bursts at once that had held mbufs between them; the double-free checks
    hold across the stretches too."""
    pool = MbufPool(anonymous_arena(SEGMENT), "pool", 64)
    first, kept, second = pool.alloc_burst(20), pool.alloc_burst(4), pool.alloc_burst(30)
    pool.free_burst(pool.alloc_burst(pool.available))
    wrapping = pool.alloc_burst(16)  # the order's last 10 mbufs, then its first 6 (freed above)
    assert pool.cycle_position(first + second) < 0
    with monkeypatch.context() as patched:
        patched.setattr(MbufPool, "_release_scattered", lambda *_args: pytest.fail("per-mbuf path taken"))
        pool.free_burst(first[6:] + second + wrapping)
    assert pool.available == 64 - 6 - 4
    for burst, message in (
        (first[:6] + first[2:3], "twice in one burst"),  # across two stretches
        (first[:6] + second[:1], "already free"),
        ([*first[:6], 0x1000], "does not own"),
    ):
        with pytest.raises(KniMbufError, match=message):
            pool.free_burst(burst)
        pool.free_burst(pool.alloc_burst(pool.available))  # (errors still free the valid ones: start again)
        first[:6] = pool.alloc_burst(6)
    assert kept[0] not in pool.alloc_burst(pool.available)


def naive_runs(pool: MbufPool, heads: List[int]) -> List[Tuple[int, int]]:
    """The stretches of ``heads``, found one mbuf at a time."""
    order = [pool.cycle_position([va]) for va in heads]
    runs: List[Tuple[int, int]] = []
    for index, position in enumerate(order):
        if index and position == (order[index - 1] + 1) % pool.count and runs[-1][1] < pool.count:
            runs[-1] = (runs[-1][0], runs[-1][1] + 1)
        else:
            runs.append((position, 1))
    return runs


def test_the_stretches_of_a_burst_are_found_even_where_the_order_leaves_and_comes_back() -> None:
    """``_runs`` guesses each stretch's end from single lookups: a burst that leaves the order and comes back to
    it must not fool it into taking the mbufs in between as a stretch."""
    pool = MbufPool(anonymous_arena(SEGMENT), "pool", 64)
    order = pool._cycle  # pylint: disable=protected-access
    fooling = order[0:5] + order[40:41] + order[6:10]  # the 10th mbuf is where a stretch of 10 would put it
    assert pool._runs(fooling) == [(0, 5), (40, 1), (6, 4)]  # pylint: disable=protected-access
    rng = random.Random(7)
    for _trial in range(300):
        heads: List[int] = []
        for _piece in range(rng.randint(1, 5)):
            start, length = rng.randrange(64), rng.randint(1, 40)
            heads += order[start : start + length]
            if rng.random() < 0.3:
                heads.append(order[rng.randrange(64)])  # a stray mbuf, perhaps back in the order right after
        expected = naive_runs(pool, heads)
        runs = pool._runs(heads)  # pylint: disable=protected-access
        assert runs == (expected if len(expected) <= MAX_FREE_RUNS else None), heads


def packed(entries: List[int]) -> bytes:
    return struct.pack(f"<{len(entries)}Q", *entries)


@pytest.mark.parametrize("make_arena", [lambda: anonymous_arena(4 * SEGMENT), pa_arena], ids=["iova-va", "iova-pa"])
def test_the_packed_pa_form_is_the_pa_form_packed(make_arena: Callable[[], Arena]) -> None:
    """rx_q and alloc_q take bursts as bytes: a stretch is a slice of the packed order, anything else is packed
    entry by entry, and a chain's next pointers are rewritten as to_pa_form does."""
    pool = MbufPool(make_arena(), "pool", 1200)  # two chunks
    order = pool._cycle  # pylint: disable=protected-access
    for heads in (order[:5], order[1190:1205], order[900:1000], [order[7], order[3]], []):
        assert pool.to_pa_form_packed(heads) == packed(pool.to_pa_form(heads))
    head = pool.write_chain(bytes(3000), segment_size=1500)
    tail = pool.segments(head)[1]
    expected_entry, expected_next = pool.to_pa_form([head])[0], pool.to_pa_form([tail])[0]
    # back to the VA form, as write_chain left it
    pool._link([head], [tail])  # pylint: disable=protected-access
    assert pool.to_pa_form_packed([head]) == packed([expected_entry])
    assert pool.read_header(head).next == expected_next  # in IOVA=PA mode, rewritten to the PA form


def test_freeing_packed_heads_checks_like_free_burst() -> None:
    """free_q's bytes are freed at once when they are a stretch; anything else goes through free_burst's checks."""
    pool = MbufPool(anonymous_arena(SEGMENT), "pool", 64)
    stretch = pool.alloc_burst(30)
    assert pool.free_packed(packed(stretch[:10])) == 10 and pool.available == 44
    with pytest.raises(KniMbufError, match="already free"):
        pool.free_packed(packed(stretch[:10]))  # a stretch again: the flags catch it
    with pytest.raises(KniMbufError, match="does not own"):
        pool.free_packed(packed([0x1000, *stretch[10:12]]))
    assert pool.available == 46  # (the valid ones were freed)
    assert pool.free_packed(packed(stretch[20:] + stretch[12:14])) == 12  # two stretches
    assert pool.free_packed(b"") == 0
    with pytest.raises(KniMbufError, match="not whole 8-byte heads"):
        pool.free_packed(b"\x00" * 12)
    head = pool.write_chain(bytes(5000), segment_size=2000)  # three segments
    rest = pool.alloc_burst(pool.available)
    assert pool.free_packed(packed([head])) == 1
    assert pool.available == 3  # the chain's tail came back with its head
    pool.free_packed(packed(rest + stretch[14:20]))
    assert pool.available == 64 and pool.in_use == 0


def test_packed_bursts_of_several_stretches_are_freed_from_their_bytes(monkeypatch: pytest.MonkeyPatch) -> None:
    """free_packed finds the stretches in the bytes themselves, even where the burst leaves the order and comes
    back to it, and never needs the general path for a burst of mbufs that were out of the pool."""
    pool = MbufPool(anonymous_arena(SEGMENT), "pool", 64)
    order = pool._cycle  # pylint: disable=protected-access
    monkeypatch.setattr(MbufPool, "free_burst", lambda *_args: pytest.fail("general path taken"))
    fooling = [*order[0:5], order[40], *order[6:10]]  # the 10th head is where a stretch of 10 would put it
    rng = random.Random(11)
    bursts = [fooling]
    for _trial in range(200):
        cuts = sorted(rng.sample(range(1, 64), 5))
        pieces = [range(start, end) for start, end in zip([0, *cuts], [*cuts, 64])]
        rng.shuffle(pieces)
        turn = rng.randrange(64)  # stretches across the order's wrap-around too
        bursts.append([order[(position + turn) % 64] for piece in pieces[: rng.randint(1, 6)] for position in piece])
    pool.alloc_burst(64)
    for heads in bursts:
        assert pool.free_packed(packed(heads)) == len(heads)
        assert pool.in_use == 64 - len(heads)
        assert sorted(pool.alloc_burst(64)) == sorted(heads)


def test_alloc_same_says_whether_every_mbuf_still_holds_the_content() -> None:
    pool = MbufPool(anonymous_arena(SEGMENT), "pool", 64)
    order = pool.alloc_burst(64)
    pool.free_burst(order)  # the next alloc starts at the order's start again

    def alloc_and_free(count: int, content: bytes) -> Tuple[List[int], bool]:
        vas, unchanged = pool.alloc_same(count, content)
        pool.free_burst(vas)
        return vas, unchanged

    assert alloc_and_free(40, b"A") == (order[:40], False)  # nothing was written yet
    assert alloc_and_free(24, b"A") == (order[40:], False)
    assert alloc_and_free(40, b"A") == (order[:40], True)
    assert alloc_and_free(48, b"A") == (order[40:] + order[:24], True)  # across the wrap-around
    assert alloc_and_free(16, b"B") == (order[24:40], False)  # another content: none holds it
    assert alloc_and_free(64, b"A") == (order[40:] + order[:40], False)  # all held A, but that was forgotten
    assert alloc_and_free(64, b"A") == (order[40:] + order[:40], True)
    assert alloc_and_free(0, b"A") == ([], False)


def test_any_other_alloc_forgets_that_an_mbuf_held_the_content() -> None:
    """alloc_burst hands out mbufs to be written (by us, or by the kernel on egress): the next alloc_same of them
    must say so, whether alloc_burst took one run or gathered scattered mbufs."""
    pool = MbufPool(anonymous_arena(SEGMENT), "pool", 64)
    marked, _unchanged = pool.alloc_same(64, b"A")
    pool.free_burst(marked)
    pool.free_burst(pool.alloc_burst(1))  # mbuf 0; the next alloc starts at 1
    assert pool.alloc_same(64, b"A") == (marked[1:] + marked[:1], False)
    pool.free_burst(marked[::2])
    assert sorted(pool.alloc_burst(32)) == sorted(marked[::2])  # gathered from scattered mbufs
    pool.free_burst(marked)
    vas, unchanged = pool.alloc_same(64, b"A")
    assert sorted(vas) == sorted(marked) and not unchanged
    pool.free_burst(vas)
    assert pool.alloc_same(64, b"A")[1]


def test_alloc_same_gathered_from_scattered_mbufs() -> None:
    """With no run of free neighbours long enough, the burst is gathered mbuf by mbuf, and its marks still count."""
    pool = MbufPool(anonymous_arena(SEGMENT), "pool", 64)
    marked, _unchanged = pool.alloc_same(64, b"A")
    evens = marked[::2]
    pool.free_burst(evens)
    vas, unchanged = pool.alloc_same(32, b"A")
    assert sorted(vas) == sorted(evens) and unchanged
    pool.free_burst(evens)
    assert sorted(pool.alloc_burst(2)) == sorted(marked[:3:2])  # gathered too; now to be written
    pool.free_burst(marked[:3:2])
    vas, unchanged = pool.alloc_same(32, b"A")
    assert sorted(vas) == sorted(evens) and not unchanged
    pool.free_burst(evens)
    vas, unchanged = pool.alloc_same(32, b"A")
    assert sorted(vas) == sorted(evens) and unchanged
