# SPDX-License-Identifier: GPL-3.0-or-later
# Copyright: kernelnic.kni contributors
"""kni-pump daemon on a fake KNI host: reconcile, control protocol, requests, loopback and null backends."""

from __future__ import annotations

import errno
import json
import os
import stat
import struct
import threading
import time
from pathlib import Path
from typing import Iterator, List, Optional, Tuple

import pytest
from ansible_collections.kernelnic.kni.plugins.module_utils._kni.abi import KniDeviceError, RequestId
from ansible_collections.kernelnic.kni.plugins.module_utils._kni.device import KniDevice
from ansible_collections.kernelnic.kni.plugins.module_utils._kni.mbuf import MbufPool
from ansible_collections.kernelnic.kni.plugins.module_utils._pump.backends import NullBackend
from ansible_collections.kernelnic.kni.plugins.module_utils._pump.control import ControlClient, parse_request
from ansible_collections.kernelnic.kni.plugins.module_utils._pump.daemon import PumpDaemon, Settings
from ansible_collections.kernelnic.kni.plugins.module_utils._pump.netlink import AddressEvent
from ansible_collections.kernelnic.kni.plugins.module_utils._pump.pacing import (
    MAX_THROTTLED_SLEEP,
    THROTTLED_SHARE,
    THROTTLED_SLEEP,
)
from ansible_collections.kernelnic.kni.plugins.module_utils._pump.schema import ConfigError, mac_bytes, parse_interface
from ansible_collections.kernelnic.kni.plugins.module_utils._pump.sizing import (
    ALLOC_Q_TARGET,
    INGRESS_BURST,
    INGRESS_IN_FLIGHT,
    alloc_q_target,
    ingress_in_flight,
)
from ansible_collections.kernelnic.kni.plugins.module_utils._pump.state import read_state
from pump_fakes import (
    FakeKni,
    FakeLinks,
    ThreadWorker,
    fake_system,
    kernel_answer,
    kernel_receive,
    kernel_request,
    kernel_transmit,
)

LOOP = {"name": "kni0", "backend": "loopback", "mac": "02:00:00:00:00:01", "carrier": "on"}
SINK = {"name": "kni1", "backend": "null", "mtu": 1400}


@pytest.fixture
def daemon(tmp_path: Path) -> Iterator[Tuple[PumpDaemon, FakeKni, FakeLinks, ThreadWorker]]:
    kni, links, worker = FakeKni(), FakeLinks(), ThreadWorker()
    settings = Settings(str(tmp_path), str(tmp_path / "control.sock"), max_interfaces=3)
    pump = PumpDaemon(settings, kni, links, worker, None, fake_system(["veth0"]))
    assert pump.start([parse_interface(LOOP), parse_interface(SINK)]) == []
    yield pump, kni, links, worker
    pump.close()


def serve(pump: PumpDaemon, function):  # type: ignore[no-untyped-def]
    """Run ``function`` (a client) on a thread while the daemon's loop runs here."""
    result: dict = {}

    def client() -> None:
        try:
            result["value"] = function()
        except BaseException as exc:  # pylint: disable=broad-exception-caught
            result["error"] = exc

    thread = threading.Thread(target=client)
    thread.start()
    pump.run(until=lambda: not thread.is_alive())
    thread.join()
    if "error" in result:
        raise result["error"]
    return result["value"]


def call(pump: PumpDaemon, op: str, **fields: object) -> dict:
    def request() -> dict:
        with ControlClient(pump.settings.socket_path or "") as client:
            return client.request(op, **fields)

    return serve(pump, request)


def test_start_creates_interfaces_and_persists(daemon, tmp_path: Path) -> None:
    pump, kni, _links, _worker = daemon
    assert sorted(pump.ports) == ["kni0", "kni1"]
    created = {fields[0].rstrip(b"\0").decode(): fields for fields in kni.control.created}
    assert created["kni0"][-2] == mac_bytes("02:00:00:00:00:01")
    assert created["kni1"][-5] == 1400  # mtu field of rte_kni_device_info
    state = read_state(str(tmp_path))
    assert state is not None
    assert [interface.name for interface in state.interfaces] == ["kni0", "kni1"]
    assert state.interfaces[1].mac is not None  # generated once, then persisted


