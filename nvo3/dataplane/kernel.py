"""The kernel behind one small interface: ``dump()`` and ``apply(batch)``.

Order of one apply (written down, undone in reverse on any failure):

1. deletions: policies, then remote MACs + flood entries (one bulk netlink
   step), then ports, then networks;
2. updates: networks (bridge, VXLAN device, enslave, neigh_suppress), ports,
   then flood entries + remote MACs (one bulk step: flood ``00:..:00 dst VTEP``
   with NLM_F_APPEND, unicast ``MAC dst VTEP self permanent`` and the bridge
   entry ``MAC master static`` with NLM_F_REPLACE, permanent neighbour entries
   on the bridge for ARP/ND suppression), then policies.

If any step fails, every step already done in this apply is undone in reverse
and :class:`ApplyError` is raised naming the object and the kernel's reason.
ENOENT/ENODEV on delete is success.  Only owned objects are touched: devices
``vx-*``/``br-*`` with ifalias ``nvo3``, ports carrying nvo3's alias, FDB
entries on nvo3's VXLAN devices (self+permanent, master+static), permanent
neighbours on nvo3's bridges, and nvo3's own nftables table.
"""

from __future__ import annotations

import errno
import logging
import socket
from typing import Callable, Protocol

from pyroute2 import IPRoute
from pyroute2.netlink.exceptions import NetlinkError

from nvo3.dataplane import links, nlbulk
from nvo3.dataplane.model import (KIND_OF, ZERO_MAC, DesiredState, FloodEntry, KernelObject,
                                  Network, Policy, Port, RemoteMac, vni_of)
from nvo3.dataplane.nlbulk import AF_BRIDGE, NTF_MASTER, NTF_SELF, NUD_NOARP, NUD_PERMANENT
from nvo3.dataplane.policy import NftPolicy
from nvo3.dataplane.tracker import Batch, Update

log = logging.getLogger(__name__)
OK_ON_DELETE = {errno.ENOENT, errno.ENODEV, errno.ESRCH}


class KernelError(Exception):
    """Root of the dataplane's errors."""


class ApplyError(KernelError):
    """An apply failed and was reverted; ``obj`` failed with ``errno``/``reason``."""

    def __init__(self, obj: object, err: int, reason: str) -> None:
        super().__init__(f"{obj!r}: {reason} [apply reverted]")
        self.obj, self.errno, self.reason = obj, err, reason


class Kernel(Protocol):
    """What the NVE agent needs from a data plane."""

    def dump(self) -> DesiredState:
        """The actual state, in the model's types (owned objects only)."""

    def apply(self, batch: Batch) -> None:
        """Apply all of ``batch`` or nothing (raises :class:`ApplyError`)."""


Msg = nlbulk.NeighMsg
Op = tuple[KernelObject, Msg, Msg | None]  # object, message, its undo (None = nothing)


