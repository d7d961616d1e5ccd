# SPDX-License-Identifier: GPL-3.0-or-later
# Copyright: kernelnic.kni contributors
"""rte_kni through DKMS: status parsing, kernel and header discovery, plan, apply and verify (Secure Boot and
vermagic: ``dkms_checks``).

DKMS does the work (``dkms add/build/install/remove/status``); this file only decides which of those commands a
host needs. ``parse_status`` reads both output formats:

* DKMS 2.x: ``rte_kni, 1.0, 6.1.0-56-amd64, x86_64: installed`` and ``rte_kni, 1.0: added``
* DKMS 3.x: ``rte_kni/1.0, 6.1.0-56-amd64, x86_64: installed`` and ``rte_kni/1.0: added``

with optional trailing notes such as ``(original_module exists)`` or ``(WARNING! ...)``.
"""

from __future__ import annotations

import os
import re
from typing import Any, Callable, Dict, List, Mapping, NamedTuple, Optional, Sequence, Tuple

from ansible_collections.kernelnic.kni.plugins.module_utils._modules.changes import DifferenceTracker
from ansible_collections.kernelnic.kni.plugins.module_utils._modules.dkms_checks import (
    CONF_VALUE,
    read_vermagic,
    secure_boot,
    secure_boot_warning,
    vermagic_problem,
)
from ansible_collections.kernelnic.kni.plugins.module_utils._modules.host import MODULE_NAME, Host, read_text
from ansible_collections.kernelnic.kni.plugins.module_utils._modules.kernels import (
    missing_headers_message,
    target_kernels,
)

STATES = ("present", "absent")

_STATUS_LINE = re.compile(
    r"^(?P<module>[^\s,/:]+)(?:/|,\s*)(?P<version>[^\s,:/]+)"
    r"(?:,\s*(?P<kernel>[^\s,:]+),\s*(?P<arch>[^\s,:]+))?"
    r"\s*:\s*(?P<state>[A-Za-z][A-Za-z-]*)(?P<extra>.*)$"
)
# A kernel release (``uname -r``, at most 64 characters) or a DKMS module version: both become path components
# (/lib/modules/<release>, /usr/src/rte_kni-<version>) and dkms arguments, so nothing else is let through.
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._+~-]{0,63}$")
_NAME_RULE = "letters, digits and . _ + ~ -, starting with a letter or digit, at most 64 characters"


class StatusEntry(NamedTuple):
    module: str
    version: str
    kernel: Optional[str]  # None for "added" lines
    arch: Optional[str]
    state: str  # added, built, installed, installed-weak
    note: str


def parse_status(text: str) -> Tuple[List[StatusEntry], List[str]]:
    """Entries from ``dkms status`` output (2.x or 3.x) and the lines that are not status lines."""
    entries: List[StatusEntry] = []
    other: List[str] = []
    for line in text.splitlines():
        line = line.strip()
        if not line:
            continue
        match = _STATUS_LINE.match(line)
        if match is None:
            other.append(line)
            continue
        entries.append(
            StatusEntry(
                match.group("module"),
                match.group("version"),
                match.group("kernel"),
                match.group("arch"),
                match.group("state").lower(),
                match.group("extra").strip(),
            )
        )
    return entries, other


def kernel_states(entries: Sequence[StatusEntry], version: str) -> Dict[str, str]:
    """``{kernel: built|installed}`` for one version of rte_kni."""
    states: Dict[str, str] = {}
    for entry in entries:
        if entry.module == MODULE_NAME and entry.version == version and entry.kernel:
            states[entry.kernel] = entry.state
    return states


def versions(entries: Sequence[StatusEntry]) -> List[str]:
    found: List[str] = []
    for entry in entries:
        if entry.module == MODULE_NAME and entry.version not in found:
            found.append(entry.version)
    return found


