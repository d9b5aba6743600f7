"""VM mobility between a (non-root) vCenter's own vServers: relocate-vm and replicate-vm.

* relocate: destination side first (it creates, associates and activates the VM at its NVE,
  so the nDirector learns the new location from the NVE before the source lets go), the
  profile moves to the destination, then the source side;
* replicate: the source snapshots, the destination runs the copy, and only then, with
  terminate-source, is the source terminated.
"""

from __future__ import annotations

import copy
import logging
import time

from nvo3.common.tree import Tree, truthy
from nvo3.netconf.server.role_api import ApplyError
from nvo3.roles.peers.sessions import PeerError
from nvo3.roles.vcenter.context import VSERVER, VCenterContext
from nvo3.roles.vcenter.profiles import (
    RUNNING_STATES,
    Key,
    Location,
    Profile,
    ProfileError,
    canonical_mac,
)
from nvo3.roles.vcenter.refusals import refuse

log = logging.getLogger(__name__)


class Mobility:
    """relocate-vm and replicate-vm between two vServers of this vCenter."""

    def __init__(self, ctx: VCenterContext) -> None:
        self.ctx = ctx

    def _move_check(self, p: Profile, dst: str, given: Tree) -> str:
        """The VM's source vServer, or a refusal (not running, unknown or same vServer)."""
        ctx, src = self.ctx, p.location.vserver
        if src is None or p.state not in RUNNING_STATES:
            raise ApplyError(f"VM {p.tenant}/{p.name} does not run on any vServer",
                             tag="invalid-value", app_tag="vm-not-running")
        if dst not in ctx.vservers:
            raise ApplyError(f"destination vServer {dst!r} is not configured",
                             tag="invalid-value", app_tag="unknown-vserver")
        if dst == src:
            raise ApplyError(f"VM {p.tenant}/{p.name} already runs on {dst}",
                             tag="invalid-value", app_tag="same-vserver")
        wanted = given.get("destination-vcenter")
        if wanted is not None and wanted != ctx.me:
            raise ApplyError(f"vCenter {ctx.me} has no child vCenter {wanted!r}",
                             tag="invalid-value", app_tag="unknown-vcenter")
        return src

    def _side(self, key: Key, role: str, peer: str, **extra: object) -> Tree:
        """The nvo3-vserver relocate-vm / replicate-vm input for one side of a move."""
        return {"tenant": key[0], "name": key[1], "role": role, "peer-vserver": peer,
                "peer-address": self.ctx.vservers[peer].address, **extra}

    def _arrived(self, key: Key, fallback: Profile, dst: str, out: Tree,
                 registered: bool) -> None:
        """The VM (or its copy) runs on `dst`: its profile follows (under the lock)."""
        ctx = self.ctx
        cur = ctx.store.profiles.get(key) or fallback
        dc, nve = ctx.location_extras(dst)
        cur.location = Location(dst, out.get("nve") or nve, ctx.me, dc)
        cur.port = out.get("port") or cur.port
        cur.state, cur.last_change = out["state"], time.time()
        if registered:
            cur.registered = True
        if not cur.configured:
            cur.vserver = dst
        ctx.store.put(cur)

    # relocate ------------------------------------------------------------------------------
    def relocate_vm(self, given: Tree) -> Tree:
        """Move a running VM: destination first, then the source lets it go."""
        ctx = self.ctx
        key, dst = (given["tenant"], given["name"]), given["destination-vserver"]
        t0 = time.monotonic()
        with ctx.lock:
            p = ctx.profile(*key)
            if p.location.vserver == dst and p.state in RUNNING_STATES:
                return _with_port({"source-vserver": dst, "destination-vserver": dst,
                                   "state": p.state, "duration": 0},
                                  {"nve": p.location.nve, "port": p.port})  # a no-op
            src = self._move_check(p, dst, given)
            need = ctx.store.resources_of(p)
            to_dst = self._side(key, "destination", src, profile=ctx.vserver_profile(p))
            to_src = self._side(key, "source", dst)
        try:
            out = ctx.links.call(dst, VSERVER, "relocate-vm", to_dst)
        except PeerError as exc:
            raise refuse(exc) from None
        duration = int((time.monotonic() - t0) * 1000)
        with ctx.lock:                          # the VM runs at dst: the profile follows
            self._arrived(key, p, dst, out, registered=True)
            ctx.placed(dst, need)
            ctx.save()
        try:
            ctx.links.call(src, VSERVER, "relocate-vm", to_src)
            with ctx.lock:
                ctx.placed(src, need, -1)
                ctx.save()
        except PeerError as exc:
            log.error("vcenter: relocation of %s/%s: the VM runs on %s, but the source %s "
                      "failed to let it go: %s", key[0], key[1], dst, src, exc)
        reply: Tree = {"source-vserver": src, "destination-vserver": dst,
                       "state": out["state"], "duration": duration}
        return _with_port(reply, out)

    # replicate -----------------------------------------------------------------------------
    def replicate_vm(self, given: Tree) -> Tree:
        """Copy a running VM to another vServer; terminate the source after, if asked."""
        ctx = self.ctx
        key, dst = (given["tenant"], given["name"]), given["destination-vserver"]
        terminate = truthy(given.get("terminate-source"))
        with ctx.lock:
            p = ctx.profile(*key)
            src = self._move_check(p, dst, given)
            replica_name = given.get("replica-name") or key[1]
            rkey = (key[0], replica_name)
            old_replica = ctx.store.profiles.get(rkey) if rkey != key else None
            replica = p if rkey == key else self._stage_replica(p, rkey, old_replica, dst,
                                                                 given, terminate)
            named = {"replica-name": replica_name} if rkey != key else {}
            to_src = self._side(key, "source", dst, **named)
            to_dst = self._side(key, "destination", src, **named,
                                profile=ctx.vserver_profile(replica))
            need = ctx.store.resources_of(p)
        try:
            ctx.links.call(src, VSERVER, "replicate-vm", to_src)
            out = ctx.links.call(dst, VSERVER, "replicate-vm", to_dst)
        except PeerError as exc:
            if rkey != key:
                ctx.restore(rkey, old_replica)
            raise refuse(exc) from None
        with ctx.lock:                  # the copy runs at dst
            self._arrived(rkey, replica, dst, out, registered=False)
            ctx.placed(dst, need)
            ctx.save()
        source_state = p.state
        if terminate:                   # only now is the source touched
            source_state = self._terminate_source(p, rkey, src, dst, need, source_state)
        reply: Tree = {"replica-name": replica_name, "destination-vserver": dst,
                       "state": out["state"]}
        if source_state:
            reply["source-state"] = source_state
        return _with_port(reply, out)

    def _stage_replica(self, p: Profile, rkey: Key, old: Profile | None, dst: str,
                       given: Tree, terminate: bool) -> Profile:
        """The replica's own profile (another name), checked and stored (under the lock)."""
        ctx = self.ctx
        if old is not None and old.state in RUNNING_STATES:
            raise ApplyError(f"VM {rkey[0]}/{rkey[1]} already exists",
                             tag="data-exists", app_tag="vm-exists")
        replica = copy.deepcopy(p)
        replica.name, replica.configured, replica.port = rkey[1], False, None
        try:
            replica.mac = canonical_mac(given.get("replica-mac-address") or p.mac)
            replica.ips = list(given.get("replica-ip-address") or [])
            replica.vnid = ctx.store.vnid_of(p)
            dc, nve = ctx.location_extras(dst)
            replica.location, replica.state = Location(dst, nve, ctx.me, dc), "created"
            replica.registered, replica.monitoring = False, {}
            if replica.mac == p.mac and not terminate:
                raise ProfileError(f"the replica needs a MAC address of its own "
                                   f"({p.mac} is {p.tenant}/{p.name}'s)",
                                   "duplicate-mac", tag="data-exists")
            ctx.store.check(replica)
            ctx.store.check_ips(replica, sharing=p.key if terminate else None)
        except ProfileError as exc:
            raise refuse(exc) from None
        ctx.store.put(replica)
        return replica

    def _terminate_source(self, p: Profile, rkey: Key, src: str, dst: str,
                          need: dict[str, int], source_state: str | None) -> str | None:
        """terminate-vm at the source of a replication; the source's state after it."""
        ctx = self.ctx
        try:
            source_state = ctx.links.call(src, VSERVER, "terminate-vm",
                                          {"tenant": p.tenant, "name": p.name}).get(
                "state", "deleted")
            with ctx.lock:
                ctx.placed(src, need, -1)
                if rkey != p.key and not p.configured:
                    ctx.store.remove(p.key)
                ctx.save()
        except PeerError as exc:
            log.error("vcenter: replica %s/%s runs on %s, but terminating the source on "
                      "%s failed: %s", rkey[0], rkey[1], dst, src, exc)
        return source_state


def _with_port(reply: Tree, out: Tree) -> Tree:
    """`reply` with the destination's nve and port, when it gave them."""
    for leaf in ("nve", "port"):
        if out.get(leaf):
            reply[leaf] = out[leaf]
    return reply
