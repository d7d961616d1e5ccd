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
from typing import Callable, Dict, List, Optional, Tuple

from ansible_collections.kernelnic.kni.plugins.module_utils._kni.frames import MbufFrames
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
