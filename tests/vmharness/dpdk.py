# SPDX-License-Identifier: GPL-3.0-or-later
"""DPDK for tests: Debian bookworm's 22.11 built from source with KNI, and bullseye's packaged 20.11.

Set-up (``setup()``) fetches bookworm's ``dpdk`` source package, builds it with the deprecated ``kni`` library
enabled, a handful of drivers and the ``test`` and ``test-pmd`` apps, and installs it under
``$KNI_CACHE/dpdk/<Debian version>/``; a stamp there skips all of it next time. DPDK's own kernel module is
not built. It also installs bullseye's packaged DPDK 20.11 (an unmodified distribution binary with the same KNI
ABI) into the bullseye build chroot. ``load()`` returns what was recorded, for tests on the host and in guests
(which see the host's ``/`` read-only, so the same paths work there).
"""

from __future__ import annotations

import dataclasses
import glob
import hashlib
import json
import os
import shutil
import subprocess
import tempfile
from typing import Optional

from tests.vmharness import hostsetup, matrix

SERIES = "22.11"
SOURCE_SUITE = "bookworm"
DPDK_DIR = os.path.join(matrix.CACHE_DIR, "dpdk")
RECORD_FILE = os.path.join(matrix.CACHE_DIR, "dpdk.json")
STAMP = ".complete"

BUILD_PACKAGES = (
    "dpkg-dev",  # apt-get source unpacks with dpkg-source
    "xz-utils",
    "gcc",
    "libc6-dev",
    "meson",
    "ninja-build",
    "pkg-config",
    "python3-pyelftools",
    "libnuma-dev",
)

# net/kni is the KNI PMD; null and ring need no device; virtio is the guest's NIC; bus/pci, bus/vdev and
# mempool/ring are always built but named so the list says what the apps get.
DRIVERS = ("net/kni", "net/null", "net/ring", "net/virtio", "bus/vdev", "bus/pci", "mempool/ring")
APPS = ("test-pmd",)  # dpdk-test comes from the tests option, not the app list

BULLSEYE = "bullseye"
# 20.11 ships dpdk-testpmd and dpdk-test in dpdk-dev (dpdk itself holds only scripts); dpdk-dev pulls in every
# PMD, the drivers the tests use are named anyway.
BULLSEYE_PACKAGES = ("dpdk", "dpdk-dev", "librte-kni21", "librte-net-kni21", "librte-net-null21", "librte-net-ring21")
BULLSEYE_TESTPMD = "/usr/bin/dpdk-testpmd"


def meson_options(prefix: str) -> list[str]:
    """The ``meson setup`` arguments of the 22.11 build."""
    return [
        f"--prefix={prefix}",
        "--libdir=lib",
        "--buildtype=release",
        # Static apps carry their drivers: no plugin directory or library path to get right at run time.
        "--default-library=static",
        # 22.11 disables the deprecated libraries flow_classify and kni by default; keep only the first off.
        "-Ddisable_libs=flow_classify",
        f"-Denable_drivers={','.join(DRIVERS)}",
        f"-Denable_apps={','.join(APPS)}",
        "-Dtests=true",
        # The corei7 baseline (SSE4.2) instead of the build host's CPU: the binaries run under QEMU's TCG.
        "-Dplatform=generic",
        "-Denable_kmods=false",
        "-Denable_docs=false",
        "-Dexamples=",
    ]


def choose_version(madison: str, suite: str = SOURCE_SUITE, series: str = SERIES) -> str:
    """The newest source version of ``series`` in ``suite`` from ``apt-cache madison`` output."""
    candidates = []
    for line in madison.splitlines():
        fields = [field.strip() for field in line.split("|")]
        if len(fields) != 3 or not fields[2].endswith(" Sources"):
            continue
        if f" {suite}/" in fields[2] and fields[1].startswith(series + "."):
            candidates.append(fields[1])
    if not candidates:
        raise RuntimeError(
            f"no dpdk {series} source package in {suite}; is the deb-src entry in {hostsetup.APT_SOURCES}?"
        )
    return max(candidates, key=hostsetup._DebVersionKey)


