# SPDX-License-Identifier: GPL-3.0-or-later
# Copyright: kernelnic.kni contributors
"""A fake host for the kni_kmod / kni_dkms / kni_info tests: a directory tree as the root file system, and
modprobe, modinfo, dkms, mokutil and systemctl played in Python against it."""

from __future__ import annotations

import os
import stat
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

from ansible_collections.kernelnic.kni.plugins.module_utils._modules.host import Host, HostPaths

RELEASE = "6.1.0-56-amd64"
OTHER_RELEASE = "6.12.95+deb12-amd64"
STRING_PARAMS = ("lo_mode", "kthread_mode", "carrier", "enable_bifurcated", "strict", "multi_open")
INTERVAL_DEFAULTS = {
    "min_scheduling_interval": "100",
    "max_scheduling_interval": "200",
    "idle_scheduling_interval": "5000",
}


class FakeSystem:
    """The root tree and the commands. ``calls`` records every command line that ran."""

    def __init__(self, root: Path, release: str = RELEASE, dkms_major: int = 3) -> None:
        self.root = root
        self.paths = HostPaths(str(root))
        self.calls: List[List[str]] = []
        self.tools = {"modprobe", "modinfo", "dkms", "systemctl"}
        self.installed_for = {release}  # kernels modinfo finds rte_kni for (kni_kmod)
        self.vermagic_override: Dict[str, str] = {}
        self.dkms_major = dkms_major
        self.dkms: Dict[str, Dict[str, str]] = {}  # version -> {kernel: built|installed}
        self.dkms_fail: Optional[str] = None
        self.sb_output: Optional[str] = None  # mokutil --sb-state output; None: no mokutil
        self.enrolled = False
        self.service_state = "inactive"
        self.write("/proc/sys/kernel/osrelease", release + "\n")
        self.write("/etc/os-release", 'ID=debian\nVERSION_ID="12"\n')
        self.kernel(release, headers=True)

    # files -----------------------------------------------------------------------------------------------------
    def write(self, absolute: str, text: str, mode: int = 0o644) -> Path:
        path = self.root / absolute.lstrip("/")
        path.parent.mkdir(parents=True, exist_ok=True)
        if path.exists():
            path.chmod(0o644)
        path.write_text(text)
        path.chmod(mode)
        return path

    def read(self, absolute: str) -> Optional[str]:
        path = self.root / absolute.lstrip("/")
        return path.read_text() if path.exists() else None

    def exists(self, absolute: str) -> bool:
        return (self.root / absolute.lstrip("/")).exists()

    def kernel(self, release: str, headers: bool) -> None:
        self.write(f"/lib/modules/{release}/modules.order", "")
        if headers:
            self.write(f"/lib/modules/{release}/build/Makefile", "")

    # the loaded module -------------------------------------------------------------------------------------
    def load(self, arguments: Sequence[str] = (), refcnt: int = 0) -> None:
        given = dict(word.split("=", 1) for word in arguments)
        self.write("/sys/module/rte_kni/initstate", "live\n")
        self.write("/sys/module/rte_kni/refcnt", f"{refcnt}\n")
        (self.root / "sys/module/rte_kni/holders").mkdir(parents=True, exist_ok=True)
        for name in STRING_PARAMS:
            mode = 0o444 if name in ("strict", "multi_open") else 0o644
            self.write(f"/sys/module/rte_kni/parameters/{name}", given.get(name, "(null)") + "\n", mode)
        for name, default in INTERVAL_DEFAULTS.items():
            self.write(f"/sys/module/rte_kni/parameters/{name}", given.get(name, default) + "\n")
        self.write("/dev/kni", "")

    def unload(self) -> None:
        for path in sorted((self.root / "sys/module/rte_kni").rglob("*"), reverse=True):
            path.chmod(0o755 if path.is_dir() else 0o644)
            path.rmdir() if path.is_dir() else path.unlink()
        (self.root / "sys/module/rte_kni").rmdir()
        (self.root / "dev/kni").unlink()

    def param(self, name: str) -> str:
        return (self.read(f"/sys/module/rte_kni/parameters/{name}") or "").strip()

    def add_interface(self, name: str, driver: str = "kni") -> None:
        base = f"/sys/class/net/{name}"
        self.write(f"{base}/mtu", "1500\n")
        self.write(f"{base}/address", "02:00:00:00:00:01\n")
        self.write(f"{base}/operstate", "up\n")
        self.write(f"{base}/flags", "0x1003\n")
        self.write(f"{base}/carrier", "1\n")
        self.write(f"{base}/statistics/rx_packets", "10\n")
        self.write(f"{base}/statistics/tx_packets", "12\n")
        self.write(f"{base}/driver_name_for_tests", driver)

    def driver_of(self, name: str) -> Optional[str]:
        return self.read(f"/sys/class/net/{name}/driver_name_for_tests")

    # commands --------------------------------------------------------------------------------------------------
    def which(self, name: str) -> Optional[str]:
        if name == "mokutil" and self.sb_output is not None:
            return "/usr/bin/mokutil"
        return f"/usr/sbin/{name}" if name in self.tools else None

    def run(self, argv: Sequence[str]) -> Tuple[int, str, str]:
        argv = [str(word) for word in argv]
        self.calls.append(argv)
        tool = os.path.basename(argv[0])
        handler = getattr(self, f"_run_{tool}")
        return handler(argv[1:])

    def _run_modinfo(self, args: List[str]) -> Tuple[int, str, str]:
        kernel = args[args.index("-k") + 1] if "-k" in args else self.paths.kernel_release()
        if kernel not in self.installed_for and not any(kernel in ks for ks in self._installed_dkms()):
            return 1, "", "modinfo: ERROR: Module rte_kni not found.\n"
        filename = f"/lib/modules/{kernel}/updates/dkms/rte_kni.ko"
        if "-n" in args or (args[:2] == ["-F", "filename"]):
            return 0, filename + "\n", ""
        if args[:2] == ["-F", "vermagic"]:
            return 0, self.vermagic_override.get(kernel, f"{kernel} SMP preempt mod_unload modversions ") + "\n", ""
        return 1, "", "unsupported modinfo call"

    def _run_modprobe(self, args: List[str]) -> Tuple[int, str, str]:
        if args[0] == "-r":
            if (self.read("/sys/module/rte_kni/refcnt") or "0").strip() != "0":
                return 1, "", "modprobe: FATAL: Module rte_kni is in use.\n"
            self.unload()
            return 0, "", ""
        if self.paths.kernel_release() not in self.installed_for:
            return 1, "", "modprobe: FATAL: Module rte_kni not found\n"
        if not self.exists("/sys/module/rte_kni/initstate"):
            self.load(args[1:])
        return 0, "", ""

    def _installed_dkms(self) -> List[set]:
        return [{k for k, s in kernels.items() if s == "installed"} for kernels in self.dkms.values()]

    def _run_dkms(self, args: List[str]) -> Tuple[int, str, str]:
        verb = args[0]
        if self.dkms_fail == verb:
            return 10, "", f"Error! Bad return status for module {verb}.\n"
        if verb == "status":
            return 0, self.status_text(), ""
        if verb == "add":
            if args[1] == "-m":
                self.dkms.setdefault(args[4], {})
            else:
                conf = self.read(os.path.join(args[1], "dkms.conf")) or ""
                version = conf.split('PACKAGE_VERSION="', 1)[1].split('"', 1)[0]
                self.dkms.setdefault(version, {})
            return 0, "", ""
        version = args[args.index("-v") + 1]
        kernel = args[args.index("-k") + 1] if "-k" in args else None
        if verb == "build":
            self.dkms[version][kernel or ""] = "built"
        elif verb == "install":
            self.dkms[version][kernel or ""] = "installed"
        elif verb == "remove":
            if kernel:
                self.dkms[version].pop(kernel, None)
            else:
                del self.dkms[version]
        return 0, "", ""

    def status_text(self) -> str:
        lines = []
        for version, kernels in self.dkms.items():
            if not kernels:
                lines.append(f"rte_kni/{version}: added" if self.dkms_major >= 3 else f"rte_kni, {version}: added")
            for kernel, state in kernels.items():
                head = f"rte_kni/{version}" if self.dkms_major >= 3 else f"rte_kni, {version}"
                lines.append(f"{head}, {kernel}, x86_64: {state}")
        return "".join(line + "\n" for line in lines)

    def _run_mokutil(self, args: List[str]) -> Tuple[int, str, str]:
        if args[0] == "--sb-state":
            return 0, self.sb_output or "", ""
        if args[0] == "--test-key":
            if self.enrolled:
                return 1, f"{args[1]} is already enrolled\n", ""
            return 0, f"{args[1]} is not enrolled\n", ""
        return 1, "", "unsupported"

    def _run_systemctl(self, args: List[str]) -> Tuple[int, str, str]:
        return (0 if self.service_state == "active" else 3), self.service_state + "\n", ""


class FakeHost(Host):
    """``Host`` whose commands are the fake system's; file writes go to the fake root."""

    def __init__(self, system: FakeSystem) -> None:
        super().__init__(system.paths)
        self.system = system

    def run(self, argv: Sequence[str]) -> Tuple[int, str, str]:
        return self.system.run(argv)

    def which(self, name: str) -> Optional[str]:
        return self.system.which(name)


def mode_of(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)
