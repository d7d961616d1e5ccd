# SPDX-License-Identifier: GPL-3.0-or-later
# Copyright: kernelnic.kni contributors
"""``PumpDaemon``'s reconcile: bring the running interfaces to the desired ones (create, release, recreate, update
live), with the RTNL-taking steps on the worker thread while this thread keeps answering requests."""

from __future__ import annotations

import errno
from typing import Any, Callable, List, Sequence

from ansible_collections.kernelnic.kni.plugins.module_utils._kni.abi import KniError
from ansible_collections.kernelnic.kni.plugins.module_utils._kni.device import DeviceConfig
from ansible_collections.kernelnic.kni.plugins.module_utils._pump.backends import open_backend
from ansible_collections.kernelnic.kni.plugins.module_utils._pump.daemon_core import T
from ansible_collections.kernelnic.kni.plugins.module_utils._pump.daemon_pumping import Pumping
from ansible_collections.kernelnic.kni.plugins.module_utils._pump.log import LOG
from ansible_collections.kernelnic.kni.plugins.module_utils._pump.netlink import Job
from ansible_collections.kernelnic.kni.plugins.module_utils._pump.plan import Action, plan
from ansible_collections.kernelnic.kni.plugins.module_utils._pump.port import Port
from ansible_collections.kernelnic.kni.plugins.module_utils._pump.schema import (
    MAX_FRAME_LEN,
    InterfaceConfig,
    mac_bytes,
)
from ansible_collections.kernelnic.kni.plugins.module_utils._pump.schema import Backend as BackendSpec


class Reconciler(Pumping):
    """``_reconcile`` and the actions it executes."""

    def _reconcile(self) -> List[str]:
        """Bring the running interfaces to ``self.desired``; returns error messages (also kept in ``failed``)."""
        actual = {name: port.config for name, port in self.ports.items()}
        errors = []
        for action in plan(self.desired, actual):
            try:
                self._execute(action)
                self.failed.pop(action.name, None)
            except (KniError, OSError, ValueError) as exc:
                message = f"{action.describe()} failed: {exc}"
                LOG.error("%s", message)
                self.failed[action.name] = message
                errors.append(message)
        # Only now, with every interface created: the kernel holds RTNL while it waits for this thread to answer the
        # up request, and creating an interface needs RTNL, so an earlier up would stall both until the 3 s timeout.
        ports, self._restore = self._restore, []
        for port in ports:
            jobs = []
            if self.admin.get(port.config.name):
                jobs.append(self._link_job(port, "up again", up=True))
            if self.addresses.get(port.config.name):
                jobs += self._restore_addresses(port)
            if self._start_jobs is not None:
                self._start_jobs.extend(jobs)
        return errors

    def _execute(self, action: Action) -> None:
        LOG.info("%s", action.describe())
        if action.kind in ("delete", "recreate"):
            self._remove(action.name)
        if action.config is None:
            if self.addresses.pop(action.name, None):
                self._state_dirty = True
            return
        if action.kind in ("create", "recreate"):
            self._create(action.config)
        if action.kind == "update":
            self._update(self.ports[action.name], action.config, action.changes)

    def _create(self, config: InterfaceConfig) -> None:
        name = config.name
        mac = mac_bytes(config.mac) if config.mac else b""
        device_config = DeviceConfig(
            name=name,
            mbuf_size=MAX_FRAME_LEN,
            mtu=config.mtu,
            min_mtu=config.min_mtu,
            max_mtu=config.max_mtu,
            mac_addr=mac,
            core_id=config.core or 0,
            force_bind=config.core is not None,
        )
        holder: List[Port] = []
        callbacks = self._callbacks(lambda: holder[0] if holder else None)
        device, pool = self._while_pumping(
            lambda: self.kni.create(device_config, callbacks, self._request_error), f"{name}: create"
        )
        try:
            backend = open_backend(config.backend, pool, self._defer, mac)
        except BaseException:
            self.kni.release(device, pool)
            raise
        port = Port(config, device, pool, backend)
        holder.append(port)
        try:
            port.ifindex = self.system.ifindex(name)
        except OSError:
            port.ifindex = 0
        self.ports[name] = port
        if (self.admin.get(name) or self.addresses.get(name)) and port.ifindex:
            self._restore.append(port)  # it was up or had addresses before (last daemon, or before a recreate)

    def _remove(self, name: str, pumping: bool = True) -> None:
        port = self.ports.pop(name, None)
        if port is None:
            return
        port.backend.close()
        if pumping:
            self._while_pumping(lambda: self.kni.release(port.device, port.pool), f"{name}: release")
        else:
            self.kni.release(port.device, port.pool)

    def _while_pumping(self, function: Callable[[], T], description: str) -> T:
        """``function()`` run on the worker while this thread keeps answering the other interfaces' requests.

        For the CREATE and RELEASE ioctls: registering or unregistering a netdev takes RTNL, and the kernel holds
        RTNL while it waits for this thread to answer a request, e.g. an `ip link set up` of an interface created
        just before (networkd, an operator's script). Called here, both would wait until the request timed out
        (3 s) and the `ip` command failed with "Timer expired"."""
        results: List[T] = []
        failures: List[BaseException] = []

        def call() -> None:
            try:
                results.append(function())
            except BaseException as exc:  # pylint: disable=broad-exception-caught  # raised again on this thread
                failures.append(exc)

        job = self.worker.submit(call, description)
        if not self.ports:
            job.done.wait()  # nobody to answer for
        while not self.pump_until(job.done.is_set):
            pass  # the ioctl always returns: RTNL comes free when the requests time out at the latest
        if failures:
            raise failures[0]
        return results[0]

    def _update(self, port: Port, config: InterfaceConfig, changes: Sequence[str]) -> None:
        port.config = config
        if "backend" in changes:
            old = port.backend
            old.close()
            try:
                port.backend = open_backend(
                    config.backend, port.pool, self._defer, mac_bytes(port.mac) if port.mac else b""
                )
            except BaseException:
                port.backend = open_backend(BackendSpec("null"), port.pool, self._defer)  # keep the interface pumping
                raise
            port.backend.set_admin_up(port.admin_up)
        jobs: List[Job] = []
        if "mtu" in changes and port.mtu != config.mtu:
            jobs.append(self._link_job(port, f"MTU {config.mtu}", mtu=config.mtu))
        if "mac" in changes and config.mac and port.mac != config.mac:
            jobs.append(self._link_job(port, f"MAC {config.mac}", address=mac_bytes(config.mac)))
        carrier_job = self._sync_carrier(port)
        if carrier_job is not None:
            jobs.append(carrier_job)
        # The kernel turns MTU/MAC changes into requests to this thread: keep answering while the worker waits.
        if not self.pump_until(lambda: all(job.done.is_set() for job in jobs)):
            raise OSError(errno.ETIMEDOUT, f"{config.name}: link change did not complete")
        for job in jobs:
            if job.error is not None:
                raise OSError(getattr(job.error, "errno", errno.EIO) or errno.EIO, f"{job.description}: {job.error}")

    def _link_job(self, port: Port, description: str, **change: Any) -> Job:
        ifindex = port.ifindex
        return self.worker.submit(lambda: self.links.set_link(ifindex, **change), f"{port.config.name}: {description}")