def test_socket_is_owner_only(daemon) -> None:
    pump = daemon[0]
    mode = os.stat(pump.settings.socket_path).st_mode
    assert stat.S_ISSOCK(mode) and stat.S_IMODE(mode) == 0o600


def test_loopback_echoes_frames(daemon) -> None:
    pump = daemon[0]
    device = pump.ports["kni0"].device
    frames = [bytes([n]) * (60 + n) for n in range(40)]
    for frame in frames:
        kernel_transmit(device, frame)
    pump.ports["kni0"].admin_up = True
    for _round in range(4):
        pump.pump_once()
    assert kernel_receive(device) == frames
    counters = pump.ports["kni0"].counters
    assert counters["egress_packets"] == counters["ingress_packets"] == 40
    assert counters["egress_bytes"] == sum(map(len, frames))


def test_null_sinks(daemon) -> None:
    pump = daemon[0]
    port = pump.ports["kni1"]
    available = port.pool.available
    kernel_transmit(port.device, b"x" * 100)
    pump.pump_once()
    assert port.counters["egress_packets"] == 1 and port.counters["egress_bytes"] == 100
    assert kernel_receive(port.device) == []
    pump.pump_once()
    assert port.pool.available == available  # the sunk mbuf went back (alloc_q was topped up again)


def test_null_source_fills_bursts(daemon) -> None:
    from ansible_collections.kernelnic.kni.plugins.module_utils._pump.backends import NullBackend

    pump = daemon[0]
    port = pump.ports["kni1"]
    port.backend = NullBackend(port.pool, pump._defer, b"\xab" * 64)
    port.admin_up = True
    pump.pump_once()
    received = kernel_receive(port.device)
    assert received == [b"\xab" * 64] * min(INGRESS_BURST, ingress_in_flight(port.pool.count))


def test_requests_reach_backend_and_mtu_refusal(daemon) -> None:
    pump, _kni, links, worker = daemon
    port = pump.ports["kni0"]
    device = port.device
    kernel_request(device, RequestId.CFG_NETWORK_IF, b"\x01")
    pump.pump_once()
    assert kernel_answer(device) == 0
    assert port.admin_up and port.backend.admin_up
    worker.wait()
    assert links.calls[-1] == (port.ifindex, {"carrier": True})  # policy "on": pushed after ndo_open
    kernel_request(device, RequestId.CHANGE_MTU, struct.pack("<I", 1200))
    pump.pump_once()
    assert kernel_answer(device) == 0 and port.mtu == 1200
    kernel_request(device, RequestId.CHANGE_MTU, struct.pack("<I", 4000))  # more than an mbuf holds
    pump.pump_once()
    assert kernel_answer(device) == -22 and port.mtu == 1200
    kernel_request(device, RequestId.CHANGE_PROMISC, b"\x01")
    pump.pump_once()
    assert kernel_answer(device) == 0 and port.backend.promisc
    kernel_request(device, RequestId.CHANGE_MAC_ADDR, mac_bytes("02:00:00:00:00:77"))
    pump.pump_once()
    assert kernel_answer(device) == 0 and port.mac == "02:00:00:00:00:77"
    assert port.counters["requests"] == 5 and port.counters["requests_refused"] == 1


def test_control_list_get_stats(daemon) -> None:
    pump = daemon[0]
    listing = call(pump, "list")
    assert listing["ok"] and [item["name"] for item in listing["interfaces"]] == ["kni0", "kni1"]
    got = call(pump, "get", name="kni1")["interface"]
    assert got["desired"]["mtu"] == 1400 and got["state"] == "down"
    stats = call(pump, "stats", name="kni0")
    assert set(stats["interfaces"]) == {"kni0"} and "rounds" in stats["daemon"]


