# SPDX-License-Identifier: GPL-3.0-or-later
"""Bootable Debian disk images, one per suite, for VMs that run systemd (molecule's platforms).

``mmdebstrap`` builds a root tree from Debian's mirrors, ``mkfs.ext4 -d`` turns it into a filesystem
without a loop mount, and ``qemu-img`` stores it as a qcow2 base that instances overlay. The kernel
and initrd built inside the tree are kept beside the image for ``-kernel``/``-initrd``. Guests have
no network beyond an SSH forward, so the image carries everything the role needs (DKMS, compiler,
headers of the image's own kernel). A build is skipped when the cached image was made from the same
recipe; a changed recipe (packages, sources, customisation) rebuilds it.
"""

from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import glob
import hashlib
import json
import os
import shutil
import time

from tests.vmharness import hostsetup, matrix

IMAGES_DIR = os.path.join(matrix.CACHE_DIR, "images")
SECURITY_MIRROR = "http://deb.debian.org/debian-security"
FILESYSTEM_SIZE = "8G"  # sparse; the qcow2 base only stores what the tree fills
HOST_TOOLS = ["mmdebstrap", "qemu-utils", "qemu-system-x86", "e2fsprogs", "openssh-client"]

# Debian suite -> kernel series its linux-image-amd64 brings (for people and reports; the image
# records the exact release it got).
SUITES = {"bullseye": "5.10", "bookworm": "6.1", "trixie": "6.12"}

PACKAGES = (
    "systemd-sysv",
    "udev",
    "dbus",
    "openssh-server",
    "python3",
    "python3-apt",  # ansible.builtin.apt needs it and could not install it offline
    "python3-pyroute2",
    "dkms",
    "build-essential",
    "linux-image-amd64",
    "linux-headers-amd64",
    "initramfs-tools",
    "kmod",
    "iproute2",
    "ethtool",
    "iputils-ping",
    "procps",
)

# Files laid into the tree. The guest's one NIC is QEMU's user network (10.0.2.0/24, host 10.0.2.2),
# configured statically so boot does not wait for DHCP.
FILES = {
    "etc/fstab": "/dev/vda / ext4 rw,errors=remount-ro 0 1\n",
    "etc/hostname": "kni-guest\n",
    "etc/hosts": "127.0.0.1 localhost\n::1 localhost ip6-localhost ip6-loopback\n",
    "etc/systemd/network/10-kni-user.network": (
        "[Match]\nName=e*\n\n[Network]\nAddress=10.0.2.15/24\nGateway=10.0.2.2\nLinkLocalAddressing=no\n"
    ),
    # The per-boot SSH key arrives through QEMU's fw_cfg (see instances.py), before sshd starts.
    "usr/local/sbin/kni-authorized-keys": (
        "#!/bin/sh\n"
        "# Install the SSH key QEMU passes for this boot as root's only authorised key.\n"
        "set -eu\n"
        "src=/sys/firmware/qemu_fw_cfg/by_name/opt/kernelnic/authorized_keys/raw\n"
        "modprobe qemu_fw_cfg\n"
        "i=0\n"
        'while [ ! -r "$src" ] && [ "$i" -lt 100 ]; do sleep 0.1; i=$((i + 1)); done\n'
        "install -d -m 0700 /root/.ssh\n"
        'cat "$src" > /root/.ssh/authorized_keys.new\n'
        "chmod 0600 /root/.ssh/authorized_keys.new\n"
        "mv /root/.ssh/authorized_keys.new /root/.ssh/authorized_keys\n"
    ),
    "etc/systemd/system/kni-authorized-keys.service": (
        "[Unit]\n"
        "Description=Authorise the SSH key QEMU passes for this boot\n"
        "DefaultDependencies=no\n"
        "After=local-fs.target systemd-modules-load.service\n"
        "Before=ssh.service\n\n"
        "[Service]\nType=oneshot\nExecStart=/usr/local/sbin/kni-authorized-keys\n\n"
        "[Install]\nWantedBy=multi-user.target\n"
    ),
}
EXECUTABLES = ("usr/local/sbin/kni-authorized-keys",)
ENABLE = ("systemd-networkd.service", "kni-authorized-keys.service", "ssh.service")
# Timers and waits that only cost boot time in a throwaway VM.
MASK = (
    "systemd-networkd-wait-online.service",
    "apt-daily.timer",
    "apt-daily-upgrade.timer",
    "e2scrub_all.timer",
    "e2scrub_reap.service",
    "fstrim.timer",
    "man-db.timer",
    "dpkg-db-backup.timer",
    "getty@tty1.service",
)