def read_dkms_conf(source: str) -> Dict[str, str]:
    """The PACKAGE_NAME and PACKAGE_VERSION (and any other simple assignments) of ``source``/dkms.conf."""
    text = read_text(os.path.join(source, "dkms.conf"))
    values: Dict[str, str] = {}
    for line in (text or "").splitlines():
        match = CONF_VALUE.match(line)
        if match:
            values[match.group("key")] = match.group("value").strip("\"'")
    return values


class DkmsRequest(NamedTuple):
    state: str
    version: Optional[str]
    source: Optional[str]
    kernels: Optional[List[str]]


class Command(NamedTuple):
    verb: str  # add, build, install, remove
    version: str
    kernel: Optional[str] = None  # None: every kernel (remove --all)
    source: Optional[str] = None

    def argv(self, dkms: str) -> List[str]:
        if self.verb == "add":
            if self.source and self.source.rstrip("/") != f"/usr/src/{MODULE_NAME}-{self.version}":
                return [dkms, "add", self.source]
            return [dkms, "add", "-m", MODULE_NAME, "-v", self.version]
        argv = [dkms, self.verb, "-m", MODULE_NAME, "-v", self.version]
        if self.kernel:
            return [*argv, "-k", self.kernel]
        return [*argv, "--all"]


class DkmsPlan(NamedTuple):
    commands: List[Command]
    tracker: DifferenceTracker


def plan(request: DkmsRequest, entries: Sequence[StatusEntry], targets: Sequence[str]) -> DkmsPlan:
    """The DKMS commands that bring the status to the request. ``request.version`` is resolved for present."""
    tracker = DifferenceTracker()
    commands: List[Command] = []
    known = versions(entries)
    if request.state == "present":
        version = request.version or ""
        states = kernel_states(entries, version)
        tracker.add("version", version if version in known else None, version)
        if version not in known:
            commands.append(Command("add", version, source=request.source))
        for kernel in targets:
            current = states.get(kernel, "added" if version in known else "absent")
            tracker.add(kernel, current, "installed")
            if current == "installed":
                continue
            if current != "built":
                commands.append(Command("build", version, kernel))
            commands.append(Command("install", version, kernel))
        return DkmsPlan(commands, tracker)

    chosen = [request.version] if request.version else known
    for version in chosen:
        if version not in known:
            continue
        states = kernel_states(entries, version)
        if request.kernels:
            for kernel in request.kernels:
                if kernel in states:
                    tracker.add(f"{version}/{kernel}", states[kernel], None)
                    commands.append(Command("remove", version, kernel))
        else:
            tracker.add(version, "added", None)
            for kernel, state in states.items():
                tracker.add(f"{version}/{kernel}", state, None)
            commands.append(Command("remove", version))
    return DkmsPlan(commands, tracker)


class DkmsError(Exception):
    """A DKMS command failed; the message carries its output."""


def run_dkms(host: Host, dkms: str, argv: List[str]) -> str:
    rc, out, err = host.run(argv)
    if rc != 0:
        output = "\n".join(part.strip() for part in (out, err) if part.strip())
        raise DkmsError(f"`{' '.join(argv)}` failed (rc {rc}): {output[-3000:] or 'no output'}")
    return out


def read_status(host: Host, dkms: str) -> Tuple[List[StatusEntry], List[str]]:
    rc, out, err = host.run([dkms, "status", "-m", MODULE_NAME])
    entries, other = parse_status(out)
    problems = [line for line in other + err.splitlines() if line.strip()]
    if rc != 0 and not entries:
        problems.append(f"dkms status exited with rc {rc}")
    return entries, problems


class DkmsFailure(Exception):
    """The module must fail; ``result`` carries what is known so far."""

    def __init__(self, message: str, result: Optional[Dict[str, Any]] = None) -> None:
        super().__init__(message)
        self.result = result or {}


def check_name(value: Any, field: str, example: str) -> str:
    """A kernel release or module version, checked against ``_NAME``; raises ``DkmsFailure`` naming ``field``."""
    if not isinstance(value, str) or not _NAME.match(value):
        raise DkmsFailure(f"{field}: {value!r} is not {example}: use only {_NAME_RULE}", {"field": field})
    return value


