# SPDX-License-Identifier: GPL-3.0-or-later
# Copyright: kernelnic.kni contributors
"""KniDevice and KniControl without the kernel module: a fake control file and a hand-played kernel side."""

from __future__ import annotations

import errno
import mmap
import struct
from pathlib import Path

import pytest
from ansible_collections.kernelnic.kni.plugins.module_utils._kni.abi import (
    DEVICE_INFO,
    MBUF_DATA_OFF_OFFSET,
    MBUF_PKT_LEN_OFFSET,
    IovaMode,
    RequestId,
)
from ansible_collections.kernelnic.kni.plugins.module_utils._kni.device import (
    DeviceConfig,
    KniControl,
    KniDevice,
    KniDeviceError,
    KniError,
    pack_device_info,
    validate_name,
)
from ansible_collections.kernelnic.kni.plugins.module_utils._kni.mbuf import MbufPool
from ansible_collections.kernelnic.kni.plugins.module_utils._kni.memory import (
    Arena,
    PhysicalIova,
    anonymous_arena,
    buffer_address,
)
from ansible_collections.kernelnic.kni.plugins.module_utils._kni.request_protocol import (
    RequestCallbacks,
    encode_request,
)

SEGMENT = 2 * 1024 * 1024


class FakeControl:
    """Records what KniDevice asks of /dev/kni; can be told to fail CREATE."""

    def __init__(self, create_error: int = 0) -> None:
        self.created: list[tuple] = []
        self.released: list[str] = []
        self.create_error = create_error
        self.release_error = 0

    def create(self, info: bytearray) -> None:
        if self.create_error:
            raise KniDeviceError("ioctl CREATE", self.create_error, "refused")
        self.created.append(DEVICE_INFO.unpack(info))

    def release(self, name: str) -> None:
        if self.release_error:
            raise KniDeviceError("ioctl RELEASE", self.release_error, "refused")
        self.released.append(name)


def make_device(arena: Arena | None = None, **config: object) -> tuple[KniDevice, FakeControl, MbufPool]:
    arena = arena or anonymous_arena(4 * SEGMENT)
    pool = MbufPool(arena, "pool", 256)
    control = FakeControl()
    device = KniDevice(control, DeviceConfig(name="vEth0", **config), arena, pool)  # type: ignore[arg-type]
    return device, control, pool


def kernel_transmit(device: KniDevice, payload: bytes) -> None:
    """What kni_net_tx does: take an alloc_q mbuf, copy the frame in, set the lengths, post it on tx_q."""
    view, base = device.arena.view, device.arena.base_va
    (va,) = device.fifo("alloc").get(1)
    buf_addr = struct.unpack_from("<Q", view, va - base)[0]
    data_off = struct.unpack_from("<H", view, va - base + MBUF_DATA_OFF_OFFSET)[0]
    start = buf_addr - base + data_off
    view[start : start + len(payload)] = payload
    struct.pack_into("<IH", view, va - base + MBUF_PKT_LEN_OFFSET, len(payload), len(payload))
    device.fifo("tx").put([va])


def test_validate_name() -> None:
    assert validate_name("vEth0") == b"vEth0"
    for bad in ("", "a" * 16, "a/b", "a b", ".", "x:y", "eth\u00e9"):
        with pytest.raises(KniDeviceError) as caught:
            validate_name(bad)
        assert (caught.value.step, caught.value.errno) == ("device name", errno.EINVAL)


def test_pack_device_info_fields() -> None:
    config = DeviceConfig(
        "kni0",
        mtu=1400,
        min_mtu=68,
        max_mtu=9000,
        mac_addr=b"\x02\x00\x00\x00\x00\x01",
        core_id=3,
        force_bind=True,
        group_id=7,
    )
    iovas = {"tx": 1, "rx": 2, "alloc": 3, "free": 4, "req": 5, "resp": 6}
    info = pack_device_info(config, iovas, 0x7F00, 7, IovaMode.VA, 2048)
    fields = DEVICE_INFO.unpack(info)
    assert fields[0] == b"kni0".ljust(16, b"\0")
    assert fields[1:11] == (1, 2, 3, 4, 5, 6, 7, 0x7F00, 0, 0)
    assert fields[11:] == (7, 3, 1, 2048, 1400, 68, 9000, b"\x02\x00\x00\x00\x00\x01", 1)
    assert info[104] == 1 and info[131:] == bytes(5)  # force_bind bit 0; padding stays zero
    with pytest.raises(KniDeviceError, match="6 bytes"):
        pack_device_info(config._replace(mac_addr=b"\x01"), iovas, 0, 0, IovaMode.PA, 0)


