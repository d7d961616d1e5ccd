# SPDX-License-Identifier: GPL-3.0-or-later
# Copyright: kernelnic.kni contributors
"""rte_kni parameter table, validation, sysfs normalisation and the two persistent files."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from ansible_collections.kernelnic.kni.plugins.module_utils._modules.kmod_params import (
    DEFAULTS,
    PARAMETERS,
    ParameterError,
    kernel_arguments,
    normalize_loaded,
    render_modprobe_conf,
    render_modules_load_conf,
    validate,
)

KMOD = Path(__file__).resolve().parents[4] / "kmod"


def test_defaults_fill_every_parameter() -> None:
    assert validate(None) == DEFAULTS
    assert validate({"carrier": "on"})["carrier"] == "on"
    assert validate({"carrier": None})["carrier"] == "off"


def test_yaml_booleans_become_on_and_off() -> None:
    params = validate({"carrier": True, "enable_bifurcated": False})
    assert params["carrier"] == "on"
    assert params["enable_bifurcated"] == "off"


def test_every_problem_is_listed() -> None:
    with pytest.raises(ParameterError) as info:
        validate({"lo_mode": "fifo", "kthread_mode": "many", "min_scheduling_interval": -1, "bogus": 1})
    errors = info.value.errors
    assert any("unknown parameters bogus" in error for error in errors)
    assert any("lo_mode must be one of lo_mode_none, lo_mode_fifo, lo_mode_fifo_skb, got 'fifo'" in e for e in errors)
    assert any("kthread_mode must be one of single, multiple" in error for error in errors)
    assert any("min_scheduling_interval must be between 0 and 1000000" in error for error in errors)


@pytest.mark.parametrize(
    ("low", "high", "message"),
    [
        (200, 200, "min_scheduling_interval (200) must be below max_scheduling_interval (200)"),
        (300, None, "min_scheduling_interval (300) must be below max_scheduling_interval (200)"),
        (10, 1000001, "max_scheduling_interval must be between 0 and 1000000 microseconds, got 1000001"),
        ("ten", 20, "min_scheduling_interval must be an integer number of microseconds, got 'ten'"),
        (True, 20, "min_scheduling_interval must be an integer number of microseconds, got True"),
    ],
)
def test_interval_rules(low: object, high: object, message: str) -> None:
    with pytest.raises(ParameterError, match=re.escape(message)):
        validate({"min_scheduling_interval": low, "max_scheduling_interval": high})


def test_intervals_accept_numeric_strings_and_bounds() -> None:
    params = validate({"min_scheduling_interval": "0", "max_scheduling_interval": 1000000})
    assert params["min_scheduling_interval"] == 0
    assert params["max_scheduling_interval"] == 1000000


def test_sysfs_values_normalise_to_validated_form() -> None:
    assert normalize_loaded("lo_mode", "(null)\n") == "lo_mode_none"
    assert normalize_loaded("enable_bifurcated", "(null)\n") == "off"
    assert normalize_loaded("enable_bifurcated", "on\n") == "on"
    assert normalize_loaded("min_scheduling_interval", "100\n") == 100


def test_kernel_arguments_pass_everything_but_bifurcated_off() -> None:
    words = kernel_arguments(validate({"carrier": "on"}))
    assert "carrier=on" in words
    assert "lo_mode=lo_mode_none" in words
    assert not any(word.startswith("enable_bifurcated") for word in words)
    assert "enable_bifurcated=on" in kernel_arguments(validate({"enable_bifurcated": "on"}))


def test_modprobe_conf_lists_non_defaults_in_table_order() -> None:
    text = render_modprobe_conf(validate({"min_scheduling_interval": 20, "carrier": "on"}))
    assert text.splitlines()[1] == "options rte_kni carrier=on min_scheduling_interval=20"
    assert text.endswith("\n")
    assert render_modprobe_conf(validate({})) == render_modprobe_conf(validate({}))  # deterministic
    assert "options" not in render_modprobe_conf(validate({}))


def test_modules_load_conf() -> None:
    assert render_modules_load_conf().splitlines()[-1] == "rte_kni"


def test_table_matches_kmod_sources() -> None:
    """Names, choices and interval defaults agree with kmod/kni_params.c."""
    source = (KMOD / "kni_params.c").read_text()
    for parameter in PARAMETERS:
        assert re.search(rf"(module_param(_cb)?|KNI_STRING_PARAM)\({parameter.name},", source), parameter.name
        for choice in parameter.choices:
            if parameter.not_passed == choice:
                continue
            assert f'"{choice}"' in source, (parameter.name, choice)
    assert "kni_min_interval_us = 100;" in source
    assert "kni_max_interval_us = 200;" in source
    assert re.search(r"module_param_cb\(idle_scheduling_interval,", source)


def test_multi_open_is_passed_only_when_on() -> None:
    assert validate(None)["multi_open"] == "off"
    assert not any(word.startswith("multi_open") for word in kernel_arguments(validate({})))
    assert "multi_open=on" in kernel_arguments(validate({"multi_open": True}))
    assert "options rte_kni multi_open=on" in render_modprobe_conf(validate({"multi_open": "on"}))
    assert normalize_loaded("multi_open", "(null)\n") == "off"
