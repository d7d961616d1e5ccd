# SPDX-License-Identifier: GPL-3.0-or-later
# Copyright: kernelnic.kni contributors
"""kni_interface's Linux side with the real pyroute2 on real links, no kernel module needed: a throwaway network
namespace on this host holds a veth pair; the module runs in adopt mode (the pump is not contacted) on ``kv0``.
Results are read back with ``ip -j``, independently of the module's own netlink reads. Needs root (CAP_SYS_ADMIN).

Adopt accepts only links of driver kni, which this host cannot create: the ``netns`` fixture makes the driver
probe report kni for ``kv0`` (every other link keeps its real ethtool driver); ``real_drivers`` does not.
"""

from __future__ import annotations

import ctypes
import json
import os
import subprocess
from collections.abc import Iterator
from typing import Any, Dict, List

import pytest
from ansible_collections.kernelnic.kni.plugins.module_utils._modules import interface_run
from ansible_collections.kernelnic.kni.plugins.module_utils._modules.interface_linux import LinuxLinks
from ansible_collections.kernelnic.kni.plugins.module_utils._modules.netdev import ethtool_driver
from ansible_collections.kernelnic.kni.plugins.modules import kni_interface

from tests.unit.plugins.modules.kni_module_runner import run_module

CLONE_NEWNET = 0x40000000
NETNS = f"kni-iface-{os.getpid()}"
LINK = "kv0"
PEER = "kv1"


def ip(*args: str) -> str:
    done = subprocess.run(["ip", "-n", NETNS, *args], capture_output=True, text=True, check=False, timeout=30)
    assert done.returncode == 0, f"ip {' '.join(args)}: {done.stderr}"
    return done.stdout


def link() -> Dict[str, Any]:
    return json.loads(ip("-j", "link", "show", "dev", LINK))[0]


def addresses() -> List[str]:
    shown = json.loads(ip("-j", "addr", "show", "dev", LINK))[0]
    return sorted(f"{entry['local']}/{entry['prefixlen']}" for entry in shown.get("addr_info", []))


class Namespace:
    """Enter and leave the test namespace in this process (setns through libc: os.setns needs Python 3.12)."""

    def __init__(self) -> None:
        self.libc = ctypes.CDLL(None, use_errno=True)

    def _setns(self, path: str) -> None:
        fd = os.open(path, os.O_RDONLY)
        try:
            if self.libc.setns(fd, CLONE_NEWNET) != 0:
                error = ctypes.get_errno()
                raise OSError(error, os.strerror(error), path)
        finally:
            os.close(fd)

    def run(self, args: Dict[str, Any], capsys: pytest.CaptureFixture, **flags: bool) -> Dict[str, Any]:
        """The module's result; a failure fails the test with the module's message, unless ``may_fail``."""
        may_fail = flags.pop("may_fail", False)
        result = self._run(args, capsys, **flags)
        if result.get("failed") and not may_fail:
            pytest.fail(f"kni_interface failed: {result.get('msg')}")
        return result

    def _run(self, args: Dict[str, Any], capsys: pytest.CaptureFixture, **flags: bool) -> Dict[str, Any]:
        home = f"/proc/{os.getpid()}/task/{os.getpid()}/ns/net"
        saved = os.open(home, os.O_RDONLY)
        try:
            self._setns(f"/run/netns/{NETNS}")
            return run_module(kni_interface.main, capsys, args, **flags)
        finally:
            if self.libc.setns(saved, CLONE_NEWNET) != 0:
                raise OSError(ctypes.get_errno(), "cannot return to the test's network namespace")
            os.close(saved)


@pytest.fixture
def real_drivers() -> Iterator[Namespace]:
    subprocess.run(["ip", "netns", "add", NETNS], check=True, timeout=30)
    try:
        ip("link", "add", LINK, "type", "veth", "peer", "name", PEER)
        ip("link", "set", PEER, "up")
        yield Namespace()
    finally:
        subprocess.run(["ip", "netns", "del", NETNS], check=False, timeout=30)


def _kv0_as_kni(name: str) -> Any:
    return "kni" if name == LINK else ethtool_driver(name)


@pytest.fixture
def netns(real_drivers: Namespace, monkeypatch: pytest.MonkeyPatch) -> Namespace:
    monkeypatch.setattr(interface_run, "LinuxLinks", lambda: LinuxLinks(driver_of=_kv0_as_kni))
    return real_drivers


