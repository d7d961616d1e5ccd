# SPDX-License-Identifier: GPL-3.0-or-later
# Copyright: kernelnic.kni contributors
"""The layers of plugins/module_utils, read from the imports (ast), as docs/architecture.md draws them.

``_kni`` (the KNI library) imports nothing of the collection but itself; ``_pump`` (kni-pump) imports the library
and itself; ``_modules`` (the Ansible modules' logic) may use the pump's schema and control client. The pump's
kernel adapter never reaches the daemon, and the modules import their logic, not the other way round.
"""

from __future__ import annotations

import ast
from pathlib import Path
from typing import Dict, Set

import pytest

ROOT = Path(__file__).resolve().parents[2]
MODULE_UTILS = ROOT / "plugins" / "module_utils"
PREFIX = "ansible_collections.kernelnic.kni.plugins.module_utils."
PACKAGES = ("_kni", "_pump", "_modules")
# What each package may import from the collection's module_utils.
ALLOWED = {"_kni": {"_kni"}, "_pump": {"_kni", "_pump"}, "_modules": {"_kni", "_pump", "_modules"}}


def _name(path: Path) -> str:
    return ".".join(path.relative_to(MODULE_UTILS).with_suffix("").parts)


def _imports(path: Path) -> Set[str]:
    """The module_utils modules (dotted below module_utils) a file imports anywhere, function-level included."""
    found: Set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.module and (node.module + ".").startswith(PREFIX):
            module = node.module[len(PREFIX) :]
            if module in PACKAGES:  # from ...module_utils._kni import abi
                found.update(f"{module}.{alias.name}" for alias in node.names)
            else:
                found.add(module)
        elif isinstance(node, ast.Import):
            found.update(alias.name[len(PREFIX) :] for alias in node.names if alias.name.startswith(PREFIX))
    return found


def _graph() -> Dict[str, Set[str]]:
    return {_name(path): _imports(path) for path in sorted(MODULE_UTILS.rglob("*.py"))}


def _closure(graph: Dict[str, Set[str]], start: str) -> Set[str]:
    seen: Set[str] = set()
    pending = [start]
    while pending:
        for imported in graph[pending.pop()]:
            if imported not in seen:
                seen.add(imported)
                pending.append(imported)
    return seen


def test_every_module_is_in_a_package() -> None:
    for path in MODULE_UTILS.rglob("*.py"):
        assert path.relative_to(MODULE_UTILS).parts[0] in PACKAGES, path
    for package in PACKAGES:
        assert (MODULE_UTILS / package / "__init__.py").read_text(encoding="utf-8") == "", package


@pytest.mark.parametrize("package", PACKAGES)
def test_layers(package: str) -> None:
    """No import from the library into the pump or the module logic, none from the pump into the module logic."""
    for module, imported in _graph().items():
        if module.split(".")[0] == package:
            for target in imported:
                assert target.split(".")[0] in ALLOWED[package], f"{module} imports {target}"


def test_imports_resolve() -> None:
    graph = _graph()
    for module, imported in graph.items():
        for target in imported:
            assert target in graph, f"{module} imports {target}, which is not a module"


def test_kernel_adapter_does_not_reach_the_daemon() -> None:
    reached = _closure(_graph(), "_pump.kernel_adapter")
    assert not {name for name in reached if name.startswith("_pump.daemon")}, sorted(reached)


def test_no_import_cycles() -> None:
    graph = _graph()
    for module in graph:
        assert module not in _closure(graph, module), module


def test_modules_import_only_their_logic() -> None:
    """plugins/modules/*.py import the module logic (and whatever it needs), never the pump's daemon."""
    for path in sorted((ROOT / "plugins" / "modules").glob("*.py")):
        for target in _imports(path):
            assert target.startswith("_modules."), f"{path.name} imports {target}"


def test_architecture_page_names_every_module() -> None:
    page = (ROOT / "docs" / "architecture.md").read_text(encoding="utf-8")
    for module in _graph():
        if not module.endswith("__init__"):
            assert module.replace(".", "/") + ".py" in page, module
