"""The vCenter role: VM profiles per tenant, placement over vServers, a vCenter hierarchy.

What it does (draft-fw-nvo3-server2vcenter-01, "vServer to vCenter interface"):

* vServers register, unregister (one or in bulk) and report their VMs with the RPCs of
  nvo3-vcenter; the profiles live in a :class:`~nvo3.roles.vcenter.profiles.ProfileStore`. The
  configuration holds the tenants, groups and operator-written profiles; what registration
  and the vCenter's own operations learn is persisted by the role itself, as JSON in its
  state directory (a role cannot edit its own datastore).
* Operators create, terminate, modify, relocate and replicate VMs with the RPCs of the same
  names; the vCenter carries each out with the nvo3-vserver RPCs of the chosen vServers, over
  NETCONF sessions it opens on first use (host key verified, password from the vservers
  list when configured).
  - create: the profile is staged (MAC checked, the VM's place held) before the vServer is
    asked and restored when it refuses; placement picks the vServer (placement.py);
  - relocate: destination side first (it creates, associates and activates the VM at its
    NVE, so the nDirector learns the new location from the NVE before the source lets go),
    the profile moves to the destination, then the source side;
  - replicate: the source snapshots, the destination runs the copy, and only then, with
    terminate-source, is the source terminated.
* A root vCenter (one with child-vcenters) keeps the tenant profiles of the whole system and
  forwards each operation to the child vCenter owning the vServer or data center (chosen by
  topology and the children's load); a move between children is create-at-destination, then
  terminate-at-source, make-before-break at the network level.

Design notes: the role's lock is never held while a peer is called (a vServer registers
with this vCenter while it runs our create-vm); notifications go out after the lock is
released; every refusal is an ApplyError raised before anything changed. The bulk
operations send no vm-report per VM (building and validating one notification costs ~1.3 ms,
over a second for 1,000 VMs); their per-VM alerts are sent.
"""

from __future__ import annotations

import copy
import json
import logging
import threading
import time
from pathlib import Path

from nvo3.fsutil import write_atomically
from nvo3.netconf.server.role import ApplyError, ConfigChange, Notifier, Role, RpcHandler, Tree
from nvo3.roles.peers.links import PeerConfig, PeerError, PeerLinks
from nvo3.roles.vcenter.placement import Candidate, Load, NoCapacity, choose, release, reserve
from nvo3.roles.vcenter.profiles import (
    RUNNING_STATES,
    Group,
    Location,
    Profile,
    ProfileError,
    ProfileStore,
    Tenant,
    norm_mac,
)
from nvo3.roles.vcenter.root import RootDelegation
from nvo3.roles.vcenter.util import _iso, _list, _refuse, _true, refuse_if_running

log = logging.getLogger(__name__)

MODULE = "nvo3-vcenter"
VSERVER = "nvo3-vserver"
STATE_FILE = "vcenter-profiles.json"


