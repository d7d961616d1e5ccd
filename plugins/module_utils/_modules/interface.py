# SPDX-License-Identifier: GPL-3.0-or-later
# Copyright: kernelnic.kni contributors
"""kni_interface, the pure part: parse the options, compare desired with current, plan, predict, diff.

An interface is managed in two halves:

* the pump half (``backend``, ``mac``, ``mtu``, ``min_mtu``, ``max_mtu``, ``carrier``, ``core``) lives in kni-pump's
  desired state and is changed with one ``apply``/``delete`` request per interface over its control socket;
* the Linux half (``admin_state``, ``promisc``, ``allmulticast``, ``addresses``) is set with netlink
  (``interface_linux``).

Options left out are not managed: an existing pump interface keeps its other pump fields (the request carries the
merged configuration), and a Linux setting left out is neither read into the plan nor changed. With ``adopt`` the
interface belongs to a DPDK application: only the Linux half applies and the pump is not contacted.

Every check that can fail runs in ``parse_options`` (each field on its own) or ``plan`` (fields combined with what
the pump and the host already have), so bad input fails before the first request.
"""

from __future__ import annotations

import ipaddress
from typing import Any, Dict, List, Mapping, NamedTuple, Optional, Sequence, Tuple

from ansible_collections.kernelnic.kni.plugins.module_utils._modules.changes import DifferenceTracker
from ansible_collections.kernelnic.kni.plugins.module_utils._modules.netdev import KNI_DRIVERS
from ansible_collections.kernelnic.kni.plugins.module_utils._pump.schema import (
    CARRIER_POLICIES,
    CREATION_FIELDS,
    DEFAULT_MTU,
    MTU_FLOOR,
    MTU_LIMIT,
    ConfigError,
    check_ifname,
    check_integer,
    parse_backend,
    parse_interface,
    parse_mac,
)

STATES = ("present", "absent")
ADMIN_STATES = ("up", "down")
PUMP_FIELDS = ("backend", "mac", "mtu", "min_mtu", "max_mtu", "carrier", "core")
LINUX_FIELDS = ("admin_state", "promisc", "allmulticast", "addresses")
INTERFACE_FIELDS = ("name", "state", "adopt", *PUMP_FIELDS, *LINUX_FIELDS)
_MTU_FIELDS = ("mtu", "min_mtu", "max_mtu")
_LINK_LOCAL_V6 = ipaddress.ip_network("fe80::/10")


class LinuxWanted(NamedTuple):
    """The Linux-side settings asked for; None leaves a setting alone."""

    admin_state: Optional[str] = None
    promisc: Optional[bool] = None
    allmulticast: Optional[bool] = None
    addresses: Optional[Tuple[str, ...]] = None  # normalised CIDRs, in ``address_key`` order

    def managed(self) -> bool:
        return any(value is not None for value in self)


class LinuxState(NamedTuple):
    """A link as netlink shows it."""

    ifindex: int
    admin_state: str
    promisc: bool
    allmulticast: bool
    addresses: Tuple[str, ...]  # normalised CIDRs, in ``address_key`` order

    def to_json(self) -> Dict[str, Any]:
        return {
            "admin_state": self.admin_state,
            "promisc": self.promisc,
            "allmulticast": self.allmulticast,
            "addresses": list(self.addresses),
        }


# What the kernel gives a KNI interface it has just created: down, no flags, no addresses.
NEW_LINK = LinuxState(0, "down", False, False, ())


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


class LinuxChange(NamedTuple):
    """One netlink step: ``flag`` (promisc/allmulticast), ``addr_del``, ``addr_add`` or ``admin``."""

    kind: str
    attribute: str
    value: Any

    def describe(self, name: str) -> str:
        if self.kind == "addr_del":
            return f"{name}: delete address {self.value}"
        if self.kind == "addr_add":
            return f"{name}: add address {self.value}"
        if self.kind == "admin":
            return f"{name}: set {self.value}"
        return f"{name}: set {self.attribute} {'on' if self.value else 'off'}"


