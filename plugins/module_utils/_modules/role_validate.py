# SPDX-License-Identifier: GPL-3.0-or-later
# Copyright: kernelnic.kni contributors
"""The kni role's variables, checked before the role changes anything (the kni_validate module); pure, no I/O.

Each variable is checked with the rules of the module or service it ends up in: ``kni_module_params`` with
kni_kmod's (``kmod_params.validate``), ``kni_interfaces`` with kni_interface's (``parse_interface_options`` and
the uniqueness checks of its plan), the pump settings with kni-pump's. Types are strict: the role computes with
these values and tests them in conditionals, where the string ``"5"`` or ``"false"`` (what ``-e name=value``
gives) would silently misbehave.
"""

from __future__ import annotations

import os
import re
from typing import Any, Callable, Dict, List, Mapping, Tuple

from ansible_collections.kernelnic.kni.plugins.module_utils._modules.interface_options import (
    InterfaceSpec,
    check_unique_names,
    parse_interface_options,
)
from ansible_collections.kernelnic.kni.plugins.module_utils._modules.kmod_params import ParameterError
from ansible_collections.kernelnic.kni.plugins.module_utils._modules.kmod_params import validate as validate_params
from ansible_collections.kernelnic.kni.plugins.module_utils._pump.log import LEVELS
from ansible_collections.kernelnic.kni.plugins.module_utils._pump.schema import ConfigError, check_integer

# sun_path holds 108 bytes with the terminating NUL.
SOCKET_PATH_MAX = 107
INT_MAX = 2**31 - 1
_DEBIAN_PACKAGE = re.compile(r"^[a-z0-9][a-z0-9+.-]+(:[a-z0-9-]+)?$")
# What DKMS and /lib/modules accept as a path component: no '/', no whitespace.
_DKMS_WORD = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._+~-]*$")
_UNIT_NAME = re.compile(r"^[A-Za-z0-9:_.\\-]+$")
# A service unit, also an instance of a template unit (name@instance.service).
_SERVICE_UNIT = re.compile(r"^[A-Za-z0-9:_.\\-]+(@[A-Za-z0-9:_.\\-]+)?\.service$")
_GROUP_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_.-]*\$?$")
_RUNTIME_SOCKET = re.compile(r"^/run/[^/]+/[^/]+$")

Variables = Mapping[str, Any]
Check = Callable[[Any, str, Variables], None]


def _bool(value: Any, field: str, _variables: Variables) -> None:
    if not isinstance(value, bool):
        raise ConfigError(field, f"must be true or false, not {value!r}")


def _integer(low: int, high: int = INT_MAX) -> Check:
    def check(value: Any, field: str, _variables: Variables) -> None:
        check_integer(value, field, low, high)

    return check


def _text(value: Any, field: str) -> str:
    if not isinstance(value, str):
        raise ConfigError(field, f"must be a string, not {value!r}")
    if not value or value != value.strip() or "\n" in value:
        raise ConfigError(field, f"{value!r} must be non-empty, without surrounding whitespace or newlines")
    return value


def _controller_path(value: Any, field: str, _variables: Variables) -> None:
    _text(value, field)


def _absolute_path(value: Any, field: str, _variables: Variables) -> None:
    path = _text(value, field)
    if not os.path.isabs(path) or os.path.normpath(path) != path:
        raise ConfigError(field, f"{path!r} must be an absolute, normalised path such as /usr/local/bin/kni-pump")


def _dkms_word(value: Any, field: str, what: str) -> str:
    word = _text(value, field)
    if not _DKMS_WORD.match(word):
        raise ConfigError(field, f"{word!r} is not a {what} (letters, digits and . _ + ~ -, no '/' or spaces)")
    return word


def _kmod_version(value: Any, field: str, _variables: Variables) -> None:
    _dkms_word(value, field, "DKMS module version such as 1.0")


def _kernels(value: Any, field: str, _variables: Variables) -> None:
    if not isinstance(value, list):
        raise ConfigError(field, f"must be a list of kernel releases, not {value!r}")
    seen: Dict[str, int] = {}
    for position, kernel in enumerate(value):
        where = f"{field}[{position}]"
        release = _dkms_word(kernel, where, "kernel release such as 6.1.0-56-amd64")
        if release in seen:
            raise ConfigError(where, f"{release} is already listed at position {seen[release]}")
        seen[release] = position