@pytest.mark.parametrize(
    ("line", "field", "words"),
    [
        (b"{nope", "request", "not valid JSON"),
        (b"[1]", "request", "JSON object"),
        (b'{"op": "list"}', "version", "is required"),
        (b'{"version": 2, "op": "list"}', "version", "must be 1"),
        (b'{"version": 1, "op": "reboot"}', "op", "not one of"),
        (b'{"version": 1, "op": "list", "x": 1}', "x", "unknown field"),
        (b'{"version": 1, "op": "get"}', "name", "is required"),
        (b'{"version": 1, "op": "apply"}', "interfaces", "exactly one"),
        (
            b'{"version": 1, "op": "apply", "interface": {"name": "kni0", "backend": "null", "mtu": 9}}',
            "interface.mtu",
            "range",
        ),
        (
            b'{"version": 1, "op": "apply", "interfaces": [{"name": "k", "backend": "x"}]}',
            "interfaces[0].backend",
            "unknown",
        ),
    ],
)
def test_malformed_requests(line: bytes, field: str, words: str) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_request(line)
    assert caught.value.field == field and words in caught.value.message


def test_invalid_requests_change_nothing(daemon, tmp_path: Path) -> None:
    pump, kni, _links, _worker = daemon
    before = (tmp_path / "state.json").read_bytes()
    created = len(kni.control.created)

    def requests() -> list:
        with ControlClient(pump.settings.socket_path or "") as client:
            return [
                client.send_line(b"{garbage"),
                client.request("apply", interfaces=[LOOP, {**SINK, "carrier": "sometimes"}]),
                client.request("apply", interfaces=[LOOP, {"name": "kni5", "backend": "afpacket:missing0"}]),
                client.request("apply", interface={"name": "eth0", "backend": "null"}),
                client.request("apply", interface={"name": "kni7", "backend": "null", "core": 9}),
                client.request("delete", name="kni9"),
                client.request(
                    "apply",
                    interfaces=[LOOP, SINK, *({"name": f"x{n}", "backend": "null"} for n in range(2))],
                ),
            ]

    replies = serve(pump, requests)
    assert [reply["ok"] for reply in replies] == [False] * 7
    fields = [reply["error"]["field"] for reply in replies]
    assert fields == [
        "request",
        "interfaces[1].carrier",
        "interfaces[1].backend",
        "interface.name",
        "interface.core",
        "name",
        "interfaces[3]",
    ]
    assert "missing0" in replies[2]["error"]["message"]
    assert (tmp_path / "state.json").read_bytes() == before
    assert len(kni.control.created) == created and kni.control.released == []
    assert sorted(pump.ports) == ["kni0", "kni1"]


def test_apply_one_delete_and_replace(daemon, tmp_path: Path) -> None:
    pump, kni, _links, _worker = daemon
    reply = call(pump, "apply", interface={"name": "kni2", "backend": "null"})
    assert reply["ok"] and reply["actions"] == ["create kni2"]
    assert sorted(pump.ports) == ["kni0", "kni1", "kni2"]
    reply = call(pump, "delete", name="kni1")
    assert reply["ok"] and reply["actions"] == ["delete kni1"] and kni.control.released == ["kni1"]
    reply = call(pump, "apply", interfaces=[{**LOOP, "max_mtu": 1500}])
    assert reply["actions"] == ["delete kni2", "recreate kni0 (max_mtu)"]
    state = json.loads((tmp_path / "state.json").read_text())
    assert [item["name"] for item in state["interfaces"]] == ["kni0"]
    assert state["interfaces"][0]["max_mtu"] == 1500


def test_live_mtu_change_goes_through_the_kernel(daemon) -> None:
    pump, _kni, links, _worker = daemon
    port = pump.ports["kni1"]

    def kernel_reacts(ifindex: int, change: dict) -> None:
        # The kernel turns RTM_SETLINK into a CHANGE_MTU request and waits for the pump's answer.
        assert ifindex == port.ifindex
        kernel_request(port.device, RequestId.CHANGE_MTU, struct.pack("<I", change["mtu"]))
        while (result := kernel_answer(port.device)) is None:
            pass
        if result:
            raise OSError(-result, "refused")

    links.on_set = kernel_reacts
    reply = call(pump, "apply", interface={**SINK, "mtu": 1300, "mac": pump.desired["kni1"].mac})
    assert reply["ok"], reply
    assert reply["actions"] == ["update kni1 (mtu)"]
    assert port.mtu == 1300 and port.config.mtu == 1300


