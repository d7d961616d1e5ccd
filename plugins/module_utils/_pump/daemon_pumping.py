# SPDX-License-Identifier: GPL-3.0-or-later
# Copyright: kernelnic.kni contributors
"""``PumpDaemon``'s round over every interface: answer a pending request and move a burst each way, and keep doing
so while something else (a worker job) completes."""

from __future__ import annotations

import time
from typing import Callable

from ansible_collections.kernelnic.kni.plugins.module_utils._kni.abi import KniError
from ansible_collections.kernelnic.kni.plugins.module_utils._pump.daemon_requests import RequestAnswers
from ansible_collections.kernelnic.kni.plugins.module_utils._pump.log import LOG
from ansible_collections.kernelnic.kni.plugins.module_utils._pump.pacing import FIRST_SLEEP, JOB_TIMEOUT
from ansible_collections.kernelnic.kni.plugins.module_utils._pump.state import StateError


class Pumping(RequestAnswers):
    """``pump_once`` and ``pump_until``."""

    def _kernel_pending(self) -> bool:
        return any(port.kernel_pending() for port in self.ports.values())

    def pump_once(self) -> int:
        """One round over every interface: answer a pending request, move a burst each way."""
        self.stats["rounds"] += 1
        moved = 0
        self.throttled = False
        for port in list(self.ports.values()):
            try:
                request = port.device.poll_requests()
            except KniError as exc:
                LOG.error("%s: request handling failed: %s", port.config.name, exc)
                request = None
            if request is not None:
                self.stats["requests"] += 1
                port.counters["requests"] += 1
                if request.result:
                    port.counters["requests_refused"] += 1
                moved += 1
            moved += port.pump()
            self.throttled = self.throttled or port.throttled
        if self._state_dirty:
            self._state_dirty = False
            try:
                self._persist()
            except StateError as exc:
                LOG.error("administrative state not saved: %s", exc)
        return moved

    def pump_until(self, condition: Callable[[], bool], timeout: float = JOB_TIMEOUT) -> bool:
        """Keep answering requests and moving frames (but not serving clients) until ``condition()`` holds."""
        deadline = time.monotonic() + timeout
        while not condition():
            if time.monotonic() > deadline:
                return False
            if not self.pump_once():
                time.sleep(FIRST_SLEEP)
        return True
