# SPDX-License-Identifier: GPL-3.0-or-later
# Copyright: kernelnic.kni contributors
"""Load, reconfigure and unload rte_kni: read the loaded module, plan, then apply.

``read_module`` and ``read_files`` look at the host; ``plan`` is pure (desired state and current state in, a list
of actions, a DifferenceTracker and file diffs out, or a refusal); ``apply`` carries the actions out through a
``Host``. Rules:

* A loaded module whose parameters differ is reloaded only with ``reload``; reloading (like unloading) removes
  every KNI interface, so it is also refused while KNI interfaces exist or ``/dev/kni`` is open (refcnt > 0).
  The kernel would refuse ``modprobe -r`` then anyway; refusing in the plan makes check mode honest and the
  message useful.
* Differences only in runtime-writable parameters (the scheduling intervals, when their sysfs file has a write
  bit) are written live, in an order that keeps min < max at every step (the kernel checks each write).
* With ``persistent`` the modprobe.d and modules-load.d files are written (or, for ``absent``, removed) before
  the runtime change, so a later ``modprobe`` reads the same options.
"""

from __future__ import annotations

import os
import stat
from typing import Any, Dict, List, Mapping, NamedTuple, Optional, Sequence

from ansible_collections.kernelnic.kni.plugins.module_utils._modules.changes import DifferenceTracker, file_diff
from ansible_collections.kernelnic.kni.plugins.module_utils._modules.host import (
    MODULE_NAME,
    Host,
    HostError,
    HostPaths,
    read_text,
)
from ansible_collections.kernelnic.kni.plugins.module_utils._modules.kmod_params import (
    BY_NAME,
    PARAMETERS,
    ParameterError,
    Params,
    Value,
    kernel_arguments,
    normalize_loaded,
    render_modprobe_conf,
    render_modules_load_conf,
    validate,
)
from ansible_collections.kernelnic.kni.plugins.module_utils._modules.netdev import (
    DriverProbe,
    ethtool_driver,
    kni_interfaces,
)

STATES = ("present", "absent")


class LoadedModule(NamedTuple):
    loaded: bool
    params: Params  # normalised values of the parameters the loaded module exposes
    writable: frozenset  # parameters whose sysfs file has a write bit
    refcnt: int
    holders: List[str]


NOT_LOADED = LoadedModule(False, {}, frozenset(), 0, [])


class KmodRequest(NamedTuple):
    state: str
    params: Params  # complete: every parameter, validated (``kmod_params.validate``)
    reload: bool = False
    persistent: bool = False


class Action(NamedTuple):
    kind: str  # write_file, remove_file, unload, load, set_parameter
    target: str = ""
    value: str = ""

    def describe(self) -> str:
        if self.kind == "write_file":
            return f"write {self.target}"
        if self.kind == "remove_file":
            return f"remove {self.target}"
        if self.kind == "unload":
            return f"unload {MODULE_NAME}"
        if self.kind == "load":
            return f"load {MODULE_NAME} {self.value}".rstrip()
        return f"set {self.target}={self.value}"


class KmodPlan(NamedTuple):
    actions: List[Action]
    runtime: DifferenceTracker
    file_diffs: List[Dict[str, str]]
    refusal: Optional[str]

    @property
    def changed(self) -> bool:
        return bool(self.actions)

    def diff(self) -> List[Dict[str, object]]:
        entries: List[Dict[str, object]] = []
        if self.runtime.has_differences():
            entry: Dict[str, object] = dict(self.runtime.before_after())
            entry["before_header"] = entry["after_header"] = f"{MODULE_NAME} (runtime)"
            entries.append(entry)
        entries.extend(self.file_diffs)
        return entries


class KmodError(Exception):
    """Applying the plan failed; the message names the step."""


def read_module(paths: HostPaths) -> LoadedModule:
    """The loaded rte_kni as sysfs shows it (``initstate`` exists only for a loaded loadable module)."""
    if read_text(os.path.join(paths.sys_module, "initstate")) is None:
        return NOT_LOADED
    params: Params = {}
    writable = set()
    directory = paths.sys_module_parameters
    for parameter in PARAMETERS:
        path = os.path.join(directory, parameter.name)
        raw = read_text(path)
        if raw is None:
            continue
        params[parameter.name] = normalize_loaded(parameter.name, raw)
        try:
            if os.stat(path).st_mode & (stat.S_IWUSR | stat.S_IWGRP | stat.S_IWOTH):
                writable.add(parameter.name)
        except OSError:
            pass
    refcnt_text = (read_text(os.path.join(paths.sys_module, "refcnt")) or "0").strip()
    try:
        holders = sorted(os.listdir(os.path.join(paths.sys_module, "holders")))
    except OSError:
        holders = []
    return LoadedModule(True, params, frozenset(writable), int(refcnt_text or 0), holders)


def read_files(paths: HostPaths) -> Dict[str, Optional[str]]:
    return {path: read_text(path) for path in (paths.modprobe_conf, paths.modules_load_conf)}


