"""The `nvo3` command."""

from __future__ import annotations

import argparse
import contextlib
import getpass
import json
import logging
import sys
from pathlib import Path

from nvo3 import __version__, etcd_options
from nvo3.bench import NAMES as BENCHES

DEFAULT_STATE_ROOT = Path("/var/lib/nvo3")
ROLES = ("nve", "vserver", "vcenter", "ndirector")


def _serve(args: argparse.Namespace) -> int:
    from nvo3.daemon import Listen, RoleDaemon, serve_forever
    from nvo3.netconf.limits import from_args
    try:
        listen = Listen.parse(args.listen)
        limits = from_args(args)
    except ValueError as exc:
        return _fail(str(exc))
    from nvo3.observability.address import MetricsAddress
    try:
        metrics = MetricsAddress.parse(args.metrics) if args.metrics else None
    except ValueError as exc:
        return _fail(str(exc))
    state_dir = args.state_dir or DEFAULT_STATE_ROOT / args.role
    if args.netns and args.role not in ("nve", "vserver"):
        return _fail("--netns applies to the nve and vserver roles only")
    if args.netns and not Path(f"/run/netns/{args.netns}").exists():
        return _fail(f"network namespace {args.netns} does not exist")
    try:
        options = etcd_options.role_options(args)
    except ValueError as exc:
        return _fail(str(exc))
    try:
        daemon = RoleDaemon(args.role, state_dir, listen, netns=args.netns,
                            store_only=args.store_only, metrics=metrics, limits=limits,
                            role_options=options)
        serve_forever(daemon)
    except OSError as exc:
        where = f"{listen.host} port {listen.port}"
        if metrics is not None:
            where += f" (metrics {metrics.host} port {metrics.port})"
        return _fail(f"cannot serve on {where}: {exc.strerror or exc}")
    return 0


def _read_password(args: argparse.Namespace) -> str:
    if sys.stdin.isatty():
        first = getpass.getpass(f"password for {args.name}: ")
        if first != getpass.getpass("again: "):
            raise ValueError("the two passwords differ")
        return first
    line = sys.stdin.readline().rstrip("\n")
    if not line:
        raise ValueError("no password on standard input")
    return line


def _user(args: argparse.Namespace) -> int:
    from nvo3.daemon import users_of
    from nvo3.netconf.ssh.users import UserError
    users = users_of(args.state_dir)
    try:
        if args.user_command == "add":
            keys = [Path(k).read_text().strip() for k in args.public_key or []]
            password = None if args.no_password else _read_password(args)
            users.add(args.name, password=password, public_keys=keys,
                      recovery=args.recovery, groups=args.group or [])
            print(f"user {args.name} saved in {users.path}")
        elif args.user_command == "remove":
            users.remove(args.name)
            print(f"user {args.name} removed")
        else:
            for name in users.names():
                print(name)
    except (UserError, ValueError, OSError) as exc:
        return _fail(str(exc))
    return 0


def _demo(args: argparse.Namespace) -> int:
    from nvo3.demo import run_demo
    return run_demo(json_output=args.json, topology=args.topology)


def _lab(args: argparse.Namespace) -> int:
    from nvo3.lab.commands import run_lab
    return run_lab(args)


def _bench(args: argparse.Namespace) -> int:
    if args.what == "migration":
        from nvo3.bench import migration
        return migration.run_bench(json_output=args.json, moves=args.moves)
    from nvo3.bench import run_named
    if not args.json:
        run_named(args.what, entries=args.entries)
        return 0
    with contextlib.redirect_stdout(sys.stderr):     # the readable lines: stdout is the JSON
        result = run_named(args.what, entries=args.entries)
    print(json.dumps(result, indent=2))
    return 0


