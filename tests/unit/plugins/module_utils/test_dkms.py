# SPDX-License-Identifier: GPL-3.0-or-later
# Copyright: kernelnic.kni contributors
"""kni_dkms logic: status parsing (DKMS 2.x and 3.x), kernels and headers, Secure Boot, plan, execute."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from ansible_collections.kernelnic.kni.plugins.module_utils._modules.dkms import (
    DkmsFailure,
    DkmsRequest,
    StatusEntry,
    execute,
    kernel_states,
    parse_status,
    plan,
)
from ansible_collections.kernelnic.kni.plugins.module_utils._modules.dkms_checks import (
    parse_sb_state,
    secure_boot,
    signing_files,
)
from ansible_collections.kernelnic.kni.plugins.module_utils._modules.kernels import target_kernels

from tests.unit.plugins.kni_fakes import OTHER_RELEASE, RELEASE, FakeHost, FakeSystem

DKMS2 = """\
rte_kni, 1.0, 6.1.0-56-amd64, x86_64: installed
rte_kni, 1.0, 6.12.95+deb12-amd64, x86_64: built
rte_kni, 0.9: added
"""
DKMS3 = """\
rte_kni/1.0, 6.1.0-56-amd64, x86_64: installed (original_module exists)
rte_kni/1.0, 6.12.95+deb12-amd64, x86_64: built
rte_kni/0.9: added
Error! Could not locate dkms.conf file.
"""


@pytest.mark.parametrize("text", [DKMS2, DKMS3], ids=["dkms2", "dkms3"])
def test_parse_status_both_formats(text: str) -> None:
    entries, other = parse_status(text)
    assert entries[0][:5] == ("rte_kni", "1.0", RELEASE, "x86_64", "installed")
    assert entries[1].kernel == OTHER_RELEASE and entries[1].state == "built"
    assert entries[2] == StatusEntry("rte_kni", "0.9", None, None, "added", "")
    assert kernel_states(entries, "1.0") == {RELEASE: "installed", OTHER_RELEASE: "built"}
    if text is DKMS3:
        assert entries[0].note == "(original_module exists)"
        assert other == ["Error! Could not locate dkms.conf file."]


def test_parse_status_weak_and_other_modules() -> None:
    entries, other = parse_status("rte_kni, 1.0, 6.1.0-9, x86_64: installed-weak from 6.1.0-1\nzfs/2.1.11: added\n")
    assert entries[0].state == "installed-weak"
    assert entries[1].module == "zfs"
    assert other == []


def fake(tmp_path: Path, **kwargs: object) -> FakeSystem:
    system = FakeSystem(tmp_path, **kwargs)  # type: ignore[arg-type]
    system.write("/usr/src/rte_kni-1.0/dkms.conf", 'PACKAGE_NAME="rte_kni"\nPACKAGE_VERSION="1.0"\n')
    return system


def test_target_kernels(tmp_path: Path) -> None:
    system = fake(tmp_path)
    system.kernel(OTHER_RELEASE, headers=True)
    system.kernel("5.10.0-32-amd64", headers=False)
    targets, skipped, missing = target_kernels(system.paths, RELEASE, None)
    assert targets == [RELEASE, OTHER_RELEASE]
    assert skipped == ["5.10.0-32-amd64"]
    assert missing == []
    assert target_kernels(system.paths, RELEASE, ["5.10.0-32-amd64"])[2] == ["5.10.0-32-amd64"]


def test_plan_from_scratch_and_partial() -> None:
    request = DkmsRequest("present", "1.0", "/usr/src/rte_kni-1.0", None)
    fresh = plan(request, [], [RELEASE])
    assert [(c.verb, c.kernel) for c in fresh.commands] == [("add", None), ("build", RELEASE), ("install", RELEASE)]
    assert fresh.commands[0].argv("dkms") == ["dkms", "add", "-m", "rte_kni", "-v", "1.0"]
    entries = parse_status(DKMS3)[0]
    partial = plan(request, entries, [RELEASE, OTHER_RELEASE])
    assert [(c.verb, c.kernel) for c in partial.commands] == [("install", OTHER_RELEASE)]
    assert partial.tracker.before_after()["before"][OTHER_RELEASE] == "built"


def test_plan_absent() -> None:
    entries = parse_status(DKMS2)[0]
    every = plan(DkmsRequest("absent", None, None, None), entries, [])
    assert [c.argv("dkms") for c in every.commands] == [
        ["dkms", "remove", "-m", "rte_kni", "-v", "1.0", "--all"],
        ["dkms", "remove", "-m", "rte_kni", "-v", "0.9", "--all"],
    ]
    one = plan(DkmsRequest("absent", "1.0", None, [RELEASE]), entries, [])
    assert [c.argv("dkms") for c in one.commands] == [["dkms", "remove", "-m", "rte_kni", "-v", "1.0", "-k", RELEASE]]
    assert plan(DkmsRequest("absent", "2.0", None, None), entries, []).commands == []


def test_sb_state_parsing() -> None:
    assert parse_sb_state("SecureBoot enabled\n") == "enabled"
    assert parse_sb_state("SecureBoot disabled\nPlatform is in Setup Mode\n") == "disabled"
    assert parse_sb_state("EFI variables are not supported on this system\n") == "unknown"


def test_secure_boot_without_mokutil_is_unknown(tmp_path: Path) -> None:
    system = fake(tmp_path)
    info = secure_boot(FakeHost(system))
    assert info.state == "unknown" and "mokutil" in info.detail
    assert info.signing_key == "/var/lib/dkms/mok.key" and info.certificate == "/var/lib/dkms/mok.pub"


def test_signing_key_from_framework_conf(tmp_path: Path) -> None:
    system = fake(tmp_path)
    system.write("/etc/dkms/framework.conf", '# mok_signing_key=/nope\nmok_signing_key="/root/mok/MOK.priv"\n')
    system.write("/etc/dkms/framework.conf.d/50-cert.conf", "mok_certificate=/root/mok/MOK.der\n")
    assert signing_files(system.paths) == ("/root/mok/MOK.priv", "/root/mok/MOK.der")


def test_secure_boot_enabled_and_enrolment(tmp_path: Path) -> None:
    system = fake(tmp_path)
    system.sb_output = "SecureBoot enabled\n"
    warnings: list = []
    execute(FakeHost(system), {"version": "1.0"}, True, False, warnings.append)
    assert any("does not exist" in w and "mokutil --import /var/lib/dkms/mok.pub" in w for w in warnings)
    system.write("/var/lib/dkms/mok.pub", "cert")
    info = secure_boot(FakeHost(system))
    assert info.state == "enabled" and info.certificate_exists and info.key_enrolled is False
    system.enrolled = True
    assert secure_boot(FakeHost(system)).key_enrolled is True


@pytest.mark.parametrize("major", [2, 3])
def test_execute_build_then_idempotent(tmp_path: Path, major: int) -> None:
    system = fake(tmp_path, dkms_major=major)
    system.kernel(OTHER_RELEASE, headers=True)
    system.kernel("5.10.0-32-amd64", headers=False)
    warnings: list = []
    first = execute(FakeHost(system), {"version": "1.0"}, False, True, warnings.append)
    assert first["changed"]
    assert first["commands"] == [
        "dkms add -m rte_kni -v 1.0",
        f"dkms build -m rte_kni -v 1.0 -k {RELEASE}",
        f"dkms install -m rte_kni -v 1.0 -k {RELEASE}",
        f"dkms build -m rte_kni -v 1.0 -k {OTHER_RELEASE}",
        f"dkms install -m rte_kni -v 1.0 -k {OTHER_RELEASE}",
    ]
    assert first["skipped_kernels"] == ["5.10.0-32-amd64"]
    assert [k["state"] for k in first["kernels"]] == ["installed", "installed"]
    assert all(k["vermagic_ok"] for k in first["kernels"])
    assert first["diff"]["before"][RELEASE] == "absent" and first["diff"]["after"][RELEASE] == "installed"
    assert any("5.10.0-32-amd64" in w for w in warnings)
    second = execute(FakeHost(system), {"version": "1.0"}, False, True, warnings.append)
    assert second["changed"] is False and second["commands"] == [] and "diff" not in second


def test_execute_check_mode_runs_only_status(tmp_path: Path) -> None:
    system = fake(tmp_path)
    result = execute(FakeHost(system), {"version": "1.0"}, True, True, print)
    assert result["changed"] and result["kernels"][0]["state"] == "installed"
    assert {call[1] for call in system.calls if call[0].endswith("dkms")} == {"status"}
    assert system.dkms == {}


def test_execute_missing_headers_fails_before_anything(tmp_path: Path) -> None:
    system = fake(tmp_path)
    system.kernel("6.12.99-amd64", headers=False)
    with pytest.raises(DkmsFailure) as info:
        execute(FakeHost(system), {"version": "1.0", "kernels": [RELEASE, "6.12.99-amd64"]}, False, False, print)
    assert "Install linux-headers-6.12.99-amd64" in str(info.value)
    assert info.value.result["missing_headers"] == ["6.12.99-amd64"]
    assert all(call[1] == "status" for call in system.calls)


def test_execute_running_kernel_without_headers(tmp_path: Path) -> None:
    system = FakeSystem(tmp_path, release="6.1.0-99-amd64")
    (tmp_path / "lib/modules/6.1.0-99-amd64/build/Makefile").unlink()
    system.write("/usr/src/rte_kni-1.0/dkms.conf", 'PACKAGE_NAME="rte_kni"\nPACKAGE_VERSION="1.0"\n')
    system.write("/etc/os-release", 'ID=rocky\nID_LIKE="rhel centos fedora"\n')
    with pytest.raises(DkmsFailure, match=re.escape("Install kernel-devel-6.1.0-99-amd64")):
        execute(FakeHost(system), {"version": "1.0"}, False, False, print)


def test_execute_version_from_source(tmp_path: Path) -> None:
    system = fake(tmp_path)
    system.write("/srv/kmod/dkms.conf", 'PACKAGE_NAME="rte_kni"\nPACKAGE_VERSION="1.0"\n')
    result = execute(FakeHost(system), {"source": "/srv/kmod"}, False, False, print)
    assert result["version"] == "1.0"
    assert result["commands"][0] == "dkms add /srv/kmod"


def test_execute_source_mismatch_and_missing_version(tmp_path: Path) -> None:
    system = fake(tmp_path)
    with pytest.raises(DkmsFailure, match=re.escape("PACKAGE_VERSION '1.0', but version is '2.0'")):
        execute(FakeHost(system), {"version": "2.0", "source": "/usr/src/rte_kni-1.0"}, False, False, print)
    with pytest.raises(DkmsFailure, match="version is required"):
        execute(FakeHost(system), {}, False, False, print)
    with pytest.raises(DkmsFailure, match=re.escape("dkms.conf was not found")):
        execute(FakeHost(system), {"version": "3.0"}, False, False, print)


def test_execute_vermagic_mismatch_fails(tmp_path: Path) -> None:
    system = fake(tmp_path)
    system.vermagic_override[RELEASE] = "6.1.0-55-amd64 SMP preempt mod_unload modversions"
    with pytest.raises(DkmsFailure, match=re.escape("does not match kernel 6.1.0-56-amd64")):
        execute(FakeHost(system), {"version": "1.0"}, False, False, print)


def test_execute_dkms_error_carries_output(tmp_path: Path) -> None:
    system = fake(tmp_path)
    system.dkms_fail = "build"
    with pytest.raises(DkmsFailure, match="Bad return status for module build"):
        execute(FakeHost(system), {"version": "1.0"}, False, False, print)


def test_execute_absent(tmp_path: Path) -> None:
    system = fake(tmp_path)
    execute(FakeHost(system), {"version": "1.0"}, False, False, print)
    result = execute(FakeHost(system), {"state": "absent"}, False, True, print)
    assert result["changed"] and system.dkms == {}
    assert result["diff"]["before"]["1.0"] == "added"
    assert execute(FakeHost(system), {"state": "absent"}, False, True, print)["changed"] is False


def test_execute_without_dkms(tmp_path: Path) -> None:
    system = fake(tmp_path)
    system.tools.discard("dkms")
    assert execute(FakeHost(system), {"state": "absent"}, False, False, print)["changed"] is False
    with pytest.raises(DkmsFailure, match="install the dkms package"):
        execute(FakeHost(system), {"version": "1.0"}, False, False, print)
