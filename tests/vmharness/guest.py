# SPDX-License-Identifier: GPL-3.0-or-later
"""Boot a matrix kernel under QEMU (TCG) over the host's root filesystem and run a command in it.

The guest shares the host's ``/`` read-only over virtio-9p with a tmpfs overlay on top, and a
writable 9p share (``/kni-results`` in the guest) through which the command, its output, its exit
code and the guest's dmesg travel. Networking is off unless an SSH port is asked for, and then
user-mode networking with ``restrict=on`` forwards only 127.0.0.1:PORT to the guest's sshd.
"""

from __future__ import annotations

import dataclasses
import os
import shutil
import subprocess
import sys
import tempfile
import time
from typing import Optional

from tests.vmharness import dmesg, initramfs, matrix

GUEST_INIT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "guest_init.sh")
REPO_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
QEMU = "qemu-system-x86_64"


def paths_under_tmp() -> list[str]:
    """The checkout and virtualenv, when they live under /tmp, which the guest replaces with a fresh tmpfs."""
    candidates = (REPO_ROOT, os.path.realpath(sys.prefix))
    under_tmp = sorted({path for path in candidates if path.startswith("/tmp/")})
    # A path inside another kept path comes along with it.
    return [path for path in under_tmp if not any(path.startswith(other + "/") for other in under_tmp)]


def qemu_base(memory_mb: int, cpus: int, vmlinuz: str, initrd: str, append: str) -> list[str]:
    """The QEMU command line every harness VM shares: TCG, a direct kernel boot, no display or monitor."""
    return [
        QEMU,
        "-accel",
        "tcg",
        "-cpu",
        # No ERMS: with it the guest kernel copies (memcpy, copy_to/from_user) with `rep movsb`, which TCG runs one
        # byte per step: 5.2 us for 1500 bytes against 0.5 us for `rep movsq` or glibc's memcpy (QEMU 7.2, measured in
        # a guest). Without it the kernel picks the copy routines of a CPU without ERMS, closer to real hardware.
        "max,erms=off",
        "-m",
        str(memory_mb),
        "-smp",
        str(cpus),
        "-kernel",
        vmlinuz,
        "-initrd",
        initrd,
        "-append",
        # The vCPU threads of an emulated guest on a busy host are descheduled for long stretches, so the clocksource
        # watchdog sees the TSC skew against the HPET and marks it unstable. That flips the sched_clock static key,
        # and TCG can run a stale int3 of that live code patch on another vCPU: "Oops: int3" in sched_clock_cpu, a
        # panic with the module loaded but not involved. The emulated TSC follows the host's clock: trust it.
        f"{append} tsc=reliable",
        "-display",
        "none",
        "-monitor",
        "none",
    ]


def ssh_forward(port: int) -> list[str]:
    """User networking that reaches nothing but a forward of 127.0.0.1:port to the guest's sshd."""
    return [
        "-netdev",
        f"user,id=net0,restrict=on,hostfwd=tcp:127.0.0.1:{port}-:22",
        "-device",
        "virtio-net-pci,netdev=net0",
    ]


class GuestError(RuntimeError):
    """The guest did not boot, died, or overran its time; the message carries the console's tail."""


class BootTimeout(GuestError):
    """The guest never reached its command: a hang before or during the initramfs, not a test failure."""


@dataclasses.dataclass
class GuestResult:
    kernel: str
    exit_code: int
    output: str
    dmesg: str
    console: str
    boot_seconds: float  # host wall time from QEMU start to the command starting
    total_seconds: float

    def dmesg_problems(self) -> list[str]:
        return dmesg.problems(self.dmesg)


