# SPDX-License-Identifier: GPL-3.0-or-later
# Copyright: kernelnic.kni contributors
"""``kni-pump`` command line: ``run`` the daemon, or talk to it (``status``, ``get``, ``apply``, ``delete``, ``stats``).

Run as ``python3 -m ansible_collections.kernelnic.kni.plugins.module_utils._pump.cli`` with the collection's parent
directory on ``PYTHONPATH`` (the role installs a ``kni-pump`` wrapper that does exactly that).

Exit codes: 0 success, 1 runtime failure, 2 invalid configuration or request (systemd does not restart on 2).
"""

from __future__ import annotations

import grp
import json
import os
import signal
import socket
import sys
import time
from types import SimpleNamespace
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

from ansible_collections.kernelnic.kni.plugins.module_utils._kni.abi import IovaMode, KniError
from ansible_collections.kernelnic.kni.plugins.module_utils._pump.control import (
    DEFAULT_TIMEOUT,
    ControlClient,
    ControlError,
    PumpConnectionError,
)
from ansible_collections.kernelnic.kni.plugins.module_utils._pump.daemon import PumpDaemon, Settings
from ansible_collections.kernelnic.kni.plugins.module_utils._pump.kernel_adapter import KernelKni
from ansible_collections.kernelnic.kni.plugins.module_utils._pump.log import LEVELS, LOG
from ansible_collections.kernelnic.kni.plugins.module_utils._pump.netlink import LinkMonitor, RtnlClient, RtnlWorker
from ansible_collections.kernelnic.kni.plugins.module_utils._pump.schema import (
    ConfigError,
    InterfaceConfig,
    parse_desired_state,
)
from ansible_collections.kernelnic.kni.plugins.module_utils._pump.sizing import DEFAULT_POOL_SIZE
from ansible_collections.kernelnic.kni.plugins.module_utils._pump.state import (
    PersistedState,
    StateError,
    config_digest,
    read_state,
    remove_stale_temporaries,
)

DEFAULT_SOCKET = "/run/kni-pump/control.sock"
DEFAULT_STATE_DIR = "/var/lib/kni-pump"
EXIT_FAILURE = 1
EXIT_INVALID = 2

# Options of ``run``: (type, default, choices, help). Both parsers below are built from this table.
RUN_OPTIONS: Dict[str, Tuple[Callable[[str], Any], Any, Optional[Tuple[str, ...]], Optional[str]]] = {
    "--config": (str, None, None, "desired state (JSON); used when it changed since the last run"),
    "--state-dir": (str, DEFAULT_STATE_DIR, None, None),
    "--socket": (str, DEFAULT_SOCKET, None, None),
    "--socket-group": (str, None, None, "group allowed to use the control socket (mode 0660)"),
    "--max-interfaces": (int, 4, None, "hugepage memory is sized for this many"),
    "--pool-size": (int, DEFAULT_POOL_SIZE, None, "mbufs per interface"),
    "--iova": (str, "va", ("va", "pa"), "va needs no physical addresses"),
}


def sd_notify(message: str) -> bool:
    """Send a datagram to systemd's NOTIFY_SOCKET (Type=notify), if there is one."""
    address = os.environ.get("NOTIFY_SOCKET")
    if not address:
        return False
    if address.startswith("@"):
        address = "\0" + address[1:]  # abstract namespace
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.connect(address)
        sock.sendall(message.encode())
    return True


def load_config(path: str) -> tuple[List[InterfaceConfig], str]:
    with open(path, "rb") as handle:
        data = handle.read()
    try:
        document = json.loads(data)
    except ValueError as exc:
        raise ConfigError("config", f"{path} is not valid JSON: {exc}") from exc
    return parse_desired_state(document), config_digest(data)


