# SPDX-License-Identifier: GPL-3.0-or-later
# Copyright: kernelnic.kni contributors
"""_modules.info and _modules.netdev: what kni_info reports, on a fake root; the real ethtool ioctl on loopback."""

from __future__ import annotations

from pathlib import Path

from ansible_collections.kernelnic.kni.plugins.module_utils._modules.info import gather
from ansible_collections.kernelnic.kni.plugins.module_utils._modules.netdev import (
    DRVINFO,
    ethtool_driver,
    interface_info,
    kni_interfaces,
)

from tests.unit.plugins.kni_fakes import RELEASE, FakeHost, FakeSystem


def test_drvinfo_layout_is_the_kernels() -> None:
    assert DRVINFO.size == 196  # sizeof(struct ethtool_drvinfo)


def test_ethtool_driver_on_real_interfaces() -> None:
    assert ethtool_driver("lo") in (None, "")  # loopback has no ethtool driver info
    assert ethtool_driver("no-such-if0") is None
    assert ethtool_driver("x" * 20) is None


def test_kni_interfaces_and_details(tmp_path: Path) -> None:
    system = FakeSystem(tmp_path)
    system.add_interface("vEth0_0")
    system.add_interface("eth0", driver="virtio_net")
    assert kni_interfaces(system.paths, system.driver_of) == ["vEth0_0"]
    info = interface_info(system.paths, "vEth0_0")
    assert info == {
        "name": "vEth0_0",
        "mtu": 1500,
        "mac": "02:00:00:00:00:01",
        "operstate": "up",
        "up": True,
        "carrier": True,
        "statistics": {"rx_packets": 10, "tx_packets": 12},
    }
    (tmp_path / "sys/class/net/vEth0_0/carrier").unlink()  # the kernel refuses the read while down
    assert interface_info(system.paths, "vEth0_0")["carrier"] is None


def test_gather_not_loaded(tmp_path: Path) -> None:
    system = FakeSystem(tmp_path)
    system.tools = {"modprobe"}
    facts = gather(FakeHost(system), driver_of=system.driver_of)
    assert facts["kernel"] == RELEASE
    assert facts["module"]["loaded"] is False and facts["module"]["refcnt"] is None
    assert facts["dev_kni"] is False
    assert facts["dkms"] == {"available": False, "entries": [], "problems": []}
    assert facts["service"] == {"name": "kni-pump", "state": "unknown"}


def test_gather_everything(tmp_path: Path) -> None:
    system = FakeSystem(tmp_path)
    system.load(["carrier=on"], refcnt=1)
    system.write("/sys/module/rte_kni/version", "1.0\n")
    system.add_interface("vEth0_0")
    system.dkms = {"1.0": {RELEASE: "installed"}}
    system.write("/run/systemd/system/.keep", "")
    system.service_state = "active"
    facts = gather(FakeHost(system), driver_of=system.driver_of)
    assert facts["module"]["loaded"] and facts["module"]["refcnt"] == 1 and facts["module"]["version"] == "1.0"
    assert facts["module"]["params"]["carrier"] == "on"
    assert facts["module"]["raw_params"]["lo_mode"] == "(null)"
    assert facts["dev_kni"] is True
    assert facts["dkms"]["entries"] == [
        {"version": "1.0", "kernel": RELEASE, "arch": "x86_64", "state": "installed", "note": ""}
    ]
    assert [i["name"] for i in facts["interfaces"]] == ["vEth0_0"]
    assert facts["service"]["state"] == "active"
