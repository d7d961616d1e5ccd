# SPDX-License-Identifier: GPL-3.0-or-later
# Copyright: kernelnic.kni contributors
"""A pool of ``rte_mbuf``-compatible packet buffers in the KNI arena.

Each object is a 128-byte mbuf header followed by its data buffer, in one memzone "chunk" that never crosses a
hugepage, so header and buffer share one VA-to-IOVA offset: that is what the kernel's ``pa2va`` and librte_kni's
``va2pa`` assume (docs/kni-abi.md §3.5). Mbufs are named by the virtual address of their header, which is what travels
through the FIFOs (in "PA form" on rx_q/alloc_q, see ``to_pa_form``).

Hot path: one flag per mbuf says whether it is out of the pool (which also catches double and foreign frees). Alloc
finds a run of free neighbours with one ``bytearray.find`` and takes it with two slices; free clears a whole stretch
of flags at once. No per-mbuf Python or struct work.

The cyclic order is address order. Alloc searches for its run from where the last one ended (next fit), wrapping
around, so mbufs circulate in that order through alloc_q, tx_q and back (and likewise through rx_q and free_q), and a
burst the kernel returns is usually a stretch of it: ``cycle_position`` recognises one with a single list
comparison, and ``stretches`` splits it into runs of neighbouring mbufs that one strided memoryview operation can
read. Unlike a free list, this does not drift: an mbuf that comes back out of turn (from the other direction, or
dropped) rejoins its neighbours instead of travelling on among strangers and breaking up every later burst.

No per-mbuf struct work is needed because of an invariant: a free mbuf always has ``data_off = headroom``,
``nb_segs = 1`` and ``next = 0``. Every packet write sets those fields, only the (rare) chain path changes them, and
``free_burst`` resets a chain's segments before they go back. The kernel writes only ``pkt_len``/``data_len``
(egress) and chain ``next`` pointers (ingress), so it cannot break the invariant. Chains are tracked on the Python
side too, because the kernel may leave ``next`` in PA form when it drops a packet (docs/kni-abi.md §3.2).

Content marks: a traffic source that puts the same frame into every mbuf (the null backend's) takes them with
``alloc_same``, which marks them as holding that content and says whether all of them still did: then the source
need not write them again. An mbuf's data changes only after ``alloc_burst`` has handed it out (to be written by us,
or by the kernel as an alloc_q buffer for egress), and ``alloc_burst`` clears the marks of what it hands out, so a
mark is never stale.
"""

from __future__ import annotations

import errno
import struct
from typing import Dict, Iterable, List, NamedTuple, Optional, Sequence, Set, Tuple

from ansible_collections.kernelnic.kni.plugins.module_utils._kni.abi import (
    CACHE_LINE_SIZE,
    DEFAULT_DATA_ROOM,
    DEFAULT_HEADROOM,
    MBUF_DATA_OFF_OFFSET,
    MBUF_HEAD,
    MBUF_LENGTHS,
    MBUF_NB_SEGS_OFFSET,
    MBUF_NEXT_OFFSET,
    MBUF_PACKET_FIELDS,
    MBUF_PKT_LEN_OFFSET,
    MBUF_PORT_NONE,
    MBUF_SIZE,
    POINTER_SIZE,
    IovaMode,
    KniMbufError,
)
from ansible_collections.kernelnic.kni.plugins.module_utils._kni.memory import Arena, Memzone

MAX_FREE_RUNS = 16  # stretches a freed burst is split into before the per-mbuf path is cheaper


# Positions in MBUF_HEAD of vlan_tci, hash, vlan_tci_outer and pool, which this library does not use.
_HEAD_FIELDS_NOT_DECODED = (10, 11, 12, 14)


def _pack(entries: Sequence[int]) -> bytes:
    """FIFO words: 8-byte little-endian."""
    return struct.pack(f"<{len(entries)}Q", *entries)


class MbufHeader(NamedTuple):
    """The rte_mbuf fields this library and the kernel use, as read from shared memory."""

    buf_addr: int
    buf_iova: int
    data_off: int
    refcnt: int
    nb_segs: int
    port: int
    ol_flags: int
    packet_type: int
    pkt_len: int
    data_len: int
    buf_len: int
    next: int


