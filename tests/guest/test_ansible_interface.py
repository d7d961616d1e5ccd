# SPDX-License-Identifier: GPL-3.0-or-later
# Copyright: kernelnic.kni contributors
"""kernelnic.kni.kni_interface through ansible-playbook on the real rte_kni and a running kni-pump: check mode,
create, idempotence, check again, live changes, exclusive lists, refusals before any change, and absent.

The pump runs from this checkout with its own state directory and control socket; ``kvb`` (one end of a veth pair)
is the Linux interface the target bridges to with the afpacket backend.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator

import pytest
from ansible_collections.kernelnic.kni.plugins.module_utils._pump.control import ControlClient

from tests.guest.ansible_runner import REPO_ROOT, run_tasks

pytestmark = pytest.mark.ansible_integration

RUN_DIR = "/var/tmp/kni-interface-target"
SOCKET = f"{RUN_DIR}/control.sock"
BACKEND = "kvb"
CLI = [sys.executable, "-S", "-m", "ansible_collections.kernelnic.kni.plugins.module_utils._pump.cli"]


def sh(command: str, check: bool = True) -> subprocess.CompletedProcess:
    return subprocess.run(command, shell=True, capture_output=True, text=True, check=check, timeout=120)


def _log_tail() -> str:
    with open(f"{RUN_DIR}/pump.log", encoding="utf-8", errors="replace") as handle:
        return handle.read()[-3000:]


@pytest.fixture(scope="module")
def kni_pump() -> Iterator[subprocess.Popen]:
    module = os.path.join(os.environ["KNI_TEST_MODULES"], "rte_kni.ko")
    sh("rmmod rte_kni", check=False)  # another test of the session may have left it loaded
    sh(f"insmod {module}")
    sh("echo 32 > /proc/sys/vm/nr_hugepages")
    sh(f"ip link add {BACKEND} type veth peer name kva && ip link set {BACKEND} up && ip link set kva up")
    os.makedirs(f"{RUN_DIR}/state", exist_ok=True)
    env = {**os.environ, "PYTHONPATH": os.path.join(REPO_ROOT, ".collection-root")}
    argv = [*CLI, "run", "--state-dir", f"{RUN_DIR}/state", "--socket", SOCKET, "--max-interfaces", "2"]
    with open(f"{RUN_DIR}/pump.log", "a", encoding="utf-8") as log:
        process = subprocess.Popen(argv, env=env, stdout=log, stderr=log)
    try:
        deadline = time.monotonic() + 120
        while not os.path.exists(SOCKET) and process.poll() is None and time.monotonic() < deadline:
            time.sleep(0.1)
        if not os.path.exists(SOCKET) or process.poll() is not None:
            pytest.fail(f"kni-pump did not come up (exit {process.poll()}):\n{_log_tail()}")
        yield process
    finally:
        process.terminate()
        try:
            process.wait(30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(10)
        sh(f"ip link del {BACKEND}", check=False)
        sh("rmmod rte_kni", check=False)
        sh("echo 0 > /proc/sys/vm/nr_hugepages", check=False)


def test_kni_interface_target(kni_pump: subprocess.Popen, report: Callable[[str], None]) -> None:
    began = time.monotonic()
    run_tasks("kni_interface", extra_vars={"kni_interface_socket": SOCKET, "kni_interface_backend": BACKEND})
    report(f"kni_interface target: {time.monotonic() - began:.1f} s")
    assert kni_pump.poll() is None, f"kni-pump died during the target:\n{_log_tail()}"
    with ControlClient(SOCKET) as client:
        assert client.call("list")["interfaces"] == []
    assert not os.path.exists("/sys/class/net/kni0") and not os.path.exists("/sys/class/net/kni1")
