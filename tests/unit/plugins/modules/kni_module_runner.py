# SPDX-License-Identifier: GPL-3.0-or-later
# Copyright: kernelnic.kni contributors
"""Run a module's main() with patch_module_args against a FakeSystem: a fake root and fake commands."""

from __future__ import annotations

import json
from typing import Any, Callable, Dict, Tuple

import pytest
from ansible.module_utils import basic
from ansible.module_utils.testing import patch_module_args
from ansible_collections.kernelnic.kni.plugins.module_utils._modules import host as host_logic
from ansible_collections.kernelnic.kni.plugins.module_utils._modules import info as info_logic
from ansible_collections.kernelnic.kni.plugins.module_utils._modules import kmod as kmod_logic

from tests.unit.plugins.kni_fakes import FakeSystem


def use_fake_system(monkeypatch: pytest.MonkeyPatch, system: FakeSystem) -> None:
    monkeypatch.setattr(host_logic, "DEFAULT_ROOT", str(system.root))
    monkeypatch.setattr(kmod_logic, "ethtool_driver", system.driver_of)
    monkeypatch.setattr(info_logic, "ethtool_driver", system.driver_of)

    def run_command(module: Any, args: Any, **kwargs: Any) -> Tuple[int, str, str]:
        assert isinstance(args, list), "commands must be argument lists"
        return system.run(args)

    def get_bin_path(module: Any, name: str, *args: Any, **kwargs: Any) -> Any:
        return system.which(name)

    monkeypatch.setattr(basic.AnsibleModule, "run_command", run_command)
    monkeypatch.setattr(basic.AnsibleModule, "get_bin_path", get_bin_path)


def run_module(
    main: Callable[[], None],
    capsys: pytest.CaptureFixture,
    args: Dict[str, Any],
    check_mode: bool = False,
    diff: bool = False,
) -> Dict[str, Any]:
    module_args = dict(args, _ansible_check_mode=check_mode, _ansible_diff=diff)
    with patch_module_args(module_args), pytest.raises(SystemExit):
        main()
    return json.loads(capsys.readouterr().out)