def stamp_text(version: str, options: list[str]) -> str:
    digest = hashlib.sha256("\n".join(options).encode()).hexdigest()[:16]
    return f"{version} {digest}\n"


def is_current(root: str, version: str, options: list[str]) -> bool:
    """True when ``root`` holds a finished build of ``version`` made with ``options``."""
    try:
        with open(os.path.join(root, STAMP), encoding="utf-8") as handle:
            return handle.read() == stamp_text(version, options)
    except FileNotFoundError:
        return False


def installed_versions(dpkg_query: str, packages: tuple[str, ...]) -> Optional[dict[str, str]]:
    """Package -> version from ``dpkg-query -W -f='${Package} ${db:Status-Abbrev} ${Version}\\n'``.

    None unless every package is installed.
    """
    found = {}
    for line in dpkg_query.splitlines():
        fields = line.split()
        if len(fields) == 3 and fields[1] == "ii":
            found[fields[0]] = fields[2]
    if any(package not in found for package in packages):
        return None
    return {package: found[package] for package in packages}


@dataclasses.dataclass(frozen=True)
class Dpdk:
    """What set-up recorded: the 22.11 build and bullseye's packaged DPDK."""

    version: str  # Debian source version, e.g. 22.11.11-0+deb12u1
    upstream_version: str  # DPDK's own, e.g. 22.11.11
    prefix: str
    source: str  # the unpacked source tree (kernel/linux/kni is there, unbuilt)
    dpdk_test: str
    dpdk_testpmd: str
    bullseye_chroot: Optional[str]  # None when set-up ran without the 5.10 kernel's chroot
    bullseye_version: Optional[str]
    bullseye_testpmd: str  # path inside the chroot


def load(path: str = RECORD_FILE) -> Dpdk:
    """The recorded DPDK; fails clearly when set-up has not built it."""
    try:
        with open(path, encoding="utf-8") as handle:
            record = json.load(handle)
    except FileNotFoundError:
        raise LookupError(f"DPDK is not set up ({path} is missing); run `python -m tests.vmharness setup`") from None
    except ValueError as error:
        raise LookupError(f"{path} is not valid JSON ({error}); run `python -m tests.vmharness setup`") from None
    fields = {field.name for field in dataclasses.fields(Dpdk)}
    if not isinstance(record, dict) or set(record) != fields:
        raise LookupError(f"{path} does not hold the fields {sorted(fields)}; run `python -m tests.vmharness setup`")
    return Dpdk(**record)


def setup() -> Dpdk:
    """Build (or find cached) DPDK 22.11, install bullseye's DPDK in its chroot, and record both."""
    hostsetup.apt_install(list(BUILD_PACKAGES))
    if not glob.glob(f"/var/lib/apt/lists/*_dists_{SOURCE_SUITE}_main_source_Sources*"):
        hostsetup.log("apt-get update (source index)")
        hostsetup.run(["apt-get", "update", "-q"], env=hostsetup.apt_env(), stdout=subprocess.DEVNULL)
    madison = subprocess.run(["apt-cache", "madison", "dpdk"], capture_output=True, text=True, check=True).stdout
    version = choose_version(madison)
    root = os.path.join(DPDK_DIR, version)
    options = meson_options(root)
    if is_current(root, version, options):
        hostsetup.log(f"dpdk {version}: cached in {root}")
    else:
        build(version, root, options)
    upstream = _read(os.path.join(root, "source", "VERSION")).strip()
    chroot, bullseye_version = ensure_bullseye()
    record = Dpdk(
        version=version,
        upstream_version=upstream,
        prefix=root,
        source=os.path.join(root, "source"),
        dpdk_test=os.path.join(root, "bin", "dpdk-test"),
        dpdk_testpmd=os.path.join(root, "bin", "dpdk-testpmd"),
        bullseye_chroot=chroot,
        bullseye_version=bullseye_version,
        bullseye_testpmd=BULLSEYE_TESTPMD,
    )
    with open(RECORD_FILE, "w", encoding="utf-8") as handle:
        json.dump(dataclasses.asdict(record), handle, indent=2, sort_keys=True)
        handle.write("\n")
    return record


