# SPDX-License-Identifier: GPL-3.0-or-later
"""``python -m tests.vmharness vm {build,start,stop,list}``: disk images and systemd VMs (molecule's platforms)."""

from __future__ import annotations

import argparse
import json
import os
import time

from tests.vmharness import images, instances


def add_parser(sub: argparse._SubParsersAction) -> None:
    vm = sub.add_parser("vm", help="Debian disk images and VMs booting systemd (molecule's platforms)")
    actions = vm.add_subparsers(dest="vm_command", required=True)
    build = actions.add_parser("build", help="build and cache the suites' images (skips current ones)")
    build.add_argument("--suite", action="append", choices=sorted(images.SUITES), help="repeatable; default: all")
    build.add_argument("--rebuild", action="store_true", help="build even when cached (to pick up Debian updates)")
    start = actions.add_parser("start", help="boot an instance and print its SSH details as JSON")
    start.add_argument("--suite", required=True, choices=sorted(images.SUITES))
    start.add_argument("--name", help="instance name (default kni-SUITE)")
    start.add_argument("--state-dir", help=f"where instances live (default {instances.STATE_DIR})")
    start.add_argument("--json", dest="json_out", help="also write the details to this file")
    start.add_argument("--memory", type=int, default=2048, help="MiB")
    start.add_argument("--cpus", type=int, default=2)
    start.add_argument("--timeout", type=float, default=900, help="seconds to wait for SSH")
    start.add_argument("--build", action="store_true", help="build the image first when it is missing")
    stop = actions.add_parser("stop", help="kill an instance's QEMU and delete its overlay")
    stop.add_argument("--name", required=True)
    stop.add_argument("--state-dir")
    listing = actions.add_parser("list", help="print the instances as JSON")
    listing.add_argument("--state-dir")


def run(args: argparse.Namespace) -> int:
    if args.vm_command == "build":
        images.install_host_tools()
        for suite in args.suite or list(images.SUITES):
            began = time.monotonic()
            if args.rebuild:
                images.forget(suite)
            built = images.ensure(suite)
            manifest = images.manifest(suite)
            print(
                f"{suite}\t{built.kernel_release}\t{built.base}\t"
                f"built in {manifest['build_seconds']}s\t(this run {time.monotonic() - began:.1f}s)",
                flush=True,
            )
        return 0
    if args.vm_command == "start":
        if args.build:
            images.ensure(args.suite)
        instance = instances.start(
            args.suite, args.name, args.state_dir, memory_mb=args.memory, cpus=args.cpus, timeout=args.timeout
        )
        text = instance.to_json()
        if args.json_out:
            os.makedirs(os.path.dirname(os.path.abspath(args.json_out)), exist_ok=True)
            with open(args.json_out, "w", encoding="utf-8") as handle:
                handle.write(text + "\n")
        print(text)
        return 0
    if args.vm_command == "stop":
        stopped = instances.stop(args.name, args.state_dir)
        print(f"{args.name}: {'stopped and deleted' if stopped else 'not present'}")
        return 0
    if args.vm_command == "list":
        print(json.dumps(instances.listing(args.state_dir), indent=2, sort_keys=True))
        return 0
    return 2
