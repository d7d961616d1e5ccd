# SPDX-License-Identifier: GPL-3.0-or-later
"""rte_kni strict mode against garbage. First malformed mbufs and addresses on rx_q: each is counted in rx_errors,
none reaches the stack, and every mbuf comes back on free_q. Then random FIFO entries and indices, random mbuf
headers and chains, random device infos. The module must survive (no oops or WARN: the host scans dmesg) and still
unload."""

from __future__ import annotations

import contextlib
import os
import random
import struct
import time
from collections.abc import Callable

import pytest
from ansible_collections.kernelnic.kni.plugins.module_utils._kni.abi import (
    DEFAULT_DATA_ROOM,
    DEFAULT_HEADROOM,
    DEVICE_INFO_SIZE,
    MBUF_PORT_NONE,
    MBUF_SIZE,
    NAMESIZE,
    KniError,
    pack_mbuf_head,
)
from ansible_collections.kernelnic.kni.plugins.module_utils._kni.fifo import KniFifo
from ansible_collections.kernelnic.kni.plugins.module_utils._kni.memory import Arena

from tests.guest.kni_fixtures import PORT_FUZZ, kni_module, rig, stat, udp_frame, wait_for

pytestmark = pytest.mark.usefixtures("kni_hugepages")
ITERATIONS = 10_000
GARBAGE_MBUFS = 64
GARBAGE_STRIDE = 2304
ETH_HLEN = 14
# Mbuf heads the kernel must refuse (kni_rx_walk: -EINVAL), each with addresses that let it return the mbuf.
MALFORMED = (
    {"pkt_len": 0, "data_len": 0},  # shorter than an Ethernet header
    {"pkt_len": ETH_HLEN - 1, "data_len": ETH_HLEN - 1},
    {"pkt_len": 60, "data_len": 60, "nb_segs": 0},
    {"pkt_len": 60, "data_len": 60, "nb_segs": 65},  # more than KNI_MAX_SEGS
    {"pkt_len": 60, "data_len": 120},  # a segment longer than the packet
    {"pkt_len": 60, "data_len": 30},  # segments shorter than the packet
    {"pkt_len": 60, "data_len": 30, "nb_segs": 2, "next": 0},  # a chain without its next segment
    {"pkt_len": 65536, "data_len": 0},  # longer than any frame
)
# Entries that are no mbuf of the registered memory: refused before a head is read.
OUTSIDE = (1, 1 << 63)


def write_mbuf(view: memoryview, arena: Arena, va: int, **fields: int) -> None:
    """An mbuf head at ``va`` whose buffer follows it, as the library lays mbufs out, with ``fields`` on top."""
    data_va = va + MBUF_SIZE
    head = {
        "buf_addr": data_va,
        "buf_iova": arena.iova(data_va),
        "data_off": DEFAULT_HEADROOM,
        "refcnt": 1,
        "nb_segs": 1,
        "port": MBUF_PORT_NONE,
        "buf_len": DEFAULT_DATA_ROOM,
        **fields,
    }
    pack_mbuf_head(view, va - arena.base_va, **head)


def check_malformed_entries(
    mode: str, arena: Arena, mbufs: list, forms: list, fifos: dict, report: Callable[[str], None]
) -> None:
    """Every malformed entry on rx_q is counted in rx_errors, nothing is delivered, free_q returns the mbufs."""
    view = arena.view
    chosen = mbufs[: 2 * len(MALFORMED)]
    for index, va in enumerate(chosen):
        write_mbuf(view, arena, va, **MALFORMED[index % len(MALFORMED)])
    entries = forms[: len(chosen)] + list(OUTSIDE)  # the mbufs in the form rx_q takes, then the others
    before = {counter: stat("kni0", counter) for counter in ("rx_packets", "rx_errors", "rx_dropped")}
    rx_q: KniFifo = fifos["rx"]
    free_q: KniFifo = fifos["free"]
    assert rx_q.put(entries) == len(entries)
    assert wait_for(lambda: rx_q.count() == 0), "the kernel left malformed entries on rx_q"
    assert wait_for(lambda: stat("kni0", "rx_errors") - before["rx_errors"] >= len(entries))
    after = {counter: stat("kni0", counter) for counter in before}
    report(f"malformed entries: {len(entries)} on rx_q, counters {before} -> {after}")
    assert after["rx_errors"] - before["rx_errors"] == len(entries)
    assert after["rx_packets"] == before["rx_packets"], "a malformed entry reached the stack"
    assert after["rx_dropped"] == before["rx_dropped"]
    # An mbuf comes back by its virtual address; with IOVA=VA so does an address the kernel could not read.
    expected = sorted(chosen + (list(OUTSIDE) if mode == "strict-va" else []))
    returned: list = []
    wait_for(lambda: bool(returned.extend(free_q.get())) or len(returned) >= len(expected))
    assert sorted(returned) == expected


