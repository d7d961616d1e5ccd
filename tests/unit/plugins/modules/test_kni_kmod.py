# SPDX-License-Identifier: GPL-3.0-or-later
# Copyright: kernelnic.kni contributors
"""kni_kmod driven through AnsibleModule: argument spec, check mode, diff, idempotence, refusals."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from ansible_collections.kernelnic.kni.plugins.modules import kni_kmod

from tests.unit.plugins.kni_fakes import FakeSystem
from tests.unit.plugins.modules.kni_module_runner import run_module, use_fake_system


@pytest.fixture
def system(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> FakeSystem:
    system = FakeSystem(tmp_path)
    use_fake_system(monkeypatch, system)
    return system


def test_check_apply_idempotent(system: FakeSystem, capsys: pytest.CaptureFixture) -> None:
    args = {"params": {"carrier": "on", "kthread_mode": "multiple"}, "persistent": True}
    check = run_module(kni_kmod.main, capsys, args, check_mode=True, diff=True)
    assert check["changed"] is True and "failed" not in check
    assert not system.exists("/sys/module/rte_kni") and not system.exists("/etc/modprobe.d/rte_kni.conf")
    assert check["diff"][0]["before"]["loaded"] is False and check["diff"][0]["after"]["loaded"] is True
    applied = run_module(kni_kmod.main, capsys, args, diff=True)
    assert applied["changed"] is True and applied["params"]["kthread_mode"] == "multiple"
    assert system.param("kthread_mode") == "multiple"
    assert "kthread_mode=multiple carrier=on" in (system.read("/etc/modprobe.d/rte_kni.conf") or "")
    again = run_module(kni_kmod.main, capsys, args, diff=True)
    assert again["changed"] is False and again["diff"] == []
    assert run_module(kni_kmod.main, capsys, args, check_mode=True)["changed"] is False


def test_yaml_boolean_on_is_accepted(system: FakeSystem, capsys: pytest.CaptureFixture) -> None:
    result = run_module(kni_kmod.main, capsys, {"params": {"carrier": True}})
    assert result["params"]["carrier"] == "on"


def test_invalid_choice_fails(system: FakeSystem, capsys: pytest.CaptureFixture) -> None:
    result = run_module(kni_kmod.main, capsys, {"params": {"lo_mode": "fifo"}})
    assert result["failed"] and "lo_mode" in result["msg"] and "lo_mode_fifo_skb" in result["msg"]
    assert system.calls == []


def test_min_not_below_max_fails_before_anything(system: FakeSystem, capsys: pytest.CaptureFixture) -> None:
    args = {"params": {"min_scheduling_interval": 300}, "persistent": True}
    result = run_module(kni_kmod.main, capsys, args)
    assert result["failed"]
    assert "min_scheduling_interval (300) must be below max_scheduling_interval (200)" in result["msg"]
    assert not system.exists("/etc/modprobe.d/rte_kni.conf") and system.calls == []


def test_reload_refusal_lists_differences(system: FakeSystem, capsys: pytest.CaptureFixture) -> None:
    system.load([])
    result = run_module(kni_kmod.main, capsys, {"params": {"carrier": "on", "lo_mode": "lo_mode_fifo"}})
    assert result["failed"]
    assert "lo_mode: lo_mode_none -> lo_mode_fifo, carrier: off -> on" in result["msg"]
    assert system.param("carrier") == "(null)"


def test_live_interval_apply_with_interfaces(system: FakeSystem, capsys: pytest.CaptureFixture) -> None:
    system.load([], refcnt=1)
    system.add_interface("vEth0_0")
    args = {"params": {"min_scheduling_interval": 300, "max_scheduling_interval": 400, "idle_scheduling_interval": 9}}
    result = run_module(kni_kmod.main, capsys, args, diff=True)
    assert result["changed"] and result["interfaces"] == ["vEth0_0"]
    assert result["actions"] == [
        "set max_scheduling_interval=400",
        "set min_scheduling_interval=300",
        "set idle_scheduling_interval=9",
    ]
    assert result["diff"][0]["before"]["params"]["max_scheduling_interval"] == 200
    assert result["diff"][0]["after"]["params"]["max_scheduling_interval"] == 400
    assert system.param("min_scheduling_interval") == "300"
    assert run_module(kni_kmod.main, capsys, args)["changed"] is False


def test_unmanaged_idle_interval_is_left_alone(system: FakeSystem, capsys: pytest.CaptureFixture) -> None:
    system.load(["idle_scheduling_interval=777"])
    assert run_module(kni_kmod.main, capsys, {})["changed"] is False


def test_reload_when_allowed(system: FakeSystem, capsys: pytest.CaptureFixture) -> None:
    system.load([])
    result = run_module(kni_kmod.main, capsys, {"params": {"lo_mode": "lo_mode_fifo_skb"}, "reload": True})
    assert result["changed"] and result["actions"][:2] == [
        "unload rte_kni",
        "load rte_kni " + result["actions"][1][13:],
    ]
    assert system.param("lo_mode") == "lo_mode_fifo_skb"


def test_absent_refused_with_interfaces(system: FakeSystem, capsys: pytest.CaptureFixture) -> None:
    system.load([], refcnt=1)
    system.add_interface("vEth0_0")
    result = run_module(kni_kmod.main, capsys, {"state": "absent"})
    assert result["failed"] and "vEth0_0" in result["msg"] and result["interfaces"] == ["vEth0_0"]


def test_absent_persistent_removes_files(system: FakeSystem, capsys: pytest.CaptureFixture) -> None:
    run_module(kni_kmod.main, capsys, {"persistent": True})
    check = run_module(kni_kmod.main, capsys, {"state": "absent", "persistent": True}, check_mode=True, diff=True)
    assert check["changed"] and system.exists("/etc/modules-load.d/rte_kni.conf")
    assert check["diff"][2]["after_header"].endswith("(absent)")
    result = run_module(kni_kmod.main, capsys, {"state": "absent", "persistent": True})
    assert result["changed"] and not system.exists("/etc/modules-load.d/rte_kni.conf")
    assert not system.exists("/sys/module/rte_kni")
    assert run_module(kni_kmod.main, capsys, {"state": "absent", "persistent": True})["changed"] is False


@pytest.mark.parametrize(("params", "kind"), [([1, 2], "a list"), (5, "a number"), (True, "a boolean")])
def test_params_that_are_not_a_dictionary_fail_cleanly(
    system: FakeSystem, capsys: pytest.CaptureFixture, params: object, kind: str
) -> None:
    result = run_module(kni_kmod.main, capsys, {"params": params, "persistent": True})
    assert result["failed"] is True
    assert (
        result["msg"] == f"params must be a dictionary of rte_kni parameters, for example {{carrier: 'on'}}, not {kind}"
    )
    assert system.calls == [] and not system.exists("/etc/modprobe.d/rte_kni.conf")


def test_params_null_means_the_defaults(system: FakeSystem, capsys: pytest.CaptureFixture) -> None:
    result = run_module(kni_kmod.main, capsys, {"params": None})
    assert "failed" not in result, result
    assert result["params"]["carrier"] == "off" and result["params"]["min_scheduling_interval"] == 100
    assert system.param("carrier") == "off"


def test_unquoted_on_and_off_are_documented_and_accepted(system: FakeSystem, capsys: pytest.CaptureFixture) -> None:
    documented = yaml.safe_load(kni_kmod.DOCUMENTATION)["options"]["params"]
    assert "unquoted" in " ".join(documented["description"])
    on_off = [name for name, option in documented["suboptions"].items() if option.get("choices") == ["off", "on"]]
    assert "carrier" in on_off
    result = run_module(kni_kmod.main, capsys, {"params": {name: True for name in on_off}})
    assert "failed" not in result, result
    assert all(result["params"][name] == "on" for name in on_off)
    system.unload()
    result = run_module(kni_kmod.main, capsys, {"params": {name: False for name in on_off}})
    assert all(result["params"][name] == "off" for name in on_off)
