# SPDX-License-Identifier: GPL-3.0-or-later
# Copyright: kernelnic.kni contributors
"""kni_interface's options: each field parsed and checked on its own, into one ``InterfaceSpec`` per interface
(its pump half and its Linux half, see ``interface``)."""

from __future__ import annotations

import ipaddress
from typing import Any, Dict, List, Mapping, NamedTuple, Optional, Sequence, Tuple

from ansible_collections.kernelnic.kni.plugins.module_utils._pump.schema import (
    CARRIER_POLICIES,
    MTU_FLOOR,
    MTU_LIMIT,
    ConfigError,
    check_ifname,
    check_integer,
    parse_backend,
    parse_mac,
)

STATES = ("present", "absent")
ADMIN_STATES = ("up", "down")
PUMP_FIELDS = ("backend", "mac", "mtu", "min_mtu", "max_mtu", "carrier", "core")
LINUX_FIELDS = ("admin_state", "promisc", "allmulticast", "addresses")
INTERFACE_FIELDS = ("name", "state", "adopt", *PUMP_FIELDS, *LINUX_FIELDS)
_MTU_FIELDS = ("mtu", "min_mtu", "max_mtu")


class LinuxWanted(NamedTuple):
    """The Linux-side settings asked for; None leaves a setting alone."""

    admin_state: Optional[str] = None
    promisc: Optional[bool] = None
    allmulticast: Optional[bool] = None
    addresses: Optional[Tuple[str, ...]] = None  # normalised CIDRs, in ``address_key`` order

    def managed(self) -> bool:
        return any(value is not None for value in self)


class InterfaceSpec(NamedTuple):
    """One interface as the task asks for it, each field validated on its own."""

    field: str  # the option path of this interface: "" (top-level options) or "interfaces[2]"
    name: str
    state: str = "present"
    adopt: bool = False
    pump: Mapping[str, Any] = {}  # only the pump fields given, normalised
    linux: LinuxWanted = LinuxWanted()

    def path(self, key: str) -> str:
        return f"{self.field}.{key}" if self.field else key


def address_key(cidr: str) -> Tuple[int, int, int]:
    interface = ipaddress.ip_interface(cidr)
    return (interface.version, int(interface.ip), interface.network.prefixlen)


def normalize_address(value: Any, field: str) -> str:
    """An interface address with its prefix length (``10.0.0.1/24``, ``2001:db8::1/64``), normalised."""
    if not isinstance(value, str) or "/" not in value:
        raise ConfigError(field, f"{value!r} is not an address with a prefix length, like 192.0.2.1/24")
    try:
        interface = ipaddress.ip_interface(value.strip())
    except ValueError as exc:
        raise ConfigError(field, f"{value!r} is not an address with a prefix length: {exc}") from exc
    if interface.ip.is_multicast or interface.ip.is_unspecified:
        raise ConfigError(field, f"{value} is not a usable interface address")
    return f"{interface.ip.compressed}/{interface.network.prefixlen}"


def _bool(value: Any, field: str) -> bool:
    if isinstance(value, bool):
        return value
    raise ConfigError(field, f"must be true or false, not {value!r}")


def _carrier(value: Any, field: str) -> str:
    if isinstance(value, bool):  # YAML 1.1 reads a bare on/off as a boolean
        value = "on" if value else "off"
    if value not in CARRIER_POLICIES:
        raise ConfigError(field, f"{value!r} is not one of {', '.join(CARRIER_POLICIES)}")
    return value


def _pump_field(key: str, value: Any, field: str) -> Any:
    if key == "backend":
        return str(parse_backend(value, field))
    if key == "mac":
        return parse_mac(value, field)
    if key in _MTU_FIELDS:
        return check_integer(value, field, MTU_FLOOR, MTU_LIMIT)
    if key == "carrier":
        return _carrier(value, field)
    return check_integer(value, field, 0, 65535)  # core


def _check_mtu_range(pump: Mapping[str, Any], spec_path: Any) -> None:
    """The MTU fields given together must agree: checked here so the error comes before the pump is contacted."""
    low, high, mtu = pump.get("min_mtu"), pump.get("max_mtu"), pump.get("mtu")
    if low is not None and high is not None and low > high:
        raise ConfigError(spec_path("min_mtu"), f"{low} is above max_mtu {high}")
    if mtu is not None and low is not None and mtu < low:
        raise ConfigError(spec_path("mtu"), f"{mtu} is outside min_mtu..max_mtu: min_mtu is {low}")
    if mtu is not None and high is not None and mtu > high:
        raise ConfigError(spec_path("mtu"), f"{mtu} is outside min_mtu..max_mtu: max_mtu is {high}")


