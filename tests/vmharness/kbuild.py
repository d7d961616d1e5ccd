# SPDX-License-Identifier: GPL-3.0-or-later
"""Build an out-of-tree module against a matrix kernel with -Werror.

Kernels whose headers need the host's compiler build here; the others build inside a cached
debootstrap chroot of their own Debian release (gcc-10 for 5.10, gcc-14 for 7.x).
"""

from __future__ import annotations

import glob
import os
import re
import shutil
import subprocess
import tempfile

from tests.vmharness import hostsetup, matrix

# Compiler warnings are errors through KCFLAGS; modpost and Kbuild warnings are caught in the log.
WARNING_LINE = re.compile(r"warning:|WARNING:", re.IGNORECASE)


class BuildError(RuntimeError):
    """The module did not build cleanly; the message carries the build log."""


def _make_args(kdir: str, src: str, werror: bool) -> list[str]:
    return ["make", "-C", kdir, f"M={src}", *(["KCFLAGS=-Werror"] if werror else []), "modules"]


def build_module(kernel: matrix.Kernel, source: str, output: str, werror: bool = True) -> list[str]:
    """Build the Kbuild tree ``source`` for ``kernel``; copies the ``.ko`` files to ``output``. With ``werror`` (our
    own modules) any warning fails the build; without it (a comparison baseline) only errors do."""
    os.makedirs(output, exist_ok=True)
    if kernel.chroot_dir:
        build_root = os.path.join(kernel.chroot_dir, "build")
        os.makedirs(build_root, exist_ok=True)
        work = tempfile.mkdtemp(dir=build_root)
        inside = "/build/" + os.path.basename(work)
        _copy_sources(source, work)
        kdir = f"/usr/src/linux-headers-{kernel.release}"
        command = " ".join(_make_args(kdir, inside, werror))
        done = hostsetup.chroot_run(kernel.chroot_dir, f"mount -t proc proc /proc && {command} 2>&1", capture=True)
        log = done.stdout + done.stderr
    else:
        work = tempfile.mkdtemp(prefix="kni-kbuild-")
        _copy_sources(source, work)
        done = subprocess.run(
            _make_args(f"/lib/modules/{kernel.release}/build", work, werror),
            capture_output=True,
            text=True,
            check=False,
        )
        log = done.stdout + done.stderr
    try:
        warnings = [line for line in log.splitlines() if WARNING_LINE.search(line)] if werror else []
        if done.returncode != 0 or warnings:
            raise BuildError(f"building {source} for {kernel.name} ({kernel.release}) failed:\n{log}")
        built = []
        for module in glob.glob(os.path.join(work, "**", "*.ko"), recursive=True):
            target = os.path.join(output, os.path.basename(module))
            shutil.copy2(module, target)
            built.append(target)
        if not built:
            raise BuildError(f"building {source} for {kernel.name} produced no .ko:\n{log}")
        return built
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _copy_sources(source: str, work: str) -> None:
    for name in os.listdir(source):
        path = os.path.join(source, name)
        if os.path.isfile(path) and not name.endswith((".o", ".ko", ".cmd", ".mod", ".mod.c")):
            shutil.copy2(path, work)
