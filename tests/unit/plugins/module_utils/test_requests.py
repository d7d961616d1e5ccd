# SPDX-License-Identifier: GPL-3.0-or-later
# Copyright: kernelnic.kni contributors
"""Request round trips through fake req_q/resp_q/sync memory, playing the kernel's part by hand."""

from __future__ import annotations

import errno
import struct

import pytest
from ansible_collections.kernelnic.kni.plugins.module_utils._kni.abi import (
    FIFO_AREA_SIZE,
    REQUEST_RESULT_OFFSET,
    KniRequestError,
    RequestId,
)
from ansible_collections.kernelnic.kni.plugins.module_utils._kni.fifo import KniFifo
from ansible_collections.kernelnic.kni.plugins.module_utils._kni.request_protocol import (
    KniRequest,
    RequestCallbacks,
    RequestHandler,
    decode_request,
    encode_request,
)

SYNC_VA = 0x7F00_1234_5000


class FakeKernel:
    """The kernel side of one device: fills the sync area, posts sync_va, collects the answer."""

    def __init__(self) -> None:
        self.req_area = bytearray(FIFO_AREA_SIZE)
        self.resp_area = bytearray(FIFO_AREA_SIZE)
        self.sync = bytearray(FIFO_AREA_SIZE)
        self.req_q = KniFifo.initialise(self.req_area)
        self.resp_q = KniFifo.initialise(self.resp_area)

    def handler(self, callbacks: RequestCallbacks, **kwargs: object) -> RequestHandler:
        return RequestHandler(
            KniFifo.attach(self.req_area),
            KniFifo.attach(self.resp_area),
            memoryview(self.sync),
            SYNC_VA,
            callbacks,
            **kwargs,  # type: ignore[arg-type]
        )

    def send(self, req_id: int, union: bytes = b"", is_async: bool = False, pointer: int = SYNC_VA) -> None:
        self.sync[:17] = encode_request(req_id, union, is_async=is_async)
        self.req_q.put([pointer])

    def answer(self) -> tuple[list[int], int]:
        return self.resp_q.get(), struct.unpack_from("<i", self.sync, REQUEST_RESULT_OFFSET)[0]


def test_decode_union_members() -> None:
    mtu = decode_request(memoryview(encode_request(RequestId.CHANGE_MTU, struct.pack("<I", 9000))))
    assert (mtu.req_id, mtu.new_mtu, mtu.is_async, mtu.result) == (1, 9000, False, 0)
    mac = decode_request(memoryview(encode_request(3, b"\x02\x00\x00\x00\x00\x01\xff\xff", is_async=True)))
    assert mac.mac_addr == b"\x02\x00\x00\x00\x00\x01" and mac.is_async
    assert KniRequest(2, b"\x01" + bytes(7), False, 0).flag
    assert KniRequest(9, bytes(8), True, 0).describe() == "id 9 (async)"


@pytest.mark.parametrize(
    ("req_id", "union", "callback", "argument"),
    [
        (RequestId.CHANGE_MTU, struct.pack("<I", 1400), "change_mtu", 1400),
        (RequestId.CFG_NETWORK_IF, b"\x01", "config_network_if", True),
        (RequestId.CFG_NETWORK_IF, b"\x00", "config_network_if", False),
        (RequestId.CHANGE_MAC_ADDR, b"\x02\x11\x22\x33\x44\x55", "config_mac_address", b"\x02\x11\x22\x33\x44\x55"),
        (RequestId.CHANGE_PROMISC, b"\x01", "config_promiscuity", True),
        (RequestId.CHANGE_ALLMULTI, b"\x00", "config_allmulticast", False),
    ],
)
def test_round_trip_dispatches_and_answers(req_id: int, union: bytes, callback: str, argument: object) -> None:
    kernel = FakeKernel()
    calls: list[object] = []

    def record(value: object) -> int:
        calls.append(value)
        return -errno.EOPNOTSUPP

    handler = kernel.handler(RequestCallbacks(**{callback: record}))
    assert handler.poll() is None  # nothing pending yet
    kernel.send(req_id, union)
    served = handler.poll()
    assert calls == [argument]
    assert served is not None and served.result == -errno.EOPNOTSUPP and served.req_id == req_id
    assert kernel.answer() == ([SYNC_VA], -errno.EOPNOTSUPP)


