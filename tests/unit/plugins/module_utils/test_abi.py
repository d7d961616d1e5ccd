# SPDX-License-Identifier: GPL-3.0-or-later
# Copyright: kernelnic.kni contributors
"""The Python ABI definition against the tables of docs/kni-abi.md (§1.2, §2.1-§2.4)."""

from __future__ import annotations

import errno

import pytest
from ansible_collections.kernelnic.kni.plugins.module_utils._kni import abi


def test_ioctl_numbers_match_x86_64_values() -> None:
    assert abi.KNI_IOCTL_TEST == 0xC0040001
    assert abi.KNI_IOCTL_CREATE == 0xC0880002
    assert abi.KNI_IOCTL_RELEASE == 0xC0880003


def test_ioctl_field_decoding() -> None:
    assert [abi.ioc_number(r) for r in (abi.KNI_IOCTL_TEST, abi.KNI_IOCTL_CREATE, abi.KNI_IOCTL_RELEASE)] == [1, 2, 3]
    assert abi.ioc_size(abi.KNI_IOCTL_CREATE) == 136
    with pytest.raises(ValueError):
        abi.iowr(0, 1, 1 << 14)


def _field_offsets(layout, fields: tuple[str, ...], sample: dict[str, object]) -> dict[str, int]:
    """Pack each field alone with a non-zero value and see where its first non-zero byte lands."""
    zero = {name: (b"" if isinstance(value, bytes) else 0) for name, value in sample.items()}
    offsets = {}
    for name in fields:
        values = dict(zero, **{name: sample[name]})
        packed = layout.pack(*(values[field] for field in fields))
        offsets[name] = next(index for index, byte in enumerate(packed) if byte)
    return offsets


def test_device_info_layout() -> None:
    assert abi.DEVICE_INFO_SIZE == 136
    sample = {name: 1 for name in abi.DEVICE_INFO_FIELDS}
    sample.update(name=b"x", mac_addr=b"\x02")
    assert _field_offsets(abi.DEVICE_INFO, abi.DEVICE_INFO_FIELDS, sample) == abi.DEVICE_INFO_OFFSETS
    expected = {
        "name": 0,
        "tx_phys": 16,
        "sync_phys": 64,
        "sync_va": 72,
        "mbuf_va": 80,
        "mbuf_phys": 88,
        "group_id": 96,
        "core_id": 100,
        "force_bind": 104,
        "mbuf_size": 108,
        "mtu": 112,
        "min_mtu": 116,
        "max_mtu": 120,
        "mac_addr": 124,
        "iova_mode": 130,
    }
    assert {name: abi.DEVICE_INFO_OFFSETS[name] for name in expected} == expected


def test_fifo_layout() -> None:
    assert abi.FIFO_HEADER_SIZE == 16
    assert (abi.FIFO_WRITE_OFFSET, abi.FIFO_READ_OFFSET, abi.FIFO_LEN_OFFSET, abi.FIFO_ELEM_SIZE_OFFSET) == (
        0,
        4,
        8,
        12,
    )
    assert abi.FIFO_BUFFER_OFFSET == 16
    assert abi.FIFO_AREA_SIZE == 8208
    assert abi.FIFO_COUNT_MAX == 1024


