# SPDX-License-Identifier: GPL-3.0-or-later
# Copyright: kernelnic.kni contributors
"""ansible-playbook against localhost (local connection) with the collection from this checkout: for the unit tests
on the host and the integration tests in a guest."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from typing import Any, Dict, Optional, Sequence

from tests.collection_path import ensure_collection_path

BIN = os.path.dirname(sys.executable)


def ansible_env(workdir: str) -> Dict[str, str]:
    """The environment for ansible-playbook: this checkout's collection, temporary files under ``workdir``, no
    colours, retry files or deprecation warnings, and this interpreter's bin directory first on the PATH."""
    return dict(
        os.environ,
        ANSIBLE_COLLECTIONS_PATH=ensure_collection_path(importable=False),
        ANSIBLE_LOCAL_TEMP=os.path.join(workdir, "tmp"),
        ANSIBLE_REMOTE_TEMP=os.path.join(workdir, "remote-tmp"),
        ANSIBLE_NOCOLOR="1",
        ANSIBLE_RETRY_FILES_ENABLED="0",
        ANSIBLE_DEPRECATION_WARNINGS="0",
        PATH=f"{BIN}:/usr/sbin:/usr/bin:/sbin:/bin",
    )


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
    env = ansible_env(workdir)
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