WANTED: Dict[str, Any] = {
    "name": LINK,
    "adopt": True,
    "admin_state": "up",
    "promisc": True,
    "allmulticast": True,
    "addresses": ["192.0.2.1/24", "2001:db8::1/64"],
}


def test_check_apply_idempotent(netns: Namespace, capsys: pytest.CaptureFixture) -> None:
    check = netns.run(WANTED, capsys, check_mode=True, diff=True)
    assert check["changed"] is True and "failed" not in check, check
    assert check["diff"]["before"][LINK]["admin_state"] == "down" and check["diff"]["after"][LINK]["promisc"]
    assert "UP" not in link()["flags"] and addresses() == []

    applied = netns.run(WANTED, capsys, diff=True)
    assert applied["changed"] is True, applied
    flags = link()["flags"]
    assert "UP" in flags and "PROMISC" in flags and "ALLMULTI" in flags
    assert [a for a in addresses() if not a.startswith("fe80:")] == ["192.0.2.1/24", "2001:db8::1/64"]
    reported = applied["interfaces"][0]
    assert reported["admin_state"] == "up" and reported["promisc"] and reported["allmulticast"]

    again = netns.run(WANTED, capsys, diff=True)
    assert again["changed"] is False and again["actions"] == [], again
    assert netns.run(WANTED, capsys, check_mode=True)["changed"] is False


def test_addresses_exclusive_and_link_local_kept(netns: Namespace, capsys: pytest.CaptureFixture) -> None:
    ip("link", "set", LINK, "up")
    ip("addr", "add", "198.51.100.7/24", "dev", LINK)
    ip("addr", "add", "fe80::7/64", "dev", LINK)
    args = {"name": LINK, "adopt": True, "addresses": ["192.0.2.9/25"]}
    result = netns.run(args, capsys)
    assert result["changed"] and "kv0: delete address 198.51.100.7/24" in result["actions"], result
    assert "192.0.2.9/25" in addresses() and "198.51.100.7/24" not in addresses()
    assert "fe80::7/64" in addresses()
    assert netns.run(args, capsys)["changed"] is False
    cleared = netns.run({"name": LINK, "adopt": True, "addresses": []}, capsys)
    assert cleared["changed"] and [a for a in addresses() if not a.startswith("fe80:")] == []


def test_down_and_flags_off(netns: Namespace, capsys: pytest.CaptureFixture) -> None:
    netns.run(WANTED, capsys)
    args = {"name": LINK, "adopt": True, "admin_state": "down", "promisc": False, "allmulticast": False}
    result = netns.run(args, capsys)
    assert result["changed"] and result["actions"][-1] == "kv0: set down", result
    flags = link()["flags"]
    assert "UP" not in flags and "PROMISC" not in flags and "ALLMULTI" not in flags
    assert netns.run(args, capsys)["changed"] is False


def test_adopting_a_missing_link_fails_without_changes(netns: Namespace, capsys: pytest.CaptureFixture) -> None:
    args = {"interfaces": [dict(WANTED), {"name": "vEth9", "adopt": True, "admin_state": "up"}]}
    result = netns.run(args, capsys, may_fail=True)
    assert result["failed"] and result["field"] == "interfaces[1].name", result
    assert "UP" not in link()["flags"] and addresses() == []


def test_adopt_refuses_links_that_are_not_kni(real_drivers: Namespace, capsys: pytest.CaptureFixture) -> None:
    ip("link", "set", LINK, "up")
    ip("addr", "add", "192.0.2.2/24", "dev", LINK)
    ip("link", "set", "lo", "up")
    before = {name: ip("-j", "addr", "show", "dev", name) for name in (LINK, "lo")}
    for name, driver in ((LINK, "'veth'"), ("lo", None)):
        args = {"name": name, "adopt": True, "addresses": [], "admin_state": "down"}
        for check_mode in (True, False):
            result = real_drivers.run(args, capsys, check_mode=check_mode, may_fail=True)
            assert result.get("failed") is True and result["field"] == "name", result
            found = f"has driver {driver}" if driver else "has no driver"
            assert result["msg"].startswith(f"name: '{name}' {found}, not kni"), result["msg"]
            assert result.get("changed") is not True and "actions" not in result, result
    assert {name: ip("-j", "addr", "show", "dev", name) for name in (LINK, "lo")} == before
