"""What the views show, computed from the vCenter's and the nDirector's data (pure).

The inputs are the trees a user's <get> returned (`/vcenter`, `/ndirector` per nDirector),
the hosts from the dashboard's targets and the user's event feed; nothing here does I/O.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from nvo3.common.tree import Tree, entries
from nvo3.dashboard.targets import HostPlace

Row = dict[str, Any]
PLACED = ("powered-on", "migrating", "powered-off", "suspended")


@dataclass
class VmBox:
    tenant: str
    name: str
    state: str
    vni: int | None
    mac: str
    ips: list[str]


@dataclass
class HostBox:
    name: str
    nve: str
    vserver: str
    vtep: str = ""
    vms: list[VmBox] = field(default_factory=list)


@dataclass
class DataCenter:
    name: str
    hosts: list[HostBox] = field(default_factory=list)


@dataclass
class Topology:
    data_centers: list[DataCenter]
    unplaced: list[VmBox]
    vnis: list[int]


def vm_rows(vc: Tree) -> list[Row]:
    """One row per VM the vCenter lets this user see."""
    rows = []
    for t in entries(vc, "tenants", "tenant"):
        for vm in t.get("vm") or []:
            loc = vm.get("location") or {}
            vni = vm.get("vnid") or t.get("vnid")
            rows.append({"tenant": t["name"], "name": vm["name"],
                         "state": vm.get("state") or "unknown",
                         "vserver": loc.get("vserver") or vm.get("vserver"),
                         "nve": loc.get("nve"), "data-center": loc.get("data-center"),
                         "vtep-address": loc.get("vtep-address"),
                         "vni": int(vni) if vni is not None else None,
                         "mac-address": vm.get("mac-address") or "",
                         "ip-address": list(vm.get("ip-address") or []),
                         "vm-group": vm.get("vm-group"), "last-change": vm.get("last-change")})
    return sorted(rows, key=lambda r: (r["tenant"], r["name"]))


def groups_of(vc: Tree) -> list[Row]:
    """Tenants and their VM groups, as this user may read them."""
    return [{"tenant": t["name"], "vni": t.get("vnid"),
             "groups": [g["name"] for g in t.get("vm-group") or []]}
            for t in entries(vc, "tenants", "tenant")]


def topology(hosts: tuple[HostPlace, ...], vc: Tree, nds: dict[str, Tree]) -> Topology:
    """Data centers, hosts (NVE, vServer, VTEP), their VMs and the VNIs in use."""
    boxes: dict[str, HostBox] = {}
    dc_of: dict[str, str] = {}
    for h in hosts:
        boxes[h.nve] = HostBox(h.name, h.nve, h.vserver)
        dc_of[h.nve] = h.data_center
    for nd in nds.values():
        for entry in entries(nd, "nves", "nve"):
            box = boxes.setdefault(entry["name"], HostBox(entry["name"], entry["name"], "-"))
            box.vtep = str(entry.get("vtep-address") or "")
    unplaced, vnis = [], set()
    for r in vm_rows(vc):
        vm = VmBox(r["tenant"], r["name"], r["state"], r["vni"], r["mac-address"],
                   r["ip-address"])
        if r["vni"] is not None:
            vnis.add(r["vni"])
        nve: str | None = r["nve"] or next(
            (b.nve for b in boxes.values() if b.vserver == r["vserver"]), None)
        if r["state"] in PLACED and nve:
            box = boxes.setdefault(nve, HostBox(nve, nve, r["vserver"] or "-"))
            if box.vserver == "-" and r["vserver"]:
                box.vserver = r["vserver"]
            dc_of.setdefault(nve, r["data-center"] or "-")
            box.vms.append(vm)
        else:
            unplaced.append(vm)
    dcs: dict[str, DataCenter] = {}
    for nve, box in sorted(boxes.items()):
        dcs.setdefault(dc_of.get(nve, "-"), DataCenter(dc_of.get(nve, "-"))).hosts.append(box)
    return Topology([dcs[k] for k in sorted(dcs)], unplaced, sorted(vnis))


def mapping_rows(nds: dict[str, Tree], vc: Tree) -> list[Row]:
    """The mapping table per VNI: the nDirector's when this user may read it, else what the
    vCenter knows of the user's VMs (marked so)."""
    rows = [{"vni": int(net["vni"]), "source": name, **m}
            for name, nd in nds.items() for net in entries(nd, "mapping-table", "network")
            for m in net.get("mapping") or []]
    if not rows:
        rows = [{"vni": r["vni"], "mac": r["mac-address"], "ip-address": r["ip-address"],
                 "nve": r["nve"], "vtep-address": r["vtep-address"], "state": r["state"],
                 "source": "vcenter", "tenant": r["tenant"], "vm": r["name"]}
                for r in vm_rows(vc) if r["nve"] and r["vni"] is not None]
    owners = {(r["vni"], r["mac-address"]): (r["tenant"], r["name"]) for r in vm_rows(vc)}
    for row in rows:
        owner = owners.get((row["vni"], row.get("mac")))
        if owner:
            row["tenant"], row["vm"] = owner
    return sorted(rows, key=lambda r: (r["vni"], str(r.get("mac"))))


