# SPDX-License-Identifier: GPL-3.0-or-later
# Copyright: kernelnic.kni contributors
"""The kni role's variable checks: the role's defaults pass, each bad value is named, all at once."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Dict, List

import pytest
import yaml
from ansible_collections.kernelnic.kni.plugins.module_utils._modules.role_validate import CHECKS, check_variables

ROLE = Path(__file__).resolve().parents[4] / "roles" / "kni"
# Defaults computed at run time (from the collection's files on the controller), with their usual values.
COMPUTED = {
    "kni_kmod_source_dir": "/collections/kernelnic/kni/kmod",
    "kni_pump_library_source": "/collections/kernelnic/kni/plugins/module_utils",
    "kni_kmod_version": "1.0",
    "kni_kmod_dest_dir": "/usr/src/rte_kni-1.0",
}


def role_defaults(**changes: Any) -> Dict[str, Any]:
    variables = yaml.safe_load((ROLE / "defaults" / "main.yml").read_text(encoding="utf-8"))
    variables.update(COMPUTED)
    variables.update(changes)
    return variables


def errors_for(**changes: Any) -> List[str]:
    return check_variables(role_defaults(**changes))[1]


def test_role_defaults_pass() -> None:
    checked, errors = check_variables(role_defaults())
    assert errors == []
    assert checked == sorted(CHECKS)


def test_issue_examples_are_each_named_in_one_run() -> None:
    errors = errors_for(
        kni_hugepages=-5,
        kni_module_params={"min_scheduling_interval": 300, "max_scheduling_interval": 200},
        kni_interfaces=[
            {"name": "kni0", "backend": "null"},
            {"name": "kni1", "backend": "loopback", "mac": "zz"},
            {"name": "kni2", "backend": "null", "min_mtu": 1500, "max_mtu": 1400},
        ],
    )
    assert errors == [
        "kni_hugepages: -5 is out of range 0..2147483647",
        "kni_interfaces[1].mac: 'zz' is not a MAC address like 02:00:00:00:00:01",
        "kni_interfaces[2].min_mtu: 1500 is above max_mtu 1400",
        "kni_module_params: min_scheduling_interval (300) must be below max_scheduling_interval (200);"
        " the kernel refuses the load otherwise",
    ]


@pytest.mark.parametrize(
    ("name", "value", "expected"),
    [
        ("kni_module_reload", "false", "kni_module_reload: must be true or false, not 'false'"),
        ("kni_pump_pool_size", "512", "kni_pump_pool_size: must be an integer, not '512'"),
        ("kni_pump_max_interfaces", 0, "kni_pump_max_interfaces: 0 is out of range"),
        ("kni_apt_cache_valid_time", True, "kni_apt_cache_valid_time: must be an integer, not True"),
        ("kni_packages", ["dkms", "linux-headers-$(uname -r)"], "kni_packages[1]: 'linux-headers-$(uname -r)' is not"),
        ("kni_dkms_kernels", ["6.1.0-56-amd64", "../6.1"], "kni_dkms_kernels[1]: '../6.1' is not a kernel release"),
        ("kni_dkms_kernels", ["6.1.0-56-amd64"] * 2, "kni_dkms_kernels[1]: 6.1.0-56-amd64 is already listed"),
        ("kni_dkms_kernels", "6.1.0-56-amd64", "kni_dkms_kernels: must be a list of kernel releases"),
        ("kni_kmod_version", "1.0 beta", "kni_kmod_version: '1.0 beta' is not a DKMS module version"),
        ("kni_kmod_dest_dir", "usr/src/rte_kni-1.0", "kni_kmod_dest_dir: 'usr/src/rte_kni-1.0' must be an absolute"),
        ("kni_pump_lib_dir", "/usr/local/lib/../kni", "kni_pump_lib_dir: '/usr/local/lib/../kni' must be"),
        ("kni_pump_socket", "/tmp/kni.sock", "kni_pump_socket: '/tmp/kni.sock' must be a file in a directory"),
        ("kni_pump_socket", "/run/kni.sock", "kni_pump_socket: '/run/kni.sock' must be a file in a directory"),
        ("kni_pump_socket", "/run/k/" + "s" * 110, "is longer than the 107 bytes"),
        ("kni_pump_socket_group", "net dev", "kni_pump_socket_group: 'net dev' is not a group name"),
        ("kni_pump_service_name", "kni-pump.service", "kni_pump_service_name: 'kni-pump.service' must be given"),
        ("kni_pump_log_level", "debug", "kni_pump_log_level: 'debug' is not one of DEBUG, INFO, WARNING, ERROR"),
        ("kni_module_params", {"carrier": "maybe"}, "kni_module_params: carrier must be one of off, on"),
        ("kni_module_params", ["carrier"], "kni_module_params: must be a dictionary of rte_kni parameters"),
        ("kni_interfaces", {"name": "kni0"}, "kni_interfaces: must be a list of interface dictionaries"),
        ("kni_interfaces", [{"name": "kni0", "state": None, "adopt": None, "mtu": 9000}], "kni_interfaces[0].mtu:"),
        ("kni_interfaces", [{"name": "kni0", "colour": "red"}], "kni_interfaces[0].colour: unknown option"),
        ("kni_app_unit", "my-dpdk-app", "kni_app_unit: 'my-dpdk-app' is not a systemd service name"),
        ("kni_app_unit", "app;.service", "kni_app_unit: 'app;.service' is not a systemd service name"),
        ("kni_adopted_mtu", [1400], "kni_adopted_mtu: must be a dictionary of interface name: MTU"),
        ("kni_adopted_mtu", {"kni0": 1400}, "kni_adopted_mtu.kni0: is not an interface of kni_interfaces with adopt"),
        ("kni_pump_enabled", "no", "kni_pump_enabled: must be true or false, not 'no'"),
    ],
)
def test_bad_value_is_named(name: str, value: Any, expected: str) -> None:
    errors = errors_for(**{name: value})
    assert len(errors) == 1, errors
    assert errors[0].startswith(name) and expected in errors[0], errors


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("kni_pump_socket_group", ""),
        ("kni_pump_socket_group", "netdev"),
        ("kni_module_params", None),
        ("kni_module_params", {"carrier": True, "min_scheduling_interval": 20, "max_scheduling_interval": 50}),
        ("kni_dkms_kernels", ["6.1.0-56-amd64", "6.12.95+deb12-amd64"]),
        ("kni_packages", []),
        ("kni_hugepages", 64),
        ("kni_app_unit", ""),
        ("kni_app_unit", "dpdk-app@port0.service"),
        ("kni_pump_enabled", False),
    ],
)
def test_good_value_passes(name: str, value: Any) -> None:
    assert errors_for(**{name: value}) == []


def test_interfaces_are_checked_together() -> None:
    twice = [{"name": "kni0", "backend": "null"}, {"name": "kni0", "backend": "loopback"}]
    assert errors_for(kni_interfaces=twice) == ["kni_interfaces[1].name: 'kni0' is already listed at kni_interfaces[0]"]
    bridged = [{"name": "kni0", "backend": "afpacket:eth1"}, {"name": "kni1", "backend": "afpacket:eth1"}]
    assert errors_for(kni_interfaces=bridged) == [
        "kni_interfaces[1].backend: afpacket:eth1 is already used by kni_interfaces[0]"
    ]
    mac = "02:00:00:00:00:01"
    same_mac = [{"name": "kni0", "backend": "null", "mac": mac}, {"name": "kni1", "backend": "null", "mac": mac}]
    assert errors_for(kni_interfaces=same_mac) == [f"kni_interfaces[1].mac: {mac} is already used by kni_interfaces[0]"]
    # An interface being deleted or adopted does not hold its backend or MAC in the pump.
    leaving = [{"name": "kni0", "backend": "null", "mac": mac}, {"name": "kni1", "mac": mac, "state": "absent"}]
    assert errors_for(kni_interfaces=leaving) == []


def test_interfaces_beyond_the_pump_memory() -> None:
    five = [{"name": f"kni{index}", "backend": "null"} for index in range(5)]
    assert errors_for(kni_interfaces=five) == [
        "kni_interfaces: 5 kni-pump interfaces, more than the 4 that kni_pump_max_interfaces sizes the pump's"
        " memory for"
    ]
    assert errors_for(kni_interfaces=five, kni_pump_max_interfaces=5) == []
    adopted = [*five[:4], {"name": "vEth0", "adopt": True, "admin_state": "up"}]
    assert errors_for(kni_interfaces=adopted) == []


def test_every_bad_item_of_a_list_is_named() -> None:
    items = [{"name": "kni0", "mac": "zz"}, {"name": "kni1", "backend": "tap"}, {"name": "kni2", "core": -1}]
    errors = errors_for(kni_interfaces=items)
    assert [error.split(":", 1)[0] for error in errors] == [
        "kni_interfaces[0].mac",
        "kni_interfaces[1].backend",
        "kni_interfaces[2].core",
    ]


def test_unknown_variable_is_named() -> None:
    checked, errors = check_variables({"kni_interface": [], "kni_hugepages": 2})
    assert checked == ["kni_hugepages"]
    assert len(errors) == 1 and errors[0].startswith("kni_interface: not a variable of the kni role")


ADOPTED = [{"name": "kni0", "adopt": True, "addresses": ["192.0.2.1/24"]}, {"name": "kni1", "adopt": True}]


def test_without_the_pump_only_adopted_interfaces() -> None:
    assert errors_for(kni_pump_enabled=False, kni_interfaces=ADOPTED, kni_adopted_mtu={"kni1": 1400}) == []
    pumped = [*ADOPTED, {"name": "kni2", "backend": "null"}]
    errors = errors_for(kni_pump_enabled=False, kni_interfaces=pumped)
    assert errors == [
        "kni_pump_enabled: false, but kni_interfaces declares kni-pump interfaces (kni2); without the pump only"
        " interfaces a DPDK application creates (adopt: true) can be listed"
    ], errors
    errors = errors_for(kni_pump_enabled=False, kni_interfaces=ADOPTED, kni_interfaces_exclusive=True)
    assert len(errors) == 1 and errors[0].startswith("kni_pump_enabled: false, but kni_interfaces_exclusive"), errors


def test_adopted_mtu_is_checked_against_the_adopted_interfaces() -> None:
    interfaces = [*ADOPTED, {"name": "kni2", "backend": "null"}]
    errors = errors_for(kni_interfaces=interfaces, kni_adopted_mtu={"kni0": 67})
    assert errors == ["kni_adopted_mtu.kni0: 67 is out of range 68..65535"], errors
    errors = errors_for(kni_interfaces=interfaces, kni_adopted_mtu={"kni2": 1400})
    assert errors == ["kni_adopted_mtu.kni2: is not an interface of kni_interfaces with adopt: true and state: present"]
    assert errors_for(kni_interfaces=interfaces, kni_adopted_mtu={"kni0": 9000}) == []