def test_missing_callback_accepts_and_unknown_id_is_einval() -> None:
    kernel = FakeKernel()
    handler = kernel.handler(RequestCallbacks())
    kernel.send(RequestId.CHANGE_MTU, struct.pack("<I", 1500))
    handler.poll()
    assert kernel.answer() == ([SYNC_VA], 0)
    kernel.send(RequestId.UNKNOWN)
    handler.poll()
    assert kernel.answer() == ([SYNC_VA], -errno.EINVAL)
    kernel.send(42)
    handler.poll()
    assert kernel.answer() == ([SYNC_VA], -errno.EINVAL)


def test_async_requests_get_no_response() -> None:
    kernel = FakeKernel()
    seen: list[bool] = []
    handler = kernel.handler(RequestCallbacks(config_network_if=lambda up: seen.append(up) or 0))
    kernel.send(RequestId.CFG_NETWORK_IF, b"\x00", is_async=True)
    served = handler.poll()
    assert served is not None and served.is_async and seen == [False]
    assert kernel.answer() == ([], 0)


def test_callback_exception_still_answers_then_raises() -> None:
    kernel = FakeKernel()

    def broken(_mtu: int) -> int:
        raise OSError(errno.EBUSY, "device busy")

    handler = kernel.handler(RequestCallbacks(change_mtu=broken))
    kernel.send(RequestId.CHANGE_MTU, struct.pack("<I", 9000))
    with pytest.raises(KniRequestError) as caught:
        handler.poll()
    assert (caught.value.step, caught.value.errno) == ("request callback", errno.EBUSY)
    assert "CHANGE_MTU callback failed" in str(caught.value)
    assert kernel.answer() == ([SYNC_VA], -errno.EBUSY)


def test_error_hook_receives_failures_instead() -> None:
    kernel = FakeKernel()
    failures: list[tuple[KniRequest, BaseException]] = []
    handler = kernel.handler(
        RequestCallbacks(config_promiscuity=lambda on: 1 // 0), on_error=lambda req, exc: failures.append((req, exc))
    )
    kernel.send(RequestId.CHANGE_PROMISC, b"\x01")
    served = handler.poll()
    assert served is not None and served.result == -errno.EIO
    assert isinstance(failures[0][1], ZeroDivisionError) and failures[0][0].result == -errno.EIO
    assert kernel.answer() == ([SYNC_VA], -errno.EIO)


def test_foreign_pointer_is_a_protocol_error() -> None:
    kernel = FakeKernel()
    handler = kernel.handler(RequestCallbacks())
    kernel.send(RequestId.CHANGE_MTU, pointer=0xDEAD000)
    with pytest.raises(KniRequestError) as caught:
        handler.poll()
    assert caught.value.errno == errno.EPROTO and "0xdead000" in str(caught.value)
    assert kernel.answer() == ([], 0)


def test_stale_entries_are_answered_once() -> None:
    kernel = FakeKernel()
    calls: list[int] = []
    handler = kernel.handler(RequestCallbacks(change_mtu=lambda mtu: calls.append(mtu) or 0))
    kernel.send(RequestId.CHANGE_MTU, struct.pack("<I", 1000))  # the kernel timed out on this one...
    kernel.send(RequestId.CHANGE_MTU, struct.pack("<I", 2000))  # ...and overwrote the sync area
    handler.poll()
    assert calls == [2000]
    assert kernel.answer() == ([SYNC_VA], 0)


def test_full_resp_q_is_reported() -> None:
    kernel = FakeKernel()
    kernel.resp_q.put([1] * 1023)
    handler = kernel.handler(RequestCallbacks())
    kernel.send(RequestId.CHANGE_MTU)
    with pytest.raises(KniRequestError) as caught:
        handler.poll()
    assert caught.value.errno == errno.ENOBUFS
