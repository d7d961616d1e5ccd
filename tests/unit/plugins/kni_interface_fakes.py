# SPDX-License-Identifier: GPL-3.0-or-later
# Copyright: kernelnic.kni contributors
"""Fakes for kni_interface: an IPRoute over an in-memory link table, and a kni-pump control client.

``FakePump`` parses every request with the pump's own ``parse_request`` (so a request the daemon would refuse fails
here too), keeps the desired state like the daemon (merge by name, generated MACs) and creates, recreates and
deletes the links in the ``FakeIPRoute`` like the KNI module would.
"""

from __future__ import annotations

import json
import socket
from typing import Any, Dict, List, Optional, Tuple

from ansible_collections.kernelnic.kni.plugins.module_utils._pump.control import (
    PROTOCOL_VERSION,
    ControlCalls,
    ControlError,
    error_reply,
    ok_reply,
    parse_request,
)
from ansible_collections.kernelnic.kni.plugins.module_utils._pump.plan import CREATION_FIELDS, assign_macs
from ansible_collections.kernelnic.kni.plugins.module_utils._pump.schema import InterfaceConfig

IFF_UP = 0x1
IFF_BROADCAST = 0x2
IFF_MULTICAST = 0x1000


class Message(dict):
    """A pyroute2-like message: fields by key, NLAs by ``get_attr``."""

    def __init__(self, fields: Dict[str, Any], attrs: Dict[str, Any]) -> None:
        super().__init__(fields)
        self.attrs = attrs

    def get_attr(self, name: str) -> Any:
        return self.attrs.get(name)


class NetlinkError(OSError):
    @property
    def code(self) -> int:
        return self.errno


class FakeIPRoute:
    def __init__(self) -> None:
        self.links: Dict[int, Dict[str, Any]] = {1: {"name": "lo", "flags": 0x9, "driver": None}}
        self.addresses: List[Tuple[int, int, str, int]] = []  # (index, family, address, prefixlen)
        self.next_index = 2
        self.calls: List[Tuple[str, Dict[str, Any]]] = []
        self.closed = False
        self.fail_on: Optional[str] = None  # a command ("link set", "addr add") that raises
        self.old_del = False  # refuse "del" like a new kernel refuses pyroute2 0.5's request

    def add_link(self, name: str, flags: int = IFF_BROADCAST | IFF_MULTICAST, driver: Optional[str] = "veth") -> int:
        index = self.next_index
        self.next_index += 1
        self.links[index] = {"name": name, "flags": flags, "driver": driver}
        return index

    def driver_of(self, name: str) -> Optional[str]:
        """What ethtool would report as the link's driver."""
        index = self.index_of(name)
        return None if index is None else self.links[index]["driver"]

    def remove_link(self, name: str) -> None:
        for index, link in list(self.links.items()):
            if link["name"] == name:
                del self.links[index]
                self.addresses = [entry for entry in self.addresses if entry[0] != index]

    def index_of(self, name: str) -> Optional[int]:
        return next((index for index, link in self.links.items() if link["name"] == name), None)

    def flags(self, name: str) -> int:
        index = self.index_of(name)
        assert index is not None
        return int(self.links[index]["flags"])

    def cidrs(self, name: str) -> List[str]:
        index = self.index_of(name)
        return sorted(f"{address}/{prefix}" for owner, _family, address, prefix in self.addresses if owner == index)

    # --- the IPRoute calls the module may use ---

    def link_lookup(self, ifname: str) -> List[int]:
        index = self.index_of(ifname)
        return [] if index is None else [index]

    def get_links(self, index: int) -> Tuple[Message, ...]:
        link = self.links[index]
        return (Message({"index": index, "flags": link["flags"]}, {"IFLA_IFNAME": link["name"]}),)

    def get_addr(self) -> Tuple[Message, ...]:
        return tuple(
            Message({"index": index, "family": family, "prefixlen": prefix}, {"IFA_ADDRESS": address})
            for index, family, address, prefix in self.addresses
        )

    def link(self, command: str, index: int, flags: int, change: int) -> Tuple[()]:
        assert command == "set"
        self.calls.append(("link set", {"index": index, "flags": flags, "change": change}))
        if self.fail_on == "link set":
            raise NetlinkError(16, "Device or resource busy")
        link = self.links[index]
        link["flags"] = (link["flags"] & ~change) | (flags & change)
        return ()

    def addr(self, command: Any, index: int, address: str, prefixlen: int, family: int, **extra: Any) -> Tuple[()]:
        if self.old_del and command == "del":  # pyroute2 0.5's flags on a kernel that checks them
            raise NetlinkError(95, "Operation not supported")
        if command == (21, 5):  # RTM_DELADDR with NLM_F_REQUEST|NLM_F_ACK
            command = "del"
        self.calls.append((f"addr {command}", {"index": index, "address": address, "prefixlen": prefixlen}))
        assert family == (socket.AF_INET6 if ":" in address else socket.AF_INET)
        if self.fail_on == f"addr {command}":
            raise NetlinkError(22, "Invalid argument")
        entry = (index, family, address, prefixlen)
        if command == "add":
            if entry in self.addresses:
                raise NetlinkError(17, "File exists")
            self.addresses.append(entry)
        else:
            if entry not in self.addresses:
                raise NetlinkError(99, "Cannot assign requested address")
            self.addresses.remove(entry)
        return ()

    def close(self) -> None:
        self.closed = True


