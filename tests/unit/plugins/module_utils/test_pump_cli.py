# SPDX-License-Identifier: GPL-3.0-or-later
# Copyright: kernelnic.kni contributors
"""kni-pump CLI pieces: sd_notify, which desired state wins at start, exit code 2 for a bad configuration."""

from __future__ import annotations

import json
import socket
from pathlib import Path

import pytest
from ansible_collections.kernelnic.kni.plugins.module_utils._pump.cli import (
    initial_state,
    main,
    parse_run,
    parser,
    sd_notify,
)
from ansible_collections.kernelnic.kni.plugins.module_utils._pump.schema import parse_interface
from ansible_collections.kernelnic.kni.plugins.module_utils._pump.state import write_state


def test_sd_notify_sends_one_datagram(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = str(tmp_path / "notify")
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as listener:
        listener.bind(path)
        monkeypatch.setenv("NOTIFY_SOCKET", path)
        assert sd_notify("READY=1\nSTATUS=ok")
        assert listener.recv(100) == b"READY=1\nSTATUS=ok"
    monkeypatch.delenv("NOTIFY_SOCKET")
    assert not sd_notify("READY=1")


def write_config(path: Path, mtu: int) -> str:
    path.write_text(json.dumps({"version": 1, "interfaces": [{"name": "kni0", "backend": "null", "mtu": mtu}]}))
    return str(path)


def test_state_wins_until_the_config_file_changes(tmp_path: Path) -> None:
    config = write_config(tmp_path / "config.json", 1500)
    interfaces, digest, admin_up, addresses = initial_state(config, str(tmp_path))
    assert interfaces[0].mtu == 1500 and interfaces[0].mac is None and admin_up == () and not addresses
    # The daemon ran: it generated a MAC, a client changed the MTU, the operator set it up and gave it an address;
    # all are in the state.
    changed = parse_interface({"name": "kni0", "backend": "null", "mtu": 1400, "mac": "02:00:00:00:00:05"})
    write_state(str(tmp_path), [changed], digest, ["kni0"], {"kni0": ["192.0.2.1/24"], "gone": ["192.0.2.9/24"]})
    assert initial_state(config, str(tmp_path))[0::2] == ([changed], ("kni0",))
    assert initial_state(config, str(tmp_path)).addresses == {"kni0": ["192.0.2.1/24"]}
    # The operator edits the file: it wins, and the interface keeps its MAC, administrative state and addresses.
    config = write_config(tmp_path / "config.json", 1300)
    interfaces, _digest, admin_up, addresses = initial_state(config, str(tmp_path))
    assert interfaces[0].mtu == 1300 and interfaces[0].mac == "02:00:00:00:00:05" and admin_up == ("kni0",)
    assert addresses == {"kni0": ["192.0.2.1/24"]}
    assert initial_state(None, str(tmp_path))[0::2] == ([changed], ("kni0",))


def test_invalid_config_exits_2_naming_the_field(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = tmp_path / "config.json"
    config.write_text(json.dumps({"version": 1, "interfaces": [{"name": "kni0", "backend": "tap"}]}))
    code = main(["run", "--config", str(config), "--state-dir", str(tmp_path / "s"), "--socket", str(tmp_path / "c")])
    assert code == 2
    assert "kni-pump: ERROR invalid configuration: interfaces[0].backend" in capsys.readouterr().err


@pytest.mark.parametrize(
    "argv",
    [
        ["run"],
        ["--log-level", "DEBUG", "run", "--config", "/etc/c.json", "--state-dir=/s", "--max-interfaces", "2"],
        ["run", "--socket", "/x.sock", "--socket-group", "adm", "--pool-size=512", "--iova", "pa"],
    ],
)
def test_run_command_line_parses_as_argparse_would(argv: list) -> None:
    assert vars(parse_run(argv)) == vars(parser().parse_args(argv))


@pytest.mark.parametrize(
    "argv",
    [
        [],
        ["status"],
        ["run", "--help"],
        ["run", "--iova", "xx"],
        ["run", "--max-interfaces", "two"],
        ["run", "--config"],
        ["run", "--log-level", "INFO"],
        ["--log-level", "LOUD", "run"],
        ["run", "extra"],
    ],
)
def test_other_command_lines_are_left_to_argparse(argv: list) -> None:
    assert parse_run(argv) is None
