# SPDX-License-Identifier: GPL-3.0-or-later
# Copyright: kernelnic.kni contributors
"""kni-pump's log lines: format, level filter, refusal of an unknown level."""

from __future__ import annotations

import io

import pytest
from ansible_collections.kernelnic.kni.plugins.module_utils._pump.log import PumpLog


def test_lines_and_levels() -> None:
    log, stream = PumpLog(), io.StringIO()
    log.configure("WARNING", stream)
    log.info("hidden %d", 1)
    log.warning("%s: carrier %s", "kni0", "on")
    log.error("100% literal")  # no arguments: not %-formatted
    assert stream.getvalue() == "kni-pump: WARNING kni0: carrier on\nkni-pump: ERROR 100% literal\n"


def test_unknown_level_is_refused() -> None:
    with pytest.raises(ValueError, match="'LOUD' is not one of DEBUG"):
        PumpLog().configure("LOUD")
