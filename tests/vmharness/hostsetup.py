# SPDX-License-Identifier: GPL-3.0-or-later
"""Idempotent host set-up for kernel tests: apt sources, host packages, matrix kernels, build chroots.

Everything is cached under ``CACHE_DIR`` and skipped when already present, so a warm machine pays
only for the checks.
"""

from __future__ import annotations

import glob
import json
import os
import re
import shutil
import subprocess
import tempfile
from typing import Optional

from tests.vmharness import matrix

DEBIAN_MIRROR = "http://deb.debian.org/debian"
APT_SOURCES = "/etc/apt/sources.list.d/kernelnic-kni-matrix.sources"
APT_PINS = "/etc/apt/preferences.d/kernelnic-kni-matrix"
EXTRA_SUITES = ("bookworm-backports", "bullseye", "trixie", "trixie-backports")
# Keep the host on bookworm: the extra suites only serve packages asked for by name.
LOW_PRIORITY_SUITES = ("bullseye", "trixie", "trixie-backports")

HOST_PACKAGES = (
    "qemu-system-x86",
    "busybox-static",
    "cpio",
    "kmod",
    "xz-utils",
    "zstd",
    "dkms",
    "debootstrap",
    "openssh-client",
    "openssh-server",
    "iproute2",
    "shellcheck",
    "make",
    "gcc",
    "libc6-dev",
    "systemd",  # systemd-analyze scores the role's service unit (tests/unit/test_role_kni.py)
)


def log(message: str) -> None:
    print(f"[setup] {message}", flush=True)


def run(cmd: list[str], **kwargs: object) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, check=True, **kwargs)  # type: ignore[call-overload]


def apt_env() -> dict[str, str]:
    env = dict(os.environ)
    env["DEBIAN_FRONTEND"] = "noninteractive"
    return env


def configure_apt() -> None:
    sources = (
        "Types: deb\n"
        f"URIs: {DEBIAN_MIRROR}\n"
        f"Suites: {' '.join(EXTRA_SUITES)}\n"
        "Components: main\n"
        "Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg\n"
        "\n"
        # DPDK 22.11 is built from bookworm's source package (tests/vmharness/dpdk.py).
        "Types: deb-src\n"
        f"URIs: {DEBIAN_MIRROR}\n"
        "Suites: bookworm\n"
        "Components: main\n"
        "Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg\n"
    )
    pins = "\n".join(f"Package: *\nPin: release n={suite}\nPin-Priority: 100\n" for suite in LOW_PRIORITY_SUITES)
    changed = _write_if_different(APT_SOURCES, sources) | _write_if_different(APT_PINS, pins)
    if changed or not _apt_knows_suite("trixie-backports"):
        log("apt-get update")
        run(["apt-get", "update", "-q"], env=apt_env(), stdout=subprocess.DEVNULL)


def _write_if_different(path: str, text: str) -> bool:
    try:
        with open(path, encoding="utf-8") as handle:
            if handle.read() == text:
                return False
    except FileNotFoundError:
        pass
    with open(path, "w", encoding="utf-8") as handle:
        handle.write(text)
    return True


def _apt_knows_suite(suite: str) -> bool:
    return bool(glob.glob(f"/var/lib/apt/lists/*_dists_{suite}_main_binary-amd64_Packages*"))


def missing_packages(packages: tuple[str, ...] | list[str]) -> list[str]:
    missing = []
    for package in packages:
        query = subprocess.run(
            ["dpkg-query", "-W", "-f=${db:Status-Abbrev}", package], capture_output=True, text=True, check=False
        )
        if not query.stdout.startswith("ii"):
            missing.append(package)
    return missing


def apt_install(packages: list[str]) -> None:
    missing = missing_packages(packages)
    if missing:
        log(f"apt-get install {' '.join(missing)}")
        run(["apt-get", "install", "-y", "-q", "--no-install-recommends", *missing], env=apt_env())


