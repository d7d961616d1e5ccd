# SPDX-License-Identifier: GPL-3.0-or-later
# Copyright: kernelnic.kni contributors
"""Compile a C probe against kmod/kni_abi.h with the host's gcc and compare every layout fact with ``_kni.abi``.

This test fails, never skips, when the header or the compiler is missing: an unchecked ABI is a bug.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest
from ansible_collections.kernelnic.kni.plugins.module_utils._kni import abi

REPO_ROOT = Path(__file__).resolve().parents[2]
HEADER = REPO_ROOT / "kmod" / "kni_abi.h"

# (key printed by the probe, C expression)
PROBES = [
    ("ioctl.test", "RTE_KNI_IOCTL_TEST"),
    ("ioctl.create", "RTE_KNI_IOCTL_CREATE"),
    ("ioctl.release", "RTE_KNI_IOCTL_RELEASE"),
    ("ioctl.register_mem", "RTE_KNI_IOCTL_REGISTER_MEM"),
    ("namesize", "RTE_KNI_NAMESIZE"),
    ("cache_line", "RTE_KNI_CACHE_LINE_SIZE"),
    ("mem_regions_max", "RTE_KNI_MEM_REGIONS_MAX"),
    ("mem_region_max_len", "RTE_KNI_MEM_REGION_MAX_LEN"),
    ("device_info.sizeof", "sizeof(struct rte_kni_device_info)"),
    ("fifo.sizeof", "sizeof(struct rte_kni_fifo)"),
    ("mbuf.sizeof", "sizeof(struct rte_kni_mbuf)"),
    ("mbuf.alignof", "_Alignof(struct rte_kni_mbuf)"),
    ("request.sizeof", "sizeof(struct rte_kni_request)"),
    ("mem_region.sizeof", "sizeof(struct rte_kni_mem_region)"),
]
PROBES += [
    (f"device_info.{field}", f"offsetof(struct rte_kni_device_info, {field})")
    for field in abi.DEVICE_INFO_FIELDS
    if field != "force_bind"
]
PROBES += [
    (f"fifo.{field}", f"offsetof(struct rte_kni_fifo, {field})")
    for field in ("write", "read", "len", "elem_size", "buffer")
]
MBUF_FIELDS = ("buf_addr", "buf_iova", "data_off", "nb_segs", "ol_flags", "pkt_len", "data_len", "pool", "next")
PROBES += [(f"mbuf.{field}", f"offsetof(struct rte_kni_mbuf, {field})") for field in MBUF_FIELDS]
PROBES += [
    (f"request.{field}", f"offsetof(struct rte_kni_request, {field})")
    for field in ("req_id", "new_mtu", "if_up", "mac_addr", "promiscusity", "allmulti", "result")
]
PROBES += [
    (f"mem_region.{field}", f"offsetof(struct rte_kni_mem_region, {field})")
    for field in ("va", "len", "flags", "index")
]
PROBES += [(f"req.{member.name}", f"RTE_KNI_REQ_{member.name}") for member in abi.RequestId]

# Bitfields have no offsetof: set the bit in a zeroed object and report which byte changed and how.
BITFIELD_PROBE = r"""
static void bitfield(const char *key, const unsigned char *bytes, size_t size)
{
    for (size_t i = 0; i < size; i++)
        if (bytes[i])
            printf("%s %zu:%u\n", key, i, bytes[i]);
}
"""
BITFIELD_CALLS = r"""
    { struct rte_kni_device_info info; memset(&info, 0, sizeof(info)); info.force_bind = 1;
      bitfield("device_info.force_bind", (const unsigned char *)&info, sizeof(info)); }
    { struct rte_kni_request req; memset(&req, 0, sizeof(req)); req.async = 1;
      bitfield("request.async", (const unsigned char *)&req, sizeof(req)); }