class FakePump(ControlCalls):
    """kni-pump's control protocol over a fake link table; ``requests`` records every request sent."""

    path = "/fake/kni-pump.sock"

    def __init__(self, ipr: FakeIPRoute) -> None:
        self.ipr = ipr
        self.desired: Dict[str, InterfaceConfig] = {}
        self.failed: Dict[str, str] = {}
        self.requests: List[Dict[str, Any]] = []
        self.closed = 0
        self.refuse: Optional[Tuple[str, str]] = None  # (field, message) for the next apply

    def add(self, config: InterfaceConfig) -> None:
        self.desired[config.name] = config
        self.ipr.add_link(config.name, driver="kni")

    def call(self, op: str, **fields: Any) -> Dict[str, Any]:
        line = json.dumps({"version": PROTOCOL_VERSION, "op": op, **fields}).encode()
        self.requests.append(json.loads(line))
        request = parse_request(line)
        reply = self._answer(request)
        if not reply["ok"]:
            raise ControlError(reply)
        return reply

    def mutations(self) -> List[Dict[str, Any]]:
        return [request for request in self.requests if request["op"] in ("apply", "delete")]

    def _summary(self, name: str) -> Dict[str, Any]:
        config = self.desired[name]
        index = self.ipr.index_of(name)
        state = "failed" if name in self.failed else "absent"
        if index is not None:
            state = "up" if self.ipr.flags(name) & IFF_UP else "down"
        return {"name": name, "backend": str(config.backend), "state": state, "mac": config.mac, "mtu": config.mtu}

    def _answer(self, request: Any) -> Dict[str, Any]:
        if request.op == "list":
            return ok_reply(interfaces=[self._summary(name) for name in sorted(self.desired)])
        if request.op == "get":
            if request.name not in self.desired:
                return error_reply("name", f"no interface {request.name!r}")
            return ok_reply(interface={"desired": self.desired[request.name].to_json(), **self._summary(request.name)})
        if request.op == "delete":
            if request.name not in self.desired:
                return error_reply("name", f"no interface {request.name!r}")
            del self.desired[request.name]
            self.ipr.remove_link(request.name)
            return ok_reply(actions=[f"delete {request.name}"], interfaces=[])
        assert request.op == "apply" and not request.replace
        refusal, self.refuse = self.refuse, None
        if refusal is not None:
            return error_reply(refusal[0], refusal[1])
        config = assign_macs(request.interfaces, self.desired)[0]
        previous = self.desired.get(config.name)
        self.desired[config.name] = config
        if previous is None or any(getattr(previous, key) != getattr(config, key) for key in CREATION_FIELDS):
            self.ipr.remove_link(config.name)
            self.ipr.add_link(config.name, driver="kni")
        self.failed.pop(config.name, None)
        return ok_reply(actions=[f"apply {config.name}"], interfaces=[self._summary(config.name)])

    def close(self) -> None:
        self.closed += 1