@pytest.mark.parametrize("mode", ["strict", "strict-va"])
def test_fuzz_fifos_mbufs_and_device_infos(mode: str, report: Callable[[str], None]) -> None:
    seed = int(os.environ.get("KNI_FUZZ_SEED") or random.SystemRandom().getrandbits(32))
    report(f"fuzz seed {seed} (KNI_FUZZ_SEED={seed} repeats it), {ITERATIONS} iterations, mode {mode}")
    rnd = random.Random(seed)
    with kni_module("strict=required"), rig(mode) as bench:
        arena = bench.arena
        device = bench.add("kni0")
        bench.configure_ip()
        garbage = arena.reserve("garbage", GARBAGE_MBUFS * GARBAGE_STRIDE)
        view = arena.view
        mbufs = [garbage.va + index * GARBAGE_STRIDE for index in range(GARBAGE_MBUFS)]
        forms = [arena.iova(va) for va in mbufs]  # what a valid entry would look like (PA form)
        fifos = {queue: device.fifo(queue) for queue in ("rx", "alloc", "free")}
        headers = {queue: arena.memzone(f"kni_{queue}_kni0").view[:16].cast("I") for queue in fifos}
        frame = udp_frame(b"fuzz" * 10, PORT_FUZZ)
        check_malformed_entries(mode, arena, mbufs, forms, fifos, report)

        def pick_address() -> int:
            if rnd.random() < 0.6:
                return rnd.choice(forms) + rnd.choice((0, 0, 0, 8, -8, 64, 4096))
            return rnd.choice(
                (0, 1, rnd.getrandbits(64), rnd.getrandbits(48), arena.base_va + rnd.randrange(arena.size))
            )

        created = refused = 0
        started = time.monotonic()
        for _iteration in range(ITERATIONS):
            action = rnd.random()
            if action < 0.45:  # random mbuf headers, then their addresses (or garbage) on rx_q / alloc_q
                for _index in range(rnd.randrange(1, 9)):
                    index = rnd.randrange(GARBAGE_MBUFS)
                    va = mbufs[index]
                    data_va = va + MBUF_SIZE
                    buf_iova = arena.iova(data_va) if rnd.random() < 0.7 else rnd.getrandbits(64)
                    buf_addr = data_va if rnd.random() < 0.7 else rnd.getrandbits(64)
                    pkt_len = rnd.choice((0, 13, 14, len(frame), 1514, 65535, 65536, rnd.getrandbits(32)))
                    data_len = rnd.choice((pkt_len & 0xFFFF, 0, 60, 2048, rnd.getrandbits(16)))
                    pack_mbuf_head(
                        view,
                        va - arena.base_va,
                        buf_addr=buf_addr,
                        buf_iova=buf_iova,
                        data_off=rnd.choice((0, 128, 2000, rnd.getrandbits(16))),
                        refcnt=1,
                        nb_segs=rnd.choice((0, 1, 1, 2, 3, 64, 65, rnd.getrandbits(16))),
                        port=MBUF_PORT_NONE,
                        pkt_len=pkt_len,
                        data_len=data_len,
                        buf_len=DEFAULT_DATA_ROOM,
                        next=pick_address(),
                    )
                    if rnd.random() < 0.3:
                        view[data_va - arena.base_va + 128 : data_va - arena.base_va + 128 + len(frame)] = frame
                queue = "rx" if rnd.random() < 0.8 else "alloc"
                fifos[queue].put([pick_address() for _index in range(rnd.randrange(1, 17))])
            elif action < 0.55:  # pure garbage entries
                fifos[rnd.choice(("rx", "alloc", "free"))].put(
                    [rnd.getrandbits(64) for _index in range(rnd.randrange(1, 33))]
                )
            elif action < 0.62:  # corrupt FIFO indices (and the len field, which the kernel must have cached)
                header = headers[rnd.choice(("rx", "alloc", "free"))]
                header[rnd.randrange(3)] = rnd.getrandbits(32)
            elif action < 0.65:  # restore sane indices so traffic keeps flowing
                for header in headers.values():
                    header[0] = header[1] = 0
                    header[2] = 1024
            else:  # random device infos
                info = bytearray(rnd.getrandbits(8) for _index in range(DEVICE_INFO_SIZE))
                if rnd.random() < 0.7:
                    name = f"fz{rnd.randrange(100)}".encode()
                    info[:NAMESIZE] = name.ljust(NAMESIZE, b"\0")
                if rnd.random() < 0.5:  # addresses inside the registered arena
                    struct.pack_into(
                        "<7Q", info, 16, *(arena.iova(arena.base_va + rnd.randrange(arena.size)) for _q in range(7))
                    )
                    info[130] = 1 if mode == "strict-va" else 0
                try:
                    bench.control.create(info)
                    created += 1
                    bench.control.release(info[:NAMESIZE].split(b"\0", 1)[0].decode("ascii", "replace"))
                except KniError:
                    refused += 1
        elapsed = time.monotonic() - started
        report(
            f"{ITERATIONS} iterations in {elapsed:.1f} s: {created} random devices created, {refused} refused; "
            f"kni0 rx_packets {stat('kni0', 'rx_packets')}, rx_errors {stat('kni0', 'rx_errors')}, "
            f"rx_dropped {stat('kni0', 'rx_dropped')}"
        )
        for header in headers.values():
            header[0] = header[1] = 0
            header[2] = 1024
        time.sleep(0.5)
        for header in headers.values():
            header.release()
        abandon(bench)


def abandon(bench: object) -> None:
    """Close /dev/kni, then reclaim the memory; the library may trip over what the fuzzing left in the FIFOs."""
    bench.close_control()
    for device in bench.devices.values():
        try:
            device.release()
        except KniError as exc:
            print(f"library teardown after fuzzing: {exc}")
            for queue in ("tx", "rx", "alloc", "free", "req", "resp"):
                with contextlib.suppress(KeyError):
                    device.fifo(queue).release()
    bench.devices.clear()
    bench.arena.close()
