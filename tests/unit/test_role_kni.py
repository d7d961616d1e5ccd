# SPDX-License-Identifier: GPL-3.0-or-later
# Copyright: kernelnic.kni contributors
"""The kni role's static facts: the module_utils packages it installs for kni-pump hold what the pump imports, the
sizes behind its hugepage computation match the pump's, argument_specs documents every default as the modules do,
and the service unit it renders keeps systemd's exposure score at 3.0 or lower. And the role itself, in check mode
against this host: bad variables fail its first task, and a fresh host is predicted without facts gathered."""

from __future__ import annotations

import ast
import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any, Dict, List, Set, Tuple

import pytest
import yaml
from ansible_collections.kernelnic.kni.plugins.module_utils._kni import abi
from ansible_collections.kernelnic.kni.plugins.module_utils._modules import role_validate
from ansible_collections.kernelnic.kni.plugins.module_utils._pump import sizing
from ansible_collections.kernelnic.kni.plugins.modules import kni_interface, kni_kmod

from tests.ansible_play import ansible_env, run_play

ROLE = Path(__file__).resolve().parents[2] / "roles" / "kni"
MODULE_UTILS = ROLE.parents[1] / "plugins" / "module_utils"
PREFIX = "ansible_collections.kernelnic.kni.plugins.module_utils."


def _yaml(path: Path) -> Dict[str, Any]:
    return yaml.safe_load(path.read_text(encoding="utf-8"))


def _imports(name: str) -> Set[str]:
    """The module_utils a module (dotted below module_utils) imports anywhere (function-level imports included)."""
    tree = ast.parse((MODULE_UTILS / f"{name.replace('.', '/')}.py").read_text(encoding="utf-8"))
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith(PREFIX):
            found.add(node.module[len(PREFIX) :])
    return found


def test_pump_library_packages_hold_the_closure_of_the_pump_imports() -> None:
    wanted = {"_pump.cli"}
    pending = ["_pump.cli"]
    while pending:
        for imported in _imports(pending.pop()):
            if imported not in wanted:
                wanted.add(imported)
                pending.append(imported)
    packages = _yaml(ROLE / "vars" / "main.yml")["kni_pump_library_packages"]
    # The role copies these folders whole: every module the pump imports is in one, and each is needed.
    assert sorted(packages) == sorted({name.split(".")[0] for name in wanted})
    for name in wanted:
        assert (MODULE_UTILS / f"{name.replace('.', '/')}.py").is_file(), name
    for package in packages:
        assert (MODULE_UTILS / package / "__init__.py").read_text(encoding="utf-8") == ""


