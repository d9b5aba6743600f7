"""`nvo3 mapping show|stats`: the nDirector's mapping table (VM MAC/IP -> NVE, VTEP) and its
statistics (convergence times in milliseconds, with the unit)."""

from __future__ import annotations

import argparse
from typing import Any

from nvo3.common.names import NDIRECTOR as MODULE
from nvo3.common.tree import Tree, entries
from nvo3.netconf.client.session import Client
from nvo3.verbs import OK
from nvo3.verbs.common import run, state
from nvo3.verbs.output import emit_json, fields, table
from nvo3.verbs.units import ms, ms_text, number

COLUMNS = (("vni", "VNI"), ("mac", "MAC"), ("ip-address", "IP"), ("nve", "NVE"),
           ("vtep-address", "VTEP"), ("state", "STATE"), ("sequence-number", "SEQ"),
           ("moves", "MOVES"), ("frozen", "FROZEN"))


def rows_of(nd: Tree) -> list[Tree]:
    return [{"vni": net["vni"], **m} for net in entries(nd, "mapping-table", "network")
            for m in net.get("mapping") or []]


def show(args: argparse.Namespace, client: Client) -> int:
    rows = rows_of(state(client, MODULE, "ndirector"))
    mac = args.mac.lower().replace("-", ":") if args.mac else None
    rows = [r for r in rows if args.vni in (None, int(r["vni"])) and mac in (None, r["mac"])
            and args.nve in (None, r.get("nve"))]
    if args.json:
        emit_json(rows)
    elif rows:
        table(rows, COLUMNS)
    else:
        print("no mappings")
    return OK


#: /ndirector/statistics: (leaf, label, kind) with kind "count" or "us" (microseconds)
STATISTICS = (("mappings", "mappings", "count"), ("mapping-updates", "mapping updates", "count"),
              ("stale-updates-refused", "stale updates refused", "count"),
              ("duplicate-macs-detected", "duplicate MACs detected", "count"),
              ("last-convergence-time", "last convergence", "us"),
              ("average-convergence-time", "average convergence", "us"),
              ("max-convergence-time", "max convergence", "us"))


def statistics_of(nd: Tree) -> Tree:
    """The nDirector's statistics for --json: counts as numbers, times as `<leaf>-ms`."""
    raw = nd.get("statistics") or {}
    out: Tree = {}
    for leaf, _, kind in STATISTICS:
        if kind == "us":
            out[leaf.replace("-time", "-ms")] = ms(raw.get(leaf))
        else:
            out[leaf] = number(raw.get(leaf))
    return out


def statistics_lines(nd: Tree) -> list[tuple[str, str | int | None]]:
    """(label, value with its unit) per statistic, for people."""
    raw = nd.get("statistics") or {}
    return [(label, ms_text(raw.get(leaf)) if kind == "us" else number(raw.get(leaf)))
            for leaf, label, kind in STATISTICS]


def stats(args: argparse.Namespace, client: Client) -> int:
    nd = state(client, MODULE, "ndirector")
    if args.json:
        emit_json(statistics_of(nd))
    else:
        fields(statistics_lines(nd))
    return OK


def add_parser(sub: Any, common: argparse.ArgumentParser) -> None:
    mapping = sub.add_parser("mapping", help="the nDirector's mapping table")
    verbs = mapping.add_subparsers(dest="mapping_command", required=True, metavar="VERB")
    p = verbs.add_parser("show", help="VM MAC/IP -> NVE/VTEP mappings", parents=[common])
    p.add_argument("--vni", type=int, help="only this virtual network")
    p.add_argument("--mac", help="only this MAC address")
    p.add_argument("--nve", help="only mappings behind this NVE")
    p.set_defaults(func=lambda args: run("ndirector", show, args))
    p = verbs.add_parser("stats", help="mapping statistics: counts and convergence times (ms)",
                         parents=[common])
    p.set_defaults(func=lambda args: run("ndirector", stats, args))