@dataclasses.dataclass(frozen=True)
class Image:
    """A built image: the qcow2 base and the kernel and initrd to boot it with."""

    suite: str
    directory: str
    kernel_release: str

    @property
    def base(self) -> str:
        return os.path.join(self.directory, "base.qcow2")

    @property
    def vmlinuz(self) -> str:
        return os.path.join(self.directory, "vmlinuz")

    @property
    def initrd(self) -> str:
        return os.path.join(self.directory, "initrd.img")


def log(message: str) -> None:
    print(f"[images] {message}", flush=True)


def sources(suite: str) -> list[str]:
    """sources.list lines: the suite with its updates and security suites, from the host's mirrors."""
    return [
        f"deb {hostsetup.DEBIAN_MIRROR} {suite} main",
        f"deb {hostsetup.DEBIAN_MIRROR} {suite}-updates main",
        f"deb {SECURITY_MIRROR} {suite}-security main",
    ]


def recipe(suite: str) -> dict[str, object]:
    return {
        "suite": suite,
        "packages": list(PACKAGES),
        "sources": sources(suite),
        "files": FILES,
        "enable": list(ENABLE),
        "mask": list(MASK),
        "size": FILESYSTEM_SIZE,
    }


def recipe_hash(suite: str) -> str:
    return hashlib.sha256(json.dumps(recipe(suite), sort_keys=True).encode()).hexdigest()[:16]


def _check_suite(suite: str) -> None:
    if suite not in SUITES:
        raise KeyError(f"unknown suite {suite!r}; known: {', '.join(SUITES)}")


def _manifest_path(suite: str) -> str:
    return os.path.join(IMAGES_DIR, suite, "manifest.json")


def cached(suite: str) -> Image | None:
    """The cached image of ``suite`` when it is complete and was built from the current recipe."""
    _check_suite(suite)
    try:
        with open(_manifest_path(suite), encoding="utf-8") as handle:
            manifest = json.load(handle)
    except FileNotFoundError:
        return None
    if manifest.get("recipe") != recipe_hash(suite):
        return None
    image = Image(suite, os.path.dirname(_manifest_path(suite)), manifest["kernel_release"])
    if not all(os.path.exists(path) for path in (image.base, image.vmlinuz, image.initrd)):
        return None
    return image


def image(suite: str) -> Image:
    """The built image of ``suite``; fails clearly when it has not been built."""
    found = cached(suite)
    if found is None:
        raise LookupError(f"no current image for {suite}; run `python -m tests.vmharness vm build --suite {suite}`")
    return found


def ensure(suite: str) -> Image:
    """Build the image of ``suite`` unless a current one is cached. Safe to call from parallel processes."""
    _check_suite(suite)
    found = cached(suite)
    if found is not None:
        return found
    os.makedirs(IMAGES_DIR, exist_ok=True)
    with open(os.path.join(IMAGES_DIR, f".{suite}.lock"), "w", encoding="utf-8") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        found = cached(suite)  # another process may have built it while we waited
        if found is not None:
            return found
        return _build(suite)


def _customize_script() -> str:
    """Shell run by mmdebstrap after installing packages; ``$1`` is the root tree."""
    lines = ["set -eu", 'root="$1"']
    for path, text in FILES.items():
        lines.append(f'mkdir -p "$root/{os.path.dirname(path)}"')
        lines.append(f"cat > \"$root/{path}\" <<'KNI_EOF'\n{text}KNI_EOF")
    lines += [f'chmod 0755 "$root/{path}"' for path in EXECUTABLES]
    lines.append(f'chroot "$root" systemctl enable {" ".join(ENABLE)}')
    lines.append(f'chroot "$root" systemctl mask {" ".join(MASK)}')
    # Every instance gets its own machine id on first boot (the overlay is writable).
    lines.append(': > "$root/etc/machine-id"')
    lines.append('rm -f "$root/var/lib/dbus/machine-id"')
    return "\n".join(lines) + "\n"


