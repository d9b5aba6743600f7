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

from nvo3.netconf.server.role import ApplyError, Tree
from nvo3.roles.peers import codec as peer
from nvo3.roles.peers.links import PeerError
from nvo3.roles.vcenter.placement import Candidate, Load, NoCapacity, choose_child
from nvo3.roles.vcenter.profiles import Location, Profile
from nvo3.roles.vcenter.util import _list, _refuse, _true, refuse_if_running

log = logging.getLogger(__name__)

MODULE = "nvo3-vcenter"


class RootDelegation:
    """Mixin of VCenterRole: what a root vCenter does with its child vCenters."""

    # root vCenter --------------------------------------------------------------------------
    def _refresh_children(self) -> dict[str, Tree]:
        """Each child's vServers, their data centers and load (one get per child)."""
        for name in list(self.children):
            try:
                tree = self.child_links.run(name, lambda c: peer.get_state(c, MODULE,
                                                                           "vcenter"))
            except PeerError as exc:
                log.warning("vcenter: child %s: %s", name, exc)
                continue
            vservers = _list(tree, "vservers", "vserver")
            now = time.time()
            members = {}
            for v in vservers:
                fresh = v.get("connection-state") == "connected" or v.get("load") is not None
                if fresh:
                    members[v["name"]] = Load.from_tree(v.get("load"))
            total = Load()
            for load in members.values():
                total = total + load
            with self.lock:
                self.child_state[name] = {"load": total, "members": members,
                                          "vservers": {v["name"] for v in vservers},
                                          "data-centers": {v["name"]: v.get("data-center")
                                                           for v in vservers},
                                          "at": now}
        return self.child_state

    def _child_of_vserver(self, vserver: str) -> str | None:
        for name, st in self.child_state.items():
            if vserver in st["vservers"]:
                return name
        return None

    def _child_for(self, p: Profile) -> str:
        child = p.location.vcenter or p.vcenter
        if child in self.children:
            return child
        raise ApplyError(f"VM {p.tenant}/{p.name} is not managed by a child vCenter",
                         tag="invalid-value", app_tag="unknown-vcenter")

    def _root_create(self, given: Tree) -> Tree:
        key = (given["tenant"], given["name"])
        state = self._refresh_children()
        with self.lock:
            old = self.store.profiles.get(key)
            refuse_if_running(key, old)
            p = self._staged(key, old, given)
            need = self.store.resources_of(p)
            vs = given.get("vserver") or p.vserver
            child = (p.vcenter if p.vcenter in self.children else None) \
                or (self._child_of_vserver(vs) if vs else None)
            if vs and child is None:
                raise ApplyError(f"no child vCenter manages vServer {vs!r}",
                                 tag="invalid-value", app_tag="unknown-vserver")
            if child is None:
                cands = [Candidate(n, state[n]["load"] if n in state else None,
                                   frozenset(cfg.data_centers),
                                   available=n in state,
                                   members=tuple(state[n]["members"].values())
                                   if n in state else ())
                         for n, cfg in self.children.items()]
                try:
                    child = choose_child(cands, need, given.get("data-center"))
                except NoCapacity as exc:
                    raise _refuse(exc) from None
            p.location = Location(vs, None, child)
            p.vcenter = child if not p.configured else p.vcenter
            p.state = "created"
            self.store.put(p)
        request = {k: v for k, v in given.items() if v not in (None, [], {})}
        request.update({"vnid": self.store.vnid_of(p), "mac-address": p.mac})
        if p.ips:
            request["ip-address"] = list(p.ips)
        if vs:
            request["vserver"] = vs
        try:
            out = self.child_links.call(child, MODULE, "create-vm", request)
        except PeerError as exc:
            self._restore(key, old)
            raise _refuse(exc) from None
        with self.lock:
            cur = self.store.profiles.get(key) or p
            cur.location = Location(out["vserver"], out.get("nve"), child,
                                    out.get("data-center"))
            cur.state, cur.registered, cur.last_change = out["state"], True, time.time()
            cur.port = out.get("port") or cur.port
            self.store.put(cur)
            self._save()
        return {**out, "vcenter": out.get("vcenter") or child}

    def _root_forward(self, rpc: str, given: Tree) -> Tree:
        key = (given["tenant"], given["name"])
        with self.lock:
            p = self._profile(*key)
            child = self._child_for(p)
        try:
            out = self.child_links.call(child, MODULE, rpc, given)
        except PeerError as exc:
            raise _refuse(exc) from None
        with self.lock:
            cur = self.store.profiles.get(key)
            if cur is not None:
                if rpc == "terminate-vm":
                    if _true(given.get("delete-profile")) and not cur.configured:
                        self.store.remove(key)
                    else:
                        cur.location, cur.state, cur.registered = Location(), "deleted", False
                elif out.get("state"):
                    cur.state = out["state"]
                self._save()
        return out

    def _root_move(self, rpc: str, given: Tree) -> Tree:
        """relocate-vm / replicate-vm at a root: within one child, forwarded; between
        children, create at the destination child, then terminate at the source child."""
        key, dst = (given["tenant"], given["name"]), given["destination-vserver"]
        self._refresh_children()
        with self.lock:
            p = self._profile(*key)
            src_child = self._child_for(p)
            dst_child = given.get("destination-vcenter") or self._child_of_vserver(dst)
            if dst_child not in self.children:
                raise ApplyError(f"no child vCenter manages vServer {dst!r}",
                                 tag="invalid-value", app_tag="unknown-vserver")
        if dst_child == src_child:
            forwarded = {k: v for k, v in given.items() if k != "destination-vcenter"}
            try:
                out = self.child_links.call(src_child, MODULE, rpc, forwarded)
            except PeerError as exc:
                raise _refuse(exc) from None
            with self.lock:
                moved = key if rpc == "relocate-vm" else (key[0], out["replica-name"])
                self._root_located(moved, p, dst, dst_child, out)
            return out
        return self._root_cross(rpc, given, p, src_child, dst_child)

    def _root_located(self, key: tuple[str, str], base: Profile, vserver: str, child: str,
                      out: Tree) -> None:
        cur = self.store.profiles.get(key)
        if cur is None:
            cur = copy.deepcopy(base)
            cur.name, cur.configured = key[1], False
        dc = out.get("data-center") or \
            self.child_state.get(child, {}).get("data-centers", {}).get(vserver)
        cur.location = Location(vserver, out.get("nve"), child, dc)
        cur.state, cur.registered, cur.last_change = out.get("state"), True, time.time()
        self.store.put(cur)
        self._save()

    def _root_cross(self, rpc: str, given: Tree, p: Profile, src_child: str,
                    dst_child: str) -> Tree:
        t0 = time.monotonic()
        dst = given["destination-vserver"]
        src_vs = p.location.vserver or ""     # read now: recording the move updates `p`
        name = (given.get("replica-name") or p.name) if rpc == "replicate-vm" else p.name
        create: Tree = {"tenant": p.tenant, "name": name, "vserver": dst,
                        **{k: v for k, v in self._vserver_profile(p).items()
                           if k in ("vnid", "vlan", "vm-group", "resources", "mac-address",
                                    "ip-address")}}
        if rpc == "replicate-vm" and given.get("replica-mac-address"):
            create["mac-address"] = given["replica-mac-address"]
            create["ip-address"] = list(given.get("replica-ip-address") or [])
            if not create["ip-address"]:
                del create["ip-address"]
        try:
            out = self.child_links.call(dst_child, MODULE, "create-vm", create)
        except PeerError as exc:
            raise _refuse(exc) from None
        with self.lock:
            self._root_located((p.tenant, name), p, dst, dst_child, out)
        terminate = rpc == "relocate-vm" or _true(given.get("terminate-source"))
        source_state = p.state
        if terminate:
            try:
                source_state = self.child_links.call(
                    src_child, MODULE, "terminate-vm",
                    {"tenant": p.tenant, "name": p.name,
                     "delete-profile": True}).get("state", "deleted")
            except PeerError as exc:
                log.error("vcenter: %s of %s/%s: the source side at %s failed: %s", rpc,
                          p.tenant, p.name, src_child, exc)
            if name != p.name:
                with self.lock:
                    if not p.configured:
                        self.store.remove(p.key)
                    self._save()
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
