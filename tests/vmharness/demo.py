# SPDX-License-Identifier: GPL-3.0-or-later
"""The main job (`make demo`): boot a throwaway guest and run the collection's playbook against it over SSH."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import tempfile
import time

from tests.collection_path import ensure_collection_path
from tests.vmharness import guest, matrix

DEMO_KERNEL = os.environ.get("KNI_DEMO_KERNEL", "6.1")
DEMO_PLAYBOOK = "kernelnic.kni.demo"
# The guest idles until the harness drops the stop file into its results share.
IDLE_UNTIL_STOPPED = "while [ ! -e /kni-results/stop ]; do sleep 0.5; done\n"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def wait_for_ssh(port: int, vm: guest.Guest, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        vm.wait_started(timeout=timeout)
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=2) as conn:
                if conn.recv(64).startswith(b"SSH-"):
                    return
        except OSError:
            pass
        time.sleep(0.5)
    raise guest.GuestError(f"sshd in the guest did not answer on 127.0.0.1:{port}\n{vm.console_tail()}")


def main() -> int:
    kernel = matrix.kernel(DEMO_KERNEL)
    collection_root = ensure_collection_path(importable=False)
    with tempfile.TemporaryDirectory(prefix="kni-demo-") as work:
        key = os.path.join(work, "id_ed25519")
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", key], check=True)
        with open(key + ".pub", encoding="ascii") as handle:
            public_key = handle.read()
        port = free_port()
        inventory = os.path.join(work, "inventory.ini")
        with open(inventory, "w", encoding="ascii") as handle:
            handle.write(
                "[kni_demo]\n"
                f"kni-guest ansible_host=127.0.0.1 ansible_port={port} ansible_user=root "
                f"ansible_ssh_private_key_file={key} ansible_python_interpreter=/usr/bin/python3 "
                "ansible_ssh_common_args='-o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null'\n"
            )
        print(f"[demo] booting {kernel.name} ({kernel.release}) with SSH on 127.0.0.1:{port}", flush=True)
        with guest.Guest(kernel, IDLE_UNTIL_STOPPED, ssh_port=port, authorized_keys=public_key) as vm:
            wait_for_ssh(port, vm)
            print(f"[demo] guest up after {vm.boot_seconds:.1f}s; running {DEMO_PLAYBOOK}", flush=True)
            env = dict(
                os.environ,
                ANSIBLE_COLLECTIONS_PATH=collection_root,
                ANSIBLE_HOST_KEY_CHECKING="False",
                ANSIBLE_PIPELINING="True",
            )
            bindir = os.path.dirname(sys.executable)
            played = subprocess.run(
                [os.path.join(bindir, "ansible-playbook"), "-i", inventory, DEMO_PLAYBOOK], env=env, check=False
            )
            vm.poweroff()
            result = vm.wait(timeout=120)
        problems = result.dmesg_problems()
        for line in problems:
            print(f"[demo] guest dmesg: {line}")
        print(f"[demo] playbook exit {played.returncode}; guest dmesg {'clean' if not problems else 'NOT clean'}")
        return played.returncode or (1 if problems else 0)


if __name__ == "__main__":
    sys.exit(main())