def initial_state(config_path: Optional[str], state_dir: str) -> PersistedState:
    """The configuration file if it changed since the state was saved (or there is no state), else the state;
    with the persisted administrative state either way."""
    persisted = read_state(state_dir)
    if config_path is None:
        return persisted or PersistedState([], None)
    interfaces, digest = load_config(config_path)
    if persisted is None:
        return PersistedState(interfaces, digest)
    if persisted.config_digest == digest:
        # Same file as last time: the state also holds control-socket changes and generated MACs.
        return persisted
    macs = {interface.name: interface.mac for interface in persisted.interfaces}
    interfaces = [
        interface if interface.mac else _with_mac(interface, macs.get(interface.name)) for interface in interfaces
    ]
    names = [interface.name for interface in interfaces]
    addresses = {name: found for name, found in (persisted.addresses or {}).items() if name in names}
    return PersistedState(interfaces, digest, tuple(name for name in persisted.admin_up if name in names), addresses)


def _with_mac(interface: InterfaceConfig, mac: Optional[str]) -> InterfaceConfig:
    return interface._replace(mac=mac) if mac else interface


def seconds_since_start() -> float:
    """How long this process has existed (interpreter start-up and imports included), from /proc/self/stat."""
    try:
        with open("/proc/self/stat", encoding="ascii") as handle:
            started = int(handle.read().rsplit(")", 1)[1].split()[19]) / os.sysconf("SC_CLK_TCK")
        return time.clock_gettime(time.CLOCK_BOOTTIME) - started
    except (OSError, ValueError, IndexError):
        return -1.0


def check_run_options(args: Any) -> Optional[int]:
    """The group id for ``--socket-group`` (None: root only); raises ``ConfigError`` for an option out of range or
    a group that does not exist, before anything is opened or created."""
    if args.max_interfaces < 1:
        raise ConfigError("--max-interfaces", f"must be at least 1, not {args.max_interfaces}")
    if args.pool_size < 1:
        raise ConfigError("--pool-size", f"must be at least 1 mbuf, not {args.pool_size}")
    if not args.socket_group:
        return None
    try:
        return grp.getgrnam(args.socket_group).gr_gid
    except KeyError:
        raise ConfigError("--socket-group", f"there is no group {args.socket_group!r}") from None


def connect_signals(daemon: PumpDaemon, settings: Settings, config: Optional[str]) -> None:
    """SIGTERM and SIGINT stop ``daemon``; SIGHUP makes it reload ``config``, when it has one."""
    if config:

        def reload_config() -> Optional[List[InterfaceConfig]]:
            loaded, new_digest = load_config(config)
            settings.config_digest = new_digest
            return loaded

        daemon.reload_requested = reload_config
    signal.signal(signal.SIGTERM, lambda _signum, _frame: daemon.stop())
    signal.signal(signal.SIGINT, lambda _signum, _frame: daemon.stop())
    signal.signal(signal.SIGHUP, lambda _signum, _frame: daemon.request_reload())


def run(args: Any) -> int:
    imported = seconds_since_start()
    try:
        group = check_run_options(args)
    except ConfigError as exc:
        LOG.error("invalid option: %s", exc)
        return EXIT_INVALID
    os.makedirs(args.state_dir, mode=0o700, exist_ok=True)
    remove_stale_temporaries(args.state_dir)
    try:
        interfaces, digest, admin_up, addresses = initial_state(args.config, args.state_dir)
    except (ConfigError, StateError, OSError) as exc:
        LOG.error("invalid configuration: %s" if isinstance(exc, ConfigError) else "%s", exc)
        return EXIT_INVALID
    state_read = seconds_since_start()
    os.makedirs(os.path.dirname(args.socket) or ".", mode=0o755, exist_ok=True)
    kni = KernelKni(args.max_interfaces, args.pool_size, IovaMode.PA if args.iova == "pa" else IovaMode.VA)
    memory_mapped = seconds_since_start()
    worker = RtnlWorker()
    rtnl = RtnlClient()
    monitor = LinkMonitor()
    settings = Settings(args.state_dir, args.socket, group, args.max_interfaces, digest)
    daemon = PumpDaemon(settings, kni, rtnl, worker, monitor)
    connect_signals(daemon, settings, args.config)
    try:
        errors = daemon.start(interfaces, admin_up, addresses or {})
        names = ", ".join(sorted(daemon.ports)) or "none"
        # Where a (re)start spends its time, for the operator and bench_pump: imports, then state and configuration,
        # then /dev/kni and the hugepage arena, then the interfaces (created, brought up again, carrier).
        LOG.info(
            "ready %.2f s after process start (code loaded at %.2f s, state read at %.2f s, /dev/kni and hugepages"
            " at %.2f s): interfaces %s%s",
            seconds_since_start(),
            imported,
            state_read,
            memory_mapped,
            names,
            f"; {len(errors)} failed (retrying)" if errors else "",
        )
        sd_notify(f"READY=1\nSTATUS=interfaces: {names}")
        daemon.run()
        sd_notify("STOPPING=1")
    finally:
        daemon.close()
        monitor.close()
        worker.stop()
        rtnl.close()
        kni.close()
    return 0


