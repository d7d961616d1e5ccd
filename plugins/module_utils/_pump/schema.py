# SPDX-License-Identifier: GPL-3.0-or-later
# Copyright: kernelnic.kni contributors
"""What kni_interface and kni-pump exchange: the schema of a desired interface, its validation, and the host facts
(links, online CPUs) it is checked against.

A desired state is ``{"version": 1, "interfaces": [<interface>, ...]}``; an interface is::

    {"name": "kni0", "mac": "02:00:00:00:00:01", "mtu": 1500, "min_mtu": 68, "max_mtu": 2034,
     "carrier": "follow", "core": null, "backend": "afpacket:veth0"}

Only ``name`` and ``backend`` are required. Every error is a ``ConfigError`` whose ``field`` is a path such as
``interfaces[2].mtu``, so the message tells the operator exactly what to fix.
"""

from __future__ import annotations

import os
import re
import socket
from typing import Any, Dict, List, Mapping, NamedTuple, Optional, Sequence, Tuple

from ansible_collections.kernelnic.kni.plugins.module_utils._kni.abi import DEFAULT_DATA_ROOM, DEFAULT_HEADROOM

SCHEMA_VERSION = 1
ETHER_HEADER_LEN = 14
# The pump's mbufs hold frames up to their data room behind the headroom, and the KNI module drops egress frames
# longer than mbuf_size, so no MTU may exceed that minus the Ethernet header.
MAX_FRAME_LEN = DEFAULT_DATA_ROOM - DEFAULT_HEADROOM
MTU_LIMIT = MAX_FRAME_LEN - ETHER_HEADER_LEN
MTU_FLOOR = 68  # IPv4's minimum, the kernel's ether_setup default min_mtu
DEFAULT_MTU = 1500
CARRIER_POLICIES = ("on", "off", "follow")
BACKEND_KINDS = ("afpacket", "loopback", "null")
IFNAME_MAX = 15  # IFNAMSIZ - 1

# What the kernel fixes when it creates the net device: changing one recreates the interface.
CREATION_FIELDS = ("min_mtu", "max_mtu", "core")
# What changes on a live interface (the pump applies them in this order).
LIVE_FIELDS = ("backend", "mtu", "mac", "carrier")

_MAC_PATTERN = re.compile(r"^[0-9a-fA-F]{2}(:[0-9a-fA-F]{2}){5}$")
_INTERFACE_KEYS = ("name", "mac", "mtu", "min_mtu", "max_mtu", "carrier", "core", "backend")


class ConfigError(ValueError):
    """An invalid configuration or request; ``field`` names the offending field."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


class Backend(NamedTuple):
    """A parsed backend spec: ``afpacket:<ifname>``, ``loopback`` or ``null``."""

    kind: str
    ifname: str = ""

    def __str__(self) -> str:
        return f"{self.kind}:{self.ifname}" if self.ifname else self.kind


class InterfaceConfig(NamedTuple):
    """One desired KNI interface. ``mac`` is None until the daemon picks one (then it is persisted)."""

    name: str
    backend: Backend
    mac: Optional[str] = None
    mtu: int = DEFAULT_MTU
    min_mtu: int = MTU_FLOOR
    max_mtu: int = MTU_LIMIT
    carrier: str = "follow"
    core: Optional[int] = None

    def to_json(self) -> Dict[str, Any]:
        return {
            "name": self.name,
            "mac": self.mac,
            "mtu": self.mtu,
            "min_mtu": self.min_mtu,
            "max_mtu": self.max_mtu,
            "carrier": self.carrier,
            "core": self.core,
            "backend": str(self.backend),
        }


def check_ifname(value: Any, field: str) -> str:
    """A Linux interface name: 1-15 printable ASCII characters without '/', ':' or whitespace."""
    if not isinstance(value, str):
        raise ConfigError(field, f"must be a string, not {type(value).__name__}")
    if not value or len(value) > IFNAME_MAX:
        raise ConfigError(field, f"{value!r} must be 1 to {IFNAME_MAX} characters long")
    if (
        not value.isascii()
        or not value.isprintable()
        or value in (".", "..")
        or any(c in value for c in "/:")
        or any(c.isspace() for c in value)
    ):
        raise ConfigError(field, f"{value!r} is not a valid interface name (no '/', ':', whitespace, '.' or '..')")
    return value


def parse_mac(value: Any, field: str) -> str:
    """A unicast, non-zero MAC written as six colon-separated hex octets; returned in lower case."""
    if not isinstance(value, str) or not _MAC_PATTERN.match(value):
        raise ConfigError(field, f"{value!r} is not a MAC address like 02:00:00:00:00:01")
    octets = bytes(int(part, 16) for part in value.split(":"))
    if octets[0] & 1:
        raise ConfigError(field, f"{value} is a multicast address; an interface needs a unicast one")
    if not any(octets):
        raise ConfigError(field, "00:00:00:00:00:00 is not a usable address")
    return value.lower()


def mac_bytes(mac: str) -> bytes:
    return bytes(int(part, 16) for part in mac.split(":"))


def mac_text(octets: bytes) -> str:
    return ":".join(f"{octet:02x}" for octet in octets)


def parse_backend(value: Any, field: str) -> Backend:
    if not isinstance(value, str):
        raise ConfigError(field, f"must be a string such as 'afpacket:eth1', 'loopback' or 'null', not {value!r}")
    kind, separator, ifname = value.partition(":")
    if kind not in BACKEND_KINDS:
        raise ConfigError(field, f"unknown backend {kind!r}; expected one of afpacket:<ifname>, loopback, null")
    if kind == "afpacket":
        if not separator or not ifname:
            raise ConfigError(field, "afpacket needs the Linux interface to bridge: 'afpacket:<ifname>'")
        return Backend(kind, check_ifname(ifname, field))
    if separator:
        raise ConfigError(field, f"backend {kind!r} takes no argument")
    return Backend(kind)


def check_integer(value: Any, field: str, low: int, high: int) -> int:
    """An int (not a bool) within low..high, else a ConfigError naming ``field``."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise ConfigError(field, f"must be an integer, not {value!r}")
    if not low <= value <= high:
        raise ConfigError(field, f"{value} is out of range {low}..{high}")
    return value


