# SPDX-License-Identifier: GPL-3.0-or-later
# Copyright: kernelnic.kni contributors
"""kni-pump state persistence: round trip, atomic replacement, corrupt files refused with the path."""

from __future__ import annotations

import hashlib
import os
import stat
from pathlib import Path

import pytest
from ansible_collections.kernelnic.kni.plugins.module_utils._pump import state as pump_state
from ansible_collections.kernelnic.kni.plugins.module_utils._pump.schema import parse_interface
from ansible_collections.kernelnic.kni.plugins.module_utils._pump.state import (
    StateError,
    read_state,
    remove_stale_temporaries,
    write_state,
)

KNI0 = parse_interface({"name": "kni0", "backend": "null", "mac": "02:00:00:00:00:01", "mtu": 1400})
KNI1 = parse_interface({"name": "kni1", "backend": "afpacket:veth0", "carrier": "on", "core": 1})


def test_round_trip(tmp_path: Path) -> None:
    assert read_state(str(tmp_path)) is None
    write_state(str(tmp_path), [KNI0, KNI1], "abc")
    state = read_state(str(tmp_path))
    assert state is not None
    assert state.interfaces == [KNI0, KNI1]
    assert state.config_digest == "abc"
    assert state.admin_up == ()
    assert os.listdir(tmp_path) == ["state.json"]  # no temporary left behind


def test_admin_state_round_trip_and_refusal(tmp_path: Path) -> None:
    write_state(str(tmp_path), [KNI0, KNI1], None, ["kni1", "gone0"])
    state = read_state(str(tmp_path))
    assert state is not None and state.admin_up == ("kni1",)  # only names the state declares
    path = tmp_path / "state.json"
    path.write_text('{"version": 1, "interfaces": [], "admin_up": "kni0"}')
    with pytest.raises(StateError, match=f"{path}: admin_up must be a list"):
        read_state(str(tmp_path))


def test_write_is_temp_fsync_rename(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    events: list[str] = []
    real_fsync, real_replace = os.fsync, os.replace

    def fsync(fd: int) -> None:
        events.append("fsync-dir" if os.path.isdir(f"/proc/self/fd/{fd}") else "fsync-file")
        real_fsync(fd)

    def replace(source: str, target: str) -> None:
        assert os.path.basename(source).startswith(".state.json.")
        assert os.path.dirname(source) == str(tmp_path)  # same directory: rename is atomic
        events.append("rename")
        real_replace(source, target)

    monkeypatch.setattr(os, "fsync", fsync)
    monkeypatch.setattr(os, "replace", replace)
    write_state(str(tmp_path), [KNI0], None)
    assert events == ["fsync-file", "rename", "fsync-dir"]


def test_failed_write_keeps_old_state(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    write_state(str(tmp_path), [KNI0], "old")

    def no_space(fd: int) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(pump_state.os, "fsync", no_space)
    with pytest.raises(StateError, match="No space left"):
        write_state(str(tmp_path), [KNI0, KNI1], "new")
    monkeypatch.undo()
    state = read_state(str(tmp_path))
    assert state is not None and state.interfaces == [KNI0] and state.config_digest == "old"
    assert os.listdir(tmp_path) == ["state.json"]


def test_corrupt_state_names_path_and_field(tmp_path: Path) -> None:
    path = tmp_path / "state.json"
    path.write_text("{not json")
    with pytest.raises(StateError, match=f"{path} is not valid JSON"):
        read_state(str(tmp_path))
    path.write_text('{"version": 1, "interfaces": [{"name": "kni0", "backend": "null", "mtu": 5}]}')
    with pytest.raises(StateError, match=r"interfaces\[0\]\.mtu"):
        read_state(str(tmp_path))


def test_stale_temporaries_are_removed(tmp_path: Path) -> None:
    (tmp_path / ".state.json.x1.tmp").write_text("partial")
    write_state(str(tmp_path), [KNI0], None)
    remove_stale_temporaries(str(tmp_path))
    assert os.listdir(tmp_path) == ["state.json"]


def test_config_digest_is_sha256() -> None:
    assert pump_state.config_digest(b"{}\n") == hashlib.sha256(b"{}\n").hexdigest()


def test_state_file_is_private_and_no_temporary_is_left(tmp_path: Path) -> None:
    pump_state.write_state(str(tmp_path), [KNI0], None)
    assert os.listdir(tmp_path) == [pump_state.STATE_FILE]
    assert stat.S_IMODE(os.stat(tmp_path / pump_state.STATE_FILE).st_mode) == 0o600
