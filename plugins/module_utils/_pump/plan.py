# SPDX-License-Identifier: GPL-3.0-or-later
# Copyright: kernelnic.kni contributors
"""Reconcile planning for kni-pump (pure): desired interfaces vs running ones -> an ordered list of actions.

Some properties can change on a live interface: the carrier policy and the backend (the pump swaps the backend
under the interface), and MTU and MAC (the pump asks the kernel, which sends itself a request the pump answers).
``min_mtu``, ``max_mtu`` and ``core`` are fixed when the kernel creates the net device, so changing them recreates
the interface.
"""

from __future__ import annotations

import os
from typing import Callable, Dict, List, Mapping, NamedTuple, Optional, Sequence, Tuple

from ansible_collections.kernelnic.kni.plugins.module_utils._pump.schema import (
    CREATION_FIELDS,
    LIVE_FIELDS,
    InterfaceConfig,
    mac_text,
)


class Action(NamedTuple):
    """``create``, ``delete``, ``recreate`` (delete then create) or ``update`` (``changes`` lists live fields)."""

    kind: str
    name: str
    config: Optional[InterfaceConfig] = None
    changes: Tuple[str, ...] = ()

    def describe(self) -> str:
        return f"{self.kind} {self.name}" + (f" ({', '.join(self.changes)})" if self.changes else "")


def plan(desired: Mapping[str, InterfaceConfig], actual: Mapping[str, InterfaceConfig]) -> List[Action]:
    """Deletes first (they free names, backends and memory), then recreates, updates and creates, each by name."""
    deletes = [Action("delete", name) for name in sorted(actual) if name not in desired]
    recreates: List[Action] = []
    updates: List[Action] = []
    creates: List[Action] = []
    for name in sorted(desired):
        want = desired[name]
        have = actual.get(name)
        if have is None:
            creates.append(Action("create", name, want))
            continue
        changed = [field for field in CREATION_FIELDS if getattr(want, field) != getattr(have, field)]
        if changed:
            recreates.append(Action("recreate", name, want, tuple(changed)))
            continue
        live = tuple(field for field in LIVE_FIELDS if getattr(want, field) != getattr(have, field))
        if live:
            updates.append(Action("update", name, want, live))
    return deletes + recreates + updates + creates


def random_mac() -> str:
    """A random locally administered unicast MAC (02:xx:...)."""
    octets = bytearray(os.urandom(6))
    octets[0] = (octets[0] & 0xFC) | 0x02
    return mac_text(bytes(octets))


def assign_macs(
    desired: Sequence[InterfaceConfig],
    known: Mapping[str, InterfaceConfig],
    generate: Callable[[], str] = random_mac,
) -> List[InterfaceConfig]:
    """Give every interface without a MAC the one it had before (``known``, by name) or a new random one.

    A restart then recreates the interface with the same address: the chosen MAC is part of the persisted state.
    """
    taken = {interface.mac for interface in desired if interface.mac}
    result = []
    for interface in desired:
        if interface.mac is None:
            previous = known.get(interface.name)
            mac = previous.mac if previous is not None and previous.mac and previous.mac not in taken else None
            while mac is None or mac in taken:
                mac = generate()
            taken.add(mac)
            interface = interface._replace(mac=mac)
        result.append(interface)
    return result


def by_name(interfaces: Sequence[InterfaceConfig]) -> Dict[str, InterfaceConfig]:
    return {interface.name: interface for interface in interfaces}
