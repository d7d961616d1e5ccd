# SPDX-License-Identifier: GPL-3.0-or-later
# Copyright: kernelnic.kni contributors
"""kni_dkms driven through AnsibleModule against a fake DKMS (2.x and 3.x output)."""

from __future__ import annotations

from pathlib import Path

import pytest
from ansible_collections.kernelnic.kni.plugins.modules import kni_dkms

from tests.unit.plugins.kni_fakes import OTHER_RELEASE, RELEASE, FakeSystem
from tests.unit.plugins.modules.kni_module_runner import run_module, use_fake_system


@pytest.fixture(params=[2, 3], ids=["dkms2", "dkms3"])
def system(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, request: pytest.FixtureRequest) -> FakeSystem:
    system = FakeSystem(tmp_path, dkms_major=request.param)
    system.write("/opt/kni/kmod/dkms.conf", 'PACKAGE_NAME="rte_kni"\nPACKAGE_VERSION="1.0"\n')
    system.kernel(OTHER_RELEASE, headers=True)
    use_fake_system(monkeypatch, system)
    return system


def test_check_apply_idempotent(system: FakeSystem, capsys: pytest.CaptureFixture) -> None:
    args = {"source": "/opt/kni/kmod", "kernels": [RELEASE]}
    check = run_module(kni_dkms.main, capsys, args, check_mode=True, diff=True)
    assert check["changed"] and system.dkms == {}
    assert check["diff"]["after"] == {"version": "1.0", RELEASE: "installed"}
    applied = run_module(kni_dkms.main, capsys, args)
    assert applied["changed"] and system.dkms == {"1.0": {RELEASE: "installed"}}
    assert applied["kernels"][0]["vermagic_ok"] is True
    assert applied["secure_boot"]["state"] == "unknown"
    again = run_module(kni_dkms.main, capsys, args, diff=True)
    assert again["changed"] is False and "diff" not in again
    everywhere = run_module(kni_dkms.main, capsys, {"version": "1.0"}, check_mode=True)
    assert everywhere["commands"] == [
        f"dkms build -m rte_kni -v 1.0 -k {OTHER_RELEASE}",
        f"dkms install -m rte_kni -v 1.0 -k {OTHER_RELEASE}",
    ]


def test_missing_headers(system: FakeSystem, capsys: pytest.CaptureFixture) -> None:
    result = run_module(kni_dkms.main, capsys, {"source": "/opt/kni/kmod", "kernels": ["6.1.0-99-amd64"]})
    assert result["failed"] and "linux-headers-6.1.0-99-amd64" in result["msg"]
    assert result["missing_headers"] == ["6.1.0-99-amd64"]


def test_secure_boot_warning(system: FakeSystem, capsys: pytest.CaptureFixture) -> None:
    system.sb_output = "SecureBoot enabled\n"
    system.write("/var/lib/dkms/mok.pub", "cert")
    result = run_module(kni_dkms.main, capsys, {"source": "/opt/kni/kmod"}, check_mode=True)
    assert result["secure_boot"]["state"] == "enabled" and result["secure_boot"]["key_enrolled"] is False
    assert any("is not enrolled" in str(warning) for warning in result["warnings"])


def test_absent(system: FakeSystem, capsys: pytest.CaptureFixture) -> None:
    system.dkms = {"1.0": {RELEASE: "installed"}}
    result = run_module(kni_dkms.main, capsys, {"state": "absent", "version": "1.0"})
    assert result["changed"] and result["commands"] == ["dkms remove -m rte_kni -v 1.0 --all"]
    assert run_module(kni_dkms.main, capsys, {"state": "absent"})["changed"] is False


@pytest.mark.parametrize("state", ["present", "absent"])
@pytest.mark.parametrize(
    ("args", "field", "value"),
    [
        ({"version": "1.0", "kernels": ["../../etc"]}, "kernels[0]", "../../etc"),
        ({"version": "1.0", "kernels": [RELEASE, "6.1 x"]}, "kernels[1]", "6.1 x"),
        ({"version": "1.0", "kernels": ["-k"]}, "kernels[0]", "-k"),
        ({"version": "../../x y", "kernels": [RELEASE]}, "version", "../../x y"),
        ({"version": "1.0/2"}, "version", "1.0/2"),
        ({"version": "."}, "version", "."),
    ],
)
def test_kernel_and_version_must_be_plain_names(
    system: FakeSystem, capsys: pytest.CaptureFixture, state: str, args: dict, field: str, value: str
) -> None:
    if state == "absent":
        system.dkms["1.0"] = {RELEASE: "installed"}
    before = dict(system.dkms)
    result = run_module(kni_dkms.main, capsys, {**args, "state": state, "source": "/opt/kni/kmod"})
    assert result["failed"] is True and result["field"] == field, result
    assert result["msg"].startswith(f"{field}: {value!r} is not a "), result["msg"]
    assert "linux-headers" not in result["msg"] and system.calls == [] and system.dkms == before


def test_version_from_dkms_conf_is_checked(system: FakeSystem, capsys: pytest.CaptureFixture) -> None:
    system.write("/opt/kni/kmod/dkms.conf", 'PACKAGE_NAME="rte_kni"\nPACKAGE_VERSION="../1"\n')
    result = run_module(kni_dkms.main, capsys, {"source": "/opt/kni/kmod", "kernels": [RELEASE]})
    assert result["failed"] is True and result["field"] == "PACKAGE_VERSION in /opt/kni/kmod/dkms.conf", result
    assert "'../1' is not a DKMS module version" in result["msg"]
    assert [call[1:2] for call in system.calls] == [["status"]]