def resolve_release(spec: matrix.KernelSpec) -> tuple[str, str]:
    """(kernel release, metapackage version) of the newest metapackage in the spec's suites."""
    madison = subprocess.run(
        ["apt-cache", "madison", spec.metapackage], capture_output=True, text=True, check=True
    ).stdout
    candidates = []
    for line in madison.splitlines():
        fields = [field.strip() for field in line.split("|")]
        if len(fields) == 3 and any(f" {suite}/" in fields[2] for suite in spec.suites):
            candidates.append(fields[1])
    if not candidates:
        raise RuntimeError(f"{spec.metapackage} is in none of the suites {spec.suites}; is apt configured?")
    version = max(candidates, key=_DebVersionKey)
    depends = _package_field(f"{spec.metapackage}={version}", "Depends")
    image = re.search(r"linux-image-(\d[^\s,(]*)", depends)
    if image is None:
        raise RuntimeError(f"cannot find the kernel image in {spec.metapackage}={version}: {depends}")
    return image.group(1), version


class _DebVersionKey:
    """Orders Debian versions with dpkg itself (a handful of comparisons, so a subprocess each is fine)."""

    def __init__(self, version: str) -> None:
        self.version = version

    def __lt__(self, other: _DebVersionKey) -> bool:
        return (
            subprocess.run(["dpkg", "--compare-versions", self.version, "lt", other.version], check=False).returncode
            == 0
        )


def _package_field(package: str, field: str) -> str:
    shown = subprocess.run(["apt-cache", "show", package], capture_output=True, text=True, check=True).stdout
    match = re.search(rf"^{field}: (.*)$", shown, re.MULTILINE)
    return match.group(1) if match else ""


def image_packages(release: str) -> list[str]:
    """The packages that carry the image and modules (7.x splits them out of linux-image-*)."""
    image = f"linux-image-{release}"
    depends = _package_field(image, "Depends")
    split = re.findall(rf"(linux-(?:binary|modules|base)-{re.escape(release)})\b", depends)
    return split if any(name.startswith("linux-binary-") for name in split) else [image]


def fetch_kernel(spec: matrix.KernelSpec, release: str) -> None:
    kernel = matrix.Kernel(spec.name, release, spec.chroot)
    stamp = os.path.join(kernel.root, ".complete")
    if os.path.exists(stamp) and os.path.exists(os.path.join(kernel.modules_dir, "modules.dep")):
        return
    os.makedirs(kernel.root, exist_ok=True)
    debs = os.path.join(matrix.CACHE_DIR, "debs")
    os.makedirs(debs, exist_ok=True)
    packages = image_packages(release)
    log(f"{spec.name}: downloading {' '.join(packages)}")
    run(["apt-get", "download", "-q", "-o", "APT::Sandbox::User=root", *packages], cwd=debs, stdout=subprocess.DEVNULL)
    with tempfile.TemporaryDirectory(dir=matrix.CACHE_DIR) as unpacked:
        for package in packages:
            (deb,) = glob.glob(os.path.join(debs, f"{package}_*.deb"))
            run(["dpkg-deb", "-x", deb, unpacked])
        _install_unpacked(kernel, unpacked)
    with open(stamp, "w", encoding="utf-8") as handle:
        handle.write(release + "\n")


def _install_unpacked(kernel: matrix.Kernel, unpacked: str) -> None:
    modules = None
    for prefix in ("usr/lib/modules", "lib/modules"):
        candidate = os.path.join(unpacked, prefix, kernel.release)
        if os.path.isdir(candidate):
            modules = candidate
    if modules is None:
        raise RuntimeError(f"no modules directory for {kernel.release} in the unpacked packages")
    images = glob.glob(os.path.join(unpacked, "boot", f"vmlinuz-{kernel.release}")) + glob.glob(
        os.path.join(modules, "vmlinuz")
    )
    if not images:
        raise RuntimeError(f"no vmlinuz for {kernel.release} in the unpacked packages")
    shutil.copy2(images[0], kernel.vmlinuz)
    if not os.path.isdir(os.path.join(kernel.modules_dir, "kernel")):
        # The guest uses the host's /lib/modules, so the tree must live there; a minimal image or a container
        # has no /lib/modules at all.
        os.makedirs(os.path.dirname(kernel.modules_dir), exist_ok=True)
        run(["cp", "-a", "--no-target-directory", modules, kernel.modules_dir])
    run(["depmod", "-a", kernel.release])


