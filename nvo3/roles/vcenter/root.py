"""The root vCenter's part of the vCenter role: several data centers presented as one.

A root vCenter (one with child-vcenters) keeps the tenant profiles of the whole system and
forwards each operation to the child vCenter owning the vServer or data center, chosen by
topology and the children's load; a move between children is create-at-destination, then
terminate-at-source (make-before-break at the network level).
"""

from __future__ import annotations

import copy
import logging
import time
from dataclasses import dataclass, field

from nvo3.common.tree import Tree, entries, truthy
from nvo3.netconf.server.role_api import ApplyError
from nvo3.roles.peers import codec as peer
from nvo3.roles.peers.sessions import PeerError
from nvo3.roles.vcenter.context import MODULE, VCenterContext
from nvo3.roles.vcenter.group_sync import carry_group
from nvo3.roles.vcenter.lifecycle import refuse_if_running, staged_profile
from nvo3.roles.vcenter.placement import Candidate, Load, NoCapacity, choose_child
from nvo3.roles.vcenter.profiles import Key, Location, Profile, ProfileError
from nvo3.roles.vcenter.refusals import refuse

log = logging.getLogger(__name__)


@dataclass
class ChildView:
    """What a child vCenter last served about its vServers (one get per refresh)."""

    load: Load = field(default_factory=Load)            # summed over its fresh vServers
    members: dict[str, Load] = field(default_factory=dict)   # fresh vServers' loads
    vservers: set[str] = field(default_factory=set)
    data_centers: dict[str, str | None] = field(default_factory=dict)
    at: float = 0.0

    @classmethod
    def from_state(cls, vservers: list[Tree], now: float) -> ChildView:
        """The view of a child's `vservers` state entries."""
        members = {v["name"]: Load.from_tree(v.get("load")) for v in vservers
                   if v.get("connection-state") == "connected" or v.get("load") is not None}
        total = Load()
        for load in members.values():
            total = total + load
        return cls(total, members, {v["name"] for v in vservers},
                   {v["name"]: v.get("data-center") for v in vservers}, now)


