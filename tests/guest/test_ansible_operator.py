# SPDX-License-Identifier: GPL-3.0-or-later
# Copyright: kernelnic.kni contributors
"""playbooks/operator.yml (path 1 of the README) on the 6.1 guest: a DPDK 22.11 application's host.

As its header says for a host whose PID 1 is not systemd (this guest): the play with ``--tags kni_packages,kni_kmod``
builds rte_kni with DKMS and loads it with the play's parameters; dpdk-testpmd with ``--vdev=net_kni0`` then creates
kni0; the whole play adopts it (addresses, MTU, promisc, allmulticast, up) and skips its systemd steps; run again it
changes nothing. The DKMS build takes about 7 minutes under TCG, hence one kernel.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import time
from collections.abc import Callable, Iterator

import pytest

from tests.ansible_play import run_play
from tests.guest.ansible_runner import REPO_ROOT, ensure_dev_fd
from tests.guest.dpdk_apps import TestPmd, running, wait_link
from tests.guest.kni_fixtures import sh

pytestmark = [
    pytest.mark.ansible_integration,
    pytest.mark.only_kernels("6.1"),
    pytest.mark.usefixtures("kni_hugepages"),
]

PLAY = {"ansible.builtin.import_playbook": "kernelnic.kni.operator"}
IFF_UP, IFF_PROMISC, IFF_ALLMULTI = 0x1, 0x100, 0x200
# Each task of the role and the status of its first host line.
TASKS = re.compile(r"^TASK \[kernelnic\.kni\.kni : (.*?)\] \**\n+(\w+):", re.M)


def _recap(output: str) -> tuple[int, int]:
    found = re.search(r"localhost\s*:\s*ok=(\d+)\s+changed=(\d+)", output)
    assert found, output[-3000:]
    return int(found.group(1)), int(found.group(2))


def _dkms_version() -> str:
    with open(os.path.join(REPO_ROOT, "kmod", "dkms.conf"), encoding="utf-8") as handle:
        found = re.search(r'^PACKAGE_VERSION="?([^"\s]+)', handle.read(), re.M)
    assert found
    return found.group(1)


@pytest.fixture
def guest_host(kernel_release: str) -> Iterator[dict]:
    """What the guest lacks, overridden: python3-pyroute2 is in the test's Python, not a Debian package; no apt."""
    ensure_dev_fd()
    sh("rmmod rte_kni", check=False)
    yield {"kni_packages": ["dkms"], "kni_kernel_headers": False, "kni_dkms_kernels": [kernel_release]}
    # Later tests of a session expect no DKMS rte_kni and no boot configuration.
    sh("rmmod rte_kni", check=False)
    # DKMS takes minutes under TCG, beyond sh()'s timeout.
    subprocess.run(
        ["dkms", "remove", f"rte_kni/{_dkms_version()}", "--all"], capture_output=True, timeout=900, check=False
    )
    for path in ("/etc/modprobe.d/rte_kni.conf", "/etc/modules-load.d/rte_kni.conf"):
        if os.path.exists(path):
            os.unlink(path)
    shutil.rmtree(f"/usr/src/rte_kni-{_dkms_version()}", ignore_errors=True)


def _address_of(name: str) -> list[str]:
    shown = json.loads(sh(f"ip -j address show dev {name} scope global").stdout)
    # ip's JSON keeps an empty object for each address the scope filter leaves out.
    return [f"{info['local']}/{info['prefixlen']}" for info in shown[0]["addr_info"] if info]


def _read(path: str) -> str:
    with open(path, encoding="ascii") as handle:
        return handle.read().strip()


def test_operator_playbook(kernel_release: str, guest_host: dict, report: Callable[[str], None]) -> None:
    began = time.monotonic()
    run_play(PLAY, "operator-load", guest_host, ["--tags", "kni_packages,kni_kmod"])
    report(f"operator.yml --tags kni_packages,kni_kmod (DKMS build, load): {time.monotonic() - began:.0f} s")
    assert os.path.isfile(f"/lib/modules/{kernel_release}/updates/dkms/rte_kni.ko")
    assert os.path.isdir("/sys/module/rte_kni")
    assert "carrier=on" in _read("/etc/modprobe.d/rte_kni.conf")
    assert not os.path.exists("/sys/class/net/kni0")

    with running(TestPmd.dpdk_22_11, "va", ("net_kni0",)) as app:
        assert wait_link("kni0"), f"testpmd did not create kni0:\n{app.output[-3000:]}"
        assert _read("/sys/class/net/kni0/mtu") != "1400"

        began = time.monotonic()
        output = run_play(PLAY, "operator-adopt", guest_host)
        report(f"operator.yml, adopting kni0: {time.monotonic() - began:.0f} s")
        assert _recap(output)[1] > 0
        tasks = dict(TASKS.findall(output))
        systemd = {name: status for name, status in tasks.items() if name.endswith("(only when systemd is PID 1)")}
        assert len(systemd) == 6 and set(systemd.values()) == {"skipping"}, systemd
        pump = {
            name: status
            for name, status in tasks.items()
            if ("kni-pump" in name or "hugepages" in name) and not name.startswith("Validating arguments")
        }
        assert pump and set(pump.values()) == {"skipping"}, pump

        flags = int(_read("/sys/class/net/kni0/flags"), 16)
        assert flags & IFF_UP and flags & IFF_PROMISC and flags & IFF_ALLMULTI, hex(flags)
        assert _read("/sys/class/net/kni0/mtu") == "1400"
        assert _address_of("kni0") == ["192.0.2.1/24"]

        began = time.monotonic()
        again = run_play(PLAY, "operator-again", guest_host)
        report(f"operator.yml again: {time.monotonic() - began:.0f} s, changed={_recap(again)[1]}")
        assert _recap(again)[1] == 0, again[-4000:]
        assert app.process.poll() is None, app.output[-3000:]
    assert not os.path.exists("/sys/class/net/kni0")
