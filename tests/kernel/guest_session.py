# SPDX-License-Identifier: GPL-3.0-or-later
"""Run the in-guest pytest session (tests/guest) once per matrix kernel and parse its results."""

from __future__ import annotations

import dataclasses
import os
import shlex
import shutil
import sys
import tempfile
import xml.etree.ElementTree as ET
from typing import Optional

from tests.vmharness import guest, kbuild, matrix

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
# Out-of-tree module trees built for every kernel before it boots (name -> source directory).
TEST_MODULE_SOURCES = {
    "kni_smoke": os.path.join(REPO_ROOT, "tests", "kernel", "modules", "kni_smoke"),
    "rte_kni": os.path.join(REPO_ROOT, "kmod"),
}
GUEST_TIMEOUT = float(os.environ.get("KNI_GUEST_TIMEOUT", "1200"))
# Boots under TCG have hung before the initramfs said anything (once in dozens of boots, another kernel fine in the
# same run): a guest that never reaches its command is booted again, once, and the summary says so.
BOOT_ATTEMPTS = 2


@dataclasses.dataclass
class GuestSession:
    kernel: matrix.Kernel
    result: guest.GuestResult
    tests: int
    failures: list[str]
    skipped: list[str]
    boot_retries: list[str] = dataclasses.field(default_factory=list)  # why each earlier boot was given up
    idle_percent: Optional[float] = None  # of the guest's vCPUs over the session: time the host's CPUs had free


def idle_percent(proc_stat_line: str) -> Optional[float]:
    """Idle and iowait as a share of all CPU time in the ``cpu`` line of /proc/stat."""
    fields = proc_stat_line.split()
    if len(fields) < 6 or fields[0] != "cpu":
        return None
    ticks = [int(value) for value in fields[1:9]]
    return 100.0 * (ticks[3] + ticks[4]) / max(sum(ticks), 1)


def build_test_modules(kernel: matrix.Kernel) -> str:
    """Build every test module for ``kernel`` into a directory the guest can read."""
    output = tempfile.mkdtemp(prefix=f"kni-modules-{kernel.name}-", dir="/var/tmp")
    os.chmod(output, 0o755)
    for source in TEST_MODULE_SOURCES.values():
        kbuild.build_module(kernel, source, output)
    return output


def guest_script(kernel: matrix.Kernel, modules_dir: str, selection: list[str]) -> str:
    env = {
        "KNI_KERNEL_NAME": kernel.name,
        "KNI_KERNEL_RELEASE": kernel.release,
        "KNI_TEST_MODULES": modules_dir,
        "PYTHONDONTWRITEBYTECODE": "1",
        "KNI_ANSIBLE_INTEGRATION": os.environ.get("KNI_ANSIBLE_INTEGRATION", "0"),
        # The guest sees the host's cache at the same path; a set-up into another cache must be found there too.
        "KNI_CACHE": matrix.CACHE_DIR,
    }
    exports = " ".join(f"{key}={shlex.quote(value)}" for key, value in env.items())
    pytest_args = " ".join(shlex.quote(item) for item in selection)
    return (
        f"cd {shlex.quote(REPO_ROOT)}\n"
        f"export {exports}\n"
        f"{shlex.quote(sys.executable)} -m pytest -p no:cacheprovider -o addopts='' -rfEs -v "
        f"--junitxml=/kni-results/junit.xml {pytest_args}\n"
        "status=$?\n"
        "head -n 1 /proc/stat > /kni-results/proc_stat\n"
        "exit $status\n"
    )


def parse_junit(path: str) -> tuple[int, list[str], list[str]]:
    """(number of tests, failed or errored test ids, skipped test ids)."""
    root = ET.parse(path).getroot()
    tests, failures, skipped = 0, [], []
    for case in root.iter("testcase"):
        tests += 1
        name = f"{case.get('classname')}::{case.get('name')}"
        if case.find("failure") is not None or case.find("error") is not None:
            failures.append(name)
        if case.find("skipped") is not None:
            skipped.append(name)
    return tests, failures, skipped


def run(kernel: matrix.Kernel, selection: list[str] | None = None) -> GuestSession:
    modules_dir = build_test_modules(kernel)
    try:
        return _run_session(kernel, modules_dir, selection)
    finally:
        shutil.rmtree(modules_dir, ignore_errors=True)  # (each run built its own: nothing else reads them)


def _run_session(kernel: matrix.Kernel, modules_dir: str, selection: list[str] | None) -> GuestSession:
    chosen = selection or os.environ.get("KNI_GUEST_TESTS", "tests/guest").split()
    script = guest_script(kernel, modules_dir, chosen)
    os.environ.setdefault("KNI_KEEP_GUEST_RESULTS", "")
    boot_retries: list[str] = []
    while True:
        with guest.Guest(kernel, script) as vm:
            try:
                result = vm.wait(timeout=GUEST_TIMEOUT)
            except guest.BootTimeout as exc:
                if len(boot_retries) + 1 >= BOOT_ATTEMPTS:
                    raise
                boot_retries.append(str(exc))
                continue
            junit = os.path.join(vm.results, "junit.xml")
            stat_path = os.path.join(vm.results, "proc_stat")
            idle = None
            if os.path.exists(stat_path):
                with open(stat_path, encoding="ascii") as handle:
                    idle = idle_percent(handle.read())
            if os.path.exists(junit):
                tests, failures, skipped = parse_junit(junit)
            else:
                tests, failures, skipped = 0, ["<no junit report: the guest session did not run>"], []
        return GuestSession(kernel, result, tests, failures, skipped, boot_retries, idle)