def test_carrier_policy_change_is_live(daemon) -> None:
    pump, _kni, links, worker = daemon
    port = pump.ports["kni0"]
    port.admin_up, port.carrier_set = True, True
    reply = call(pump, "apply", interface={**LOOP, "carrier": "off"})
    assert reply["ok"] and reply["actions"] == ["update kni0 (carrier)"]
    worker.wait()
    assert links.calls[-1] == (port.ifindex, {"carrier": False})


def test_deep_idle_reads_only_fifo_indices_and_wakes_for_kernel_work(daemon) -> None:
    pump, _kni, _links, _worker = daemon
    pump.settings.request_poll = pump.settings.deep_poll = 0.001
    pump.settings.max_idle_sleep = 3600.0  # no housekeeping rounds during this test
    device = pump.ports["kni1"].device
    events: list = []

    def until() -> bool:
        events.append((pump.stats["rounds"], pump.stats["sleeps"]))
        if len(events) == 300:
            kernel_request(device, RequestId.CHANGE_MTU, struct.pack("<I", 1300))
        return len(events) > 300 and kernel_answer(device) is not None

    pump.run(until=until)
    rounds_at_request, sleeps_at_request = events[299]  # just before the request
    rounds_earlier, sleeps_earlier = events[199]
    assert rounds_at_request == rounds_earlier  # deep idle: sleeps only, no full rounds
    assert sleeps_at_request - sleeps_earlier == 100
    assert pump.ports["kni1"].mtu == 1300


def test_deep_idle_notices_egress_frames(daemon) -> None:
    pump, _kni, _links, _worker = daemon
    pump.settings.request_poll = pump.settings.deep_poll = 0.001
    pump.settings.max_idle_sleep = 3600.0
    port = pump.ports["kni1"]
    calls = [0]

    def until() -> bool:
        calls[0] += 1
        if calls[0] == 200:
            kernel_transmit(port.device, bytes(60))
        return port.counters["egress_packets"] == 1

    pump.run(until=until)
    assert calls[0] > 200


def test_idle_sleep_deepens_after_a_silence(daemon) -> None:
    pump, _kni, _links, _worker = daemon
    pump.settings.request_poll, pump.settings.deep_poll, pump.settings.warm_idle = 0.001, 0.002, 0.05
    seen = set()

    def until() -> bool:
        seen.add(pump.sleep)
        return pump.sleep == 0.002

    pump.run(until=until)
    assert 0.001 in seen  # the warm sleep came first


def test_admin_state_is_persisted_and_restored(daemon, tmp_path: Path) -> None:
    pump, _kni, _links, worker = daemon
    port = pump.ports["kni1"]
    kernel_request(port.device, RequestId.CFG_NETWORK_IF, b"\x01")  # ip link set kni1 up
    pump.pump_once()
    assert kernel_answer(port.device) == 0
    state = read_state(str(tmp_path))
    assert state is not None and state.admin_up == ("kni1",)
    worker.wait()
    pump.close()  # releasing an interface does not count as the operator taking it down
    state = read_state(str(tmp_path))
    assert state is not None and state.admin_up == ("kni1",)

    # A new daemon from that state: it asks the kernel to bring kni1 up, and answers the request that causes.
    fresh_kni, fresh_links = FakeKni(), FakeLinks()
    restarted = PumpDaemon(
        Settings(str(tmp_path), max_interfaces=3), fresh_kni, fresh_links, worker, None, fake_system()
    )

    def kernel_reacts(ifindex: int, change: dict) -> None:
        if change.get("up"):
            device = fresh_kni.devices["kni1"]
            kernel_request(device, RequestId.CFG_NETWORK_IF, b"\x01")
            while kernel_answer(device) is None:
                pass

    fresh_links.on_set = kernel_reacts
    assert restarted.start(state.interfaces, state.admin_up) == []
    assert restarted.ports["kni1"].admin_up and not restarted.ports["kni0"].admin_up
    ifindex = restarted.ports["kni1"].ifindex
    # start() returned once the carrier the policy wants ("follow" of a null backend: on) was pushed too.
    assert fresh_links.calls == [(ifindex, {"up": True}), (ifindex, {"carrier": True})]
    kernel_request(restarted.ports["kni1"].device, RequestId.CFG_NETWORK_IF, b"\x00")  # ip link set kni1 down
    restarted.pump_once()
    state = read_state(str(tmp_path))
    assert state is not None and state.admin_up == ()
    restarted.close()


