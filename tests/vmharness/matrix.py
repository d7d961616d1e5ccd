# SPDX-License-Identifier: GPL-3.0-or-later
"""The kernel matrix: which Debian kernels we test on and where each one's build tools live.

Entries name a Debian metapackage and the suites to take it from; the concrete kernel release
(``6.1.0-56-amd64``) is resolved from apt at set-up time and recorded in the cache, so the matrix
follows Debian's security updates instead of pinning an ABI that disappears from the archive.
"""

from __future__ import annotations

import dataclasses
import json
import os
from typing import Optional

CACHE_DIR = os.environ.get("KNI_CACHE", "/var/cache/kernelnic-kni")
RESOLVED_FILE = os.path.join(CACHE_DIR, "matrix.json")


@dataclasses.dataclass(frozen=True)
class KernelSpec:
    """One line of the matrix."""

    name: str  # short id used in test names and on the command line
    metapackage: str  # e.g. linux-image-amd64
    suites: tuple[str, ...]  # apt suites to take the metapackage from (highest version wins)
    chroot: Optional[str] = None  # Debian release whose compiler the headers need; None: the host's
    boots: bool = True  # False: only built against (headers in the chroot or on the host), never booted


MATRIX: tuple[KernelSpec, ...] = (
    KernelSpec("5.10", "linux-image-amd64", ("bullseye",), chroot="bullseye"),
    KernelSpec("6.1", "linux-image-amd64", ("bookworm-security", "bookworm")),
    KernelSpec("6.12", "linux-image-amd64", ("bookworm-backports",)),
    KernelSpec("6.12-rt", "linux-image-rt-amd64", ("bookworm-backports",)),
    KernelSpec("7.x", "linux-image-amd64", ("trixie-backports",), chroot="trixie"),
)

# Kernels the module must build for, warning-free, without a boot: the stable lines that fleets run
# and that differ from the matrix kernel of the same series (stable backports rename kernel API:
# trixie's 6.12 has 6.14's netns_immutable, bookworm-backports' 6.12 does not).
BUILD_ONLY: tuple[KernelSpec, ...] = (
    KernelSpec("6.12-trixie", "linux-image-amd64", ("trixie",), chroot="trixie", boots=False),
)

# Debian releases of the chroots and the compiler each one needs for its kernel's headers.
CHROOT_COMPILERS = {"bullseye": "gcc-10", "trixie": "gcc-14"}
# Suites beyond the release itself that a chroot needs for its matrix kernel's headers.
CHROOT_EXTRA_SUITES = {"trixie": ("trixie-backports",)}


@dataclasses.dataclass(frozen=True)
class Kernel:
    """A resolved matrix kernel, present in the cache."""

    name: str
    release: str  # uname -r
    chroot: Optional[str]

    @property
    def root(self) -> str:
        return os.path.join(CACHE_DIR, "kernels", self.release)

    @property
    def vmlinuz(self) -> str:
        return os.path.join(self.root, "vmlinuz")

    @property
    def modules_dir(self) -> str:
        return os.path.join("/lib/modules", self.release)

    @property
    def chroot_dir(self) -> Optional[str]:
        return os.path.join(CACHE_DIR, "chroots", self.chroot) if self.chroot else None


def spec(name: str) -> KernelSpec:
    for entry in MATRIX + BUILD_ONLY:
        if entry.name == name:
            return entry
    known = ", ".join(e.name for e in MATRIX + BUILD_ONLY)
    raise KeyError(f"unknown matrix kernel {name!r}; known: {known}")


def load_resolved() -> dict[str, str]:
    """Matrix name -> kernel release, as recorded by the last set-up."""
    try:
        with open(RESOLVED_FILE, encoding="utf-8") as handle:
            return dict(json.load(handle))
    except FileNotFoundError:
        return {}


def kernel(name: str) -> Kernel:
    """The set-up kernel for a matrix name; fails clearly when set-up has not run."""
    entry = spec(name)
    release = load_resolved().get(name)
    if release is None:
        raise LookupError(f"kernel {name!r} is not set up; run `python -m tests.vmharness setup`")
    found = Kernel(entry.name, release, entry.chroot)
    if entry.boots and not os.path.exists(found.vmlinuz):
        raise LookupError(f"kernel {name!r} ({release}) has no image at {found.vmlinuz}; run set-up again")
    return found


def kernels(names: Optional[list[str]] = None) -> list[Kernel]:
    wanted = names or [entry.name for entry in MATRIX]
    return [kernel(name) for name in wanted]