class PumpAction(NamedTuple):
    """``apply`` (create or change; ``config`` is the complete interface) or ``delete``."""

    kind: str
    name: str
    config: Optional[Dict[str, Any]] = None
    field: str = ""  # the spec's option path, to name fields in the pump's errors
    recreate: bool = False  # a creation-time field changes: the pump recreates the net device

    def describe(self) -> str:
        if self.kind == "delete":
            return f"{self.name}: delete from kni-pump"
        return f"{self.name}: {'recreate in' if self.recreate else 'apply to'} kni-pump"


class InterfacePlan(NamedTuple):
    spec: InterfaceSpec
    pump_before: Optional[Dict[str, Any]]  # the pump's desired configuration, None: not a pump interface
    pump_after: Optional[Dict[str, Any]]
    pump_action: Optional[PumpAction]
    linux_before: Optional[LinuxState]  # None: no such link
    linux_changes: List[LinuxChange]  # predicted from ``linux_base`` (a new or recreated link starts as NEW_LINK)
    linux_base: Optional[LinuxState]

    @property
    def changed(self) -> bool:
        return self.pump_action is not None or bool(self.linux_changes)


class Plan(NamedTuple):
    interfaces: List[InterfacePlan]
    deletes: List[PumpAction]  # exclusive: pump interfaces not listed
    deleted_before: Dict[str, Dict[str, Any]]

    @property
    def changed(self) -> bool:
        return bool(self.deletes) or any(item.changed for item in self.interfaces)

    def pump_actions(self) -> List[PumpAction]:
        """Deletes first (they free names, backends and memory), then the applies in task order."""
        actions = list(self.deletes)
        actions.extend(item.pump_action for item in self.interfaces if item.pump_action is not None)
        return sorted(actions, key=lambda action: action.kind != "delete")

    def actions(self) -> List[str]:
        described = [action.describe() for action in self.pump_actions()]
        for item in self.interfaces:
            described.extend(change.describe(item.spec.name) for change in item.linux_changes)
        return described


# --- options ------------------------------------------------------------------------------------------------------


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


# --- planning -----------------------------------------------------------------------------------------------------


class HostFacts(NamedTuple):
    """What the plan checks against before any change: link names and online CPUs of the host."""

    links: Sequence[str]
    online_cpus: Sequence[int]


def _full_config(spec: InterfaceSpec, before: Optional[Dict[str, Any]]) -> Dict[str, Any]:
    """The complete pump configuration: the current one (or the pump's defaults) with the given fields on top."""
    if before is None:
        if "backend" not in spec.pump:
            raise ConfigError(
                spec.path("backend"),
                f"is required to create the kni-pump interface {spec.name!r} (or set adopt=true for an interface"
                " that a DPDK application created)",
            )
        merged: Dict[str, Any] = {"name": spec.name, "mtu": DEFAULT_MTU, "carrier": "follow"}
    else:
        merged = dict(before)
    merged.update(spec.pump)
    merged["name"] = spec.name
    try:
        config = parse_interface(merged, "interface")
    except ConfigError as exc:
        key = exc.field.split(".", 1)[-1]
        raise ConfigError(spec.path(key), exc.message) from exc
    return config.to_json()


def _check_host(spec: InterfaceSpec, config: Mapping[str, Any], host: HostFacts, pump_names: Sequence[str]) -> None:
    backend = parse_backend(config["backend"], spec.path("backend"))
    if backend.kind == "afpacket":
        if backend.ifname not in host.links:
            raise ConfigError(spec.path("backend"), f"interface {backend.ifname!r} does not exist")
        if backend.ifname in pump_names:
            raise ConfigError(spec.path("backend"), f"{backend.ifname!r} is a KNI interface of kni-pump")
    core = config.get("core")
    if core is not None and core not in host.online_cpus:
        raise ConfigError(spec.path("core"), f"CPU {core} is not online")
    if spec.name in host.links and spec.name not in pump_names:
        raise ConfigError(
            spec.path("name"),
            f"{spec.name!r} is a network interface that kni-pump does not own; set adopt=true to manage the"
            " Linux-side settings of an interface a DPDK application created",
        )


