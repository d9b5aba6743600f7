"""`nvo3 show`: the whole overlay on one screen, like `ovn-nbctl show`.

Read from the root vCenter (data centers, child vCenters, tenants, VMs), each child vCenter
(its vServers, their NVE and load) and the nDirector (NVEs and their sessions, VNIs, mapping
statistics with the last convergence time in ms). A daemon that cannot be reached is shown
as such; the rest is still printed.
"""

from __future__ import annotations

import argparse
from collections import Counter
from typing import Any

from nvo3.common.names import NDIRECTOR, VCENTER
from nvo3.common.tree import Tree, entries
from nvo3.netconf.client.session import Client, ClientError
from nvo3.verbs import OK, REFUSED
from nvo3.verbs.common import Refused, run, state
from nvo3.verbs.mapping import statistics_of
from nvo3.verbs.output import emit_json
from nvo3.verbs.targets import Target, TargetError, resolve, session
from nvo3.verbs.units import number


def _child_target(entry: Tree) -> Target:
    """How to reach a child vCenter: the lab's record of it, else the root's configuration."""
    from nvo3.lab.state import LabState
    try:
        d = LabState.load().daemon(entry["name"])
        return Target(d.name, d.host, d.port, d.username, d.password, d.host_key)
    except (OSError, ValueError, TypeError, KeyError):
        return Target(entry["name"], entry["address"], int(entry.get("port", 830)),
                      entry.get("username") or "", entry.get("password"),
                      entry.get("host-key"))


def _vservers(vc: Tree) -> list[Tree]:
    out = []
    for v in entries(vc, "vservers", "vserver"):
        load = v.get("load") or {}
        out.append({"name": v["name"], "data-center": v.get("data-center"),
                    "state": v.get("connection-state"), "nve": v.get("nve"),
                    "vms": number(load.get("vm-count")) or 0,
                    "vcpus": f"{number(load.get('vcpus-used')) or 0}/"
                             f"{number(load.get('vcpus-total')) or 0}",
                    "memory-mb": f"{number(load.get('memory-used')) or 0}/"
                                 f"{number(load.get('memory-total')) or 0}"})
    return out


def _children(root: Tree) -> list[Tree]:
    """Each child vCenter with its vServers (asked directly; an error when unreachable)."""
    out = []
    for child in entries(root, "child-vcenters", "child-vcenter"):
        row: Tree = {"name": child["name"], "data-centers": list(child.get("data-center") or []),
                     "state": child.get("connection-state"),
                     "vms": number((child.get("load") or {}).get("vm-count")) or 0}
        try:
            with session(_child_target(child), timeout=5) as c:
                row["vservers"] = _vservers(state(c, VCENTER, "vcenter"))
        except (TargetError, Refused, ClientError) as exc:
            row["error"] = str(exc)
        out.append(row)
    return out


def _tenants(vc: Tree) -> list[Tree]:
    out = []
    for t in entries(vc, "tenants", "tenant"):
        vms = t.get("vm") or []
        states = Counter(vm.get("state") or "unknown" for vm in vms)
        out.append({"name": t["name"], "vni": t.get("vnid"), "vms": len(vms),
                    "vm-states": dict(sorted(states.items())),
                    "groups": [g["name"] for g in t.get("vm-group") or []]})
    return out


def _ndirector(args: argparse.Namespace) -> Tree:
    try:
        with session(resolve("ndirector", args), timeout=5) as c:
            nd = state(c, NDIRECTOR, "ndirector")
    except (TargetError, Refused, ClientError) as exc:
        return {"error": str(exc)}
    mappings = {int(n["vni"]): len(n.get("mapping") or [])
                for n in entries(nd, "mapping-table", "network")}
    return {
        "nves": [{"name": n["name"], "vtep-address": n.get("vtep-address"),
                  "session": (n.get("session") or {}).get("state", "down"),
                  "since": (n.get("session") or {}).get("since")}
                 for n in entries(nd, "nves", "nve")],
        "vnis": [{"vni": int(n["vni"]), "tenant": n.get("tenant"),
                  "nves": list(n.get("member-nve") or []),
                  "mappings": mappings.get(int(n["vni"]), 0)}
                 for n in entries(nd, "networks", "network")],
        "peers": [{"name": p["name"], "session": (p.get("session") or {}).get("state", "down")}
                  for p in entries(nd, "peers", "peer")],
        "statistics": statistics_of(nd)}


