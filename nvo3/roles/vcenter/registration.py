"""What vServers tell the vCenter about their VMs, and profile lookup: register-vm,
unregister-vm, bulk-register-vms, bulk-unregister-vms, report-vm and lookup-vm.

Each registration, unregistration and report sends a vm-report (or a vm-alert when refused)
after the lock is released. The bulk operations send no vm-report per VM (building and
validating one notification costs ~1.3 ms, over a second for 1,000 VMs); their per-VM alerts
are sent.
"""

from __future__ import annotations

import copy
import time

from nvo3.common.tree import Tree
from nvo3.roles.vcenter.context import Note, VCenterContext
from nvo3.roles.vcenter.placement import Load
from nvo3.roles.vcenter.profiles import Profile, ProfileError, ProfileStore
from nvo3.roles.vcenter.refusals import refuse
from nvo3.roles.vcenter.root import RootDelegation


def report_note(p: Profile, previous: str | None) -> Note:
    """The vm-report of `p` (its state, where it runs, its figures)."""
    note: Tree = {"tenant": p.tenant, "name": p.name, "state": p.state or "deleted"}
    if p.location.vserver:
        note["vserver"] = p.location.vserver
    if p.location.nve:
        note["nve"] = p.location.nve
    if previous and previous != p.state:
        note["previous-state"] = previous
    note.update({k: v for k, v in p.monitoring.items() if k != "last-update"})
    return ("vm-report", note)


def alert(kind: str, vserver: str, tenant: str | None, name: str | None, mac: str | None,
          message: str) -> Note:
    """A vm-alert of `kind` about what `vserver` sent."""
    note: Tree = {"alert": kind, "vserver": vserver, "message": message}
    for k, v in (("tenant", tenant), ("name", name), ("mac-address", mac)):
        if v:
            note[k] = v
    return ("vm-alert", note)


def lookup_row(store: ProfileStore, me: str | None, p: Profile) -> Tree:
    """One lookup-vm result: the VM's effective profile and where it runs."""
    row: Tree = {"tenant": p.tenant, "name": p.name, "mac-address": p.mac}
    for leaf, value in (("vcenter", p.location.vcenter or p.vcenter or me),
                        ("vserver", p.where), ("vnid", store.vnid_of(p)),
                        ("vlan", store.vlan_of(p)), ("vm-group", p.vm_group),
                        ("port", p.port), ("nve", p.location.nve),
                        ("vtep-address", p.location.vtep_address),
                        ("data-center", p.location.data_center), ("state", p.state)):
        if value is not None:
            row[leaf] = value
    if p.ips:
        row["ip-address"] = list(p.ips)
    return row