def _check_unique(configs: Sequence[Tuple[str, Mapping[str, Any]]]) -> None:
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


def plan_linux(wanted: LinuxWanted, current: LinuxState) -> List[LinuxChange]:
    """Netlink steps from ``current`` to ``wanted``: flags, address removals, additions, then the admin state.

    IPv6 link-local addresses (the kernel adds one when the link comes up) are kept unless they are listed.
    """
    changes: List[LinuxChange] = []
    if wanted.promisc is not None and wanted.promisc != current.promisc:
        changes.append(LinuxChange("flag", "promisc", wanted.promisc))
    if wanted.allmulticast is not None and wanted.allmulticast != current.allmulticast:
        changes.append(LinuxChange("flag", "allmulticast", wanted.allmulticast))
    if wanted.addresses is not None:
        for address in current.addresses:
            if address not in wanted.addresses and not _kernel_link_local(address):
                changes.append(LinuxChange("addr_del", "addresses", address))
        for address in wanted.addresses:
            if address not in current.addresses:
                changes.append(LinuxChange("addr_add", "addresses", address))
    if wanted.admin_state is not None and wanted.admin_state != current.admin_state:
        changes.append(LinuxChange("admin", "admin_state", wanted.admin_state))
    return changes


def _kernel_link_local(cidr: str) -> bool:
    return ipaddress.ip_interface(cidr).ip in _LINK_LOCAL_V6


def predict_linux(current: LinuxState, changes: Sequence[LinuxChange]) -> LinuxState:
    state = current
    for change in changes:
        if change.kind == "flag":
            state = state._replace(**{change.attribute: change.value})
        elif change.kind == "admin":
            state = state._replace(admin_state=change.value)
        elif change.kind == "addr_del":
            state = state._replace(addresses=tuple(a for a in state.addresses if a != change.value))
        else:
            state = state._replace(addresses=tuple(sorted((*state.addresses, change.value), key=address_key)))
    return state


def plan(
    specs: Sequence[InterfaceSpec],
    exclusive: bool,
    pump_names: Sequence[str],
    pump_current: Mapping[str, Dict[str, Any]],
    linux_current: Mapping[str, Optional[LinuxState]],
    host: HostFacts,
    drivers: Optional[Mapping[str, Optional[str]]] = None,
) -> Plan:
    """Compare and check everything; raises ``ConfigError`` naming the field before anything has changed.

    ``pump_current`` maps a pump interface's name to the ``get`` reply's ``interface`` (``desired`` and ``state``);
    ``linux_current`` maps each spec's name to its link (None: no such link, or the Linux side is not read);
    ``drivers`` maps each adopted interface's name to its ethtool driver (None: it reports none).
    """
    listed = {spec.name for spec in specs}
    items: List[InterfacePlan] = []
    remaining: List[Tuple[str, Mapping[str, Any]]] = []
    for spec in specs:
        linux = linux_current.get(spec.name)
        if spec.adopt:
            items.append(_plan_adopted(spec, linux, (drivers or {}).get(spec.name)))
        else:
            items.append(_plan_one(spec, pump_names, pump_current, linux, host, remaining))
    deletes: List[PumpAction] = []
    deleted_before: Dict[str, Dict[str, Any]] = {}
    for name in pump_names:
        if name in listed:
            continue
        if exclusive:
            deletes.append(PumpAction("delete", name))
            deleted_before[name] = dict((pump_current.get(name) or {}).get("desired") or {"name": name})
        elif name in pump_current:
            remaining.append((f"kni-pump interface {name}", pump_current[name].get("desired") or {}))
    _check_unique(remaining)
    return Plan(items, deletes, deleted_before)