def _object(value: Any, field: str, allowed: Sequence[str]) -> Mapping[str, Any]:
    if not isinstance(value, dict):
        raise ConfigError(field, f"must be a JSON object, not {type(value).__name__}")
    for key in value:
        if key not in allowed:
            prefix = f"{field}." if field else ""
            raise ConfigError(f"{prefix}{key}", f"unknown field; allowed: {', '.join(allowed)}")
    return value


def parse_interface(value: Any, field: str = "interface") -> InterfaceConfig:
    """Validate one interface object; every error names ``<field>.<key>``."""
    item = _object(value, field, _INTERFACE_KEYS)
    for required in ("name", "backend"):
        if required not in item:
            raise ConfigError(f"{field}.{required}", "is required")
    name = check_ifname(item["name"], f"{field}.name")
    backend = parse_backend(item["backend"], f"{field}.backend")
    mac = None if item.get("mac") is None else parse_mac(item["mac"], f"{field}.mac")
    mtu = check_integer(item.get("mtu", DEFAULT_MTU), f"{field}.mtu", MTU_FLOOR, MTU_LIMIT)
    min_mtu = check_integer(item.get("min_mtu", MTU_FLOOR), f"{field}.min_mtu", MTU_FLOOR, MTU_LIMIT)
    max_mtu = check_integer(item.get("max_mtu", MTU_LIMIT), f"{field}.max_mtu", MTU_FLOOR, MTU_LIMIT)
    if min_mtu > max_mtu:
        raise ConfigError(f"{field}.min_mtu", f"{min_mtu} is above max_mtu {max_mtu}")
    if not min_mtu <= mtu <= max_mtu:
        raise ConfigError(f"{field}.mtu", f"{mtu} is outside min_mtu..max_mtu ({min_mtu}..{max_mtu})")
    carrier = item.get("carrier", "follow")
    if carrier not in CARRIER_POLICIES:
        raise ConfigError(f"{field}.carrier", f"{carrier!r} is not one of {', '.join(CARRIER_POLICIES)}")
    core = item.get("core")
    if core is not None:
        core = check_integer(core, f"{field}.core", 0, 65535)
    return InterfaceConfig(name, backend, mac, mtu, min_mtu, max_mtu, carrier, core)


def parse_interfaces(value: Any, field: str = "interfaces") -> List[InterfaceConfig]:
    """A list of interfaces with distinct names and distinct afpacket targets."""
    if not isinstance(value, list):
        raise ConfigError(field, f"must be a list of interface objects, not {type(value).__name__}")
    interfaces = [parse_interface(item, f"{field}[{index}]") for index, item in enumerate(value)]
    check_unique(interfaces, field)
    return interfaces


