# SPDX-License-Identifier: GPL-3.0-or-later
"""Shared helpers for the rte_kni guest tests: module load/unload, a KNI interface rig with a request thread, frames."""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import os
import socket
import struct
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from typing import Callable, Dict, List, Optional

from ansible_collections.kernelnic.kni.plugins.module_utils._kni.abi import IovaMode
from ansible_collections.kernelnic.kni.plugins.module_utils._kni.device import DeviceConfig, KniControl, KniDevice
from ansible_collections.kernelnic.kni.plugins.module_utils._kni.mbuf import MbufPool
from ansible_collections.kernelnic.kni.plugins.module_utils._kni.memory import Arena, map_hugepages
from ansible_collections.kernelnic.kni.plugins.module_utils._kni.request_protocol import RequestCallbacks

from tests import frames

MODES = ("pa", "va", "strict")  # IOVA=PA, IOVA=VA, strict (registered hugepage memory, IOVA=PA); also strict-va
HUGEPAGE = 2 * 1024 * 1024
KNI_MAC = bytes.fromhex("021122334455")
PEER_MAC = bytes.fromhex("02aabbccddee")
KNI_IP = "10.99.0.1"
PEER_IP = "10.99.0.2"
PORT_FUZZ = 7999
SIOCSIFMTU = 0x8922


def sh(command: str, check: bool = True) -> subprocess.CompletedProcess:
    return subprocess.run(command, shell=True, check=check, capture_output=True, text=True, timeout=60)


def module_path() -> str:
    return os.path.join(os.environ["KNI_TEST_MODULES"], "rte_kni.ko")


def set_hugepages(count: int) -> None:
    with open("/proc/sys/vm/nr_hugepages", "w", encoding="ascii") as handle:
        handle.write(str(count))


def insmod(params: str = "") -> subprocess.CompletedProcess:
    return sh(f"insmod {module_path()} {params}", check=False)


def rmmod() -> None:
    result = sh("rmmod rte_kni", check=False)
    assert result.returncode == 0, f"rmmod rte_kni failed (leak?): {result.stderr}"
    assert not os.path.isdir("/sys/module/rte_kni")


@contextlib.contextmanager
def kni_module(params: str = "") -> Iterator[None]:
    """insmod rte_kni with ``params``, yield, then rmmod it and assert it unloaded (no leaked references)."""
    if os.path.isdir("/sys/module/rte_kni"):
        sh("rmmod rte_kni", check=False)
    result = insmod(params)
    assert result.returncode == 0, f"insmod rte_kni {params}: {result.stderr}"
    try:
        yield
    finally:
        rmmod()


def sysfs(name: str, attribute: str) -> str:
    with open(f"/sys/class/net/{name}/{attribute}", encoding="ascii") as handle:
        return handle.read().strip()


def stat(name: str, counter: str) -> int:
    return int(sysfs(name, f"statistics/{counter}"))


def link_json(name: str) -> dict:
    return json.loads(sh(f"ip -j -d link show dev {name}").stdout)[0]


