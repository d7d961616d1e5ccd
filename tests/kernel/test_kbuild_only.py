# SPDX-License-Identifier: GPL-3.0-or-later
"""rte_kni builds warning-free against the kernels we build for without booting them."""

from __future__ import annotations

import os
import subprocess

import pytest

from tests.vmharness import kbuild, matrix

pytestmark = pytest.mark.kernel

KMOD = os.path.join(os.path.dirname(__file__), "..", "..", "kmod")


def test_rte_kni_builds_warning_free(build_only_kernel: str, tmp_path: object) -> None:
    kernel = matrix.kernel(build_only_kernel)
    built = kbuild.build_module(kernel, os.path.abspath(KMOD), str(tmp_path))
    assert [os.path.basename(path) for path in built] == ["rte_kni.ko"]
    vermagic = subprocess.run(
        ["modinfo", "-F", "vermagic", built[0]], capture_output=True, text=True, check=True
    ).stdout
    assert vermagic.split()[0] == kernel.release
