# SPDX-License-Identifier: GPL-3.0-or-later
# Copyright: kernelnic.kni contributors
"""kni-pump on the real rte_kni module: traffic from a network namespace over veth, afpacket and KNI, requests,
carrier follow, crash and restart, and refused configurations.

Topology: namespace ``pumppeer`` holds ``pva`` (10.77.0.2); its veth peer ``pvb`` stays in the guest's namespace
without addresses and is bridged by the pump to the KNI interface ``kpump0`` (10.77.0.1).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any, Optional

import pytest
from ansible_collections.kernelnic.kni.plugins.module_utils._pump.control import ControlClient

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
NETNS = "pumppeer"
KNI = "kpump0"
MAC = "02:00:00:77:00:01"
RUN_DIR = "/tmp/kni-pump-test"
SOCKET = f"{RUN_DIR}/control.sock"
STATE_DIR = f"{RUN_DIR}/state"
CONFIG = f"{RUN_DIR}/config.json"
CLI = [sys.executable, "-S", "-m", "ansible_collections.kernelnic.kni.plugins.module_utils._pump.cli"]
# Bytecode may be written (to the guest's overlay): restarts then start like an installed service.
ENV = {
    **{key: value for key, value in os.environ.items() if key != "PYTHONDONTWRITEBYTECODE"},
    "PYTHONPATH": os.path.join(REPO, ".collection-root"),
}


def sh(command: str, check: bool = True) -> subprocess.CompletedProcess:
    return subprocess.run(command, shell=True, capture_output=True, text=True, check=check, timeout=120)


def sysfs(interface: str, attribute: str) -> str:
    with open(f"/sys/class/net/{interface}/{attribute}", encoding="ascii") as handle:
        return handle.read().strip()


def wait_for(condition, timeout: float = 15.0, step: float = 0.02) -> bool:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(step)
    return bool(condition())


def request(op: str, **fields: Any) -> dict:
    with ControlClient(SOCKET) as client:
        return client.request(op, **fields)


OFFLOADS_OFF = """
import ctypes, fcntl, socket, struct, sys
SIOCETHTOOL = 0x8946
# ETHTOOL_SGRO, ETHTOOL_SGSO, ETHTOOL_STSO, ETHTOOL_SSG, ETHTOOL_STXCSUM: features are dropped in dependency order
for command in (0x2C, 0x24, 0x1F, 0x19, 0x17):
    value = ctypes.create_string_buffer(struct.pack("II", command, 0))
    request = struct.pack("16sP8x", sys.argv[1].encode(), ctypes.addressof(value))
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        fcntl.ioctl(sock.fileno(), SIOCETHTOOL, request)
"""


class Pump:
    def __init__(self) -> None:
        self.process: Optional[subprocess.Popen] = None
        self.log = open(f"{RUN_DIR}/pump.log", "a", encoding="utf-8")  # noqa: SIM115

    def start(self, *extra: str, config: bool = True, timeout: float = 10) -> float:
        """Start the daemon; returns the seconds until every configured interface exists."""
        args = [*CLI, "run", "--state-dir", STATE_DIR, "--socket", SOCKET, "--max-interfaces", "2", *extra]
        if config:
            args += ["--config", CONFIG]
        began = time.monotonic()
        self.process = subprocess.Popen(args, env=ENV, stdout=self.log, stderr=self.log)
        process = self.process

        def up() -> bool:
            # A dead daemon ends the wait at once (its log says why); a killed one's socket file may linger.
            return process.poll() is not None or (os.path.exists(SOCKET) and os.path.exists(f"/sys/class/net/{KNI}"))

        if not wait_for(up, timeout) or process.poll() is not None:
            if process.poll() is None:
                self.stop(signal.SIGKILL)
            self.process = None
            pytest.fail(f"kni-pump did not come up within {timeout} s (exit {process.poll()}):\n{self.tail()}")
        return time.monotonic() - began

    def stop(self, signum: int = signal.SIGTERM) -> int:
        assert self.process is not None
        self.process.send_signal(signum)
        code = self.process.wait(10)
        self.process = None
        return code

    def tail(self) -> str:
        self.log.flush()
        with open(f"{RUN_DIR}/pump.log", encoding="utf-8") as handle:
            return handle.read()[-3000:]


@pytest.fixture(scope="module")
def pump() -> Iterator[Pump]:
    module = os.path.join(os.environ["KNI_TEST_MODULES"], "rte_kni.ko")
    teardown()  # whatever an earlier test of the session left: rte_kni loaded with other parameters, our netns...
    assert not os.path.isdir("/sys/module/rte_kni"), "rte_kni is still loaded (held by a leftover process?)"
    sh(f"insmod {module}")
    sh("echo 32 > /proc/sys/vm/nr_hugepages")
    # A pump an earlier test ran may have saved interfaces and addresses there, which this one would restore.
    shutil.rmtree(RUN_DIR, ignore_errors=True)
    os.makedirs(STATE_DIR)
    sh("sysctl -qw net.ipv6.conf.default.disable_ipv6=1 net.ipv6.conf.all.disable_ipv6=1")
    sh(f"ip netns add {NETNS}")
    sh(f"ip netns exec {NETNS} sysctl -qw net.ipv6.conf.default.disable_ipv6=1 net.ipv6.conf.all.disable_ipv6=1")
    sh(f"ip link add pvb type veth peer name pva netns {NETNS}")
    sh("ip link set pvb up")
    sh(f"ip -n {NETNS} link set lo up && ip -n {NETNS} link set pva up && ip -n {NETNS} addr add 10.77.0.2/24 dev pva")
    # The afpacket backend needs plain frames: no TSO/GSO super-frames, complete checksums (KNI marks what it
    # receives as verified). What `ethtool -K pva tx off sg off tso off gso off` does, without ethtool.
    subprocess.run(["ip", "netns", "exec", NETNS, sys.executable, "-c", OFFLOADS_OFF, "pva"], check=True, timeout=60)
    subprocess.run([sys.executable, "-c", OFFLOADS_OFF, "pvb"], check=True, timeout=60)
    with open(CONFIG, "w", encoding="utf-8") as handle:
        json.dump(
            {"version": 1, "interfaces": [{"name": KNI, "mac": MAC, "backend": "afpacket:pvb", "carrier": "follow"}]},
            handle,
        )
    # Compile once, as an installed service would have been: later starts (restart test) then measure the pump.
    subprocess.run([sys.executable, "-m", "compileall", "-q", os.path.join(REPO, "plugins")], env=ENV, check=True)
    daemon = Pump()
    try:
        daemon.start(timeout=60)
        sh(f"ip link set {KNI} up && ip addr add 10.77.0.1/24 dev {KNI}")
        yield daemon
    finally:
        if daemon.process is not None:
            daemon.stop()
        teardown()


def teardown() -> None:
    sh(f"ip netns del {NETNS}", check=False)
    sh("ip link del pvb", check=False)
    sh("rmmod rte_kni", check=False)
    sh("echo 0 > /proc/sys/vm/nr_hugepages", check=False)


def counters() -> dict:
    return request("stats", name=KNI)["interfaces"][KNI]["counters"]


def test_ping_both_ways(pump: Pump) -> None:
    out = sh("busybox ping -A -c 3 -W 3 10.77.0.2", check=False)
    assert out.returncode == 0, out.stdout + out.stderr + pump.tail()
    out = sh(f"ip netns exec {NETNS} busybox ping -A -c 3 -W 3 10.77.0.1", check=False)
    assert out.returncode == 0, out.stdout + out.stderr


TCP_SERVER = """
import socket, sys
server = socket.create_server(("10.77.0.2", 5001))
print("ready", flush=True)
connection, _peer = server.accept()
total = 0
while True:
    data = connection.recv(65536)
    if not data:
        break
    total += len(data)
    connection.sendall(data)
