# SPDX-License-Identifier: GPL-3.0-or-later
# Copyright: kernelnic.kni contributors
"""The kernels kni_dkms builds for: which are installed, which have headers, and the package that brings them."""

from __future__ import annotations

import os
from typing import List, Optional, Sequence, Tuple

from ansible_collections.kernelnic.kni.plugins.module_utils._modules.host import HostPaths, read_text


def installed_kernels(paths: HostPaths) -> List[str]:
    """Kernel releases with modules under /lib/modules (leftover directories without modules.order are ignored)."""
    try:
        names = sorted(os.listdir(paths.lib_modules))
    except OSError:
        return []
    return [
        name
        for name in names
        if os.path.exists(os.path.join(paths.lib_modules, name, "modules.order"))
        or os.path.isdir(os.path.join(paths.lib_modules, name, "kernel"))
    ]


def has_headers(paths: HostPaths, kernel: str) -> bool:
    """DKMS builds against /lib/modules/<kernel>/build; a dangling link or an empty directory is no headers."""
    return os.path.isfile(os.path.join(paths.lib_modules, kernel, "build", "Makefile"))


def os_family(paths: HostPaths) -> List[str]:
    ids: List[str] = []
    for line in (read_text(paths.os_release) or "").splitlines():
        key, sep, value = line.partition("=")
        if sep and key in ("ID", "ID_LIKE"):
            ids.extend(value.strip().strip("\"'").split())
    return ids


def headers_package(paths: HostPaths, kernel: str) -> str:
    family = os_family(paths)
    if any(name in ("debian", "ubuntu") for name in family):
        return f"linux-headers-{kernel}"
    if any(name in ("rhel", "fedora", "centos") for name in family):
        return f"kernel-devel-{kernel}"
    if any("suse" in name for name in family):
        return "kernel-default-devel"
    return f"the kernel headers for {kernel}"


def target_kernels(
    paths: HostPaths, running: str, explicit: Optional[Sequence[str]]
) -> Tuple[List[str], List[str], List[str]]:
    """(kernels to build for, kernels skipped for lack of headers, kernels that must have headers but do not).

    Without an explicit list: the running kernel (which must have headers) and every installed kernel with
    headers. With one: exactly those kernels, all of which must have headers.
    """
    if explicit:
        wanted = list(dict.fromkeys(explicit))
        missing = [kernel for kernel in wanted if not has_headers(paths, kernel)]
        return [k for k in wanted if k not in missing], [], missing
    candidates = list(dict.fromkeys([running, *installed_kernels(paths)]))
    targets = [kernel for kernel in candidates if has_headers(paths, kernel)]
    skipped = [kernel for kernel in candidates if kernel != running and kernel not in targets]
    missing = [] if running in targets else [running]
    return targets, skipped, missing


def missing_headers_message(paths: HostPaths, missing: Sequence[str]) -> str:
    packages = " ".join(headers_package(paths, kernel) for kernel in missing)
    listing = ", ".join(f"{kernel} (/lib/modules/{kernel}/build)" for kernel in missing)
    return f"kernel headers are missing for {listing}; nothing was changed. Install {packages} and run again"
