# SPDX-License-Identifier: GPL-3.0-or-later
# Copyright: kernelnic.kni contributors
"""Find KNI network interfaces and read their state from sysfs.

KNI netdevs are virtual (``/sys/class/net/<if>/device`` does not exist), so the driver name comes from the
``SIOCETHTOOL`` ``ETHTOOL_GDRVINFO`` ioctl, as ``ethtool -i`` does. rte_kni reports the driver as ``kni``
(DPDK 22.11 does the same); ``rte_kni`` is accepted too. Only the current network namespace is searched.
"""

from __future__ import annotations

import array
import fcntl
import os
import socket
import struct
from typing import Any, Callable, Dict, List, Optional

from ansible_collections.kernelnic.kni.plugins.module_utils._modules.host import HostPaths, read_text

SIOCETHTOOL = 0x8946
ETHTOOL_GDRVINFO = 0x00000003
# struct ethtool_drvinfo: cmd, driver[32], version[32], fw_version[32], bus_info[32], erom_version[32],
# reserved2[12], n_priv_flags, n_stats, testinfo_len, eedump_len, regdump_len.
DRVINFO = struct.Struct("=I32s32s32s32s32s12s5I")
IFNAMSIZ = 16
IFREQ_SIZE = 40  # struct ifreq on 64-bit Linux: the name and a 24-byte union
KNI_DRIVERS = ("kni", "rte_kni")

DriverProbe = Callable[[str], Optional[str]]


def ethtool_driver(ifname: str) -> Optional[str]:
    """The driver name ``ethtool -i`` would print, or None if the interface does not answer."""
    name = ifname.encode()
    if len(name) >= IFNAMSIZ:
        return None
    info = array.array("B", DRVINFO.pack(ETHTOOL_GDRVINFO, b"", b"", b"", b"", b"", b"", 0, 0, 0, 0, 0))
    address = info.buffer_info()[0]
    request = struct.pack(f"{IFNAMSIZ}sP", name, address).ljust(IFREQ_SIZE, b"\0")
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            fcntl.ioctl(sock.fileno(), SIOCETHTOOL, request)
    except OSError:
        return None
    driver = DRVINFO.unpack(info.tobytes())[1]
    return driver.split(b"\0", 1)[0].decode("ascii", "replace")


def interface_names(paths: HostPaths) -> List[str]:
    try:
        return sorted(os.listdir(paths.sys_class_net))
    except OSError:
        return []


def kni_interfaces(paths: HostPaths, driver_of: DriverProbe = ethtool_driver) -> List[str]:
    """Names of the interfaces whose ethtool driver is rte_kni's."""
    return [name for name in interface_names(paths) if driver_of(name) in KNI_DRIVERS]


def _read_int(path: str) -> Optional[int]:
    text = read_text(path)
    if text is None:
        return None
    try:
        return int(text.strip(), 0)
    except ValueError:
        return None


def interface_info(paths: HostPaths, name: str) -> Dict[str, Any]:
    """MTU, MAC, operstate, carrier (None while the interface is down) and the statistics counters."""
    base = os.path.join(paths.sys_class_net, name)
    carrier = _read_int(os.path.join(base, "carrier"))
    flags = _read_int(os.path.join(base, "flags"))
    statistics: Dict[str, int] = {}
    stats_dir = os.path.join(base, "statistics")
    try:
        counters = sorted(os.listdir(stats_dir))
    except OSError:
        counters = []
    for counter in counters:
        value = _read_int(os.path.join(stats_dir, counter))
        if value is not None:
            statistics[counter] = value
    return {
        "name": name,
        "mtu": _read_int(os.path.join(base, "mtu")),
        "mac": (read_text(os.path.join(base, "address")) or "").strip() or None,
        "operstate": (read_text(os.path.join(base, "operstate")) or "unknown").strip(),
        "up": bool(flags & 0x1) if flags is not None else None,
        "carrier": bool(carrier) if carrier is not None else None,
        "statistics": statistics,
    }