connection.shutdown(socket.SHUT_WR)
print(total, flush=True)
"""


def test_tcp_stream_echo_and_byte_counts(pump: Pump) -> None:
    server = subprocess.Popen(
        ["ip", "netns", "exec", NETNS, sys.executable, "-c", TCP_SERVER], stdout=subprocess.PIPE, text=True
    )
    assert server.stdout is not None and server.stdout.readline().strip() == "ready"
    payload = os.urandom(1 << 20)
    echoed = bytearray()
    with socket.create_connection(("10.77.0.2", 5001), timeout=30) as client:

        def send_all() -> None:
            client.sendall(payload)
            client.shutdown(socket.SHUT_WR)

        sender = threading.Thread(target=send_all)
        sender.start()
        while data := client.recv(1 << 20):
            echoed += data
        sender.join()
    server_total = int(server.stdout.readline())
    server.wait(10)
    assert server_total == len(payload)
    assert bytes(echoed) == payload
    # Quiescent: the pump's counters equal the kernel's for the KNI interface and the far end of the veth.
    time.sleep(0.3)
    pump_counters = counters()
    assert pump_counters["ingress_bytes"] == int(sysfs(KNI, "statistics/rx_bytes"))
    assert pump_counters["egress_bytes"] == int(sysfs(KNI, "statistics/tx_bytes"))
    far_rx = int(sh(f"ip netns exec {NETNS} cat /sys/class/net/pva/statistics/rx_packets").stdout)
    assert pump_counters["egress_packets"] == far_rx
    assert pump_counters["egress_dropped"] == 0


def restore_link() -> None:
    """Put back what the fixture set up, so that a failed request test does not fail the tests after it."""
    for change in ("up", "mtu 1500", f"address {MAC}", "promisc off", "allmulticast off"):
        sh(f"ip link set {KNI} {change}", check=False)


def test_requests_reach_the_backend(pump: Pump) -> None:
    try:
        check_requests(pump)
    finally:
        restore_link()


def check_requests(pump: Pump) -> None:
    def detail() -> dict:
        return request("get", name=KNI)["interface"]

    def reaches(field: str, want: Any) -> bool:
        # rte_kni hands promisc/allmulti requests to a work item when the address-list lock is held, so `ip` may
        # return before the pump has seen them: wait for the answer instead of sampling once.
        return wait_for(lambda: detail()[field] == want, 5)

    sh(f"ip link set {KNI} down")
    assert reaches("state", "down"), pump.tail()
    sh(f"ip link set {KNI} up")
    assert reaches("state", "up"), pump.tail()
    sh(f"ip link set {KNI} mtu 1400")
    assert reaches("mtu", 1400) and sysfs(KNI, "mtu") == "1400"
    sh(f"ip link set {KNI} mtu 1500")

    def promiscuity() -> int:
        words = sh("ip -d link show pvb").stdout.split()
        return int(words[words.index("promiscuity") + 1])

    before = promiscuity()
    sh(f"ip link set {KNI} promisc on")
    assert wait_for(lambda: promiscuity() == before + 1), pump.tail()
    assert detail()["backend_state"]["promisc"] is True
    sh(f"ip link set {KNI} promisc off")
    assert wait_for(lambda: promiscuity() == before), pump.tail()
    sh(f"ip link set {KNI} allmulticast on")
    assert wait_for(lambda: detail()["backend_state"]["allmulti"] is True, 5), pump.tail()
    sh(f"ip link set {KNI} allmulticast off")
    assert wait_for(lambda: detail()["backend_state"]["allmulti"] is False, 5), pump.tail()
    new_mac = "02:00:00:77:00:42"
    sh(f"ip link set {KNI} address {new_mac}")
    assert reaches("mac", new_mac)
    assert wait_for(lambda: new_mac in sh("bridge fdb show dev pvb").stdout)  # the NIC's unicast filter
    sh(f"ip link set {KNI} address {MAC}")
    assert wait_for(lambda: new_mac not in sh("bridge fdb show dev pvb").stdout)
    assert sh("busybox ping -c 1 -W 3 10.77.0.2", check=False).returncode == 0


def test_mtu_the_backend_refuses_fails_ip(pump: Pump) -> None:
    out = sh(f"ip link set {KNI} mtu 2000", check=False)  # pvb's MTU is 1500
    assert out.returncode != 0 and "Invalid argument" in out.stderr
    assert sysfs(KNI, "mtu") == "1500"
    assert counters()["requests_refused"] >= 1


def test_carrier_follows_the_backend(pump: Pump) -> None:
    assert sysfs(KNI, "carrier") == "1"
    sh(f"ip -n {NETNS} link set pva down")
    assert wait_for(lambda: sysfs(KNI, "carrier") == "0"), pump.tail()
    assert wait_for(lambda: "NO-CARRIER" in sh(f"ip link show {KNI}").stdout)  # operstate follows via linkwatch
    sh(f"ip -n {NETNS} link set pva up")
    assert wait_for(lambda: sysfs(KNI, "carrier") == "1"), pump.tail()
    assert wait_for(lambda: "LOWER_UP" in sh(f"ip link show {KNI}").stdout)


def test_invalid_requests_and_configs_change_nothing(pump: Pump) -> None:
    index = sysfs(KNI, "ifindex")
    with open(f"{STATE_DIR}/state.json", "rb") as handle:
        state = handle.read()
    with ControlClient(SOCKET) as client:
        replies = [
            client.send_line(b"not json"),
            client.request("apply", interface={"name": KNI, "backend": "afpacket:pvb", "mtu": 99999}),
            client.request("apply", interfaces=[{"name": KNI, "backend": "afpacket:nosuch0"}]),
            client.request("frobnicate"),
        ]
    assert [reply["error"]["field"] for reply in replies] == ["request", "interface.mtu", "interfaces[0].backend", "op"]
    bad = f"{RUN_DIR}/bad.json"
    with open(bad, "w", encoding="utf-8") as handle:
        json.dump({"version": 1, "interfaces": [{"name": "kbad0", "backend": "null", "carrier": "sometimes"}]}, handle)
    out = subprocess.run(
        [*CLI, "run", "--config", bad, "--state-dir", f"{RUN_DIR}/bad-state", "--socket", f"{RUN_DIR}/bad.sock"],
        env=ENV,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert out.returncode == 2 and "interfaces[0].carrier" in out.stderr
    assert sysfs(KNI, "ifindex") == index and sysfs(KNI, "carrier") == "1"
    with open(f"{STATE_DIR}/state.json", "rb") as handle:
        assert handle.read() == state


def test_status_command(pump: Pump) -> None:
    out = subprocess.run([*CLI, "status", "--socket", SOCKET], env=ENV, capture_output=True, text=True, check=True)
    header, row = out.stdout.splitlines()[:2]
    assert header.split()[:5] == ["NAME", "STATE", "CARRIER", "MTU", "MAC"]
    assert row.split()[:6] == [KNI, "up", "on", "1500", MAC, "afpacket:pvb"]


def admin_up(name: str) -> bool:
    return bool(int(sysfs(name, "flags"), 16) & 0x1)  # IFF_UP


def test_kill_removes_interfaces_and_restart_recreates_them(pump: Pump, report: Callable[[str], None]) -> None:
    assert request("apply", interface={"name": KNI, "mac": MAC, "mtu": 1400, "backend": "afpacket:pvb"})["ok"]
    assert request("apply", interface={"name": "kpump1", "backend": "null", "carrier": "on"})["ok"]
    mac1 = sysfs("kpump1", "address")
    # The operator's administrative state, which the restart must bring back: kpump1 up, the KNI interface down.
    sh(f"ip link set kpump1 up && ip link set {KNI} down")
    assert wait_for(lambda: request("get", name="kpump1")["interface"]["state"] == "up")
    # And the addresses the operator configured (IPv4: the guests disable IPv6; unit tests cover its messages).
    sh("ip addr add 192.0.2.41/24 dev kpump1 && ip addr add 198.51.100.41/25 dev kpump1")
    recorded = ["192.0.2.41/24", "198.51.100.41/25"]
    assert wait_for(lambda: saved_addresses().get("kpump1") == recorded), saved_addresses()
    pump.stop(signal.SIGKILL)
    assert wait_for(lambda: not os.path.exists(f"/sys/class/net/{KNI}"))
    assert not os.path.exists("/sys/class/net/kpump1")
    assert sh("rmmod rte_kni", check=False).returncode == 0  # nothing holds the module any more
    sh(f"insmod {os.path.join(os.environ['KNI_TEST_MODULES'], 'rte_kni.ko')}")

    def restored() -> bool:
        try:
            return (
                (sysfs("kpump1", "address"), sysfs("kpump1", "mtu"), sysfs("kpump1", "carrier")) == (mac1, "1500", "1")
                and admin_up("kpump1")
                and configured_addresses("kpump1") == set(recorded)
                and (sysfs(KNI, "address"), sysfs(KNI, "mtu")) == (MAC, "1400")
                and not admin_up(KNI)
            )
        except OSError:  # not there yet, or carrier unreadable while the interface is down
            return False

    began = time.monotonic()
    pump.start(config=False, timeout=60)  # from the persisted state alone
    ready = wait_for(restored, 30, step=0.005)
    elapsed = time.monotonic() - began
    report(f"kni-pump restart to ready (start to 2 interfaces with MAC, MTU, admin state, carrier): {elapsed:.2f} s")
    assert ready, {
        name: (sysfs(name, "address"), sysfs(name, "mtu"), sysfs(name, "flags")) for name in (KNI, "kpump1")
    } | {"log": pump.tail()}
    # The KNI interface came back down, as the operator left it; up again, its carrier follows pvb.
    sh(f"ip link set {KNI} up")
    assert wait_for(lambda: sysfs(KNI, "carrier") == "1"), pump.tail()
    assert wait_for(lambda: saved_admin_up() == [KNI, "kpump1"])


def saved_admin_up() -> list:
    with open(f"{STATE_DIR}/state.json", encoding="utf-8") as handle:
        return json.load(handle)["admin_up"]


def saved_addresses() -> dict:
    with open(f"{STATE_DIR}/state.json", encoding="utf-8") as handle:
        return json.load(handle).get("addresses", {})


def configured_addresses(name: str) -> set:
    """The interface's global (not link-local) addresses, as `ip -j addr` lists them."""
    shown = json.loads(sh(f"ip -j addr show dev {name}").stdout)
    return {
        f"{entry['local']}/{entry['prefixlen']}"
        for link in shown
        for entry in link.get("addr_info", [])
        if entry.get("scope") == "global"
    }