def _client(args: Any) -> ControlClient:
    return ControlClient(args.socket, args.timeout)


def _table(rows: Sequence[Sequence[str]]) -> str:
    widths = [max(len(row[column]) for row in rows) for column in range(len(rows[0]))]
    return "".join("  ".join(cell.ljust(width) for cell, width in zip(row, widths)).rstrip() + "\n" for row in rows)


def status(args: Any) -> int:
    with _client(args) as client:
        listing = client.list_interfaces()
        stats = client.call("stats")
        per_interface = client.expect(stats, "stats", "interfaces", dict)
        daemon = client.expect(stats, "stats", "daemon", dict)
    rows: List[List[str]] = [
        ["NAME", "STATE", "CARRIER", "MTU", "MAC", "BACKEND", "IN_PKTS", "OUT_PKTS", "IN_DROP", "OUT_DROP", "REQS"]
    ]
    for item in listing:
        found = per_interface.get(item["name"])
        counters = found.get("counters") if isinstance(found, dict) else None
        if not isinstance(counters, dict):
            counters = {}
        rows.append(
            [
                item["name"],
                str(item.get("state", "?")),
                "on" if item.get("carrier") else "off",
                str(item.get("mtu", "")),
                str(item.get("mac") or ""),
                str(item.get("backend", "?")),
                str(counters.get("ingress_packets", "")),
                str(counters.get("egress_packets", "")),
                str(counters.get("ingress_dropped", "")),
                str(counters.get("egress_dropped", "")),
                str(counters.get("requests", "")),
            ]
        )
    sys.stdout.write(_table(rows))
    totals = "  ".join(f"{key} {daemon.get(key, '?')}" for key in ("rounds", "sleeps", "requests"))
    sys.stdout.write(totals + "\n")
    failed = daemon.get("failed")
    for name, message in sorted(failed.items() if isinstance(failed, dict) else ()):
        sys.stdout.write(f"failed {name}: {message}\n")
    return 0


def call(args: Any) -> int:
    fields: Dict[str, Any] = {}
    if args.command in ("get", "delete") or (args.command == "stats" and args.name):
        fields["name"] = args.name
    if args.command == "apply":
        document = read_request_file(args.file)
        if isinstance(document, dict) and "interfaces" in document:
            fields["interfaces"] = document["interfaces"]
        else:
            fields["interface"] = document
    with _client(args) as client:
        reply = client.request(args.command, **fields)
    sys.stdout.write(json.dumps(reply, indent=2, sort_keys=True) + "\n")
    return 0 if reply.get("ok") else EXIT_INVALID


def read_request_file(path: str) -> Any:
    """The JSON document in ``path`` ('-': stdin); raises ``ConfigError`` naming the file."""
    where = "standard input" if path == "-" else path
    try:
        if path == "-":
            text = sys.stdin.read()
        else:
            with open(path, encoding="utf-8") as handle:
                text = handle.read()
    except OSError as exc:
        raise ConfigError(where, f"cannot read it: {exc.strerror or exc}") from exc
    except UnicodeDecodeError as exc:
        raise ConfigError(where, f"not UTF-8 text: {exc}") from exc
    try:
        return json.loads(text)
    except ValueError as exc:
        raise ConfigError(where, f"not valid JSON: {exc}") from exc