def _plan_adopted(spec: InterfaceSpec, linux: Optional[LinuxState], driver: Optional[str]) -> InterfacePlan:
    if linux is None:
        raise ConfigError(
            spec.path("name"), f"no interface {spec.name!r}: adopt=true needs the DPDK application to create it"
        )
    if driver not in KNI_DRIVERS:
        found = f"driver {driver!r}" if driver else "no driver"
        raise ConfigError(
            spec.path("name"),
            f"{spec.name!r} has {found}, not kni (as ethtool -i reports): adopt=true manages only KNI interfaces"
            " that a DPDK application created",
        )
    return InterfacePlan(spec, None, None, None, linux, plan_linux(spec.linux, linux), linux)


def _plan_one(
    spec: InterfaceSpec,
    pump_names: Sequence[str],
    pump_current: Mapping[str, Dict[str, Any]],
    linux: Optional[LinuxState],
    host: HostFacts,
    remaining: List[Tuple[str, Mapping[str, Any]]],
) -> InterfacePlan:
    known = spec.name in pump_names
    detail = pump_current.get(spec.name) if known else None
    before = dict(detail["desired"]) if detail and detail.get("desired") else None
    if spec.state == "absent":
        action = PumpAction("delete", spec.name, field=spec.field) if known else None
        return InterfacePlan(spec, before, None, action, linux, [], None)
    after = _full_config(spec, before)
    _check_host(spec, after, host, pump_names)
    remaining.append((spec.field, after))
    running = bool(detail) and detail.get("state") in ("up", "down")
    recreate = before is not None and any(before.get(key) != after.get(key) for key in CREATION_FIELDS)
    action = None
    if before is None or before != after or not running:
        action = PumpAction("apply", spec.name, after, spec.field, recreate)
    if not spec.linux.managed():
        return InterfacePlan(spec, before, after, action, linux, [], None)
    # A new or recreated net device starts down, without flags or addresses.
    base = NEW_LINK if (before is None or recreate or linux is None) else linux
    return InterfacePlan(spec, before, after, action, linux, plan_linux(spec.linux, base), base)


# --- reporting ----------------------------------------------------------------------------------------------------


def describe(
    name: str, pump: Optional[Mapping[str, Any]], linux: Optional[LinuxState], adopt: bool, present: bool
) -> Dict[str, Any]:
    """One interface as the module reports it (and as the diff shows it)."""
    result: Dict[str, Any] = {"name": name, "state": "present" if present else "absent", "adopt": adopt}
    if pump is not None and present:
        result.update({key: pump.get(key) for key in PUMP_FIELDS})
    if linux is not None and present:
        result.update(linux.to_json())
    return result


def diff(plan_: Plan) -> Dict[str, Dict[str, Any]]:
    tracker = DifferenceTracker()
    for item in plan_.interfaces:
        spec = item.spec
        present_before = item.pump_before is not None if not spec.adopt else item.linux_before is not None
        before = describe(spec.name, item.pump_before, item.linux_before, spec.adopt, present_before)
        if spec.state == "absent":
            after = describe(spec.name, None, None, spec.adopt, False)
        else:
            linux_after = predict_linux(item.linux_base, item.linux_changes) if item.linux_base else None
            after = describe(spec.name, item.pump_after, linux_after, spec.adopt, True)
            if not spec.linux.managed() and not spec.adopt:
                before = {key: value for key, value in before.items() if key not in LINUX_FIELDS}
                after = {key: value for key, value in after.items() if key not in LINUX_FIELDS}
        tracker.add(spec.name, before, after)
    for name, config in plan_.deleted_before.items():
        tracker.add(name, describe(name, config, None, False, True), describe(name, None, None, False, False))
    return tracker.before_after()