def check_arguments(args: Mapping[str, Any]) -> None:
    """``version`` and each of ``kernels``, before anything is read or run."""
    if args.get("version") is not None:
        check_name(args["version"], "version", "a DKMS module version (like 1.0)")
    for index, kernel in enumerate(args.get("kernels") or []):
        check_name(kernel, f"kernels[{index}]", "a kernel release (like 6.1.0-56-amd64)")


def resolve_version(host: Host, args: Mapping[str, Any]) -> Tuple[str, str]:
    """(version, source) for state=present: version from the argument or from source/dkms.conf."""
    version = args.get("version")
    source = args.get("source")
    if not version:
        if not source:
            raise DkmsFailure("version is required unless source points at an rte_kni tree with a dkms.conf")
        version = read_dkms_conf(host.paths.path(source)).get("PACKAGE_VERSION")
        if not version:
            raise DkmsFailure(f"{source}/dkms.conf does not exist or sets no PACKAGE_VERSION; set version")
        check_name(version, f"PACKAGE_VERSION in {source}/dkms.conf", "a DKMS module version (like 1.0)")
    return str(version), str(source or f"/usr/src/{MODULE_NAME}-{version}")


def check_source(host: Host, source: str, version: str) -> None:
    """The tree ``dkms add`` gets must be rte_kni at ``version``."""
    conf = read_dkms_conf(host.paths.path(source))
    if not conf:
        raise DkmsFailure(f"{source}/dkms.conf was not found: source must be the rte_kni source tree (kmod/)")
    if conf.get("PACKAGE_NAME") != MODULE_NAME:
        raise DkmsFailure(f"{source}/dkms.conf builds {conf.get('PACKAGE_NAME')!r}, not {MODULE_NAME}")
    if conf.get("PACKAGE_VERSION") != version:
        raise DkmsFailure(
            f"{source}/dkms.conf has PACKAGE_VERSION {conf.get('PACKAGE_VERSION')!r}, but version is {version!r}"
        )


class Preflight(NamedTuple):
    """What ``preflight`` found: ``dkms`` None when there is no dkms and nothing to remove."""

    dkms: Optional[str]
    request: DkmsRequest
    entries: List[StatusEntry]
    targets: List[str]
    before: Dict[str, str]  # state by kernel, as DKMS listed it before any change
    result: Dict[str, Any]  # the module's result so far


def preflight(host: Host, args: Mapping[str, Any], warn: Callable[[str], None]) -> Preflight:
    """Everything checked before a change: arguments, dkms, the source, the kernels and their headers, Secure Boot,
    and the vermagic of what DKMS already lists as installed."""
    state = args.get("state") or "present"
    check_arguments(args)
    explicit = list(args.get("kernels") or []) or None
    result: Dict[str, Any] = {"changed": False, "commands": [], "kernels": [], "skipped_kernels": []}
    dkms = host.which("dkms")
    if dkms is None:
        if state == "absent":
            result.update(version=args.get("version"), source=args.get("source"))
            return Preflight(
                None, DkmsRequest(state, args.get("version"), args.get("source"), explicit), [], [], {}, result
            )
        raise DkmsFailure("dkms was not found; install the dkms package")
    entries, problems = read_status(host, dkms)
    for line in problems:
        warn(f"dkms status: {line}")

    if state == "present":
        version, source = resolve_version(host, args)
        if version not in versions(entries):
            check_source(host, source, version)
        targets, skipped, missing = target_kernels(host.paths, host.paths.kernel_release(), explicit)
        if missing:
            raise DkmsFailure(missing_headers_message(host.paths, missing), {"missing_headers": missing})
        if skipped:
            warn(f"no kernel headers, not building for: {', '.join(skipped)}")
        boot = secure_boot(host)
        boot_warning = secure_boot_warning(boot)
        if boot_warning:
            warn(boot_warning)
        result.update(version=version, source=source, skipped_kernels=skipped, secure_boot=boot.as_dict())
        request = DkmsRequest(state, version, source, explicit)
    else:
        version = args.get("version")
        targets = []
        request = DkmsRequest(state, version, args.get("source"), explicit)
        result.update(version=version, source=args.get("source"))

    before = kernel_states(entries, version) if version else {}
    if state == "present":
        for kernel in targets:
            if before.get(kernel) == "installed":
                problem = vermagic_problem(kernel, read_vermagic(host, kernel))
                if problem:
                    raise DkmsFailure(f"DKMS lists {MODULE_NAME} {version} as installed for {kernel}, but {problem}")
    return Preflight(dkms, request, entries, targets, before, result)


