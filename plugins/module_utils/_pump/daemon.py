# SPDX-License-Identifier: GPL-3.0-or-later
# Copyright: kernelnic.kni contributors
"""The kni-pump daemon: owns /dev/kni, keeps the KNI interfaces matching the desired state and moves their frames.

``PumpDaemon`` is built from parts of one purpose each, every one a class the next builds on: its state
(``daemon_core``), link and address tracking (``daemon_links``), the answers to kernel requests
(``daemon_requests``), the round over every interface (``daemon_pumping``), reconcile (``daemon_reconcile``), the
control API (``daemon_control``) and the event loop (``daemon_loop``); this module adds start-up and shutdown.
"""

from __future__ import annotations

from typing import Dict, List, Optional, Sequence

from ansible_collections.kernelnic.kni.plugins.module_utils._kni.abi import KniError
from ansible_collections.kernelnic.kni.plugins.module_utils._pump.control import ControlServer
from ansible_collections.kernelnic.kni.plugins.module_utils._pump.daemon_core import Settings
from ansible_collections.kernelnic.kni.plugins.module_utils._pump.daemon_loop import EventLoop
from ansible_collections.kernelnic.kni.plugins.module_utils._pump.log import LOG
from ansible_collections.kernelnic.kni.plugins.module_utils._pump.netlink import Job
from ansible_collections.kernelnic.kni.plugins.module_utils._pump.plan import assign_macs, by_name
from ansible_collections.kernelnic.kni.plugins.module_utils._pump.schema import InterfaceConfig

__all__ = ["PumpDaemon", "Settings"]  # a PumpDaemon is made with its Settings


class PumpDaemon(EventLoop):
    """Reconciles and pumps. ``run`` is the event loop; ``handle_request`` serves the control protocol.

    Its parts, each a class the next one builds on: ``PumpCore`` (state), ``LinkTracking``, ``RequestAnswers``,
    ``Pumping``, ``Reconciler``, ``ControlApi``, ``EventLoop``.
    """

    def start(
        self,
        desired: Sequence[InterfaceConfig],
        admin_up: Sequence[str] = (),
        addresses: Optional[Dict[str, List[str]]] = None,
    ) -> List[str]:
        """Create the initial interfaces, bring up those in ``admin_up`` and put ``addresses`` back (as they were
        when the last daemon ended), and open the control socket; returns per-interface failures."""
        interfaces = assign_macs(list(desired), {})
        self.desired = by_name(interfaces)
        self.admin = {name: True for name in admin_up if name in self.desired}
        self.addresses = {name: list(found) for name, found in (addresses or {}).items() if name in self.desired}
        self._persist()
        jobs: List[Job] = []
        self._start_jobs = jobs
        errors = self._reconcile()
        # Bringing an interface up is a request this thread answers, then a carrier change (appended to ``jobs`` as
        # the request is answered), and addresses go back: pump until they are all done.
        done = self.pump_until(lambda: all(job.done.is_set() for job in jobs))
        self._start_jobs = None
        if not done:
            errors.append("bringing the interfaces up again did not complete")
        for job in jobs:
            if job.error is not None:
                errors.append(f"{job.description}: {job.error}")
        if self.settings.socket_path:
            self.control = ControlServer(self.settings.socket_path, self.handle_request, self.settings.socket_group)
        return errors

    def close(self) -> None:
        """Release every interface (the kernel would on close anyway) and the control socket."""
        if self.control is not None:
            self.control.close()
            self.control = None
        for name in list(self.ports):
            try:
                self._remove(name, pumping=False)  # on this thread: a stuck worker cannot hold up the exit
            except (KniError, OSError) as exc:
                LOG.warning("%s: release failed: %s", name, exc)
