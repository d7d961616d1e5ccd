# SPDX-License-Identifier: GPL-3.0-or-later
# Copyright: kernelnic.kni contributors
"""Netlink for kni-pump, standard library only: link events in, link changes out, and the thread that sends them.

* ``LinkMonitor``: a NETLINK_ROUTE socket subscribed to link and address events; RTM_NEWLINK/RTM_DELLINK become
  ``LinkEvent``s (used for the ``follow`` carrier policy), RTM_NEWADDR/RTM_DELADDR ``AddressEvent``s (the addresses
  a restarted pump puts back).
* ``RtnlClient``: RTM_SETLINK with IFLA_CARRIER, IFLA_MTU, IFLA_ADDRESS or IFF_UP, and RTM_NEWADDR, waiting for the
  kernel's ack.
* ``RtnlWorker``: runs such changes on its own thread. Anything that takes RTNL must not run on the pump thread:
  while the kernel waits (holding RTNL) for the pump to answer a KNI request, a pump blocked on RTNL would answer
  nothing until the kernel gives up after 3 s. The worker blocks instead, and the pump keeps answering.
"""

from __future__ import annotations

import collections
import errno
import os
import socket
import struct
import threading
from typing import Callable, Iterator, List, NamedTuple, Optional, Tuple, Union

from ansible_collections.kernelnic.kni.plugins.module_utils._pump.log import LOG

NETLINK_ROUTE = 0
RTMGRP_LINK = 0x1
RTMGRP_IPV4_IFADDR = 0x10
RTMGRP_IPV6_IFADDR = 0x100
NLMSG_ERROR = 2
NLMSG_DONE = 3
RTM_NEWLINK = 16
RTM_DELLINK = 17
RTM_SETLINK = 19
RTM_NEWADDR = 20
RTM_DELADDR = 21
NLM_F_REQUEST = 0x1
NLM_F_ACK = 0x4
NLM_F_REPLACE = 0x100
NLM_F_CREATE = 0x400
IFA_ADDRESS = 1
IFA_LOCAL = 2
IFA_FLAGS = 8
IFA_F_PERMANENT = 0x80
IFLA_ADDRESS = 1
IFLA_IFNAME = 3
IFLA_MTU = 4
IFLA_CARRIER = 33
IFF_UP = 0x1
IFF_LOWER_UP = 0x10000

NLMSGHDR = struct.Struct("=IHHII")  # len, type, flags, seq, pid
IFINFOMSG = struct.Struct("=BxHiII")  # family, type, index, flags, change
IFADDRMSG = struct.Struct("=BBBBI")  # family, prefixlen, flags, scope, index
RTATTR = struct.Struct("=HH")
NLMSGERR = struct.Struct("=i")


def _align(length: int) -> int:
    return (length + 3) & ~3


def _attribute(kind: int, payload: bytes) -> bytes:
    length = RTATTR.size + len(payload)
    return RTATTR.pack(length, kind) + payload + bytes(_align(length) - length)


class LinkEvent(NamedTuple):
    index: int
    name: str
    up: bool  # IFF_UP and IFF_LOWER_UP: what a routing daemon calls "link up"
    deleted: bool
    mtu: int


class AddressEvent(NamedTuple):
    index: int
    address: str  # "192.0.2.1/24", "2001:db8::1/64"
    deleted: bool
    permanent: bool  # configured, not from SLAAC, DHCP or another source with a lifetime


def address_text(family: int, packed: bytes, prefixlen: int) -> str:
    return f"{socket.inet_ntop(family, packed)}/{prefixlen}"


def _messages(data: bytes, kinds: Tuple[int, ...], fixed: struct.Struct) -> Iterator[Tuple[int, int, int]]:
    """(kind, body offset, end) of each message of ``kinds`` in a netlink datagram whose fixed header fits."""
    offset = 0
    while offset + NLMSGHDR.size <= len(data):
        length, kind, _flags, _seq, _pid = NLMSGHDR.unpack_from(data, offset)
        if length < NLMSGHDR.size or offset + length > len(data):
            return
        if kind in kinds and length >= NLMSGHDR.size + fixed.size:
            yield kind, offset + NLMSGHDR.size, offset + length
        offset += _align(length)


