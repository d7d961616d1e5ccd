# SPDX-License-Identifier: GPL-3.0-or-later
# Copyright: kernelnic.kni contributors
"""The guest lab that bench_pump.py and bench_idle.py measure in: the KNI interface with kni-pump (null backend) in a
child process, the same pump loop over a TAP device, the UDP app that receives, the frames they carry
(tests/frames.py builds them) and the guest's preparation."""

import ctypes
import fcntl
import importlib
import multiprocessing
import os
import select
import socket
import struct
import subprocess
import sys
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(REPO, "tests"))
importlib.import_module("conftest")  # makes ansible_collections.kernelnic.kni importable
sys.path.insert(0, REPO)
frames = importlib.import_module("tests.frames")
from ansible_collections.kernelnic.kni.plugins.module_utils._pump.backends import NullBackend
from ansible_collections.kernelnic.kni.plugins.module_utils._pump.daemon import PumpDaemon, Settings
from ansible_collections.kernelnic.kni.plugins.module_utils._pump.kernel_adapter import KernelKni
from ansible_collections.kernelnic.kni.plugins.module_utils._pump.netlink import RtnlClient, RtnlWorker
from ansible_collections.kernelnic.kni.plugins.module_utils._pump.pacing import (
    BUSY_CHECK_INTERVAL,
    FIRST_SLEEP,
    REQUEST_POLL,
    SPIN_TIME,
)
from ansible_collections.kernelnic.kni.plugins.module_utils._pump.schema import parse_interface

KNI_NAME, TAP_NAME = "kbench0", "tbench0"

KNI_MAC, PEER_MAC = "02:00:00:88:00:01", "02:00:00:88:00:02"

UDP_PORT = 9999

BURST = 32


def ip(command: str) -> None:
    subprocess.run(f"ip {command}", shell=True, check=True)


def udp_frame(size: int, dst_mac: str, src_ip: str, dst_ip: str) -> bytes:
    """An Ethernet/IPv4/UDP frame of ``size`` bytes (without FCS) from the peer to ``UDP_PORT``."""
    return frames.udp_frame(
        bytes(size - frames.HEADERS_LEN),
        UDP_PORT,
        src=src_ip,
        dst=dst_ip,
        src_mac=bytes.fromhex(PEER_MAC.replace(":", "")),
        dst_mac=bytes.fromhex(dst_mac.replace(":", "")),
    )


class _Iovec(ctypes.Structure):
    _fields_ = (("base", ctypes.c_void_p), ("length", ctypes.c_size_t))


class _Msghdr(ctypes.Structure):
    _fields_ = (
        ("name", ctypes.c_void_p),
        ("namelen", ctypes.c_uint32),
        ("iov", ctypes.POINTER(_Iovec)),
        ("iovlen", ctypes.c_size_t),
        ("control", ctypes.c_void_p),
        ("controllen", ctypes.c_size_t),
        ("flags", ctypes.c_int),
    )


class _Mmsghdr(ctypes.Structure):
    _fields_ = (("header", _Msghdr), ("length", ctypes.c_uint))


MSG_WAITFORONE = 0x10000

RECV_BATCH = 64


def udp_receiver(address: str, seconds: float, ready: multiprocessing.Event, result: multiprocessing.Queue) -> None:
    """Count datagrams, up to RECV_BATCH per recvmmsg() (blocking for the first, with a 200 ms SO_RCVTIMEO); puts
    (datagrams, CPU seconds the counting took)."""
    libc = ctypes.CDLL(None, use_errno=True)
    buffers = [ctypes.create_string_buffer(2048) for _buffer in range(RECV_BATCH)]
    iovecs = (_Iovec * RECV_BATCH)(*(_Iovec(ctypes.addressof(buffer), 2048) for buffer in buffers))
    messages = (_Mmsghdr * RECV_BATCH)()
    for index in range(RECV_BATCH):
        messages[index].header.iov = ctypes.pointer(iovecs[index])
        messages[index].header.iovlen = 1
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 22)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVTIMEO, struct.pack("ll", 0, 200_000))
        sock.bind((address, UDP_PORT))
        ready.set()
        received = 0
        cpu_before = time.process_time()
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            count = libc.recvmmsg(sock.fileno(), messages, RECV_BATCH, MSG_WAITFORONE, None)
            if count > 0:
                received += count
    result.put((received, time.process_time() - cpu_before))