def overview(args: argparse.Namespace, client: Client) -> Tree:
    """Everything `nvo3 show` prints, as data."""
    vc = state(client, VCENTER, "vcenter")
    out: Tree = {"vcenter": {"name": vc.get("name"), "role": vc.get("role"),
                             "data-centers": list(vc.get("data-center") or [])}}
    children = _children(vc)
    if children:
        out["child-vcenters"] = children
    else:
        out["vcenter"]["vservers"] = _vservers(vc)
    out["tenants"] = _tenants(vc)
    out["ndirector"] = _ndirector(args)
    return out


def _ms(value: Any) -> str:
    return "-" if value is None else f"{value:.3f} ms"


def _print_vservers(rows: list[Tree], indent: str) -> None:
    for v in rows:
        print(f"{indent}vServer {v['name']}: {v.get('state') or '-'}, NVE {v.get('nve') or '-'}"
              f", {v['vms']} VMs, vCPUs {v['vcpus']}, memory {v['memory-mb']} MB")


def _print(o: Tree) -> None:
    vc = o["vcenter"]
    print(f"vCenter {vc.get('name') or '-'} ({vc.get('role') or '-'}), data centers "
          f"{', '.join(vc['data-centers']) or '-'}")
    for child in o.get("child-vcenters", []):
        print(f"  data center {', '.join(child['data-centers']) or '-'}: vCenter "
              f"{child['name']} {child.get('state') or '-'}, {child['vms']} VMs")
        if "error" in child:
            print(f"    (cannot read it: {child['error']})")
        _print_vservers(child.get("vservers", []), "    ")
    _print_vservers(vc.get("vservers", []), "  ")
    for t in o["tenants"]:
        states = ", ".join(f"{n} {s}" for s, n in t["vm-states"].items())
        print(f"tenant {t['name']}: VNI {t.get('vni') or '-'}, {t['vms']} VMs"
              f"{' (' + states + ')' if states else ''}, groups {', '.join(t['groups']) or '-'}")
    nd = o["ndirector"]
    if "error" in nd:
        print(f"nDirector: cannot read it: {nd['error']}")
        return
    up = sum(1 for n in nd["nves"] if n["session"] == "connected")
    print(f"nDirector: {len(nd['nves'])} NVEs ({up} connected), {len(nd['vnis'])} VNIs")
    for n in nd["nves"]:
        print(f"  NVE {n['name']}: VTEP {n.get('vtep-address') or '-'}, session {n['session']}"
              f"{' since ' + n['since'] if n.get('since') else ''}")
    for v in nd["vnis"]:
        print(f"  VNI {v['vni']} ({v.get('tenant') or '-'}): NVEs {', '.join(v['nves']) or '-'}"
              f", {v['mappings']} mappings")
    for p in nd["peers"]:
        print(f"  peer {p['name']}: session {p['session']}")
    s = nd["statistics"]
    print(f"  convergence: last {_ms(s.get('last-convergence-ms'))}, average "
          f"{_ms(s.get('average-convergence-ms'))}, max {_ms(s.get('max-convergence-ms'))}"
          f" ({s.get('mapping-updates') or 0} mapping updates, {s.get('mappings') or 0} "
          f"mappings)")


def show(args: argparse.Namespace, client: Client) -> int:
    o = overview(args, client)
    if args.json:
        emit_json(o)
    else:
        _print(o)
    broken = "error" in o["ndirector"] or any("error" in c for c in o.get("child-vcenters", []))
    return REFUSED if broken else OK


def add_parser(sub: Any, common: argparse.ArgumentParser) -> None:
    p = sub.add_parser("show", help="the whole overlay on one screen (vCenters, vServers, "
                       "NVEs, VNIs, sessions, convergence)", parents=[common])
    p.set_defaults(func=lambda args: run("vcenter", show, args))