def desired_files(paths: HostPaths, request: KmodRequest) -> Dict[str, Optional[str]]:
    if request.state == "absent":
        return {paths.modprobe_conf: None, paths.modules_load_conf: None}
    return {
        paths.modprobe_conf: render_modprobe_conf(request.params),
        paths.modules_load_conf: render_modules_load_conf(),
    }


def format_differences(differences: Sequence[tuple]) -> str:
    return ", ".join(f"{name}: {_show(loaded)} -> {_show(wanted)}" for name, loaded, wanted in differences)


def _show(value: Optional[Value]) -> str:
    return "(not supported by the loaded module)" if value is None else str(value)


def _busy_reason(current: LoadedModule, interfaces: Sequence[str]) -> Optional[str]:
    reasons = []
    if interfaces:
        reasons.append(f"KNI interfaces exist ({', '.join(interfaces)})")
    if current.refcnt > 0:
        reasons.append(f"the module is in use (refcnt {current.refcnt}: /dev/kni is open)")
    if current.holders:
        reasons.append(f"modules depend on it ({', '.join(current.holders)})")
    if not reasons:
        return None
    return (
        " and ".join(reasons)
        + "; unloading would destroy them, so stop the application that owns /dev/kni"
        + " (for example the kni-pump service) first"
    )


def interval_writes(current: Params, wanted: Params, names: Sequence[str]) -> List[Action]:
    """Live writes for ``names``, ordered so that min < max holds after every single write."""
    order = [name for name in ("max_scheduling_interval", "min_scheduling_interval") if name in names]
    if len(order) == 2:
        current_min = current.get("min_scheduling_interval")
        wanted_max = wanted["max_scheduling_interval"]
        if isinstance(current_min, int) and isinstance(wanted_max, int) and current_min >= wanted_max:
            order.reverse()  # lowering both below the current min: min first
    order.extend(name for name in names if name not in order)
    return [Action("set_parameter", name, str(wanted[name])) for name in order]


def plan(
    paths: HostPaths,
    request: KmodRequest,
    current: LoadedModule,
    files: Dict[str, Optional[str]],
    interfaces: Sequence[str],
) -> KmodPlan:
    actions: List[Action] = []
    runtime = DifferenceTracker()
    file_diffs: List[Dict[str, str]] = []

    if request.persistent:
        for path, wanted_text in desired_files(paths, request).items():
            if files.get(path) != wanted_text:
                actions.append(Action("write_file" if wanted_text is not None else "remove_file", path))
                file_diffs.append(file_diff(path, files.get(path), wanted_text))

    runtime.add("loaded", current.loaded, request.state == "present")
    if request.state == "absent":
        if current.loaded:
            busy = _busy_reason(current, interfaces)
            if busy:
                return KmodPlan([], runtime, [], f"refusing to unload {MODULE_NAME}: {busy}")
            actions.append(Action("unload"))
            runtime.add("params", dict(current.params), {})
        return KmodPlan(actions, runtime, file_diffs, None)

    wanted = request.params
    if not current.loaded:
        runtime.add("params", {}, dict(wanted))
        actions.append(Action("load", value=" ".join(kernel_arguments(wanted))))
        return KmodPlan(actions, runtime, file_diffs, None)

    return _plan_parameters(request, current, interfaces, KmodPlan(actions, runtime, file_diffs, None))


def _plan_parameters(
    request: KmodRequest, current: LoadedModule, interfaces: Sequence[str], so_far: KmodPlan
) -> KmodPlan:
    """``plan`` for a loaded module that should stay loaded: its parameters, written live where they can be, else a
    reload (when allowed and nothing uses the module). ``so_far`` holds the file actions already planned."""
    actions, runtime, file_diffs = so_far.actions, so_far.runtime, so_far.file_diffs
    wanted = request.params
    differences = []
    for parameter in PARAMETERS:
        loaded_value = current.params.get(parameter.name)
        if wanted[parameter.name] is None:
            continue  # not managed
        if loaded_value is None and wanted[parameter.name] == parameter.default:
            continue  # an older module without this parameter behaves as its default
        if loaded_value != wanted[parameter.name]:
            differences.append((parameter.name, loaded_value, wanted[parameter.name]))
    after = dict(current.params)
    after.update({name: value for name, loaded_value, value in differences})
    runtime.add("params", dict(current.params), after)
    if not differences:
        return KmodPlan(actions, runtime, file_diffs, None)

    live = [name for name, loaded_value, value in differences if BY_NAME[name].live and name in current.writable]
    if len(live) == len(differences):
        actions.extend(interval_writes(current.params, wanted, live))
        return KmodPlan(actions, runtime, file_diffs, None)

    listing = format_differences(differences)
    if not request.reload:
        return KmodPlan(
            [],
            runtime,
            [],
            f"{MODULE_NAME} is loaded with other parameters ({listing}); changing them needs a reload, which"
            " removes every KNI interface: set reload=true to allow it",
        )
    busy = _busy_reason(current, interfaces)
    if busy:
        return KmodPlan([], runtime, [], f"refusing to reload {MODULE_NAME} for {listing}: {busy}")
    actions.append(Action("unload"))
    actions.append(Action("load", value=" ".join(kernel_arguments(wanted))))
    return KmodPlan(actions, runtime, file_diffs, None)