def kni_pump(
    module_ready: multiprocessing.Event,
    stop: multiprocessing.Event,
    source_frame: bytes,
    result: multiprocessing.Queue,
) -> None:
    """A child process running PumpDaemon with a null backend (a source if ``source_frame``)."""
    worker, links = RtnlWorker(), RtnlClient()
    state_dir = f"/tmp/kni-bench-{os.getpid()}"
    os.makedirs(state_dir, exist_ok=True)
    kni = KernelKni(max_interfaces=1)
    daemon = PumpDaemon(Settings(state_dir, max_interfaces=1), kni, links, worker)
    config = parse_interface({"name": KNI_NAME, "mac": KNI_MAC, "backend": "null", "carrier": "on"})
    daemon.start([config])
    port = daemon.ports[KNI_NAME]
    if source_frame:
        port.backend.close()
        port.backend = NullBackend(port.pool, daemon._defer, source_frame)  # pylint: disable=protected-access
    module_ready.set()
    daemon.run(until=stop.is_set)
    result.put(dict(port.counters))
    daemon.close()
    worker.stop()
    kni.close()


class KniSide:
    def __init__(self, source_frame: bytes = b"") -> None:
        self.ready = multiprocessing.Event()
        self.stop_event = multiprocessing.Event()
        self.result: multiprocessing.Queue = multiprocessing.Queue()
        self.process = multiprocessing.Process(
            target=kni_pump, args=(self.ready, self.stop_event, source_frame, self.result)
        )
        self.process.start()
        if not self.ready.wait(60):
            raise RuntimeError("the pump did not start")
        ip(f"link set {KNI_NAME} up")
        ip(f"addr add 10.88.0.1/24 dev {KNI_NAME}")
        ip(f"neigh replace 10.88.0.2 lladdr {PEER_MAC} dev {KNI_NAME}")

    def stop(self) -> dict:
        self.stop_event.set()
        counters = self.result.get(timeout=30)
        self.process.join(30)
        return counters


TUNSETIFF = 0x400454CA

IFF_TAP = 0x0002

IFF_NO_PI = 0x1000


def tap_pump(
    stop: multiprocessing.Event, source_frame: bytes, ready: multiprocessing.Event, result: multiprocessing.Queue
) -> None:
    fd = os.open("/dev/net/tun", os.O_RDWR | os.O_NONBLOCK)
    fcntl.ioctl(fd, TUNSETIFF, struct.pack("16sH22x", TAP_NAME.encode(), IFF_TAP | IFF_NO_PI))
    ready.set()
    moved_total = 0
    idle = 0
    last_check = idle_since = time.monotonic()
    while True:
        now = time.monotonic()
        if now - last_check >= BUSY_CHECK_INTERVAL:  # as often as the KNI pump asks its ``until``
            last_check = now
            if stop.is_set():
                break
        moved = 0
        for _frame in range(BURST):  # egress: one read() per frame
            try:
                os.read(fd, 4096)
            except BlockingIOError:
                break
            moved += 1
        if source_frame:
            for _frame in range(BURST):  # ingress: one write() per frame
                try:
                    os.write(fd, source_frame)
                except OSError:
                    break
                moved += 1
        moved_total += moved
        if moved:
            idle = 0
            continue
        if not idle:
            idle_since = now
        idle += 1
        if now - idle_since >= SPIN_TIME:  # the KNI pump's back-off: spin a while, then sleep longer and longer
            sleeps = min(int((now - idle_since) / FIRST_SLEEP), 1 << 16).bit_length()
            select.select([fd], [], [], min(REQUEST_POLL, FIRST_SLEEP * (1 << sleeps)))
    os.close(fd)
    result.put({"egress_packets": moved_total if not source_frame else 0, "moved": moved_total})


