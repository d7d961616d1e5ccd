# SPDX-License-Identifier: GPL-3.0-or-later
# Copyright: kernelnic.kni contributors
"""``PumpDaemon``'s part that follows links: backend link events (the ``follow`` carrier policy), the addresses of
its interfaces (persisted and put back after a restart), and pushing each interface's carrier."""

from __future__ import annotations

from typing import Callable, List, Optional, Sequence, Union

from ansible_collections.kernelnic.kni.plugins.module_utils._pump.backends import (
    AfPacketBackend,
    interface_running,
)
from ansible_collections.kernelnic.kni.plugins.module_utils._pump.daemon_core import PumpCore
from ansible_collections.kernelnic.kni.plugins.module_utils._pump.log import LOG
from ansible_collections.kernelnic.kni.plugins.module_utils._pump.netlink import AddressEvent, Job, LinkEvent
from ansible_collections.kernelnic.kni.plugins.module_utils._pump.port import Port


class LinkTracking(PumpCore):
    """Link and address events, carrier, and the jobs that change them on the worker thread."""

    def link_events(self, events: Sequence[Union[LinkEvent, AddressEvent]]) -> None:
        if self.monitor is not None and self.monitor.overflowed:
            self.monitor.overflowed = False
            for port in self.ports.values():
                if isinstance(port.backend, AfPacketBackend):
                    self._refresh_backend_link(port)
        for event in events:
            if isinstance(event, AddressEvent):
                self._address_event(event)
                continue
            for port in self.ports.values():
                backend = port.backend
                if (
                    isinstance(backend, AfPacketBackend)
                    and backend.ifindex == event.index
                    and backend.link_up != event.up
                ):
                    state = "up" if event.up else "down"
                    LOG.info("%s: backend %s link %s", port.config.name, backend.ifname, state)
                    backend.link_changed(event.up)
                    self._sync_carrier(port)

    def _address_event(self, event: AddressEvent) -> None:
        """Keep ``addresses`` in step with the configured addresses of our interfaces. Events about an interface
        that is gone (a crash's or a recreate's old one) match no port's ifindex, so they change nothing."""
        if not event.permanent or event.address.startswith("fe80:"):  # dynamic ones, or the kernel's link-local
            return
        name = next((name for name, port in self.ports.items() if port.ifindex == event.index), None)
        if name is None:
            return
        found = self.addresses.setdefault(name, [])
        if event.deleted and event.address in found:
            found.remove(event.address)
        elif not event.deleted and event.address not in found:
            found.append(event.address)
        else:
            return
        self._state_dirty = True

    def _restore_addresses(self, port: Port) -> List[Job]:
        ifindex, name = port.ifindex, port.config.name

        def add(address: str) -> Callable[[], None]:
            return lambda: self.links.add_address(ifindex, address)

        return [self.worker.submit(add(address), f"{name}: address {address} back") for address in self.addresses[name]]

    def _refresh_backend_link(self, port: Port) -> None:
        backend = port.backend
        if not isinstance(backend, AfPacketBackend):
            return
        try:
            backend.link_changed(interface_running(backend.ifname))
        except OSError:
            backend.link_changed(False)
        self._sync_carrier(port)

    def _sync_carrier(self, port: Port) -> Optional[Job]:
        want = port.desired_carrier()
        if port.carrier_set == want or not port.ifindex:
            return None
        if not port.admin_up:
            port.carrier_set = False  # the kernel keeps a down interface's carrier off
            return None
        port.carrier_set = want
        ifindex, name = port.ifindex, port.config.name
        job = self.worker.submit(
            lambda: self.links.set_link(ifindex, carrier=want), f"{name}: carrier {'on' if want else 'off'}"
        )
        if self._start_jobs is not None:
            self._start_jobs.append(job)
        return job

    def _defer(self, function: Callable[[], None], description: str) -> None:
        self.worker.submit(function, description)