def _modprobe(host: Host, argv: List[str], what: str) -> None:
    rc, out, err = host.run(argv)
    if rc != 0:
        detail = (err or out).strip() or "no output"
        raise KmodError(f"{what} failed (rc {rc}, `{' '.join(argv)}`): {detail}")


def apply(host: Host, request: KmodRequest, kmod_plan: KmodPlan) -> LoadedModule:
    """Carry out the plan's actions in order and return the module as sysfs shows it afterwards."""
    modprobe = None
    if any(action.kind in ("load", "unload") for action in kmod_plan.actions):
        modprobe = host.which("modprobe")
        if modprobe is None:
            raise KmodError("modprobe was not found; install kmod")
    for action in kmod_plan.actions:
        if action.kind == "write_file":
            text = desired_files(host.paths, request)[action.target]
            host.write_file(action.target, text or "")
        elif action.kind == "remove_file":
            host.remove_file(action.target)
        elif action.kind == "unload" and modprobe:
            _modprobe(host, [modprobe, "-r", MODULE_NAME], f"unloading {MODULE_NAME}")
        elif action.kind == "load" and modprobe:
            _modprobe(host, [modprobe, MODULE_NAME, *action.value.split()], f"loading {MODULE_NAME}")
        elif action.kind == "set_parameter":
            try:
                host.write_attribute(os.path.join(host.paths.sys_module_parameters, action.target), action.value)
            except HostError as exc:
                raise KmodError(f"setting {action.target} at runtime: {exc}") from exc
    result = read_module(host.paths)
    if request.state == "absent":
        if result.loaded:
            raise KmodError(f"{MODULE_NAME} is still loaded after modprobe -r")
        return result
    if not result.loaded:
        raise KmodError(f"{MODULE_NAME} is not loaded after modprobe")
    mismatches = [
        (name, value, request.params[name])
        for name, value in result.params.items()
        if request.params[name] is not None and value != request.params[name]
    ]
    if mismatches:
        raise KmodError(
            f"{MODULE_NAME} runs with other parameters than requested ({format_differences(mismatches)});"
            " check /etc/modprobe.d for conflicting options"
        )
    return result


def check_installed(host: Host) -> None:
    """Fail before anything changes when modprobe could not find rte_kni for the running kernel."""
    modinfo = host.which("modinfo")
    if modinfo is None:
        raise KmodFailure("modinfo was not found; install kmod")
    rc, out, err = host.run([modinfo, "-n", MODULE_NAME])
    if rc != 0 or not out.strip():
        release = host.paths.kernel_release()
        raise KmodFailure(
            f"{MODULE_NAME} is not installed for the running kernel {release} ({(err or out).strip() or 'not found'});"
            " install it first, for example with kernelnic.kni.kni_dkms"
        )


class KmodFailure(Exception):
    """The module must fail; ``result`` carries what is known (interfaces, differences)."""

    def __init__(self, message: str, result: Optional[Dict[str, Any]] = None) -> None:
        super().__init__(message)
        self.result = result or {}


def execute(
    host: Host,
    args: Mapping[str, Any],
    check_mode: bool,
    want_diff: bool,
    driver_of: Optional[DriverProbe] = None,
) -> Dict[str, Any]:
    """kni_kmod end to end: validate, read, plan, apply (unless check mode); the module's result dict."""
    try:
        params = validate(args.get("params"))
    except ParameterError as exc:
        raise KmodFailure(str(exc), {"errors": exc.errors}) from exc
    request = KmodRequest(
        state=args.get("state") or "present",
        params=params,
        reload=bool(args.get("reload")),
        persistent=bool(args.get("persistent")),
    )
    if request.state not in STATES:
        raise KmodFailure(f"state must be one of {', '.join(STATES)}, got {request.state!r}")
    current = read_module(host.paths)
    interfaces = kni_interfaces(host.paths, driver_of or ethtool_driver) if current.loaded else []
    kmod_plan = plan(host.paths, request, current, read_files(host.paths), interfaces)
    if kmod_plan.refusal:
        raise KmodFailure(kmod_plan.refusal, {"interfaces": interfaces, "params": dict(current.params)})
    if any(action.kind == "load" for action in kmod_plan.actions):
        check_installed(host)
    result: Dict[str, Any] = {
        "changed": kmod_plan.changed,
        "actions": [action.describe() for action in kmod_plan.actions],
        "interfaces": interfaces,
    }
    if want_diff:
        result["diff"] = kmod_plan.diff()
    if kmod_plan.changed and not check_mode:
        try:
            after = apply(host, request, kmod_plan)
        except (KmodError, HostError, OSError) as exc:
            raise KmodFailure(str(exc), result) from exc
        result["loaded"] = after.loaded
        result["params"] = dict(after.params)
    else:
        predicted = kmod_plan.runtime.before_after()["after"]
        result["loaded"] = bool(predicted["loaded"])
        result["params"] = dict(predicted.get("params", current.params if current.loaded else {}))
    return result
