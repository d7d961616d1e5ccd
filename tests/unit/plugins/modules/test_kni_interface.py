# SPDX-License-Identifier: GPL-3.0-or-later
# Copyright: kernelnic.kni contributors
"""kni_interface driven through AnsibleModule against a fake kni-pump and a fake IPRoute: check mode, apply,
idempotence, diff, adopt, exclusive, absent, and failures before any change."""

from __future__ import annotations

from typing import Any, Dict, List

import pytest
from ansible_collections.kernelnic.kni.plugins.module_utils._modules import interface_run
from ansible_collections.kernelnic.kni.plugins.module_utils._modules.interface import HostFacts
from ansible_collections.kernelnic.kni.plugins.module_utils._modules.interface_linux import (
    MISSING_PYROUTE2,
    LinuxError,
    LinuxLinks,
)
from ansible_collections.kernelnic.kni.plugins.module_utils._pump import control as pump_control
from ansible_collections.kernelnic.kni.plugins.module_utils._pump.schema import Backend, InterfaceConfig
from ansible_collections.kernelnic.kni.plugins.modules import kni_interface

from tests.unit.plugins.hostile_pump import hostile_pump
from tests.unit.plugins.kni_interface_fakes import IFF_UP, FakeIPRoute, FakePump
from tests.unit.plugins.modules.kni_module_runner import run_module

IFF_PROMISC = 0x100
IFF_ALLMULTI = 0x200


class World:
    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.ipr = FakeIPRoute()
        self.ipr.add_link("eth1")
        self.ipr.add_link("eth2")
        self.pump = FakePump(self.ipr)
        self.sockets: List[str] = []
        self.cpus = [0, 1]
        monkeypatch.setattr(interface_run, "connect_pump", self._connect)
        monkeypatch.setattr(interface_run, "LinuxLinks", lambda: LinuxLinks(lambda: self.ipr, self.ipr.driver_of))
        monkeypatch.setattr(interface_run, "read_host_facts", self._facts)

    def _connect(self, path: str) -> FakePump:
        self.sockets.append(path)
        return self.pump

    def _facts(self) -> HostFacts:
        return HostFacts([link["name"] for link in self.ipr.links.values()], self.cpus)


@pytest.fixture
def world(monkeypatch: pytest.MonkeyPatch) -> World:
    return World(monkeypatch)


KNI0: Dict[str, Any] = {
    "name": "kni0",
    "backend": "afpacket:eth1",
    "mac": "02:00:00:00:00:01",
    "mtu": 1400,
    "carrier": "on",
    "admin_state": "up",
    "promisc": True,
    "addresses": ["192.0.2.1/24", "2001:db8::1/64"],
}


def test_check_apply_idempotent_check_again(world: World, capsys: pytest.CaptureFixture) -> None:
    check = run_module(kni_interface.main, capsys, KNI0, check_mode=True, diff=True)
    assert check["changed"] is True and "failed" not in check
    assert world.pump.mutations() == [] and world.ipr.index_of("kni0") is None
    assert check["diff"]["before"]["kni0"] == {"name": "kni0", "state": "absent", "adopt": False}
    after = check["diff"]["after"]["kni0"]
    assert after["mtu"] == 1400 and after["admin_state"] == "up" and after["promisc"] is True
    assert after["addresses"] == ["192.0.2.1/24", "2001:db8::1/64"]
    assert check["interfaces"][0]["mac"] == "02:00:00:00:00:01"

    applied = run_module(kni_interface.main, capsys, KNI0, diff=True)
    assert applied["changed"] is True
    assert applied["actions"] == [
        "kni0: apply to kni-pump",
        "kni0: set promisc on",
        "kni0: add address 192.0.2.1/24",
        "kni0: add address 2001:db8::1/64",
        "kni0: set up",
    ]
    assert world.sockets[-1] == "/run/kni-pump/control.sock"
    assert world.pump.desired["kni0"].mtu == 1400 and world.pump.desired["kni0"].carrier == "on"
    assert world.ipr.flags("kni0") & (IFF_UP | IFF_PROMISC) == IFF_UP | IFF_PROMISC
    assert world.ipr.cidrs("kni0") == ["192.0.2.1/24", "2001:db8::1/64"]
    assert applied["interfaces"][0]["addresses"] == ["192.0.2.1/24", "2001:db8::1/64"]
    assert applied["interfaces"][0]["backend"] == "afpacket:eth1"

    mutations = len(world.pump.mutations())
    again = run_module(kni_interface.main, capsys, KNI0, diff=True)
    assert again["changed"] is False and again["actions"] == []
    assert again["diff"]["before"] == again["diff"]["after"]
    assert run_module(kni_interface.main, capsys, KNI0, check_mode=True)["changed"] is False
    assert len(world.pump.mutations()) == mutations


