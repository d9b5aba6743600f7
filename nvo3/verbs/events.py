"""`nvo3 events`: follow one daemon's notifications (RFC 5277), as lines a person or a script
reads, until Ctrl-C, `--count N` notifications or `--timeout S` seconds.

Any role: `--role ndirector|vcenter|vserver|nve` picks the lab's daemon of that role (the root
vCenter, the nDirector, the first vServer or NVE), `--daemon NAME` one by name (vcenter-dc1,
nve-host2 or host2), `--vcenter/--ndirector HOST:PORT` one anywhere. A human line is
`TIME DAEMON MODULE:NAME key=value ...`; with --json each line is one JSON object
{"time", "daemon", "module", "event", "data"}.
"""

from __future__ import annotations

import argparse
import json
import queue
import sys
import time
from typing import Any

from lxml import etree

from nvo3.common.tree import Tree
from nvo3.netconf.client.session import Client, ClientError, RemoteRpcError
from nvo3.roles.peers import codec
from nvo3.verbs import OK, REFUSED
from nvo3.verbs.common import Refused, run
from nvo3.verbs.output import error
from nvo3.verbs.targets import TargetError, resolve

ROLES = ("ndirector", "vcenter", "vserver", "nve")
NOTIFICATION_NS = "urn:ietf:params:xml:ns:netconf:notification:1.0"


def _plain(element: etree._Element) -> Any:
    """A notification of a module the codec does not know (RFC 6470, RFC 5277) as a dict."""
    children = [c for c in element if isinstance(c.tag, str)]
    if not children:
        return (element.text or "").strip()
    out: Tree = {}
    for c in children:
        name, value = etree.QName(c).localname, _plain(c)
        if name in out:
            out[name] = (out[name] if isinstance(out[name], list) else [out[name]]) + [value]
        else:
            out[name] = value
    return out


def event_of(message: etree._Element, daemon: str) -> Tree:
    """One <notification> as {"time", "daemon", "module", "event", "data"}."""
    when = message.findtext(f"{{{NOTIFICATION_NS}}}eventTime")
    parsed = codec.notification(message)
    if parsed is not None:
        module, name, data = parsed
    else:
        content = next((c for c in message if isinstance(c.tag, str)
                        and etree.QName(c).localname != "eventTime"), None)
        if content is None:
            module, name, data = "", "notification", {}
        else:
            module = etree.QName(content).namespace or ""
            module = module.rsplit(":", 1)[-1]
            name, data = etree.QName(content).localname, _plain(content)
    return {"time": when, "daemon": daemon, "module": module, "event": name, "data": data}


def _value(value: Any) -> str:
    if isinstance(value, list) and all(not isinstance(v, (dict, list)) for v in value):
        return ",".join(str(v) for v in value)
    if isinstance(value, (dict, list)):
        return json.dumps(value, separators=(",", ":"), default=str)
    return str(value)


def line_of(event: Tree) -> str:
    """The human line of one event."""
    data = event["data"] if isinstance(event["data"], dict) else {"value": event["data"]}
    pairs = " ".join(f"{k}={_value(v)}" for k, v in data.items())
    return (f"{event['time'] or '-'} {event['daemon']} {event['module']}:{event['event']}"
            f"{' ' + pairs if pairs else ''}")


def follow(args: argparse.Namespace, client: Client) -> int:
    try:
        client.create_subscription()
    except RemoteRpcError as exc:
        raise Refused("create-subscription", exc) from None
    daemon = getattr(args, "daemon_name", None) or args.role
    print(f"nvo3: following {daemon}'s notifications (Ctrl-C to stop)", file=sys.stderr,
          flush=True)
    deadline = None if args.timeout is None else time.monotonic() + args.timeout
    seen = 0
    try:
        while args.count is None or seen < args.count:
            wait = 1.0 if deadline is None else min(1.0, deadline - time.monotonic())
            if wait <= 0:
                break
            try:
                message = client.notifications.get(timeout=wait)
            except queue.Empty:
                if not client.connected:
                    error(f"the session to {daemon} ended")
                    return REFUSED
                continue
            event = event_of(message, daemon)
            print(json.dumps(event, default=str) if args.json else line_of(event), flush=True)
            seen += 1
    except KeyboardInterrupt:
        pass
    except ClientError as exc:
        error(f"the session failed: {exc}")
        return REFUSED
    return OK


def _role_of(args: argparse.Namespace) -> str:
    """The role to follow: --role, else that of the --daemon named in the lab."""
    if args.role or not args.daemon:
        return args.role or "ndirector"
    from nvo3.lab.state import LabState
    try:
        names = {d.name: d.role for d in LabState.load().daemons}
    except (OSError, ValueError, TypeError):
        return "ndirector"
    for candidate in (args.daemon, *(f"{r}-{args.daemon}" for r in ROLES)):
        if candidate in names:
            return names[candidate]
    return "ndirector"


def start(args: argparse.Namespace) -> int:
    args.role = _role_of(args)
    if args.daemon:
        setattr(args, args.role, args.daemon)
    try:
        args.daemon_name = resolve(args.role, args).name
    except TargetError:
        args.daemon_name = args.role                   # `run` reports it
    return run(args.role, follow, args)


def add_parser(sub: Any, common: argparse.ArgumentParser) -> None:
    p = sub.add_parser("events", help="follow a daemon's notifications (any role)",
                       parents=[common])
    p.add_argument("--role", choices=ROLES,
                   help="the lab's daemon of this role (default: ndirector)")
    p.add_argument("--daemon", metavar="NAME",
                   help="the lab daemon by name (vcenter-dc1, nve-host2, host2, ...)")
    p.add_argument("--count", type=int, metavar="N", help="stop after N notifications")
    p.add_argument("--timeout", type=float, metavar="S", help="stop after S seconds")
    p.set_defaults(func=start)
