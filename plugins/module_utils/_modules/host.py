# SPDX-License-Identifier: GPL-3.0-or-later
# Copyright: kernelnic.kni contributors
"""The managed host as the KNI modules see it: paths under an injectable root, commands and file writes.

``HostPaths`` resolves every absolute path (``/sys``, ``/proc``, ``/etc``, ``/lib/modules``, ``/dev``) under a root
directory, ``/`` in production. Unit tests point ``DEFAULT_ROOT`` (or a ``HostPaths(root=...)``) at a fake tree.

``Host`` is the small I/O surface the planning code needs: run a command given as an argument list, find a
binary, write a file atomically, remove one, write a sysfs attribute. ``ModuleHost`` implements it with an
``AnsibleModule`` (``run_command``, ``get_bin_path``, ``atomic_move``); tests substitute their own.
"""

from __future__ import annotations

import contextlib
import errno
import os
import tempfile
from typing import Any, Optional, Sequence, Tuple

DEFAULT_ROOT = "/"
MODULE_NAME = "rte_kni"
C_LOCALE = {"LC_ALL": "C", "LANG": "C", "LANGUAGE": "C"}


class HostPaths:
    """Absolute host paths resolved under ``root``."""

    def __init__(self, root: Optional[str] = None) -> None:
        self.root = root if root is not None else DEFAULT_ROOT

    def path(self, absolute: str) -> str:
        return os.path.join(self.root, absolute.lstrip("/"))

    @property
    def sys_module(self) -> str:
        return self.path(f"/sys/module/{MODULE_NAME}")

    @property
    def sys_module_parameters(self) -> str:
        return self.path(f"/sys/module/{MODULE_NAME}/parameters")

    @property
    def sys_class_net(self) -> str:
        return self.path("/sys/class/net")

    @property
    def dev_kni(self) -> str:
        return self.path("/dev/kni")

    @property
    def kernel_release_file(self) -> str:
        return self.path("/proc/sys/kernel/osrelease")

    @property
    def modprobe_conf(self) -> str:
        return self.path(f"/etc/modprobe.d/{MODULE_NAME}.conf")

    @property
    def modules_load_conf(self) -> str:
        return self.path(f"/etc/modules-load.d/{MODULE_NAME}.conf")

    @property
    def lib_modules(self) -> str:
        return self.path("/lib/modules")

    @property
    def os_release(self) -> str:
        return self.path("/etc/os-release")

    @property
    def dkms_framework_conf(self) -> str:
        return self.path("/etc/dkms/framework.conf")

    @property
    def dkms_framework_conf_d(self) -> str:
        return self.path("/etc/dkms/framework.conf.d")

    def kernel_release(self) -> str:
        """The running kernel's release (``uname -r``), read from procfs so a fake root can set it."""
        text = read_text(self.kernel_release_file)
        if text is None:
            return os.uname().release
        return text.strip()


def read_text(path: str) -> Optional[str]:
    """A small text file's content, or None when it does not exist or cannot be read."""
    try:
        with open(path, encoding="utf-8", errors="replace") as handle:
            return handle.read()
    except OSError:
        return None


class HostError(Exception):
    """A host operation failed; the message says what and why."""


class Host:
    """I/O used by the KNI modules. Subclasses provide ``run``, ``which`` and the writes."""

    def __init__(self, paths: Optional[HostPaths] = None) -> None:
        self.paths = paths if paths is not None else HostPaths()

    def run(self, argv: Sequence[str]) -> Tuple[int, str, str]:
        raise NotImplementedError

    def which(self, name: str) -> Optional[str]:
        raise NotImplementedError

    def write_file(self, path: str, content: str, mode: int = 0o644) -> None:
        """Replace ``path`` with ``content`` atomically (a temporary file in the same directory, then a rename)."""
        directory = os.path.dirname(path)
        os.makedirs(directory, mode=0o755, exist_ok=True)
        descriptor, temporary = tempfile.mkstemp(prefix=".kni-", dir=directory)
        try:
            with os.fdopen(descriptor, "w", encoding="utf-8") as handle:
                handle.write(content)
            os.chmod(temporary, mode)
            self.replace(temporary, path)
        except BaseException:
            if os.path.exists(temporary):
                os.unlink(temporary)
            raise

    def replace(self, source: str, destination: str) -> None:
        os.replace(source, destination)

    def remove_file(self, path: str) -> None:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)

    def write_attribute(self, path: str, value: str) -> None:
        """Write a sysfs attribute; the kernel's refusal becomes a HostError naming the errno."""
        try:
            with open(path, "w", encoding="ascii") as handle:
                handle.write(value)
        except OSError as exc:
            reason = errno.errorcode.get(exc.errno or 0, str(exc.errno))
            raise HostError(f"writing {value!r} to {path} failed: {reason} ({exc.strerror})") from exc


class ModuleHost(Host):
    """``Host`` on top of an ``AnsibleModule``."""

    def __init__(self, module: Any, paths: Optional[HostPaths] = None) -> None:
        super().__init__(paths)
        self.module = module

    def run(self, argv: Sequence[str]) -> Tuple[int, str, str]:
        rc, out, err = self.module.run_command(list(argv), check_rc=False, environ_update=dict(C_LOCALE))
        return rc, out, err

    def which(self, name: str) -> Optional[str]:
        found = self.module.get_bin_path(name)
        return str(found) if found else None

    def replace(self, source: str, destination: str) -> None:
        self.module.atomic_move(source, destination)
