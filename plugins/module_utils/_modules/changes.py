# SPDX-License-Identifier: GPL-3.0-or-later
# Copyright: kernelnic.kni contributors
"""Desired-versus-current bookkeeping shared by the KNI modules (after community.docker's DifferenceTracker).

A planner records every compared item with ``add(name, before, after)``; the tracker then knows whether anything
changes, which items differ, and renders Ansible's ``diff`` (``{"before": ..., "after": ...}``) from the same data,
so ``changed`` and ``diff`` can never disagree.
"""

from __future__ import annotations

from typing import Any, Dict, List, NamedTuple, Optional


class Difference(NamedTuple):
    name: str
    before: Any
    after: Any


class DifferenceTracker:
    def __init__(self) -> None:
        self._items: Dict[str, Difference] = {}

    def add(self, name: str, before: Any, after: Any) -> None:
        self._items[name] = Difference(name, before, after)

    def differences(self) -> List[Difference]:
        return [item for item in self._items.values() if item.before != item.after]

    def has_differences(self) -> bool:
        return bool(self.differences())

    def has_difference_for(self, name: str) -> bool:
        item = self._items.get(name)
        return item is not None and item.before != item.after

    def before_after(self) -> Dict[str, Dict[str, Any]]:
        return {
            "before": {name: item.before for name, item in self._items.items()},
            "after": {name: item.after for name, item in self._items.items()},
        }


def file_diff(path: str, before: Optional[str], after: Optional[str]) -> Dict[str, str]:
    """One Ansible diff entry for a text file; a missing file shows as empty with a header saying so."""
    return {
        "before_header": path if before is not None else f"{path} (absent)",
        "after_header": path if after is not None else f"{path} (absent)",
        "before": before or "",
        "after": after or "",
    }