def _positive_seconds(text: str) -> float:
    import argparse  # pylint: disable=import-outside-toplevel  # only the client commands get here

    try:
        value = float(text)
    except ValueError:
        value = 0.0
    if not 0 < value <= 3600:
        raise argparse.ArgumentTypeError(f"must be a number of seconds above 0 and at most 3600, not {text!r}")
    return value


def parse_run(argv: Sequence[str]) -> Optional[SimpleNamespace]:
    """``[--log-level L] run [options]`` parsed without argparse, which would import re, gettext and warnings into
    every start of the service. None for any other command line, including a mistake: argparse explains those."""
    values: Dict[str, Any] = {"log_level": "INFO", "command": "run"}
    values.update({option[2:].replace("-", "_"): spec[1] for option, spec in RUN_OPTIONS.items()})
    specs = {"--log-level": (str, "INFO", tuple(LEVELS), None), **RUN_OPTIONS}
    position, seen_run = 0, False
    while position < len(argv):
        word = argv[position]
        if word == "run" and not seen_run:
            seen_run, position = True, position + 1
            continue
        option, has_value, value = word.partition("=")
        if option not in specs or (option == "--log-level") == seen_run:
            return None
        if not has_value:
            if position + 1 >= len(argv):
                return None
            position, value = position + 1, argv[position + 1]
        kind, _default, choices, _help = specs[option]
        try:
            converted = kind(value)
        except ValueError:
            return None
        if choices is not None and converted not in choices:
            return None
        values[option[2:].replace("-", "_")] = converted
        position += 1
    return SimpleNamespace(**values) if seen_run else None


CLIENT_COMMANDS = {
    "status": "table of the interfaces with their state and counters",
    "get": "one interface's desired configuration and state (JSON)",
    "apply": 'create or change interfaces from a JSON file; with {"interfaces": [...]} the whole desired state',
    "delete": "delete one interface",
    "stats": "counters of the pump and its interfaces (JSON)",
}


def parser() -> Any:
    import argparse  # pylint: disable=import-outside-toplevel  # not on the service's start path (parse_run)

    top = argparse.ArgumentParser(prog="kni-pump", description="KNI ring-pump service")
    top.add_argument("--log-level", default="INFO", choices=tuple(LEVELS))
    commands = top.add_subparsers(dest="command", required=True)
    run_parser = commands.add_parser("run", help="run the daemon")
    for option, (kind, default, choices, text) in RUN_OPTIONS.items():
        run_parser.add_argument(option, type=kind, default=default, choices=choices, help=text)
    for name, text in CLIENT_COMMANDS.items():
        sub = commands.add_parser(name, help=text, description=text)
        sub.add_argument("--socket", default=DEFAULT_SOCKET, help="the pump's control socket (default: %(default)s)")
        sub.add_argument(
            "--timeout",
            type=_positive_seconds,
            default=DEFAULT_TIMEOUT,
            help="seconds to wait for the pump's reply (default: %(default)g)",
        )
        if name in ("get", "delete"):
            sub.add_argument("name", help="the interface")
        if name == "stats":
            sub.add_argument("name", nargs="?", help="only this interface")
        if name == "apply":
            sub.add_argument("file", help="a JSON interface object, or {\"interfaces\": [...]}; '-' for stdin")
    return top


def main(argv: Optional[Sequence[str]] = None) -> int:
    words = sys.argv[1:] if argv is None else list(argv)
    args = parse_run(words) or parser().parse_args(words)
    LOG.configure(args.log_level)
    try:
        if args.command == "run":
            return run(args)
        if args.command == "status":
            return status(args)
        return call(args)
    except (ControlError, ConfigError) as exc:
        LOG.error("%s", exc)
        return EXIT_INVALID
    except PumpConnectionError as exc:
        LOG.error("%s", exc)
        return EXIT_FAILURE
    except (KniError, OSError) as exc:
        LOG.error("%s", exc)
        return EXIT_FAILURE


if __name__ == "__main__":
    raise SystemExit(main())
