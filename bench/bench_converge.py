#!/usr/bin/env python
# SPDX-License-Identifier: GPL-3.0-or-later
# Copyright: kernelnic.kni contributors
"""Converge figures of the kni role on a molecule-style VM (systemd, SSH on a 127.0.0.1 forward, no network):

* the converge to 1 interface: on a fresh VM the whole installation (packages present, DKMS build, module load,
  pump install and start); with ``--instance-json`` on a host the role already converged, only what differs;
* the idempotent re-run with 1 interface;
* the converge from 1 to 32 interfaces (the pump restarts for the larger hugepage arena), and its idempotent re-run.

Each run is ``ansible-playbook`` applying ``kernelnic.kni.kni`` with loopback-backed interfaces; a re-run that
reports changes is printed as such. Wall-clock seconds as seen from the controller, under TCG emulation.

Usage: ``.venv/bin/python bench/bench_converge.py [--suite bookworm] [--keep]``, or ``--instance-json FILE`` for a
VM that is already running (the JSON ``python -m tests.vmharness vm start`` prints). It prints figures and asserts
nothing about them.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from typing import Any, Dict, List, Tuple

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
COLLECTIONS = os.path.join(REPO, ".collection-root")
BIN = os.path.dirname(sys.executable)


def interfaces(count: int) -> List[Dict[str, Any]]:
    return [
        {
            "name": f"kbench{index}",
            "backend": "loopback",
            "mac": f"02:00:00:77:{index // 256:02x}:{index % 256:02x}",
            "mtu": 1500,
            "admin_state": "up",
            "addresses": [f"10.77.{index}.1/24"],
        }
        for index in range(count)
    ]


def playbook(directory: str, count: int) -> str:
    play = [
        {
            "name": f"Converge the kni role with {count} interface(s)",
            "hosts": "all",
            "gather_facts": True,
            "vars": {
                "kni_pump_max_interfaces": max(count, 4),
                "kni_pump_pool_size": 256,
                "kni_interfaces": interfaces(count),
                "kni_interfaces_exclusive": True,
            },
            "roles": ["kernelnic.kni.kni"],
        }
    ]
    path = os.path.join(directory, f"converge-{count}.yml")
    with open(path, "w", encoding="utf-8") as handle:
        json.dump(play, handle)  # JSON is YAML
    return path


def ensure_collection_link() -> None:
    link = os.path.join(COLLECTIONS, "ansible_collections", "kernelnic", "kni")
    if not os.path.islink(link):
        os.makedirs(os.path.dirname(link), exist_ok=True)
        os.symlink(REPO, link)


def converge(instance: Dict[str, Any], path: str, workdir: str) -> Tuple[float, int, int]:
    """One ansible-playbook run: (seconds, changed, failed)."""
    inventory = os.path.join(workdir, "inventory.json")
    host = {
        "ansible_host": instance["address"],
        "ansible_port": instance["port"],
        "ansible_user": instance["user"],
        "ansible_ssh_private_key_file": instance["identity_file"],
        "ansible_python_interpreter": "/usr/bin/python3",
        "ansible_ssh_common_args": "-o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null",
    }
    with open(inventory, "w", encoding="utf-8") as handle:
        json.dump({"all": {"hosts": {"vm": host}}}, handle)
    env = dict(
        os.environ,
        ANSIBLE_COLLECTIONS_PATH=COLLECTIONS,
        ANSIBLE_NOCOLOR="1",
        ANSIBLE_PIPELINING="1",
        ANSIBLE_HOST_KEY_CHECKING="0",
        ANSIBLE_RETRY_FILES_ENABLED="0",
    )
    began = time.monotonic()
    done = subprocess.run(
        [os.path.join(BIN, "ansible-playbook"), "-i", inventory, path],
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    seconds = time.monotonic() - began
    recap = re.search(r"vm\s*:\s*ok=\d+\s+changed=(\d+)\s+unreachable=(\d+)\s+failed=(\d+)", done.stdout)
    if done.returncode != 0 or recap is None:
        sys.stderr.write(done.stdout[-8000:] + done.stderr[-2000:])
        raise SystemExit(f"ansible-playbook {os.path.basename(path)} exited {done.returncode}")
    return seconds, int(recap.group(1)), int(recap.group(3))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--suite", default="bookworm")
    parser.add_argument("--instance-json", help="use this running VM instead of booting one")
    parser.add_argument("--keep", action="store_true", help="leave the VM this script booted running")
    args = parser.parse_args()
    ensure_collection_link()
    name = f"kni-bench-{args.suite}"
    if args.instance_json:
        with open(args.instance_json, encoding="utf-8") as handle:
            instance = json.load(handle)
    else:
        began = time.monotonic()
        started = subprocess.run(
            [sys.executable, "-m", "tests.vmharness", "vm", "start", "--build", "--suite", args.suite, "--name", name],
            cwd=REPO,
            capture_output=True,
            text=True,
            check=True,
        )
        instance = json.loads(started.stdout)
        print(f"boot to SSH login: {time.monotonic() - began:.1f} s ({args.suite}, {instance['kernel_release']})")
    try:
        with tempfile.TemporaryDirectory(prefix="kni-bench-converge-") as workdir:
            for count in (1, 32):
                path = playbook(workdir, count)
                for label in ("converge", "re-run"):
                    seconds, changed, failed = converge(instance, path, workdir)
                    figure = f"{count:2d} interface(s) {label:8s} {seconds:7.1f} s  changed={changed} failed={failed}"
                    print(figure, flush=True)
    finally:
        if not args.instance_json and not args.keep:
            stop = [sys.executable, "-m", "tests.vmharness", "vm", "stop", "--name", name]
            subprocess.run(stop, cwd=REPO, check=False)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
