# SPDX-License-Identifier: GPL-3.0-or-later
"""DPDK 22.11's own KNI test (`kni_autotest` of dpdk-test) against our rte_kni.ko: both loopback modes, IOVA=PA
and IOVA=VA. Its loop sends freshly allocated, empty mbufs while it takes the interface up, changes the MTU and
takes it down again, and expects at least 100 of them back."""

from __future__ import annotations

import pytest

from tests.guest.dpdk_apps import free_hugepages, remove_hugepage_files, run_autotests
from tests.guest.kni_fixtures import kni_module, set_hugepages

pytestmark = pytest.mark.usefixtures("kni_hugepages")


@pytest.mark.parametrize("lo_mode", ["lo_mode_fifo", "lo_mode_fifo_skb"])
def test_kni_autotest_passes_with_iova_pa_and_va(lo_mode: str) -> None:
    set_hugepages(128)  # two applications at once
    before = free_hugepages()
    with kni_module(f"lo_mode={lo_mode}"):
        try:
            outputs = run_autotests(("pa", "va"))
        finally:
            remove_hugepage_files()
    for iova, output in outputs.items():
        assert f"Selected IOVA mode '{iova.upper()}'" in output, output[-4000:]
        # The loop test ran (dpdk-test skips it when the module has no loopback mode) and the link test passed.
        assert "skipped because of missing rte_kni module lo_mode" not in output, output[-4000:]
        assert "Link status change tests: Passed" in output, output[-4000:]
        assert "Test OK" in output, output[-4000:]
        # rte_kni_release() waits for the kernel to empty rx_q; a leftover means mbufs the kernel never returned.
        assert "Fail to free all Rx-q items" not in output, output[-4000:]
    assert free_hugepages() == before