"""


def python_side() -> dict[str, str]:
    expected = {
        "ioctl.test": abi.KNI_IOCTL_TEST,
        "ioctl.create": abi.KNI_IOCTL_CREATE,
        "ioctl.release": abi.KNI_IOCTL_RELEASE,
        "ioctl.register_mem": abi.KNI_IOCTL_REGISTER_MEM,
        "namesize": abi.NAMESIZE,
        "cache_line": abi.CACHE_LINE_SIZE,
        "mem_regions_max": abi.MEM_REGIONS_MAX,
        "mem_region_max_len": abi.MEM_REGION_MAX_LEN,
        "device_info.sizeof": abi.DEVICE_INFO_SIZE,
        "fifo.sizeof": abi.FIFO_HEADER_SIZE,
        "mbuf.sizeof": abi.MBUF_SIZE,
        "mbuf.alignof": abi.MBUF_ALIGN,
        "request.sizeof": abi.REQUEST_SIZE,
        "mem_region.sizeof": abi.MEM_REGION_SIZE,
        "fifo.write": abi.FIFO_WRITE_OFFSET,
        "fifo.read": abi.FIFO_READ_OFFSET,
        "fifo.len": abi.FIFO_LEN_OFFSET,
        "fifo.elem_size": abi.FIFO_ELEM_SIZE_OFFSET,
        "fifo.buffer": abi.FIFO_BUFFER_OFFSET,
        "mbuf.buf_addr": abi.MBUF_BUF_ADDR_OFFSET,
        "mbuf.buf_iova": abi.MBUF_BUF_IOVA_OFFSET,
        "mbuf.data_off": abi.MBUF_DATA_OFF_OFFSET,
        "mbuf.nb_segs": abi.MBUF_NB_SEGS_OFFSET,
        "mbuf.ol_flags": abi.MBUF_OL_FLAGS_OFFSET,
        "mbuf.pkt_len": abi.MBUF_PKT_LEN_OFFSET,
        "mbuf.data_len": abi.MBUF_DATA_LEN_OFFSET,
        "mbuf.pool": abi.MBUF_POOL_OFFSET,
        "mbuf.next": abi.MBUF_NEXT_OFFSET,
        "request.req_id": abi.REQUEST_ID_OFFSET,
        "request.new_mtu": abi.REQUEST_UNION_OFFSET,
        "request.if_up": abi.REQUEST_UNION_OFFSET,
        "request.mac_addr": abi.REQUEST_UNION_OFFSET,
        "request.promiscusity": abi.REQUEST_UNION_OFFSET,
        "request.allmulti": abi.REQUEST_UNION_OFFSET,
        "request.result": abi.REQUEST_RESULT_OFFSET,
        "mem_region.va": 0,
        "mem_region.len": 8,
        "mem_region.flags": 16,
        "mem_region.index": abi.MEM_REGION_INDEX_OFFSET,
    }
    expected.update({f"device_info.{name}": offset for name, offset in abi.DEVICE_INFO_OFFSETS.items()})
    expected.update({f"req.{member.name}": int(member) for member in abi.RequestId})
    values = {key: str(value) for key, value in expected.items()}
    values["device_info.force_bind"] = f"{abi.DEVICE_INFO_OFFSETS['force_bind']}:{abi.FORCE_BIND_BIT}"
    values["request.async"] = f"{abi.REQUEST_ASYNC_OFFSET}:{abi.REQUEST_ASYNC_BIT}"
    return values


def probe_source() -> str:
    lines = [f'\tprintf("{key} %llu\\n", (unsigned long long)({expression}));' for key, expression in PROBES]
    return (
        '#include <stdio.h>\n#include <string.h>\n#include "kni_abi.h"\n'
        + BITFIELD_PROBE
        + "int main(void)\n{\n"
        + "\n".join(lines)
        + BITFIELD_CALLS
        + "\treturn 0;\n}\n"
    )


@pytest.fixture(scope="module")
def c_side(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    if not HEADER.is_file():
        pytest.fail(f"{HEADER} is missing: the Python ABI cannot be cross-checked against the kernel module")
    compiler = os.environ.get("CC") or shutil.which("gcc") or shutil.which("cc")
    if compiler is None:
        pytest.fail("no C compiler (gcc/cc) found: the ABI cross-check needs one")
    workdir = tmp_path_factory.mktemp("abi")
    source = workdir / "probe.c"
    binary = workdir / "probe"
    source.write_text(probe_source())
    build = subprocess.run(
        [compiler, "-std=gnu11", "-Wall", "-Werror", "-I", str(HEADER.parent), "-o", str(binary), str(source)],
        capture_output=True,
        text=True,
        check=False,
    )
    if build.returncode:
        pytest.fail(f"compiling the probe against {HEADER} failed:\n{build.stderr}")
    run = subprocess.run([str(binary)], capture_output=True, text=True, check=True)
    return dict(line.split(" ", 1) for line in run.stdout.splitlines())


def test_every_probe_ran(c_side: dict[str, str]) -> None:
    assert set(c_side) == set(python_side())


@pytest.mark.parametrize("key", sorted(python_side()))
def test_c_and_python_agree(c_side: dict[str, str], key: str) -> None:
    assert c_side[key] == python_side()[key], (
        f"{key}: kmod/kni_abi.h says {c_side[key]}, _kni.abi says {python_side()[key]}"
    )