def _packages(value: Any, field: str, _variables: Variables) -> None:
    if not isinstance(value, list):
        raise ConfigError(field, f"must be a list of Debian package names, not {value!r}")
    for position, name in enumerate(value):
        if not isinstance(name, str) or not _DEBIAN_PACKAGE.match(name):
            raise ConfigError(f"{field}[{position}]", f"{name!r} is not a Debian package name such as dkms")


def _module_params(value: Any, field: str, _variables: Variables) -> None:
    if value is not None and not isinstance(value, dict):
        raise ConfigError(field, f"must be a dictionary of rte_kni parameters, not {value!r}")
    try:
        validate_params(value)
    except ParameterError as exc:
        raise ConfigError(field, "; ".join(exc.errors)) from exc


def _service_name(value: Any, field: str, _variables: Variables) -> None:
    name = _text(value, field)
    if name.endswith(".service"):
        raise ConfigError(field, f"{name!r} must be given without .service (the role adds it)")
    if not _UNIT_NAME.match(name):
        raise ConfigError(field, f"{name!r} is not a systemd unit name (letters, digits and : _ . \\ -)")


def _socket(value: Any, field: str, _variables: Variables) -> None:
    path = _text(value, field)
    if not _RUNTIME_SOCKET.match(path) or os.path.normpath(path) != path or "/../" in f"{path}/":
        raise ConfigError(
            field,
            f"{path!r} must be a file in a directory of its own under /run, such as /run/kni-pump/control.sock"
            " (systemd creates that directory as the unit's RuntimeDirectory)",
        )
    if len(path.encode()) > SOCKET_PATH_MAX:
        raise ConfigError(field, f"{path!r} is longer than the {SOCKET_PATH_MAX} bytes a socket path may have")


def _socket_group(value: Any, field: str, _variables: Variables) -> None:
    if value == "":
        return
    name = _text(value, field)
    if len(name) > 32 or not _GROUP_NAME.match(name):
        raise ConfigError(field, f"{name!r} is not a group name (or empty for root only)")


def _log_level(value: Any, field: str, _variables: Variables) -> None:
    if value not in LEVELS:
        raise ConfigError(field, f"{value!r} is not one of {', '.join(LEVELS)}")


def _app_unit(value: Any, field: str, _variables: Variables) -> None:
    if value == "":
        return
    name = _text(value, field)
    if not _SERVICE_UNIT.match(name):
        raise ConfigError(field, f"{name!r} is not a systemd service name such as my-dpdk-app.service (or empty)")


def _adopted(variables: Variables) -> List[str]:
    """Names of the adopted, present interfaces of kni_interfaces (what is well formed of it)."""
    interfaces = variables.get("kni_interfaces")
    if not isinstance(interfaces, list):
        return []
    return [
        item["name"]
        for item in interfaces
        if isinstance(item, dict) and item.get("adopt") is True and item.get("state", "present") == "present"
    ]


def _adopted_mtu(value: Any, field: str, variables: Variables) -> None:
    if not isinstance(value, dict):
        raise ConfigError(field, f"must be a dictionary of interface name: MTU, not {value!r}")
    adopted = _adopted(variables)
    for name, mtu in value.items():
        if name not in adopted:
            raise ConfigError(
                f"{field}.{name}", "is not an interface of kni_interfaces with adopt: true and state: present"
            )
        check_integer(mtu, f"{field}.{name}", 68, 65535)


def _pump_enabled(value: Any, field: str, variables: Variables) -> None:
    _bool(value, field, variables)
    if value:
        return
    interfaces = variables.get("kni_interfaces")
    pumped = [
        item.get("name")
        for item in (interfaces if isinstance(interfaces, list) else [])
        if isinstance(item, dict) and item.get("adopt") is not True and item.get("state", "present") == "present"
    ]
    if pumped:
        raise ConfigError(
            field,
            f"false, but kni_interfaces declares kni-pump interfaces ({', '.join(map(str, pumped))}); without the"
            " pump only interfaces a DPDK application creates (adopt: true) can be listed",
        )
    if variables.get("kni_interfaces_exclusive") is True:
        raise ConfigError(
            field, "false, but kni_interfaces_exclusive deletes kni-pump interfaces, which needs the pump"
        )


