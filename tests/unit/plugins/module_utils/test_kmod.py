# SPDX-License-Identifier: GPL-3.0-or-later
# Copyright: kernelnic.kni contributors
"""kni_kmod logic on a fake root: reading sysfs, planning (reload refusal, live writes, files), applying."""

from __future__ import annotations

from pathlib import Path

import pytest
from ansible_collections.kernelnic.kni.plugins.module_utils._modules.kmod import (
    KmodFailure,
    KmodRequest,
    execute,
    interval_writes,
    plan,
    read_files,
    read_module,
)
from ansible_collections.kernelnic.kni.plugins.module_utils._modules.kmod_params import validate

from tests.unit.plugins.kni_fakes import FakeHost, FakeSystem


@pytest.fixture
def system(tmp_path: Path) -> FakeSystem:
    return FakeSystem(tmp_path)


def run(system: FakeSystem, check_mode: bool = False, **args: object) -> dict:
    return execute(FakeHost(system), args, check_mode, True, system.driver_of)


def request(**params: object) -> KmodRequest:
    return KmodRequest("present", validate(params))


def test_read_module_not_loaded(system: FakeSystem) -> None:
    assert read_module(system.paths).loaded is False


def test_read_module_normalises_and_finds_writable(system: FakeSystem) -> None:
    system.load(["carrier=on"], refcnt=1)
    loaded = read_module(system.paths)
    assert loaded.loaded and loaded.refcnt == 1
    assert loaded.params["carrier"] == "on"
    assert loaded.params["lo_mode"] == "lo_mode_none"
    assert loaded.params["min_scheduling_interval"] == 100
    assert "min_scheduling_interval" in loaded.writable
    assert "strict" not in loaded.writable


def test_plan_load_when_absent(system: FakeSystem) -> None:
    result = plan(system.paths, request(carrier="on"), read_module(system.paths), {}, [])
    assert [action.kind for action in result.actions] == ["load"]
    assert "carrier=on" in result.actions[0].value
    assert result.runtime.before_after()["before"]["loaded"] is False


def test_plan_nothing_when_equal(system: FakeSystem) -> None:
    system.load(["carrier=on"])
    result = plan(system.paths, request(carrier="on"), read_module(system.paths), {}, [])
    assert result.actions == [] and result.refusal is None and not result.runtime.has_differences()


def test_plan_refuses_reload_and_lists_differences(system: FakeSystem) -> None:
    system.load([])
    result = plan(system.paths, request(carrier="on", lo_mode="lo_mode_fifo"), read_module(system.paths), {}, [])
    assert result.actions == []
    assert result.refusal is not None
    assert "lo_mode: lo_mode_none -> lo_mode_fifo" in result.refusal
    assert "carrier: off -> on" in result.refusal
    assert "reload=true" in result.refusal


def test_plan_reload_allowed(system: FakeSystem) -> None:
    system.load([])
    wanted = KmodRequest("present", validate({"kthread_mode": "multiple"}), reload=True)
    result = plan(system.paths, wanted, read_module(system.paths), {}, [])
    assert [action.kind for action in result.actions] == ["unload", "load"]


def test_plan_reload_refused_with_interfaces(system: FakeSystem) -> None:
    system.load([], refcnt=1)
    wanted = KmodRequest("present", validate({"kthread_mode": "multiple"}), reload=True)
    result = plan(system.paths, wanted, read_module(system.paths), {}, ["vEth0"])
    assert result.actions == []
    assert result.refusal is not None
    assert "vEth0" in result.refusal and "refcnt 1" in result.refusal


def test_plan_live_interval_writes(system: FakeSystem) -> None:
    system.load([])
    result = plan(
        system.paths,
        request(min_scheduling_interval=10, max_scheduling_interval=20),
        read_module(system.paths),
        {},
        ["vEth0"],  # live writes do not disturb interfaces
    )
    assert [(a.kind, a.target, a.value) for a in result.actions] == [
        ("set_parameter", "min_scheduling_interval", "10"),
        ("set_parameter", "max_scheduling_interval", "20"),
    ]


def test_interval_write_order_keeps_min_below_max() -> None:
    current = {"min_scheduling_interval": 100, "max_scheduling_interval": 200}
    both = ["min_scheduling_interval", "max_scheduling_interval"]
    raised = interval_writes(current, {"min_scheduling_interval": 300, "max_scheduling_interval": 400}, both)
    assert [a.target for a in raised] == ["max_scheduling_interval", "min_scheduling_interval"]
    lowered = interval_writes(current, {"min_scheduling_interval": 10, "max_scheduling_interval": 50}, both)
    assert [a.target for a in lowered] == ["min_scheduling_interval", "max_scheduling_interval"]


def test_interval_not_writable_needs_reload(system: FakeSystem) -> None:
    system.load([])
    (system.root / "sys/module/rte_kni/parameters/min_scheduling_interval").chmod(0o444)
    result = plan(system.paths, request(min_scheduling_interval=10), read_module(system.paths), {}, [])
    assert result.refusal is not None and "min_scheduling_interval: 100 -> 10" in result.refusal


