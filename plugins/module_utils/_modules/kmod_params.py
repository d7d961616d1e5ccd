# SPDX-License-Identifier: GPL-3.0-or-later
# Copyright: kernelnic.kni contributors
"""rte_kni module parameters: names, accepted values, defaults, validation and the two persistent files.

The table mirrors ``kmod/kni_params.c`` (and DPDK 22.11, ``docs/kni-abi.md`` §4.1). String parameters are parsed
once when the module loads; the scheduling intervals are also writable at runtime through
``/sys/module/rte_kni/parameters/``. ``enable_bifurcated`` accepts only ``on`` in the kernel, so ``off`` means
"not passed".

The renderers are deliberately tiny and deterministic (no Jinja2: module code runs on managed hosts).
"""

from __future__ import annotations

from typing import Any, Dict, List, Mapping, NamedTuple, Optional, Tuple, Union

from ansible_collections.kernelnic.kni.plugins.module_utils._modules.host import MODULE_NAME

Value = Union[str, int, None]

INTERVAL_MAX_US = 1000000
NULL_CHARP = "(null)"  # what sysfs shows for a string parameter that was not given
MANAGED_HEADER = "# Managed by kernelnic.kni.kni_kmod; local changes are overwritten."


class Parameter(NamedTuple):
    name: str
    default: Value  # None: the module's own default, neither passed nor compared
    choices: Tuple[str, ...] = ()  # empty: an interval in microseconds
    live: bool = False  # a runtime sysfs write takes effect
    not_passed: Optional[str] = None  # the value that is expressed by leaving the parameter out

    @property
    def is_interval(self) -> bool:
        return not self.choices


PARAMETERS: Tuple[Parameter, ...] = (
    Parameter("lo_mode", "lo_mode_none", ("lo_mode_none", "lo_mode_fifo", "lo_mode_fifo_skb")),
    Parameter("kthread_mode", "single", ("single", "multiple")),
    Parameter("carrier", "off", ("off", "on")),
    Parameter("enable_bifurcated", "off", ("off", "on"), not_passed="off"),
    Parameter("strict", "auto", ("auto", "required")),
    Parameter("multi_open", "off", ("off", "on"), not_passed="off"),  # an extension: off passes nothing
    Parameter("min_scheduling_interval", 100, live=True),
    Parameter("max_scheduling_interval", 200, live=True),
    # An extension of this rte_kni whose default is the module's business: managed only when given.
    Parameter("idle_scheduling_interval", None, live=True),
)
BY_NAME: Dict[str, Parameter] = {parameter.name: parameter for parameter in PARAMETERS}
DEFAULTS: Dict[str, Value] = {parameter.name: parameter.default for parameter in PARAMETERS}

Params = Dict[str, Value]


class ParameterError(ValueError):
    """Invalid module parameters; ``errors`` lists every problem found."""

    def __init__(self, errors: List[str]) -> None:
        super().__init__("invalid rte_kni parameters: " + "; ".join(errors))
        self.errors = errors


def _coerce(parameter: Parameter, value: Any, errors: List[str]) -> Optional[Value]:
    if parameter.is_interval:
        if isinstance(value, bool):
            errors.append(f"{parameter.name} must be an integer number of microseconds, got {value!r}")
            return None
        try:
            number = int(str(value).strip(), 10) if isinstance(value, str) else int(value)
        except (TypeError, ValueError):
            errors.append(f"{parameter.name} must be an integer number of microseconds, got {value!r}")
            return None
        if not 0 <= number <= INTERVAL_MAX_US:
            errors.append(f"{parameter.name} must be between 0 and {INTERVAL_MAX_US} microseconds, got {number}")
            return None
        return number
    if isinstance(value, bool):  # YAML 1.1 reads a bare on/off as a boolean
        value = "on" if value else "off"
    if value not in parameter.choices:
        errors.append(f"{parameter.name} must be one of {', '.join(parameter.choices)}, got {value!r}")
        return None
    return str(value)


def precheck_arguments(arguments: Dict[str, Any]) -> Optional[str]:
    """Prepare kni_kmod's raw ``params`` argument for ansible-core's validation, whose suboption handling ends in a
    TypeError for a list or a number. null stands for the default (every parameter at its default); anything else
    but a dictionary, or a ``k=v`` string that ansible-core parses, is replaced by {} and the error returned."""
    if "params" not in arguments:
        return None
    value = arguments["params"]
    if value is None:
        del arguments["params"]
        return None
    if isinstance(value, (dict, str)):
        return None
    arguments["params"] = {}
    kind = {list: "a list", bool: "a boolean", int: "a number", float: "a number"}.get(
        type(value), type(value).__name__
    )
    return f"params must be a dictionary of rte_kni parameters, for example {{carrier: 'on'}}, not {kind}"


def validate(params: Optional[Mapping[str, Any]]) -> Params:
    """Every parameter's desired value (defaults for those left out or None), or ParameterError."""
    errors: List[str] = []
    given = dict(params or {})
    unknown = sorted(set(given) - set(BY_NAME))
    if unknown:
        errors.append(f"unknown parameters {', '.join(unknown)} (known: {', '.join(BY_NAME)})")
    result: Params = {}
    for parameter in PARAMETERS:
        value = given.get(parameter.name)
        if value is None:
            result[parameter.name] = parameter.default
            continue
        coerced = _coerce(parameter, value, errors)
        if coerced is not None:
            result[parameter.name] = coerced
    low, high = result.get("min_scheduling_interval"), result.get("max_scheduling_interval")
    if isinstance(low, int) and isinstance(high, int) and low >= high:
        errors.append(
            f"min_scheduling_interval ({low}) must be below max_scheduling_interval ({high});"
            " the kernel refuses the load otherwise"
        )
    if errors:
        raise ParameterError(errors)
    return result


def normalize_loaded(name: str, raw: str) -> Value:
    """A value read from ``/sys/module/rte_kni/parameters/<name>`` in the form ``validate`` returns."""
    parameter = BY_NAME[name]
    text = raw.strip()
    if parameter.is_interval:
        try:
            return int(text, 10)
        except ValueError:
            return text
    if text in ("", NULL_CHARP):
        return parameter.default
    return text


def kernel_arguments(params: Mapping[str, Value]) -> List[str]:
    """``name=value`` words for modprobe: every parameter, so stray modprobe.d options cannot override them."""
    words = []
    for parameter in PARAMETERS:
        value = params.get(parameter.name, parameter.default)
        if value is None or (parameter.not_passed is not None and value == parameter.not_passed):
            continue
        words.append(f"{parameter.name}={value}")
    return words


def non_default(params: Mapping[str, Value]) -> List[Tuple[str, Value]]:
    return [
        (p.name, params[p.name]) for p in PARAMETERS if params.get(p.name) is not None and params[p.name] != p.default
    ]


def render_modprobe_conf(params: Mapping[str, Value]) -> str:
    """``/etc/modprobe.d/rte_kni.conf``: the non-default parameters, in table order."""
    lines = [MANAGED_HEADER]
    options = non_default(params)
    if options:
        lines.append(f"options {MODULE_NAME} " + " ".join(f"{name}={value}" for name, value in options))
    else:
        lines.append(f"# {MODULE_NAME} loads with its default parameters.")
    return "\n".join(lines) + "\n"


def render_modules_load_conf() -> str:
    """``/etc/modules-load.d/rte_kni.conf``: load the module at boot (systemd-modules-load)."""
    return f"{MANAGED_HEADER}\n{MODULE_NAME}\n"
