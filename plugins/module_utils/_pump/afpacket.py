# SPDX-License-Identifier: GPL-3.0-or-later
# Copyright: kernelnic.kni contributors
"""PACKET_MMAP (TPACKET_V2) RX and TX rings on an AF_PACKET socket bound to one Linux interface.

Both rings live in one mmap: RX frames first, then TX frames. Each frame starts with a ``tpacket2_hdr``::

    0 tp_status  4 tp_len  8 tp_snaplen  12 tp_mac (u16)  14 tp_net (u16)  16 tp_sec  20 tp_nsec
    24 tp_vlan_tci (u16)  26 tp_vlan_tpid (u16)  28 padding -> 32 bytes

Frames are ``frame_size`` apart, so one field of a burst of frames is one strided memoryview slice: reading the
statuses, lengths and data offsets of 32 frames, or handing 32 frames back, is one slice operation each. The only
per-frame work is the payload copy, done by the caller straight between the ring and its own buffers.
RX: the kernel sets ``TP_STATUS_USER`` on a filled frame; we copy it out and store ``TP_STATUS_KERNEL`` (0).
TX: we fill frames whose status is ``TP_STATUS_AVAILABLE`` (0), set ``tp_len``, then ``TP_STATUS_SEND_REQUEST``,
and one ``send()`` per burst makes the kernel transmit them all.

Status stores go through a memoryview cast to ``'I'`` (aligned 4-byte stores), after the data they publish.
"""

from __future__ import annotations

import array
import ctypes
import errno
import mmap
import os
import socket
import struct
from typing import Dict, List, NamedTuple, Optional, Tuple

SOL_PACKET = 263
PACKET_ADD_MEMBERSHIP = 1
PACKET_DROP_MEMBERSHIP = 2
PACKET_RX_RING = 5
PACKET_VERSION = 10
PACKET_TX_RING = 13
PACKET_LOSS = 14
PACKET_IGNORE_OUTGOING = 23
TPACKET_V2 = 1
ETH_P_ALL = 0x0003
PACKET_MR_PROMISC = 1
PACKET_MR_ALLMULTI = 2
PACKET_MR_UNICAST = 3

TP_STATUS_KERNEL = 0
TP_STATUS_USER = 0x1
TP_STATUS_COPY = 0x2
TP_STATUS_LOSING = 0x4
TP_STATUS_VLAN_VALID = 0x10
TP_STATUS_VLAN_TPID_VALID = 0x40
TP_STATUS_AVAILABLE = 0
TP_STATUS_SEND_REQUEST = 0x1
TP_STATUS_WRONG_FORMAT = 0x4

TPACKET2_HDR_SIZE = 32  # TPACKET_ALIGN(sizeof(struct tpacket2_hdr))
TX_DATA_OFFSET = TPACKET2_HDR_SIZE  # TPACKET2_HDRLEN - sizeof(struct sockaddr_ll): where the kernel reads TX data
TPACKET_REQ = struct.Struct("=IIII")  # block_size, block_nr, frame_size, frame_nr
PACKET_MREQ = struct.Struct("=iHH8s")  # mr_ifindex, mr_type, mr_alen, mr_address
VLAN_TAG = struct.Struct("!HH")

# u32 / u16 word positions inside a frame header
_STATUS, _LEN, _SNAPLEN = 0, 1, 2
_MAC16 = 12 // 2
_VLAN_TCI16, _VLAN_TPID16 = 24 // 2, 26 // 2

MAX_GATHERS = 256  # compiled rx_frames structs kept; a burst shape seen again reuses its own
DEFAULT_FRAME_SIZE = 4096
DEFAULT_FRAME_COUNT = 256
BLOCK_SIZE = 1 << 16


_libc: Optional[ctypes.CDLL] = None