def test_plan_persistent_files(system: FakeSystem) -> None:
    wanted = KmodRequest("present", validate({"carrier": "on"}), persistent=True)
    result = plan(system.paths, wanted, read_module(system.paths), read_files(system.paths), [])
    assert [action.kind for action in result.actions] == ["write_file", "write_file", "load"]
    diffs = result.diff()
    assert diffs[1]["before_header"].endswith("rte_kni.conf (absent)")
    assert "options rte_kni carrier=on" in diffs[1]["after"]


def test_plan_unload_refused_while_in_use(system: FakeSystem) -> None:
    system.load([], refcnt=1)
    result = plan(system.paths, KmodRequest("absent", validate({})), read_module(system.paths), {}, [])
    assert result.refusal is not None and "refusing to unload" in result.refusal


def test_execute_load_then_idempotent(system: FakeSystem) -> None:
    first = run(system, params={"carrier": "on"}, persistent=True)
    assert first["changed"] and first["loaded"]
    assert first["params"]["carrier"] == "on"
    assert system.param("carrier") == "on"
    assert system.read("/etc/modprobe.d/rte_kni.conf").splitlines()[1] == "options rte_kni carrier=on"
    assert system.read("/etc/modules-load.d/rte_kni.conf").splitlines()[1] == "rte_kni"
    second = run(system, params={"carrier": "on"}, persistent=True)
    assert second["changed"] is False and second["actions"] == []
    assert second["diff"] == []


def test_execute_check_mode_changes_nothing(system: FakeSystem) -> None:
    result = run(system, check_mode=True, params={"carrier": "on"}, persistent=True)
    assert result["changed"] and result["loaded"] and result["params"]["carrier"] == "on"
    assert not system.exists("/sys/module/rte_kni")
    assert not system.exists("/etc/modprobe.d/rte_kni.conf")
    assert [call[0] for call in system.calls] == ["/usr/sbin/modinfo"]  # only the installed check


def test_execute_live_apply_writes_sysfs(system: FakeSystem) -> None:
    system.load([])
    result = run(system, params={"min_scheduling_interval": 10, "max_scheduling_interval": 20})
    assert result["changed"]
    assert result["actions"] == ["set min_scheduling_interval=10", "set max_scheduling_interval=20"]
    assert system.param("min_scheduling_interval") == "10"
    assert not any("modprobe" in call[0] for call in system.calls)


def test_execute_reload(system: FakeSystem) -> None:
    system.load([])
    result = run(system, params={"lo_mode": "lo_mode_fifo"}, reload=True)
    assert result["actions"][0] == "unload rte_kni"
    assert system.param("lo_mode") == "lo_mode_fifo"


def test_execute_refusal_is_a_failure_before_changes(system: FakeSystem) -> None:
    system.load([])
    with pytest.raises(KmodFailure, match="lo_mode: lo_mode_none -> lo_mode_fifo"):
        run(system, params={"lo_mode": "lo_mode_fifo"}, persistent=True)
    assert not system.exists("/etc/modprobe.d/rte_kni.conf")


def test_execute_invalid_params_fail_first(system: FakeSystem) -> None:
    with pytest.raises(KmodFailure) as info:
        run(system, params={"min_scheduling_interval": 500})
    assert "must be below max_scheduling_interval" in str(info.value)
    assert info.value.result["errors"]
    assert system.calls == []


def test_execute_not_installed(system: FakeSystem) -> None:
    system.installed_for.clear()
    with pytest.raises(KmodFailure, match=r"not installed for the running kernel 6\.1\.0-56-amd64"):
        run(system, persistent=True)
    assert not system.exists("/etc/modules-load.d/rte_kni.conf")


def test_execute_absent(system: FakeSystem) -> None:
    run(system, persistent=True)
    result = run(system, state="absent", persistent=True)
    assert result["changed"] and result["loaded"] is False
    assert not system.exists("/sys/module/rte_kni")
    assert not system.exists("/etc/modprobe.d/rte_kni.conf")
    assert run(system, state="absent", persistent=True)["changed"] is False


def test_execute_absent_refused_with_kni_interfaces(system: FakeSystem) -> None:
    system.load([])
    system.add_interface("vEth0_0")
    system.add_interface("eth0", driver="virtio_net")
    with pytest.raises(KmodFailure, match=r"KNI interfaces exist \(vEth0_0\)") as info:
        run(system, state="absent")
    assert info.value.result["interfaces"] == ["vEth0_0"]
    assert system.exists("/sys/module/rte_kni/initstate")


def test_execute_detects_conflicting_modprobe_options(system: FakeSystem) -> None:
    original = system._run_modprobe

    def sneaky(args: list) -> tuple:
        rc, out, err = original(args)
        system.write("/sys/module/rte_kni/parameters/enable_bifurcated", "on\n")
        return rc, out, err

    system._run_modprobe = sneaky  # type: ignore[method-assign]
    with pytest.raises(KmodFailure, match="enable_bifurcated: on -> off"):
        run(system)
