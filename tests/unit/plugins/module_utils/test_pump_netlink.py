# SPDX-License-Identifier: GPL-3.0-or-later
# Copyright: kernelnic.kni contributors
"""kni-pump's netlink messages: address events in, address requests out."""

from __future__ import annotations

import socket
import struct

import pytest
from ansible_collections.kernelnic.kni.plugins.module_utils._pump.netlink import (
    IFA_ADDRESS,
    IFA_F_PERMANENT,
    IFA_FLAGS,
    IFA_LOCAL,
    IFADDRMSG,
    IFF_LOWER_UP,
    IFF_UP,
    IFINFOMSG,
    IFLA_IFNAME,
    IFLA_MTU,
    NLMSGHDR,
    RTM_DELADDR,
    RTM_DELLINK,
    RTM_NEWADDR,
    RTM_NEWLINK,
    AddressEvent,
    LinkEvent,
    address_request,
    parse_address_messages,
    parse_link_messages,
)


def message(kind: int, body: bytes) -> bytes:
    length = NLMSGHDR.size + len(body)
    return NLMSGHDR.pack(length, kind, 0, 0, 0) + body + bytes(-length % 4)


def attribute(kind: int, payload: bytes) -> bytes:
    length = 4 + len(payload)
    return struct.pack("=HH", length, kind) + payload + bytes(-length % 4)


def test_address_events_as_the_kernel_sends_them() -> None:
    ptp = (
        IFADDRMSG.pack(socket.AF_INET, 32, IFA_F_PERMANENT, 0, 7)
        + attribute(IFA_LOCAL, socket.inet_aton("10.0.0.1"))
        + attribute(IFA_ADDRESS, socket.inet_aton("10.0.0.2"))
    )  # point-to-point: IFA_ADDRESS is the peer
    slaac = (
        IFADDRMSG.pack(socket.AF_INET6, 64, 0, 0, 7)
        + attribute(IFA_ADDRESS, socket.inet_pton(socket.AF_INET6, "2001:db8::5"))
        + attribute(IFA_FLAGS, struct.pack("=I", 0x100))
    )  # IFA_F_MANAGETEMPADDR, not permanent
    managed = (
        IFADDRMSG.pack(socket.AF_INET6, 64, 0, 0, 7)
        + attribute(IFA_ADDRESS, socket.inet_pton(socket.AF_INET6, "2001:db8::6"))
        + attribute(IFA_FLAGS, struct.pack("=I", IFA_F_PERMANENT | 0x200))
    )  # the high flags live only in IFA_FLAGS
    data = (
        message(RTM_NEWADDR, ptp)
        + message(RTM_NEWLINK, bytes(16))
        + message(RTM_NEWADDR, slaac)
        + message(RTM_DELADDR, managed)
    )
    assert parse_address_messages(data) == [
        AddressEvent(7, "10.0.0.1/32", deleted=False, permanent=True),
        AddressEvent(7, "2001:db8::5/64", deleted=False, permanent=False),
        AddressEvent(7, "2001:db8::6/64", deleted=True, permanent=True),
    ]
    assert parse_link_messages(message(RTM_NEWADDR, ptp)) == []  # each parser takes its own messages only


@pytest.mark.parametrize("address", ["192.0.2.1/24", "2001:db8::1/64", "0.0.0.0/0"])
def test_an_address_request_reads_back_as_the_same_address(address: str) -> None:
    assert parse_address_messages(message(RTM_NEWADDR, address_request(9, address))) == [
        AddressEvent(9, address, deleted=False, permanent=True)
    ]


@pytest.mark.parametrize("address", ["192.0.2.1", "192.0.2.1/33", "2001:db8::1/129", "kni0/24", "192.0.2.1/x"])
def test_a_bad_address_is_refused_with_its_text(address: str) -> None:
    with pytest.raises(ValueError, match=address.split("/")[0]):
        address_request(9, address)


def test_link_events_as_the_kernel_sends_them() -> None:
    def link(kind: int, flags: int, name: bytes, mtu: int) -> bytes:
        body = IFINFOMSG.pack(socket.AF_UNSPEC, 1, 5, flags, 0)
        return message(kind, body + attribute(IFLA_IFNAME, name + b"\0") + attribute(IFLA_MTU, struct.pack("=I", mtu)))

    data = (
        link(RTM_NEWLINK, IFF_UP | IFF_LOWER_UP, b"veth0", 1500)
        + link(RTM_NEWLINK, IFF_UP, b"veth0", 9000)  # up, but no carrier
        + link(RTM_DELLINK, IFF_UP | IFF_LOWER_UP, b"veth0", 1500)
    )
    assert parse_link_messages(data) == [
        LinkEvent(5, "veth0", up=True, deleted=False, mtu=1500),
        LinkEvent(5, "veth0", up=False, deleted=False, mtu=9000),
        LinkEvent(5, "veth0", up=False, deleted=True, mtu=1500),
    ]
    assert parse_link_messages(data[:-3]) == parse_link_messages(data)[:2]  # a truncated message ends the walk