class Problems(Exception):
    """Several independent errors in one variable (the items of a list), each naming its field."""

    def __init__(self, errors: List[str]) -> None:
        super().__init__("; ".join(errors))
        self.errors = errors


def _interfaces(value: Any, field: str, variables: Variables) -> None:
    if not isinstance(value, list):
        raise ConfigError(field, f"must be a list of interface dictionaries, not {value!r}")
    specs: List[InterfaceSpec] = []
    problems: List[str] = []
    for position, item in enumerate(value):
        try:
            spec = parse_interface_options(item, f"{field}[{position}]")
        except ConfigError as exc:
            problems.append(str(exc))
            continue
        specs.append(spec)
    if problems:
        raise Problems(problems)
    first: Dict[str, str] = {}
    for spec in specs:
        if spec.name in first:
            raise ConfigError(spec.path("name"), f"{spec.name!r} is already listed at {first[spec.name]}")
        first[spec.name] = spec.field
    pump = [spec for spec in specs if spec.state == "present" and not spec.adopt]
    check_unique_names([(spec.field, spec.pump) for spec in pump])
    limit = variables.get("kni_pump_max_interfaces")
    if isinstance(limit, int) and not isinstance(limit, bool) and len(pump) > limit:
        raise ConfigError(
            field,
            f"{len(pump)} kni-pump interfaces, more than the {limit} that kni_pump_max_interfaces sizes the pump's"
            " memory for",
        )


# Every variable of the role (meta/argument_specs.yml) and its check; tests/unit/test_role_kni.py keeps them equal.
CHECKS: Dict[str, Check] = {
    "kni_packages": _packages,
    "kni_kernel_headers": _bool,
    "kni_apt_cache_valid_time": _integer(0),
    "kni_kmod_source_dir": _controller_path,
    "kni_pump_library_source": _controller_path,
    "kni_kmod_version": _kmod_version,
    "kni_kmod_dest_dir": _absolute_path,
    "kni_dkms_kernels": _kernels,
    "kni_module_params": _module_params,
    "kni_dpdk_app_alongside": _bool,
    "kni_module_reload": _bool,
    "kni_network_managers_unmanage": _bool,
    "kni_hugepages": _integer(0),
    "kni_pump_enabled": _pump_enabled,
    "kni_pump_manage_service": _bool,
    "kni_pump_service_name": _service_name,
    "kni_pump_service_enabled": _bool,
    "kni_pump_python": _absolute_path,
    "kni_pump_launcher": _absolute_path,
    "kni_pump_lib_dir": _absolute_path,
    "kni_pump_socket": _socket,
    "kni_pump_socket_group": _socket_group,
    "kni_pump_max_interfaces": _integer(1),
    "kni_pump_pool_size": _integer(1),
    "kni_pump_log_level": _log_level,
    "kni_interfaces": _interfaces,
    "kni_interfaces_exclusive": _bool,
    "kni_adopted_mtu": _adopted_mtu,
    "kni_app_unit": _app_unit,
}


def check_variables(variables: Variables) -> Tuple[List[str], List[str]]:
    """(the variables checked, the errors: each names the variable or field, such as ``kni_interfaces[1].mac``)."""
    errors: List[str] = []
    unknown = sorted(name for name in variables if name not in CHECKS)
    for name in unknown:
        errors.append(f"{name}: not a variable of the kni role (known: {', '.join(sorted(CHECKS))})")
    checked = sorted(name for name in variables if name in CHECKS)
    for name in checked:
        errors.extend(_check_one(name, variables))
    return checked, errors


def _check_one(name: str, variables: Variables) -> List[str]:
    try:
        CHECKS[name](variables[name], name, variables)
    except ConfigError as exc:
        return [str(exc)]
    except Problems as exc:
        return exc.errors
    return []