class TapSide:
    def __init__(self, source_frame: bytes = b"") -> None:
        self.stop_event = multiprocessing.Event()
        ready = multiprocessing.Event()
        self.result: multiprocessing.Queue = multiprocessing.Queue()
        self.process = multiprocessing.Process(
            target=tap_pump, args=(self.stop_event, source_frame, ready, self.result)
        )
        self.process.start()
        ready.wait(30)
        ip(f"link set {TAP_NAME} address {KNI_MAC} up")
        ip(f"addr add 10.88.0.1/24 dev {TAP_NAME}")
        ip(f"neigh replace 10.88.0.2 lladdr {PEER_MAC} dev {TAP_NAME}")

    def stop(self) -> dict:
        self.stop_event.set()
        counters = self.result.get(timeout=30)
        self.process.join(30)
        return counters


def prepare_guest() -> None:
    """Hugepages, TAP, a receive buffer the app's SO_RCVBUF can reach, and fork for the pump and app processes."""
    with open("/proc/sys/vm/nr_hugepages", "w", encoding="ascii") as handle:
        handle.write("32")  # the restart figure's kni-pump sizes its arena for 4 interfaces of 3072 mbufs
    subprocess.run(["modprobe", "tun"], check=False)
    with open("/proc/sys/net/core/rmem_max", "w", encoding="ascii") as handle:
        handle.write(str(1 << 23))  # lets the UDP app's SO_RCVBUF of 4 MiB take effect
    if not os.path.exists("/dev/net/tun"):  # a bare devtmpfs may lack the node
        os.makedirs("/dev/net", exist_ok=True)
        os.mknod("/dev/net/tun", 0o600 | 0o020000, os.makedev(10, 200))
    multiprocessing.set_start_method("fork")


PKTGEN = "/proc/net/pktgen/"


def pktgen_available() -> bool:
    return subprocess.run(["modprobe", "pktgen"], check=False, capture_output=True).returncode == 0 and (
        os.path.exists(PKTGEN + "pgctrl")
    )


def pktgen_write(path: str, line: str) -> None:
    with open(PKTGEN + path, "w", encoding="ascii") as handle:
        handle.write(line + "\n")


def pktgen_send(device: str, size: int, seconds: float) -> int:
    """pktgen on one CPU transmits ``size``-byte UDP frames (no FCS) through ``device`` for ``seconds``; returns how
    many it handed to the driver. It reuses one skb (``clone_skb``) and takes the tx lock once per ``BURST`` frames
    where the device allows it (devices that do not queue the skb itself; TAP does), which makes it fast enough that
    the pump, not the sender, sets the rate.
    """
    thread = "kpktgend_0"
    pktgen_write(thread, "rem_device_all")
    pktgen_write(thread, f"add_device {device}")
    for line in ("count 0", f"pkt_size {size}", "delay 0", "dst 10.88.0.2", f"dst_mac {PEER_MAC}"):
        pktgen_write(device, line)
    try:
        pktgen_write(device, "clone_skb 1000")
        pktgen_write(device, f"burst {BURST}")  # one tx lock per burst: allowed where clone_skb is
    except OSError:
        pktgen_write(device, "clone_skb 0")
    runner = multiprocessing.Process(target=pktgen_write, args=("pgctrl", "start"))  # blocks until stopped
    runner.start()
    time.sleep(seconds)
    pktgen_write("pgctrl", "stop")
    runner.join(30)
    with open(PKTGEN + device, encoding="ascii") as handle:
        result = handle.read()
    pktgen_write(thread, "rem_device_all")  # asynchronous: wait until the thread let go of the device
    deadline = time.monotonic() + 30
    while os.path.exists(PKTGEN + device) and time.monotonic() < deadline:
        time.sleep(0.05)
    for line in result.splitlines():
        words = line.replace(":", " ").split()
        if "pkts-sofar" in words:
            return int(words[words.index("pkts-sofar") + 1])
    raise RuntimeError(f"no pkts-sofar in the pktgen result: {result}")
