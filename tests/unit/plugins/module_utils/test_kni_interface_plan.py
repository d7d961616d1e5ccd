# SPDX-License-Identifier: GPL-3.0-or-later
# Copyright: kernelnic.kni contributors
"""kni_interface's pure part: option parsing and the Linux-side plan."""

from __future__ import annotations

import pytest
from ansible_collections.kernelnic.kni.plugins.module_utils._modules.interface import (
    NEW_LINK,
    LinuxState,
    plan_linux,
    predict_linux,
)
from ansible_collections.kernelnic.kni.plugins.module_utils._modules.interface_options import (
    LinuxWanted,
    normalize_address,
    parse_options,
)
from ansible_collections.kernelnic.kni.plugins.module_utils._pump.schema import ConfigError


def test_top_level_options_make_one_interface() -> None:
    specs, exclusive = parse_options(
        {"name": "kni0", "backend": "afpacket:eth1", "carrier": True, "mac": "02:AB:00:00:00:01", "promisc": False}
    )
    assert exclusive is False and len(specs) == 1
    spec = specs[0]
    assert (spec.field, spec.name, spec.state, spec.adopt) == ("", "kni0", "present", False)
    assert spec.pump == {"backend": "afpacket:eth1", "carrier": "on", "mac": "02:ab:00:00:00:01"}
    assert spec.linux == LinuxWanted(promisc=False)


def test_list_items_get_their_path() -> None:
    specs, exclusive = parse_options(
        {"interfaces": [{"name": "a"}, {"name": "b", "state": "absent"}], "exclusive": True}
    )
    assert exclusive and [spec.path("mtu") for spec in specs] == ["interfaces[0].mtu", "interfaces[1].mtu"]
    with pytest.raises(ConfigError) as error:
        parse_options({"interfaces": [{"name": "a"}, {"name": "b", "speed": 10}]})
    assert error.value.field == "interfaces[1].speed"


@pytest.mark.parametrize(
    ("value", "expected"),
    [("192.0.2.1/24", "192.0.2.1/24"), ("2001:DB8:0::1/64", "2001:db8::1/64"), (" 10.0.0.1/8", "10.0.0.1/8")],
)
def test_addresses_are_normalised(value: str, expected: str) -> None:
    assert normalize_address(value, "addresses[0]") == expected


@pytest.mark.parametrize("value", ["192.0.2.1", "192.0.2.1/33", "224.0.0.1/4", "host/24", 5])
def test_bad_addresses_name_the_item(value: object) -> None:
    with pytest.raises(ConfigError) as error:
        parse_options({"name": "kni0", "addresses": ["10.0.0.1/8", value]})
    assert error.value.field == "addresses[1]"


def test_same_address_twice_is_refused() -> None:
    with pytest.raises(ConfigError, match="another prefix length") as error:
        parse_options({"name": "kni0", "addresses": ["10.0.0.1/8", "10.0.0.1/24"]})
    assert error.value.field == "addresses[1]"


def test_adopt_refuses_absent() -> None:
    with pytest.raises(ConfigError, match="DPDK application") as error:
        parse_options({"name": "vEth0", "adopt": True, "state": "absent"})
    assert error.value.field == "state"


def test_linux_plan_order_and_prediction() -> None:
    current = LinuxState(4, "up", True, False, ("10.0.0.1/8", "fe80::1/64"))
    wanted = LinuxWanted(admin_state="down", promisc=False, allmulticast=True, addresses=("192.0.2.1/24",))
    changes = plan_linux(wanted, current)
    assert [change.describe("x") for change in changes] == [
        "x: set promisc off",
        "x: set allmulticast on",
        "x: delete address 10.0.0.1/8",
        "x: add address 192.0.2.1/24",
        "x: set down",
    ]
    predicted = predict_linux(current, changes)
    assert predicted == LinuxState(4, "down", False, True, ("192.0.2.1/24", "fe80::1/64"))
    assert plan_linux(wanted, predicted) == []


def test_listed_link_local_is_managed_and_unmanaged_settings_stay() -> None:
    assert plan_linux(LinuxWanted(), NEW_LINK._replace(addresses=("10.0.0.1/8",))) == []
    changes = plan_linux(LinuxWanted(addresses=("fe80::2/64",)), NEW_LINK._replace(addresses=("fe80::1/64",)))
    assert [(change.kind, change.value) for change in changes] == [("addr_add", "fe80::2/64")]