def test_create_fills_device_info_and_prefills_alloc_q() -> None:
    device, control, pool = make_device(mtu=1500)
    (fields,) = control.created
    zones = {
        queue: device.arena.memzone(f"kni_{queue}_vEth0")
        for queue in ("tx", "rx", "alloc", "free", "req", "resp", "sync")
    }
    assert fields[1:8] == tuple(zones[queue].iova for queue in ("tx", "rx", "alloc", "free", "req", "resp", "sync"))
    assert fields[8] == zones["sync"].va
    assert fields[14] == pool.max_packet_size and fields[19] == IovaMode.VA
    assert device.fifo("alloc").count() == 128 and pool.available == 256 - 128
    assert all(zone.size == 8208 and zone.va % 64 == 0 for zone in zones.values())


def test_failed_create_gives_everything_back() -> None:
    arena = anonymous_arena(4 * SEGMENT)
    pool = MbufPool(arena, "pool", 64)
    with pytest.raises(KniDeviceError) as caught:
        KniDevice(FakeControl(errno.ENODEV), DeviceConfig("vEth0"), arena, pool)  # type: ignore[arg-type]
    assert caught.value.errno == errno.ENODEV
    assert pool.available == 64
    arena.reserve("kni_tx_vEth0", 8208)  # the name is free again


def test_mbuf_size_cannot_exceed_the_pool() -> None:
    arena = anonymous_arena(4 * SEGMENT)
    with pytest.raises(KniDeviceError, match="exceeds"):
        KniDevice(
            FakeControl(),
            DeviceConfig("vEth0", mbuf_size=9000),
            arena,  # type: ignore[arg-type]
            MbufPool(arena, "pool", 8),
        )


def test_ingress_tx_burst_and_free_q_recycling() -> None:
    device, _unused, pool = make_device()
    packets = pool.write_packets([b"a" * 60, b"b" * 60, b"c" * 60])
    assert device.tx_burst(packets) == 3
    kernel_rx = device.fifo("rx").get()
    assert kernel_rx == packets  # IOVA=VA: PA form is the address itself
    in_use = pool.in_use
    device.fifo("free").put(kernel_rx)  # the kthread consumed them
    assert device.tx_burst([]) == 0
    assert pool.in_use == in_use - 3


def test_tx_burst_without_reclaim_leaves_free_q_alone() -> None:
    device, _unused, pool = make_device()
    first = pool.write_packets([b"a" * 60] * 2)
    device.tx_burst(first)
    device.fifo("free").put(device.fifo("rx").get())
    in_use = pool.in_use
    assert device.tx_burst(pool.write_packets([b"b" * 60]), reclaim=0) == 1
    assert device.fifo("free").count() == 2
    assert pool.in_use == in_use + 1
    assert device.free_completed() == 2
    assert pool.in_use == in_use - 1


def test_tx_burst_stops_when_rx_q_is_full() -> None:
    device, _unused, pool = make_device()
    device.fifo("rx").put([0] * 1020)
    packets = pool.write_packets([b"x"] * 5)
    assert device.tx_burst(packets) == 3


def test_egress_rx_burst_reads_and_refills() -> None:
    device, _unused, pool = make_device()
    for frame in (b"\x01" * 60, b"\x02" * 1514):
        kernel_transmit(device, frame)
    assert device.fifo("alloc").count() == 126
    received = device.rx_burst()
    assert pool.read_packets(received) == [b"\x01" * 60, b"\x02" * 1514]
    assert device.fifo("alloc").count() == 128  # topped up to alloc_q_target, no further
    pool.free_burst(received)


def test_rx_burst_refills_an_empty_alloc_q() -> None:
    device, _unused, _unused2 = make_device()
    device.fifo("alloc").get()
    assert device.rx_burst() == []
    assert device.fifo("alloc").count() == 128


def test_rx_burst_rejects_foreign_pointers() -> None:
    device, _unused, _unused2 = make_device()
    device.fifo("tx").put([0x1000])
    with pytest.raises(KniError) as caught:
        device.rx_burst()
    assert (caught.value.step, caught.value.errno) == ("tx_q read", errno.EFAULT)


def test_release_recovers_every_mbuf_and_memzone() -> None:
    device, control, pool = make_device()
    device.tx_burst(pool.write_packets([b"p"] * 4))  # left in rx_q
    kernel_transmit(device, b"q" * 60)  # one in tx_q
    device.fifo("free").put(device.fifo("rx").get(2))  # two already handed back
    device.release()
    assert control.released == ["vEth0"]
    assert pool.available == 256
    device.arena.reserve("kni_sync_vEth0", 8208)