def test_left_out_pump_fields_keep_their_values(world: World, capsys: pytest.CaptureFixture) -> None:
    run_module(kni_interface.main, capsys, KNI0)
    result = run_module(kni_interface.main, capsys, {"name": "kni0", "mtu": 1500}, diff=True)
    assert result["changed"] is True and result["actions"] == ["kni0: apply to kni-pump"]
    config = world.pump.desired["kni0"]
    assert (config.mtu, config.carrier, config.mac, str(config.backend)) == (
        1500,
        "on",
        "02:00:00:00:00:01",
        "afpacket:eth1",
    )
    assert "admin_state" not in result["diff"]["after"]["kni0"]  # Linux side not managed in this task


def test_generated_mac_is_kept(world: World, capsys: pytest.CaptureFixture) -> None:
    args = {"name": "kni0", "backend": "loopback"}
    check = run_module(kni_interface.main, capsys, args, check_mode=True)
    assert check["interfaces"][0]["mac"] is None
    first = run_module(kni_interface.main, capsys, args)
    mac = world.pump.desired["kni0"].mac
    assert mac and first["interfaces"][0]["mac"] == mac
    assert run_module(kni_interface.main, capsys, args)["changed"] is False
    assert world.pump.desired["kni0"].mac == mac


def test_addresses_are_exclusive_but_keep_kernel_link_local(world: World, capsys: pytest.CaptureFixture) -> None:
    run_module(kni_interface.main, capsys, KNI0)
    index = world.ipr.index_of("kni0")
    world.ipr.addresses.append((index, 10, "fe80::1", 64))
    world.ipr.addresses.append((index, 2, "198.51.100.9", 24))
    args = dict(KNI0, addresses=["192.0.2.1/25"])
    result = run_module(kni_interface.main, capsys, args)
    assert result["actions"] == [
        "kni0: delete address 192.0.2.1/24",
        "kni0: delete address 198.51.100.9/24",
        "kni0: delete address 2001:db8::1/64",
        "kni0: add address 192.0.2.1/25",
    ]
    assert world.ipr.cidrs("kni0") == ["192.0.2.1/25", "fe80::1/64"]
    assert run_module(kni_interface.main, capsys, args)["changed"] is False
    cleared = run_module(kni_interface.main, capsys, dict(KNI0, addresses=[]))
    assert cleared["changed"] and world.ipr.cidrs("kni0") == ["fe80::1/64"]


def test_address_delete_falls_back_to_a_plain_request(world: World, capsys: pytest.CaptureFixture) -> None:
    run_module(kni_interface.main, capsys, KNI0)
    world.ipr.old_del = True
    result = run_module(kni_interface.main, capsys, dict(KNI0, addresses=["192.0.2.1/24"]))
    assert result["actions"] == ["kni0: delete address 2001:db8::1/64"]
    assert world.ipr.cidrs("kni0") == ["192.0.2.1/24"]
    world.ipr.fail_on = "addr del"
    failed = run_module(kni_interface.main, capsys, dict(KNI0, addresses=[]))
    assert failed["failed"] and "kni0: delete address 192.0.2.1/24 failed" in failed["msg"]


