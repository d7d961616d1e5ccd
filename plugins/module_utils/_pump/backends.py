# SPDX-License-Identifier: GPL-3.0-or-later
# Copyright: kernelnic.kni contributors
"""kni-pump backends: where an interface's frames go to and come from.

* ``afpacket:<ifname>`` bridges the KNI interface to a Linux interface through PACKET_MMAP rings;
* ``loopback`` sends every frame the KNI interface transmits straight back to it (same mbufs, no copy);
* ``null`` swallows frames, and for benchmarks can also produce a fixed frame as fast as it is asked to.

Frames move in bursts of mbufs from the interface's own ``MbufPool``. ``transmit`` takes ownership of the mbufs
it is given (and frees them); ``receive`` returns new mbufs owned by the caller.

Request hooks (``check_mtu``, ``set_admin_up``, ``set_mac``, ``set_promisc``, ``set_allmulti``) run while the
kernel holds RTNL waiting for the answer, so they only decide and return 0 or ``-errno`` at once; work that takes
RTNL itself (packet socket memberships) goes through ``defer``, which runs it on another thread after the answer.
"""

from __future__ import annotations

import errno
import fcntl
import socket
import struct
from array import array
from typing import Callable, Dict, List, Optional, Sequence, Tuple

from ansible_collections.kernelnic.kni.plugins.module_utils._kni.abi import (
    MBUF_DATA_LEN_OFFSET,
    MBUF_HEADER_TAIL,
    MBUF_LENGTHS,
    MBUF_PKT_LEN_OFFSET,
    MBUF_SIZE,
)
from ansible_collections.kernelnic.kni.plugins.module_utils._kni.mbuf import MbufPool
from ansible_collections.kernelnic.kni.plugins.module_utils._pump.afpacket import (
    PACKET_MR_ALLMULTI,
    PACKET_MR_PROMISC,
    PACKET_MR_UNICAST,
    PacketRing,
)
from ansible_collections.kernelnic.kni.plugins.module_utils._pump.schema import ETHER_HEADER_LEN
from ansible_collections.kernelnic.kni.plugins.module_utils._pump.schema import Backend as BackendSpec

Defer = Callable[[Callable[[], None], str], None]  # (job, description): run job later, off the pump thread
Transfer = Tuple[int, int, int]  # packets, bytes, dropped
COLUMN_FRAME_MAX = 96  # fill_same writes frames up to this long column by column (see MbufFrames)

SIOCGIFFLAGS = 0x8913
SIOCGIFMTU = 0x8921
IFF_UP = 0x1
IFF_RUNNING = 0x40
IFREQ_INT = struct.Struct("16si12x")
IFREQ_FLAGS = struct.Struct("16sh14x")


def _interface_ioctl(ifname: str, request: int, layout: struct.Struct) -> int:
    # An AF_UNIX socket: interface ioctls work on any socket, and the service may not create AF_INET ones.
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        reply = fcntl.ioctl(sock.fileno(), request, layout.pack(ifname.encode(), 0))
    return layout.unpack(reply)[1]


def interface_mtu(ifname: str) -> int:
    """SIOCGIFMTU: no RTNL, so safe to call while the kernel waits for a KNI answer."""
    return _interface_ioctl(ifname, SIOCGIFMTU, IFREQ_INT)


def interface_running(ifname: str) -> bool:
    """Administratively up with an operational link (IFF_UP and IFF_RUNNING), via SIOCGIFFLAGS."""
    flags = _interface_ioctl(ifname, SIOCGIFFLAGS, IFREQ_FLAGS) & 0xFFFF
    return bool(flags & IFF_UP) and bool(flags & IFF_RUNNING)


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


