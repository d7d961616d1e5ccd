# SPDX-License-Identifier: GPL-3.0-or-later
# Copyright: kernelnic.kni contributors
"""A control socket that misbehaves: a Unix socket in a temporary directory whose server thread answers every
connection in one of the ways a broken or foreign kni-pump could."""

from __future__ import annotations

import contextlib
import os
import socket
import threading
from collections.abc import Iterator
from typing import List

# behaviour -> what the server sends after reading a request line (None: nothing, it keeps the connection open)
BEHAVIOURS = {
    "silent": None,
    "closes": b"",
    "garbage": b"this is not JSON\n",
    "ok-only": b'{"version": 1, "ok": true}\n',
    "list": b"[1, 2]\n",
    "ok-string": b'{"version": 1, "ok": "yes"}\n',
    "bad-entries": b'{"version": 1, "ok": true, "interfaces": [1, 2], "daemon": {}}\n',
    "error-string": b'{"version": 1, "ok": false, "error": "out of cheese"}\n',
}


class HostilePump:
    def __init__(self, path: str, behaviour: str) -> None:
        self.path = path
        self.behaviour = behaviour
        self.requests: List[bytes] = []
        self._held: List[socket.socket] = []
        self._listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self._listener.bind(path)
        self._listener.listen(8)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        self._listener.settimeout(0.05)
        while not self._stop.is_set():
            try:
                connection, _address = self._listener.accept()
            except socket.timeout:
                continue
            except OSError:
                return
            if BEHAVIOURS[self.behaviour] == b"":
                connection.close()
                continue
            self._held.append(connection)  # closed only by close()
            threading.Thread(target=self._answer, args=(connection,), daemon=True).start()

    def _answer(self, connection: socket.socket) -> None:
        """Answer every request line the same way, or (silent) read them and never answer."""
        answer = BEHAVIOURS[self.behaviour]
        received = b""
        with contextlib.suppress(OSError):
            while not self._stop.is_set():
                data = connection.recv(65536)
                if not data:
                    return
                received += data
                while b"\n" in received:
                    line, received = received.split(b"\n", 1)
                    self.requests.append(line)
                    if answer is not None:
                        connection.sendall(answer)

    def close(self) -> None:
        self._stop.set()
        self._thread.join(5)
        self._listener.close()
        for connection in self._held:
            connection.close()
        with contextlib.suppress(OSError):
            os.unlink(self.path)


@contextlib.contextmanager
def hostile_pump(path: str, behaviour: str) -> Iterator[HostilePump]:
    server = HostilePump(path, behaviour)
    try:
        yield server
    finally:
        server.close()
