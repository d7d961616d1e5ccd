# SPDX-License-Identifier: GPL-3.0-or-later
# Copyright: kernelnic.kni contributors
"""What decides whether rte_kni as DKMS builds it will load: Secure Boot with the key DKMS signs with, and the
vermagic of the module modprobe would pick."""

from __future__ import annotations

import glob
import os
import re
from typing import Dict, List, NamedTuple, Optional, Tuple

from ansible_collections.kernelnic.kni.plugins.module_utils._modules.host import MODULE_NAME, Host, HostPaths, read_text

DEFAULT_SIGNING_KEY = "/var/lib/dkms/mok.key"
DEFAULT_CERTIFICATE = "/var/lib/dkms/mok.pub"
# A shell-style KEY=value line of dkms.conf or DKMS's framework.conf.
CONF_VALUE = re.compile(r"""^\s*(?P<key>[A-Za-z_][A-Za-z0-9_]*)=(?P<value>"[^"]*"|'[^']*'|[^\s#;]*)""")


class SecureBoot(NamedTuple):
    state: str  # enabled, disabled, unknown
    detail: str
    signing_key: str
    certificate: str
    certificate_exists: bool
    key_enrolled: Optional[bool]

    def as_dict(self) -> Dict[str, object]:
        return dict(self._asdict())


def signing_files(paths: HostPaths) -> Tuple[str, str]:
    """The (key, certificate) DKMS signs with: ``mok_signing_key`` / ``mok_certificate`` from framework.conf
    (and framework.conf.d, later files winning, as DKMS reads them), else /var/lib/dkms/mok.key and mok.pub."""
    key, certificate = DEFAULT_SIGNING_KEY, DEFAULT_CERTIFICATE
    files = [paths.dkms_framework_conf, *sorted(glob.glob(os.path.join(paths.dkms_framework_conf_d, "*.conf")))]
    for path in files:
        for line in (read_text(path) or "").splitlines():
            match = CONF_VALUE.match(line)
            if not match:
                continue
            value = match.group("value").strip("\"'")
            if match.group("key") == "mok_signing_key" and value:
                key = value
            elif match.group("key") == "mok_certificate" and value:
                certificate = value
    return key, certificate


def parse_sb_state(text: str) -> str:
    lowered = text.lower()
    if "secureboot enabled" in lowered:
        return "enabled"
    if "secureboot disabled" in lowered:
        return "disabled"
    return "unknown"


def parse_test_key(text: str) -> Optional[bool]:
    lowered = text.lower()
    if "is already enrolled" in lowered:
        return True
    if "is not enrolled" in lowered:
        return False
    return None


def secure_boot(host: Host) -> SecureBoot:
    key, certificate = signing_files(host.paths)
    certificate_exists = os.path.isfile(host.paths.path(certificate)) if not certificate.startswith("pkcs11:") else True
    mokutil = host.which("mokutil")
    if mokutil is None:
        return SecureBoot("unknown", "mokutil is not installed", key, certificate, certificate_exists, None)
    rc, out, err = host.run([mokutil, "--sb-state"])
    text = (out + "\n" + err).strip()
    state = parse_sb_state(text)
    enrolled = None
    if state == "enabled" and certificate_exists and not certificate.startswith("pkcs11:"):
        rc, out, err = host.run([mokutil, "--test-key", certificate])
        enrolled = parse_test_key(out + "\n" + err)
    return SecureBoot(
        state, text.splitlines()[0] if text else f"mokutil rc {rc}", key, certificate, certificate_exists, enrolled
    )


def secure_boot_warning(info: SecureBoot) -> Optional[str]:
    if info.state != "enabled":
        return None
    if not info.certificate_exists:
        return (
            f"Secure Boot is enabled and {info.certificate} does not exist: DKMS will create a signing key "
            f"({info.signing_key}); rte_kni loads only after `mokutil --import {info.certificate}` and a reboot "
            "with console access to confirm the enrolment"
        )
    if info.key_enrolled is False:
        return (
            f"Secure Boot is enabled and the DKMS signing certificate {info.certificate} is not enrolled: run "
            f"`mokutil --import {info.certificate}` and confirm the enrolment at the console after a reboot"
        )
    return None


class Vermagic(NamedTuple):
    vermagic: Optional[str]
    filename: Optional[str]

    def matches(self, kernel: str) -> bool:
        return bool(self.vermagic) and (self.vermagic or "").split()[0] == kernel


def read_vermagic(host: Host, kernel: str) -> Vermagic:
    """What modprobe would load for ``kernel``: ``modinfo -k <kernel> rte_kni``'s vermagic and filename."""
    modinfo = host.which("modinfo")
    if modinfo is None:
        return Vermagic(None, None)
    values: List[Optional[str]] = []
    for field in ("vermagic", "filename"):
        result = host.run([modinfo, "-F", field, "-k", kernel, MODULE_NAME])
        text = result[1].strip().splitlines()
        values.append(text[0].strip() if result[0] == 0 and text else None)
    return Vermagic(values[0], values[1])


def vermagic_problem(kernel: str, found: Vermagic) -> Optional[str]:
    if found.matches(kernel):
        return None
    if not found.vermagic:
        return f"modinfo finds no {MODULE_NAME} for {kernel}"
    return f"{found.filename or MODULE_NAME} has vermagic {found.vermagic!r}, which does not match kernel {kernel}"
