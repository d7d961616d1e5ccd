# SPDX-License-Identifier: GPL-3.0-or-later
# Copyright: kernelnic.kni contributors
"""kni-pump configuration schema: defaults, and errors that name the offending field."""

from __future__ import annotations

from typing import Any

import pytest
from ansible_collections.kernelnic.kni.plugins.module_utils._pump.schema import (
    MTU_LIMIT,
    Backend,
    ConfigError,
    InterfaceConfig,
    check_runtime,
    parse_cpu_list,
    parse_desired_state,
    parse_interface,
)


def interface(**fields: Any) -> dict:
    return {"name": "kni0", "backend": "loopback", **fields}


def test_defaults() -> None:
    parsed = parse_interface(interface())
    assert parsed == InterfaceConfig("kni0", Backend("loopback"), None, 1500, 68, MTU_LIMIT, "follow", None)


def test_full_interface_round_trips_through_json() -> None:
    document = {
        "name": "kni1",
        "mac": "02:AA:bb:00:00:01",
        "mtu": 1400,
        "min_mtu": 576,
        "max_mtu": 1500,
        "carrier": "on",
        "core": 1,
        "backend": "afpacket:veth0",
    }
    parsed = parse_interface(document)
    assert parsed.mac == "02:aa:bb:00:00:01"
    assert parsed.backend == Backend("afpacket", "veth0")
    assert parse_interface(parsed.to_json()) == parsed


@pytest.mark.parametrize(
    ("fields", "field", "words"),
    [
        ({"name": ""}, "interface.name", "1 to 15"),
        ({"name": "a" * 16}, "interface.name", "1 to 15"),
        ({"name": "bad/name"}, "interface.name", "not a valid"),
        ({"name": 7}, "interface.name", "string"),
        ({"mac": "02:00:00:00:00"}, "interface.mac", "not a MAC"),
        ({"mac": "01:00:5e:00:00:01"}, "interface.mac", "multicast"),
        ({"mac": "00:00:00:00:00:00"}, "interface.mac", "not a usable"),
        ({"mtu": 67}, "interface.mtu", "out of range"),
        ({"mtu": MTU_LIMIT + 1}, "interface.mtu", "out of range"),
        ({"mtu": "1500"}, "interface.mtu", "integer"),
        ({"mtu": True}, "interface.mtu", "integer"),
        ({"mtu": 1500, "max_mtu": 1400}, "interface.mtu", "outside min_mtu..max_mtu"),
        ({"min_mtu": 1600, "max_mtu": 1500}, "interface.min_mtu", "above max_mtu"),
        ({"carrier": "maybe"}, "interface.carrier", "on, off, follow"),
        ({"core": -1}, "interface.core", "out of range"),
        ({"backend": "tap:x"}, "interface.backend", "unknown backend"),
        ({"backend": "afpacket"}, "interface.backend", "afpacket:<ifname>"),
        ({"backend": "afpacket:"}, "interface.backend", "afpacket:<ifname>"),
        ({"backend": "null:x"}, "interface.backend", "takes no argument"),
        ({"speed": 10}, "interface.speed", "unknown field"),
    ],
)
def test_errors_name_the_field(fields: dict, field: str, words: str) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_interface(interface(**fields))
    assert caught.value.field == field
    assert words in caught.value.message
    assert str(caught.value).startswith(f"{field}: ")


def test_required_fields() -> None:
    with pytest.raises(ConfigError, match=r"^interface\.backend: is required"):
        parse_interface({"name": "kni0"})
    with pytest.raises(ConfigError, match=r"^interface\.name: is required"):
        parse_interface({"backend": "null"})


def test_desired_state_checks_version_and_list_positions() -> None:
    with pytest.raises(ConfigError, match=r"^version: must be 1"):
        parse_desired_state({"version": 2, "interfaces": []})
    with pytest.raises(ConfigError, match=r"^interfaces\[1\]\.mtu"):
        parse_desired_state({"version": 1, "interfaces": [interface(), interface(name="kni1", mtu=1)]})
    with pytest.raises(ConfigError, match=r"^interfaces\[1\]\.name: 'kni0' is already used by interfaces\[0\]"):
        parse_desired_state({"version": 1, "interfaces": [interface(), interface()]})
    with pytest.raises(ConfigError, match=r"^interfaces\[1\]\.backend: afpacket:eth1 is already bridged"):
        parse_desired_state(
            {
                "version": 1,
                "interfaces": [interface(backend="afpacket:eth1"), interface(name="kni1", backend="afpacket:eth1")],
            }
        )
    with pytest.raises(ConfigError, match=r"^interfaces\[0\]\.backend: .* to itself"):
        parse_desired_state({"version": 1, "interfaces": [interface(backend="afpacket:kni0")]})
    with pytest.raises(ConfigError, match=r"^interfaces\[1\]\.mac"):
        parse_desired_state(
            {
                "version": 1,
                "interfaces": [interface(mac="02:00:00:00:00:01"), interface(name="kni1", mac="02:00:00:00:00:01")],
            }
        )
    with pytest.raises(ConfigError, match=r"^config\.extra: unknown field"):
        parse_desired_state({"version": 1, "extra": 1})


def test_runtime_checks() -> None:
    configs = [parse_interface(interface(core=3, backend="afpacket:veth9"))]
    with pytest.raises(ConfigError, match=r"^interfaces\[0\]\.core: CPU 3 is not online \(online: 0-1\)"):
        check_runtime(configs, [0, 1], ["veth9"], [])
    configs = [parse_interface(interface(backend="afpacket:veth9"))]
    with pytest.raises(ConfigError, match=r"^interface\.backend: interface 'veth9' does not exist"):
        check_runtime(configs, [0], ["eth0"], [], paths=["interface"])
    configs = [parse_interface(interface(name="eth0"))]
    with pytest.raises(ConfigError, match=r"^interfaces\[0\]\.name: 'eth0' is already a network interface"):
        check_runtime(configs, [0], ["eth0"], [])
    check_runtime(configs, [0], ["eth0"], ["eth0"])  # our own interface: fine


def test_cpu_list() -> None:
    assert parse_cpu_list("0-3,8,10-11\n") == [0, 1, 2, 3, 8, 10, 11]