def _attributes(data: bytes, position: int, end: int) -> Iterator[Tuple[int, bytes]]:
    """(type, payload) of each route attribute in ``data[position:end]``."""
    while position + RTATTR.size <= end:
        attr_length, attr_type = RTATTR.unpack_from(data, position)
        if attr_length < RTATTR.size:
            return
        yield attr_type, data[position + RTATTR.size : position + attr_length]
        position += _align(attr_length)


def parse_address_messages(data: bytes) -> List[AddressEvent]:
    """Every IPv4/IPv6 RTM_NEWADDR/RTM_DELADDR in a netlink datagram (other messages are skipped)."""
    events = []
    for kind, body, end in _messages(data, (RTM_NEWADDR, RTM_DELADDR), IFADDRMSG):
        family, prefixlen, flags, _scope, index = IFADDRMSG.unpack_from(data, body)
        size = {socket.AF_INET: 4, socket.AF_INET6: 16}.get(family, 0)
        local = address = b""
        for attr_type, payload in _attributes(data, body + IFADDRMSG.size, end):
            if attr_type == IFA_LOCAL:
                local = payload
            elif attr_type == IFA_ADDRESS:
                address = payload
            elif attr_type == IFA_FLAGS and len(payload) >= 4:
                flags = struct.unpack_from("=I", payload)[0]  # all the flags; ifa_flags has the low 8
        packed = local or address  # IFA_LOCAL is the interface's own address (IFA_ADDRESS the peer's on ptp)
        if size and len(packed) == size:
            text = address_text(family, packed, prefixlen)
            events.append(AddressEvent(index, text, kind == RTM_DELADDR, bool(flags & IFA_F_PERMANENT)))
    return events


def address_request(ifindex: int, address: str) -> bytes:
    """The RTM_NEWADDR body that puts ``address`` ("ip/prefixlen") on ``ifindex``; ValueError if it is not one."""
    ip, _slash, prefix = address.partition("/")
    family = socket.AF_INET6 if ":" in ip else socket.AF_INET
    try:
        packed = socket.inet_pton(family, ip)
        prefixlen = int(prefix)
    except (OSError, ValueError) as exc:
        raise ValueError(f"{address!r} is not an address/prefix length") from exc
    if not 0 <= prefixlen <= len(packed) * 8:
        raise ValueError(f"{address!r}: prefix length out of range")
    attributes = _attribute(IFA_LOCAL, packed) + _attribute(IFA_ADDRESS, packed)
    return IFADDRMSG.pack(family, prefixlen, IFA_F_PERMANENT, 0, ifindex) + attributes


def parse_link_messages(data: bytes) -> List[LinkEvent]:
    """Every RTM_NEWLINK/RTM_DELLINK in a netlink datagram (other messages are skipped)."""
    events = []
    for kind, body, end in _messages(data, (RTM_NEWLINK, RTM_DELLINK), IFINFOMSG):
        _family, _type, index, flags, _change = IFINFOMSG.unpack_from(data, body)
        name, mtu = "", 0
        for attr_type, payload in _attributes(data, body + IFINFOMSG.size, end):
            if attr_type == IFLA_IFNAME:
                name = payload.split(b"\0", 1)[0].decode("ascii", "replace")
            elif attr_type == IFLA_MTU and len(payload) >= 4:
                mtu = struct.unpack_from("=I", payload)[0]
        up = bool(flags & IFF_UP) and bool(flags & IFF_LOWER_UP)
        events.append(LinkEvent(index, name, up and kind == RTM_NEWLINK, kind == RTM_DELLINK, mtu))
    return events


class LinkMonitor:
    """Link and address event subscriber. ``read_events`` drains the socket; ``overflowed`` tells that events were
    lost."""

    def __init__(self) -> None:
        self._socket = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW | socket.SOCK_NONBLOCK, NETLINK_ROUTE)
        self._socket.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
        self._socket.bind((0, RTMGRP_LINK | RTMGRP_IPV4_IFADDR | RTMGRP_IPV6_IFADDR))
        self.overflowed = False

    def fileno(self) -> int:
        return self._socket.fileno()

    def read_events(self) -> List[Union[LinkEvent, AddressEvent]]:
        events: List[Union[LinkEvent, AddressEvent]] = []
        while True:
            try:
                data = self._socket.recv(1 << 16)
            except BlockingIOError:
                return events
            except OSError as exc:
                if exc.errno == errno.ENOBUFS:  # the kernel dropped events: the caller must re-read link states
                    self.overflowed = True
                    continue
                raise
            events.extend(parse_link_messages(data))
            events.extend(parse_address_messages(data))

    def close(self) -> None:
        self._socket.close()


