# SPDX-License-Identifier: GPL-3.0-or-later
# Copyright: kernelnic.kni contributors
"""The KNI request protocol, userspace side (docs/kni-abi.md §2.4, §2.5).

The kernel copies one 17-byte ``rte_kni_request`` into the sync area, puts the sync area's user VA into req_q and
waits up to 3 s (holding RTNL) for that same pointer on resp_q. We must poll: ``RequestHandler.poll`` reads the
request, runs the matching callback, writes ``result`` in place and, unless the request is async, answers.

Callbacks return 0 or a negative errno, which becomes the return value of the kernel ndo (``ip link`` shows it).
They run while the kernel holds RTNL, so they must not themselves need RTNL (no ``ip``, no netlink changes).
"""

from __future__ import annotations

import errno
from typing import Callable, NamedTuple, Optional, TypeVar

from ansible_collections.kernelnic.kni.plugins.module_utils._kni.abi import (
    MAC_ADDR_LEN,
    REQUEST,
    REQUEST_ASYNC_BIT,
    REQUEST_NEW_MTU,
    REQUEST_RESULT,
    REQUEST_RESULT_OFFSET,
    KniRequestError,
    RequestId,
)
from ansible_collections.kernelnic.kni.plugins.module_utils._kni.fifo import KniFifo


class KniRequest(NamedTuple):
    """One decoded ``rte_kni_request``."""

    req_id: int
    union: bytes  # the 8-byte union; use the properties below
    is_async: bool
    result: int

    @property
    def new_mtu(self) -> int:
        return REQUEST_NEW_MTU.unpack_from(self.union)[0]

    @property
    def flag(self) -> bool:
        """``if_up``, ``promiscusity`` or ``allmulti``: all are the union's first byte."""
        return self.union[0] != 0

    @property
    def mac_addr(self) -> bytes:
        return self.union[:MAC_ADDR_LEN]

    def describe(self) -> str:
        try:
            name = RequestId(self.req_id).name
        except ValueError:
            name = f"id {self.req_id}"
        return f"{name}{' (async)' if self.is_async else ''}"


def decode_request(area: memoryview) -> KniRequest:
    req_id, union, async_byte, result = REQUEST.unpack_from(area, 0)
    return KniRequest(req_id, union, bool(async_byte & REQUEST_ASYNC_BIT), result)


def encode_request(req_id: int, union: bytes = b"", *, is_async: bool = False, result: int = 0) -> bytes:
    """The bytes the kernel would put in the sync area (for tests and loopback fakes)."""
    return REQUEST.pack(req_id, union, REQUEST_ASYNC_BIT if is_async else 0, result)


class RequestCallbacks(NamedTuple):
    """Handlers for ``rte_kni_ops``; a missing one accepts the request (result 0), as librte_kni did."""

    change_mtu: Optional[Callable[[int], Optional[int]]] = None
    config_network_if: Optional[Callable[[bool], Optional[int]]] = None
    config_mac_address: Optional[Callable[[bytes], Optional[int]]] = None
    config_promiscuity: Optional[Callable[[bool], Optional[int]]] = None
    config_allmulticast: Optional[Callable[[bool], Optional[int]]] = None


ErrorHook = Callable[[KniRequest, BaseException], None]
Argument = TypeVar("Argument")


def _call(handler: Optional[Callable[[Argument], Optional[int]]], argument: Argument) -> int:
    if handler is None:
        return 0
    result = handler(argument)
    return 0 if result is None else int(result)


def _dispatch(callbacks: RequestCallbacks, request: KniRequest) -> int:
    req_id = request.req_id
    if req_id == RequestId.CHANGE_MTU:
        return _call(callbacks.change_mtu, request.new_mtu)
    if req_id == RequestId.CFG_NETWORK_IF:
        return _call(callbacks.config_network_if, request.flag)
    if req_id == RequestId.CHANGE_MAC_ADDR:
        return _call(callbacks.config_mac_address, request.mac_addr)
    if req_id == RequestId.CHANGE_PROMISC:
        return _call(callbacks.config_promiscuity, request.flag)
    if req_id == RequestId.CHANGE_ALLMULTI:
        return _call(callbacks.config_allmulticast, request.flag)
    return -errno.EINVAL  # includes UNKNOWN (0), which the kernel sends when no rx flag changed


def _error_result(exc: BaseException) -> int:
    if isinstance(exc, OSError) and exc.errno:
        return -exc.errno
    return -errno.EIO


class RequestHandler:
    """Serves one device's req_q/resp_q; call ``poll`` from the pump loop at least every few hundred ms."""

    def __init__(
        self,
        req_q: KniFifo,
        resp_q: KniFifo,
        sync_area: memoryview,
        sync_va: int,
        callbacks: RequestCallbacks,
        on_error: Optional[ErrorHook] = None,
    ) -> None:
        """``on_error`` receives callback exceptions; without it they are re-raised after the kernel is answered."""
        self._req_q = req_q
        self._resp_q = resp_q
        self._sync = sync_area
        self._sync_va = sync_va
        self.callbacks = callbacks
        self.on_error = on_error

    def poll(self) -> Optional[KniRequest]:
        """Serve the pending request, if any; returns it (with its final result) or None."""
        pointers = self._req_q.get()
        if not pointers:
            return None
        strays = [hex(pointer) for pointer in pointers if pointer != self._sync_va]
        if strays:
            raise KniRequestError(
                "request read",
                errno.EPROTO,
                f"req_q held {strays}, not the sync area 0x{self._sync_va:x}: the kernel and this process disagree "
                "about the device's memory",
            )
        # More than one entry means the kernel gave up (3 s timeout) on the older ones; the sync area holds only
        # the newest request and only that one can still have a waiter, so it is answered once.
        request = decode_request(self._sync)
        failure: Optional[BaseException] = None
        try:
            result = _dispatch(self.callbacks, request)
        except Exception as exc:  # pylint: disable=broad-exception-caught  # the kernel must still be answered
            failure = exc
            result = _error_result(exc)
        REQUEST_RESULT.pack_into(self._sync, REQUEST_RESULT_OFFSET, result)
        if not request.is_async and self._resp_q.put([self._sync_va]) != 1:
            raise KniRequestError("request respond", errno.ENOBUFS, "resp_q is full; the kernel is not draining it")
        served = request._replace(result=result)
        if failure is not None:
            if self.on_error is None:
                raise KniRequestError(
                    "request callback", -result, f"{served.describe()} callback failed: {failure!r}"
                ) from failure
            self.on_error(served, failure)
        return served
