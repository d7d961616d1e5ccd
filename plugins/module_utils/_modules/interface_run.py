# SPDX-License-Identifier: GPL-3.0-or-later
# Copyright: kernelnic.kni contributors
"""kni_interface end to end: validate, read kni-pump and the links, plan, then apply (unless check mode).

The pump is reached through its control socket (``ControlClient``), the links through ``LinuxLinks``; both come
from factories so tests can hand in fakes. Order of changes: pump deletes, pump applies (one interface per request,
in task order), then each interface's Linux-side steps, read fresh after the pump created or recreated it.
"""

from __future__ import annotations

from typing import Any, Callable, Dict, List, Mapping, Optional

from ansible_collections.kernelnic.kni.plugins.module_utils._modules.interface import (
    HostFacts,
    LinuxState,
    Plan,
    describe,
    diff,
    plan,
    plan_linux,
    predict_linux,
)
from ansible_collections.kernelnic.kni.plugins.module_utils._modules.interface_linux import LinuxError, LinuxLinks
from ansible_collections.kernelnic.kni.plugins.module_utils._modules.interface_options import (
    InterfaceSpec,
    parse_options,
)
from ansible_collections.kernelnic.kni.plugins.module_utils._pump.control import (
    ControlClient,
    ControlError,
    PumpConnectionError,
)
from ansible_collections.kernelnic.kni.plugins.module_utils._pump.schema import (
    ConfigError,
    host_links,
    host_online_cpus,
)

DEFAULT_SOCKET = "/run/kni-pump/control.sock"
PumpFactory = Callable[[str], Any]  # socket path -> a ControlCalls (call, fetch, expect, bad_reply) with close()
LinuxFactory = Callable[[], LinuxLinks]


class InterfaceFailure(Exception):
    """The module must fail; ``result`` carries what is known (``field``, actions done so far)."""

    def __init__(self, message: str, result: Optional[Dict[str, Any]] = None) -> None:
        super().__init__(message)
        self.result = result or {}


def read_host_facts(sys_root: str = "/sys") -> HostFacts:
    return HostFacts(sorted(host_links(sys_root)), host_online_cpus(sys_root))


def connect_pump(path: str) -> ControlClient:
    try:
        return ControlClient(path)
    except PumpConnectionError as exc:
        raise InterfaceFailure(
            f"{exc}; start the kni-pump service first, or set adopt=true for interfaces that a DPDK application created"
        ) from exc


def _field_error(exc: ConfigError) -> InterfaceFailure:
    return InterfaceFailure(str(exc), {"field": exc.field})


def _pump_error(exc: ControlError, field: str, done: List[str]) -> InterfaceFailure:
    """The pump names fields as ``interface.<key>``: rename to the task's option path."""
    name = exc.field
    if name == "interface" or name.startswith("interface."):
        key = name.partition(".")[2]
        name = ".".join(part for part in (field, key) if part) or "name"
    return InterfaceFailure(f"kni-pump refused: {name}: {exc.message}", {"field": name, "actions": done})


def _read_pump(client: Any, specs: List[InterfaceSpec]) -> tuple:
    """Names the pump manages, and per name the ``get`` detail (listed ones) or the list summary (the others)."""
    summaries = {item["name"]: item for item in client.list_interfaces()}
    current: Dict[str, Dict[str, Any]] = {}
    wanted = {spec.name for spec in specs if not spec.adopt}
    for name, summary in summaries.items():
        if name in wanted:
            current[name] = _detail(client, name)
        else:
            current[name] = {"desired": {key: summary.get(key) for key in ("name", "backend", "mac")}, **summary}
    return list(summaries), current


def _detail(client: Any, name: str) -> Dict[str, Any]:
    """The ``get`` reply's ``interface``, whose ``desired`` must be an object."""
    detail = client.fetch("get", "interface", dict, name=name)
    client.expect(detail, "get", "desired", dict)
    return detail


