# SPDX-License-Identifier: GPL-3.0-or-later
# Copyright: kernelnic.kni contributors
"""kni-pump's log: one ``kni-pump: LEVEL message`` line per message on stderr (the journal, under systemd).

The ``logging`` package would do the same, but importing it also imports ``re``, ``traceback``, ``tokenize``,
``warnings``, ``weakref`` and ``string``, a noticeable part of a restart on a slow root file system; the daemon needs
none of its features. The methods take ``%``-style arguments like ``logging``'s, formatted only when emitted.
"""

from __future__ import annotations

import sys
from typing import Optional, TextIO

LEVELS = {"DEBUG": 10, "INFO": 20, "WARNING": 30, "ERROR": 40}


class PumpLog:
    """A logger with a level and a stream; lines are written whole, so threads do not interleave within a line."""

    def __init__(self) -> None:
        self.level = LEVELS["INFO"]
        self.stream: Optional[TextIO] = None  # None: sys.stderr at the time of writing (tests replace it)

    def configure(self, level: str, stream: Optional[TextIO] = None) -> None:
        if level not in LEVELS:
            raise ValueError(f"log level {level!r} is not one of {', '.join(LEVELS)}")
        self.level = LEVELS[level]
        self.stream = stream

    def _emit(self, level: str, message: str, args: tuple) -> None:
        if LEVELS[level] < self.level:
            return
        if args:
            message = message % args
        stream = self.stream or sys.stderr
        stream.write(f"kni-pump: {level} {message}\n")
        stream.flush()

    def debug(self, message: str, *args: object) -> None:
        self._emit("DEBUG", message, args)

    def info(self, message: str, *args: object) -> None:
        self._emit("INFO", message, args)

    def warning(self, message: str, *args: object) -> None:
        self._emit("WARNING", message, args)

    def error(self, message: str, *args: object) -> None:
        self._emit("ERROR", message, args)


LOG = PumpLog()