def _fail(message: str) -> int:
    print(f"nvo3: error: {message}", file=sys.stderr)
    return 2


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="nvo3", description="NETCONF/YANG management and "
                                     "control of network virtualization overlays")
    parser.add_argument("--version", action="version", version=f"nvo3 {__version__}")
    parser.add_argument("--log-level", default="INFO",
                        choices=("DEBUG", "INFO", "WARNING", "ERROR"))
    parser.add_argument("--log-file", type=Path, metavar="PATH",
                        help="append log records to PATH (default: standard error)")
    parser.add_argument("--log-format", default="text", choices=("text", "json"),
                        help="json: one object per line with ts, level, logger, message and "
                        "structured fields (journald, Loki)")
    sub = parser.add_subparsers(dest="command", required=True)

    serve = sub.add_parser("serve", help="run a role's NETCONF server")
    serve.add_argument("role", choices=ROLES)
    serve.add_argument("--listen", default="127.0.0.1:830", metavar="HOST:PORT",
                       help="address to listen on (default 127.0.0.1:830)")
    serve.add_argument("--state-dir", type=Path, metavar="DIR",
                       help="datastores, users and host key (default /var/lib/nvo3/ROLE)")
    serve.add_argument("--store-only", action="store_true",
                       help="validate and store configuration without acting on it "
                            "(engine benchmarks, dry runs)")
    serve.add_argument("--netns", metavar="NAME",
                       help="nve: the network namespace whose kernel the agent programs; "
                       "vserver: the host namespace its VMs' ports live in (default: the "
                       "root namespace); the server still listens in its own")
    serve.add_argument("--metrics", metavar="HOST:PORT",
                       help="serve Prometheus metrics at /metrics and a health check at "
                       "/healthz over HTTP (off by default; PORT or :PORT: 127.0.0.1)")
    from nvo3.netconf.limits import add_arguments as add_limit_arguments
    add_limit_arguments(serve)           # --max-sessions, --idle-timeout, ... (servers/README.md)
    etcd_options.add_arguments(serve)
    serve.set_defaults(func=_serve)

    user = sub.add_parser("user", help="manage the NETCONF users of a server")
    user_sub = user.add_subparsers(dest="user_command", required=True)
    add = user_sub.add_parser("add", help="add or replace a user (password from stdin)")
    add.add_argument("name")
    add.add_argument("--public-key", action="append", metavar="FILE",
                     help="an OpenSSH public key file to authorize (repeatable)")
    add.add_argument("--no-password", action="store_true",
                     help="public-key authentication only")
    add.add_argument("--recovery", action="store_true",
                     help="a NACM recovery user: never subject to access control")
    add.add_argument("--group", action="append", metavar="G",
                     help="a NACM group of the user (repeatable), added to /nacm/groups")
    remove = user_sub.add_parser("remove", help="remove a user")
    remove.add_argument("name")
    user_sub.add_parser("list", help="list users")
    for p in (add, remove, user_sub.choices["list"]):
        p.add_argument("--state-dir", type=Path, required=True, metavar="DIR")
    user.set_defaults(func=_user)

    demo = sub.add_parser("demo", help="run the demo (the README's main job)")
    demo.add_argument("--json", action="store_true", help="print the figures as JSON")
    demo.add_argument("--topology", metavar="FILE",
                      help="topology file (default nvo3/lab/topologies/federated.toml: one "
                      "control plane over etcd; two-dc.toml: a single embedded nDirector)")
    demo.set_defaults(func=_demo)

    lab = sub.add_parser("lab", help="a whole overlay system in network namespaces")
    lab.add_argument("action", choices=("up", "status", "down", "demo"))
    lab.add_argument("topology", nargs="?", metavar="TOPOLOGY",
                     help="topology file (default nvo3/lab/topologies/two-dc.toml)")
    lab.add_argument("--prefix", help="namespace name prefix (default: the topology's)")
    lab.add_argument("--json", action="store_true", help="status/demo: print data as JSON")
    lab.set_defaults(func=_lab)

    bench = sub.add_parser("bench", help="benchmarks that print figures")
    bench.add_argument("what", choices=(*BENCHES, "migration"))
    bench.add_argument("--json", action="store_true")
    bench.add_argument("--entries", type=int, default=10_000)
    bench.add_argument("--moves", type=int, default=20, help="migration: relocations")
    bench.set_defaults(func=_bench)

    from nvo3.verbs.registry import add_parsers
    add_parsers(sub)                # vm, mapping, nve, group (nvo3/verbs)
    from nvo3.dashboard.server import add_parser as add_dashboard
    add_dashboard(sub)              # the web dashboard (nvo3/dashboard)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from nvo3.observability.logs import configure
    try:
        configure(args.log_level, args.log_file, args.log_format)
    except OSError as exc:
        return _fail(f"cannot write the log file {args.log_file}: {exc.strerror or exc}")
    logging.getLogger("ncclient").setLevel(max(logging.WARNING, logging.getLogger().level))
    return int(args.func(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
