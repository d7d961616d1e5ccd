# SPDX-License-Identifier: GPL-3.0-or-later
"""The main job (`make demo`): boot a throwaway Debian VM (systemd, sshd) and converge the collection on it.

The VM boots the cached bookworm image (tests/vmharness/images.py, built on first use) with an SSH forward on
127.0.0.1 only; the collection's `kernelnic.kni.demo` playbook then applies the `kni` role with two
afpacket-backed KNI interfaces and pings through both. The guest's dmesg is checked before the VM is thrown away,
and the demo ends by naming the README's path it showed and how to try the other two.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time

from tests.collection_path import ensure_collection_path
from tests.vmharness import dmesg, instances

DEMO_SUITE = os.environ.get("KNI_DEMO_SUITE", "bookworm")
DEMO_PLAYBOOK = "kernelnic.kni.demo"


def write_inventory(instance: instances.Instance, path: str) -> None:
    common_args = " ".join(instances.SSH_OPTIONS)
    with open(path, "w", encoding="ascii") as handle:
        handle.write(
            "[kni_demo]\n"
            f"{instance.instance} ansible_host={instance.address} ansible_port={instance.port} "
            f"ansible_user={instance.user} ansible_ssh_private_key_file={instance.identity_file} "
            f"ansible_python_interpreter=/usr/bin/python3 ansible_ssh_common_args='{common_args}'\n"
        )


# The README's three ways to use the collection; the demo shows the second.
PATHS_TEXT = """\
[demo] This was path 2 of the README's "Three ways to use this collection": KNI interfaces declared in Ansible,
[demo] served by kni-pump (playbooks/pump.yml, run through kernelnic.kni.demo).
[demo] Path 1, your own DPDK 22.11 KNI application on this kernel (DKMS build and load, no pump, the application's
[demo]   interfaces adopted, its systemd unit ordered after rte_kni): edit the variables at the top of
[demo]   playbooks/operator.yml, then: ansible-playbook -i <inventory> kernelnic.kni.operator
[demo] Path 3, testing your network configuration with molecule against real kernels (5.10, 6.1, 6.12):
[demo]   put your variables in molecule/default/converge.yml, then: MOLECULE_PLATFORMS=kni-bookworm make molecule"""


def paths_summary() -> str:
    """What the demo ends with: which path it showed and how to try the other two."""
    return PATHS_TEXT


def guest_dmesg(instance: instances.Instance) -> str:
    shown = subprocess.run(instance.ssh_command("dmesg"), capture_output=True, text=True, timeout=120, check=False)
    if shown.returncode != 0:
        raise instances.InstanceError(f"dmesg over SSH failed: {shown.stderr.strip()}")
    return shown.stdout


def main() -> int:
    collection_root = ensure_collection_path(importable=False)
    print(f"[demo] booting a {DEMO_SUITE} VM (the image is built on first use)", flush=True)
    instance = instances.boot_demo_guest(suite=DEMO_SUITE)
    try:
        print(
            f"[demo] {instance.instance} ({instance.kernel_release}) answers SSH on {instance.address}:{instance.port}"
            f" after {instance.boot_seconds:.1f}s; running {DEMO_PLAYBOOK}",
            flush=True,
        )
        with tempfile.TemporaryDirectory(prefix="kni-demo-") as work:
            inventory = os.path.join(work, "inventory.ini")
            write_inventory(instance, inventory)
            env = dict(
                os.environ,
                ANSIBLE_COLLECTIONS_PATH=collection_root,
                ANSIBLE_HOST_KEY_CHECKING="False",
                ANSIBLE_PIPELINING="True",
            )
            started = time.monotonic()
            played = subprocess.run(
                [os.path.join(os.path.dirname(sys.executable), "ansible-playbook"), "-i", inventory, DEMO_PLAYBOOK],
                env=env,
                check=False,
            )
            elapsed = time.monotonic() - started
        problems = dmesg.problems(guest_dmesg(instance))
    finally:
        instances.stop(instance.instance)
    for line in problems:
        print(f"[demo] guest dmesg: {line}")
    print(
        f"[demo] playbook exit {played.returncode} after {elapsed:.0f}s; "
        f"guest dmesg {'clean' if not problems else 'NOT clean'}; VM {instance.instance} removed"
    )
    print(paths_summary(), flush=True)
    return played.returncode or (1 if problems else 0)


if __name__ == "__main__":
    sys.exit(main())
