# SPDX-License-Identifier: GPL-3.0-or-later
"""Command line: ``python -m tests.vmharness {setup,list,run,build,demo,vm}``."""

from __future__ import annotations

import argparse
import sys

from tests.vmharness import matrix


def _add_vm_parser(sub: argparse._SubParsersAction) -> None:
    from tests.vmharness import vmcli

    vmcli.add_parser(sub)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.vmharness")
    sub = parser.add_subparsers(dest="command", required=True)
    setup = sub.add_parser("setup", help="install host packages, matrix kernels and build chroots")
    setup.add_argument("--kernel", action="append", help="only this matrix kernel (repeatable)")
    sub.add_parser("list", help="print the set-up matrix")
    sub.add_parser("demo", help="boot a throwaway guest and run the collection's demo playbook over SSH")
    run = sub.add_parser("run", help="boot a matrix kernel and run a shell command in the guest")
    run.add_argument("--kernel", required=True)
    run.add_argument("--timeout", type=float, default=600)
    run.add_argument("--ssh-port", type=int, default=0, help="forward 127.0.0.1:PORT to the guest's sshd")
    run.add_argument("--append", default="", help="extra kernel command line (e.g. init_on_alloc=0)")
    run.add_argument("script", nargs=argparse.REMAINDER, help="shell command (after --)")
    build = sub.add_parser("build", help="build an out-of-tree module against a matrix kernel with -Werror")
    build.add_argument("--kernel", required=True)
    build.add_argument("source")
    build.add_argument("output")
    _add_vm_parser(sub)
    args = parser.parse_args(argv)

    if args.command == "setup":
        from tests.vmharness import hostsetup

        for name, release in hostsetup.setup(args.kernel).items():
            print(f"{name}\t{release}")
        return 0
    if args.command == "demo":
        from tests.vmharness import demo

        return demo.main()
    if args.command == "list":
        for name, release in sorted(matrix.load_resolved().items()):
            print(f"{name}\t{release}")
        return 0
    if args.command == "run":
        from tests.vmharness import guest

        command = args.script[1:] if args.script[:1] == ["--"] else args.script
        result = guest.run_script(
            matrix.kernel(args.kernel),
            " ".join(command),
            timeout=args.timeout,
            ssh_port=args.ssh_port or None,
            extra_append=args.append,
        )
        sys.stdout.write(result.output)
        print(f"--- exit {result.exit_code}, boot-to-command {result.boot_seconds:.1f}s ---")
        problems = result.dmesg_problems()
        for line in problems:
            print(f"dmesg: {line}")
        return result.exit_code or (1 if problems else 0)
    if args.command == "vm":
        from tests.vmharness import vmcli

        return vmcli.run(args)
    if args.command == "build":
        from tests.vmharness import kbuild

        print(kbuild.build_module(matrix.kernel(args.kernel), args.source, args.output))
        return 0
    return 2


if __name__ == "__main__":
    sys.exit(main())
