# SPDX-License-Identifier: GPL-3.0-or-later
"""Every benchmark imports in a fresh interpreter run as it is in a guest (its own folder first on the path): the
benches run only in guests, so an import broken by a move of the library would otherwise go unnoticed until then."""

from __future__ import annotations

import pathlib
import subprocess
import sys

import pytest

BENCH = pathlib.Path(__file__).resolve().parents[2] / "bench"


@pytest.mark.parametrize("name", sorted(path.stem for path in BENCH.glob("*.py")))
def test_bench_module_imports(name: str) -> None:
    done = subprocess.run(
        [sys.executable, "-c", f"import sys; sys.path.insert(0, {str(BENCH)!r}); import {name}"],
        cwd="/",
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stderr
