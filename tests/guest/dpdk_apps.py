# SPDX-License-Identifier: GPL-3.0-or-later
"""Real DPDK applications in a test guest: DPDK 22.11's dpdk-test and dpdk-testpmd built by the set-up
(tests/vmharness/dpdk.py), and bullseye's packaged 20.11 dpdk-testpmd run in the bullseye chroot."""

from __future__ import annotations

import contextlib
import glob
import os
import re
import select
import shlex
import signal
import subprocess
import time
from collections.abc import Iterator

from ansible_collections.kernelnic.kni.plugins.module_utils._kni.memory import read_meminfo

from tests.guest.kni_fixtures import sh, sysfs, wait_for
from tests.vmharness import dpdk

PROMPT = "testpmd> "
# The guest has two CPUs: three EAL lcores (main and two workers, as kni_autotest needs) share them.
LCORES = "0@0,1@1,2@1"
HUGEPAGE_DIR = "/dev/hugepages"
# Interactive; a pool that fits the guest's 64 hugepages (testpmd's default sizes for hundreds of thousands).
TESTPMD_OPTIONS = ("-i", "--total-num-mbufs=8192")
# testpmd prints with stdio, which a pipe would buffer until exit: only its prompt would come back at once.
LINE_BUFFERED = ("stdbuf", "-oL")


def record() -> dpdk.Dpdk:
    return dpdk.load()


def eal_args(iova: str, *vdevs: str) -> list[str]:
    """EAL options common to every run: no PCI, our vdevs, the IOVA mode, hugepage files unlinked once mapped
    (nothing is left in /dev/hugepages when the process dies, even by SIGKILL)."""
    return [
        "--lcores",
        LCORES,
        "-n",
        "1",
        "--no-pci",
        "--huge-unlink",
        f"--iova-mode={iova}",
        *(f"--vdev={vdev}" for vdev in vdevs),
    ]


def free_hugepages() -> int:
    return read_meminfo()["HugePages_Free"]


def remove_hugepage_files() -> None:
    for path in glob.glob(os.path.join(HUGEPAGE_DIR, "*")):
        with contextlib.suppress(OSError):
            os.unlink(path)


def run_autotests(iovas: tuple[str, ...], timeout: float = 400.0) -> dict[str, str]:
    """DPDK's own kni_autotest once per IOVA mode, all at once, each in a network namespace of its own (as two
    applications on two hosts: /dev/kni and the interface names are per namespace); returns what each printed."""
    runs = {}
    try:
        for iova in iovas:
            netns = f"kni-autotest-{iova}"
            sh(f"ip netns add {netns}")
            command = ["ip", "netns", "exec", netns, record().dpdk_test, *eal_args(iova, "net_null0")]
            runs[iova] = subprocess.Popen(
                [*command, f"--file-prefix={netns}"],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
                cwd="/tmp",
            )
        deadline = time.monotonic() + timeout
        return {
            iova: process.communicate("kni_autotest\n", timeout=max(1.0, deadline - time.monotonic()))[0]
            for iova, process in runs.items()
        }
    finally:
        for iova, process in runs.items():
            if process.poll() is None:
                process.kill()
                process.wait()
            sh(f"ip netns del kni-autotest-{iova}", check=False)


