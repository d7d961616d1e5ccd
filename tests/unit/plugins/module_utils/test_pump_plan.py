# SPDX-License-Identifier: GPL-3.0-or-later
# Copyright: kernelnic.kni contributors
"""kni-pump reconcile planning (pure): desired vs actual -> actions; MAC assignment."""

from __future__ import annotations

from ansible_collections.kernelnic.kni.plugins.module_utils._pump.plan import (
    Action,
    assign_macs,
    by_name,
    plan,
    random_mac,
)
from ansible_collections.kernelnic.kni.plugins.module_utils._pump.schema import parse_interface

A = parse_interface({"name": "a", "backend": "null", "mac": "02:00:00:00:00:0a"})
B = parse_interface({"name": "b", "backend": "loopback", "mac": "02:00:00:00:00:0b"})
C = parse_interface({"name": "c", "backend": "null", "mac": "02:00:00:00:00:0c"})


def test_nothing_to_do() -> None:
    assert plan(by_name([A, B]), by_name([A, B])) == []


def test_create_and_delete_ordered_deletes_first() -> None:
    actions = plan(by_name([A, C]), by_name([A, B]))
    assert actions == [Action("delete", "b"), Action("create", "c", C)]


def test_creation_fields_recreate_live_fields_update() -> None:
    desired = by_name(
        [
            A._replace(max_mtu=1500),
            B._replace(mtu=1400, carrier="off", backend=C.backend),
        ]
    )
    actions = plan(desired, by_name([A, B]))
    assert actions == [
        Action("recreate", "a", desired["a"], ("max_mtu",)),
        Action("update", "b", desired["b"], ("backend", "mtu", "carrier")),
    ]
    assert actions[1].describe() == "update b (backend, mtu, carrier)"


def test_core_change_recreates() -> None:
    (action,) = plan(by_name([A._replace(core=1)]), by_name([A]))
    assert action.kind == "recreate" and action.changes == ("core",)


def test_assign_macs_keeps_known_and_avoids_duplicates() -> None:
    bare = A._replace(mac=None)
    other = B._replace(mac=None)
    generated = iter(["02:00:00:00:00:0a", "02:00:00:00:00:0a", "02:00:00:00:00:99"])
    result = assign_macs([bare, other], {"a": A}, lambda: next(generated))
    assert result[0].mac == A.mac  # the MAC it had before
    assert result[1].mac == "02:00:00:00:00:99"  # generated, skipping the taken one


def test_random_mac_is_local_unicast() -> None:
    for _round in range(50):
        first = int(random_mac()[:2], 16)
        assert first & 0x02 and not first & 0x01
