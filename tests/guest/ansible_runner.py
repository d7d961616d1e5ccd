# SPDX-License-Identifier: GPL-3.0-or-later
# Copyright: kernelnic.kni contributors
"""Run the collection's integration targets with ansible-playbook inside a test guest (local connection)."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from typing import Any, Dict, Optional, Sequence

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
TARGETS = os.path.join(REPO_ROOT, "tests", "integration", "targets")
BIN = os.path.dirname(sys.executable)
KMOD_FILES = ("Kbuild", "Makefile", "dkms.conf")
# rte_kni.ko files built in this guest session (by DKMS), per kernel release; the guest's overlay is throwaway.
BUILT_MODULE_CACHE = "/var/tmp/kni-built-modules"


def run_tasks(target: str, tasks: str = "main.yml", extra_vars: Optional[Dict[str, Any]] = None) -> str:
    """Run ``tests/integration/targets/<target>/tasks/<tasks>`` against localhost; return the output.

    Fails the calling test unless the playbook exits 0 and the recap shows no failed or unreachable host.
    """
    play = {
        "name": f"Integration target {target}",
        "hosts": "localhost",
        "gather_facts": False,
        "tasks": [{"ansible.builtin.include_tasks": os.path.join(TARGETS, target, "tasks", tasks)}],
    }
    return run_play(play, target, extra_vars)


def run_play(
    play: Dict[str, Any], name: str, extra_vars: Optional[Dict[str, Any]] = None, options: Sequence[str] = ()
) -> str:
    """Run one play against localhost with ansible-playbook (local connection) and ``options`` such as ``--tags``;
    return the output.

    Fails the calling test unless the playbook exits 0 and the recap shows no failed or unreachable host.
    """
    workdir = tempfile.mkdtemp(prefix=f"kni-{name}-")
    playbook = os.path.join(workdir, "play.yml")
    with open(playbook, "w", encoding="utf-8") as handle:
        json.dump([play], handle)  # JSON is YAML
    variables = dict(extra_vars or {}, ansible_python_interpreter=sys.executable)
    env = dict(
        os.environ,
        ANSIBLE_COLLECTIONS_PATH=os.path.join(REPO_ROOT, ".collection-root"),
        ANSIBLE_LOCAL_TEMP=os.path.join(workdir, "tmp"),
        ANSIBLE_REMOTE_TEMP=os.path.join(workdir, "remote-tmp"),
        ANSIBLE_NOCOLOR="1",
        ANSIBLE_RETRY_FILES_ENABLED="0",
        ANSIBLE_DEPRECATION_WARNINGS="0",
        PATH=f"{BIN}:/usr/sbin:/usr/bin:/sbin:/bin",
    )
    argv = [
        os.path.join(BIN, "ansible-playbook"),
        "-c",
        "local",
        "-i",
        "localhost,",
        "-e",
        json.dumps(variables),
        *options,
        playbook,
    ]
    done = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=1800, check=False)
    output = done.stdout + done.stderr
    print(output)
    assert done.returncode == 0, f"ansible-playbook exited {done.returncode}:\n{output[-6000:]}"
    recap = re.search(r"localhost\s*:\s*ok=(\d+)\s+changed=(\d+)\s+unreachable=(\d+)\s+failed=(\d+)", output)
    assert recap is not None, f"no play recap:\n{output[-3000:]}"
    assert int(recap.group(1)) > 0
    assert recap.group(3) == "0" and recap.group(4) == "0", recap.group(0)
    shutil.rmtree(workdir, ignore_errors=True)
    return output


def copy_kmod_sources(destination: str) -> str:
    """A clean copy of kmod/ (sources only, no build products from the host)."""
    source = os.path.join(REPO_ROOT, "kmod")
    os.makedirs(destination, exist_ok=True)
    for name in sorted(os.listdir(source)):
        if name.endswith((".c", ".h")) or name in KMOD_FILES:
            shutil.copy(os.path.join(source, name), destination)
    return destination


def has_headers(release: str) -> bool:
    return os.path.isfile(f"/lib/modules/{release}/build/Makefile")


def ensure_dev_fd() -> None:
    """DKMS relies on process substitution (``<(...)``), which needs /dev/fd; a bare devtmpfs lacks it."""
    if not os.path.exists("/dev/fd"):
        os.symlink("/proc/self/fd", "/dev/fd")
