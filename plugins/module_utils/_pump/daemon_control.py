# SPDX-License-Identifier: GPL-3.0-or-later
# Copyright: kernelnic.kni contributors
"""``PumpDaemon``'s control API: the replies to the control protocol's list, get, stats, apply and delete."""

from __future__ import annotations

from typing import Any, Dict, List

from ansible_collections.kernelnic.kni.plugins.module_utils._pump.control import (
    ControlRequest,
    error_reply,
    ok_reply,
)
from ansible_collections.kernelnic.kni.plugins.module_utils._pump.daemon_reconcile import Reconciler
from ansible_collections.kernelnic.kni.plugins.module_utils._pump.plan import assign_macs, by_name, plan
from ansible_collections.kernelnic.kni.plugins.module_utils._pump.schema import (
    ConfigError,
    InterfaceConfig,
    check_runtime,
    check_unique,
)


class ControlApi(Reconciler):
    """``handle_request`` (the control socket's handler) and ``apply`` (also used by a reload)."""

    def handle_request(self, request: ControlRequest) -> Dict[str, Any]:
        op = request.op
        if op == "list":
            return ok_reply(interfaces=[self._summary(name) for name in sorted(self.desired)])
        if op == "get":
            if request.name not in self.desired:
                return error_reply("name", f"no interface {request.name!r}")
            return ok_reply(interface=self._detail(request.name))
        if op == "stats":
            if request.name is not None and request.name not in self.ports:
                return error_reply("name", f"no running interface {request.name!r}")
            names = [request.name] if request.name else sorted(self.ports)
            return ok_reply(daemon=self._daemon_stats(), interfaces={name: self.ports[name].status() for name in names})
        if op == "delete":
            if request.name not in self.desired:
                return error_reply("name", f"no interface {request.name!r}")
            remaining = [config for name, config in self.desired.items() if name != request.name]
            return self.apply(remaining, replace=True, paths=[])
        return self.apply(request.interfaces, replace=request.replace, paths=request.paths)

    def apply(self, interfaces: List[InterfaceConfig], replace: bool, paths: List[str]) -> Dict[str, Any]:
        """Validate everything, persist the new desired state, then reconcile. Invalid: nothing changes."""
        try:
            check_runtime(
                interfaces, self.system.online_cpus(), self.system.links(), list(self.ports), paths=paths or None
            )
            if replace:
                merged = list(interfaces)
            else:
                merged = [config for name, config in self.desired.items() if name != interfaces[0].name]
                merged.append(interfaces[0])
            check_unique(merged, "interfaces")
            if len(merged) > self.settings.max_interfaces:
                field = paths[-1] if paths else "interfaces"
                raise ConfigError(
                    field, f"more than the {self.settings.max_interfaces} interfaces this pump has memory for"
                )
        except ConfigError as exc:
            return error_reply(exc.field, exc.message)
        known = {**self.desired, **{name: port.config for name, port in self.ports.items()}}
        self.desired = by_name(assign_macs(merged, known))
        self.admin = {name: up for name, up in self.admin.items() if name in self.desired}
        self._persist()
        actions = plan(self.desired, {name: port.config for name, port in self.ports.items()})
        errors = self._reconcile()
        described = [action.describe() for action in actions]
        if errors:
            return error_reply("interfaces", "; ".join(errors), actions=described)
        return ok_reply(actions=described, interfaces=[self._summary(name) for name in sorted(self.desired)])

    def _summary(self, name: str) -> Dict[str, Any]:
        port = self.ports.get(name)
        summary: Dict[str, Any] = {"name": name, "backend": str(self.desired[name].backend)}
        if port is None:
            summary.update(state="failed" if name in self.failed else "absent", error=self.failed.get(name))
        else:
            status = port.status()
            summary.update({key: status[key] for key in ("state", "carrier", "mtu", "mac")})
        return summary

    def _detail(self, name: str) -> Dict[str, Any]:
        detail = {"desired": self.desired[name].to_json(), **self._summary(name)}
        port = self.ports.get(name)
        if port is not None:
            detail.update(port.status())
        return detail

    def _daemon_stats(self) -> Dict[str, Any]:
        return {**self.stats, "idle_sleep": self.sleep, "interfaces": len(self.ports), "failed": dict(self.failed)}