def search(rows: list[Row], text: str) -> list[Row]:
    """Rows with `text` in any of their values (case-insensitive); all rows for ''."""
    needle = text.strip().lower()
    if not needle:
        return rows
    return [r for r in rows if any(needle in str(v).lower() for v in r.values())]


def nve_rows(nds: dict[str, Tree]) -> list[Row]:
    """Each NVE's programmed state against what the nDirector's table says it should hold.

    Expected: the mappings behind it (local) and the other mappings of the VNIs it is a member
    of (remote). Programmed: what the NVE reported (local) and acknowledged (remote). Drift is
    the difference, or a session that is not connected.
    """
    rows = []
    for name, nd in nds.items():
        members: dict[int, set[str]] = {}
        for net in entries(nd, "networks", "network"):
            members[int(net["vni"])] = set(net.get("member-nve") or [])
        table = [(int(net["vni"]), m) for net in entries(nd, "mapping-table", "network")
                 for m in net.get("mapping") or []]
        for nve in entries(nd, "nves", "nve"):
            n = nve["name"]
            sess = nve.get("session") or {}
            local = sum(1 for _, m in table if m.get("nve") == n)
            remote = sum(1 for vni, m in table
                         if m.get("nve") != n and n in members.get(vni, set()))
            got_local = int(sess.get("local-mappings") or 0)
            got_remote = int(sess.get("remote-mappings") or 0)
            state = sess.get("state") or "down"
            drift = []
            if state != "connected":
                drift.append(f"session {state}")
            if got_local != local:
                drift.append(f"local {got_local} of {local}")
            if got_remote != remote:
                drift.append(f"remote {got_remote} of {remote}")
            rows.append({"ndirector": name, "nve": n, "vtep-address": nve.get("vtep-address"),
                         "state": state, "since": sess.get("since"),
                         "expected-local": local, "local": got_local,
                         "expected-remote": remote, "remote": got_remote,
                         "pushes": sess.get("pushes"), "push-failures": sess.get("push-failures"),
                         "last-push-latency": sess.get("last-push-latency"),
                         "last-error": sess.get("last-error"),
                         "drift": "; ".join(drift) or "in sync"})
    return rows


def vm_history(events: list[Row], tenant: str, name: str, mac: str) -> list[Row]:
    """The feed's events about one VM (its MAC at the nDirector, or its name in the portal),
    oldest first: created, moved (with convergence), replicated, deleted..."""
    mac = mac.lower()
    return [e for e in events if (mac and str(e.get("mac", "")).lower() == mac)
            or (e.get("tenant") == tenant and e.get("name") == name)]