def test_mbuf_layout() -> None:
    assert abi.MBUF_SIZE == 128
    assert abi.MBUF_HEAD_SIZE == 72
    names = (
        "buf_addr",
        "buf_iova",
        "data_off",
        "refcnt",
        "nb_segs",
        "port",
        "ol_flags",
        "packet_type",
        "pkt_len",
        "data_len",
        "vlan_tci",
        "hash",
        "vlan_tci_outer",
        "buf_len",
        "pool",
        "next",
    )
    assert names == abi.MBUF_HEAD_FIELDS  # what pack_mbuf_head names, checked against the offsets below
    sample = {name: 1 for name in names}
    sample["hash"] = b"\x01"
    offsets = _field_offsets(abi.MBUF_HEAD, names, sample)
    assert offsets == {
        "buf_addr": 0,
        "buf_iova": 8,
        "data_off": 16,
        "refcnt": 18,
        "nb_segs": 20,
        "port": 22,
        "ol_flags": 24,
        "packet_type": 32,
        "pkt_len": 36,
        "data_len": 40,
        "vlan_tci": 42,
        "hash": 44,
        "vlan_tci_outer": 52,
        "buf_len": 54,
        "pool": 56,
        "next": 64,
    }
    named = {
        "buf_addr": abi.MBUF_BUF_ADDR_OFFSET,
        "buf_iova": abi.MBUF_BUF_IOVA_OFFSET,
        "data_off": abi.MBUF_DATA_OFF_OFFSET,
        "nb_segs": abi.MBUF_NB_SEGS_OFFSET,
        "ol_flags": abi.MBUF_OL_FLAGS_OFFSET,
        "pkt_len": abi.MBUF_PKT_LEN_OFFSET,
        "data_len": abi.MBUF_DATA_LEN_OFFSET,
        "buf_len": abi.MBUF_BUF_LEN_OFFSET,
        "pool": abi.MBUF_POOL_OFFSET,
        "next": abi.MBUF_NEXT_OFFSET,
    }
    assert {name: offsets[name] for name in named} == named
    # The partial structs start where their first field lives and stay contiguous with it.
    assert abi.MBUF_PACKET_FIELDS.size == abi.MBUF_DATA_LEN_OFFSET + 2 - abi.MBUF_DATA_OFF_OFFSET
    assert abi.MBUF_LENGTHS.size == abi.MBUF_DATA_LEN_OFFSET + 2 - abi.MBUF_PKT_LEN_OFFSET


def test_request_layout() -> None:
    assert abi.REQUEST_SIZE == 17
    packed = abi.REQUEST.pack(0x01020304, b"\xaa" * 8, abi.REQUEST_ASYNC_BIT, -2)
    assert packed[abi.REQUEST_ID_OFFSET : 4] == b"\x04\x03\x02\x01"
    assert packed[abi.REQUEST_UNION_OFFSET : 12] == b"\xaa" * 8
    assert packed[abi.REQUEST_ASYNC_OFFSET] == 1
    assert packed[abi.REQUEST_RESULT_OFFSET :] == (-2).to_bytes(4, "little", signed=True)


def test_request_ids_and_sizes() -> None:
    assert [int(member) for member in abi.RequestId] == [0, 1, 2, 3, 4, 5, 6]
    assert abi.RequestId.CHANGE_MAC_ADDR == 3
    assert abi.NAMESIZE == 16
    assert (abi.IovaMode.PA, abi.IovaMode.VA) == (0, 1)


def test_error_names_step_and_errno() -> None:
    error = abi.KniDeviceError("ioctl CREATE", errno.EBUSY, "KNI device 'vEth0': no netdev")
    assert isinstance(error, abi.KniError)
    assert (error.step, error.errno) == ("ioctl CREATE", errno.EBUSY)
    assert str(error) == "ioctl CREATE: KNI device 'vEth0': no netdev [EBUSY: Device or resource busy]"
    assert str(abi.KniFifoError("fifo init", 0, "bad length")) == "fifo init: bad length"


def test_mbuf_header_tail_is_the_end_of_the_head() -> None:
    """MBUF_HEADER_TAIL (written on ingress after the lengths) covers data_len's end to next's end, as MBUF_HEAD."""
    assert abi.MBUF_HEAD.format.endswith(abi.MBUF_HEADER_TAIL.format.lstrip("<"))
    assert abi.MBUF_DATA_LEN_OFFSET + 2 + abi.MBUF_HEADER_TAIL.size == abi.MBUF_NEXT_OFFSET + 8 == abi.MBUF_HEAD.size
    assert abi.MBUF_PKT_LEN_OFFSET + abi.MBUF_LENGTHS.size == abi.MBUF_DATA_LEN_OFFSET + 2


def test_pack_mbuf_head_names_every_field() -> None:
    named = bytearray(abi.MBUF_HEAD_SIZE)
    abi.pack_mbuf_head(named, 0, buf_addr=0x1000, buf_iova=0x2000, data_off=128, refcnt=1, nb_segs=1, pkt_len=60)
    positional = bytearray(abi.MBUF_HEAD_SIZE)
    abi.MBUF_HEAD.pack_into(positional, 0, 0x1000, 0x2000, 128, 1, 1, 0, 0, 0, 60, 0, 0, b"", 0, 0, 0, 0)
    assert named == positional
    assert len(abi.MBUF_HEAD_FIELDS) == len(abi.MBUF_HEAD.unpack(positional))
    with pytest.raises(TypeError, match="not mbuf head fields"):
        abi.pack_mbuf_head(named, 0, length=1)