def set_mtu_ioctl(name: str, mtu: int) -> None:
    """SIOCSIFMTU from this process (no `ip` start-up in the timing)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        fcntl.ioctl(sock.fileno(), SIOCSIFMTU, struct.pack("16si12x", name.encode(), mtu))


def udp_frame(payload: bytes, dport: int, sport: int = 40000, src: str = PEER_IP, dst: str = KNI_IP) -> bytes:
    """Ethernet + IPv4 + UDP (checksum 0) from the peer to the KNI interface."""
    return frames.udp_frame(payload, dport, sport=sport, src=src, dst=dst, src_mac=PEER_MAC, dst_mac=KNI_MAC)


def make_arena(mode: str, size: int) -> Arena:
    return map_hugepages(size, IovaMode.VA if mode in ("va", "strict-va") else IovaMode.PA)


class Rig:
    """One /dev/kni opener with an arena, an mbuf pool, devices and a thread answering their requests.

    ``fail`` maps a callback name (change_mtu, config_network_if, config_mac_address, config_promiscuity,
    config_allmulticast) to the errno its callback returns; ``seen`` records (callback name, argument).
    """

    def __init__(self, mode: str = "pa", arena_size: int = 8 * HUGEPAGE, mbufs: int = 1024) -> None:
        self.mode = mode
        self.arena = make_arena(mode, arena_size)
        self.control = KniControl()
        if mode.startswith("strict"):
            self.control.register_arena(self.arena)
        self.pool = MbufPool(self.arena, "rig", mbufs)
        self.devices: Dict[str, KniDevice] = {}
        self.fail: Dict[str, int] = {}
        self.seen: List[tuple] = []
        self.hooks: Dict[str, Callable[[object], None]] = {}
        self._closed = False
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _callback(self, kind: str) -> Callable[[object], int]:
        def handler(argument: object) -> int:
            self.seen.append((kind, argument))
            hook = self.hooks.get(kind)
            if hook is not None:
                hook(argument)
            return -self.fail.get(kind, 0)

        return handler

    def callbacks(self) -> RequestCallbacks:
        return RequestCallbacks(*(self._callback(kind) for kind in RequestCallbacks._fields))

    def add(self, name: str = "kni0", **config: object) -> KniDevice:
        config.setdefault("mac_addr", KNI_MAC)
        device = KniDevice(self.control, DeviceConfig(name, **config), self.arena, self.pool, self.callbacks())
        with self._lock:
            self.devices[name] = device
        with (
            contextlib.suppress(OSError),
            open(  # no IPv6 chatter on tx_q
                f"/proc/sys/net/ipv6/conf/{name}/disable_ipv6", "w", encoding="ascii"
            ) as handle,
        ):
            handle.write("1")
        return device

    def remove(self, name: str) -> float:
        """RELEASE by ioctl; returns the seconds the ioctl took."""
        with self._lock:
            device = self.devices.pop(name)
        started = time.monotonic()
        device.release()
        return time.monotonic() - started

    def _serve(self) -> None:
        while not self._stop.is_set():
            with self._lock:
                devices = list(self.devices.values())
            for device in devices:
                with contextlib.suppress(Exception):
                    device.poll_requests()
            time.sleep(0.0005)

    def configure_ip(self, name: str = "kni0") -> None:
        sh(
            f"ip addr add {KNI_IP}/24 dev {name} && ip link set {name} up && "
            f"ip neigh replace {PEER_IP} lladdr {PEER_MAC.hex(':')} dev {name} nud permanent"
        )
        self.devices[name].update_link(True)  # as a DPDK application would once its port is up

    def inject(self, name: str, frames: List[bytes], segment_size: Optional[int] = None) -> None:
        """Put frames on rx_q (chained when ``segment_size`` is smaller than a frame), waiting for room."""
        device = self.devices[name]
        if segment_size:
            heads = [self.pool.write_chain(frame, segment_size) for frame in frames]
        else:
            heads = self.pool.write_packets(frames)
        assert len(heads) == len(frames), "mbuf pool exhausted"
        deadline = time.monotonic() + 20
        while heads:
            sent = device.tx_burst(heads)
            heads = heads[sent:]
            if heads:
                assert time.monotonic() < deadline, "rx_q never drained"
                time.sleep(0.001)

    def collect(
        self, name: str, count: int, timeout: float = 10.0, keep: Optional[Callable[[bytes], bool]] = None
    ) -> list:
        """Frames from tx_q until ``count`` kept ones arrived (or timeout)."""
        device = self.devices[name]
        frames: List[bytes] = []
        deadline = time.monotonic() + timeout
        while len(frames) < count and time.monotonic() < deadline:
            mbufs = device.rx_burst()
            if not mbufs:
                device.free_completed()
                time.sleep(0.002)
                continue
            for frame in self.pool.read_packets(mbufs):
                if keep is None or keep(frame):
                    frames.append(frame)
            self.pool.free_burst(mbufs)
        return frames

    def close_control_thread(self) -> None:
        """Stop answering requests, as a crashed application would."""
        self._stop.set()
        self._thread.join(timeout=10)

    def close_control(self) -> float:
        """Stop answering requests and close /dev/kni (removing every interface); returns the seconds close() took."""
        self._closed = True
        self.close_control_thread()
        started = time.monotonic()
        self.control.close()
        return time.monotonic() - started

    def close(self) -> float:
        """Close /dev/kni with whatever devices remain; returns the seconds close() took."""
        if self._closed:
            return 0.0
        elapsed = self.close_control()
        for device in self.devices.values():
            device.release()  # EBADF: the close removed it; reclaims the memory
        self.devices.clear()
        self.pool.close()
        self.arena.close()
        return elapsed


@contextlib.contextmanager
def rig(mode: str = "pa", **kwargs: object) -> Iterator[Rig]:
    bench = Rig(mode, **kwargs)
    try:
        yield bench
    finally:
        bench.close()


# A UDP receiver in its own process: prints "ready" once bound, then counts datagrams. It stops when the count it
# reads on stdin has arrived, or after SILENCE seconds without a datagram once stdin said that count or closed (so a
# shortfall still ends, with the count that did arrive); prints the count.
RECEIVER = r"""
import select, socket, sys, time
SILENCE = 3.0
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.setsockopt(socket.SOL_SOCKET, 33, 1 << 27)  # SO_RCVBUFFORCE
s.bind((sys.argv[1], int(sys.argv[2])))
s.setblocking(False)
print("ready", flush=True)
count, expected, told, last = 0, None, False, time.monotonic()
while not (told and (count >= (expected or 0) or time.monotonic() - last >= SILENCE)):
    ready = select.select([s] + ([] if told else [sys.stdin]), [], [], 0.2)[0]
    if sys.stdin in ready:
        line = sys.stdin.readline()
        told, expected = True, int(line) if line.strip() else None
    while s in ready:
        try:
            s.recv(2048)
        except BlockingIOError:
            break
        count, last = count + 1, time.monotonic()
