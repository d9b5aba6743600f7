"""`nvo3 nve show NVE`: one NVE's tables, like FRR's `show evpn mac vni all`.

Per VNI: the remote MACs with their VTEP and sequence number, the flood list and the local
attachments, each with its kernel programming status, read from the NVE agent itself (its
<get>); beside them the nDirector's session to that NVE and the drift between the two: remote
MACs the nDirector's mapping table says the NVE should hold and it does not (missing), holds
with another VTEP or sequence number (differ) or holds and should not (extra).
"""

from __future__ import annotations

import argparse
from typing import Any

from nvo3.common.names import NDIRECTOR, NVE
from nvo3.common.tree import Tree, entries
from nvo3.netconf.client.session import Client
from nvo3.verbs import OK, REFUSED
from nvo3.verbs.common import run, state
from nvo3.verbs.output import emit_json, fields, table
from nvo3.verbs.targets import TargetError, resolve, session
from nvo3.verbs.units import ms, number

REMOTE_COLUMNS = (("mac", "MAC"), ("ip-address", "IP"), ("remote-vtep", "VTEP"),
                  ("remote-nve", "NVE"), ("sequence-number", "SEQ"), ("sticky", "STICKY"),
                  ("programming-status", "STATUS"), ("programming-reason", "REASON"))
FLOOD_COLUMNS = (("address", "VTEP"), ("programming-status", "STATUS"),
                 ("programming-reason", "REASON"))
ATTACHMENT_COLUMNS = (("mac", "MAC"), ("vm-id", "VM"), ("ip-address", "IP"), ("vlan", "VLAN"),
                      ("port", "PORT"), ("state", "STATE"), ("programming-status", "STATUS"),
                      ("programming-reason", "REASON"))


def tables_of(nve: Tree) -> list[Tree]:
    """Per VNI of the NVE's state: its remote MACs, flood list and local attachments."""
    attached: dict[int, list[Tree]] = {}
    for a in entries(nve, "attachments", "attachment"):
        attached.setdefault(int(a["vni"]), []).append(
            {k: v for k, v in a.items() if k not in ("vni", "counters")})
    out = []
    for net in entries(nve, "networks", "network"):
        vni = int(net["vni"])
        out.append({
            "vni": vni, "tenant": net.get("tenant"), "flood-mode": net.get("flood-mode"),
            "programming-status": net.get("programming-status"),
            "remote-macs": [{**m, "sequence-number": number(m.get("sequence-number"))}
                            for m in (net.get("remote-macs") or {}).get("remote-mac") or []],
            "flood-list": list((net.get("flood-list") or {}).get("vtep") or []),
            "attachments": attached.pop(vni, [])})
    for vni, rows in sorted(attached.items()):        # attachments of no configured network
        out.append({"vni": vni, "remote-macs": [], "flood-list": [], "attachments": rows})
    return out


def drift(name: str, nets: list[Tree], nd: Tree) -> Tree:
    """The NVE's remote MACs against the nDirector's mapping table (VNIs the NVE is in)."""
    held = {(n["vni"], m["mac"]): m for n in nets for m in n["remote-macs"]}
    vnis = {n["vni"] for n in nets}
    wanted: dict[tuple[int, str], Tree] = {}
    for net in entries(nd, "mapping-table", "network"):
        if int(net["vni"]) in vnis:
            for m in net.get("mapping") or []:
                if m.get("nve") != name and m.get("state", "activated") == "activated":
                    wanted[(int(net["vni"]), m["mac"])] = m
    missing = sorted(f"{v}/{mac}" for v, mac in wanted.keys() - held.keys())
    extra = sorted(f"{v}/{mac}" for v, mac in held.keys() - wanted.keys())
    differ = sorted(f"{v}/{mac}" for (v, mac), m in wanted.items() if (v, mac) in held and (
        held[(v, mac)].get("remote-vtep") != m.get("vtep-address")
        or held[(v, mac)].get("sequence-number") != number(m.get("sequence-number"))))
    return {"in-sync": not (missing or extra or differ), "missing": missing, "differ": differ,
            "extra": extra}


