# SPDX-License-Identifier: GPL-3.0-or-later
# Copyright: kernelnic.kni contributors
"""The kni role's static facts: the module_utils it installs for kni-pump are exactly what the pump imports, the
sizes behind its hugepage computation match the pump's, argument_specs documents every default, and the service
unit it renders keeps systemd's exposure score at 3.0 or lower."""

from __future__ import annotations

import ast
import re
import subprocess
from pathlib import Path
from typing import Any, Dict, Set

import pytest
import yaml
from ansible_collections.kernelnic.kni.plugins.module_utils import _abi, _mbuf, _pump_daemon

from tests.guest.ansible_runner import run_play

ROLE = Path(__file__).resolve().parents[2] / "roles" / "kni"
MODULE_UTILS = ROLE.parents[1] / "plugins" / "module_utils"
PREFIX = "ansible_collections.kernelnic.kni.plugins.module_utils."


def _yaml(path: Path) -> Dict[str, Any]:
    return yaml.safe_load(path.read_text(encoding="utf-8"))


def _imports(name: str) -> Set[str]:
    """The module_utils a module imports anywhere (function-level imports included)."""
    tree = ast.parse((MODULE_UTILS / f"{name}.py").read_text(encoding="utf-8"))
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith(PREFIX):
            found.add(node.module[len(PREFIX) :])
    return found


def test_pump_library_is_the_closure_of_the_pump_imports() -> None:
    wanted = {"_pump_cli"}
    pending = ["_pump_cli"]
    while pending:
        for imported in _imports(pending.pop()):
            if imported not in wanted:
                wanted.add(imported)
                pending.append(imported)
    installed = _yaml(ROLE / "vars" / "main.yml")["kni_pump_library_modules"]
    assert sorted(installed) == sorted(wanted)


def test_hugepage_sizes_match_the_pump() -> None:
    role_vars = _yaml(ROLE / "vars" / "main.yml")
    object_size = -(-(_abi.MBUF_SIZE + _mbuf.DEFAULT_DATA_ROOM) // _abi.CACHE_LINE_SIZE) * _abi.CACHE_LINE_SIZE
    assert role_vars["kni_pump_mbuf_bytes"] == object_size
    assert role_vars["kni_pump_fifo_zone_bytes"] == _abi.FIFO_AREA_SIZE + 64


def test_pool_size_default_is_the_pumps() -> None:
    assert _yaml(ROLE / "defaults" / "main.yml")["kni_pump_pool_size"] == _pump_daemon.DEFAULT_POOL_SIZE


def test_argument_specs_cover_the_defaults() -> None:
    defaults = _yaml(ROLE / "defaults" / "main.yml")
    options = _yaml(ROLE / "meta" / "argument_specs.yml")["argument_specs"]["main"]["options"]
    assert sorted(options) == sorted(defaults)
    for name, spec in options.items():
        assert name.startswith("kni_"), name
        assert spec.get("description"), name
        value = defaults[name]
        if "default" in spec:
            assert spec["default"] == value, name
        else:  # computed from facts or the collection's files at run time
            assert "{{" in str(value), name


def _render_service(directory: Path, extra_vars: Dict[str, Any]) -> Path:
    """kni-pump.service as the role templates it, from its defaults and vars, by ansible-playbook itself."""
    unit = directory / "kni-pump.service"
    play = {
        "hosts": "localhost",
        "gather_facts": False,
        "vars_files": [str(ROLE / "defaults" / "main.yml"), str(ROLE / "vars" / "main.yml")],
        "tasks": [
            {
                "name": "Render the unit",
                "ansible.builtin.template": {
                    "src": str(ROLE / "templates" / "kni-pump.service.j2"),
                    "dest": str(unit),
                    "mode": "0644",
                },
            }
        ],
    }
    run_play(play, "render-service", extra_vars)
    return unit


@pytest.mark.parametrize("extra_vars", [{}, {"kni_pump_socket_group": "netdev"}], ids=["defaults", "socket_group"])
def test_service_exposure_is_at_most_3(tmp_path: Path, extra_vars: Dict[str, Any]) -> None:
    unit = _render_service(tmp_path, extra_vars)
    # --threshold is in tenths: the command fails above an exposure of 3.0.
    command = ["systemd-analyze", "security", "--offline=yes", "--no-pager", "--threshold=30", str(unit)]
    analysed = subprocess.run(command, capture_output=True, text=True, timeout=120, check=False)
    score = re.search(r"Overall exposure level for kni-pump\.service: (\d+\.\d+)", analysed.stdout)
    assert score, analysed.stdout + analysed.stderr
    assert float(score.group(1)) <= 3.0, analysed.stdout
    assert analysed.returncode == 0, analysed.stdout + analysed.stderr
