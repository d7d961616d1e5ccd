# SPDX-License-Identifier: GPL-3.0-or-later
"""Host set-up pieces that run without apt or a VM."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from tests.vmharness import hostsetup, matrix


def test_unpacked_kernel_installs_on_a_host_without_lib_modules(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A Debian 12 container or minimal image has no /lib/modules: the set-up creates it."""
    release = "9.9.9-1-amd64"
    unpacked = tmp_path / "unpacked"
    (unpacked / "usr/lib/modules" / release / "kernel").mkdir(parents=True)
    (unpacked / "usr/lib/modules" / release / "kernel/x.ko").write_bytes(b"ko")
    (unpacked / "boot").mkdir()
    (unpacked / "boot" / f"vmlinuz-{release}").write_bytes(b"image")
    lib_modules = tmp_path / "lib" / "modules"  # does not exist, like a fresh container's
    monkeypatch.setattr(matrix.Kernel, "modules_dir", property(lambda self: str(lib_modules / self.release)))
    monkeypatch.setattr(matrix, "CACHE_DIR", str(tmp_path / "cache"))
    ran: list[list[str]] = []

    def fake_run(cmd: list[str], **kwargs: object) -> subprocess.CompletedProcess:
        ran.append(cmd)
        if cmd[0] == "depmod":  # needs the real /lib/modules
            return subprocess.CompletedProcess(cmd, 0)
        return subprocess.run(cmd, check=True)

    monkeypatch.setattr(hostsetup, "run", fake_run)
    kernel = matrix.Kernel("test", release, None)
    os.makedirs(kernel.root)

    hostsetup._install_unpacked(kernel, str(unpacked))

    assert (lib_modules / release / "kernel/x.ko").read_bytes() == b"ko"
    assert Path(kernel.vmlinuz).read_bytes() == b"image"
    assert ["depmod", "-a", release] in ran
