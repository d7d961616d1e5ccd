# SPDX-License-Identifier: GPL-3.0-or-later
# Copyright: kernelnic.kni contributors
"""kni-pump's control protocol: one JSON object per line over a Unix stream socket, versioned.

Requests::

    {"version": 1, "op": "list"}
    {"version": 1, "op": "get", "name": "kni0"}
    {"version": 1, "op": "apply", "interfaces": [...]}     # the whole desired state (others are deleted)
    {"version": 1, "op": "apply", "interface": {...}}       # create or change one interface
    {"version": 1, "op": "delete", "name": "kni0"}
    {"version": 1, "op": "stats"}                           # optional "name"

Replies: ``{"version": 1, "ok": true, ...}`` or ``{"version": 1, "ok": false, "error": {"field": ..., "message":
...}}``. A request is parsed and validated completely before anything is done, so an error changes nothing.

``ControlServer`` is non-blocking and driven by the pump's event loop (``readers``/``writers``/``handle``);
``ControlClient`` is a small blocking client for the CLI, the Ansible modules and tests.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import socket
import stat
import time
from typing import Any, Callable, Dict, List, Mapping, NamedTuple, Optional, Sequence

from ansible_collections.kernelnic.kni.plugins.module_utils._pump.schema import (
    ConfigError,
    InterfaceConfig,
    check_ifname,
    check_unique,
    check_version,
    parse_interface,
    parse_interfaces,
)

PROTOCOL_VERSION = 1
MAX_LINE = 1 << 20
MAX_REPLY = 16 * MAX_LINE
# Seconds a client waits for a reply: an apply answers once the net devices exist, which takes seconds on a slow host.
DEFAULT_TIMEOUT = 30.0
OPS = ("list", "get", "apply", "delete", "stats")
_OP_FIELDS = {
    "list": (),
    "get": ("name",),
    "apply": ("interfaces", "interface"),
    "delete": ("name",),
    "stats": ("name",),
}


class ControlRequest(NamedTuple):
    """A validated request. ``apply`` fills ``interfaces`` and ``replace`` (whole state) or one interface."""

    op: str
    name: Optional[str] = None
    interfaces: Sequence[InterfaceConfig] = ()
    replace: bool = False
    paths: Sequence[str] = ()  # field path of each interface, for later errors


def parse_request(line: bytes) -> ControlRequest:
    """Decode and validate one request line; raises ``ConfigError`` naming the offending field."""
    try:
        document = json.loads(line)
    except ValueError as exc:
        raise ConfigError("request", f"not valid JSON: {exc}") from exc
    if not isinstance(document, dict):
        raise ConfigError("request", f"must be a JSON object, not {type(document).__name__}")
    if "version" not in document:
        raise ConfigError("version", f"is required (this daemon speaks version {PROTOCOL_VERSION})")
    check_version(document["version"], "version")
    op = document.get("op")
    if op not in OPS:
        raise ConfigError("op", f"{op!r} is not one of {', '.join(OPS)}")
    allowed = _OP_FIELDS[op]
    for key in document:
        if key not in ("version", "op") and key not in allowed:
            raise ConfigError(
                key, f"unknown field for op {op!r}" + (f"; allowed: {', '.join(allowed)}" if allowed else "")
            )
    if op in ("get", "delete"):
        if "name" not in document:
            raise ConfigError("name", f"is required for op {op!r}")
        return ControlRequest(op, name=check_ifname(document["name"], "name"))
    if op == "stats":
        name = document.get("name")
        return ControlRequest(op, name=None if name is None else check_ifname(name, "name"))
    if op == "apply":
        if ("interfaces" in document) == ("interface" in document):
            raise ConfigError("interfaces", "give exactly one of 'interfaces' (the whole desired state) or 'interface'")
        if "interfaces" in document:
            interfaces = parse_interfaces(document["interfaces"], "interfaces")
            paths = [f"interfaces[{index}]" for index in range(len(interfaces))]
            return ControlRequest(op, interfaces=interfaces, replace=True, paths=paths)
        interface = parse_interface(document["interface"], "interface")
        check_unique([interface], "interface")
        return ControlRequest(op, interfaces=[interface], paths=["interface"])
    return ControlRequest(op)


def ok_reply(**fields: Any) -> Dict[str, Any]:
    return {"version": PROTOCOL_VERSION, "ok": True, **fields}


def error_reply(field: str, message: str, **fields: Any) -> Dict[str, Any]:
    return {"version": PROTOCOL_VERSION, "ok": False, "error": {"field": field, "message": message}, **fields}


def encode_reply(reply: Dict[str, Any]) -> bytes:
    return (json.dumps(reply, sort_keys=True) + "\n").encode()


Handler = Callable[[ControlRequest], Dict[str, Any]]


class _Connection:
    __slots__ = ("closing", "inbox", "outbox", "socket")

    def __init__(self, sock: socket.socket) -> None:
        self.socket = sock
        self.inbox = b""
        self.outbox = b""
        self.closing = False


class ControlServer:
    """Listening Unix socket (mode 0600, or 0660 with ``group``) and its connections; driven by the event loop."""

    def __init__(self, path: str, handler: Handler, group: Optional[int] = None) -> None:
        self.path = path
        self.handler = handler
        _remove_stale_socket(path)
        self._listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        old_umask = os.umask(0o177)  # no window in which the socket is more open than 0600
        try:
            self._listener.bind(path)
        finally:
            os.umask(old_umask)
        if group is not None:
            os.chown(path, -1, group)
            os.chmod(path, 0o660)
        self._listener.listen(16)
        self._listener.setblocking(False)
        self._connections: Dict[int, _Connection] = {}

    def readers(self) -> List[int]:
        return [self._listener.fileno(), *self._connections]

    def writers(self) -> List[int]:
        return [fd for fd, connection in self._connections.items() if connection.outbox]

    def handle(self, readable: List[int], writable: List[int]) -> None:
        """Accept, read and answer complete lines, and flush replies, for the descriptors select() reported."""
        for fd in readable:
            if fd == self._listener.fileno():
                self._accept()
            elif fd in self._connections:
                self._read(self._connections[fd])
        for fd in writable:
            connection = self._connections.get(fd)
            if connection is not None:
                self._flush(connection)

    def _accept(self) -> None:
        while True:
            try:
                sock, _address = self._listener.accept()
            except (BlockingIOError, InterruptedError):
                return
            sock.setblocking(False)
            self._connections[sock.fileno()] = _Connection(sock)

    def _read(self, connection: _Connection) -> None:
        try:
            data = connection.socket.recv(1 << 16)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            data = b""
        if not data:
            self._close(connection)
            return
        connection.inbox += data
        while b"\n" in connection.inbox and not connection.closing:
            line, connection.inbox = connection.inbox.split(b"\n", 1)
            if line.strip():
                connection.outbox += encode_reply(self.answer(line))
        if len(connection.inbox) > MAX_LINE:
            connection.outbox += encode_reply(error_reply("request", f"line longer than {MAX_LINE} bytes"))
            connection.inbox = b""
            connection.closing = True
        self._flush(connection)

    def answer(self, line: bytes) -> Dict[str, Any]:
        try:
            request = parse_request(line)
        except ConfigError as exc:
            return error_reply(exc.field, exc.message)
        return self.handler(request)

    def _flush(self, connection: _Connection) -> None:
        if connection.outbox:
            try:
                sent = connection.socket.send(connection.outbox)
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                self._close(connection)
                return
            connection.outbox = connection.outbox[sent:]
        if connection.closing and not connection.outbox:
            self._close(connection)

    def _close(self, connection: _Connection) -> None:
        self._connections.pop(connection.socket.fileno(), None)
        connection.socket.close()

    def close(self) -> None:
        for connection in list(self._connections.values()):
            self._close(connection)
        self._listener.close()
        with contextlib.suppress(OSError):
            os.unlink(self.path)


def _remove_stale_socket(path: str) -> None:
    """Remove a socket file left by a dead daemon; refuse to replace a live one or a non-socket."""
    try:
        mode = os.lstat(path).st_mode
    except FileNotFoundError:
        return
    if not stat.S_ISSOCK(mode):
        raise OSError(errno.EEXIST, f"{path} exists and is not a socket")
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        probe.connect(path)
    except ConnectionRefusedError:
        os.unlink(path)
        return
    except OSError:
        os.unlink(path)
        return
    finally:
        probe.close()
    raise OSError(errno.EADDRINUSE, f"another kni-pump is listening on {path}")


class ControlError(Exception):
    """The daemon answered ``ok: false``; ``field`` and ``message`` come from its reply."""

    def __init__(self, reply: Dict[str, Any]) -> None:
        error = reply.get("error")
        if not isinstance(error, dict):
            error = {"message": error} if error else {}
        self.field = str(error.get("field", ""))
        self.message = str(error.get("message", "unknown error"))
        self.reply = reply
        super().__init__(f"{self.field}: {self.message}" if self.field else self.message)


class PumpConnectionError(Exception):
    """The control socket could not be used: nothing listens there, no reply in time, the connection closed, or
    the reply is not what the protocol promises. The message is one line and names the socket."""


def _reason(exc: OSError) -> str:
    return exc.strerror or str(exc) or type(exc).__name__


def _json_type(value: Any) -> str:
    return {dict: "an object", list: "a list", str: "a string", bool: "a boolean", type(None): "null"}.get(
        type(value), "a number"
    )


class ControlCalls:
    """``fetch`` and ``expect`` on top of a ``call``: a reply missing a field the caller relies on is an error
    naming the socket, the operation and the field, instead of a ``KeyError`` later."""

    path = ""

    def call(self, op: str, **fields: Any) -> Dict[str, Any]:
        raise NotImplementedError

    def bad_reply(self, op: str, problem: str) -> PumpConnectionError:
        return PumpConnectionError(f"kni-pump's reply to {op!r} on {self.path}: {problem}")

    def expect(self, reply: Mapping[str, Any], op: str, key: str, kind: type) -> Any:
        value = reply.get(key)
        if not isinstance(value, kind):
            wanted = "an object" if kind is dict else "a list" if kind is list else kind.__name__
            found = "missing" if key not in reply else _json_type(value)
            raise self.bad_reply(op, f"field {key!r} must be {wanted}, but it is {found}")
        return value

    def fetch(self, op: str, key: str, kind: type, **fields: Any) -> Any:
        """``call`` and return the reply's ``key``, which must be of ``kind`` (dict or list)."""
        return self.expect(self.call(op, **fields), op, key, kind)

    def list_interfaces(self) -> List[Dict[str, Any]]:
        """The ``list`` reply's interfaces, each an object with a string ``name``."""
        listing = self.fetch("list", "interfaces", list)
        for item in listing:
            if not isinstance(item, dict) or not isinstance(item.get("name"), str):
                raise self.bad_reply(
                    "list", f"each entry of 'interfaces' must be an object with a 'name', not {item!r}"
                )
        return listing


