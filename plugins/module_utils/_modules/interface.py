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
from ansible_collections.kernelnic.kni.plugins.module_utils._modules.interface_options import (
    LINUX_FIELDS,
    PUMP_FIELDS,
    InterfaceSpec,
    LinuxWanted,
    address_key,
    check_unique_names,
)
from ansible_collections.kernelnic.kni.plugins.module_utils._modules.netdev import KNI_DRIVERS
from ansible_collections.kernelnic.kni.plugins.module_utils._pump.schema import (
    CREATION_FIELDS,
    DEFAULT_MTU,
    ConfigError,
    parse_backend,
    parse_interface,
)

_LINK_LOCAL_V6 = ipaddress.ip_network("fe80::/10")


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
    check_unique_names(remaining)
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