def ensure_host_headers(release: str) -> None:
    apt_install([f"linux-headers-{release}"])


def ensure_chroot(release_name: str, kernel_release: str) -> str:
    """A minbase chroot of ``release_name`` with its compiler and the headers of ``kernel_release``."""
    root = os.path.join(matrix.CACHE_DIR, "chroots", release_name)
    headers = f"linux-headers-{kernel_release}"
    compiler = matrix.CHROOT_COMPILERS[release_name]
    if not os.path.exists(os.path.join(root, ".debootstrap-complete")):
        if os.path.isdir(root):
            shutil.rmtree(root)
        log(f"debootstrap {release_name} (about a minute and a half)")
        run(
            [
                "debootstrap",
                "--variant=minbase",
                f"--include=make,{compiler},libc6-dev,kmod,ca-certificates",
                release_name,
                root,
                DEBIAN_MIRROR,
            ],
            stdout=subprocess.DEVNULL,
        )
        open(os.path.join(root, ".debootstrap-complete"), "w", encoding="utf-8").close()
    if not os.path.isdir(os.path.join(root, "usr/src", headers)):
        log(f"{release_name} chroot: installing {headers}")
        shutil.copy2("/etc/resolv.conf", os.path.join(root, "etc/resolv.conf"))
        suites = (release_name, *matrix.CHROOT_EXTRA_SUITES.get(release_name, ()))
        with open(os.path.join(root, "etc/apt/sources.list"), "w", encoding="utf-8") as handle:
            handle.writelines(f"deb {DEBIAN_MIRROR} {suite} main\n" for suite in suites)
        script = (
            "set -e; mount -t proc proc /proc; export DEBIAN_FRONTEND=noninteractive; "
            f"apt-get update -q >/dev/null; apt-get install -y -q --no-install-recommends {headers} >/dev/null"
        )
        chroot_run(root, script)
    return root


def chroot_run(root: str, script: str, capture: bool = False) -> subprocess.CompletedProcess:
    """Run a shell script in the chroot in a private mount namespace, so /proc never leaks out."""
    return subprocess.run(
        ["unshare", "--mount", "--fork", "chroot", root, "/bin/sh", "-c", script],
        check=not capture,
        capture_output=capture,
        text=True,
        env={"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "LANG": "C.UTF-8", "HOME": "/root"},
    )


def setup(names: Optional[list[str]] = None) -> dict[str, str]:
    """Prepare everything kernel tests need; returns matrix name -> kernel release."""
    os.makedirs(matrix.CACHE_DIR, exist_ok=True)
    configure_apt()
    apt_install(list(HOST_PACKAGES))
    resolved = matrix.load_resolved()
    for spec in matrix.MATRIX + matrix.BUILD_ONLY:
        if names and spec.name not in names:
            continue
        release, version = resolve_release(spec)
        log(f"{spec.name}: {release} ({spec.metapackage} {version})" + ("" if spec.boots else ", build only"))
        if spec.boots:
            fetch_kernel(spec, release)
        if spec.chroot:
            ensure_chroot(spec.chroot, release)
        else:
            ensure_host_headers(release)
        resolved[spec.name] = release
        with open(matrix.RESOLVED_FILE, "w", encoding="utf-8") as handle:
            json.dump(resolved, handle, indent=2, sort_keys=True)
    from tests.vmharness import dpdk  # imports this module

    dpdk.setup()
    return resolved