def _nd_session(name: str, nd: Tree) -> Tree | None:
    for nve in entries(nd, "nves", "nve"):
        if nve["name"] == name:
            s = dict(nve.get("session") or {})
            return {"state": s.get("state", "down"), "since": s.get("since"),
                    "pushes": number(s.get("pushes")),
                    "push-failures": number(s.get("push-failures")),
                    "last-push-ms": ms(s.get("last-push-latency")),
                    "last-error": s.get("last-error")}
    return None


def _from_ndirector(args: argparse.Namespace) -> Tree | None:
    """The nDirector's state, or None without one to ask (no lab, no --ndirector)."""
    try:
        with session(resolve("ndirector", args)) as nd:
            return state(nd, NDIRECTOR, "ndirector")
    except TargetError:
        return None


def view(args: argparse.Namespace, client: Client) -> Tree:
    """Everything `nve show` prints, as data."""
    nve = state(client, NVE, "nve")
    name = nve.get("nve-id") or args.nve
    nets = tables_of(nve)
    out: Tree = {"nve": name, "vtep-address": nve.get("local-vtep-address"),
                 "udp-port": nve.get("udp-port"), "kernel": nve.get("kernel") or {},
                 "networks": nets}
    nd = _from_ndirector(args)
    if nd is not None:
        out["ndirector-session"] = _nd_session(name, nd)
        out["drift"] = drift(name, nets, nd)
    out["failed"] = [f"{n['vni']}/{row.get('mac') or row.get('address')}" for n in nets
                     for part in ("remote-macs", "flood-list", "attachments")
                     for row in n[part] if row.get("programming-status") == "failed"]
    return out


def _print(v: Tree) -> None:
    print(f"NVE {v['nve']}  VTEP {v.get('vtep-address') or '-'}  UDP port "
          f"{v.get('udp-port') or 4789}")
    k = v.get("kernel") or {}
    if "vlans-supported" in k:
        print("VLANs: supported" if k["vlans-supported"] else
              f"VLANs: not supported (the kernel lacks {k.get('vlans-missing') or '?'})")
    s = v.get("ndirector-session")
    if s:
        print(f"nDirector session: {s['state']} since {s.get('since') or '-'}, pushes "
              f"{s.get('pushes')}, failed {s.get('push-failures')}, last push "
              f"{'-' if s.get('last-push-ms') is None else format(s['last-push-ms'], '.3f')} ms"
              f"{', last error: ' + s['last-error'] if s.get('last-error') else ''}")
    elif "ndirector-session" in v:
        print("nDirector session: the nDirector does not manage this NVE")
    for n in v["networks"]:
        print(f"\nVNI {n['vni']}  tenant {n.get('tenant') or '-'}  flood-mode "
              f"{n.get('flood-mode') or '-'}  status {n.get('programming-status') or '-'}")
        print(f"  remote MACs ({len(n['remote-macs'])}):")
        if n["remote-macs"]:
            table(n["remote-macs"], REMOTE_COLUMNS, indent="    ")
        print(f"  flood list ({len(n['flood-list'])}):")
        if n["flood-list"]:
            table(n["flood-list"], FLOOD_COLUMNS, indent="    ")
        print(f"  local attachments ({len(n['attachments'])}):")
        if n["attachments"]:
            table(n["attachments"], ATTACHMENT_COLUMNS, indent="    ")
    print()
    d = v.get("drift")
    if d is None:
        print("drift: unknown (no nDirector to compare with)")
    elif d["in-sync"]:
        print("drift: none (remote MACs agree with the nDirector's mapping table)")
    else:
        fields([("drift, missing", d["missing"]), ("drift, differ", d["differ"]),
                ("drift, extra", d["extra"])])
    print(f"programming failures: {', '.join(v['failed']) if v['failed'] else 'none'}")


def show(args: argparse.Namespace, client: Client) -> int:
    v = view(args, client)
    if args.json:
        emit_json(v)
    else:
        _print(v)
    return OK if not v["failed"] else REFUSED


def add_verb(verbs: Any, common: argparse.ArgumentParser) -> None:
    """`nve show` in the `nve` command's verbs."""
    p = verbs.add_parser("show", help="one NVE's remote MACs, flood lists, attachments, "
                         "programming status and drift", parents=[common])
    p.add_argument("nve", metavar="NVE",
                   help="the NVE: its name (host1), the lab daemon's (nve-host1) or HOST:PORT")
    p.set_defaults(func=lambda args: run("nve", show, args))
