# SPDX-License-Identifier: GPL-3.0-or-later
# Copyright: kernelnic.kni contributors
"""Fakes for kni-pump unit tests: a KNI host over an anonymous arena, a kernel played by hand, synchronous RTNL."""

from __future__ import annotations

import struct
import threading
from typing import Any, Callable, List, Optional, Tuple

from ansible_collections.kernelnic.kni.plugins.module_utils._kni.abi import (
    DEVICE_INFO,
    MBUF_DATA_OFF_OFFSET,
    MBUF_PKT_LEN_OFFSET,
    RequestId,
)
from ansible_collections.kernelnic.kni.plugins.module_utils._kni.device import DeviceConfig, KniDevice
from ansible_collections.kernelnic.kni.plugins.module_utils._kni.mbuf import MbufPool
from ansible_collections.kernelnic.kni.plugins.module_utils._kni.memory import anonymous_arena
from ansible_collections.kernelnic.kni.plugins.module_utils._kni.request_protocol import (
    KniRequest,
    RequestCallbacks,
    decode_request,
    encode_request,
)
from ansible_collections.kernelnic.kni.plugins.module_utils._pump.daemon_core import SystemView
from ansible_collections.kernelnic.kni.plugins.module_utils._pump.netlink import Job
from ansible_collections.kernelnic.kni.plugins.module_utils._pump.sizing import alloc_q_target

SEGMENT = 2 * 1024 * 1024


class FakeControl:
    def __init__(self) -> None:
        self.created: List[tuple] = []
        self.released: List[str] = []

    def create(self, info: bytearray) -> None:
        self.created.append(DEVICE_INFO.unpack(info))

    def release(self, name: str) -> None:
        self.released.append(name)


class FakeKni:
    """KniHost with a fake /dev/kni: devices are real KniDevice objects whose kernel side the test plays."""

    def __init__(self, pool_size: int = 256, alloc_q_target: Optional[int] = None) -> None:
        self.arena = anonymous_arena(16 * SEGMENT)
        self.alloc_q_target = alloc_q_target
        self.control = FakeControl()
        self.pool_size = pool_size
        self.devices: dict[str, KniDevice] = {}

    def create(
        self, config: DeviceConfig, callbacks: RequestCallbacks, on_error: Callable[[KniRequest, BaseException], None]
    ) -> Tuple[KniDevice, MbufPool]:
        pool = MbufPool(self.arena, f"pool_{config.name}", self.pool_size)
        target = alloc_q_target(self.pool_size) if self.alloc_q_target is None else self.alloc_q_target  # as KernelKni
        device = KniDevice(self.control, config, self.arena, pool, callbacks, on_error, alloc_q_target=target)  # type: ignore[arg-type]
        self.devices[config.name] = device
        return device, pool

    def release(self, device: KniDevice, pool: MbufPool) -> None:
        device.release()
        pool.close()
        self.devices.pop(device.name, None)

    def fileno(self) -> Optional[int]:
        return None  # the FIFOs must be polled, as with upstream's module

    def close(self) -> None:
        pass


class FakeLinks:
    """Records RTM_SETLINK calls; ``on_set`` lets a test play the kernel's reaction (e.g. an MTU request)."""

    def __init__(self) -> None:
        self.calls: List[Tuple[int, dict]] = []
        self.on_set: Optional[Callable[[int, dict], None]] = None

    def set_link(self, ifindex: int, **change: Any) -> None:
        self.calls.append((ifindex, change))
        if self.on_set is not None:
            self.on_set(ifindex, change)

    def add_address(self, ifindex: int, address: str) -> None:
        self.calls.append((ifindex, {"add_address": address}))


class ThreadWorker:
    """A real thread, as in the daemon, so jobs that wait for the pump thread do not deadlock."""

    def __init__(self) -> None:
        self.jobs: List[Job] = []

    def submit(self, function: Callable[[], None], description: str) -> Job:
        job = Job(function, description)
        self.jobs.append(job)

        def run() -> None:
            try:
                function()
            except Exception as exc:  # pylint: disable=broad-exception-caught
                job.error = exc
            finally:
                job.done.set()

        threading.Thread(target=run, daemon=True).start()
        return job

    def wait(self, timeout: float = 5.0) -> None:
        for job in self.jobs:
            assert job.done.wait(timeout), job.description


def fake_system(links: Optional[List[str]] = None) -> SystemView:
    names = ["lo", "eth0", *(links or [])]
    return SystemView(lambda: list(names), lambda: [0, 1], lambda name: 100 + sum(map(ord, name)))


def kernel_transmit(device: KniDevice, payload: bytes) -> None:
    """What kni_net_tx does: fill an alloc_q mbuf, post it on tx_q."""
    view, base = device.arena.view, device.arena.base_va
    (va,) = device.fifo("alloc").get(1)
    buf_addr = struct.unpack_from("<Q", view, va - base)[0]
    data_off = struct.unpack_from("<H", view, va - base + MBUF_DATA_OFF_OFFSET)[0]
    start = buf_addr - base + data_off
    view[start : start + len(payload)] = payload
    struct.pack_into("<IH", view, va - base + MBUF_PKT_LEN_OFFSET, len(payload), len(payload))
    device.fifo("tx").put([va])


def kernel_receive(device: KniDevice) -> List[bytes]:
    """What the kthread does with rx_q: read each frame, hand the mbuf back through free_q."""
    vas = device.fifo("rx").get()
    frames = device.pool.read_packets(vas)
    device.fifo("free").put(vas)
    return frames


def kernel_request(device: KniDevice, req_id: RequestId, union: bytes) -> None:
    sync = device.arena.memzone(f"kni_sync_{device.name}")
    sync.view[:17] = encode_request(req_id, union)
    device.fifo("req").put([sync.va])


def kernel_answer(device: KniDevice) -> Optional[int]:
    """The result of the answered request, or None if the pump has not answered yet."""
    sync = device.arena.memzone(f"kni_sync_{device.name}")
    if not device.fifo("resp").get():
        return None
    return decode_request(sync.view).result