class MbufPool:
    """Fixed set of mbufs carved from an arena; not thread-safe (one pump thread owns it)."""

    def __init__(
        self,
        arena: Arena,
        name: str,
        count: int,
        data_room: int = DEFAULT_DATA_ROOM,
        headroom: int = DEFAULT_HEADROOM,
    ) -> None:
        if count <= 0:
            raise KniMbufError("mbuf pool", errno.EINVAL, f"pool {name!r}: count must be positive, not {count}")
        if not 0 <= headroom < data_room <= 0xFFFF:
            raise KniMbufError(
                "mbuf pool", errno.EINVAL, f"pool {name!r}: need 0 <= headroom ({headroom}) < data_room ({data_room})"
            )
        self.arena = arena
        self.name = name
        self.count = count
        self.headroom = headroom
        self.data_room = data_room
        self.object_size = -(-(MBUF_SIZE + data_room) // CACHE_LINE_SIZE) * CACHE_LINE_SIZE
        per_chunk = arena.segment_size // self.object_size
        if per_chunk == 0:
            raise KniMbufError(
                "mbuf pool", errno.EINVAL, f"pool {name!r}: a {self.object_size}-byte object exceeds a segment"
            )
        self._view = arena.view
        self._base = arena.base_va
        self._chunks: List[Memzone] = []
        vas: List[int] = []
        chunk_ends: List[int] = []  # position in the cyclic order where each chunk's mbufs end
        try:
            for chunk_index in range(-(-count // per_chunk)):
                objects = min(per_chunk, count - len(vas))
                zone = arena.reserve(f"{name}_{chunk_index}", objects * self.object_size)
                self._chunks.append(zone)
                vas.extend(self._format_chunk(zone, objects))
                chunk_ends.append(len(vas))
        except Exception:
            self.close()
            raise
        self._owned = frozenset(vas)
        # The cyclic order (see the module comment): position of each mbuf, and the order twice over (a stretch may
        # wrap around).
        self._position = {va: position for position, va in enumerate(vas)}
        self._cycle = vas + vas
        self._cycle_packed = _pack(self._cycle)  # the same as FIFO words (free_q's form)
        self._chunk_ends = chunk_ends
        # 1 at the position of each mbuf out of the pool: what alloc searches, and what catches double frees (which
        # would hand one mbuf out twice)
        self._held = bytearray(count)
        self._available = count
        self._next_fit = 0  # where the next alloc starts looking
        self._ones = b"\x01" * count
        # 1 at the position of each mbuf that still holds _marked_content, as alloc_same handed it out last
        self._marks = bytearray(count)
        self._marked_content = b""
        self._zeros = bytes(count)
        self._chains: Dict[int, List[int]] = {}
        self._pa_form: Optional[Dict[int, int]] = None
        self._va_of_pa_form: Optional[Dict[int, int]] = None
        if arena.iova_mode == IovaMode.PA:
            # va2pa(m) = m - (buf_addr - buf_iova): the header's IOVA, since header and buffer share one segment.
            self._pa_form = {va: arena.iova(va) for va in vas}
            self._va_of_pa_form = {pa: va for va, pa in self._pa_form.items()}
        # the cyclic order in rx_q/alloc_q's form
        self._pa_cycle_packed = self._cycle_packed if self._pa_form is None else _pack(self.to_pa_form(self._cycle))

    def _format_chunk(self, zone: Memzone, objects: int) -> List[int]:
        vas = []
        for index in range(objects):
            offset = zone.offset + index * self.object_size
            va = self._base + offset
            buffer_va = va + MBUF_SIZE
            MBUF_HEAD.pack_into(
                self._view,
                offset,
                buffer_va,  # buf_addr
                self.arena.iova(buffer_va),  # buf_iova
                self.headroom,  # data_off
                1,  # refcnt
                1,  # nb_segs
                MBUF_PORT_NONE,
                0,  # ol_flags
                0,  # packet_type
                0,  # pkt_len
                0,  # data_len
                0,  # vlan_tci
                b"",  # hash
                0,  # vlan_tci_outer
                self.data_room,  # buf_len
                0,  # pool: meaningless outside DPDK, and the kernel ignores it
                0,  # next
            )
            vas.append(va)
        return vas

    # --- accounting ----------------------------------------------------------------------------------------------

    @property
    def available(self) -> int:
        return self._available

    @property
    def in_use(self) -> int:
        return self._held.count(1)

    @property
    def max_packet_size(self) -> int:
        """Largest single-segment packet: what the device's ``mbuf_size`` should be."""
        return self.data_room - self.headroom

    def owns(self, va: int) -> bool:
        return va in self._owned

    def cycle_position(self, vas: Sequence[int]) -> int:
        """Where ``vas`` (one or more) starts in the pool's cyclic order if it is a stretch of it, else -1."""
        position = self._position.get(vas[0], -1)
        if position < 0 or len(vas) > self.count or vas != self._cycle[position : position + len(vas)]:
            return -1  # (longer than the pool, it would hold an mbuf twice)
        return position

    def stretches(self, position: int, count: int) -> List[Tuple[int, int]]:
        """(first mbuf, number of mbufs) of each run of neighbouring mbufs, one object apart, that make up the
        ``count`` mbufs from ``position`` of the cyclic order: a stretch splits where a chunk ends or the order
        wraps around."""
        runs = []
        ends = self._chunk_ends
        while count > 0:
            position %= self.count
            end = next(end for end in ends if end > position)
            taken = min(count, end - position)
            runs.append((self._cycle[position], taken))
            position += taken
            count -= taken
        return runs

    def owns_all(self, vas: Sequence[int]) -> bool:
        """Every address is one of this pool's mbufs (a stretch of the cyclic order is recognised at once)."""
        return not vas or self.cycle_position(vas) >= 0 or self._owned.issuperset(vas)

    # --- burst alloc / free (hot path) ------------------------------------------------------------------------------

    def alloc_burst(self, count: int) -> List[int]:
        """Up to ``count`` free mbufs (fewer when the pool runs low), each a clean single segment.

        Usually one run of neighbours, the first free one at or after the previous burst's end (see the module
        comment); pieces of several runs when the free mbufs are that scattered."""
        return self._alloc(count, None)[0]

    def alloc_same(self, count: int, content: bytes) -> Tuple[List[int], bool]:
        """``alloc_burst`` for a writer that puts the same ``content`` into every mbuf it takes (a traffic source);
        also True when every mbuf handed out still holds it from its last ``alloc_same`` for that content, so the
        writer may leave them as they are. The mbufs count as holding it from now on: unless told they do, the
        caller must write it (see "Content marks" in the module comment)."""
        return self._alloc(count, content)

    def _alloc(self, count: int, content: Optional[bytes]) -> Tuple[List[int], bool]:
        count = min(count, self._available)
        if count <= 0:
            return [], False
        if content is not None and content != self._marked_content:  # no mbuf holds this one yet
            self._marks[:] = self._zeros
            self._marked_content = content
        held, zeros, position = self._held, self._zeros[:count], self._next_fit
        first = self.count - position  # mbufs before the order wraps around
        if first < count and held.endswith(zeros[:first]) and held.startswith(zeros[: count - first]):
            self._set_flags(position, count, self._ones)  # a run across the wrap: the flow goes on unbroken
        else:
            position = held.find(zeros, position)
            if position < 0:
                position = held.find(zeros)
            if position < 0:
                return self._alloc_pieces(count, content is not None)
            held[position : position + count] = self._ones[:count]
        self._next_fit = (position + count) % self.count
        self._available -= count
        vas, marks = self._cycle[position : position + count], self._marks
        if content is None:
            self._set_flags(position, count, zeros, marks)
            return vas, False
        unchanged = self._flags(position, count, marks) == self._ones[:count]
        if not unchanged:
            self._set_flags(position, count, self._ones, marks)
        return vas, unchanged

    def _alloc_pieces(self, count: int, marking: bool) -> Tuple[List[int], bool]:
        """``_alloc`` of ``count`` (<= available) free mbufs gathered run by run, from the next-fit position on."""
        held, marks, burst, position = self._held, self._marks, [], self._next_fit
        mark = self._ones if marking else self._zeros
        unchanged = marking
        while len(burst) < count:
            start = held.find(0, position)
            if start < 0:
                start = held.find(0)
                if start < 0:
                    break  # (cannot happen while ``available`` counts the free flags)
            end = held.find(1, start)
            end = min(self.count if end < 0 else end, start + count - len(burst))
            held[start:end] = self._ones[: end - start]
            unchanged = unchanged and marks[start:end] == mark[: end - start]
            marks[start:end] = mark[: end - start]
            burst += self._cycle[start:end]
            position = end % self.count
        self._next_fit = position
        self._available -= len(burst)
        return burst, unchanged

    def free_burst(self, heads: Sequence[int], position: Optional[int] = None) -> None:
        """Return packets (chain heads) to the pool, with all their segments; rejects foreign and double frees.

        ``position`` is ``cycle_position(heads)`` when the caller has it already."""
        if not heads:
            return
        error = None
        if position is None:
            position = self.cycle_position(heads)
        if position >= 0 and self._flags(position, len(heads)) == self._ones[: len(heads)]:
            self._set_flags(position, len(heads), self._zeros)  # the usual burst: one stretch (inline: hot path)
        else:
            runs = self._runs(heads) if position < 0 else None
            if runs is None or not self._take_back(runs):  # scattered, or foreign, already free or repeated mbufs
                heads, error = self._release_scattered(heads)
        chains = self._chains
        if chains and any(map(chains.__contains__, heads)):
            for head in heads:
                tail = chains.pop(head, None)
                if tail is not None:
                    self._reset_chain([head, *tail])
                    self._release_unchecked(tail)
                    self._available += len(tail)
        self._available += len(heads)
        if error is not None:
            raise error

    def free_packed(self, packed: bytes) -> int:
        """``free_burst`` for heads as free_q holds them (8-byte little-endian words); returns how many.

        A burst made of stretches of the cyclic order, with no chains in the pool (the usual case), is checked
        against the packed order and freed without turning its entries into ints (which costs more than all the
        rest under TCG)."""
        count, partial = divmod(len(packed), POINTER_SIZE)
        if partial:
            raise KniMbufError("mbuf free", errno.EINVAL, f"{len(packed)} bytes are not whole 8-byte heads")
        if not count:
            return 0
        if not self._chains:
            position = self._position.get(int.from_bytes(packed[:POINTER_SIZE], "little"), -1)
            start = position * POINTER_SIZE
            if position >= 0 and count <= self.count and packed == self._cycle_packed[start : start + len(packed)]:
                taken = self._flags(position, count) == self._ones[:count]  # the usual burst: one stretch
                if taken:
                    self._set_flags(position, count, self._zeros)
            else:
                runs = self._packed_runs(packed)
                taken = runs is not None and self._take_back(runs)
            if taken:
                self._available += count
                return count
        self.free_burst(list(struct.unpack(f"<{count}Q", packed)))  # chains to free too, or errors to report
        return count

    def _packed_runs(self, packed: bytes) -> Optional[List[Tuple[int, int]]]:
        """``_runs`` for packed heads: where each stretch ends is where the burst first differs from the packed
        order, found by XOR of the two as integers (a few C calls over the bytes, nothing per entry)."""
        runs: List[Tuple[int, int]] = []
        cycle, positions, size = self._cycle_packed, self._position, len(packed)
        start = 0
        while start < size:
            position = positions.get(int.from_bytes(packed[start : start + POINTER_SIZE], "little"))
            if position is None or len(runs) == MAX_FREE_RUNS:
                return None
            piece = packed[start : start + self.count * POINTER_SIZE]  # (a stretch is never longer than the pool)
            begin = position * POINTER_SIZE
            difference = int.from_bytes(piece, "little") ^ int.from_bytes(cycle[begin : begin + len(piece)], "little")
            # The lowest set bit of the difference is in the first head that is not where the stretch would have it.
            matching = (
                len(piece) // POINTER_SIZE
                if not difference
                else ((difference & -difference).bit_length() - 1) // (8 * POINTER_SIZE)
            )
            runs.append((position, matching))
            start += matching * POINTER_SIZE
        return runs

    def _runs(self, heads: Sequence[int]) -> Optional[List[Tuple[int, int]]]:
        """(position, count) of each stretch of the cyclic order that ``heads`` is made of, or None when it holds a
        foreign address or more than MAX_FREE_RUNS stretches.

        A free_q burst often joins two or three alloc bursts that had held mbufs between them. Bisection by single
        lookups (is the n-th head where a stretch would put it?) finds where each stretch probably ends, and one
        list comparison proves it. Only a burst that leaves the order and comes back to it (not seen from the
        kernel, which returns mbufs in the order it took them) takes the bisection by list comparisons."""
        runs: List[Tuple[int, int]] = []
        cycle, positions, count = self._cycle, self._position, self.count
        total, start = len(heads), 0
        while start < total:
            position = positions.get(heads[start])
            if position is None or len(runs) == MAX_FREE_RUNS:
                return None
            longest = min(total - start, count)
            if positions.get(heads[start + longest - 1]) == (position + longest - 1) % count:
                matching = longest
            else:  # the (matching)-th head is in place, the (longest)-th is not
                matching = 1
                while longest - matching > 1:
                    middle = (matching + longest) // 2
                    if positions.get(heads[start + middle - 1]) == (position + middle - 1) % count:
                        matching = middle
                    else:
                        longest = middle
            if heads[start : start + matching] != cycle[position : position + matching]:
                matching, longest = 1, matching  # the stretch broke off before the probes showed
                while longest - matching > 1:
                    middle = (matching + longest) // 2
                    if heads[start : start + middle] == cycle[position : position + middle]:
                        matching = middle
                    else:
                        longest = middle
            runs.append((position, matching))
            start += matching
        return runs

    def _take_back(self, runs: List[Tuple[int, int]]) -> bool:
        """Flag the mbufs of these stretches as back in the pool, if every one of them was out of it and no two
        stretches share one; False (nothing changed) otherwise. (A burst of one stretch is checked inline by the
        callers: a method call per round costs ~15 us under TCG.)"""
        if not self._all_held(runs):
            return False
        for position, count in runs:
            self._set_flags(position, count, self._zeros)
        return True

    def _all_held(self, runs: List[Tuple[int, int]]) -> bool:
        """Every mbuf of these stretches is out of the pool, and no two stretches share one."""
        ordered = sorted(runs)
        followers = [position for position, _count in ordered[1:]] + [ordered[0][0] + self.count]  # wrap around
        for (position, count), following in zip(ordered, followers):
            if position + count > following or self._flags(position, count) != self._ones[:count]:
                return False
        return True

    def _release_unchecked(self, vas: Sequence[int]) -> None:
        """Flag mbufs of this pool as back in it, without checking what they were (a chain's tail)."""
        position = self.cycle_position(vas)
        if position >= 0:
            self._set_flags(position, len(vas), self._zeros)
            return
        flags, positions = self._held, self._position
        for va in vas:
            flags[positions[va]] = 0

    def _flags(self, position: int, count: int, flags: Optional[bytearray] = None) -> bytes:
        """The flags (held ones, or ``flags``) of ``count`` mbufs from ``position`` of the cyclic order (wrapping
        around), count <= pool."""
        flags = self._held if flags is None else flags
        first = self.count - position
        if count <= first:
            return bytes(flags[position : position + count])
        return bytes(flags[position:] + flags[: count - first])

    def _set_flags(self, position: int, count: int, values: bytes, flags: Optional[bytearray] = None) -> None:
        flags = self._held if flags is None else flags
        first = min(count, self.count - position)
        flags[position : position + first] = values[:first]
        if count > first:
            flags[: count - first] = values[: count - first]

    def _release_scattered(self, heads: Sequence[int]) -> Tuple[List[int], Optional[KniMbufError]]:
        """Clear the flags of the mbufs that really were out of the pool; an error names any others."""
        held, positions = self._held, self._position
        valid: List[int] = []
        foreign: List[str] = []
        already: List[str] = []
        released: Set[int] = set()
        for va in heads:
            position = positions.get(va)
            if position is None:
                foreign.append(hex(va))
            elif held[position]:
                held[position] = 0
                valid.append(va)
                released.add(va)
            elif va not in released:
                already.append(hex(va))
        if foreign:
            return valid, KniMbufError(
                "mbuf free", errno.EFAULT, f"pool {self.name!r} does not own mbufs {foreign[:4]}"
            )
        if already:
            return valid, KniMbufError(
                "mbuf free", errno.EINVAL, f"pool {self.name!r}: mbufs {already[:4]} are already free"
            )
        if len(valid) < len(heads):
            return valid, KniMbufError(
                "mbuf free", errno.EINVAL, f"pool {self.name!r}: the same mbuf twice in one burst"
            )
        return valid, None

    def _reset_chain(self, segments: Iterable[int]) -> None:
        for va in segments:
            offset = va - self._base
            self._view[offset + MBUF_NB_SEGS_OFFSET : offset + MBUF_NB_SEGS_OFFSET + 2] = b"\x01\x00"
            self._view[offset + MBUF_NEXT_OFFSET : offset + MBUF_NEXT_OFFSET + 8] = bytes(8)

    # --- address forms ---------------------------------------------------------------------------------------------

    def to_pa_form(self, heads: Sequence[int]) -> List[int]:
        """FIFO entries for rx_q/alloc_q: the PA form of each head, chain ``next`` pointers rewritten likewise."""
        pa_form = self._pa_form
        if pa_form is None:
            return list(heads)  # IOVA=VA: the PA form is the virtual address itself
        chains = self._chains
        if chains and any(map(chains.__contains__, heads)):
            for head in heads:
                tail = chains.get(head)
                if tail is not None:
                    self._link([head, *tail], [pa_form[va] for va in tail])
        return list(map(pa_form.__getitem__, heads))

    def to_pa_form_packed(self, heads: Sequence[int]) -> bytes:
        """``to_pa_form`` as rx_q/alloc_q take it (8-byte little-endian words): a stretch of the cyclic order with
        no chain among it is one slice of the packed order, not a pack of every entry."""
        position = self.cycle_position(heads) if heads else -1
        chains = self._chains
        if position >= 0 and not (chains and any(map(chains.__contains__, heads))):
            start = position * POINTER_SIZE
            return self._pa_cycle_packed[start : start + len(heads) * POINTER_SIZE]
        return _pack(self.to_pa_form(heads))

    def from_pa_form(self, entries: Sequence[int], strict: bool = True) -> List[int]:
        """Virtual addresses for PA-form entries taken back from rx_q/alloc_q; unknown ones raise, or are dropped."""
        if self._va_of_pa_form is None:
            vas = list(entries)
        else:
            vas = [va for va in map(self._va_of_pa_form.get, entries) if va is not None]
        if len(vas) == len(entries) and self._owned.issuperset(vas):
            return vas
        if strict:
            raise KniMbufError("mbuf address", errno.EFAULT, f"pool {self.name!r}: entries are not mbufs of this pool")
        return [va for va in vas if va in self._owned]

    # --- packet contents (per packet: a payload copy is unavoidable) ----------------------------------------------

    def write_packet(self, va: int, payload: bytes, port: int = MBUF_PORT_NONE) -> None:
        """Make ``va`` a one-segment packet holding ``payload`` at the headroom."""
        length = len(payload)
        if length > self.data_room - self.headroom:
            raise KniMbufError(
                "mbuf write", errno.EMSGSIZE, f"{length}-byte packet exceeds the {self.max_packet_size}-byte mbuf"
            )
        offset = va - self._base
        MBUF_PACKET_FIELDS.pack_into(
            self._view, offset + MBUF_DATA_OFF_OFFSET, self.headroom, 1, 1, port, 0, 0, length, length
        )
        data = offset + MBUF_SIZE + self.headroom
        self._view[data : data + length] = payload

    def write_packets(self, payloads: Sequence[bytes]) -> List[int]:
        """Allocate and fill one mbuf per payload; returns fewer mbufs than payloads if the pool runs short."""
        vas = self.alloc_burst(len(payloads))
        for va, payload in zip(vas, payloads):
            self.write_packet(va, payload)
        return vas

    def write_chain(self, payload: bytes, segment_size: Optional[int] = None) -> int:
        """Spread ``payload`` over a chain of mbufs of at most ``segment_size`` bytes each; returns the head."""
        limit = min(segment_size or self.max_packet_size, self.max_packet_size)
        pieces = [payload[start : start + limit] for start in range(0, len(payload), limit)] or [b""]
        if len(pieces) > 0xFFFF:
            raise KniMbufError("mbuf chain", errno.EMSGSIZE, f"a {len(payload)}-byte payload needs too many segments")
        segments = self.alloc_burst(len(pieces))
        if len(segments) < len(pieces):
            self.free_burst(segments)
            raise KniMbufError("mbuf chain", errno.ENOBUFS, f"pool {self.name!r} has too few free mbufs")
        for va, piece in zip(segments, pieces):
            self.write_packet(va, piece)
        if len(segments) > 1:
            head = segments[0]
            MBUF_LENGTHS.pack_into(self._view, head - self._base + MBUF_PKT_LEN_OFFSET, len(payload), len(pieces[0]))
            self._view[head - self._base + MBUF_NB_SEGS_OFFSET : head - self._base + MBUF_NB_SEGS_OFFSET + 2] = len(
                segments
            ).to_bytes(2, "little")
            self._link(segments, segments[1:])
            self._chains[head] = segments[1:]
        return segments[0]

    def _link(self, segments: Sequence[int], next_values: Sequence[int]) -> None:
        for va, next_value in zip(segments, next_values):
            offset = va - self._base + MBUF_NEXT_OFFSET
            self._view[offset : offset + 8] = next_value.to_bytes(8, "little")

    def segments(self, head: int) -> List[int]:
        """All segments of a packet, head first (from the Python-side chain record, not the shared ``next``)."""
        return [head, *self._chains.get(head, ())]

    def read_packet(self, va: int) -> bytes:
        """The packet's bytes, concatenating ``data_len`` of every segment."""
        parts = []
        for segment in self.segments(va):
            offset = segment - self._base
            data_off = int.from_bytes(
                self._view[offset + MBUF_DATA_OFF_OFFSET : offset + MBUF_DATA_OFF_OFFSET + 2], "little"
            )
            _unused, data_len = MBUF_LENGTHS.unpack_from(self._view, offset + MBUF_PKT_LEN_OFFSET)
            start = offset + MBUF_SIZE + data_off
            if data_off + data_len > self.data_room:
                raise KniMbufError(
                    "mbuf read", errno.EFAULT, f"mbuf 0x{segment:x}: data_off {data_off} + data_len {data_len} overflow"
                )
            parts.append(self._view[start : start + data_len].tobytes())
        return parts[0] if len(parts) == 1 else b"".join(parts)

    def read_packets(self, vas: Sequence[int]) -> List[bytes]:
        return [self.read_packet(va) for va in vas]

    def read_header(self, va: int) -> MbufHeader:
        """Decode one mbuf header (diagnostics and tests)."""
        fields = MBUF_HEAD.unpack_from(self._view, va - self._base)
        return MbufHeader(*(value for index, value in enumerate(fields) if index not in _HEAD_FIELDS_NOT_DECODED))

    # --- teardown --------------------------------------------------------------------------------------------------

    def close(self) -> None:
        """Give the pool's memzones back to the arena; every mbuf must be out of the kernel's hands."""
        for zone in self._chunks:
            self.arena.free(zone)
        self._chunks = []
        self._available = 0
        self._held = bytearray(self.count)