class PyrouteKernel:
    """:class:`Kernel` on Linux: pyroute2 for links, pre-encoded netlink for FDB/neighbours."""

    def __init__(self, netns: str | None = None) -> None:
        self.netns = netns
        self.ipr = IPRoute(netns=netns) if netns else IPRoute()
        self.sock = nlbulk.open_socket(netns)
        self.policy = NftPolicy(netns)
        self._idx: dict[str, int] = {}

    def close(self) -> None:
        """Release the netlink sockets."""
        self.ipr.close()
        self.sock.close()

    def __enter__(self) -> "PyrouteKernel":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- dump ------------------------------------------------------------------
    def links(self) -> list[nlbulk.LinkEntry]:
        """Index, name, master, flags and alias of every link (a raw dump, ~0.1 ms)."""
        return nlbulk.dump_links(self.sock)

    def _index(self) -> dict[str, int]:
        return {lk.name: lk.index for lk in self.links()}

    def dump(self) -> DesiredState:
        """Read networks, ports, FDB, neighbours and policies back from the kernel."""
        all_links = {links.attr(lk, "IFLA_IFNAME"): lk for lk in self.ipr.get_links()}
        networks, vx_vni, br_vni = [], {}, {}
        for name, lk in all_links.items():
            vni = vni_of(name)
            if vni is None or not name.startswith("vx-") or not links.owned(lk):
                continue
            net = links.network_from(self.ipr, lk, all_links.get(f"br-{vni}"))
            if net is not None and net.vni == vni:
                networks.append(net)
                vx_vni[lk["index"]] = vni
                br_vni[all_links[net.bridge]["index"]] = vni
        ports = [p for lk in all_links.values() if links.attr(lk, "IFLA_MASTER") in br_vni
                 for p in [links.port_from(lk, br_vni[links.attr(lk, "IFLA_MASTER")])] if p]
        ips: dict[tuple[int, str], list[str]] = {}
        for fam in (socket.AF_INET, socket.AF_INET6):
            for e in nlbulk.dump(self.sock, fam):
                if e.ifindex in br_vni and e.state & NUD_PERMANENT and e.mac and e.dst:
                    ips.setdefault((br_vni[e.ifindex], nlbulk.mac_text(e.mac)), []).append(
                        nlbulk.ip_text(e.dst))
        floods, selfs, masters = [], {}, set()
        for e in nlbulk.dump(self.sock, AF_BRIDGE):
            if e.ifindex not in vx_vni or not e.mac:
                continue
            vni, mac = vx_vni[e.ifindex], nlbulk.mac_text(e.mac)
            if e.flags & NTF_SELF and e.dst and e.state & NUD_PERMANENT:
                if mac == ZERO_MAC:
                    floods.append(FloodEntry(vni, nlbulk.ip_text(e.dst)))
                else:
                    selfs[(vni, mac)] = nlbulk.ip_text(e.dst)
            elif not e.flags & NTF_SELF and e.state == NUD_NOARP:  # bridge entry
                masters.add((vni, mac))
        remote = [RemoteMac(vni, mac, vtep, tuple(ips.get((vni, mac), ())))
                  for (vni, mac), vtep in selfs.items() if (vni, mac) in masters]
        return DesiredState(networks=tuple(networks), ports=tuple(ports), floods=tuple(floods),
                            remote_macs=tuple(remote),
                            policies=tuple(self.policy.dump({p.name for p in ports})))

    # -- apply -----------------------------------------------------------------
    def apply(self, batch: Batch) -> None:
        """Apply ``batch`` in the documented order; all or nothing."""
        undo: list[Callable[[], None]] = []
        kind = lambda o: KIND_OF[type(o)]  # noqa: E731
        try:
            dels = list(batch.deletes)
            self._idx = self._index()
            for obj in (o for o in dels if kind(o) == "policy"):
                self._step(undo, obj, lambda o=obj: self.policy.remove(o))
            self._bulk(undo, [op for o in dels if kind(o) in ("remote_mac", "flood")
                              for op in self._ops(o, delete=True)])
            for obj in (o for o in dels if kind(o) == "port"):
                self._step(undo, obj, lambda o=obj: self._detach(o))
            for obj in (o for o in dels if kind(o) == "network"):
                self._step(undo, obj, lambda o=obj: self._drop_network(o))
            ups = list(batch.updates)
            if any(kind(o) in ("port", "network") for o in dels):
                self._idx = self._index()
            links_changed = False
            for u in (u for u in ups if kind(u.new) == "network"):
                self._step(undo, u.new, lambda o=u.new: self._network(o))
                links_changed = True
            for u in (u for u in ups if kind(u.new) == "port"):
                self._step(undo, u.new, lambda u=u: self._port(u))
            if links_changed:
                self._idx = self._index()
            self._bulk(undo, [op for u in ups if kind(u.new) in ("remote_mac", "flood")
                              for op in self._update_ops(u)])
            for u in (u for u in ups if kind(u.new) == "policy"):
                self._step(undo, u.new, lambda u=u: self.policy.put(u.new, u.old))
        except ApplyError as exc:
            self._revert(undo)
            log.warning("apply of %d changes failed and was reverted: %s", len(batch), exc)
            raise

    def _revert(self, undo: list[Callable[[], None]]) -> None:
        for fn in reversed(undo):
            try:
                fn()
            except Exception:  # keep undoing the rest
                log.exception("undo step failed")

    def _step(self, undo: list[Callable[[], None]], obj: object,
              fn: Callable[[], Callable[[], None]]) -> None:
        try:
            undo.append(fn())
        except NetlinkError as exc:
            raise ApplyError(obj, exc.code, _reason(exc)) from exc
        except OSError as exc:
            raise ApplyError(obj, exc.errno or 0, str(exc)) from exc

    def _network(self, net: Network) -> Callable[[], None]:
        fn, reason = links.ensure_network(self.ipr, net)
        if reason:
            log.warning("%s", reason)
        return fn

    def _drop_network(self, net: Network) -> Callable[[], None]:
        links.delete_link(self.ipr, net.vxlan)
        links.delete_link(self.ipr, net.bridge)
        return lambda: (links.ensure_network(self.ipr, net), None)[1]

    def _port(self, u: Update) -> Callable[[], None]:
        fn = links.attach_port(self.ipr, u.new)  # type: ignore[arg-type]
        try:
            spoof = self.policy.put_port(u.new)  # type: ignore[arg-type]
        except BaseException:
            fn()
            raise
        return lambda: (spoof(), fn())[1]

    def _detach(self, port: Port) -> Callable[[], None]:
        spoof = self.policy.remove_port(port)
        fn = links.detach_port(self.ipr, port)
        return lambda: (fn(), spoof())[1]

    # -- FDB / neighbour messages ----------------------------------------------
    def _msgs(self, obj: KernelObject, op: tuple[int, int]) -> list[Msg]:
        idx = self._idx
        vni = obj.vni  # type: ignore[union-attr]
        vx, br = idx.get(f"vx-{vni}"), idx.get(f"br-{vni}")
        if vx is None or br is None:
            raise ApplyError(obj, errno.ENODEV, f"network {vni} has no devices: "
                             + nlbulk.errno_text(errno.ENODEV))
        if isinstance(obj, FloodEntry):
            flood_op = nlbulk.OP_APPEND if op != nlbulk.OP_DEL else op
            return [Msg(flood_op, AF_BRIDGE, vx, NUD_PERMANENT, NTF_SELF,
                        bytes(6), nlbulk.ip_bytes(obj.remote_vtep)[1])]
        assert isinstance(obj, RemoteMac)
        mac = nlbulk.mac_bytes(obj.mac)
        out = [Msg(op, AF_BRIDGE, vx, NUD_PERMANENT, NTF_SELF, mac,
                   nlbulk.ip_bytes(obj.remote_vtep)[1]),
               Msg(op, AF_BRIDGE, vx, NUD_NOARP, NTF_MASTER, mac, None)]
        for ip in obj.ips:
            fam, raw = nlbulk.ip_bytes(ip)
            out.append(Msg(op, fam, br, NUD_PERMANENT, 0, mac, raw))
        return out

    def _ops(self, obj: KernelObject, delete: bool) -> list[Op]:
        fwd, back = (nlbulk.OP_DEL, nlbulk.OP_ADD) if delete else (nlbulk.OP_ADD, nlbulk.OP_DEL)
        if isinstance(obj, FloodEntry) and back != nlbulk.OP_DEL:
            back = nlbulk.OP_APPEND        # what _msgs would build for a flood entry
        return [(obj, m, _as(m, back)) for m in self._msgs(obj, fwd)]

    def _update_ops(self, u: Update) -> list[Op]:
        if u.old is None:
            return self._ops(u.new, delete=False)
        old_by_key = {(m.family, m.flags, m.dst if m.family != AF_BRIDGE else None): m
                      for m in self._msgs(u.old, nlbulk.OP_ADD)}
        ops: list[Op] = []
        for m in self._msgs(u.new, nlbulk.OP_ADD):
            prev = old_by_key.pop((m.family, m.flags, m.dst if m.family != AF_BRIDGE else None),
                                  None)
            ops.append((u.new, m, prev if prev else _as(m, nlbulk.OP_DEL)))
        ops += [(u.new, _as(m, nlbulk.OP_DEL), m) for m in old_by_key.values()]
        return ops

    def _bulk(self, undo: list[Callable[[], None]], ops: list[Op]) -> None:
        if not ops:
            return
        failures = nlbulk.send_batch(self.sock, [m for _o, m, _u in ops])
        failures = {i: e for i, e in failures.items()
                    if not (ops[i][1].op == nlbulk.OP_DEL and e in OK_ON_DELETE)
                    and not (ops[i][1].op == nlbulk.OP_APPEND and e == errno.EEXIST)}
        done = [u for i, (_o, _m, u) in enumerate(ops) if i not in failures and u is not None]
        revert = lambda: self._send_undo(list(reversed(done)))  # noqa: E731
        if failures:
            revert()
            i, err = min(failures.items())
            raise ApplyError(ops[i][0], err, f"{nlbulk.errno_text(err)}"
                             + (f" (+{len(failures) - 1} more)" if len(failures) > 1 else ""))
        undo.append(revert)

    def _send_undo(self, msgs: list[Msg]) -> None:
        bad = nlbulk.send_batch(self.sock, msgs)
        bad = {i: e for i, e in bad.items() if e not in OK_ON_DELETE}
        if bad:
            log.error("%d undo messages failed, first: %s", len(bad),
                      nlbulk.errno_text(next(iter(bad.values()))))


def _as(m: Msg, op: tuple[int, int]) -> Msg:
    return Msg(op, m.family, m.ifindex, m.state, m.flags, m.mac, m.dst)


def _reason(exc: NetlinkError) -> str:
    text = str(exc.args[1]) if len(exc.args) > 1 else ""
    return f"{nlbulk.errno_text(exc.code)}{': ' + text if text else ''}"

