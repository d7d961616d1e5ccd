# SPDX-License-Identifier: GPL-3.0-or-later
# Copyright: kernelnic.kni contributors
"""kni_validate driven through AnsibleModule: one failure naming every bad variable, never a change."""

from __future__ import annotations

import pytest
from ansible_collections.kernelnic.kni.plugins.modules import kni_validate

from tests.unit.plugins.modules.kni_module_runner import run_module


@pytest.mark.parametrize("check_mode", [False, True], ids=["run", "check"])
def test_good_variables_pass_unchanged(capsys: pytest.CaptureFixture, check_mode: bool) -> None:
    variables = {"kni_hugepages": 0, "kni_interfaces": [{"name": "kni0", "backend": "null"}]}
    result = run_module(kni_validate.main, capsys, {"variables": variables}, check_mode=check_mode)
    assert "failed" not in result, result
    assert result["changed"] is False and result["variables"] == ["kni_hugepages", "kni_interfaces"]


def test_bad_variables_fail_with_one_message(capsys: pytest.CaptureFixture) -> None:
    variables = {
        "kni_hugepages": -5,
        "kni_interfaces": [{"name": "kni0", "mac": "zz"}],
        "kni_module_params": {"min_scheduling_interval": 300, "max_scheduling_interval": 200},
    }
    result = run_module(kni_validate.main, capsys, {"variables": variables}, check_mode=True)
    assert result["failed"] is True and result["changed"] is False
    assert [error.split(":", 1)[0] for error in result["errors"]] == [
        "kni_hugepages",
        "kni_interfaces[0].mac",
        "kni_module_params",
    ]
    assert result["msg"] == "invalid kni role variables: " + "; ".join(result["errors"])
    assert "\n" not in result["msg"] and "Traceback" not in result["msg"]