class Registration:
    """The vServer-to-vCenter RPCs and lookup-vm (at a root, also asked of the children)."""

    def __init__(self, ctx: VCenterContext, root: RootDelegation) -> None:
        self.ctx = ctx
        self.root = root

    def register_vm(self, given: Tree) -> Tree:
        """A vServer registers one VM: its profile is created or updated."""
        ctx, vs = self.ctx, given["vserver"]
        with ctx.lock:
            ctx.known_vserver(vs)
            try:
                out = ctx.store.register(
                    vs, given["tenant"], given["name"], given["mac-address"],
                    vnid=given.get("vnid"), vlan=given.get("vlan"),
                    vm_group=given.get("vm-group"), ips=given.get("ip-address"),
                    port=given.get("port"), nve=given.get("nve"),
                    resources=given.get("resources"), state=given.get("state", "powered-on"),
                    vcenter=ctx.me)
            except ProfileError as exc:
                if exc.alert:
                    ctx.notify([alert(exc.alert, vs, given["tenant"], given["name"],
                                      given["mac-address"], str(exc))])
                raise refuse(exc) from None
            p = out.profile
            dc, nve = ctx.location_extras(vs)
            p.location.data_center, p.location.nve = dc, p.location.nve or nve
            ctx.save()
            notes = [report_note(p, out.previous_state)]
            reply: Tree = {"result": "ok", "created": out.created}
            for leaf, value in (("vcenter", ctx.me), ("vnid", ctx.store.vnid_of(p)),
                                ("vlan", ctx.store.vlan_of(p)), ("vm-group", p.vm_group)):
                if value is not None:
                    reply[leaf] = value
        ctx.notify(notes)
        return reply

    def unregister_vm(self, given: Tree) -> Tree:
        """A vServer unregisters one VM (a learned profile goes, a configured one stays)."""
        ctx, vs = self.ctx, given["vserver"]
        with ctx.lock:
            ctx.known_vserver(vs)
            before = ctx.store.profiles.get((given["tenant"], given["name"]))
            result, message, kind = ctx.store.unregister(vs, given["tenant"], given["name"],
                                                         given.get("mac-address"))
            if result == "ok":
                ctx.save()
        notes = []
        if kind:
            notes.append(alert(kind, vs, given["tenant"], given["name"],
                               given.get("mac-address"), message or ""))
        elif before is not None and before.location.vserver == vs:
            gone = copy.copy(before)
            gone.state = "deleted"
            notes.append(report_note(gone, before.state))
        ctx.notify(notes)
        reply: Tree = {"result": result}
        if message:
            reply["error-message"] = message
        return reply

    def bulk_register_vms(self, given: Tree) -> Tree:
        """A vServer registers many VMs of one tenant at once; a result per VM."""
        ctx, vs = self.ctx, given["vserver"]
        with ctx.lock:
            ctx.known_vserver(vs)
            try:
                results = ctx.store.bulk_register(vs, given["tenant"],
                                                  given.get("template") or {},
                                                  list(given.get("vm") or []), ctx.me)
            except ProfileError as exc:
                raise refuse(exc) from None
            dc, nve = ctx.location_extras(vs)
            for _, _, _, out in results:
                if out is not None:
                    out.profile.location.data_center = dc
                    out.profile.location.nve = out.profile.location.nve or nve
            ctx.save()
        vms = []
        for name, result, message, _ in results:
            entry: Tree = {"name": name, "result": result}
            if message:
                entry["error-message"] = message
            vms.append(entry)
        ok = sum(1 for r in results if r[1] == "ok")
        return {"registered": ok, "failed": len(results) - ok, "vm": vms}

    def bulk_unregister_vms(self, given: Tree) -> Tree:
        """A vServer unregisters the VMs it names (or all it hosts, of a tenant or group)."""
        ctx, vs, tenant = self.ctx, given["vserver"], given.get("tenant")
        notes: list[Note] = []
        rows: list[Tree] = []
        with ctx.lock:
            ctx.known_vserver(vs)
            if given.get("vm"):
                keys = [(v["tenant"], v["name"]) for v in given["vm"]
                        if tenant is None or v["tenant"] == tenant]
            else:
                keys = ctx.store.select_hosted(vs, tenant, given.get("vm-group"))
            done = unknown = 0
            for t, n in keys:
                result, message, kind = ctx.store.unregister(vs, t, n)
                row: Tree = {"tenant": t, "name": n, "result": result}
                if message:
                    row["error-message"] = message
                rows.append(row)
                if kind:
                    unknown += 1
                    notes.append(alert(kind, vs, t, n, None, message or ""))
                elif result == "ok":
                    done += 1
            ctx.save()
        ctx.notify(notes)
        return {"unregistered": done, "unknown": unknown, "vm": rows}

    def report_vm(self, given: Tree) -> Tree:
        """A vServer reports its load and its VMs' state and figures."""
        ctx, vs = self.ctx, given["vserver"]
        now = time.time()
        notes: list[Note] = []
        unknown: list[Tree] = []
        with ctx.lock:
            ctx.known_vserver(vs)
            if given.get("load"):
                ctx.loads[vs] = Load.from_tree(given["load"])
            ctx.last_report[vs] = now
            accepted = 0
            for vm in given.get("vm") or []:
                out = ctx.store.report(vs, vm["tenant"], vm["name"], vm["state"],
                                       vm.get("nve"), vm, given.get("timestamp"), now)
                if out is None:
                    unknown.append({"tenant": vm["tenant"], "name": vm["name"]})
                    notes.append(alert("unknown-vm-report", vs, vm["tenant"], vm["name"],
                                       None, f"vCenter has no VM {vm['tenant']}/{vm['name']}:"
                                       " register it"))
                else:
                    accepted += 1
                    notes.append(report_note(out.profile, out.previous_state))
            ctx.save()
        ctx.notify(notes)
        reply: Tree = {"accepted": accepted}
        if unknown:
            reply["unknown-vm"] = unknown
        return reply

    def lookup_vm(self, given: Tree) -> Tree:
        """Profiles by name, MAC or IP; a root asks its children when it knows none."""
        ctx = self.ctx
        with ctx.lock:
            found = [lookup_row(ctx.store, ctx.me, p) for p in ctx.store.lookup(
                given.get("tenant"), given.get("vnid"), given.get("name"),
                given.get("mac-address"), given.get("ip-address"))]
        if not found and ctx.children:      # several data centers presented as one
            found = self.root.lookup(given)
        return {"vm": found} if found else {}