class Backend:
    """Base class: accepts every request, always has a link."""

    kind = "base"

    def __init__(self, pool: MbufPool, defer: Defer) -> None:
        self.pool = pool
        self.defer = defer
        self.frames = MbufFrames(pool)
        self.admin_up = False
        self.promisc = False
        self.allmulti = False
        self.mac = b""

    # packets
    def fileno(self) -> Optional[int]:
        """A descriptor that becomes readable when ``receive`` has work, if the backend has one."""
        return None

    @property
    def link_up(self) -> bool:
        return True

    def transmit(self, vas: List[int]) -> Transfer:
        """Send frames the KNI interface transmitted; takes ownership of the mbufs."""
        position = self.pool.cycle_position(vas) if vas else -1  # once for both
        lengths = self.frames.lengths(vas, position)
        self.pool.free_burst(vas, position)
        return len(vas), sum(lengths), 0

    def receive(self, max_count: int) -> Tuple[List[int], int, int]:
        """(mbufs, bytes, dropped) for the KNI interface; at most ``max_count`` mbufs."""
        return [], 0, 0

    # requests: return 0 or -errno, never block on RTNL
    def check_mtu(self, mtu: int) -> int:
        return 0 if mtu + ETHER_HEADER_LEN <= self.frames.max_frame else -errno.EINVAL

    def set_admin_up(self, up: bool) -> int:
        self.admin_up = up
        return 0

    def set_mac(self, mac: bytes) -> int:
        self.mac = mac
        return 0

    def set_promisc(self, on: bool) -> int:
        self.promisc = on
        return 0

    def set_allmulti(self, on: bool) -> int:
        self.allmulti = on
        return 0

    def state(self) -> Dict[str, object]:
        return {"kind": self.kind, "link_up": self.link_up, "promisc": self.promisc, "allmulti": self.allmulti}

    def close(self) -> None:
        self.frames.release()


class NullBackend(Backend):
    """A sink; with ``source_frame`` also a source that fills every ``receive`` burst with that frame."""

    kind = "null"

    def __init__(self, pool: MbufPool, defer: Defer, source_frame: bytes = b"") -> None:
        super().__init__(pool, defer)
        if len(source_frame) > self.frames.max_frame:
            raise ValueError(f"the {len(source_frame)}-byte source frame exceeds the {self.frames.max_frame}-byte mbuf")
        self.source_frame = source_frame

    def receive(self, max_count: int) -> Tuple[List[int], int, int]:
        if not self.source_frame or max_count <= 0:
            return [], 0, 0
        vas = self.frames.fill_same(self.source_frame, max_count)
        return vas, len(vas) * len(self.source_frame), 0


class LoopbackBackend(Backend):
    """Echoes frames: what the interface transmits comes back as received, in the same mbufs."""

    kind = "loopback"

    def __init__(self, pool: MbufPool, defer: Defer) -> None:
        super().__init__(pool, defer)
        self._queue: List[int] = []

    def transmit(self, vas: List[int]) -> Transfer:
        self._queue.extend(vas)
        return len(vas), sum(self.frames.lengths(vas)), 0

    def receive(self, max_count: int) -> Tuple[List[int], int, int]:
        queue = self._queue
        if not queue or max_count <= 0:
            return [], 0, 0
        vas = queue[:max_count]
        del queue[:max_count]
        return vas, sum(self.frames.lengths(vas)), 0

    @property
    def pending(self) -> int:
        return len(self._queue)

    def close(self) -> None:
        self.pool.free_burst(list(self._queue))
        self._queue.clear()
        super().close()


