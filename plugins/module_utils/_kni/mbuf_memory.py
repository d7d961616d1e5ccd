# SPDX-License-Identifier: GPL-3.0-or-later
# Copyright: kernelnic.kni contributors
"""The memory of a pool of ``rte_mbuf``-compatible packet buffers in the KNI arena: the mbufs, their address forms
and their contents.

Each object is a 128-byte mbuf header followed by its data buffer, in one memzone "chunk" that never crosses a
hugepage, so header and buffer share one VA-to-IOVA offset: that is what the kernel's ``pa2va`` and librte_kni's
``va2pa`` assume (docs/kni-abi.md §3.5). Mbufs are named by the virtual address of their header, which is what travels
through the FIFOs (in "PA form" on rx_q/alloc_q, see ``to_pa_form``).

No per-mbuf struct work is needed because of an invariant: a free mbuf always has ``data_off = headroom``,
``nb_segs = 1`` and ``next = 0``. Every packet write sets those fields, only the (rare) chain path changes them, and
``free_burst`` resets a chain's segments before they go back. The kernel writes only ``pkt_len``/``data_len``
(egress) and chain ``next`` pointers (ingress), so it cannot break the invariant. Chains are tracked on the Python
side too, because the kernel may leave ``next`` in PA form when it drops a packet (docs/kni-abi.md §3.2).

The cyclic order (address order, see ``mbuf``) is set here; ``cycle_position`` and ``stretches`` read it.
"""

from __future__ import annotations

import errno
import struct
from typing import Dict, Iterable, List, NamedTuple, Optional, Sequence, Tuple

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

# Positions in MBUF_HEAD of vlan_tci, hash, vlan_tci_outer and pool, which this library does not use.
_HEAD_FIELDS_NOT_DECODED = (10, 11, 12, 14)


def pack_words(entries: Sequence[int]) -> bytes:
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


class MbufMemory:
    """The mbufs of a pool carved from an arena, in their cyclic order: addresses and contents. ``MbufPool`` adds
    which of them are out of the pool."""

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
        self._cycle_packed = pack_words(self._cycle)  # the same as FIFO words (free_q's form)
        self._chunk_ends = chunk_ends
        self._chains: Dict[int, List[int]] = {}
        self._pa_form: Optional[Dict[int, int]] = None
        self._va_of_pa_form: Optional[Dict[int, int]] = None
        if arena.iova_mode == IovaMode.PA:
            # va2pa(m) = m - (buf_addr - buf_iova): the header's IOVA, since header and buffer share one segment.
            self._pa_form = {va: arena.iova(va) for va in vas}
            self._va_of_pa_form = {pa: va for va, pa in self._pa_form.items()}
        # the cyclic order in rx_q/alloc_q's form
        self._pa_cycle_packed = (
            self._cycle_packed if self._pa_form is None else pack_words(self.to_pa_form(self._cycle))
        )

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

    def _reset_chain(self, segments: Iterable[int]) -> None:
        for va in segments:
            offset = va - self._base
            self._view[offset + MBUF_NB_SEGS_OFFSET : offset + MBUF_NB_SEGS_OFFSET + 2] = b"\x01\x00"
            self._view[offset + MBUF_NEXT_OFFSET : offset + MBUF_NEXT_OFFSET + 8] = bytes(8)

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
        return pack_words(self.to_pa_form(heads))

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

    def close(self) -> None:
        """Give the pool's memzones back to the arena; every mbuf must be out of the kernel's hands."""
        for zone in self._chunks:
            self.arena.free(zone)
        self._chunks = []