def apply(host: Host, checked: Preflight, check_mode: bool, want_diff: bool) -> Tuple[DkmsPlan, Dict[str, str]]:
    """Plan the DKMS commands and run them (not in check mode); the plan and the states by kernel after it."""
    result, dkms, version = checked.result, checked.dkms or "dkms", checked.request.version
    dkms_plan = plan(checked.request, checked.entries, checked.targets)
    result["changed"] = bool(dkms_plan.commands)
    result["commands"] = [" ".join(command.argv("dkms")) for command in dkms_plan.commands]
    if want_diff and dkms_plan.tracker.has_differences():
        result["diff"] = dkms_plan.tracker.before_after()

    after = checked.before
    if dkms_plan.commands and not check_mode:
        for command in dkms_plan.commands:
            try:
                run_dkms(host, dkms, command.argv(dkms))
            except DkmsError as exc:
                raise DkmsFailure(str(exc), result) from exc
        entries, _problems = read_status(host, dkms)
        after = kernel_states(entries, version) if version else {}
    return dkms_plan, after


def verify(
    host: Host, checked: Preflight, dkms_plan: DkmsPlan, after: Mapping[str, str], check_mode: bool
) -> List[Dict[str, Any]]:
    """Each target kernel's state, with the vermagic of what modprobe would load; fails where it does not match or
    (not in check mode) where DKMS does not list the module as installed after ``present``."""
    before = checked.before
    kernels = []
    for kernel in checked.targets:
        entry: Dict[str, Any] = {"kernel": kernel, "state": after.get(kernel, "absent"), "before": before.get(kernel)}
        if check_mode and dkms_plan.commands:
            entry["state"] = "installed"
        if entry["state"] == "installed" and not (check_mode and before.get(kernel) != "installed"):
            found = read_vermagic(host, kernel)
            entry.update(vermagic=found.vermagic, module_path=found.filename, vermagic_ok=found.matches(kernel))
            problem = vermagic_problem(kernel, found)
            if problem:
                raise DkmsFailure(f"after dkms install for {kernel}: {problem}", checked.result)
        else:
            entry.update(vermagic=None, module_path=None, vermagic_ok=None)
        kernels.append(entry)
    if checked.request.state == "present" and not check_mode:
        failed = [entry["kernel"] for entry in kernels if entry["state"] != "installed"]
        if failed:
            version = checked.request.version
            raise DkmsFailure(f"DKMS does not list {MODULE_NAME} {version} as installed for {', '.join(failed)}")
    return kernels


def execute(
    host: Host,
    args: Mapping[str, Any],
    check_mode: bool,
    want_diff: bool,
    warn: Callable[[str], None],
) -> Dict[str, Any]:
    """kni_dkms end to end (preflight, apply, verify): the module's result dict; warnings go to ``warn`` as they
    arise."""
    checked = preflight(host, args, warn)
    if checked.dkms is None:
        return checked.result
    dkms_plan, after = apply(host, checked, check_mode, want_diff)
    checked.result["kernels"] = verify(host, checked, dkms_plan, after, check_mode)
    return checked.result