class VCenterRole(RootDelegation, Role):
    """The vCenter (the draft's VM management system); a root vCenter when it has children."""

    name = "vcenter"
    modules = (MODULE,)

    def __init__(self, state_dir: Path | None = None) -> None:
        super().__init__()
        self.lock = threading.RLock()
        self.store = ProfileStore()
        self.path = Path(state_dir) / STATE_FILE if state_dir else None
        self.me: str | None = None
        self.policy = "least-loaded"
        self.dead_interval = 120
        self.vservers: dict[str, PeerConfig] = {}
        self.children: dict[str, PeerConfig] = {}
        self.loads: dict[str, Load] = {}
        self.last_report: dict[str, float] = {}
        self.child_state: dict[str, Tree] = {}
        self.links = PeerLinks("vServer")
        self.child_links = PeerLinks("child vCenter")
        self._last_placed: str | None = None
        self._load()

    # persistence ---------------------------------------------------------------------------
    def _load(self) -> None:
        if self.path is None or not self.path.exists():
            return
        tree = json.loads(self.path.read_text())
        self.store.load(tree)
        self.loads = {k: Load(**v) for k, v in (tree.get("loads") or {}).items()}
        self.last_report = dict(tree.get("last-report") or {})
        log.info("vcenter: %d VM profiles restored from %s", len(self.store.profiles),
                 self.path)

    def _save(self) -> None:
        """Persist the role-owned state (under the lock)."""
        if self.path is None:
            return
        tree = self.store.dump()
        tree["loads"] = {k: v.__dict__ for k, v in self.loads.items()}
        tree["last-report"] = self.last_report
        write_atomically(self.path, json.dumps(tree, separators=(",", ":")).encode())

    # life cycle ----------------------------------------------------------------------------
    def start(self, notifier: Notifier) -> None:
        super().start(notifier)

    def stop(self) -> None:
        self.links.close_all()
        self.child_links.close_all()

    def _notify(self, notes: list[tuple[str, Tree]]) -> None:
        if self.notifier is None:
            return
        for name, content in notes:
            try:
                self.notifier.notify(MODULE, name, content)
            except Exception:
                log.exception("vcenter: could not send %s", name)

    # configuration -------------------------------------------------------------------------
    def apply(self, change: ConfigChange) -> None:
        vc = change.after.get("vcenter") or {}
        tenants: dict[str, Tenant] = {}
        configured: list[Profile] = []
        for t in _list(vc, "tenants", "tenant"):
            groups = {g["name"]: Group.from_config(g) for g in t.get("vm-group") or []}
            tenants[t["name"]] = Tenant(t["name"], int(t["vnid"]) if t.get("vnid") else None,
                                        groups)
            configured += [Profile.from_config(t["name"], vm) for vm in t.get("vm") or []]
        vservers = {v["name"]: PeerConfig.from_config(v, [v["data-center"]]
                                                      if v.get("data-center") else [])
                    for v in _list(vc, "vservers", "vserver")}
        children = {c["name"]: PeerConfig.from_config(c, list(c.get("data-center") or []))
                    for c in _list(vc, "child-vcenters", "child-vcenter")}
        with self.lock:
            try:
                dropped = self.store.configure(tenants, configured)
            except ProfileError as exc:
                raise ApplyError(str(exc), tag=exc.tag, app_tag=exc.app_tag) from None
            if dropped:
                log.warning("vcenter: %d learned VM profiles dropped with their tenant",
                            len(dropped))
            self.me = vc.get("name")
            self.policy = (vc.get("placement") or {}).get("policy", "least-loaded")
            self.dead_interval = int((vc.get("reporting") or {}).get("dead-interval", 120))
            self.vservers, self.children = vservers, children
            self._save()
        self.links.configure(vservers)
        self.child_links.configure(children)

    # state ---------------------------------------------------------------------------------
    def _vm_state(self, p: Profile) -> Tree:
        out: Tree = {"name": p.name}
        if not p.configured:         # a learned profile: its items are not in the config
            out["mac-address"] = p.mac
            for leaf, value in (("vnid", p.vnid), ("vlan", p.vlan), ("vm-group", p.vm_group),
                                ("port", p.port), ("vserver", p.vserver),
                                ("vcenter", p.vcenter)):
                if value is not None:
                    out[leaf] = value
            if p.ips:
                out["ip-address"] = list(p.ips)
            if p.resources:
                out["resources"] = dict(p.resources)
        out["registered"] = p.registered
        if p.state:
            out["state"] = p.state
        if p.last_change:
            out["last-change"] = _iso(p.last_change)
        loc = {k.replace("_", "-"): v for k, v in p.location.__dict__.items() if v}
        if loc:
            out["location"] = loc
        if p.monitoring:
            out["monitoring"] = dict(p.monitoring)
        return out

    def state(self) -> Tree:
        with self.lock:
            tenants = []
            by_tenant: dict[str, list[Tree]] = {}
            for p in self.store.profiles.values():
                by_tenant.setdefault(p.tenant, []).append(self._vm_state(p))
            for name, t in self.store.tenants.items():
                entry: Tree = {"name": name, "vm": by_tenant.get(name, [])}
                if t.groups:
                    entry["vm-group"] = [{"name": g, "member-count":
                                          self.store.member_count(name, g)} for g in t.groups]
                tenants.append(entry)
            vservers = []
            for name in self.vservers:
                v: Tree = {"name": name, "connection-state": self.links.states.get(
                    name, "disconnected")}
                if name in self.last_report:
                    v["last-report"] = _iso(self.last_report[name])
                if name in self.loads:
                    v["load"] = self.loads[name].to_tree()
                vservers.append(v)
            children = []
            for name in self.children:
                c: Tree = {"name": name, "connection-state": self.child_links.states.get(
                    name, "disconnected")}
                if name in self.child_state:
                    load, members = self.child_state[name]["load"], \
                        self.child_state[name]["members"]
                    c["load"] = {"vserver-count": len(members), **load.to_tree()}
                children.append(c)
            vc: Tree = {"role": "root" if self.children else "standalone"}
            if tenants:
                vc["tenants"] = {"tenant": tenants}
            if vservers:
                vc["vservers"] = {"vserver": vservers}
            if children:
                vc["child-vcenters"] = {"child-vcenter": children}
        return {MODULE: {"vcenter": vc}}

    # RPC table -----------------------------------------------------------------------------
    def rpc_handlers(self) -> dict[str, RpcHandler]:
        return {f"{MODULE}:{name}": fn for name, fn in {
            "register-vm": self.register_vm, "unregister-vm": self.unregister_vm,
            "bulk-register-vms": self.bulk_register_vms,
            "bulk-unregister-vms": self.bulk_unregister_vms, "report-vm": self.report_vm,
            "lookup-vm": self.lookup_vm, "create-vm": self.create_vm,
            "terminate-vm": self.terminate_vm, "modify-vm": self.modify_vm,
            "relocate-vm": self.relocate_vm, "replicate-vm": self.replicate_vm}.items()}

    # vServer -> vCenter --------------------------------------------------------------------
    def _known_vserver(self, name: str) -> None:
        if name not in self.vservers:
            raise ApplyError(f"vServer {name!r} is not configured under /vcenter/vservers",
                             tag="access-denied", app_tag="unknown-vserver")

    def _report_note(self, p: Profile, previous: str | None) -> tuple[str, Tree]:
        note: Tree = {"tenant": p.tenant, "name": p.name, "state": p.state or "deleted"}
        if p.location.vserver:
            note["vserver"] = p.location.vserver
        if p.location.nve:
            note["nve"] = p.location.nve
        if previous and previous != p.state:
            note["previous-state"] = previous
        note.update({k: v for k, v in p.monitoring.items() if k != "last-update"})
        return ("vm-report", note)

    @staticmethod
    def _alert(kind: str, vserver: str, tenant: str | None, name: str | None,
               mac: str | None, message: str) -> tuple[str, Tree]:
        note: Tree = {"alert": kind, "vserver": vserver, "message": message}
        for k, v in (("tenant", tenant), ("name", name), ("mac-address", mac)):
            if v:
                note[k] = v
        return ("vm-alert", note)

    def _location_extras(self, vserver: str) -> tuple[str | None, str | None]:
        cfg = self.vservers.get(vserver)
        return (cfg.data_centers[0] if cfg and cfg.data_centers else None,
                cfg.nve if cfg else None)

    def register_vm(self, given: Tree) -> Tree:
        vs = given["vserver"]
        notes: list[tuple[str, Tree]] = []
        with self.lock:
            self._known_vserver(vs)
            try:
                out = self.store.register(
                    vs, given["tenant"], given["name"], given["mac-address"],
                    vnid=given.get("vnid"), vlan=given.get("vlan"),
                    vm_group=given.get("vm-group"), ips=given.get("ip-address"),
                    port=given.get("port"), nve=given.get("nve"),
                    resources=given.get("resources"), state=given.get("state", "powered-on"),
                    vcenter=self.me)
            except ProfileError as exc:
                if exc.alert:
                    self._notify([self._alert(exc.alert, vs, given["tenant"], given["name"],
                                              given["mac-address"], str(exc))])
                raise _refuse(exc) from None
            p = out.profile
            dc, nve = self._location_extras(vs)
            p.location.data_center, p.location.nve = dc, p.location.nve or nve
            self._save()
            notes.append(self._report_note(p, out.previous_state))
            reply: Tree = {"result": "ok", "created": out.created}
            for leaf, value in (("vcenter", self.me), ("vnid", self.store.vnid_of(p)),
                                ("vlan", self.store.vlan_of(p)), ("vm-group", p.vm_group)):
                if value is not None:
                    reply[leaf] = value
        self._notify(notes)
        return reply

    def unregister_vm(self, given: Tree) -> Tree:
        vs = given["vserver"]
        with self.lock:
            self._known_vserver(vs)
            before = self.store.profiles.get((given["tenant"], given["name"]))
            result, message, alert = self.store.unregister(vs, given["tenant"], given["name"],
                                                           given.get("mac-address"))
            if result == "ok":
                self._save()
        notes = []
        if alert:
            notes.append(self._alert(alert, vs, given["tenant"], given["name"],
                                     given.get("mac-address"), message or ""))
        elif before is not None and before.location.vserver == vs:
            gone = copy.copy(before)
            gone.state = "deleted"
            notes.append(self._report_note(gone, before.state))
        self._notify(notes)
        reply: Tree = {"result": result}
        if message:
            reply["error-message"] = message
        return reply

    def bulk_register_vms(self, given: Tree) -> Tree:
        vs = given["vserver"]
        with self.lock:
            self._known_vserver(vs)
            try:
                results = self.store.bulk_register(vs, given["tenant"],
                                                   given.get("template") or {},
                                                   list(given.get("vm") or []), self.me)
            except ProfileError as exc:
                raise _refuse(exc) from None
            dc, nve = self._location_extras(vs)
            for _, _, _, out in results:
                if out is not None:
                    out.profile.location.data_center = dc
                    out.profile.location.nve = out.profile.location.nve or nve
            self._save()
        vms = []
        for name, result, message, _ in results:
            entry: Tree = {"name": name, "result": result}
            if message:
                entry["error-message"] = message
            vms.append(entry)
        ok = sum(1 for r in results if r[1] == "ok")
        return {"registered": ok, "failed": len(results) - ok, "vm": vms}

    def bulk_unregister_vms(self, given: Tree) -> Tree:
        vs, tenant = given["vserver"], given.get("tenant")
        notes: list[tuple[str, Tree]] = []
        rows: list[Tree] = []
        with self.lock:
            self._known_vserver(vs)
            if given.get("vm"):
                keys = [(v["tenant"], v["name"]) for v in given["vm"]
                        if tenant is None or v["tenant"] == tenant]
            else:
                keys = self.store.select_hosted(vs, tenant, given.get("vm-group"))
            done = unknown = 0
            for t, n in keys:
                result, message, alert = self.store.unregister(vs, t, n)
                row: Tree = {"tenant": t, "name": n, "result": result}
                if message:
                    row["error-message"] = message
                rows.append(row)
                if alert:
                    unknown += 1
                    notes.append(self._alert(alert, vs, t, n, None, message or ""))
                elif result == "ok":
                    done += 1
            self._save()
        self._notify(notes)
        return {"unregistered": done, "unknown": unknown, "vm": rows}

    def report_vm(self, given: Tree) -> Tree:
        vs = given["vserver"]
        now = time.time()
        notes: list[tuple[str, Tree]] = []
        unknown: list[Tree] = []
        with self.lock:
            self._known_vserver(vs)
            if given.get("load"):
                self.loads[vs] = Load.from_tree(given["load"])
            self.last_report[vs] = now
            accepted = 0
            for vm in given.get("vm") or []:
                out = self.store.report(vs, vm["tenant"], vm["name"], vm["state"],
                                        vm.get("nve"), vm, given.get("timestamp"), now)
                if out is None:
                    unknown.append({"tenant": vm["tenant"], "name": vm["name"]})
                    notes.append(self._alert("unknown-vm-report", vs, vm["tenant"],
                                             vm["name"], None,
                                             f"vCenter has no VM {vm['tenant']}/{vm['name']}:"
                                             " register it"))
                else:
                    accepted += 1
                    notes.append(self._report_note(out.profile, out.previous_state))
            self._save()
        self._notify(notes)
        reply: Tree = {"accepted": accepted}
        if unknown:
            reply["unknown-vm"] = unknown
        return reply

    def _lookup_row(self, p: Profile) -> Tree:
        row: Tree = {"tenant": p.tenant, "name": p.name, "mac-address": p.mac}
        for leaf, value in (("vcenter", p.location.vcenter or p.vcenter or self.me),
                            ("vserver", p.where), ("vnid", self.store.vnid_of(p)),
                            ("vlan", self.store.vlan_of(p)), ("vm-group", p.vm_group),
                            ("port", p.port), ("nve", p.location.nve),
                            ("vtep-address", p.location.vtep_address),
                            ("data-center", p.location.data_center), ("state", p.state)):
            if value is not None:
                row[leaf] = value
        if p.ips:
            row["ip-address"] = list(p.ips)
        return row

    def lookup_vm(self, given: Tree) -> Tree:
        with self.lock:
            found = [self._lookup_row(p) for p in self.store.lookup(
                given.get("tenant"), given.get("vnid"), given.get("name"),
                given.get("mac-address"), given.get("ip-address"))]
        if not found and self.children:      # several data centers presented as one
            seen: set[tuple[str, str]] = set()
            for child in list(self.children):
                try:
                    rows = self.child_links.call(child, MODULE, "lookup-vm", given).get(
                        "vm") or []
                except PeerError as exc:
                    log.warning("vcenter: lookup at %s failed: %s", child, exc)
                    continue
                for row in rows:
                    if (row["tenant"], row["name"]) not in seen:
                        seen.add((row["tenant"], row["name"]))
                        found.append(row)
        return {"vm": found} if found else {}

    # operator-facing: helpers ---------------------------------------------------------------
    def _profile(self, tenant: str, name: str) -> Profile:
        try:
            self.store.tenant(tenant)
        except ProfileError as exc:
            raise _refuse(exc) from None
        p = self.store.profiles.get((tenant, name))
        if p is None:
            raise ApplyError(f"vCenter has no VM {tenant}/{name}", tag="invalid-value",
                             app_tag="unknown-vm")
        return p

    def _vserver_profile(self, p: Profile, with_identity: bool = True) -> Tree:
        """The VM's profile in the nvo3-vserver shape (effective items, group policy)."""
        out: Tree = {"resources": self.store.resources_of(p)}
        vnid, vlan = self.store.vnid_of(p), self.store.vlan_of(p)
        for leaf, value in (("vcenter", self.me), ("vnid", vnid), ("vlan", vlan),
                            ("vm-group", p.vm_group), ("port", p.port)):
            if value is not None:
                out[leaf] = value
        if with_identity:
            out["mac-address"] = p.mac
            if p.ips:
                out["ip-address"] = list(p.ips)
        policy = self.store.policy_of(p)
        if policy:
            out["policy"] = policy
        return out

    def _restore(self, key: tuple[str, str], old: Profile | None) -> None:
        with self.lock:
            if old is None:
                self.store.remove(key)
            else:
                self.store.put(old)

    def _candidates(self) -> list[Candidate]:
        now = time.time()
        return [Candidate(name, self.loads.get(name), frozenset(cfg.data_centers),
                          available=now - self.last_report.get(name, 0) <= self.dead_interval
                          or self.links.states.get(name) == "connected")
                for name, cfg in self.vservers.items()]

    def _placed(self, vs: str, need: dict[str, int], sign: int = 1) -> None:
        """Count a VM placed on (sign 1) or gone from (sign -1) `vs` until its next report."""
        load = self.loads.get(vs)
        if load is not None:
            self.loads[vs] = reserve(load, need) if sign > 0 else release(load, need)

    # create --------------------------------------------------------------------------------
    def create_vm(self, given: Tree) -> Tree:
        if self.children:
            return self._root_create(given)
        key = (given["tenant"], given["name"])
        with self.lock:
            try:
                self.store.tenant(key[0])
            except ProfileError as exc:
                raise _refuse(exc) from None
            old = self.store.profiles.get(key)
            refuse_if_running(key, old)
            p = self._staged(key, old, given)
            need = self.store.resources_of(p)
            target = given.get("vserver") or p.vserver
            try:
                if target is None:
                    target = choose(self._candidates(), need, self.policy,
                                    given.get("data-center"), self._last_placed)
                elif target not in self.vservers:
                    raise ApplyError(f"vServer {target!r} is not configured",
                                     tag="invalid-value", app_tag="unknown-vserver")
            except NoCapacity as exc:
                raise _refuse(exc) from None
            dc, nve = self._location_extras(target)
            p.location = Location(target, nve, self.me, dc)
            p.state, p.registered = "created", False
            self.store.put(p)
            self._last_placed = target
            request = {"tenant": key[0], "name": key[1], **self._vserver_profile(p),
                       "power-on": _true(given.get("power-on", True))}
        try:
            out = self.links.call(target, VSERVER, "create-vm", request)
        except PeerError as exc:
            self._restore(key, old)
            raise _refuse(exc) from None
        with self.lock:
            cur = self.store.profiles.get(key) or p
            cur.location.vserver = target
            cur.location.nve = out.get("nve") or cur.location.nve
            cur.port = out.get("port") or cur.port
            cur.state, cur.last_change = out["state"], time.time()
            if not cur.configured:
                cur.vserver = target
            self.store.put(cur)
            self._placed(target, need)
            self._save()
            reply = {"vserver": target, "state": out["state"], "vnid": self.store.vnid_of(cur),
                     "mac-address": cur.mac}
            for leaf, value in (("vcenter", self.me), ("data-center", dc),
                                ("nve", cur.location.nve), ("port", cur.port)):
                if value is not None:
                    reply[leaf] = value
        return reply

    def _staged(self, key: tuple[str, str], old: Profile | None, given: Tree) -> Profile:
        """The profile create-vm asks for: the stored one with the input's items over it."""
        mac = given.get("mac-address")
        if old is None and mac is None:
            raise ApplyError(f"VM {key[0]}/{key[1]} has no profile: give its mac-address",
                             tag="missing-element", app_tag="no-mac-address")
        p = copy.deepcopy(old) if old is not None else Profile(key[0], key[1], norm_mac(mac))
        if mac is not None and old is not None and norm_mac(mac) != old.mac:
            if old.configured:
                raise ApplyError(f"VM {key[0]}/{key[1]} has MAC address {old.mac} in its "
                                 "configured profile", tag="invalid-value",
                                 app_tag="mac-address-mismatch")
            p.mac = norm_mac(mac)
        for leaf, attr in (("vnid", "vnid"), ("vlan", "vlan"), ("vm-group", "vm_group"),
                           ("port", "port")):
            if given.get(leaf) is not None:
                setattr(p, attr, given[leaf])
        if given.get("ip-address"):
            p.ips = list(given["ip-address"])
        if given.get("resources"):
            p.resources = {**p.resources, **{k: int(v) for k, v in
                                             given["resources"].items()}}
        if p.vnid is None and not p.configured:
            p.vnid = self.store.vnid_of(p)
        try:
            self.store.check(p)
        except ProfileError as exc:
            raise _refuse(exc) from None
        return p

    # terminate / modify --------------------------------------------------------------------
    def terminate_vm(self, given: Tree) -> Tree:
        if self.children:
            return self._root_forward("terminate-vm", given)
        key = (given["tenant"], given["name"])
        delete = _true(given.get("delete-profile"))
        with self.lock:
            p = self._profile(*key)
            if delete and p.configured:
                raise ApplyError(f"the profile of {key[0]}/{key[1]} is configured: delete it "
                                 "from /vcenter/tenants instead", tag="invalid-value",
                                 app_tag="configured-profile")
            host, snapshot = p.location.vserver, copy.deepcopy(p)
        out: Tree = {"state": "deleted"}
        if host is not None:
            try:
                out = self.links.call(host, VSERVER, "terminate-vm",
                                      {"tenant": key[0], "name": key[1]})
            except PeerError as exc:
                raise _refuse(exc) from None
        with self.lock:
            if delete:
                self.store.remove(key)
            else:
                snapshot.location, snapshot.state, snapshot.registered = Location(), \
                    "deleted", False
                snapshot.last_change = time.time()
                self.store.put(snapshot)
            if host is not None:
                self._placed(host, self.store.resources_of(snapshot), -1)
            self._save()
        reply: Tree = {"state": out.get("state", "deleted")}
        if host:
            reply["vserver"] = host
        return reply

    def modify_vm(self, given: Tree) -> Tree:
        if self.children:
            return self._root_forward("modify-vm", given)
        key = (given["tenant"], given["name"])
        changes = {k: given[k] for k in ("vlan", "vm-group", "ip-address", "resources")
                   if given.get(k) not in (None, [], {})}
        with self.lock:
            p = self._profile(*key)
            trial = self._modified(p, changes)
            host = p.location.vserver
            request: Tree = {"tenant": key[0], "name": key[1], **copy.deepcopy(changes)}
            if "vm-group" in changes:
                request["policy"] = self.store.policy_of(trial)
                vlan = self.store.vlan_of(trial)
                if vlan is not None and "vlan" not in changes:
                    request["vlan"] = vlan
            if given.get("power-state"):
                request["power-state"] = given["power-state"]
        out: Tree = {}
        if host is not None:
            try:
                out = self.links.call(host, VSERVER, "modify-vm", request)
            except PeerError as exc:
                raise _refuse(exc) from None
        elif given.get("power-state"):
            raise ApplyError(f"VM {key[0]}/{key[1]} does not run: create it first",
                             tag="invalid-value", app_tag="vm-not-running")
        with self.lock:
            cur = self._modified(self.store.profiles.get(key) or p, changes)
            if out.get("state"):
                cur.state = out["state"]
            self.store.put(cur)
            self._save()
            reply: Tree = {"state": cur.state or "deleted",
                           "resources": out.get("resources") or self.store.resources_of(cur)}
            if host:
                reply["vserver"] = host
        return reply

    def _modified(self, p: Profile, changes: Tree) -> Profile:
        new = copy.deepcopy(p)
        if "vlan" in changes:
            new.vlan = int(changes["vlan"])
        if "vm-group" in changes:
            new.vm_group = changes["vm-group"]
        if "ip-address" in changes:
            new.ips = list(changes["ip-address"])
        if "resources" in changes:
            new.resources = {**new.resources, **{k: int(v) for k, v in
                                                 changes["resources"].items()}}
        try:
            self.store.check(new)
        except ProfileError as exc:
            raise _refuse(exc) from None
        return new

    # relocate / replicate ------------------------------------------------------------------
    def _move_check(self, p: Profile, dst: str, given: Tree) -> str:
        src = p.location.vserver
        if src is None or p.state not in RUNNING_STATES:
            raise ApplyError(f"VM {p.tenant}/{p.name} does not run on any vServer",
                             tag="invalid-value", app_tag="vm-not-running")
        if dst not in self.vservers:
            raise ApplyError(f"destination vServer {dst!r} is not configured",
                             tag="invalid-value", app_tag="unknown-vserver")
        if dst == src:
            raise ApplyError(f"VM {p.tenant}/{p.name} already runs on {dst}",
                             tag="invalid-value", app_tag="same-vserver")
        wanted = given.get("destination-vcenter")
        if wanted is not None and wanted != self.me:
            raise ApplyError(f"vCenter {self.me} has no child vCenter {wanted!r}",
                             tag="invalid-value", app_tag="unknown-vcenter")
        return src

    def relocate_vm(self, given: Tree) -> Tree:
        if self.children:
            return self._root_move("relocate-vm", given)
        key, dst = (given["tenant"], given["name"]), given["destination-vserver"]
        t0 = time.monotonic()
        with self.lock:
            p = self._profile(*key)
            src = self._move_check(p, dst, given)
            need = self.store.resources_of(p)
            side = {"tenant": key[0], "name": key[1]}
            to_dst = {**side, "role": "destination", "peer-vserver": src,
                      "peer-address": self.vservers[src].address,
                      "profile": self._vserver_profile(p)}
            to_src = {**side, "role": "source", "peer-vserver": dst,
                      "peer-address": self.vservers[dst].address}
        try:
            out = self.links.call(dst, VSERVER, "relocate-vm", to_dst)
        except PeerError as exc:
            raise _refuse(exc) from None
        duration = int((time.monotonic() - t0) * 1000)
        with self.lock:                          # the VM runs at dst: the profile follows
            cur = self.store.profiles.get(key) or p
            dc, nve = self._location_extras(dst)
            cur.location = Location(dst, out.get("nve") or nve, self.me, dc)
            cur.port = out.get("port") or cur.port
            cur.state, cur.registered, cur.last_change = out["state"], True, time.time()
            if not cur.configured:
                cur.vserver = dst
            self.store.put(cur)
            self._placed(dst, need)
            self._save()
        try:
            self.links.call(src, VSERVER, "relocate-vm", to_src)
            with self.lock:
                self._placed(src, need, -1)
                self._save()
        except PeerError as exc:
            log.error("vcenter: relocation of %s/%s: the VM runs on %s, but the source %s "
                      "failed to let it go: %s", key[0], key[1], dst, src, exc)
        reply: Tree = {"source-vserver": src, "destination-vserver": dst,
                       "state": out["state"], "duration": duration}
        for leaf in ("nve", "port"):
            if out.get(leaf):
                reply[leaf] = out[leaf]
        return reply

    def replicate_vm(self, given: Tree) -> Tree:
        if self.children:
            return self._root_move("replicate-vm", given)
        key, dst = (given["tenant"], given["name"]), given["destination-vserver"]
        terminate = _true(given.get("terminate-source"))
        with self.lock:
            p = self._profile(*key)
            src = self._move_check(p, dst, given)
            replica_name = given.get("replica-name") or key[1]
            rkey = (key[0], replica_name)
            old_replica = self.store.profiles.get(rkey) if rkey != key else None
            if rkey != key:
                if old_replica is not None and old_replica.state in RUNNING_STATES:
                    raise ApplyError(f"VM {rkey[0]}/{rkey[1]} already exists",
                                     tag="data-exists", app_tag="vm-exists")
                replica = copy.deepcopy(p)
                replica.name, replica.configured, replica.port = replica_name, False, None
                replica.mac = norm_mac(given.get("replica-mac-address") or p.mac)
                replica.ips = list(given.get("replica-ip-address") or [])
                replica.vnid = self.store.vnid_of(p)
                dc, nve = self._location_extras(dst)
                replica.location, replica.state = Location(dst, nve, self.me, dc), "created"
                replica.registered, replica.monitoring = False, {}
                try:
                    if replica.mac == p.mac and not terminate:
                        raise ProfileError(f"the replica needs a MAC address of its own "
                                           f"({p.mac} is {key[0]}/{key[1]}'s)",
                                           "duplicate-mac", tag="data-exists")
                    self.store.check(replica)
                except ProfileError as exc:
                    raise _refuse(exc) from None
                self.store.put(replica)
            else:
                replica = p
            side = {"tenant": key[0], "name": key[1]}
            named = {"replica-name": replica_name} if rkey != key else {}
            to_src = {**side, "role": "source", "peer-vserver": dst,
                      "peer-address": self.vservers[dst].address, **named}
            to_dst = {**side, "role": "destination", "peer-vserver": src,
                      "peer-address": self.vservers[src].address, **named,
                      "profile": self._vserver_profile(replica)}
            need = self.store.resources_of(p)
        try:
            self.links.call(src, VSERVER, "replicate-vm", to_src)
            out = self.links.call(dst, VSERVER, "replicate-vm", to_dst)
        except PeerError as exc:
            if rkey != key:
                self._restore(rkey, old_replica)
            raise _refuse(exc) from None
        with self.lock:                  # the copy runs at dst
            cur = self.store.profiles.get(rkey) or replica
            dc, nve = self._location_extras(dst)
            cur.location = Location(dst, out.get("nve") or nve, self.me, dc)
            cur.port = out.get("port") or cur.port
            cur.state, cur.last_change = out["state"], time.time()
            if not cur.configured:
                cur.vserver = dst
            self.store.put(cur)
            self._placed(dst, need)
            self._save()
        source_state = p.state
        if terminate:                   # only now is the source touched
            try:
                source_state = self.links.call(src, VSERVER, "terminate-vm", side).get(
                    "state", "deleted")
                with self.lock:
                    self._placed(src, need, -1)
                    if rkey != key and not p.configured:
                        self.store.remove(key)
                    self._save()
            except PeerError as exc:
                log.error("vcenter: replica %s/%s runs on %s, but terminating the source on "
                          "%s failed: %s", rkey[0], rkey[1], dst, src, exc)
        reply: Tree = {"replica-name": replica_name, "destination-vserver": dst,
                       "state": out["state"]}
        if source_state:
            reply["source-state"] = source_state
        for leaf in ("nve", "port"):
            if out.get(leaf):
                reply[leaf] = out[leaf]
        return reply
