# SPDX-License-Identifier: GPL-3.0-or-later
"""VM instances booting a suite's image (see images.py) under QEMU TCG, reachable only over SSH.

Each instance is a directory holding a qcow2 overlay backed by the suite's read-only base, a fresh
SSH key pair, QEMU's pid file, the serial console log and ``instance.json`` (what molecule or the
demo needs to log in). The public key reaches the guest through QEMU's fw_cfg and a unit in the
image installs it before sshd starts. User networking with ``restrict=on`` forwards only
127.0.0.1:PORT to the guest's port 22; the guest reaches nothing else. Stopping kills QEMU and
deletes the directory, overlay included.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import time

from tests.vmharness import guest, images, matrix

STATE_DIR = os.path.join(matrix.CACHE_DIR, "instances")
QEMU = guest.QEMU
# 64 x 2 MiB hugepages reserved at boot, for DPDK-style users of the KNI module.
KERNEL_APPEND = "root=/dev/vda rw console=ttyS0 net.ifnames=0 hugepagesz=2M hugepages=64 panic=-1"
SSH_OPTIONS = ["-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null", "-o", "LogLevel=ERROR"]
NAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$")


class InstanceError(RuntimeError):
    """An instance could not be started or found; the message says why (with the console's tail)."""


@dataclasses.dataclass
class Instance:
    """What a client needs to reach a running instance over SSH."""

    instance: str
    suite: str
    kernel_release: str
    address: str
    port: int
    user: str
    identity_file: str
    pid: int
    directory: str
    console: str
    boot_seconds: float  # QEMU start to the first successful SSH command, host wall time

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self), indent=2, sort_keys=True)

    def ssh_command(self, *command: str) -> list[str]:
        return [
            "ssh",
            *SSH_OPTIONS,
            "-o",
            "BatchMode=yes",
            "-o",
            "ConnectTimeout=10",
            "-i",
            self.identity_file,
            "-p",
            str(self.port),
            f"{self.user}@{self.address}",
            *command,
        ]


def _check_name(name: str) -> None:
    if not NAME_PATTERN.match(name):
        raise InstanceError(f"instance name {name!r} must match {NAME_PATTERN.pattern}")


def _directory(name: str, state_dir: str | None) -> str:
    _check_name(name)
    return os.path.join(state_dir or STATE_DIR, name)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _qemu_alive(pid: int, directory: str) -> bool:
    """Whether ``pid`` is still this instance's QEMU (not a recycled pid)."""
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as handle:
            argv = handle.read().split(b"\0")
    except (FileNotFoundError, ProcessLookupError):
        return False
    return bool(argv) and os.path.basename(argv[0]) == QEMU.encode() and directory.encode() in b" ".join(argv)


def _read_pid(directory: str) -> int | None:
    try:
        with open(os.path.join(directory, "qemu.pid"), encoding="ascii") as handle:
            return int(handle.read().strip())
    except (FileNotFoundError, ValueError):
        return None


def _tail(path: str, lines: int = 30) -> str:
    try:
        with open(path, encoding="utf-8", errors="replace") as handle:
            return "\n".join(handle.read().splitlines()[-lines:])
    except FileNotFoundError:
        return "(no console log)"


def _qemu_command(image: images.Image, directory: str, name: str, port: int, memory_mb: int, cpus: int) -> list[str]:
    append = f"{KERNEL_APPEND} systemd.hostname={name}"
    return [
        *guest.qemu_base(memory_mb, cpus, image.vmlinuz, image.initrd, append),
        "-name",
        name,
        "-drive",
        f"file={os.path.join(directory, 'overlay.qcow2')},if=virtio,format=qcow2,discard=unmap",
        "-fw_cfg",
        f"name=opt/kernelnic/authorized_keys,file={os.path.join(directory, 'id_ed25519.pub')}",
        *guest.ssh_forward(port),
        "-serial",
        f"file:{os.path.join(directory, 'console.log')}",
        "-pidfile",
        os.path.join(directory, "qemu.pid"),
        "-daemonize",
    ]