def test_recreate_reapplies_linux_side(world: World, capsys: pytest.CaptureFixture) -> None:
    run_module(kni_interface.main, capsys, KNI0)
    args = dict(KNI0, core=1)
    check = run_module(kni_interface.main, capsys, args, check_mode=True)
    assert check["actions"][0] == "kni0: recreate in kni-pump" and "kni0: set up" in check["actions"]
    result = run_module(kni_interface.main, capsys, args)
    assert result["changed"] and world.pump.desired["kni0"].core == 1
    assert world.ipr.flags("kni0") & IFF_UP and world.ipr.cidrs("kni0") == ["192.0.2.1/24", "2001:db8::1/64"]
    assert run_module(kni_interface.main, capsys, args)["changed"] is False


def test_list_exclusive_and_absent(world: World, capsys: pytest.CaptureFixture) -> None:
    world.pump.add(InterfaceConfig("old0", Backend("null"), mac="02:00:00:00:00:09"))
    args = {
        "interfaces": [
            {"name": "kni0", "backend": "afpacket:eth1", "admin_state": "up"},
            {"name": "kni1", "backend": "loopback", "allmulticast": True},
        ],
        "exclusive": True,
    }
    check = run_module(kni_interface.main, capsys, args, check_mode=True, diff=True)
    assert check["actions"][0] == "old0: delete from kni-pump"
    assert check["diff"]["after"]["old0"]["state"] == "absent" and "old0" in world.pump.desired
    result = run_module(kni_interface.main, capsys, args)
    assert sorted(world.pump.desired) == ["kni0", "kni1"] and world.ipr.index_of("old0") is None
    assert world.ipr.flags("kni1") & IFF_ALLMULTI and not world.ipr.flags("kni1") & IFF_UP
    assert [item["state"] for item in result["interfaces"]] == ["present", "present", "absent"]
    assert run_module(kni_interface.main, capsys, args)["changed"] is False

    gone = {"interfaces": [{"name": "kni1", "state": "absent"}]}
    absent = run_module(kni_interface.main, capsys, gone, diff=True)
    assert absent["changed"] and absent["actions"] == ["kni1: delete from kni-pump"]
    assert absent["diff"]["after"]["kni1"] == {"name": "kni1", "state": "absent", "adopt": False}
    assert sorted(world.pump.desired) == ["kni0"]
    assert run_module(kni_interface.main, capsys, gone)["changed"] is False


def test_adopt_touches_only_linux(world: World, capsys: pytest.CaptureFixture) -> None:
    world.ipr.add_link("vEth0_0", driver="kni")
    args = {"name": "vEth0_0", "adopt": True, "admin_state": "up", "addresses": ["10.9.0.1/24"]}
    result = run_module(kni_interface.main, capsys, args)
    assert result["changed"] and world.sockets == [] and world.pump.requests == []
    assert world.ipr.cidrs("vEth0_0") == ["10.9.0.1/24"]
    assert result["interfaces"][0] == {
        "name": "vEth0_0",
        "state": "present",
        "adopt": True,
        "admin_state": "up",
        "promisc": False,
        "allmulticast": False,
        "addresses": ["10.9.0.1/24"],
    }
    assert run_module(kni_interface.main, capsys, args)["changed"] is False