class AfPacketBackend(Backend):
    """Bridges to a Linux interface through TPACKET_V2 rings: one strided slice per field per burst, one send()."""

    kind = "afpacket"

    def __init__(self, pool: MbufPool, defer: Defer, ifname: str, mac: bytes = b"") -> None:
        super().__init__(pool, defer)
        self.ifname = ifname
        self.ring = PacketRing(ifname)
        self.ifindex = self.ring.ifindex
        try:
            self._link_up = interface_running(ifname)
        except OSError:
            self._link_up = False
        self.mac = mac
        self._memberships: Dict[Tuple[int, bytes], bool] = {}
        if mac:
            # The peer must accept frames for the KNI interface's MAC: add it to the NIC's unicast filter.
            self._membership(PACKET_MR_UNICAST, mac, True)

    def fileno(self) -> Optional[int]:
        return self.ring.fileno()

    @property
    def link_up(self) -> bool:
        return self._link_up

    def link_changed(self, up: bool) -> None:
        self._link_up = up

    def transmit(self, vas: List[int]) -> Transfer:
        ring, frames = self.ring, self.frames
        sent = sent_bytes = 0
        remaining = vas
        for _attempt in range(2):  # a free run can stop at the end of the ring; the rest may fit at its start
            first, offsets = ring.tx_reserve(len(remaining))
            if not offsets:
                break
            batch = remaining[: len(offsets)]
            lengths = frames.lengths(batch)
            frames.copy_out(batch, lengths, ring.tx_view, offsets)
            ring.tx_commit(first, lengths)
            sent += len(batch)
            sent_bytes += sum(lengths)
            remaining = remaining[len(batch) :]
            if not remaining:
                break
        ring.flush()  # one send() for the whole burst
        self.pool.free_burst(vas)
        return sent, sent_bytes, len(remaining)  # no free frame: the rest is dropped, as a full NIC queue would

    def receive(self, max_count: int) -> Tuple[List[int], int, int]:
        ring = self.ring
        burst = ring.rx_peek(max_count)
        if not burst.count:
            return [], 0, 0
        if not self.admin_up:
            ring.rx_release(burst)  # the KNI interface is down: frames from the link are dropped
            return [], 0, burst.count
        lengths = burst.lengths
        if burst.vlan or max(lengths) > self.frames.max_frame or -1 in lengths:
            offsets, lengths, dropped = self._fix_up(burst)
            vas = self.frames.fill(ring.rx_view, offsets, lengths)
        else:
            dropped = 0
            frames = ring.rx_frames(burst)
            if frames is None:
                vas = self.frames.fill(ring.rx_view, burst.offsets, lengths)
            else:
                vas = self.frames.fill_frames(frames, lengths)
        ring.rx_release(burst)
        return vas, sum(lengths[: len(vas)]), dropped + len(lengths) - len(vas)

    def _fix_up(self, burst) -> Tuple[List[int], List[int], int]:  # type: ignore[no-untyped-def]
        """Slow path: drop truncated and oversized frames, put back 802.1Q tags the kernel moved into the header."""
        offsets: List[int] = []
        lengths: List[int] = []
        tags = dict(burst.vlan)
        dropped = 0
        view = self.ring.rx_view
        for position, (offset, length) in enumerate(zip(burst.offsets, burst.lengths)):
            tag = tags.get(position)
            if length < 0 or length + (4 if tag is not None else 0) > self.frames.max_frame:
                dropped += 1
                continue
            if tag is not None:
                # The headroom in front of tp_mac is ours until the frame is released: rebuild the frame there.
                view[offset - 4 : offset + 8] = bytes(view[offset : offset + 12])
                view[offset + 8 : offset + 12] = tag
                offset, length = offset - 4, length + 4
            offsets.append(offset)
            lengths.append(length)
        return offsets, lengths, dropped

    # requests
    def check_mtu(self, mtu: int) -> int:
        if mtu + ETHER_HEADER_LEN > min(self.frames.max_frame, self.ring.max_frame_len):
            return -errno.EINVAL
        try:
            peer_mtu = interface_mtu(self.ifname)
        except OSError as exc:
            return -(exc.errno or errno.ENODEV)
        return 0 if mtu <= peer_mtu else -errno.EINVAL  # larger frames would be dropped by the peer

    def set_mac(self, mac: bytes) -> int:
        if mac != self.mac:
            if self.mac:
                self._membership(PACKET_MR_UNICAST, self.mac, False)
            self._membership(PACKET_MR_UNICAST, mac, True)
            self.mac = mac
        return 0

    def set_promisc(self, on: bool) -> int:
        if on != self.promisc:
            self._membership(PACKET_MR_PROMISC, b"", on)
            self.promisc = on
        return 0

    def set_allmulti(self, on: bool) -> int:
        if on != self.allmulti:
            self._membership(PACKET_MR_ALLMULTI, b"", on)
            self.allmulti = on
        return 0

    def _membership(self, kind: int, address: bytes, add: bool) -> None:
        ring = self.ring
        names = {PACKET_MR_PROMISC: "promisc", PACKET_MR_ALLMULTI: "allmulti", PACKET_MR_UNICAST: "unicast"}
        action = "add" if add else "drop"
        self.defer(lambda: ring.membership(add, kind, address), f"{self.ifname}: {action} {names[kind]} membership")

    def state(self) -> Dict[str, object]:
        state = super().state()
        state["ifname"] = self.ifname
        return state

    def close(self) -> None:
        self.ring.close()  # closing the socket drops its memberships
        super().close()


def open_backend(spec: BackendSpec, pool: MbufPool, defer: Defer, mac: bytes = b"") -> Backend:
    """The backend for a parsed spec."""
    if spec.kind == "afpacket":
        return AfPacketBackend(pool, defer, spec.ifname, mac)
    if spec.kind == "loopback":
        backend: Backend = LoopbackBackend(pool, defer)
    else:
        backend = NullBackend(pool, defer)
    backend.mac = mac
    return backend
