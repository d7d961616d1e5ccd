# SPDX-License-Identifier: GPL-3.0-or-later
# Copyright: kernelnic.kni contributors
"""kni-pump's persisted desired state: one JSON file, replaced atomically.

The file is written to a temporary name in the same directory, fsync'ed, renamed over ``state.json`` and the
directory fsync'ed, so after a crash or power cut the file is either the old state or the new one, never a mix.
It records the digest of the configuration file it was derived from: on start the daemon uses the configuration
file if it changed since (an operator or Ansible edited it), else the state, which includes control-socket changes.
It also records which interfaces were administratively up (``admin_up``) and their configured addresses
(``addresses``): a restarted daemon (after a crash, or ``kill -9`` and systemd's restart) brings those up again and
puts the addresses back, so an operator's ``ip link set kni0 up`` or ``ip addr add`` survives it.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
from typing import Dict, List, Mapping, NamedTuple, Optional, Sequence, Tuple

from ansible_collections.kernelnic.kni.plugins.module_utils._pump.schema import (
    ConfigError,
    InterfaceConfig,
    desired_state_document,
    parse_desired_state,
)

STATE_FILE = "state.json"


class StateError(Exception):
    """The state file could not be read or written; the message names the path."""


class PersistedState(NamedTuple):
    interfaces: List[InterfaceConfig]
    config_digest: Optional[str]
    admin_up: Tuple[str, ...] = ()  # names of the interfaces that were administratively up
    addresses: Optional[Dict[str, List[str]]] = None  # configured addresses ("ip/prefixlen") by interface name


def config_digest(data: bytes) -> str:
    import hashlib  # pylint: disable=import-outside-toplevel  # only with --config: it loads OpenSSL's libcrypto

    return hashlib.sha256(data).hexdigest()


def state_path(state_dir: str) -> str:
    return os.path.join(state_dir, STATE_FILE)


def write_state(
    state_dir: str,
    interfaces: Sequence[InterfaceConfig],
    digest: Optional[str],
    admin_up: Sequence[str] = (),
    addresses: Optional[Mapping[str, Sequence[str]]] = None,
) -> None:
    """Atomically replace the state file (write temp + fsync + rename + fsync directory)."""
    document = desired_state_document(interfaces)
    document["config_digest"] = digest
    document["admin_up"] = sorted(admin_up)
    document["addresses"] = {name: list(found) for name, found in sorted((addresses or {}).items()) if found}
    data = (json.dumps(document, indent=2, sort_keys=True) + "\n").encode()
    try:
        # What tempfile.mkstemp does (mode 0600, O_EXCL), without importing tempfile's dependencies at start-up.
        temporary = os.path.join(state_dir, f".{STATE_FILE}.{os.urandom(6).hex()}.tmp")
        fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
    except OSError as exc:
        raise StateError(f"cannot create a temporary file in {state_dir}: {exc.strerror}") from exc
    try:
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view) :]
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(temporary, state_path(state_dir))
    except OSError as exc:
        with contextlib.suppress(OSError):
            os.unlink(temporary)
        raise StateError(f"cannot write {state_path(state_dir)}: {exc.strerror}") from exc
    _fsync_directory(state_dir)


def _fsync_directory(path: str) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    except OSError as exc:
        if exc.errno not in (errno.EINVAL, errno.EROFS):  # some file systems cannot sync a directory
            raise StateError(f"cannot sync directory {path}: {exc.strerror}") from exc
    finally:
        os.close(fd)


def read_state(state_dir: str) -> Optional[PersistedState]:
    """The persisted state, or None if there is none yet; a corrupt file raises ``StateError``."""
    path = state_path(state_dir)
    try:
        with open(path, "rb") as handle:
            data = handle.read()
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise StateError(f"cannot read {path}: {exc.strerror}") from exc
    try:
        document = json.loads(data)
    except ValueError as exc:
        raise StateError(f"{path} is not valid JSON ({exc}); fix or remove it") from exc
    if not isinstance(document, dict):
        raise StateError(f"{path} does not hold a JSON object")
    digest = document.pop("config_digest", None)
    admin_up = document.pop("admin_up", [])  # absent in a state written before it was recorded
    if not isinstance(admin_up, list) or not all(isinstance(name, str) for name in admin_up):
        raise StateError(f"{path}: admin_up must be a list of interface names")
    addresses = document.pop("addresses", {})  # likewise
    if not isinstance(addresses, dict) or not all(
        isinstance(found, list) and all(isinstance(address, str) for address in found) for found in addresses.values()
    ):
        raise StateError(f"{path}: addresses must map interface names to lists of addresses")
    try:
        interfaces = parse_desired_state(document)
    except ConfigError as exc:
        raise StateError(f"{path}: {exc}") from exc
    known = [interface.name for interface in interfaces]
    up = tuple(name for name in admin_up if name in known)
    kept = {name: found for name, found in addresses.items() if name in known}
    return PersistedState(interfaces, digest if isinstance(digest, str) else None, up, kept)


def remove_stale_temporaries(state_dir: str) -> None:
    """Temporary files left by a crash between create and rename; they are never the state."""
    try:
        names = os.listdir(state_dir)
    except OSError:
        return
    for name in names:
        if name.startswith(f".{STATE_FILE}.") and name.endswith(".tmp"):
            with contextlib.suppress(OSError):
                os.unlink(os.path.join(state_dir, name))
