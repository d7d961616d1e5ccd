# SPDX-License-Identifier: GPL-3.0-or-later
# Copyright: kernelnic.kni contributors
"""kni-pump as a command, against control sockets that misbehave and with bad options or files: every failure is
one stderr line that names the socket, file or option, with exit code 1 (runtime) or 2 (invalid input), and never
a Python traceback."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import List, Tuple

import pytest

from tests.collection_path import ensure_collection_path
from tests.unit.plugins.hostile_pump import hostile_pump

MODULE = "ansible_collections.kernelnic.kni.plugins.module_utils._pump.cli"
TIMEOUT = "0.5"


def kni_pump(*args: str, stdin: str = "") -> Tuple[int, str, str]:
    env = dict(os.environ, PYTHONPATH=ensure_collection_path(importable=False))
    done = subprocess.run(
        [sys.executable, "-m", MODULE, *args],
        input=stdin,
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        check=False,
    )
    return done.returncode, done.stdout, done.stderr


def one_error_line(stderr: str) -> str:
    assert "Traceback" not in stderr, stderr
    lines = stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("kni-pump: ERROR "), stderr
    return lines[0]


@pytest.fixture
def interface_file(tmp_path: Path) -> str:
    path = tmp_path / "kni0.json"
    path.write_text('{"name": "kni0", "backend": "null"}')
    return str(path)


def client_commands(interface_file: str) -> List[List[str]]:
    return [["status"], ["get", "kni0"], ["stats"], ["delete", "kni0"], ["apply", interface_file]]


@pytest.mark.parametrize(
    ("behaviour", "expected"),
    [
        ("silent", "did not answer on its control socket {path} within 0.5 s"),
        ("closes", "kni-pump closed the control connection on {path} without a reply"),
        ("garbage", "kni-pump's reply on {path} is not valid JSON: "),
        ("list", "kni-pump's reply on {path} must be a JSON object, not a list"),
        ("ok-string", "on {path}: field 'ok' must be true or false, but it is a string"),
    ],
)
def test_misbehaving_socket_is_one_line_naming_it(
    tmp_path: Path, interface_file: str, behaviour: str, expected: str
) -> None:
    path = str(tmp_path / "control.sock")
    with hostile_pump(path, behaviour):
        for command in client_commands(interface_file):
            code, stdout, stderr = kni_pump(*command, "--socket", path, "--timeout", TIMEOUT)
            line = one_error_line(stderr)
            assert code == 1 and stdout == "", (command, code, stdout)
            assert expected.format(path=path) in line, (command, line)


@pytest.mark.parametrize(
    ("behaviour", "expected"),
    [
        ("ok-only", "kni-pump's reply to 'list' on {path}: field 'interfaces' must be a list, but it is missing"),
        ("bad-entries", "kni-pump's reply to 'list' on {path}: each entry of 'interfaces' must be an object"),
    ],
)
def test_status_checks_the_reply_fields(tmp_path: Path, behaviour: str, expected: str) -> None:
    path = str(tmp_path / "control.sock")
    with hostile_pump(path, behaviour):
        code, stdout, stderr = kni_pump("status", "--socket", path, "--timeout", TIMEOUT)
    assert code == 1 and stdout == ""
    assert expected.format(path=path) in one_error_line(stderr)


def test_refusal_without_an_error_object(tmp_path: Path) -> None:
    path = str(tmp_path / "control.sock")
    with hostile_pump(path, "error-string"):
        code, stdout, stderr = kni_pump("status", "--socket", path, "--timeout", TIMEOUT)
    assert code == 2 and stdout == "" and one_error_line(stderr) == "kni-pump: ERROR out of cheese"


def test_no_pump_names_the_socket_not_the_file(tmp_path: Path, interface_file: str) -> None:
    path = str(tmp_path / "none.sock")
    for command in client_commands(interface_file):
        code, _stdout, stderr = kni_pump(*command, "--socket", path)
        line = one_error_line(stderr)
        assert code == 1, (command, code)
        assert f"cannot connect to kni-pump's control socket {path}: No such file or directory" in line, line
        assert interface_file not in line


def test_apply_names_a_missing_or_invalid_file(tmp_path: Path) -> None:
    path = str(tmp_path / "none.sock")  # the file is read before the pump is contacted
    missing = str(tmp_path / "missing.json")
    code, _stdout, stderr = kni_pump("apply", missing, "--socket", path)
    assert code == 2 and f"{missing}: cannot read it: No such file or directory" in one_error_line(stderr)
    invalid = tmp_path / "invalid.json"
    invalid.write_text('{"name": "kni0",')
    code, _stdout, stderr = kni_pump("apply", str(invalid), "--socket", path)
    assert code == 2 and f"{invalid}: not valid JSON: " in one_error_line(stderr)
    code, _stdout, stderr = kni_pump("apply", "-", "--socket", path, stdin="[")
    assert code == 2 and "standard input: not valid JSON: " in one_error_line(stderr)


def test_bad_timeout_is_a_usage_error(tmp_path: Path) -> None:
    code, _stdout, stderr = kni_pump("status", "--socket", str(tmp_path / "none.sock"), "--timeout", "0")
    assert code == 2 and "Traceback" not in stderr
    assert "--timeout: must be a number of seconds above 0" in stderr


@pytest.mark.parametrize(
    ("options", "expected"),
    [
        (["--socket-group", "nosuchgroup"], "--socket-group: there is no group 'nosuchgroup'"),
        (["--max-interfaces", "-1"], "--max-interfaces: must be at least 1, not -1"),
        (["--max-interfaces=0"], "--max-interfaces: must be at least 1, not 0"),
        (["--pool-size", "0"], "--pool-size: must be at least 1 mbuf, not 0"),
    ],
)
def test_run_refuses_bad_options_with_exit_2(tmp_path: Path, options: List[str], expected: str) -> None:
    state = tmp_path / "state"
    socket_path = tmp_path / "run" / "control.sock"
    code, _stdout, stderr = kni_pump("run", "--state-dir", str(state), "--socket", str(socket_path), *options)
    assert code == 2, (code, stderr)  # exit 2: systemd does not restart the unit in a loop
    assert expected in one_error_line(stderr)
    assert not state.exists() and not socket_path.parent.exists()  # refused before anything was created


def test_every_subcommand_has_a_help_text() -> None:
    code, stdout, _stderr = kni_pump("--help")
    assert code == 0
    for command, text in [
        ("run", "run the daemon"),
        ("status", "table of the interfaces"),
        ("get", "one interface's desired configuration"),
        ("apply", "create or change interfaces"),
        ("delete", "delete one interface"),
        ("stats", "counters of the pump"),
    ]:
        assert any(line.split()[:1] == [command] and text in line for line in stdout.splitlines()), (command, stdout)
    code, stdout, _stderr = kni_pump("apply", "--help")
    assert code == 0 and "--timeout" in stdout and "control socket" in stdout