def build(version: str, root: str, options: list[str]) -> None:
    if os.path.isdir(root):
        shutil.rmtree(root)
    os.makedirs(root)
    with tempfile.TemporaryDirectory(dir=DPDK_DIR) as work:
        hostsetup.log(f"dpdk {version}: apt-get source")
        hostsetup.run(
            ["apt-get", "source", "-q", "--only-source", "-o", "APT::Sandbox::User=root", f"dpdk={version}"],
            cwd=work,
            stdout=subprocess.DEVNULL,
        )
        (unpacked,) = (entry.path for entry in os.scandir(work) if entry.is_dir())
        source = os.path.join(root, "source")
        shutil.move(unpacked, source)
        # The objects stay out of the cache: only the source and the installed tree are kept.
        objects = os.path.join(work, "build")
        hostsetup.log(f"dpdk {version}: meson setup and ninja (7-8 CPU minutes)")
        hostsetup.run(["meson", "setup", *options, source, objects], stdout=subprocess.DEVNULL)
        hostsetup.run(["ninja", "-C", objects], stdout=subprocess.DEVNULL)
        hostsetup.run(["meson", "install", "--quiet", "-C", objects], stdout=subprocess.DEVNULL)
    for binary in ("dpdk-test", "dpdk-testpmd"):
        if not os.access(os.path.join(root, "bin", binary), os.X_OK):
            raise RuntimeError(f"the DPDK build installed no {binary} under {root}/bin")
    with open(os.path.join(root, STAMP), "w", encoding="utf-8") as handle:
        handle.write(stamp_text(version, options))


def ensure_bullseye() -> tuple[Optional[str], Optional[str]]:
    """Install bullseye's DPDK 20.11 with KNI into the bullseye chroot; (chroot, dpdk version)."""
    root = os.path.join(matrix.CACHE_DIR, "chroots", BULLSEYE)
    if not os.path.exists(os.path.join(root, ".debootstrap-complete")):
        hostsetup.log(f"no {BULLSEYE} chroot (set up the 5.10 kernel for it); skipping its DPDK")
        return None, None
    query = "dpkg-query -W -f='${Package} ${db:Status-Abbrev} ${Version}\\n' " + " ".join(BULLSEYE_PACKAGES)
    versions = installed_versions(hostsetup.chroot_run(root, query, capture=True).stdout, BULLSEYE_PACKAGES)
    if versions is None:
        hostsetup.log(f"{BULLSEYE} chroot: installing {' '.join(BULLSEYE_PACKAGES)}")
        shutil.copy2("/etc/resolv.conf", os.path.join(root, "etc/resolv.conf"))
        hostsetup.chroot_run(
            root,
            "set -e; mount -t proc proc /proc; export DEBIAN_FRONTEND=noninteractive; apt-get update -q >/dev/null; "
            "apt-get install -y -q -o Dpkg::Use-Pty=0 --no-install-recommends "
            f"{' '.join(BULLSEYE_PACKAGES)} >/dev/null",
        )
        versions = installed_versions(hostsetup.chroot_run(root, query, capture=True).stdout, BULLSEYE_PACKAGES)
        if versions is None:
            raise RuntimeError(f"{' '.join(BULLSEYE_PACKAGES)} are not all installed in {root} after apt-get install")
    return root, versions["dpdk-dev"]


def _read(path: str) -> str:
    with open(path, encoding="utf-8") as handle:
        return handle.read()
