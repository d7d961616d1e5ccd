# SPDX-License-Identifier: GPL-3.0-or-later
"""Smoke test of a matrix guest: the right kernel, the host's Python, modules, netns, hugepages."""

from __future__ import annotations

import mmap
import os
import socket
import subprocess
import sys

HUGEPAGES = 64
HUGEPAGE_SIZE = 2 * 1024 * 1024


def sh(command: str) -> str:
    return subprocess.run(command, shell=True, check=True, capture_output=True, text=True).stdout


def test_kernel_is_the_matrix_kernel(kernel_release: str) -> None:
    assert os.uname().release == kernel_release


def test_python_comes_from_the_host_virtualenv() -> None:
    assert sys.prefix != sys.base_prefix, "the guest should run the host's virtualenv"
    import pyroute2  # noqa: F401 - proves the venv's packages import

    assert os.path.isfile(os.path.join(sys.prefix, "pyvenv.cfg"))


def test_in_tree_module_loads() -> None:
    sh("modprobe dummy numdummies=0")
    assert os.path.isdir("/sys/module/dummy")
    sh("ip link add smoke0 type dummy && ip link set smoke0 up")
    assert os.path.isdir("/sys/class/net/smoke0")
    sh("ip link del smoke0 && rmmod dummy")
    assert not os.path.isdir("/sys/module/dummy")


def test_network_namespace_with_veth_pair() -> None:
    sh(
        "ip netns add smoke && ip link add smk-a type veth peer name smk-b && ip link set smk-b netns smoke && "
        "ip addr add 192.0.2.1/24 dev smk-a && ip link set smk-a up && "
        "ip -n smoke addr add 192.0.2.2/24 dev smk-b && ip -n smoke link set smk-b up && ip -n smoke link set lo up"
    )
    try:
        receiver = subprocess.Popen(
            [
                "ip",
                "netns",
                "exec",
                "smoke",
                sys.executable,
                "-c",
                "import socket; s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.bind(('192.0.2.2', 9999)); "
                "s.settimeout(20); data, peer = s.recvfrom(100); s.sendto(data.upper(), peer)",
            ],
        )
        sender = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sender.settimeout(1)
        reply = b""
        for _attempt in range(20):  # the receiver may not be bound yet; retry until it answers
            sender.sendto(b"across the veth", ("192.0.2.2", 9999))
            try:
                reply = sender.recv(100)
                break
            except socket.timeout:
                continue
        receiver.wait(timeout=30)
        assert reply == b"ACROSS THE VETH"
    finally:
        sh("ip link del smk-a; ip netns del smoke")


def _meminfo(field: str) -> int:
    for line in sh("cat /proc/meminfo").splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise KeyError(field)


def test_hugepages_reserve_and_map() -> None:
    with open("/proc/sys/vm/nr_hugepages", "w", encoding="ascii") as handle:
        handle.write(str(HUGEPAGES))
    assert _meminfo("HugePages_Total") == HUGEPAGES
    free_before = _meminfo("HugePages_Free")
    size = HUGEPAGES * HUGEPAGE_SIZE
    region = mmap.mmap(-1, size, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS | 0x40000)  # MAP_HUGETLB
    try:
        for offset in range(0, size, HUGEPAGE_SIZE):
            region[offset] = 0xA5
        assert _meminfo("HugePages_Free") == free_before - HUGEPAGES
        assert all(region[offset] == 0xA5 for offset in range(0, size, HUGEPAGE_SIZE))
    finally:
        region.close()
    with open("/proc/sys/vm/nr_hugepages", "w", encoding="ascii") as handle:
        handle.write("0")


def test_out_of_tree_module_loads_with_parameter(test_modules_dir: str) -> None:
    module = os.path.join(test_modules_dir, "kni_smoke.ko")
    sh(f"insmod {module} answer=42")
    try:
        with open("/sys/module/kni_smoke/parameters/answer", encoding="ascii") as handle:
            assert handle.read().strip() == "42"
    finally:
        sh("rmmod kni_smoke")
    assert not os.path.isdir("/sys/module/kni_smoke")
