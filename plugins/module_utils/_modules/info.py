# SPDX-License-Identifier: GPL-3.0-or-later
# Copyright: kernelnic.kni contributors
"""Everything kni_info reports about a KNI host, gathered read-only."""

from __future__ import annotations

import os
from typing import Any, Dict, List, Optional

from ansible_collections.kernelnic.kni.plugins.module_utils._modules.dkms import read_status
from ansible_collections.kernelnic.kni.plugins.module_utils._modules.host import Host, read_text
from ansible_collections.kernelnic.kni.plugins.module_utils._modules.kmod import read_module
from ansible_collections.kernelnic.kni.plugins.module_utils._modules.netdev import (
    DriverProbe,
    ethtool_driver,
    interface_info,
    kni_interfaces,
)

DEFAULT_SERVICE = "kni-pump"


def module_info(host: Host) -> Dict[str, Any]:
    paths = host.paths
    loaded = read_module(paths)
    raw: Dict[str, str] = {}
    try:
        names = sorted(os.listdir(paths.sys_module_parameters)) if loaded.loaded else []
    except OSError:
        names = []
    for name in names:
        text = read_text(os.path.join(paths.sys_module_parameters, name))
        if text is not None:
            raw[name] = text.strip()
    version = read_text(os.path.join(paths.sys_module, "version")) if loaded.loaded else None
    return {
        "loaded": loaded.loaded,
        "params": dict(loaded.params),
        "raw_params": raw,
        "refcnt": loaded.refcnt if loaded.loaded else None,
        "version": version.strip() if version else None,
    }


def dkms_info(host: Host) -> Dict[str, Any]:
    dkms = host.which("dkms")
    if dkms is None:
        return {"available": False, "entries": [], "problems": []}
    entries, problems = read_status(host, dkms)
    return {
        "available": True,
        "entries": [
            {
                "version": entry.version,
                "kernel": entry.kernel,
                "arch": entry.arch,
                "state": entry.state,
                "note": entry.note,
            }
            for entry in entries
        ],
        "problems": problems,
    }


def service_state(host: Host, service: str) -> str:
    systemctl = host.which("systemctl")
    if systemctl is None or not os.path.isdir(host.paths.path("/run/systemd/system")):
        return "unknown"
    # is-active exits non-zero for every state but "active"; its output is the answer either way.
    state = host.run([systemctl, "is-active", service])[1].strip().splitlines()
    return state[0] if state else "unknown"


def gather(host: Host, service: str = DEFAULT_SERVICE, driver_of: Optional[DriverProbe] = None) -> Dict[str, Any]:
    probe = driver_of or ethtool_driver
    interfaces: List[Dict[str, Any]] = [interface_info(host.paths, name) for name in kni_interfaces(host.paths, probe)]
    return {
        "module": module_info(host),
        "dev_kni": os.path.exists(host.paths.dev_kni),
        "kernel": host.paths.kernel_release(),
        "dkms": dkms_info(host),
        "interfaces": interfaces,
        "service": {"name": service, "state": service_state(host, service)},
    }
