"""The vCenter's config-false state: tenants with their VMs' profiles, locations and
figures, the vServers (session, last report, load) and the child vCenters (session, load)."""

from __future__ import annotations

from nvo3.common.clock import iso
from nvo3.common.tree import Tree
from nvo3.roles.vcenter.context import MODULE, VCenterContext
from nvo3.roles.vcenter.profiles import Profile
from nvo3.roles.vcenter.root import ChildView


def vm_state(p: Profile) -> Tree:
    """The state of one VM: a learned profile's items, then registration, state, location
    and monitoring."""
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
        out["last-change"] = iso(p.last_change)
    loc = {k.replace("_", "-"): v for k, v in p.location.__dict__.items() if v}
    if loc:
        out["location"] = loc
    if p.monitoring:
        out["monitoring"] = dict(p.monitoring)
    return out


def _tenants(ctx: VCenterContext) -> list[Tree]:
    by_tenant: dict[str, list[Tree]] = {}
    for p in ctx.store.profiles.values():
        by_tenant.setdefault(p.tenant, []).append(vm_state(p))
    tenants = []
    for name, t in ctx.store.tenants.items():
        entry: Tree = {"name": name, "vm": by_tenant.get(name, [])}
        if t.groups:
            entry["vm-group"] = [{"name": g, "member-count": ctx.store.member_count(name, g)}
                                 for g in t.groups]
        tenants.append(entry)
    return tenants


def _vservers(ctx: VCenterContext) -> list[Tree]:
    vservers = []
    for name in ctx.vservers:
        v: Tree = {"name": name, "connection-state": ctx.links.states.get(name,
                                                                          "disconnected")}
        if name in ctx.last_report:
            v["last-report"] = iso(ctx.last_report[name])
        if name in ctx.loads:
            v["load"] = ctx.loads[name].to_tree()
        vservers.append(v)
    return vservers


def _children(ctx: VCenterContext, seen: dict[str, ChildView]) -> list[Tree]:
    children = []
    for name in ctx.children:
        c: Tree = {"name": name, "connection-state": ctx.child_links.states.get(
            name, "disconnected")}
        view = seen.get(name)
        if view is not None:
            c["load"] = {"vserver-count": len(view.members), **view.load.to_tree()}
        children.append(c)
    return children


def state_tree(ctx: VCenterContext, seen: dict[str, ChildView]) -> Tree:
    """The nvo3-vcenter state; `seen` is what the children last served (root only)."""
    with ctx.lock:
        tenants, vservers = _tenants(ctx), _vservers(ctx)
        children = _children(ctx, seen)
        vc: Tree = {"role": "root" if ctx.children else "standalone"}
        if tenants:
            vc["tenants"] = {"tenant": tenants}
        if vservers:
            vc["vservers"] = {"vserver": vservers}
        if children:
            vc["child-vcenters"] = {"child-vcenter": children}
    return {MODULE: {"vcenter": vc}}