class RtnlClient:
    """RTM_SETLINK requests with acks, on a blocking socket (use it from ``RtnlWorker``, never the pump thread)."""

    def __init__(self, timeout: float = 10.0) -> None:
        self._socket = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, NETLINK_ROUTE)
        self._socket.settimeout(timeout)
        self._socket.bind((0, 0))
        self._sequence = 0
        self._lock = threading.Lock()

    def set_link(
        self,
        ifindex: int,
        *,
        carrier: Optional[bool] = None,
        mtu: Optional[int] = None,
        address: bytes = b"",
        up: Optional[bool] = None,
    ) -> None:
        flags = change = 0
        if up is not None:  # what `ip link set up/down` sends: IFF_UP in the flags the change mask selects
            flags, change = (IFF_UP if up else 0), IFF_UP
        attributes = b""
        if carrier is not None:
            attributes += _attribute(IFLA_CARRIER, bytes([1 if carrier else 0]))
        if mtu is not None:
            attributes += _attribute(IFLA_MTU, struct.pack("=I", mtu))
        if address:
            attributes += _attribute(IFLA_ADDRESS, address)
        self._request(RTM_SETLINK, IFINFOMSG.pack(socket.AF_UNSPEC, 0, ifindex, flags, change) + attributes)

    def add_address(self, ifindex: int, address: str) -> None:
        """Put ``address`` ("ip/prefixlen") on the interface (replacing it if it is there already)."""
        self._request(RTM_NEWADDR, address_request(ifindex, address), NLM_F_CREATE | NLM_F_REPLACE)

    def _request(self, kind: int, body: bytes, flags: int = 0) -> None:
        with self._lock:
            self._sequence += 1
            sequence = self._sequence
            header = NLMSGHDR.pack(NLMSGHDR.size + len(body), kind, NLM_F_REQUEST | NLM_F_ACK | flags, sequence, 0)
            self._socket.send(header + body)
            while True:
                data = self._socket.recv(1 << 16)
                offset = 0
                while offset + NLMSGHDR.size <= len(data):
                    length, reply, _flags, reply_sequence, _pid = NLMSGHDR.unpack_from(data, offset)
                    if length < NLMSGHDR.size:
                        break
                    if reply == NLMSG_ERROR and reply_sequence == sequence:
                        (code,) = NLMSGERR.unpack_from(data, offset + NLMSGHDR.size)
                        if code:
                            raise OSError(-code, os.strerror(-code))
                        return
                    offset += _align(length)

    def close(self) -> None:
        self._socket.close()


class Job:
    """A unit of work for the worker; ``done`` is set when it finished, ``error`` holds its exception."""

    __slots__ = ("description", "done", "error", "function")

    def __init__(self, function: Callable[[], None], description: str) -> None:
        self.function = function
        self.description = description
        self.done = threading.Event()
        self.error: Optional[BaseException] = None


class RtnlWorker:
    """One background thread running RTNL-bound jobs in submission order."""

    def __init__(self) -> None:
        # A deque and a condition rather than queue.Queue: the queue module imports heapq, more start-up time.
        self._queue: collections.deque[Optional[Job]] = collections.deque()
        self._ready = threading.Condition()
        self._thread = threading.Thread(target=self._run, name="kni-pump-rtnl", daemon=True)
        self._thread.start()
        self.failures = 0

    def submit(self, function: Callable[[], None], description: str) -> Job:
        job = Job(function, description)
        self._put(job)
        return job

    def _put(self, job: Optional[Job]) -> None:
        with self._ready:
            self._queue.append(job)
            self._ready.notify()

    def _run(self) -> None:
        while True:
            with self._ready:
                while not self._queue:
                    self._ready.wait()
                job = self._queue.popleft()
            if job is None:
                return
            try:
                job.function()
            except Exception as exc:  # pylint: disable=broad-exception-caught  # reported, the worker goes on
                job.error = exc
                self.failures += 1
                LOG.warning("%s failed: %s", job.description, exc)
            finally:
                job.done.set()

    def idle(self) -> bool:
        return not self._queue

    def stop(self, timeout: float = 5.0) -> None:
        self._put(None)
        self._thread.join(timeout)
