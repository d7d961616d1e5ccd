# SPDX-License-Identifier: GPL-3.0-or-later
# Copyright: kernelnic.kni contributors
"""``PumpDaemon``'s answers to the kernel's requests (MTU, up/down, MAC, promiscuity, allmulticast).

They run while the kernel holds RTNL waiting for the answer: each decides at once and defers the rest (carrier,
packet socket memberships) to the worker thread."""

from __future__ import annotations

from typing import Callable, Optional

from ansible_collections.kernelnic.kni.plugins.module_utils._kni.request_protocol import KniRequest, RequestCallbacks
from ansible_collections.kernelnic.kni.plugins.module_utils._pump.daemon_links import LinkTracking
from ansible_collections.kernelnic.kni.plugins.module_utils._pump.log import LOG
from ansible_collections.kernelnic.kni.plugins.module_utils._pump.port import Port
from ansible_collections.kernelnic.kni.plugins.module_utils._pump.schema import mac_text


class RequestAnswers(LinkTracking):
    """The ``RequestCallbacks`` each interface's device answers the kernel with."""

    def _callbacks(self, get_port: Callable[[], Optional[Port]]) -> RequestCallbacks:
        def change_mtu(mtu: int) -> int:
            port = get_port()
            if port is None:
                return 0
            result = port.backend.check_mtu(mtu)
            if result == 0:
                port.mtu = mtu
            else:
                LOG.info("%s: MTU %d refused by backend %s", port.config.name, mtu, port.config.backend)
            return result

        def config_network_if(up: bool) -> int:
            port = get_port()
            if port is None:
                return 0
            port.backend.set_admin_up(up)
            port.admin_up = up
            name = port.config.name
            # Only a live interface's state is remembered: not the down of one being released or recreated.
            if self.ports.get(name) is port and self.admin.get(name, False) != up:
                self.admin[name] = up
                self._state_dirty = True  # saved by the pump loop once this request is answered
            port.carrier_set = None if up else False  # ndo_open reset the carrier; push the policy after answering
            if up:
                self._sync_carrier(port)
            return 0

        def config_mac_address(mac: bytes) -> int:
            port = get_port()
            if port is None:
                return 0
            result = port.backend.set_mac(mac)
            if result == 0:
                port.mac = mac_text(mac)
            return result

        def config_promiscuity(on: bool) -> int:
            port = get_port()
            return 0 if port is None else port.backend.set_promisc(on)

        def config_allmulticast(on: bool) -> int:
            port = get_port()
            return 0 if port is None else port.backend.set_allmulti(on)

        return RequestCallbacks(
            change_mtu, config_network_if, config_mac_address, config_promiscuity, config_allmulticast
        )

    def _request_error(self, request: KniRequest, failure: BaseException) -> None:
        LOG.error("request %s failed: %r", request.describe(), failure)