def execute(
    args: Mapping[str, Any],
    check_mode: bool,
    want_diff: bool,
    pump_factory: Optional[PumpFactory] = None,
    linux_factory: Optional[LinuxFactory] = None,
    host_facts: Optional[Callable[[], HostFacts]] = None,
) -> Dict[str, Any]:
    """The module's result dict; raises ``InterfaceFailure``. The factories default to the real pump and links."""
    pump_factory = pump_factory or connect_pump
    linux_factory = linux_factory or LinuxLinks
    host_facts = host_facts or read_host_facts
    try:
        specs, exclusive = parse_options(args)
    except ConfigError as exc:
        raise _field_error(exc) from exc
    needs_pump = exclusive or any(not spec.adopt for spec in specs)
    needs_linux = any(spec.adopt or spec.linux.managed() for spec in specs)
    client = pump_factory(args.get("socket") or DEFAULT_SOCKET) if needs_pump else None
    links = linux_factory() if needs_linux else None
    try:
        return _execute(specs, exclusive, check_mode, want_diff, client, links, host_facts)
    except (LinuxError, PumpConnectionError) as exc:
        raise InterfaceFailure(str(exc)) from exc
    finally:
        if client is not None:
            client.close()
        if links is not None:
            links.close()


def _execute(
    specs: List[InterfaceSpec],
    exclusive: bool,
    check_mode: bool,
    want_diff: bool,
    client: Any,
    links: Optional[LinuxLinks],
    host_facts: Callable[[], HostFacts],
) -> Dict[str, Any]:
    pump_names: List[str] = []
    pump_current: Dict[str, Dict[str, Any]] = {}
    if client is not None:
        try:
            pump_names, pump_current = _read_pump(client, specs)
        except ControlError as exc:
            raise InterfaceFailure(f"kni-pump: {exc}") from exc
    linux_current: Dict[str, Optional[LinuxState]] = {}
    drivers: Dict[str, Optional[str]] = {}
    if links is not None:
        linux_current = {spec.name: links.read(spec.name) for spec in specs if spec.state == "present"}
        drivers = {spec.name: links.driver(spec.name) for spec in specs if spec.adopt and linux_current.get(spec.name)}
    try:
        the_plan = plan(specs, exclusive, pump_names, pump_current, linux_current, host_facts(), drivers)
    except ConfigError as exc:
        raise _field_error(exc) from exc
    result: Dict[str, Any] = {"changed": the_plan.changed, "actions": the_plan.actions()}
    if want_diff:
        result["diff"] = diff(the_plan)
    if check_mode or not the_plan.changed:
        result["interfaces"] = _predicted(the_plan)
        return result
    result["actions"] = _apply(the_plan, client, links)
    result["interfaces"] = _observed(the_plan, client, links)
    return result


def _apply(the_plan: Plan, client: Any, links: Optional[LinuxLinks]) -> List[str]:
    done: List[str] = []
    for action in the_plan.pump_actions():
        try:
            if action.kind == "delete":
                client.call("delete", name=action.name)
            else:
                client.call("apply", interface=action.config)
        except ControlError as exc:
            raise _pump_error(exc, action.field, done) from exc
        except PumpConnectionError as exc:
            raise InterfaceFailure(str(exc), {"actions": done}) from exc
        done.append(action.describe())
    for item in the_plan.interfaces:
        if item.spec.state != "present" or links is None or not (item.spec.adopt or item.spec.linux.managed()):
            continue
        current = links.read(item.spec.name)
        if current is None:
            raise InterfaceFailure(f"{item.spec.name}: kni-pump reported it created, but there is no such link", {})
        try:
            done.extend(links.apply(item.spec.name, plan_linux(item.spec.linux, current)))
        except LinuxError as exc:
            raise InterfaceFailure(str(exc), {"actions": done}) from exc
    return done


def _predicted(the_plan: Plan) -> List[Dict[str, Any]]:
    reported = []
    for item in the_plan.interfaces:
        spec = item.spec
        linux = predict_linux(item.linux_base, item.linux_changes) if item.linux_base is not None else None
        reported.append(describe(spec.name, item.pump_after, linux, spec.adopt, spec.state == "present"))
    reported.extend(describe(name, None, None, False, False) for name in the_plan.deleted_before)
    return reported


def _observed(the_plan: Plan, client: Any, links: Optional[LinuxLinks]) -> List[Dict[str, Any]]:
    reported = []
    for item in the_plan.interfaces:
        spec = item.spec
        pump = None
        if not spec.adopt and spec.state == "present":
            try:
                pump = _detail(client, spec.name)["desired"]
            except ControlError as exc:
                raise InterfaceFailure(f"{spec.name}: kni-pump no longer knows it after the change: {exc}") from exc
        linux = None
        if links is not None and spec.state == "present" and (spec.adopt or spec.linux.managed()):
            linux = links.read(spec.name)
        reported.append(describe(spec.name, pump, linux, spec.adopt, spec.state == "present"))
    reported.extend(describe(name, None, None, False, False) for name in the_plan.deleted_before)
    return reported