class Guest:
    """One QEMU guest. Use as a context manager; ``wait()`` collects the result."""

    def __init__(
        self,
        kernel: matrix.Kernel,
        script: str,
        memory_mb: int = 2048,
        cpus: int = 2,
        ssh_port: Optional[int] = None,
        authorized_keys: Optional[str] = None,
        extra_append: str = "",
    ) -> None:
        self.kernel = kernel
        self.results = tempfile.mkdtemp(prefix=f"kni-guest-{kernel.name}-")
        os.chmod(self.results, 0o755)
        self._write("command.sh", script if script.endswith("\n") else script + "\n")
        self._write("keep_paths", "".join(f"{path}\n" for path in paths_under_tmp()))
        if ssh_port:
            self._write("ssh_port", f"{ssh_port}\n")
            self._write("authorized_keys", authorized_keys or "")
        self.console_path = os.path.join(self.results, "console.log")
        self.ssh_port = ssh_port
        self.command = self._qemu_command(memory_mb, cpus, extra_append)
        self.process: Optional[subprocess.Popen] = None
        self.started_at = 0.0
        self.boot_seconds: Optional[float] = None

    def _write(self, name: str, text: str) -> None:
        with open(os.path.join(self.results, name), "w", encoding="utf-8") as handle:
            handle.write(text)

    def _qemu_command(self, memory_mb: int, cpus: int, extra_append: str) -> list[str]:
        append = f"console=ttyS0 panic=-1 quiet kni.init={GUEST_INIT} {extra_append}".strip()
        command = qemu_base(memory_mb, cpus, self.kernel.vmlinuz, initramfs.build(self.kernel), append)
        command += [
            "-serial",
            f"file:{self.console_path}",
            "-no-reboot",
            "-virtfs",
            "local,path=/,mount_tag=hostroot,security_model=none,readonly=on,multidevs=remap",
            "-virtfs",
            f"local,path={self.results},mount_tag=results,security_model=none,multidevs=remap",
        ]
        if self.ssh_port:
            command += ssh_forward(self.ssh_port)
        else:
            command += ["-nic", "none"]
        return command

    def start(self) -> Guest:
        self.started_at = time.monotonic()
        self.process = subprocess.Popen(  # lives as long as the guest
            self.command, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
        )
        return self

    def _path(self, name: str) -> str:
        return os.path.join(self.results, name)

    def _read(self, name: str) -> str:
        try:
            with open(self._path(name), encoding="utf-8", errors="replace") as handle:
                return handle.read()
        except FileNotFoundError:
            return ""

    def console_tail(self, lines: int = 40) -> str:
        return "\n".join(self._read("console.log").splitlines()[-lines:])

    def wait_started(self, timeout: float = 120) -> float:
        """Wait for the command to start; returns the boot-to-command time."""
        deadline = self.started_at + timeout
        while self.boot_seconds is None:
            if os.path.exists(self._path("started")):
                self.boot_seconds = time.monotonic() - self.started_at
                break
            self._check_alive("before the command started")
            if time.monotonic() > deadline:
                self.kill()
                raise BootTimeout(
                    f"{self.kernel.name} ({self.kernel.release}) did not boot within {timeout:.0f}s; "
                    f"console:\n{self.console_tail()}"
                )
            time.sleep(0.05)
        return self.boot_seconds

    def _check_alive(self, when: str) -> None:
        assert self.process is not None
        if self.process.poll() is not None and not os.path.exists(self._path("exit_code")):
            stderr = self.process.stderr.read().decode(errors="replace") if self.process.stderr else ""
            raise GuestError(
                f"{self.kernel.name} ({self.kernel.release}) guest exited {when} "
                f"(qemu status {self.process.returncode}) {stderr.strip()}\nconsole:\n{self.console_tail()}"
            )

    def wait(self, timeout: float = 600) -> GuestResult:
        """Wait for the command to finish and the guest to power off."""
        assert self.process is not None
        self.wait_started(timeout=min(timeout, 180))
        deadline = time.monotonic() + timeout
        while not os.path.exists(self._path("exit_code")):
            self._check_alive("while the command ran")
            if time.monotonic() > deadline:
                self.kill()
                raise GuestError(
                    f"{self.kernel.name} ({self.kernel.release}): command overran {timeout:.0f}s; output tail:\n"
                    + "\n".join(self._read("output.log").splitlines()[-40:])
                    + f"\nconsole:\n{self.console_tail()}"
                )
            time.sleep(0.1)
        try:
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.kill()
        return GuestResult(
            kernel=self.kernel.name,
            exit_code=int(self._read("exit_code").strip() or "255"),
            output=self._read("output.log"),
            dmesg=self._read("dmesg.log"),
            console=self._read("console.log"),
            boot_seconds=self.boot_seconds or 0.0,
            total_seconds=time.monotonic() - self.started_at,
        )

    def poweroff(self) -> None:
        """Ask a long-running guest's command to end (it then dumps dmesg and powers off)."""
        self._write("stop", "")

    def kill(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.kill()
            self.process.wait()

    def __enter__(self) -> Guest:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.kill()
        if self.process and self.process.stderr:
            self.process.stderr.close()
        if not os.environ.get("KNI_KEEP_GUEST_RESULTS"):
            shutil.rmtree(self.results, ignore_errors=True)


def run_script(
    kernel: matrix.Kernel, script: str, timeout: float = 600, ssh_port: Optional[int] = None, **kwargs: object
) -> GuestResult:
    """Boot ``kernel``, run the bash ``script`` as root in the guest, power off; returns the result."""
    with Guest(kernel, script, ssh_port=ssh_port, **kwargs) as guest:  # type: ignore[arg-type]
        return guest.wait(timeout=timeout)
