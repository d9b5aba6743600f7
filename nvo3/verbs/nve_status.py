"""`nvo3 nve status`: the nDirector's NETCONF sessions to the NVEs."""

from __future__ import annotations

import argparse
from typing import Any

from nvo3.common.names import NDIRECTOR as MODULE
from nvo3.common.tree import Tree, entries
from nvo3.netconf.client.session import Client
from nvo3.verbs import OK, REFUSED, nve_show
from nvo3.verbs.common import run, state
from nvo3.verbs.output import emit_json, error, table

COLUMNS = (("name", "NVE"), ("address", "ADDRESS"), ("vtep-address", "VTEP"),
           ("state", "SESSION"), ("since", "SINCE"), ("local-mappings", "LOCAL"),
           ("remote-mappings", "REMOTE"), ("pushes", "PUSHES"),
           ("push-failures", "FAILED"), ("last-error", "LAST ERROR"))


#: the session's counters and gauges: numbers in --json (libyang gives 64-bit ones as text)
NUMBERS = ("last-push-latency", "local-mappings", "remote-mappings", "pushes", "push-failures")


def rows_of(nd: Tree) -> list[Tree]:
    rows = []
    for nve in entries(nd, "nves", "nve"):
        session = nve.get("session") or {}
        rows.append({"name": nve["name"],
                     "address": f"{nve.get('address')}:{nve.get('port', 830)}",
                     "vtep-address": nve.get("vtep-address"),
                     "enabled": nve.get("enabled", True) in (True, "true"),
                     "state": session.get("state", "down"), **{
                         k: int(v) if k in NUMBERS else v
                         for k, v in session.items() if k != "state"}})
    return rows


def status(args: argparse.Namespace, client: Client) -> int:
    rows = rows_of(state(client, MODULE, "ndirector"))
    if args.json:
        emit_json(rows)
    elif rows:
        table(rows, COLUMNS)
    else:
        print("no NVEs configured at the nDirector")
    if args.check and not rows:
        error("--check: the nDirector has no NVEs configured")
        return REFUSED
    if args.check and any(r["state"] != "connected" for r in rows if r["enabled"]):
        return REFUSED
    return OK


def add_parser(sub: Any, common: argparse.ArgumentParser) -> None:
    nve = sub.add_parser("nve", help="the NVEs: as the nDirector sees them, one NVE's tables")
    verbs = nve.add_subparsers(dest="nve_command", required=True, metavar="VERB")
    p = verbs.add_parser("status", help="NETCONF session state per NVE", parents=[common])
    p.add_argument("--check", action="store_true",
                   help="exit 1 unless NVEs are configured and every enabled NVE's "
                        "session is connected")
    p.set_defaults(func=lambda args: run("ndirector", status, args))
    nve_show.add_verb(verbs, common)