def _linux_wanted(item: Mapping[str, Any], spec_path: Any) -> LinuxWanted:
    admin_state = item.get("admin_state")
    if admin_state is not None and admin_state not in ADMIN_STATES:
        raise ConfigError(spec_path("admin_state"), f"{admin_state!r} is not one of {', '.join(ADMIN_STATES)}")
    promisc = item.get("promisc")
    allmulticast = item.get("allmulticast")
    addresses = item.get("addresses")
    normalized: Optional[Tuple[str, ...]] = None
    if addresses is not None:
        if not isinstance(addresses, list):
            raise ConfigError(spec_path("addresses"), f"must be a list of addresses, not {type(addresses).__name__}")
        seen: Dict[str, int] = {}
        for position, value in enumerate(addresses):
            field = f"{spec_path('addresses')}[{position}]"
            address = normalize_address(value, field)
            if address in seen:
                raise ConfigError(field, f"{address} is already listed at position {seen[address]}")
            same_ip = [other for other in seen if other.split("/")[0] == address.split("/")[0]]
            if same_ip:
                raise ConfigError(field, f"{address} repeats the address of {same_ip[0]} with another prefix length")
            seen[address] = position
        normalized = tuple(sorted(seen, key=address_key))
    return LinuxWanted(
        admin_state=admin_state,
        promisc=None if promisc is None else _bool(promisc, spec_path("promisc")),
        allmulticast=None if allmulticast is None else _bool(allmulticast, spec_path("allmulticast")),
        addresses=normalized,
    )


def parse_interface_options(item: Mapping[str, Any], field: str) -> InterfaceSpec:
    """One interface's options (``field`` is its option path, "" for the top level)."""

    def spec_path(key: str) -> str:
        return f"{field}.{key}" if field else key

    if not isinstance(item, dict):
        raise ConfigError(field or "interfaces", f"must be a dictionary of interface options, not {item!r}")
    for key in item:
        if key not in INTERFACE_FIELDS:
            raise ConfigError(spec_path(key), f"unknown option; allowed: {', '.join(INTERFACE_FIELDS)}")
    if item.get("name") is None:
        raise ConfigError(spec_path("name"), "is required")
    name = check_ifname(item["name"], spec_path("name"))
    state = item.get("state") or "present"
    if state not in STATES:
        raise ConfigError(spec_path("state"), f"{state!r} is not one of {', '.join(STATES)}")
    adopt = _bool(item.get("adopt") or False, spec_path("adopt"))
    pump = {key: _pump_field(key, item[key], spec_path(key)) for key in PUMP_FIELDS if item.get(key) is not None}
    _check_mtu_range(pump, spec_path)
    if adopt:
        if state == "absent":
            raise ConfigError(
                spec_path("state"),
                "absent cannot be used with adopt=true: the DPDK application that created the interface removes it",
            )
        if pump:
            key = next(iter(pump))
            raise ConfigError(
                spec_path(key),
                "is set by the DPDK application for an adopted interface; with adopt=true only admin_state, promisc,"
                " allmulticast and addresses apply",
            )
    return InterfaceSpec(field, name, state, adopt, pump, _linux_wanted(item, spec_path))


def parse_options(params: Mapping[str, Any]) -> Tuple[List[InterfaceSpec], bool]:
    """The module's options: the interfaces (from ``name`` or ``interfaces``) and ``exclusive``."""
    name = params.get("name")
    interfaces = params.get("interfaces")
    if (name is None) == (interfaces is None):
        raise ConfigError("name", "give exactly one of name (one interface) or interfaces (a list of interfaces)")
    exclusive = _bool(params.get("exclusive") or False, "exclusive")
    if interfaces is None:
        if exclusive:
            raise ConfigError("exclusive", "needs interfaces: with name it would delete every other pump interface")
        item = {key: params[key] for key in INTERFACE_FIELDS if params.get(key) is not None}
        return [parse_interface_options(item, "")], False
    stray = [key for key in INTERFACE_FIELDS if key != "name" and params.get(key) is not None]
    if stray:
        raise ConfigError(stray[0], "is a per-interface option: with interfaces, set it in each list item")
    if not isinstance(interfaces, list):
        raise ConfigError("interfaces", f"must be a list of interface options, not {type(interfaces).__name__}")
    specs = [parse_interface_options(item, f"interfaces[{index}]") for index, item in enumerate(interfaces)]
    first: Dict[str, int] = {}
    for index, spec in enumerate(specs):
        if spec.name in first:
            raise ConfigError(spec.path("name"), f"{spec.name!r} is already listed at interfaces[{first[spec.name]}]")
        first[spec.name] = index
    return specs, exclusive


def check_unique_names(configs: Sequence[Tuple[str, Mapping[str, Any]]]) -> None:
    """Afpacket targets and MACs must stay distinct over every pump interface that remains."""
    seen: Dict[Tuple[str, str], str] = {}
    for where, config in configs:
        backend = str(config.get("backend") or "")
        keys = []
        if backend.startswith("afpacket:"):
            keys.append(("backend", backend))
        if config.get("mac"):
            keys.append(("mac", str(config["mac"])))
        for key in keys:
            if key in seen:
                raise ConfigError(f"{where}.{key[0]}" if where else key[0], f"{key[1]} is already used by {seen[key]}")
            seen[key] = where or "this interface"
