"""The VM life cycle a (non-root) vCenter carries out on its vServers: create-vm,
terminate-vm and modify-vm.

create-vm stages the profile first (MAC checked, the VM's place held), then asks the chosen
vServer (placement.py picks it when the input names none) and restores the staged profile
when the vServer refuses. Each RPC reads under the lock, calls the vServer without it, and
records the outcome under it again.
"""

from __future__ import annotations

import copy
import time

from nvo3.common.tree import Tree, truthy
from nvo3.netconf.server.role_api import ApplyError
from nvo3.roles.peers.sessions import PeerError
from nvo3.roles.vcenter.context import VSERVER, VCenterContext
from nvo3.roles.vcenter.placement import NoCapacity, choose
from nvo3.roles.vcenter.profiles import (
    RUNNING_STATES,
    Key,
    Location,
    Profile,
    ProfileError,
    ProfileStore,
    canonical_mac,
)
from nvo3.roles.vcenter.refusals import refuse


def refuse_if_running(key: Key, old: Profile | None) -> None:
    """create-vm of a VM that already runs somewhere: data-exists."""
    if old is not None and old.registered and old.state in RUNNING_STATES:
        raise ApplyError(f"VM {key[0]}/{key[1]} already runs on {old.location.vserver}",
                         tag="data-exists", app_tag="vm-exists")


def staged_profile(store: ProfileStore, key: Key, old: Profile | None, given: Tree) -> Profile:
    """The profile create-vm asks for: the stored one (`old`) with the input's items over it,
    checked against the store."""
    mac = given.get("mac-address")
    try:
        if old is not None:
            p = copy.deepcopy(old)
        else:           # a new VM: its own MAC, or one derived from tenant/name
            p = Profile(key[0], key[1], canonical_mac(mac) if mac is not None else "")
        if mac is not None and old is not None and canonical_mac(mac) != old.mac:
            if old.configured:
                raise ApplyError(f"VM {key[0]}/{key[1]} has MAC address {old.mac} in its "
                                 "configured profile", tag="invalid-value",
                                 app_tag="mac-address-mismatch")
            p.mac = canonical_mac(mac)
        _apply_items(p, given)
        if p.vnid is None and not p.configured:
            p.vnid = store.vnid_of(p)
        if not p.mac:
            p.mac = store.free_mac(p)
        store.check(p)
        store.check_ips(p)
    except ProfileError as exc:
        raise refuse(exc) from None
    return p


def _apply_items(p: Profile, given: Tree) -> None:
    for leaf, attr in (("vnid", "vnid"), ("vlan", "vlan"), ("vm-group", "vm_group"),
                       ("port", "port")):
        if given.get(leaf) is not None:
            setattr(p, attr, given[leaf])
    if given.get("ip-address"):
        p.ips = list(given["ip-address"])
    if given.get("resources"):
        p.resources = {**p.resources, **{k: int(v) for k, v in given["resources"].items()}}


