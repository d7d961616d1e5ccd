# SPDX-License-Identifier: GPL-3.0-or-later
# Copyright: kernelnic.kni contributors
"""kernelnic.kni.kni_kmod (and kni_info) through ansible-playbook on the real rte_kni: check mode, load with
parameters and boot files, idempotence, live interval changes, reload refusal and reload, unload; and the
refusal to unload while /dev/kni is open."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator

import pytest

from tests.guest.ansible_runner import (
    BUILT_MODULE_CACHE,
    copy_kmod_sources,
    ensure_dev_fd,
    has_headers,
    run_tasks,
)

pytestmark = pytest.mark.ansible_integration


def _built_module(kernel_release: str, test_modules_dir: str) -> str:
    """rte_kni.ko for the guest kernel: the harness's build, else the one test_ansible_dkms built, else a build
    here (about 8 minutes under TCG)."""
    for prebuilt in (
        os.path.join(test_modules_dir, "rte_kni.ko"),
        os.path.join(BUILT_MODULE_CACHE, kernel_release, "rte_kni.ko"),
    ):
        if os.path.isfile(prebuilt):
            return prebuilt
    if not has_headers(kernel_release):
        pytest.fail(
            "no rte_kni.ko in KNI_TEST_MODULES and no headers in the guest to build one: add kmod/ to "
            "TEST_MODULE_SOURCES in tests/kernel/guest_session.py"
        )
    build = copy_kmod_sources(tempfile.mkdtemp(prefix="kni-kmod-build-"))
    subprocess.run(
        ["make", "-s", "-C", f"/lib/modules/{kernel_release}/build", f"M={build}", "modules"],
        check=True,
        capture_output=True,
    )
    return os.path.join(build, "rte_kni.ko")


@pytest.fixture(scope="module")
def installed_rte_kni(kernel_release: str, test_modules_dir: str) -> Iterator[str]:
    """rte_kni.ko under /lib/modules/<release>/updates (the guest overlay is throwaway) so modprobe finds it."""
    ensure_dev_fd()  # kni_info runs dkms status
    target = f"/lib/modules/{kernel_release}/updates/rte_kni.ko"
    os.makedirs(os.path.dirname(target), exist_ok=True)
    shutil.copy(_built_module(kernel_release, test_modules_dir), target)
    subprocess.run(["depmod", "-a", kernel_release], check=True)
    yield target
    subprocess.run(["modprobe", "-r", "rte_kni"], check=False)
    os.unlink(target)
    subprocess.run(["depmod", "-a", kernel_release], check=True)


@pytest.fixture(scope="module")
def kernel_release() -> str:
    return os.environ["KNI_KERNEL_RELEASE"]


@pytest.fixture(scope="module")
def test_modules_dir() -> str:
    return os.environ["KNI_TEST_MODULES"]


def test_kni_kmod_target(installed_rte_kni: str) -> None:
    run_tasks("kni_kmod")
    assert not os.path.isdir("/sys/module/rte_kni")


def test_unload_refused_while_dev_kni_is_open(installed_rte_kni: str) -> None:
    subprocess.run(["modprobe", "rte_kni"], check=True)
    try:
        with open("/dev/kni", "rb"):
            run_tasks("kni_kmod", "busy.yml")
            assert os.path.isdir("/sys/module/rte_kni")
    finally:
        subprocess.run(["modprobe", "-r", "rte_kni"], check=True)
    assert not os.path.isdir("/sys/module/rte_kni")