class TestPmd:
    """dpdk-testpmd in interactive mode, driven over its stdin like an operator at the prompt."""

    __test__ = False  # not a pytest class

    def __init__(self, argv: list[str], start_timeout: float = 120.0) -> None:
        self.argv = argv
        self.output = ""
        self.process = subprocess.Popen(
            argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, cwd="/tmp"
        )
        self._read_until_prompt(start_timeout)

    @classmethod
    def dpdk_22_11(cls, iova: str, vdevs: tuple[str, ...], *options: str) -> TestPmd:
        return cls([*LINE_BUFFERED, record().dpdk_testpmd, *eal_args(iova, *vdevs), "--", *TESTPMD_OPTIONS, *options])

    @classmethod
    def dpdk_20_11(cls, root: str, iova: str, vdevs: tuple[str, ...], *options: str) -> TestPmd:
        testpmd = record().bullseye_testpmd
        return cls(["chroot", root, *LINE_BUFFERED, testpmd, *eal_args(iova, *vdevs), "--", *TESTPMD_OPTIONS, *options])

    def _read_until_prompt(self, timeout: float) -> str:
        assert self.process.stdout is not None
        deadline = time.monotonic() + timeout
        chunks = []
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError(f"no testpmd prompt within {timeout} s; output so far:\n{self.output[-3000:]}")
            ready = select.select([self.process.stdout], [], [], remaining)[0]
            if not ready:
                continue
            data = os.read(self.process.stdout.fileno(), 65536).decode(errors="replace")
            if not data:
                raise RuntimeError(f"testpmd exited ({self.process.wait()}); output:\n{self.output[-3000:]}")
            self.output += data
            chunks.append(data)
            if self.output.endswith(PROMPT):
                return "".join(chunks)

    def cmd(self, line: str, timeout: float = 60.0) -> str:
        assert self.process.stdin is not None
        self.process.stdin.write(line.encode() + b"\n")
        self.process.stdin.flush()
        return self._read_until_prompt(timeout)

    def port_stats(self, port: int) -> dict[str, int]:
        """RX-packets, RX-missed, RX-errors, TX-packets, TX-errors ... of one port, as testpmd counts them."""
        text = self.cmd(f"show port stats {port}")
        return {name: int(value) for name, value in re.findall(r"([RT]X-[a-z]+):\s+(\d+)", text)}

    def quit(self, timeout: float = 60.0) -> int:
        assert self.process.stdin is not None
        with contextlib.suppress(BrokenPipeError):
            self.process.stdin.write(b"quit\n")
            self.process.stdin.close()
        assert self.process.stdout is not None
        self.output += self.process.stdout.read().decode(errors="replace")
        return self.process.wait(timeout=timeout)

    def kill(self) -> None:
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(timeout=30)
        if self.process.stdout is not None:
            self.process.stdout.close()
        if self.process.stdin is not None:
            with contextlib.suppress(BrokenPipeError):
                self.process.stdin.close()


@contextlib.contextmanager
def running(factory: object, *args: object) -> Iterator[TestPmd]:
    app: TestPmd = factory(*args)  # type: ignore[operator]
    try:
        yield app
    finally:
        if app.process.poll() is None:
            try:
                app.quit()
            except Exception:
                app.kill()
        remove_hugepage_files()


@contextlib.contextmanager
def bullseye_chroot() -> Iterator[str]:
    """The bullseye chroot with the guest's /dev, /proc and /sys bound in (for its packaged DPDK)."""
    root = record().bullseye_chroot
    assert root, "set-up recorded no bullseye chroot"
    mounted = []
    try:
        for path in ("dev", "proc", "sys"):
            target = os.path.join(root, path)
            sh(f"mount --rbind /{path} {shlex.quote(target)} && mount --make-rslave {shlex.quote(target)}")
            mounted.append(target)
        os.makedirs(os.path.join(root, "var/run/dpdk"), exist_ok=True)
        yield root
    finally:
        for target in reversed(mounted):
            sh(f"umount -R {shlex.quote(target)}", check=False)


def link_exists(name: str) -> bool:
    return os.path.exists(f"/sys/class/net/{name}")


def wait_link(name: str, present: bool = True, timeout: float = 30.0) -> bool:
    return wait_for(lambda: link_exists(name) == present, timeout)


def disable_ipv6(name: str) -> None:
    with open(f"/proc/sys/net/ipv6/conf/{name}/disable_ipv6", "w", encoding="ascii") as handle:
        handle.write("1")


def mac_of(name: str) -> str:
    return sysfs(name, "address")


def flags_of(name: str) -> int:
    return int(sysfs(name, "flags"), 16)


def kni_kthreads() -> list[str]:
    names = []
    for comm in glob.glob("/proc/[0-9]*/comm"):
        with contextlib.suppress(OSError), open(comm, encoding="ascii") as handle:
            name = handle.read().strip()
            if name.startswith("kni_"):
                names.append(name)
    return sorted(names)