def test_a_small_pool_keeps_mbufs_for_both_directions(tmp_path: Path) -> None:
    """alloc_q and the frames waiting in rx_q never take the whole pool, whatever its size."""
    assert (alloc_q_target(4096), ingress_in_flight(4096)) == (ALLOC_Q_TARGET, INGRESS_IN_FLIGHT)
    assert (alloc_q_target(64), ingress_in_flight(64)) == (32, 24)
    assert (alloc_q_target(1), ingress_in_flight(1)) == (1, 1)
    pump = PumpDaemon(Settings(str(tmp_path), max_interfaces=1), FakeKni(pool_size=64), FakeLinks(), ThreadWorker())
    assert pump.start([parse_interface({"name": "kni0", "backend": "null"})]) == []
    port = pump.ports["kni0"]
    port.backend.close()
    port.backend = NullBackend(port.pool, pump._defer, bytes(60))  # pylint: disable=protected-access
    for _round in range(5):
        port.pump()
    assert port.rx_q.count() == 24 and port.throttled
    assert port.pool.available == 64 - 24 - port.device.fifo("alloc").count() > 0
    pump.close()


def test_ingress_waits_for_a_burst_worth_of_room(daemon) -> None:
    """A nearly full rx_q is not topped up a few frames at a time: the pump waits until half the in-flight limit is
    free, and says it is throttled meanwhile (so it polls soon instead of backing off)."""
    pump = daemon[0]
    port = pump.ports["kni1"]
    port.backend = NullBackend(port.pool, pump._defer, b"\xcd" * 60)  # pylint: disable=protected-access
    limit = ingress_in_flight(port.pool.count)
    rx_q, free_q = port.device.fifo("rx"), port.device.fifo("free")

    def kernel_takes(count: int) -> None:
        free_q.put(rx_q.get(count))

    port.pump()
    assert rx_q.count() == limit and port.throttled
    kernel_takes(limit // 2 - 1)
    assert port.pump() == 0 and rx_q.count() == limit - (limit // 2 - 1) and port.throttled
    kernel_takes(1)
    assert port.pump() == limit // 2 and rx_q.count() == limit


def test_waiting_ingress_sleeps_as_long_as_the_kernel_needs(daemon) -> None:
    """While ingress waits, the pump measures how fast the kernel drains rx_q and sleeps until a burst should fit,
    within bounds; a refill starts the measurement anew."""
    pump = daemon[0]
    port = pump.ports["kni1"]
    port.backend = NullBackend(port.pool, pump._defer, b"\xcd" * 60)  # pylint: disable=protected-access
    limit = ingress_in_flight(port.pool.count)
    rx_q, free_q = port.device.fifo("rx"), port.device.fifo("free")
    port.pump()
    pump.throttled = True
    assert rx_q.count() == limit and port.throttled
    assert pump._throttled_sleep(10.0) == THROTTLED_SLEEP  # pylint: disable=protected-access  # pace unknown
    free_q.put(rx_q.get(10))  # 10 frames in 1 ms: 10,000 frames/s
    excess = limit - 10 - (limit - port.refill_at)
    assert port.throttled_wait(10.001) == pytest.approx(excess / 10_000)
    free_q.put(rx_q.get(30))  # 30 frames in 1 ms: the pace is the mean of 10,000 and 30,000 frames/s
    assert port.throttled_wait(10.002) == pytest.approx((excess - 30) / 20_000)
    assert port.drain_rate == pytest.approx(20_000)
    sleep = pump._throttled_sleep(10.002)  # pylint: disable=protected-access
    assert sleep == pytest.approx(THROTTLED_SHARE * (excess - 30) / 20_000)  # then it looks again
    for second in range(1, 6):  # a frame a second: the pace falls, and the wait is bounded
        free_q.put(rx_q.get(1))
        assert pump._throttled_sleep(10.002 + second) <= MAX_THROTTLED_SLEEP  # pylint: disable=protected-access
    assert port.drain_rate < 1_000
    assert pump._throttled_sleep(16.0) == MAX_THROTTLED_SLEEP  # pylint: disable=protected-access
    free_q.put(rx_q.get(rx_q.count() - (limit - port.refill_at)))
    assert port.throttled_wait(16.001) == 0.0  # room for a burst: no wait
    assert port.pump() == port.refill_at and rx_q.count() == limit
    assert port.pump() == 0 and port.throttled
    rate = port.drain_rate
    assert port.throttled_wait(12.0) > 0 and port.drain_rate == rate  # rx_q grew: nothing to measure yet


def test_a_pool_of_two_still_moves_frames(tmp_path: Path) -> None:
    pump = PumpDaemon(Settings(str(tmp_path), max_interfaces=1), FakeKni(pool_size=2), FakeLinks(), ThreadWorker())
    assert pump.start([parse_interface({"name": "kni0", "backend": "null"})]) == []
    port = pump.ports["kni0"]
    port.backend.close()
    port.backend = NullBackend(port.pool, pump._defer, bytes(60))  # pylint: disable=protected-access
    assert port.refill_at == 1
    assert port.pump() == 1 and port.device.fifo("rx").count() == 1
    assert port.pump() == 0 and port.throttled  # rx_q holds its limit of one
    pump.close()


def test_configured_addresses_are_persisted_and_put_back(daemon, tmp_path: Path) -> None:
    pump, _kni, _links, worker = daemon
    kni0, kni1 = pump.ports["kni0"].ifindex, pump.ports["kni1"].ifindex
    pump.link_events(
        [
            AddressEvent(kni1, "192.0.2.1/24", deleted=False, permanent=True),
            AddressEvent(kni1, "2001:db8::1/64", deleted=False, permanent=True),
            AddressEvent(kni1, "fe80::1/64", deleted=False, permanent=True),  # the kernel's link-local
            AddressEvent(kni1, "198.51.100.7/24", deleted=False, permanent=False),  # DHCP or SLAAC: has a lifetime
            AddressEvent(kni0, "192.0.2.2/24", deleted=False, permanent=True),
            AddressEvent(kni0, "192.0.2.2/24", deleted=True, permanent=True),
            AddressEvent(4242, "203.0.113.1/24", deleted=False, permanent=True),  # not ours (or a gone interface)
        ]
    )
    pump.pump_once()  # the loop saves what changed
    state = read_state(str(tmp_path))
    assert state is not None and state.addresses == {"kni1": ["192.0.2.1/24", "2001:db8::1/64"]}
    worker.wait()
    pump.close()  # releasing the interfaces keeps the record: the next daemon puts the addresses back
    state = read_state(str(tmp_path))
    assert state is not None and state.addresses == {"kni1": ["192.0.2.1/24", "2001:db8::1/64"]}

    fresh_links = FakeLinks()
    restarted = PumpDaemon(
        Settings(str(tmp_path), max_interfaces=3), FakeKni(), fresh_links, worker, None, fake_system()
    )
    assert restarted.start(state.interfaces, state.admin_up, state.addresses) == []
    ifindex = restarted.ports["kni1"].ifindex
    assert fresh_links.calls == [
        (ifindex, {"add_address": "192.0.2.1/24"}),
        (ifindex, {"add_address": "2001:db8::1/64"}),
    ]
    # Deleting the interface from the desired state forgets its addresses.
    reply = restarted.apply([parse_interface(LOOP)], replace=True, paths=[])
    assert reply["ok"], reply
    state = read_state(str(tmp_path))
    assert state is not None and state.addresses == {}
    restarted.close()


class RtnlHeldKni(FakeKni):
    """Plays the kernel holding RTNL for a request to ``holder``'s interface (someone's `ip link set up`) when the
    pump creates or releases another: the CREATE/RELEASE ioctl waits for RTNL, i.e. for that answer."""

    def __init__(self) -> None:
        super().__init__()
        self.holder: Optional[KniDevice] = None
        self.answers: List[int] = []

    def _wait_for_rtnl(self) -> None:
        if self.holder is None:
            return
        kernel_request(self.holder, RequestId.CFG_NETWORK_IF, b"\x01")
        deadline = time.monotonic() + 2.0
        while (answer := kernel_answer(self.holder)) is None:
            if time.monotonic() > deadline:  # the real kernel gives up after 3 s: `ip` fails, "Timer expired"
                raise KniDeviceError("device create", errno.ETIME, "the up request was never answered")
            time.sleep(0.001)
        self.answers.append(answer)

    def create(self, config, callbacks, on_error):  # type: ignore[no-untyped-def]
        self._wait_for_rtnl()
        return super().create(config, callbacks, on_error)

    def release(self, device: KniDevice, pool: MbufPool) -> None:
        self._wait_for_rtnl()
        super().release(device, pool)


def test_requests_are_answered_while_an_interface_is_created_or_released(tmp_path: Path) -> None:
    kni = RtnlHeldKni()
    pump = PumpDaemon(
        Settings(str(tmp_path), str(tmp_path / "control.sock"), max_interfaces=3),
        kni,
        FakeLinks(),
        ThreadWorker(),
        None,
        fake_system(),
    )
    try:
        assert pump.start([parse_interface(SINK)]) == []
        kni.holder = pump.ports["kni1"].device
        assert call(pump, "apply", interface={"name": "kni2", "backend": "null"})["ok"]
        assert call(pump, "delete", name="kni2")["ok"]
        assert kni.answers == [0, 0] and pump.ports["kni1"].admin_up
        assert sorted(pump.ports) == ["kni1"] and not pump.failed
    finally:
        kni.holder = None
        pump.close()


class WakingKni(FakeKni):
    """A module that wakes a poll() on /dev/kni: the test writes to a pipe where the kernel would wake the pump."""

    def __init__(self) -> None:
        super().__init__()
        self.wake_read, self.wake_write = os.pipe()

    def fileno(self) -> Optional[int]:
        return self.wake_read

    def close(self) -> None:
        os.close(self.wake_read)
        os.close(self.wake_write)


def test_an_idle_pump_sleeps_until_the_kernel_wakes_it(tmp_path: Path) -> None:
    kni = WakingKni()
    settings = Settings(str(tmp_path), max_interfaces=3, request_poll=0.001, deep_poll=0.001, max_idle_sleep=0.5)
    pump = PumpDaemon(settings, kni, FakeLinks(), ThreadWorker(), None, fake_system(["veth0"]))
    assert pump.start([parse_interface(LOOP)]) == []
    device = pump.ports["kni0"].device
    posted: List[float] = []

    def post() -> None:  # the kernel: a request, and the wakeup (/dev/kni turns readable)
        kernel_request(device, RequestId.CHANGE_MTU, struct.pack("<I", 1300))
        posted.append(time.monotonic())
        os.write(kni.wake_write, b"x")

    timer = threading.Timer(0.15, post)
    deadline = time.monotonic() + 5

    def until() -> bool:
        if pump.sleep > 0.3 and not timer.is_alive() and not posted:
            timer.start()  # 0.15 s into a sleep the pump wanted to last until its housekeeping round
        return (bool(posted) and kernel_answer(device) is not None) or time.monotonic() > deadline

    try:
        pump.run(until=until)
        answered = time.monotonic()
    finally:
        timer.cancel()
        pump.close()
        kni.close()
    assert posted, "the idle pump never slept until its housekeeping round"
    assert answered - posted[0] < 0.1  # woken, not at the end of its sleep
