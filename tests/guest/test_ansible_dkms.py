# SPDX-License-Identifier: GPL-3.0-or-later
# Copyright: kernelnic.kni contributors
"""kernelnic.kni.kni_dkms through ansible-playbook on a real DKMS.

Everywhere: check-mode planning, and the failure for a kernel without headers (before anything changes). On the
6.1 guest only (a DKMS build takes about 7 minutes under TCG): check mode, build and install for the guest kernel,
idempotence, kni_info, removal. The module DKMS built is kept in the guest's cache directory so the kni_kmod
test that follows can load it without building it again.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import time

import pytest

from tests.guest.ansible_runner import (
    BUILT_MODULE_CACHE,
    copy_kmod_sources,
    ensure_dev_fd,
    has_headers,
    run_tasks,
)

pytestmark = pytest.mark.ansible_integration

FULL_BUILD_KERNELS = ("6.1",)


def _dkms_status() -> str:
    return subprocess.run(["dkms", "status", "-m", "rte_kni"], capture_output=True, text=True, check=True).stdout


@pytest.fixture
def kmod_source() -> str:
    ensure_dev_fd()
    assert _dkms_status() == ""
    return copy_kmod_sources(os.path.join(tempfile.mkdtemp(prefix="kni-dkms-"), "rte_kni"))


def test_kni_dkms_plan_and_missing_headers(kernel_release: str, kmod_source: str) -> None:
    with_headers = [release for release in sorted(os.listdir("/lib/modules")) if has_headers(release)]
    assert with_headers, "no kernel in /lib/modules has headers"
    planned = kernel_release if kernel_release in with_headers else with_headers[0]
    run_tasks(
        "kni_dkms",
        "missing_headers.yml",
        extra_vars={
            "kni_dkms_source": kmod_source,
            "kni_dkms_kernel": planned,
            "kni_dkms_headless": "0.0.1-kni-no-headers",
        },
    )


@pytest.mark.only_kernels(*FULL_BUILD_KERNELS)
def test_kni_dkms_build_install_remove(kernel_release: str, kmod_source: str) -> None:
    assert has_headers(kernel_release)
    started = time.monotonic()
    variables = {"kni_dkms_source": kmod_source, "kni_dkms_kernel": kernel_release}
    run_tasks("kni_dkms", "install.yml", extra_vars=variables)
    print(f"kni_dkms install.yml took {time.monotonic() - started:.0f} s")
    built = f"/lib/modules/{kernel_release}/updates/dkms/rte_kni.ko"
    cache = os.path.join(BUILT_MODULE_CACHE, kernel_release)
    os.makedirs(cache, exist_ok=True)
    shutil.copy(built, cache)
    run_tasks("kni_dkms", "remove.yml", extra_vars=variables)
    assert not os.path.exists(built)
    assert _dkms_status() == ""
