# SPDX-License-Identifier: GPL-3.0-or-later
# Copyright: kernelnic.kni contributors
"""Run the collection's integration targets with ansible-playbook inside a test guest (local connection)."""

from __future__ import annotations

import os
import shutil
from typing import Any, Dict, Optional

from tests.ansible_play import run_play

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
TARGETS = os.path.join(REPO_ROOT, "tests", "integration", "targets")
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