def start(
    suite: str,
    name: str | None = None,
    state_dir: str | None = None,
    memory_mb: int = 2048,
    cpus: int = 2,
    timeout: float = 900,
) -> Instance:
    """Boot an instance of ``suite``'s image and wait until root can log in over SSH."""
    name = name or f"kni-{suite}"
    directory = _directory(name, state_dir)
    image = images.image(suite)
    pid = _read_pid(directory)
    if pid is not None and _qemu_alive(pid, directory):
        raise InstanceError(f"instance {name} is already running (pid {pid}); stop it first")
    shutil.rmtree(directory, ignore_errors=True)  # leftovers of an instance that died
    os.makedirs(directory)
    key = os.path.join(directory, "id_ed25519")
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", name, "-f", key], check=True)
    overlay = os.path.join(directory, "overlay.qcow2")
    subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", "-b", image.base, "-F", "qcow2", overlay], check=True)
    port = free_port()
    started = time.monotonic()
    subprocess.run(_qemu_command(image, directory, name, port, memory_mb, cpus), check=True)
    pid = _read_pid(directory)
    if pid is None:
        raise InstanceError(f"QEMU for {name} started but wrote no pid file")
    instance = Instance(
        instance=name,
        suite=suite,
        kernel_release=image.kernel_release,
        address="127.0.0.1",
        port=port,
        user="root",
        identity_file=key,
        pid=pid,
        directory=directory,
        console=os.path.join(directory, "console.log"),
        boot_seconds=0.0,
    )
    try:
        _wait_for_login(instance, started + timeout)
    except InstanceError:
        stop(name, state_dir)
        raise
    instance.boot_seconds = round(time.monotonic() - started, 1)
    with open(os.path.join(directory, "instance.json"), "w", encoding="utf-8") as handle:
        handle.write(instance.to_json() + "\n")
    return instance


def _wait_for_login(instance: Instance, deadline: float) -> None:
    """Wait for sshd's banner, then for a command to run as root with the instance's key."""
    while time.monotonic() < deadline:
        if not _qemu_alive(instance.pid, instance.directory):
            raise InstanceError(f"{instance.instance}: QEMU exited during boot; console:\n{_tail(instance.console)}")
        try:
            with socket.create_connection((instance.address, instance.port), timeout=5) as conn:
                conn.settimeout(30)
                banner = conn.recv(64)
        except OSError:
            banner = b""
        if banner.startswith(b"SSH-"):
            probe = subprocess.run(instance.ssh_command("true"), capture_output=True, timeout=120, check=False)
            if probe.returncode == 0:
                return
        time.sleep(1)
    raise InstanceError(f"{instance.instance}: no SSH login before the deadline; console:\n{_tail(instance.console)}")


def load(name: str, state_dir: str | None = None) -> Instance:
    directory = _directory(name, state_dir)
    try:
        with open(os.path.join(directory, "instance.json"), encoding="utf-8") as handle:
            return Instance(**json.load(handle))
    except FileNotFoundError:
        raise InstanceError(f"no started instance {name} under {os.path.dirname(directory)}") from None


def stop(name: str, state_dir: str | None = None, grace: float = 10) -> bool:
    """Kill the instance's QEMU and delete its directory; False when there was nothing to stop."""
    directory = _directory(name, state_dir)
    if not os.path.isdir(directory):
        return False
    pid = _read_pid(directory)
    if pid is not None and _qemu_alive(pid, directory):
        os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + grace
        while _qemu_alive(pid, directory) and time.monotonic() < deadline:
            time.sleep(0.2)
        if _qemu_alive(pid, directory):
            os.kill(pid, signal.SIGKILL)
    shutil.rmtree(directory)
    return True


def listing(state_dir: str | None = None) -> list[dict[str, object]]:
    """Every instance directory with its details and whether its QEMU still runs."""
    root = state_dir or STATE_DIR
    found: list[dict[str, object]] = []
    for name in sorted(os.listdir(root)) if os.path.isdir(root) else []:
        directory = os.path.join(root, name)
        pid = _read_pid(directory)
        entry: dict[str, object] = {"instance": name, "running": pid is not None and _qemu_alive(pid, directory)}
        try:
            entry.update(dataclasses.asdict(load(name, root)))
        except InstanceError:
            entry["state"] = "booting or failed"
        found.append(entry)
    return found


def boot_demo_guest(name: str = "kni-demo", suite: str = "bookworm") -> Instance:
    """For ``make demo``: build the bookworm image if needed, boot one instance, return its SSH details.

    The caller stops it with ``stop(instance.instance)``.
    """
    images.ensure(suite)
    stop(name)
    return start(suite, name)