def test_pa_mode_uses_physical_addresses() -> None:
    buffer = mmap.mmap(-1, 3 * SEGMENT)
    arena = Arena(buffer, SEGMENT, PhysicalIova(buffer_address(buffer), SEGMENT, [0x5 << 30, 0x2 << 30, 0x9 << 30]))
    device, control, pool = make_device(arena)
    (fields,) = control.created
    assert fields[19] == IovaMode.PA
    assert fields[7] == arena.iova(fields[8])  # sync_phys is the IOVA of sync_va
    packets = pool.write_packets([b"z" * 64])
    device.tx_burst(packets)
    assert device.fifo("rx").get() == [arena.iova(packets[0])]
    device.fifo("rx").put([arena.iova(packets[0])])
    device.release()
    assert pool.available == 256


def test_requests_are_served_through_the_device() -> None:
    arena = anonymous_arena(4 * SEGMENT)
    pool = MbufPool(arena, "pool", 64)
    mtus: list[int] = []
    device = KniDevice(
        FakeControl(),
        DeviceConfig("vEth0"),
        arena,
        pool,  # type: ignore[arg-type]
        RequestCallbacks(change_mtu=lambda mtu: mtus.append(mtu) or 0),
    )
    sync = arena.memzone("kni_sync_vEth0")
    sync.view[:17] = encode_request(RequestId.CHANGE_MTU, struct.pack("<I", 9000))
    device.fifo("req").put([sync.va])
    served = device.poll_requests()
    assert served is not None and mtus == [9000]
    assert device.fifo("resp").get() == [sync.va]


def test_update_link_writes_only_on_change(tmp_path: Path) -> None:
    device, _unused, _unused2 = make_device(arena=None)
    device.sysfs_net = str(tmp_path)
    carrier = tmp_path / "vEth0" / "carrier"
    carrier.parent.mkdir()
    carrier.write_text("0\n")
    assert device.update_link(True) is False
    assert carrier.read_text().startswith("1")
    assert device.update_link(True) is True
    with pytest.raises(KniDeviceError) as caught:
        device.sysfs_net = str(tmp_path / "nowhere")
        device.update_link(False)
    assert (caught.value.step, caught.value.errno) == ("carrier update", errno.ENOENT)
    assert "no such network interface" in str(caught.value)


def test_control_open_errors_are_explained(tmp_path: Path) -> None:
    with pytest.raises(KniDeviceError) as caught:
        KniControl(str(tmp_path / "kni"))
    assert (caught.value.step, caught.value.errno) == ("open /dev/kni", errno.ENOENT)
    assert "rte_kni module is not loaded" in str(caught.value)


def test_control_ioctl_errors_name_the_step(tmp_path: Path) -> None:
    plain = tmp_path / "not-a-device"
    plain.write_bytes(b"")
    with KniControl(str(plain)) as control:
        assert control.probe() is False
        with pytest.raises(KniDeviceError) as caught:
            control.release("vEth0")
        assert (caught.value.step, caught.value.errno) == ("ioctl RELEASE", errno.ENOTTY)
        with pytest.raises(KniDeviceError) as caught:
            control.register_memory(0x1000, 100)
        assert caught.value.errno == errno.EINVAL and "page aligned" in str(caught.value)
        with pytest.raises(KniDeviceError) as caught:
            control.register_arena(anonymous_arena(SEGMENT))
        assert (caught.value.step, caught.value.errno) == ("ioctl REGISTER_MEM", errno.ENOTTY)
    with pytest.raises(KniDeviceError) as caught:
        control.create(bytearray(136))
    assert caught.value.errno == errno.EBADF


def test_failed_release_keeps_memory_reserved_unless_the_device_is_gone() -> None:
    device, control, pool = make_device()
    control.release_error = errno.EINTR
    with pytest.raises(KniDeviceError):
        device.release()
    assert device.arena.memzone("kni_rx_vEth0")  # still reserved: the kernel may be using it
    control.release_error = errno.EINVAL  # "no such device": safe to reclaim
    device.release()
    assert pool.available == 256
    with pytest.raises(KeyError):
        device.arena.memzone("kni_rx_vEth0")


def test_control_open_busy_names_multi_open(monkeypatch: pytest.MonkeyPatch) -> None:
    def busy(path: str, flags: int) -> int:
        raise OSError(errno.EBUSY, "Device or resource busy", path)

    monkeypatch.setattr("os.open", busy)
    with pytest.raises(KniDeviceError) as caught:
        KniControl()
    assert (caught.value.step, caught.value.errno) == ("open /dev/kni", errno.EBUSY)
    assert str(caught.value) == (
        "open /dev/kni: /dev/kni: held by another process in this network namespace; load rte_kni with "
        "multi_open=on to share it [EBUSY: Device or resource busy]"
    )