def check_unique(interfaces: Sequence[InterfaceConfig], field: str = "interfaces") -> None:
    names: Dict[str, int] = {}
    targets: Dict[str, int] = {}
    macs: Dict[str, int] = {}
    for index, interface in enumerate(interfaces):
        if interface.name in names:
            raise ConfigError(
                f"{field}[{index}].name", f"{interface.name!r} is already used by {field}[{names[interface.name]}]"
            )
        names[interface.name] = index
        if interface.backend.ifname:
            if interface.backend.ifname in targets:
                raise ConfigError(
                    f"{field}[{index}].backend",
                    f"{interface.backend} is already bridged by {field}[{targets[interface.backend.ifname]}]",
                )
            if any(other.name == interface.backend.ifname for other in interfaces):
                raise ConfigError(
                    f"{field}[{index}].backend", f"{interface.backend} would bridge a KNI interface to itself"
                )
            targets[interface.backend.ifname] = index
        if interface.mac is not None:
            if interface.mac in macs:
                raise ConfigError(
                    f"{field}[{index}].mac", f"{interface.mac} is already used by {field}[{macs[interface.mac]}]"
                )
            macs[interface.mac] = index


def parse_desired_state(value: Any, field: str = "") -> List[InterfaceConfig]:
    """A whole desired state document: ``{"version": 1, "interfaces": [...]}``."""
    document = _object(value, field or "config", ("version", "interfaces"))
    prefix = f"{field}." if field else ""
    check_version(document.get("version"), f"{prefix}version")
    return parse_interfaces(document.get("interfaces", []), f"{prefix}interfaces")


def check_version(value: Any, field: str = "version") -> None:
    if value != SCHEMA_VERSION:
        raise ConfigError(field, f"must be {SCHEMA_VERSION}, not {value!r}")


def desired_state_document(interfaces: Sequence[InterfaceConfig]) -> Dict[str, Any]:
    return {"version": SCHEMA_VERSION, "interfaces": [interface.to_json() for interface in interfaces]}


def check_runtime(
    interfaces: Sequence[InterfaceConfig],
    online_cpus: Sequence[int],
    existing_links: Sequence[str],
    managed: Sequence[str],
    paths: Optional[Sequence[str]] = None,
) -> None:
    """Checks that need the host: cores online, afpacket targets present, names not taken by other interfaces.

    ``existing_links`` are the host's interface names; ``managed`` the KNI interfaces this daemon owns (their names
    may be reused). ``paths`` gives each interface's field path in the request (default ``interfaces[i]``).
    """
    for position, interface in enumerate(interfaces):
        where = paths[position] if paths is not None else f"interfaces[{position}]"
        if interface.core is not None and interface.core not in online_cpus:
            raise ConfigError(f"{where}.core", f"CPU {interface.core} is not online (online: {_ranges(online_cpus)})")
        if interface.backend.kind == "afpacket":
            if interface.backend.ifname not in existing_links:
                raise ConfigError(f"{where}.backend", f"interface {interface.backend.ifname!r} does not exist")
            if interface.backend.ifname in managed:
                raise ConfigError(f"{where}.backend", f"{interface.backend.ifname!r} is a KNI interface of this pump")
        if interface.name in existing_links and interface.name not in managed:
            raise ConfigError(
                f"{where}.name", f"{interface.name!r} is already a network interface not owned by kni-pump"
            )


def _ranges(values: Sequence[int]) -> str:
    spans: List[Tuple[int, int]] = []
    for value in sorted(values):
        if spans and spans[-1][1] + 1 == value:
            spans[-1] = (spans[-1][0], value)
        else:
            spans.append((value, value))
    return ",".join(f"{low}-{high}" if low != high else str(low) for low, high in spans) or "none"


def parse_cpu_list(text: str) -> List[int]:
    """The kernel's CPU list format (``0-3,8``), as in /sys/devices/system/cpu/online."""
    cpus: List[int] = []
    for part in text.strip().split(","):
        if not part:
            continue
        low, _separator, high = part.partition("-")
        cpus.extend(range(int(low), int(high or low) + 1))
    return cpus


def host_links(sys_root: str = "/sys") -> List[str]:
    """The host's network interface names, from sysfs (no RTNL, unlike a netlink dump)."""
    try:
        return os.listdir(os.path.join(sys_root, "class", "net"))
    except OSError:
        return [name for _index, name in socket.if_nameindex()]


def host_online_cpus(sys_root: str = "/sys") -> List[int]:
    """The host's online CPUs."""
    try:
        with open(os.path.join(sys_root, "devices", "system", "cpu", "online"), encoding="ascii") as handle:
            return parse_cpu_list(handle.read())
    except OSError:
        return list(range(os.cpu_count() or 1))
