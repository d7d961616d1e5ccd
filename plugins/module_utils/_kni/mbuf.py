# SPDX-License-Identifier: GPL-3.0-or-later
# Copyright: kernelnic.kni contributors
"""A pool of ``rte_mbuf``-compatible packet buffers in the KNI arena (their memory: ``mbuf_memory``).

Hot path: one flag per mbuf says whether it is out of the pool (which also catches double and foreign frees). Alloc
finds a run of free neighbours with one ``bytearray.find`` and takes it with two slices; free clears a whole stretch
of flags at once. No per-mbuf Python or struct work.

The cyclic order is address order. Alloc searches for its run from where the last one ended (next fit), wrapping
around, so mbufs circulate in that order through alloc_q, tx_q and back (and likewise through rx_q and free_q), and a
burst the kernel returns is usually a stretch of it: ``cycle_position`` recognises one with a single list
comparison, and ``stretches`` splits it into runs of neighbouring mbufs that one strided memoryview operation can
read. Unlike a free list, this does not drift: an mbuf that comes back out of turn (from the other direction, or
dropped) rejoins its neighbours instead of travelling on among strangers and breaking up every later burst.

Content marks: a traffic source that puts the same frame into every mbuf (the null backend's) takes them with
``alloc_same``, which marks them as holding that content and says whether all of them still did: then the source
need not write them again. An mbuf's data changes only after ``alloc_burst`` has handed it out (to be written by us,
or by the kernel as an alloc_q buffer for egress), and ``alloc_burst`` clears the marks of what it hands out, so a
mark is never stale.
"""

from __future__ import annotations

import errno
import struct
from typing import List, Optional, Sequence, Set, Tuple

from ansible_collections.kernelnic.kni.plugins.module_utils._kni.abi import (
    MBUF_LENGTHS,
    MBUF_NB_SEGS_OFFSET,
    MBUF_PKT_LEN_OFFSET,
    POINTER_SIZE,
    KniMbufError,
)
from ansible_collections.kernelnic.kni.plugins.module_utils._kni.mbuf_memory import MbufMemory
from ansible_collections.kernelnic.kni.plugins.module_utils._kni.memory import Arena

MAX_FREE_RUNS = 16  # stretches a freed burst is split into before the per-mbuf path is cheaper


class MbufPool(MbufMemory):
    """Fixed set of mbufs carved from an arena; not thread-safe (one pump thread owns it)."""

    def __init__(self, arena: Arena, name: str, count: int, **rooms: int) -> None:
        """``rooms``: ``data_room`` and ``headroom``, as ``MbufMemory`` takes them."""
        super().__init__(arena, name, count, **rooms)
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

    @property
    def available(self) -> int:
        return self._available

    @property
    def in_use(self) -> int:
        return self._held.count(1)

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

    def close(self) -> None:
        """Give the pool's memzones back to the arena; every mbuf must be out of the kernel's hands."""
        super().close()
        self._available = 0
        self._held = bytearray(self.count)
