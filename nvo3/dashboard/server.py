"""`nvo3 dashboard [--listen HOST:PORT] [--config FILE | --lab-state FILE]`: the dashboard
served by waitress until SIGTERM or Ctrl-C.

Once it accepts connections it prints one line on stdout, ``nvo3 dashboard ready: URL``
(the real port when 0 was asked for); logs go to stderr. At exit every person's NETCONF
sessions are closed.
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys
from pathlib import Path
from typing import Any

from nvo3.dashboard.sessions import SessionStore
from nvo3.dashboard.targets import Targets, TargetsError, from_file, from_lab

log = logging.getLogger(__name__)

READY = "nvo3 dashboard ready: "
THREADS = 32            # each open page holds one for its event stream


def listen_address(text: str) -> tuple[str, int]:
    host, _, port = text.rpartition(":")
    host = host.strip("[]")
    if not host or not port.isdigit() or int(port) > 65535:
        raise ValueError(f"--listen {text!r}: expected HOST:PORT, e.g. 127.0.0.1:8080")
    return host, int(port)


def add_parser(sub: Any) -> None:
    p = sub.add_parser("dashboard", help="the web dashboard and tenant portal")
    p.add_argument("--listen", default="127.0.0.1:8080", metavar="HOST:PORT",
                   help="address to serve on (default 127.0.0.1:8080; port 0: any free)")
    src = p.add_mutually_exclusive_group()
    src.add_argument("--config", type=Path, metavar="FILE",
                     help="JSON file naming the root vCenter, the nDirector(s), their host "
                          "keys and the hosts (default: the running lab)")
    src.add_argument("--lab-state", type=Path, metavar="FILE",
                     help="the lab state file (default /run/nvo3/lab.json or $NVO3_LAB_STATE)")
    p.add_argument("--idle-timeout", type=float, default=1800.0, metavar="S",
                   help="end a login after S seconds without a request (default 1800)")
    p.set_defaults(func=run)


def _stop(*_: Any) -> None:
    raise KeyboardInterrupt


def run(args: argparse.Namespace) -> int:
    try:
        host, port = listen_address(args.listen)
        targets: Targets = from_file(args.config) if args.config else from_lab(args.lab_state)
    except (ValueError, TargetsError) as exc:
        print(f"nvo3: error: {exc}", file=sys.stderr)
        return 2
    # imported here, not at the top: every `nvo3` command builds this parser, and a role
    # daemon should not carry Flask, Jinja and waitress (about 10 MB) it never uses
    from waitress import create_server

    from nvo3.dashboard.app import create_app
    store = SessionStore(idle_s=args.idle_timeout)
    app = create_app(targets, store)
    try:
        server = create_server(app, host=host, port=port, threads=THREADS,
                               channel_timeout=60, ident="nvo3-dashboard",
                               channel_request_lookahead=1)   # a closed tab ends its stream
    except OSError as exc:
        print(f"nvo3: error: cannot listen on {host}:{port}: {exc.strerror}", file=sys.stderr)
        return 2
    real_port = getattr(server, "effective_port", port)
    shown = f"[{host}]" if ":" in host else host
    print(f"{READY}http://{shown}:{real_port}/ (vCenter {targets.vcenter.name}, nDirector "
          f"{', '.join(n.name for n in targets.ndirectors)})", flush=True)
    previous = signal.signal(signal.SIGTERM, _stop)
    reaper = store.start_reaper()
    try:
        server.run()
    except KeyboardInterrupt:
        pass
    finally:
        reaper.set()
        signal.signal(signal.SIGTERM, previous)
        server.close()
        store.close_all()
    return 0