print(count, flush=True)
"""


def start_receiver(address: str, port: int) -> subprocess.Popen:
    """RECEIVER bound to ``address``:``port``; ``receiver_count`` ends it."""
    receiver = subprocess.Popen(
        [sys.executable, "-c", RECEIVER, address, str(port)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    assert receiver.stdout is not None
    if receiver.stdout.readline().strip() != "ready":
        receiver.kill()
        receiver.wait()
        raise AssertionError("the UDP receiver process did not start")
    return receiver


def receiver_count(receiver: subprocess.Popen, expected: Optional[int] = None, timeout: float = 120) -> int:
    """What RECEIVER counted: it stops once ``expected`` datagrams arrived, or after its silence otherwise."""
    return int(receiver.communicate("" if expected is None else f"{expected}\n", timeout=timeout)[0].strip())


def udp_rcvbuf_errors() -> int:
    with open("/proc/net/snmp", encoding="ascii") as handle:
        lines = [line.split() for line in handle if line.startswith("Udp:")]
    return int(lines[1][lines[0].index("RcvbufErrors")])


def overload(bench: Rig, seconds: float, port: int) -> tuple:
    """Fill rx_q as fast as possible for ``seconds``; return (injected, delivered to the app, rx_packets, elapsed)."""
    device = bench.devices["kni0"]
    pool = bench.pool
    receiver = start_receiver(KNI_IP, port)
    frame = udp_frame(b"overload" * 8, port)
    rx_before = stat("kni0", "rx_packets")
    injected = 0
    started = time.monotonic()
    while time.monotonic() - started < seconds:
        heads = pool.write_packets([frame] * min(64, pool.available))
        if not heads:
            device.free_completed()
            continue
        sent = device.tx_burst(heads)
        device.free_completed()
        injected += sent
        if sent < len(heads):
            pool.free_burst(heads[sent:])
    # The kernel parks consumed mbufs on free_q and stops taking rx_q when free_q is full: keep draining it.
    assert wait_for(lambda: device.free_completed() >= 0 and device.fifo("rx").count() == 0)
    elapsed = time.monotonic() - started
    rx_packets = stat("kni0", "rx_packets") - rx_before
    return injected, receiver_count(receiver, rx_packets), rx_packets, elapsed


def wait_for(predicate: Callable[[], bool], timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.01)
    return predicate()


def kthread_pids(name: str) -> List[int]:
    pids = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            with contextlib.suppress(OSError), open(f"/proc/{entry}/comm", encoding="ascii") as handle:
                if handle.read().strip() == name:
                    pids.append(int(entry))
    return pids


def proc_status(pid: int, field: str) -> str:
    with open(f"/proc/{pid}/status", encoding="ascii") as handle:
        for line in handle:
            if line.startswith(field + ":"):
                return line.split(":", 1)[1].strip()
    raise KeyError(field)


def cpu_ticks(pid: int) -> int:
    with open(f"/proc/{pid}/stat", encoding="ascii") as handle:
        fields = handle.read().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])  # utime + stime (fields 14 and 15)


def errno_name(code: int) -> str:
    return errno.errorcode.get(code, str(code))