class RootDelegation:
    """What a root vCenter does with its child vCenters: the operator RPCs, forwarded."""

    def __init__(self, ctx: VCenterContext) -> None:
        self.ctx = ctx
        self.child_state: dict[str, ChildView] = {}

    # children ------------------------------------------------------------------------------
    def refresh(self) -> dict[str, ChildView]:
        """Each child's vServers, their data centers and load (one get per child)."""
        for name in list(self.ctx.children):
            try:
                tree = self.ctx.child_links.run(
                    name, lambda c: peer.get_state(c, MODULE, "vcenter"))
            except PeerError as exc:
                log.warning("vcenter: child %s: %s", name, exc)
                continue
            view = ChildView.from_state(entries(tree, "vservers", "vserver"), time.time())
            with self.ctx.lock:
                self.child_state[name] = view
        return self.child_state

    def _child_of_vserver(self, vserver: str) -> str | None:
        for name, view in self.child_state.items():
            if vserver in view.vservers:
                return name
        return None

    def _child_for(self, p: Profile) -> str:
        child = p.location.vcenter or p.vcenter
        if child is not None and child in self.ctx.children:
            return child
        raise ApplyError(f"VM {p.tenant}/{p.name} is not managed by a child vCenter",
                         tag="invalid-value", app_tag="unknown-vcenter")

    def _call(self, child: str, rpc: str, given: Tree) -> Tree:
        try:
            return self.ctx.child_links.call(child, MODULE, rpc, given)
        except PeerError as exc:
            raise refuse(exc) from None

    # create --------------------------------------------------------------------------------
    def create_vm(self, given: Tree) -> Tree:
        """create-vm at a root: the child owning the vServer, else the least loaded fit."""
        ctx, key = self.ctx, (given["tenant"], given["name"])
        state = self.refresh()
        with ctx.lock:
            old = ctx.store.profiles.get(key)
            refuse_if_running(key, old)
            p = staged_profile(ctx.store, key, old, given)
            vs = given.get("vserver") or p.vserver
            child = self._choose_child(p, vs, state, given)
            p.location = Location(vs, None, child)
            p.vcenter = child if not p.configured else p.vcenter
            p.state = "created"
            ctx.store.put(p)
        request = {k: v for k, v in given.items() if v not in (None, [], {})}
        request.update({"vnid": ctx.store.vnid_of(p), "mac-address": p.mac})
        if p.ips:
            request["ip-address"] = list(p.ips)
        if vs:
            request["vserver"] = vs
        try:
            carry_group(ctx, child, key[0], p.vm_group)
            out = ctx.child_links.call(child, MODULE, "create-vm", request)
        except PeerError as exc:
            ctx.restore(key, old)
            raise refuse(exc) from None
        with ctx.lock:
            cur = ctx.store.profiles.get(key) or p
            cur.location = Location(out["vserver"], out.get("nve"), child,
                                    out.get("data-center"))
            cur.state, cur.registered, cur.last_change = out["state"], True, time.time()
            cur.port = out.get("port") or cur.port
            ctx.store.put(cur)
            ctx.save()
        return {**out, "vcenter": out.get("vcenter") or child}

    def _choose_child(self, p: Profile, vs: str | None, state: dict[str, ChildView],
                      given: Tree) -> str:
        """The profile's child vCenter, the one managing `vs`, else placement by load."""
        child = (p.vcenter if p.vcenter in self.ctx.children else None) \
            or (self._child_of_vserver(vs) if vs else None)
        if vs and child is None:
            raise ApplyError(f"no child vCenter manages vServer {vs!r}",
                             tag="invalid-value", app_tag="unknown-vserver")
        if child is not None:
            return child
        cands = [Candidate(n, state[n].load if n in state else None,
                           frozenset(cfg.data_centers), available=n in state,
                           members=tuple(state[n].members.values()) if n in state else ())
                 for n, cfg in self.ctx.children.items()]
        try:
            return choose_child(cands, self.ctx.store.resources_of(p),
                                given.get("data-center"))
        except NoCapacity as exc:
            raise refuse(exc) from None

    # terminate / modify --------------------------------------------------------------------
    def terminate_vm(self, given: Tree) -> Tree:
        """terminate-vm at a root: forwarded to the VM's child vCenter."""
        return self._forward("terminate-vm", given)

    def modify_vm(self, given: Tree) -> Tree:
        """modify-vm at a root: forwarded to the VM's child vCenter."""
        return self._forward("modify-vm", given)

    def _forward(self, rpc: str, given: Tree) -> Tree:
        ctx, key = self.ctx, (given["tenant"], given["name"])
        with ctx.lock:
            child = self._child_for(ctx.profile(*key))
        out = self._call(child, rpc, given)
        with ctx.lock:
            cur = ctx.store.profiles.get(key)
            if cur is not None:
                if rpc == "terminate-vm":
                    if truthy(given.get("delete-profile")) and not cur.configured:
                        ctx.store.remove(key)
                    else:
                        cur.location, cur.state, cur.registered = Location(), "deleted", False
                elif out.get("state"):
                    cur.state = out["state"]
                ctx.save()
        return out

    # relocate / replicate ------------------------------------------------------------------
    def relocate_vm(self, given: Tree) -> Tree:
        """relocate-vm at a root (see :meth:`_move`)."""
        return self._move("relocate-vm", given)

    def replicate_vm(self, given: Tree) -> Tree:
        """replicate-vm at a root (see :meth:`_move`)."""
        return self._move("replicate-vm", given)

    def _move(self, rpc: str, given: Tree) -> Tree:
        """Within one child, forwarded; between children, create at the destination child,
        then terminate at the source child."""
        ctx = self.ctx
        key, dst = (given["tenant"], given["name"]), given["destination-vserver"]
        self.refresh()
        with ctx.lock:
            p = ctx.profile(*key)
            src_child = self._child_for(p)
            dst_child = given.get("destination-vcenter") or self._child_of_vserver(dst)
            if dst_child is None or dst_child not in ctx.children:
                raise ApplyError(f"no child vCenter manages vServer {dst!r}",
                                 tag="invalid-value", app_tag="unknown-vserver")
            if rpc == "replicate-vm":
                self._check_replica_ips(p, given)
        if dst_child != src_child:
            return self._cross(rpc, given, p, src_child, dst_child)
        out = self._call(src_child, rpc,
                         {k: v for k, v in given.items() if k != "destination-vcenter"})
        with ctx.lock:
            moved = key if rpc == "relocate-vm" else (key[0], out["replica-name"])
            self._located(moved, p, dst, dst_child, out)
        return out

    def _check_replica_ips(self, p: Profile, given: Tree) -> None:
        """A replica's IP addresses are checked against every data center's VMs (a child
        knows only its own)."""
        replica = copy.deepcopy(p)
        replica.name = given.get("replica-name") or p.name
        replica.vnid, replica.ips = self.ctx.store.vnid_of(p), list(
            given.get("replica-ip-address") or [])
        sharing = p.key if truthy(given.get("terminate-source")) else None
        try:
            self.ctx.store.check_ips(replica, sharing=sharing)
        except ProfileError as exc:
            raise refuse(exc) from None

    def _located(self, key: Key, base: Profile, vserver: str, child: str, out: Tree) -> None:
        """Record that VM `key` now runs on `vserver` under `child` (a replica: new profile
        from `base`)."""
        cur = self.ctx.store.profiles.get(key)
        if cur is None:
            cur = copy.deepcopy(base)
            cur.name, cur.configured = key[1], False
        view = self.child_state.get(child)
        dc = out.get("data-center") or (view.data_centers.get(vserver) if view else None)
        cur.location = Location(vserver, out.get("nve"), child, dc)
        cur.state, cur.registered, cur.last_change = out.get("state"), True, time.time()
        self.ctx.store.put(cur)
        self.ctx.save()

    def _cross(self, rpc: str, given: Tree, p: Profile, src_child: str,
               dst_child: str) -> Tree:
        """A move between children: create at `dst_child`, then terminate at `src_child`."""
        t0 = time.monotonic()
        dst = given["destination-vserver"]
        src_vs = p.location.vserver or ""     # read now: recording the move updates `p`
        name = (given.get("replica-name") or p.name) if rpc == "replicate-vm" else p.name
        try:
            carry_group(self.ctx, dst_child, p.tenant, p.vm_group)
        except PeerError as exc:
            raise refuse(exc) from None
        out = self._call(dst_child, "create-vm", self._cross_create(rpc, given, p, name))
        with self.ctx.lock:
            self._located((p.tenant, name), p, dst, dst_child, out)
        source_state = p.state
        if rpc == "relocate-vm" or truthy(given.get("terminate-source")):
            source_state = self._cross_terminate(rpc, p, src_child, name)
        if rpc == "relocate-vm":
            reply = {"source-vserver": src_vs, "destination-vserver": dst,
                     "state": out["state"], "duration": int((time.monotonic() - t0) * 1000)}
        else:
            reply = {"replica-name": name, "destination-vserver": dst, "state": out["state"]}
            if source_state:
                reply["source-state"] = source_state
        for leaf in ("nve", "port"):
            if out.get(leaf):
                reply[leaf] = out[leaf]
        return reply

    def _cross_create(self, rpc: str, given: Tree, p: Profile, name: str) -> Tree:
        """The create-vm input for the destination child of a move between children."""
        create: Tree = {"tenant": p.tenant, "name": name,
                        "vserver": given["destination-vserver"],
                        **{k: v for k, v in self.ctx.vserver_profile(p).items()
                           if k in ("vnid", "vlan", "vm-group", "resources", "mac-address",
                                    "ip-address")}}
        if rpc == "replicate-vm" and given.get("replica-mac-address"):
            create["mac-address"] = given["replica-mac-address"]
            create["ip-address"] = list(given.get("replica-ip-address") or [])
            if not create["ip-address"]:
                del create["ip-address"]
        return create

    def _cross_terminate(self, rpc: str, p: Profile, src_child: str,
                         name: str) -> str | None:
        """Terminate the source side of a move between children; its state after."""
        source_state = p.state
        try:
            source_state = self.ctx.child_links.call(
                src_child, MODULE, "terminate-vm",
                {"tenant": p.tenant, "name": p.name,
                 "delete-profile": True}).get("state", "deleted")
        except PeerError as exc:
            log.error("vcenter: %s of %s/%s: the source side at %s failed: %s", rpc,
                      p.tenant, p.name, src_child, exc)
        if name != p.name:
            with self.ctx.lock:
                if not p.configured:
                    self.ctx.store.remove(p.key)
                self.ctx.save()
        return source_state

    # lookup --------------------------------------------------------------------------------
    def lookup(self, given: Tree) -> list[Tree]:
        """lookup-vm at every child (several data centers presented as one), each VM once."""
        found: list[Tree] = []
        seen: set[Key] = set()
        for child in list(self.ctx.children):
            try:
                rows = self.ctx.child_links.call(child, MODULE, "lookup-vm", given).get(
                    "vm") or []
            except PeerError as exc:
                log.warning("vcenter: lookup at %s failed: %s", child, exc)
                continue
            for row in rows:
                if (row["tenant"], row["name"]) not in seen:
                    seen.add((row["tenant"], row["name"]))
                    found.append(row)
        return found
