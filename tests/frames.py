# SPDX-License-Identifier: GPL-3.0-or-later
"""Ethernet/IPv4/UDP frames for the tests and the benchmarks: the one place that builds and parses them."""

from __future__ import annotations

import socket
import struct
from typing import Optional, Tuple

ETHERTYPE_IPV4 = b"\x08\x00"
HEADERS_LEN = 14 + 20 + 8  # Ethernet, IPv4 without options, UDP


def checksum(data: bytes) -> int:
    """The Internet checksum (RFC 1071) of ``data``."""
    if len(data) % 2:
        data += b"\0"
    total = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


def udp_frame(
    payload: bytes, dport: int, *, src: str, dst: str, src_mac: bytes, dst_mac: bytes, sport: int = 40000
) -> bytes:
    """Ethernet + IPv4 (don't fragment, TTL 64) + UDP with checksum 0 (none), without FCS."""
    udp = struct.pack("!HHHH", sport, dport, 8 + len(payload), 0) + payload
    header = struct.pack(
        "!BBHHHBBH4s4s", 0x45, 0, 20 + len(udp), 0, 0x4000, 64, 17, 0, socket.inet_aton(src), socket.inet_aton(dst)
    )
    header = header[:10] + struct.pack("!H", checksum(header)) + header[12:]
    return dst_mac + src_mac + ETHERTYPE_IPV4 + header + udp


def parse_udp(frame: bytes) -> Optional[Tuple[int, bytes]]:
    """(dport, payload) of an IPv4/UDP Ethernet frame, else None."""
    if len(frame) < HEADERS_LEN or frame[12:14] != ETHERTYPE_IPV4 or frame[23] != 17:
        return None
    ihl = (frame[14] & 0x0F) * 4
    udp = 14 + ihl
    dport, length = struct.unpack_from("!2xHH", frame, udp)
    return dport, frame[udp + 8 : udp + length]