class VmLifecycle:
    """create-vm, terminate-vm and modify-vm on this vCenter's own vServers."""

    def __init__(self, ctx: VCenterContext) -> None:
        self.ctx = ctx

    def _call(self, vserver: str, rpc: str, given: Tree) -> Tree:
        try:
            return self.ctx.links.call(vserver, VSERVER, rpc, given)
        except PeerError as exc:
            raise refuse(exc) from None

    # create --------------------------------------------------------------------------------
    def create_vm(self, given: Tree) -> Tree:
        """Stage the profile, place the VM, have the vServer create it, record where."""
        ctx, key = self.ctx, (given["tenant"], given["name"])
        with ctx.lock:
            try:
                ctx.store.tenant(key[0])
            except ProfileError as exc:
                raise refuse(exc) from None
            old = ctx.store.profiles.get(key)
            refuse_if_running(key, old)
            p = staged_profile(ctx.store, key, old, given)
            need = ctx.store.resources_of(p)
            target = self._target(given.get("vserver") or p.vserver, need, given)
            dc, nve = ctx.location_extras(target)
            p.location = Location(target, nve, ctx.me, dc)
            p.state, p.registered = "created", False
            ctx.store.put(p)
            ctx.last_placed = target
            request = {"tenant": key[0], "name": key[1], **ctx.vserver_profile(p),
                       "power-on": truthy(given.get("power-on", True))}
        try:
            out = ctx.links.call(target, VSERVER, "create-vm", request)
        except PeerError as exc:
            ctx.restore(key, old)
            raise refuse(exc) from None
        with ctx.lock:
            cur = self._record_created(key, p, target, need, out)
            reply = {"vserver": target, "state": out["state"], "vnid": ctx.store.vnid_of(cur),
                     "mac-address": cur.mac}
            for leaf, value in (("vcenter", ctx.me), ("data-center", dc),
                                ("nve", cur.location.nve), ("port", cur.port)):
                if value is not None:
                    reply[leaf] = value
        return reply

    def _target(self, asked: str | None, need: dict[str, int], given: Tree) -> str:
        """The vServer asked for (it must be configured), else the one placement picks."""
        ctx = self.ctx
        if asked is not None:
            if asked not in ctx.vservers:
                raise ApplyError(f"vServer {asked!r} is not configured",
                                 tag="invalid-value", app_tag="unknown-vserver")
            return asked
        try:
            return choose(ctx.candidates(), need, ctx.policy, given.get("data-center"),
                          ctx.last_placed)
        except NoCapacity as exc:
            raise refuse(exc) from None

    def _record_created(self, key: Key, staged: Profile, target: str, need: dict[str, int],
                        out: Tree) -> Profile:
        """The VM runs on `target`: its profile says so (under the lock)."""
        ctx = self.ctx
        cur = ctx.store.profiles.get(key) or staged
        cur.location.vserver = target
        cur.location.nve = out.get("nve") or cur.location.nve
        cur.port = out.get("port") or cur.port
        cur.state, cur.last_change = out["state"], time.time()
        if not cur.configured:
            cur.vserver = target
        ctx.store.put(cur)
        ctx.placed(target, need)
        ctx.save()
        return cur

    # terminate -----------------------------------------------------------------------------
    def terminate_vm(self, given: Tree) -> Tree:
        """Terminate the VM on its vServer; keep its profile (deleted) unless asked not to."""
        ctx, key = self.ctx, (given["tenant"], given["name"])
        delete = truthy(given.get("delete-profile"))
        with ctx.lock:
            p = ctx.profile(*key)
            if delete and p.configured:
                raise ApplyError(f"the profile of {key[0]}/{key[1]} is configured: delete it "
                                 "from /vcenter/tenants instead", tag="invalid-value",
                                 app_tag="configured-profile")
            host, snapshot = p.location.vserver, copy.deepcopy(p)
        out: Tree = {"state": "deleted"}
        if host is not None:
            out = self._call(host, "terminate-vm", {"tenant": key[0], "name": key[1]})
        with ctx.lock:
            if delete:
                ctx.store.remove(key)
            else:
                snapshot.location, snapshot.state, snapshot.registered = Location(), \
                    "deleted", False
                snapshot.last_change = time.time()
                ctx.store.put(snapshot)
            if host is not None:
                ctx.placed(host, ctx.store.resources_of(snapshot), -1)
            ctx.save()
        reply: Tree = {"state": out.get("state", "deleted")}
        if host:
            reply["vserver"] = host
        return reply

    # modify --------------------------------------------------------------------------------
    def modify_vm(self, given: Tree) -> Tree:
        """Change a VM's VLAN, group, IPs, resources or power state on its vServer."""
        ctx, key = self.ctx, (given["tenant"], given["name"])
        changes = {k: given[k] for k in ("vlan", "vm-group", "ip-address", "resources")
                   if given.get(k) not in (None, [], {})}
        with ctx.lock:
            p = ctx.profile(*key)
            host = p.location.vserver
            request = self._modify_request(key, self._modified(p, changes), changes, given)
        out: Tree = {}
        if host is not None:
            out = self._call(host, "modify-vm", request)
        elif given.get("power-state"):
            raise ApplyError(f"VM {key[0]}/{key[1]} does not run: create it first",
                             tag="invalid-value", app_tag="vm-not-running")
        with ctx.lock:
            cur = self._modified(ctx.store.profiles.get(key) or p, changes)
            if out.get("state"):
                cur.state = out["state"]
            ctx.store.put(cur)
            ctx.save()
            reply: Tree = {"state": cur.state or "deleted",
                           "resources": out.get("resources") or ctx.store.resources_of(cur)}
            if host:
                reply["vserver"] = host
        return reply

    def _modify_request(self, key: Key, trial: Profile, changes: Tree, given: Tree) -> Tree:
        """The nvo3-vserver modify-vm input: the changes, and a new group's policy/VLAN."""
        request: Tree = {"tenant": key[0], "name": key[1], **copy.deepcopy(changes)}
        if "vm-group" in changes:
            request["policy"] = self.ctx.store.policy_of(trial)
            vlan = self.ctx.store.vlan_of(trial)
            if vlan is not None and "vlan" not in changes:
                request["vlan"] = vlan
        if given.get("power-state"):
            request["power-state"] = given["power-state"]
        return request

    def _modified(self, p: Profile, changes: Tree) -> Profile:
        """A checked copy of `p` with `changes` applied."""
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
            self.ctx.store.check(new)
            self.ctx.store.check_ips(new)
        except ProfileError as exc:
            raise refuse(exc) from None
        return new
