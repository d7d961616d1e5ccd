# SPDX-License-Identifier: GPL-3.0-or-later
# Copyright: kernelnic.kni contributors
"""kni-pump start-up on the real rte_kni module: interfaces brought up by someone else (networkd, an operator's
script) as soon as they appear, while the pump is still creating the next ones.

The kernel holds RTNL while it waits for the pump to answer such an up request, and creating an interface takes
RTNL: a pump that created its interfaces on the thread that answers requests let the `ip` command time out after
3 s ("RTNETLINK answers: Timer expired") and its own start-up wait as long.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

from tests.guest.test_pump_kni import ENV, REPO, sh, sysfs, teardown, wait_for

RUN_DIR = "/tmp/kni-pump-startup"
NAMES = [f"kstart{index}" for index in range(4)]
STARTS = 2


def bring_up_as_they_appear(process: subprocess.Popen) -> list[tuple[str, int, str]]:
    """`ip link set NAME up` for each interface the moment it exists: (name, exit status, stderr) of each."""
    results = []
    deadline = time.monotonic() + 120
    for name in NAMES:
        while not os.path.exists(f"/sys/class/net/{name}"):
            assert process.poll() is None, f"kni-pump exited with {process.returncode}"
            assert time.monotonic() < deadline, f"{name} never appeared"
            time.sleep(0.001)
        done = subprocess.run(
            ["ip", "link", "set", name, "up"], capture_output=True, text=True, timeout=60, check=False
        )
        results.append((name, done.returncode, done.stderr.strip()))
    return results


def wait_logged_ready(path: str, process: subprocess.Popen) -> str:
    """The pump's log once it says it is ready (its start-up finished)."""
    deadline = time.monotonic() + 60
    while True:
        with open(path, encoding="utf-8") as handle:
            logged = handle.read()
        if " ready " in logged:
            return logged
        assert process.poll() is None and time.monotonic() < deadline, f"kni-pump never got ready:\n{logged}"
        time.sleep(0.01)


def test_interfaces_brought_up_while_others_are_created() -> None:
    teardown()
    sh(f"insmod {os.path.join(os.environ['KNI_TEST_MODULES'], 'rte_kni.ko')}")
    sh("echo 32 > /proc/sys/vm/nr_hugepages")
    os.makedirs(RUN_DIR, exist_ok=True)
    config = f"{RUN_DIR}/config.json"
    with open(config, "w", encoding="utf-8") as handle:
        json.dump(
            {"version": 1, "interfaces": [{"name": name, "backend": "null", "carrier": "on"} for name in NAMES]}, handle
        )
    subprocess.run([sys.executable, "-m", "compileall", "-q", os.path.join(REPO, "plugins")], env=ENV, check=True)
    command = [sys.executable, "-S", "-m", "ansible_collections.kernelnic.kni.plugins.module_utils._pump.cli", "run"]
    try:
        for start in range(STARTS):
            log_path = f"{RUN_DIR}/pump{start}.log"
            with open(log_path, "w", encoding="utf-8") as log:
                arguments = ["--max-interfaces", "4", "--state-dir", f"{RUN_DIR}/state{start}", "--config", config]
                process = subprocess.Popen(
                    [*command, *arguments, "--socket", f"{RUN_DIR}/control{start}.sock"],
                    env=ENV,
                    stdout=log,
                    stderr=log,
                )
                try:
                    results = bring_up_as_they_appear(process)
                    logged = wait_logged_ready(log_path, process)
                    assert all(code == 0 for _name, code, _error in results), (results, logged)
                    for name in NAMES:
                        assert int(sysfs(name, "flags"), 16) & 0x1, f"{name} is not up"
                finally:
                    process.kill()
                    process.wait(30)
            assert "ERROR" not in logged, logged
            gone = wait_for(lambda: not any(os.path.exists(f"/sys/class/net/{name}") for name in NAMES), 30)
            assert gone, "interfaces left after kill -9"
    finally:
        teardown()
