# SPDX-License-Identifier: GPL-3.0-or-later
# Copyright: kernelnic.kni contributors
"""kni_info driven through AnsibleModule on a fake root."""

from __future__ import annotations

from pathlib import Path

import pytest
from ansible_collections.kernelnic.kni.plugins.modules import kni_info

from tests.unit.plugins.kni_fakes import RELEASE, FakeSystem
from tests.unit.plugins.modules.kni_module_runner import run_module, use_fake_system


def test_reports_and_never_changes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    system = FakeSystem(tmp_path)
    use_fake_system(monkeypatch, system)
    system.load(["lo_mode=lo_mode_fifo"])
    system.add_interface("vEth0_0")
    system.dkms = {"1.0": {RELEASE: "installed"}}
    result = run_module(kni_info.main, capsys, {"service": "my-pump"}, check_mode=True)
    assert result["changed"] is False
    assert result["module"]["params"]["lo_mode"] == "lo_mode_fifo"
    assert result["interfaces"][0]["statistics"]["rx_packets"] == 10
    assert result["dkms"]["entries"][0]["state"] == "installed"
    assert result["service"] == {"name": "my-pump", "state": "unknown"}