def setsockopt_releasing_gil(fd: int, level: int, option: int, value: bytes) -> None:
    """setsockopt(2) through ctypes, which drops the GIL for the call; socket.setsockopt keeps it.

    Membership changes take RTNL. On the worker thread, a setsockopt that waits for RTNL while holding the GIL
    would stop the pump loop from answering the KNI request whose sender holds RTNL: both would wait until the
    kernel's 3 s request timeout, and the `ip` command would fail with ETIME.
    """
    global _libc  # pylint: disable=global-statement
    if _libc is None:
        _libc = ctypes.CDLL(None, use_errno=True)
    buffer = ctypes.create_string_buffer(value, len(value))
    if _libc.setsockopt(fd, level, option, buffer, len(value)) != 0:
        code = ctypes.get_errno()
        raise OSError(code, os.strerror(code))


class RingError(OSError):
    """A PACKET_MMAP set-up step failed; the message names the step and the interface."""


class RxBurst(NamedTuple):
    """Frames ready in the RX ring: ``first`` frame index, per-frame data ``offsets`` (into ``view``) and lengths.

    A length of -1 marks a truncated frame (larger than a ring frame); ``vlan`` lists (position, tag bytes) of
    frames whose 802.1Q tag the kernel moved into the header and that must be put back. ``mac`` is the offset of
    the data inside every frame of the burst when it is the same for all (the usual case), else -1.
    """

    first: int
    count: int
    offsets: List[int]
    lengths: List[int]
    vlan: List[Tuple[int, bytes]]
    mac: int = -1


