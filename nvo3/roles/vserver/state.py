"""The vServer's config-false state: load, every VM (profile, where it is attached, figures)
and the sessions to the vCenter and the NVE."""

from __future__ import annotations

from nvo3.common.clock import iso
from nvo3.common.tree import Tree
from nvo3.roles.vserver.context import MODULE, PROFILE_LEAVES, VServerContext
from nvo3.roles.vserver.vm_driver import Vm


def vm_state(ctx: VServerContext, vm: Vm) -> Tree:
    """The state of one VM."""
    p = vm.profile
    out: Tree = {"tenant": vm.tenant, "name": vm.name}
    for leaf in ("vcenter", *PROFILE_LEAVES):
        if p.get(leaf) is not None:
            out[leaf] = p[leaf]
    out.update({"mac-address": vm.mac, "port": vm.port,
                "resources": vm.resources.as_tree(), "state": p.get("state", "created"),
                "registered": bool(p.get("registered"))})
    if vm.ips:
        out["ip-address"] = list(vm.ips)
    if p.get("policy"):
        out["policy"] = p["policy"]
    for leaf in ("nve", "attachment-state", "replica-of", "created", "last-change"):
        if p.get(leaf):
            out[leaf] = p[leaf]
    figures = ctx.figures(vm.key)
    if figures:
        out["monitoring"] = {"last-update": iso(figures["at"]),
                             **{k: v for k, v in figures.items()
                                if k not in ("at", "running")}}
    return out


def state_tree(ctx: VServerContext) -> Tree:
    """The nvo3-vserver state."""
    with ctx.lock:
        top: Tree = {"load": ctx.ledger.load(),
                     "vms": {"vm": [vm_state(ctx, vm) for vm in ctx.vms.values()]}}
        if ctx.config.get("vcenter") is not None:
            top["vcenter"] = {"connection-state": ctx.vcenter.state}
        if ctx.config.get("nve") is not None:
            top["nve"] = {"connection-state": ctx.nve.state}
    return {MODULE: {"vserver": top}}