@pytest.mark.parametrize(
    ("args", "field", "text"),
    [
        ({"name": "vEth9", "adopt": True, "admin_state": "up"}, "name", "adopt=true needs"),
        ({"name": "vEth9", "adopt": True, "mtu": 1500}, "mtu", "only admin_state, promisc"),
        ({"name": "kni0"}, "backend", "is required to create"),
        ({"name": "kni0", "backend": "afpacket:eth9"}, "backend", "'eth9' does not exist"),
        ({"name": "kni0", "backend": "loopback", "mtu": 3000}, "mtu", "out of range 68..2034"),
        ({"name": "kni0", "backend": "loopback", "mtu": 1000, "min_mtu": 1200}, "mtu", "outside min_mtu"),
        ({"name": "kni0", "backend": "loopback", "mac": "01:00:00:00:00:01"}, "mac", "multicast"),
        ({"name": "kni0", "backend": "loopback", "core": 7}, "core", "CPU 7 is not online"),
        ({"name": "eth2", "backend": "loopback"}, "name", "kni-pump does not own"),
        ({"name": "kni0", "backend": "loopback", "addresses": ["10.0.0.1"]}, "addresses[0]", "prefix length"),
        ({"name": "kni0", "backend": "tap:x"}, "backend", "unknown backend"),
        (
            {"interfaces": [{"name": "kni0", "backend": "loopback"}, {"name": "kni0", "backend": "null"}]},
            "interfaces[1].name",
            "already listed",
        ),
        (
            {
                "interfaces": [
                    {"name": "kni0", "backend": "afpacket:eth1"},
                    {"name": "kni1", "backend": "afpacket:eth1", "addresses": ["10.0.0.1/8"]},
                ]
            },
            "interfaces[1].backend",
            "already used by interfaces[0]",
        ),
        ({"interfaces": [{"name": "kni0", "backend": "loopback"}], "mtu": 1500}, "mtu", "per-interface option"),
        ({"name": "kni0", "backend": "loopback", "exclusive": True}, "exclusive", "needs interfaces"),
    ],
)
def test_bad_input_fails_before_any_change(
    world: World, capsys: pytest.CaptureFixture, args: Dict[str, Any], field: str, text: str
) -> None:
    before = dict(world.ipr.links)
    result = run_module(kni_interface.main, capsys, args)
    assert result["failed"] is True and result["field"] == field, result
    assert text in result["msg"] and result["msg"].startswith(field)
    assert world.pump.mutations() == [] and world.ipr.links == before
    assert world.ipr.calls == []


def test_second_interface_invalid_changes_nothing(world: World, capsys: pytest.CaptureFixture) -> None:
    args = {
        "interfaces": [
            {"name": "kni0", "backend": "loopback", "admin_state": "up"},
            {"name": "kni1", "backend": "loopback", "max_mtu": 100, "mtu": 1500},
        ]
    }
    result = run_module(kni_interface.main, capsys, args)
    assert result["failed"] and result["field"] == "interfaces[1].mtu"
    assert world.pump.mutations() == [] and world.ipr.index_of("kni0") is None


def test_pump_refusal_names_the_task_field(world: World, capsys: pytest.CaptureFixture) -> None:
    world.pump.refuse = ("interface.backend", "cannot open AF_PACKET socket")
    args = {"interfaces": [{"name": "kni0", "backend": "afpacket:eth1"}]}
    result = run_module(kni_interface.main, capsys, args)
    assert result["failed"] and result["field"] == "interfaces[0].backend"
    assert "cannot open AF_PACKET socket" in result["msg"]


def test_netlink_failure_is_reported(world: World, capsys: pytest.CaptureFixture) -> None:
    world.ipr.add_link("vEth0_0", driver="kni")
    world.ipr.fail_on = "link set"
    result = run_module(kni_interface.main, capsys, {"name": "vEth0_0", "adopt": True, "admin_state": "up"})
    assert result["failed"] and "vEth0_0: set up failed" in result["msg"] and "busy" in result["msg"]


def test_unreachable_pump(capsys: pytest.CaptureFixture, tmp_path: Any) -> None:
    args = {"name": "kni0", "backend": "loopback", "socket": str(tmp_path / "none.sock")}
    result = run_module(kni_interface.main, capsys, args)
    assert (
        result["failed"]
        and "cannot connect to kni-pump's control socket" in result["msg"]
        and "none.sock" in result["msg"]
    )


def test_missing_pyroute2_names_the_package(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture) -> None:
    import builtins

    real_import = builtins.__import__

    def no_pyroute2(name: str, *args: Any, **kwargs: Any) -> Any:
        if name == "pyroute2" or name.startswith("pyroute2."):
            raise ImportError("No module named 'pyroute2'")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_pyroute2)
    with pytest.raises(LinuxError, match="python3-pyroute2"):
        LinuxLinks().read("lo")
    result = run_module(kni_interface.main, capsys, {"name": "lo", "adopt": True, "admin_state": "up"})
    assert result["failed"] and result["msg"] == MISSING_PYROUTE2


