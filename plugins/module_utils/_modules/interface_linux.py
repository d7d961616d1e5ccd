# SPDX-License-Identifier: GPL-3.0-or-later
# Copyright: kernelnic.kni contributors
"""kni_interface, the Linux side: read and change a link's admin state, flags and addresses with pyroute2.

Managed hosts carry pyroute2 0.5.14 (bullseye) to 0.9.x, so only the IPRoute calls all of them share are used:
``link_lookup``, ``get_links``, ``link("set", index=, flags=, change=)``, ``get_addr`` and ``addr("add"/"del")``
with ``index``, ``address``, ``prefixlen`` and ``family``. pyroute2 is imported when a link is first needed, so
tasks that touch only kni-pump run without it.
"""

from __future__ import annotations

import ipaddress
import socket
from typing import Any, Callable, List, Optional, Sequence

from ansible_collections.kernelnic.kni.plugins.module_utils._modules.interface import LinuxChange, LinuxState
from ansible_collections.kernelnic.kni.plugins.module_utils._modules.interface_options import address_key
from ansible_collections.kernelnic.kni.plugins.module_utils._modules.netdev import DriverProbe, ethtool_driver

IFF_UP = 0x1
RTM_DELADDR = 21
NLM_F_REQUEST_ACK = 0x1 | 0x4
EOPNOTSUPP = 95
IFF_PROMISC = 0x100
IFF_ALLMULTI = 0x200
_FLAGS = {"promisc": IFF_PROMISC, "allmulticast": IFF_ALLMULTI}
MISSING_PYROUTE2 = (
    "the Python library pyroute2 is missing on the managed host (for the interpreter running this module);"
    " install the package python3-pyroute2 (Debian, Ubuntu) or 'pip install pyroute2'"
)


class LinuxError(Exception):
    """pyroute2 is missing or a netlink request failed; the message names the interface and the step."""


def open_iproute() -> Any:
    try:
        from pyroute2 import IPRoute  # pylint: disable=import-outside-toplevel
    except ImportError as exc:
        raise LinuxError(MISSING_PYROUTE2) from exc
    return IPRoute()


def _netlink_errors() -> tuple:
    try:
        from pyroute2.netlink.exceptions import NetlinkError  # pylint: disable=import-outside-toplevel
    except ImportError:
        return (OSError,)
    return (NetlinkError, OSError)


def _attr(message: Any, name: str) -> Any:
    return message.get_attr(name)


def _cidr(message: Any) -> Optional[str]:
    """``address/prefix`` of one address message; IFA_LOCAL is the local end (IFA_ADDRESS the peer on ptp)."""
    address = _attr(message, "IFA_LOCAL") or _attr(message, "IFA_ADDRESS")
    if not address:
        return None
    interface = ipaddress.ip_interface(f"{address}/{message['prefixlen']}")
    return f"{interface.ip.compressed}/{interface.network.prefixlen}"


class LinuxLinks:
    """Links of the current network namespace through one IPRoute socket (``opener`` makes it when first used);
    ``driver_of`` names a link's driver (ethtool's, also of the current namespace)."""

    def __init__(self, opener: Callable[[], Any] = open_iproute, driver_of: DriverProbe = ethtool_driver) -> None:
        self._opener = opener
        self._ipr: Any = None
        self._driver_of = driver_of

    @property
    def ipr(self) -> Any:
        if self._ipr is None:
            self._ipr = self._opener()
        return self._ipr

    def driver(self, name: str) -> Optional[str]:
        return self._driver_of(name)

    def index(self, name: str) -> Optional[int]:
        found = list(self.ipr.link_lookup(ifname=name))
        return int(found[0]) if found else None

    def read(self, name: str) -> Optional[LinuxState]:
        index = self.index(name)
        if index is None:
            return None
        links = list(self.ipr.get_links(index))
        if not links:
            return None
        flags = int(links[0]["flags"])
        addresses = [_cidr(message) for message in self.ipr.get_addr() if message["index"] == index]
        return LinuxState(
            ifindex=index,
            admin_state="up" if flags & IFF_UP else "down",
            promisc=bool(flags & IFF_PROMISC),
            allmulticast=bool(flags & IFF_ALLMULTI),
            addresses=tuple(sorted((cidr for cidr in addresses if cidr), key=address_key)),
        )

    def apply(self, name: str, changes: Sequence[LinuxChange]) -> List[str]:
        """Carry out the steps in order; returns their descriptions. Raises ``LinuxError`` at the first failure."""
        done: List[str] = []
        if not changes:
            return done
        index = self.index(name)
        if index is None:
            raise LinuxError(f"{name}: the interface disappeared before its Linux-side settings were applied")
        errors = _netlink_errors()
        for change in changes:
            try:
                self._apply_one(index, change)
            except errors as exc:
                raise LinuxError(f"{change.describe(name)} failed: {exc}") from exc
            done.append(change.describe(name))
        return done

    def _apply_one(self, index: int, change: LinuxChange) -> None:
        if change.kind == "admin":
            self.ipr.link("set", index=index, flags=IFF_UP if change.value == "up" else 0, change=IFF_UP)
        elif change.kind == "flag":
            bit = _FLAGS[change.attribute]
            self.ipr.link("set", index=index, flags=bit if change.value else 0, change=bit)
        else:
            interface = ipaddress.ip_interface(change.value)
            family = socket.AF_INET if interface.version == 4 else socket.AF_INET6
            fields = {
                "index": index,
                "address": str(interface.ip),
                "prefixlen": interface.network.prefixlen,
                "family": family,
            }
            if interface.version == 4:
                fields["local"] = str(interface.ip)
            if change.kind == "addr_add":
                self.ipr.addr("add", **fields)
                return
            try:
                self.ipr.addr("del", **fields)
            except _netlink_errors() as exc:
                # pyroute2 0.5 sends its "del" with NLM_F_CREATE|NLM_F_EXCL, which newer kernels refuse with
                # EOPNOTSUPP: send the plain request instead (0.5 takes a (type, flags) command).
                if getattr(exc, "code", None) != EOPNOTSUPP:
                    raise
                self.ipr.addr((RTM_DELADDR, NLM_F_REQUEST_ACK), **fields)

    def close(self) -> None:
        if self._ipr is not None:
            self._ipr.close()
            self._ipr = None