def test_hugepage_sizes_match_the_pump() -> None:
    role_vars = _yaml(ROLE / "vars" / "main.yml")
    object_size = -(-(abi.MBUF_SIZE + abi.DEFAULT_DATA_ROOM) // abi.CACHE_LINE_SIZE) * abi.CACHE_LINE_SIZE
    assert role_vars["kni_pump_mbuf_bytes"] == object_size == sizing.MBUF_OBJECT_SIZE
    assert role_vars["kni_pump_fifo_zone_bytes"] == abi.FIFO_AREA_SIZE + 64


def test_pool_size_default_is_the_pumps() -> None:
    assert _yaml(ROLE / "defaults" / "main.yml")["kni_pump_pool_size"] == sizing.DEFAULT_POOL_SIZE


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


def _suboptions(module: Any, option: str) -> Dict[str, Any]:
    return yaml.safe_load(module.DOCUMENTATION)["options"][option]["suboptions"]


@pytest.mark.parametrize(
    ("variable", "module", "option"),
    [("kni_interfaces", kni_interface, "interfaces"), ("kni_module_params", kni_kmod, "params")],
)
def test_argument_specs_document_suboptions_as_the_module(variable: str, module: Any, option: str) -> None:
    role = _yaml(ROLE / "meta" / "argument_specs.yml")["argument_specs"]["main"]["options"][variable]["options"]
    documented = _suboptions(module, option)
    assert sorted(role) == sorted(documented)
    for name, spec in documented.items():
        for key in ("type", "elements", "choices", "default", "required"):
            assert role[name].get(key) == spec.get(key), f"{variable}[].{name}: {key}"


def test_defaults_need_no_facts() -> None:
    """Argument validation templates the defaults before the role's first task could gather any facts."""
    text = (ROLE / "defaults" / "main.yml").read_text(encoding="utf-8")
    assert "ansible_facts" not in text and "ansible_kernel" not in text


def test_validation_task_checks_every_variable() -> None:
    options = _yaml(ROLE / "meta" / "argument_specs.yml")["argument_specs"]["main"]["options"]
    tasks = yaml.safe_load((ROLE / "tasks" / "main.yml").read_text(encoding="utf-8"))
    validate = [task for task in tasks if "kernelnic.kni.kni_validate" in task]
    assert len(validate) == 1
    passed = validate[0]["kernelnic.kni.kni_validate"]["variables"]
    assert sorted(passed) == sorted(options) == sorted(role_validate.CHECKS)
    for name, value in passed.items():
        assert value == "{{ " + name + " }}", name
    # Only reading comes before it, and it runs whatever --tags select.
    before = tasks[: tasks.index(validate[0])]
    assert [next(iter(set(task) - {"name", "when", "tags"})) for task in before] == ["ansible.builtin.setup"]
    assert all("always" in task.get("tags", []) for task in [*before, validate[0]])


_TASK_HEADER = re.compile(r"^(?:TASK|RUNNING HANDLER) \[(?:kernelnic\.kni\.kni : )?(?P<name>.*?)\] \**$")
_TASK_STATUS = re.compile(r"^(?P<status>ok|changed|skipping|fatal|failed): \[localhost\]")


def _run_role(tmp_path: Path, variables: Dict[str, Any]) -> Tuple[int, str, List[Tuple[str, Set[str]]]]:
    """The kni role in check mode against this host, without gathered facts: (rc, output, tasks in order, each
    with the statuses its host lines reported)."""
    play = {"hosts": "localhost", "gather_facts": False, "roles": [{"role": "kernelnic.kni.kni"}]}
    playbook = tmp_path / "play.yml"
    playbook.write_text(json.dumps([play]), encoding="utf-8")
    env = ansible_env(str(tmp_path))
    extra = json.dumps(dict(variables, ansible_python_interpreter=sys.executable))
    argv = [str(Path(sys.executable).parent / "ansible-playbook"), "-c", "local", "-i", "localhost,", "--check"]
    done = subprocess.run(
        [*argv, "-e", extra, str(playbook)], env=env, capture_output=True, text=True, timeout=600, check=False
    )
    output = done.stdout + done.stderr
    tasks: List[Tuple[str, Set[str]]] = []
    for line in output.splitlines():
        header = _TASK_HEADER.match(line)
        if header:
            tasks.append((header.group("name"), set()))
            continue
        status = _TASK_STATUS.match(line)
        if status and tasks:
            tasks[-1][1].add(status.group("status"))
    return done.returncode, output, tasks


def test_bad_variables_fail_the_first_task_that_checks_values(tmp_path: Path) -> None:
    variables = {
        "kni_hugepages": -5,
        "kni_module_params": {"min_scheduling_interval": 300, "max_scheduling_interval": 200},
        "kni_interfaces": [{"name": "kni0", "backend": "null"}, {"name": "kni1", "backend": "null", "mac": "zz"}],
    }
    rc, output, tasks = _run_role(tmp_path, variables)
    assert rc != 0, output
    failed = [name for name, statuses in tasks if statuses & {"fatal", "failed"}]
    assert failed == ["Check the role variables"], output
    assert [name for name, _statuses in tasks][-1] == "Check the role variables", output
    assert not any("changed" in statuses for _name, statuses in tasks), output
    message = re.search(r'"msg": "(invalid kni role variables: [^"]*)"', output)
    assert message, output
    for named in ("kni_hugepages: -5", "kni_interfaces[1].mac: 'zz'", "kni_module_params: min_scheduling_interval"):
        assert named in message.group(1), message.group(1)


def test_check_mode_predicts_a_fresh_host(tmp_path: Path) -> None:
    """Nothing of the role is on this host: no sources, no rte_kni for its kernel, no kni-pump unit or socket."""
    fresh = tmp_path / "host"
    variables = {
        "kni_packages": ["dkms"],  # installed here; apt is not asked
        "kni_kernel_headers": False,
        "kni_kmod_dest_dir": str(fresh / "src" / "rte_kni-1.0"),
        "kni_pump_lib_dir": str(fresh / "lib"),
        "kni_pump_launcher": str(fresh / "bin" / "kni-pump"),
        "kni_pump_service_name": "kni-pump-check-mode-test",
        "kni_interfaces": [
            {"name": "kni0", "backend": "null", "mac": "02:00:00:00:00:01"},
            {"name": "kni1", "state": "absent"},
        ],
    }
    rc, output, tasks = _run_role(tmp_path, variables)
    assert rc == 0, output
    recap = re.search(r"localhost\s*:\s*ok=\d+\s+changed=\d+\s+unreachable=0\s+failed=0", output)
    assert recap, output
    statuses = dict(tasks)
    assert statuses["Gather the facts the role needs"] == {"ok"}
    assert statuses["Build and install rte_kni with DKMS"] == {"skipping"}
    for predicted in (
        "Predict the DKMS build of rte_kni",
        "Predict loading rte_kni",
        "Predict byte-compiling the kni-pump library",
        "Predict starting kni-pump",
        "Predict declaring the KNI interfaces",
    ):
        assert statuses[predicted] == {"changed"}, predicted
    assert "it would create kni0" in output
    assert not fresh.exists()


def _render_app_pieces(directory: Path, extra_vars: Dict[str, Any]) -> Dict[str, str]:
    """The drop-in, rte_kni-loaded.service and kni-adopt as the role templates them for kni_app_unit."""
    templates = ("kni-app-dropin.conf.j2", "rte_kni-loaded.service.j2", "kni-adopt.sh.j2")
    play = {
        "hosts": "localhost",
        "gather_facts": False,
        "vars_files": [str(ROLE / "defaults" / "main.yml"), str(ROLE / "vars" / "main.yml")],
        "tasks": [
            {
                "name": f"Render {name}",
                "ansible.builtin.template": {
                    "src": str(ROLE / "templates" / name),
                    "dest": str(directory / name[:-3]),
                    "mode": "0644",
                },
            }
            for name in templates
        ],
    }
    run_play(play, "render-app", extra_vars)
    return {name[:-3]: (directory / name[:-3]).read_text(encoding="utf-8") for name in templates}


def test_app_unit_pieces(tmp_path: Path) -> None:
    variables = {
        "kni_app_unit": "my-dpdk-app.service",
        "kni_pump_enabled": False,
        "kni_interfaces": [
            {"name": "kni0", "adopt": True, "admin_state": "up", "addresses": ["192.0.2.1/24"], "promisc": True},
            {"name": "kni1", "adopt": True, "allmulticast": False},
            {"name": "kni2", "backend": "null"},
        ],
        "kni_adopted_mtu": {"kni0": 1400},
    }
    rendered = _render_app_pieces(tmp_path, variables)
    dropin = rendered["kni-app-dropin.conf"]
    assert "Requires=rte_kni-loaded.service\nAfter=rte_kni-loaded.service\n" in dropin
    assert "After=kni-pump.service" not in dropin
    assert "ExecStartPost=/usr/local/sbin/kni-adopt\n" in dropin
    assert "ExecStart=/sbin/modprobe rte_kni\n" in rendered["rte_kni-loaded.service"]
    script = rendered["kni-adopt.sh"]
    syntax = subprocess.run(["sh", "-n", str(tmp_path / "kni-adopt.sh")], capture_output=True, text=True, check=False)
    assert syntax.returncode == 0, syntax.stderr
    commands = [line for line in script.splitlines() if line.startswith(("wait_for ", "ip "))]
    assert commands == [
        "wait_for kni0",
        "ip link set dev kni0 mtu 1400",
        "ip link set dev kni0 promisc on",
        "ip address flush dev kni0 scope global",
        "ip address add 192.0.2.1/24 dev kni0",
        "ip link set dev kni0 up",
        "wait_for kni1",
        "ip link set dev kni1 allmulticast off",
    ]
    beside = _render_app_pieces(tmp_path, dict(variables, kni_pump_enabled=True, kni_interfaces=[]))
    assert "After=kni-pump.service" in beside["kni-app-dropin.conf"]
