"""The vCenter role: VM profiles per tenant, placement over vServers, a vCenter hierarchy.

What it does (draft-fw-nvo3-server2vcenter-01, "vServer to vCenter interface"):

* vServers register, unregister (one or in bulk) and report their VMs with the RPCs of
  nvo3-vcenter (registration.py); the profiles live in a
  :class:`~nvo3.roles.vcenter.profiles.ProfileStore`. The configuration holds the tenants,
  groups and operator-written profiles; what registration and the vCenter's own operations
  learn is persisted by the role itself, as JSON in its state directory (a role cannot edit
  its own datastore).
* Operators create, terminate and modify (lifecycle.py), relocate and replicate (mobility.py)
  VMs with the RPCs of the same names; the vCenter carries each out with the nvo3-vserver RPCs
  of the chosen vServers, over NETCONF sessions it opens on first use (host key verified,
  password from the vservers list when configured).
* A root vCenter (one with child-vcenters) keeps the tenant profiles of the whole system and
  forwards each operation to the child vCenter owning the vServer or data center (root.py).

This module only wires the parts together: the shared context (context.py), the
configuration, the state (state.py) and the RPC table.

Design notes: the role's lock is never held while a peer is called (a vServer registers
with this vCenter while it runs our create-vm); notifications go out after the lock is
released; every refusal is an ApplyError raised before anything changed.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

from nvo3.common.tree import Tree, entries
from nvo3.netconf.server.role_api import AccessScope, ConfigChange, Notifier, Role, RpcHandler
from nvo3.roles.peers.sessions import PeerConfig
from nvo3.roles.vcenter.context import MODULE, VCenterContext
from nvo3.roles.vcenter.lifecycle import VmLifecycle
from nvo3.roles.vcenter.mobility import Mobility
from nvo3.roles.vcenter.profiles import Group, Profile, ProfileError, TenantConfig
from nvo3.roles.vcenter.refusals import refuse
from nvo3.roles.vcenter.registration import Registration
from nvo3.roles.vcenter.root import RootDelegation
from nvo3.roles.vcenter.state import state_tree

log = logging.getLogger(__name__)


@dataclass
class VCenterConfig:
    """The /vcenter configuration, parsed."""

    name: str | None
    tenants: dict[str, TenantConfig]
    profiles: list[Profile]                 # the configured VM profiles
    vservers: dict[str, PeerConfig]
    children: dict[str, PeerConfig]
    policy: str
    dead_interval: int

    @classmethod
    def parse(cls, vc: Tree) -> VCenterConfig:
        """Parse the `vcenter` container (validated); ProfileError for a bad profile."""
        tenants: dict[str, TenantConfig] = {}
        configured: list[Profile] = []
        for t in entries(vc, "tenants", "tenant"):
            groups = {g["name"]: Group.from_config(g) for g in t.get("vm-group") or []}
            tenants[t["name"]] = TenantConfig(t["name"], int(t["vnid"]) if t.get("vnid")
                                              else None, groups)
            configured += [Profile.from_config(t["name"], vm) for vm in t.get("vm") or []]
        vservers = {v["name"]: PeerConfig.from_config(v, [v["data-center"]]
                                                      if v.get("data-center") else [])
                    for v in entries(vc, "vservers", "vserver")}
        children = {c["name"]: PeerConfig.from_config(c, list(c.get("data-center") or []))
                    for c in entries(vc, "child-vcenters", "child-vcenter")}
        return cls(vc.get("name"), tenants, configured, vservers, children,
                   (vc.get("placement") or {}).get("policy", "least-loaded"),
                   int((vc.get("reporting") or {}).get("dead-interval", 120)))


class VCenterRole(Role):
    """The vCenter (the draft's VM management system); a root vCenter when it has children."""

    name = "vcenter"
    modules = (MODULE,)

    def __init__(self, state_dir: Path | None = None) -> None:
        super().__init__()
        self.ctx = VCenterContext(state_dir)
        self.root = RootDelegation(self.ctx)
        self.lifecycle = VmLifecycle(self.ctx)
        self.mobility = Mobility(self.ctx)
        self.registration = Registration(self.ctx, self.root)
        self.ctx.load()

    # life cycle ----------------------------------------------------------------------------
    def start(self, notifier: Notifier) -> None:
        super().start(notifier)
        self.ctx.notifier = notifier

    def stop(self) -> None:
        self.ctx.links.close_all()
        self.ctx.child_links.close_all()

    # configuration -------------------------------------------------------------------------
    def apply(self, change: ConfigChange) -> None:
        ctx = self.ctx
        try:
            cfg = VCenterConfig.parse(change.after.get("vcenter") or {})
        except ProfileError as exc:
            raise refuse(exc) from None
        with ctx.lock:
            try:
                dropped = ctx.store.configure(cfg.tenants, cfg.profiles)
            except ProfileError as exc:
                raise refuse(exc) from None
            if dropped:
                log.warning("vcenter: %d learned VM profiles dropped with their tenant",
                            len(dropped))
            ctx.me, ctx.policy, ctx.dead_interval = cfg.name, cfg.policy, cfg.dead_interval
            ctx.vservers, ctx.children = cfg.vservers, cfg.children
            ctx.save()
        ctx.links.configure(cfg.vservers)
        ctx.child_links.configure(cfg.children)

    # state ---------------------------------------------------------------------------------
    def state(self) -> Tree:
        return state_tree(self.ctx, self.root.child_state)

    # RPC table -----------------------------------------------------------------------------
    def rpc_handlers(self) -> dict[str, RpcHandler]:
        reg, life, move, root = self.registration, self.lifecycle, self.mobility, self.root
        return {f"{MODULE}:{name}": fn for name, fn in {
            "register-vm": reg.register_vm, "unregister-vm": reg.unregister_vm,
            "bulk-register-vms": reg.bulk_register_vms,
            "bulk-unregister-vms": reg.bulk_unregister_vms, "report-vm": reg.report_vm,
            "lookup-vm": reg.lookup_vm,
            "create-vm": self._local_or_root(life.create_vm, root.create_vm),
            "terminate-vm": self._local_or_root(life.terminate_vm, root.terminate_vm),
            "modify-vm": self._local_or_root(life.modify_vm, root.modify_vm),
            "relocate-vm": self._local_or_root(move.relocate_vm, root.relocate_vm),
            "replicate-vm": self._local_or_root(move.replicate_vm, root.replicate_vm),
        }.items()}

    def access_scopes(self) -> dict[str, AccessScope]:
        """Every RPC and notification naming a tenant concerns that tenant's entry (NACM:
        a tenant's operator may act on its own tenant only)."""
        tenant = f"/{MODULE}:vcenter/tenants/tenant[name={{}}]"
        scopes = {name: AccessScope("tenant", tenant) for name in (
            "create-vm", "terminate-vm", "modify-vm", "relocate-vm", "replicate-vm",
            "lookup-vm", "register-vm", "unregister-vm", "bulk-register-vms",
            "bulk-unregister-vms", "vm-report", "vm-alert")}
        scopes["report-vm"] = AccessScope("vm/tenant", tenant)
        return {f"{MODULE}:{name}": scope for name, scope in scopes.items()}

    def _local_or_root(self, local: RpcHandler, root: RpcHandler) -> RpcHandler:
        """An operator RPC: carried out here, or delegated when this is a root vCenter."""
        def handler(given: Tree) -> Tree | None:
            return root(given) if self.ctx.children else local(given)
        return handler