class ControlClient(ControlCalls):
    """Blocking client: ``call("list")``, ``call("apply", interface={...})``...

    ``timeout`` (default ``DEFAULT_TIMEOUT``) bounds the connect and the wait for each whole reply.
    """

    def __init__(self, path: str, timeout: Optional[float] = None) -> None:
        self.path = path
        self.timeout = DEFAULT_TIMEOUT if timeout is None else timeout
        self._socket = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self._socket.settimeout(self.timeout)
        try:
            self._socket.connect(path)
        except OSError as exc:
            self._socket.close()
            raise PumpConnectionError(f"cannot connect to kni-pump's control socket {path}: {_reason(exc)}") from exc
        self._buffer = b""

    def send_line(self, line: bytes) -> Dict[str, Any]:
        """Send raw bytes (one line) and return the decoded reply; for tests of malformed input."""
        deadline = time.monotonic() + self.timeout
        try:
            self._socket.sendall(line if line.endswith(b"\n") else line + b"\n")
            while b"\n" not in self._buffer:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise socket.timeout("timed out")
                self._socket.settimeout(remaining)
                data = self._socket.recv(1 << 16)
                if not data:
                    raise PumpConnectionError(f"kni-pump closed the control connection on {self.path} without a reply")
                self._buffer += data
                if len(self._buffer) > MAX_REPLY:
                    raise PumpConnectionError(f"kni-pump's reply on {self.path} is longer than {MAX_REPLY} bytes")
        except socket.timeout as exc:  # TimeoutError from Python 3.10, a separate OSError before
            raise PumpConnectionError(
                f"kni-pump did not answer on its control socket {self.path} within {self.timeout:g} s"
            ) from exc
        except (BrokenPipeError, ConnectionResetError) as exc:
            raise PumpConnectionError(f"kni-pump closed the control connection on {self.path} without a reply") from exc
        except OSError as exc:
            raise PumpConnectionError(
                f"the control connection to kni-pump on {self.path} failed: {_reason(exc)}"
            ) from exc
        reply, self._buffer = self._buffer.split(b"\n", 1)
        try:
            document = json.loads(reply)
        except ValueError as exc:
            raise PumpConnectionError(f"kni-pump's reply on {self.path} is not valid JSON: {exc}") from exc
        if not isinstance(document, dict):
            raise PumpConnectionError(
                f"kni-pump's reply on {self.path} must be a JSON object, not {_json_type(document)}"
            )
        return document

    def request(self, op: str, **fields: Any) -> Dict[str, Any]:
        """The reply, which is an object with a boolean ``ok``."""
        reply = self.send_line(json.dumps({"version": PROTOCOL_VERSION, "op": op, **fields}).encode())
        if not isinstance(reply.get("ok"), bool):
            raise self.bad_reply(op, f"field 'ok' must be true or false, but it is {_json_type(reply.get('ok'))}")
        return reply

    def call(self, op: str, **fields: Any) -> Dict[str, Any]:
        """Like ``request`` but raises ``ControlError`` for ``ok: false``."""
        reply = self.request(op, **fields)
        if not reply["ok"]:
            raise ControlError(reply)
        return reply

    def close(self) -> None:
        self._socket.close()

    def __enter__(self) -> ControlClient:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()