def test_yaml_boolean_carrier_is_accepted(world: World, capsys: pytest.CaptureFixture) -> None:
    result = run_module(kni_interface.main, capsys, {"name": "kni0", "backend": "null", "carrier": True})
    assert "failed" not in result, result
    assert world.pump.desired["kni0"].carrier == "on" and result["interfaces"][0]["carrier"] == "on"
    listed = {"interfaces": [{"name": "kni0", "carrier": False}]}
    assert run_module(kni_interface.main, capsys, listed)["interfaces"][0]["carrier"] == "off"


@pytest.mark.parametrize(
    ("behaviour", "expected"),
    [
        ("silent", "kni-pump did not answer on its control socket {path} within 0.5 s"),
        ("closes", "kni-pump closed the control connection on {path} without a reply"),
        ("garbage", "kni-pump's reply on {path} is not valid JSON: "),
        ("list", "kni-pump's reply on {path} must be a JSON object, not a list"),
        ("ok-only", "kni-pump's reply to 'list' on {path}: field 'interfaces' must be a list, but it is missing"),
        ("ok-string", "kni-pump's reply to 'list' on {path}: field 'ok' must be true or false, but it is a string"),
        ("bad-entries", "kni-pump's reply to 'list' on {path}: each entry of 'interfaces' must be an object"),
        ("error-string", "kni-pump: out of cheese"),
    ],
)
def test_misbehaving_pump_fails_naming_the_socket(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture, tmp_path: Any, behaviour: str, expected: str
) -> None:
    monkeypatch.setattr(pump_control, "DEFAULT_TIMEOUT", 0.5)
    path = str(tmp_path / "control.sock")
    with hostile_pump(path, behaviour) as server:
        result = run_module(kni_interface.main, capsys, {"name": "kni0", "backend": "null", "socket": path})
    assert result["failed"] is True and result.get("changed") is not True, result
    assert expected.format(path=path) in result["msg"] and "\n" not in result["msg"], result["msg"]
    assert all(b'"op": "list"' in line for line in server.requests), server.requests  # nothing was changed


def test_pump_field_errors_come_before_the_pump_is_contacted(capsys: pytest.CaptureFixture, tmp_path: Any) -> None:
    socket_path = str(tmp_path / "none.sock")  # no pump: a field error must win over "cannot connect"
    for options, field, text in [
        ({"min_mtu": 1500, "max_mtu": 1400}, "min_mtu", "1500 is above max_mtu 1400"),
        ({"mtu": 1000, "min_mtu": 1200}, "mtu", "1000 is outside min_mtu..max_mtu: min_mtu is 1200"),
        ({"mtu": 1600, "max_mtu": 1500}, "mtu", "1600 is outside min_mtu..max_mtu: max_mtu is 1500"),
    ]:
        args = {"interfaces": [{"name": "kni0", **options}], "socket": socket_path}
        result = run_module(kni_interface.main, capsys, args)
        assert result["failed"] and result["field"] == f"interfaces[0].{field}", result
        assert result["msg"] == f"interfaces[0].{field}: {text}"


@pytest.mark.parametrize(("name", "driver"), [("eth1", "veth"), ("lo", None), ("dummy0", "dummy")])
def test_adopt_refuses_an_interface_that_is_not_kni(
    world: World, capsys: pytest.CaptureFixture, name: str, driver: Any
) -> None:
    if name == "dummy0":
        world.ipr.add_link(name, driver=driver)
    index = world.ipr.index_of(name)
    assert index is not None
    world.ipr.addresses.append((index, 2, "192.0.2.2", 24))
    args = {"name": name, "adopt": True, "addresses": [], "admin_state": "down"}
    for check_mode in (True, False):
        result = run_module(kni_interface.main, capsys, args, check_mode=check_mode)
        assert result["failed"] is True and result["field"] == "name", result
        found = f"driver {driver!r}" if driver else "no driver"
        assert result["msg"].startswith(f"name: {name!r} has {found}, not kni"), result["msg"]
        assert world.ipr.calls == [] and world.ipr.cidrs(name) == ["192.0.2.2/24"]