def install_host_tools() -> None:
    """What building and booting images needs on the host (already-installed packages cost a dpkg query)."""
    hostsetup.apt_install(HOST_TOOLS)


def _build(suite: str) -> Image:
    install_host_tools()
    final = os.path.join(IMAGES_DIR, suite)
    work = os.path.join(IMAGES_DIR, f".{suite}.build")
    _remove_tree(work)
    os.makedirs(work)
    tree = os.path.join(work, "root")
    script = os.path.join(work, "customize.sh")
    with open(script, "w", encoding="utf-8") as handle:
        handle.write(_customize_script())
    started = time.monotonic()
    log(f"{suite}: mmdebstrap (several minutes)")
    # A private mount namespace takes mmdebstrap's /proc, /sys and /dev mounts away with it, even when
    # it is killed, so removing a tree can never reach into the host's /dev.
    hostsetup.run(
        [
            "unshare",
            "--mount",
            "--propagation=private",
            "--fork",
            "mmdebstrap",
            "--mode=root",
            "--variant=minbase",
            "--quiet",
            f"--include={','.join(PACKAGES)}",
            f'--customize-hook=sh {script} "$1"',
            suite,
            tree,
            *sources(suite),
        ],
        env=hostsetup.apt_env(),
    )
    bootstrap_seconds = time.monotonic() - started
    release = _kernel_release(tree)
    shutil.copy2(os.path.join(tree, "boot", f"vmlinuz-{release}"), os.path.join(work, "vmlinuz"))
    shutil.copy2(os.path.join(tree, "boot", f"initrd.img-{release}"), os.path.join(work, "initrd.img"))
    log(f"{suite}: mkfs.ext4 -d and qemu-img convert ({release})")
    raw = os.path.join(work, "root.raw")
    hostsetup.run(["mkfs.ext4", "-q", "-F", "-L", f"kni-{suite}", "-d", tree, raw, FILESYSTEM_SIZE])
    _remove_tree(tree)
    hostsetup.run(["qemu-img", "convert", "-O", "qcow2", raw, os.path.join(work, "base.qcow2")])
    os.unlink(raw)
    os.unlink(script)
    os.chmod(os.path.join(work, "base.qcow2"), 0o444)  # instances only ever write to overlays
    manifest = {
        "suite": suite,
        "kernel_release": release,
        "recipe": recipe_hash(suite),
        "built": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "bootstrap_seconds": round(bootstrap_seconds, 1),
        "build_seconds": round(time.monotonic() - started, 1),
    }
    with open(os.path.join(work, "manifest.json"), "w", encoding="utf-8") as handle:
        json.dump(manifest, handle, indent=2, sort_keys=True)
    shutil.rmtree(final, ignore_errors=True)
    os.rename(work, final)
    log(f"{suite}: built in {manifest['build_seconds']}s")
    return image(suite)


def _remove_tree(path: str) -> None:
    """rmtree, refusing when anything is mounted below ``path`` (a leaked bind mount of /dev, say)."""
    with open("/proc/self/mounts", encoding="utf-8") as handle:
        mounted = [line.split()[1] for line in handle if line.split()[1].startswith(path.rstrip("/") + "/")]
    if mounted:
        raise RuntimeError(f"refusing to delete {path}: still mounted below it: {', '.join(mounted)}")
    shutil.rmtree(path, ignore_errors=True)


def _kernel_release(tree: str) -> str:
    kernels = sorted(glob.glob(os.path.join(tree, "boot", "vmlinuz-*")))
    if len(kernels) != 1:
        raise RuntimeError(f"expected one kernel in {tree}/boot, found {kernels}")
    return os.path.basename(kernels[0])[len("vmlinuz-") :]


def forget(suite: str) -> None:
    """Make the cached image stale, so the next ``ensure`` builds it again.

    Running instances keep their base open; QEMU holds the file even after the rebuild replaces it.
    """
    _check_suite(suite)
    with contextlib.suppress(FileNotFoundError):
        os.unlink(_manifest_path(suite))


def manifest(suite: str) -> dict[str, object]:
    with open(_manifest_path(suite), encoding="utf-8") as handle:
        return dict(json.load(handle))


def build(suites: list[str] | None = None) -> dict[str, Image]:
    """Ensure the images of ``suites`` (default: all), one after another."""
    install_host_tools()
    return {suite: ensure(suite) for suite in suites or list(SUITES)}