class PacketRing:
    """An AF_PACKET socket with mapped TPACKET_V2 RX and TX rings, bound to ``ifname``."""

    def __init__(
        self, ifname: str, frame_size: int = DEFAULT_FRAME_SIZE, frame_count: int = DEFAULT_FRAME_COUNT
    ) -> None:
        if frame_size % 16 or BLOCK_SIZE % frame_size or frame_count % (BLOCK_SIZE // frame_size):
            raise ValueError(f"frame size {frame_size} / count {frame_count} do not tile {BLOCK_SIZE}-byte blocks")
        self.ifname = ifname
        self.frame_size = frame_size
        self.frame_count = frame_count
        self.ifindex = socket.if_nametoindex(ifname)
        self._socket = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ALL))
        self._map: Optional[mmap.mmap] = None
        try:
            self._set_up()
        except OSError as exc:
            if self._map is not None:
                self._map.close()
            self._socket.close()
            if isinstance(exc, RingError):
                raise
            raise RingError(exc.errno, f"afpacket {ifname}: {exc.strerror or exc}") from exc

    def _set_up(self) -> None:
        sock = self._socket
        self._step("PACKET_VERSION", sock.setsockopt, SOL_PACKET, PACKET_VERSION, TPACKET_V2)
        # Frames this host sends out of the interface are not for the KNI side (kernel >= 4.20).
        self._step("PACKET_IGNORE_OUTGOING", sock.setsockopt, SOL_PACKET, PACKET_IGNORE_OUTGOING, 1)
        # A frame the kernel cannot send is dropped instead of stopping the TX ring.
        self._step("PACKET_LOSS", sock.setsockopt, SOL_PACKET, PACKET_LOSS, 1)
        blocks = self.frame_count * self.frame_size // BLOCK_SIZE
        request = TPACKET_REQ.pack(BLOCK_SIZE, blocks, self.frame_size, self.frame_count)
        self._step("PACKET_RX_RING", sock.setsockopt, SOL_PACKET, PACKET_RX_RING, request)
        self._step("PACKET_TX_RING", sock.setsockopt, SOL_PACKET, PACKET_TX_RING, request)
        ring_bytes = self.frame_count * self.frame_size
        self._map = self._step(
            "mmap",
            mmap.mmap,
            sock.fileno(),
            2 * ring_bytes,
            mmap.MAP_SHARED,
            mmap.PROT_READ | mmap.PROT_WRITE,
        )
        self._step("bind", sock.bind, (self.ifname, ETH_P_ALL))
        sock.setblocking(False)
        whole = memoryview(self._map)
        self.rx_view = whole[:ring_bytes]
        self.tx_view = whole[ring_bytes:]
        self._whole = whole
        stride32 = self.frame_size // 4
        stride16 = self.frame_size // 2
        self._rx32 = self.rx_view.cast("I")
        self._rx16 = self.rx_view.cast("H")
        self._tx32 = self.tx_view.cast("I")
        self._stride32 = stride32
        self._stride16 = stride16
        self._rx_head = 0
        self._tx_head = 0
        self._zeros: Dict[int, array.array] = {}  # status arrays by burst size, built once
        self._send_requests: Dict[int, array.array] = {}
        self._gathers: Dict[Tuple[int, int, int], struct.Struct] = {}

    def _step(self, step: str, function, *arguments):  # type: ignore[no-untyped-def]
        try:
            return function(*arguments)
        except OSError as exc:
            raise RingError(exc.errno, f"afpacket {self.ifname}: {step} failed: {exc.strerror or exc}") from exc

    def fileno(self) -> int:
        """Readable (poll/select) when the RX ring holds a frame."""
        return self._socket.fileno()

    @property
    def max_frame_len(self) -> int:
        """Largest frame the TX ring takes, and (about) the largest the RX ring delivers whole."""
        return self.frame_size - TX_DATA_OFFSET - 64

    def _statuses(self, ring: memoryview, head: int, max_count: int) -> List[int]:
        """tp_status of the frames of ``ring`` from ``head``, up to ``max_count`` and the end of the ring."""
        stride = self._stride32
        start = head * stride
        return ring[start + _STATUS : start + min(max_count, self.frame_count - head) * stride : stride].tolist()

    # --- RX (hot path) ---------------------------------------------------------------------------------------------

    def rx_peek(self, max_count: int) -> RxBurst:
        """The run of filled frames at the RX head, up to ``max_count`` and the end of the ring."""
        head = self._rx_head
        statuses = self._statuses(self._rx32, head, max_count)
        stride = self._stride32
        start = head * stride
        count = 0
        for status in statuses:  # the leading run of user-owned frames; stops at the first kernel-owned one
            if not status & TP_STATUS_USER:
                break
            count += 1
        if not count:
            return RxBurst(head, 0, [], [], [], -1)
        stop = start + count * stride
        lengths = self._rx32[start + _SNAPLEN : stop : stride].tolist()
        full_lengths = self._rx32[start + _LEN : stop : stride].tolist()
        start16 = head * self._stride16
        macs = self._rx16[start16 + _MAC16 : start16 + count * self._stride16 : self._stride16].tolist()
        base = head * self.frame_size
        offsets = [base + index * self.frame_size + mac for index, mac in enumerate(macs)]
        vlan: List[Tuple[int, bytes]] = []
        if lengths != full_lengths or any(status & TP_STATUS_VLAN_VALID for status in statuses[:count]):
            for position in range(count):
                if lengths[position] != full_lengths[position]:
                    lengths[position] = -1  # truncated: larger than a frame; the caller drops it
                elif statuses[position] & TP_STATUS_VLAN_VALID:
                    vlan.append((position, self._vlan_tag(head + position, statuses[position])))
        mac = macs[0] if macs.count(macs[0]) == count else -1
        return RxBurst(head, count, offsets, lengths, vlan, mac)

    def rx_frames(self, burst: RxBurst) -> Optional[Tuple[bytes, ...]]:
        """The burst's frames as bytes, gathered by one ``unpack_from``; None when their data offsets differ.

        Each item holds its frame (and possibly some bytes after it, up to a 64-byte boundary: read the length from
        the burst). The struct is compiled once per (count, offset, slot size); bursts of similar frames reuse it.
        """
        mac = burst.mac
        if mac < 0 or not burst.count:
            return None
        slot = min(-(-max(burst.lengths) // 64) * 64, self.frame_size - mac)
        key = (burst.count, mac, slot)
        gather = self._gathers.get(key)
        if gather is None:
            if len(self._gathers) >= MAX_GATHERS:
                self._gathers.clear()
            skip = self.frame_size - slot
            gather = self._gathers[key] = struct.Struct(f"{mac}x" + f"{skip}x".join([f"{slot}s"] * burst.count))
        return gather.unpack_from(self.rx_view, burst.first * self.frame_size)

    def _vlan_tag(self, frame: int, status: int) -> bytes:
        base16 = frame * self._stride16
        tci = self._rx16[base16 + _VLAN_TCI16]
        tpid = self._rx16[base16 + _VLAN_TPID16] if status & TP_STATUS_VLAN_TPID_VALID else 0x8100
        return VLAN_TAG.pack(tpid, tci)

    def rx_release(self, burst: RxBurst) -> None:
        """Give a peeked run of frames back to the kernel: one strided store of zeros."""
        count = burst.count
        if not count:
            return
        stride = self._stride32
        start = burst.first * stride
        zeros = self._zeros.get(count)
        if zeros is None:
            zeros = self._zeros[count] = array.array("I", [TP_STATUS_KERNEL] * count)
        self._rx32[start + _STATUS : start + count * stride : stride] = zeros
        self._rx_head = (burst.first + count) % self.frame_count

    # --- TX (hot path) ---------------------------------------------------------------------------------------------

    def tx_reserve(self, max_count: int) -> Tuple[int, List[int]]:
        """(first frame, data offsets into ``tx_view``) of up to ``max_count`` free frames at the TX head."""
        head = self._tx_head
        statuses = self._statuses(self._tx32, head, max_count)
        count = 0
        for status in statuses:
            if status != TP_STATUS_AVAILABLE:
                break
            count += 1
        base = head * self.frame_size + TX_DATA_OFFSET
        return head, [base + index * self.frame_size for index in range(count)]

    def tx_commit(self, first: int, lengths: List[int]) -> int:
        """Publish filled frames: their lengths, then their statuses, one strided store each. ``flush`` sends them."""
        count = len(lengths)
        if not count:
            return 0
        stride = self._stride32
        start = first * stride
        self._tx32[start + _LEN : start + count * stride : stride] = array.array("I", lengths)
        requests = self._send_requests.get(count)
        if requests is None:
            requests = self._send_requests[count] = array.array("I", [TP_STATUS_SEND_REQUEST] * count)
        self._tx32[start + _STATUS : start + count * stride : stride] = requests
        self._tx_head = (first + count) % self.frame_count
        return count

    def flush(self) -> None:
        """One send(): the kernel transmits every frame marked SEND_REQUEST. A full socket buffer (EAGAIN, ENOBUFS)
        leaves them queued in the ring for the next flush."""
        try:
            self._socket.send(b"", socket.MSG_DONTWAIT)
        except OSError as exc:
            if exc.errno not in (errno.EAGAIN, errno.ENOBUFS, errno.ENETDOWN, errno.ENXIO):
                raise

    # --- memberships (take RTNL: never call while the kernel waits for a KNI answer on this thread) -------------

    def membership(self, add: bool, kind: int, address: bytes = b"") -> None:
        """PACKET_{ADD,DROP}_MEMBERSHIP: promisc, allmulti or one unicast address on the bound interface."""
        request = PACKET_MREQ.pack(self.ifindex, kind, len(address), address.ljust(8, b"\0"))
        option = PACKET_ADD_MEMBERSHIP if add else PACKET_DROP_MEMBERSHIP
        self._step("membership", setsockopt_releasing_gil, self._socket.fileno(), SOL_PACKET, option, request)

    def close(self) -> None:
        """Unmap and close; the kernel drops the socket's memberships with it."""
        if self._map is not None:
            for view in (self._rx32, self._rx16, self._tx32, self.rx_view, self.tx_view, self._whole):
                view.release()
            self._map.close()
            self._map = None
        self._socket.close()
