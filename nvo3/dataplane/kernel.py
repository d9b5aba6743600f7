"""The kernel behind one small interface: ``dump()`` and ``apply(batch)``.

Order of one apply (written down, undone in reverse on any failure):

1. deletions: remote MACs + flood entries (one bulk netlink step), then ports (released from
   their bridge: one bulk netlink step), then networks;
2. networks (bridge, VXLAN device, enslave, neigh_suppress);
3. nftables: every anti-spoofing and policy change of the batch (ports going away, new and
   changed ports, policies removed, added, changed) as ONE nft script (one transaction, see
   :mod:`nvo3.dataplane.policy`): after the ports are released (no window without
   anti-spoofing on a port that still forwards), before new ports are enslaved (their
   anti-spoofing and ACL are in force before their first frame), and after the networks: the
   table must not be created before the namespace's first bridge (measured on this kernel:
   created before it, the table's ``forward`` hook chain never sees a frame, ``prerouting``
   does);
4. ports (enslaved, alias, up: one bulk netlink step, one RTM_NEWLINK per port), then flood
   entries + remote MACs (one bulk step: flood ``00:..:00 dst VTEP`` with NLM_F_APPEND, unicast
   ``MAC dst VTEP self permanent`` and the bridge entry ``MAC master static`` with
   NLM_F_REPLACE, permanent neighbour entries on the bridge for ARP/ND suppression).

If any step fails, every step already done in this apply is undone in reverse
and :class:`ApplyError` is raised naming the object and the kernel's reason.
ENOENT/ENODEV on delete is success.  Only owned objects are touched: devices
``vx-*``/``br-*`` with ifalias ``nvo3``, ports carrying nvo3's alias, FDB
entries on nvo3's VXLAN devices (self+permanent, master+static), permanent
neighbours on nvo3's bridges, and nvo3's own nftables table.
"""

from __future__ import annotations

import dataclasses
import errno
import logging
import socket
from collections.abc import Callable
from socket import AF_INET, AF_INET6, inet_pton
from typing import Protocol

from pyroute2 import IPRoute
from pyroute2.netlink.exceptions import NetlinkError

from nvo3.dataplane import links, nlbulk
from nvo3.dataplane.model import (
    KIND_OF,
    OWNER_ALIAS,
    ZERO_MAC,
    DesiredState,
    FloodEntry,
    KernelObject,
    Network,
    Policy,
    Port,
    RemoteMac,
    vni_of,
)
from nvo3.dataplane.nlbulk import AF_BRIDGE, NTF_MASTER, NTF_SELF, NUD_NOARP, NUD_PERMANENT, LinkSet
from nvo3.dataplane.policy import NftError, NftPolicy
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


class PyrouteKernel:
    """:class:`Kernel` on Linux: pyroute2 for links, pre-encoded netlink for FDB/neighbours."""

    def __init__(self, netns: str | None = None) -> None:
        self.netns = netns
        self.ipr = IPRoute(netns=netns) if netns else IPRoute()
        self.sock = nlbulk.open_socket(netns)
        self.policy = NftPolicy(netns)
        self._idx: dict[str, int] = {}
        self._links: dict[str, nlbulk.LinkEntry] = {}
        self._devs: dict[int, tuple[int, int]] = {}    # vni -> (vx, br) ifindex, per _idx
        self.echoes: set[bytes] | None = None   # a Monitor's: echo keys of what we send

    def close(self) -> None:
        """Release the netlink sockets."""
        self.ipr.close()
        self.sock.close()
        self.policy.close()

    def __enter__(self) -> PyrouteKernel:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- dump ------------------------------------------------------------------
    def links(self) -> list[nlbulk.LinkEntry]:
        """Index, name, master, flags and alias of every link (a raw dump, ~0.1 ms)."""
        return nlbulk.dump_links(self.sock)

    def _index(self, dumped: list[nlbulk.LinkEntry] | None = None) -> dict[str, int]:
        self._links = {lk.name: lk for lk in (self.links() if dumped is None else dumped)}
        return {name: lk.index for name, lk in self._links.items()}

    def dump(self) -> DesiredState:
        """Read networks, ports, FDB, neighbours and policies back from the kernel."""
        # the raw dump for every link (name, master, alias); pyroute2's full decoding only for
        # nvo3's VXLAN devices: it costs ~1 ms a link, seconds with thousands of VM ports
        all_links = {lk.name: lk for lk in self.links()}
        networks, vx_vni, br_vni = [], {}, {}
        for name, lk in all_links.items():
            vni = vni_of(name)
            if vni is None or not name.startswith("vx-") or not lk.alias.startswith(OWNER_ALIAS):
                continue
            try:
                full = self.ipr.link("get", index=lk.index)[0]
            except NetlinkError as exc:      # deleted since the dump
                if exc.code == errno.ENODEV:
                    continue
                raise
            net = links.network_from(full, all_links.get(f"br-{vni}"))
            if net is not None and net.vni == vni:
                networks.append(net)
                vx_vni[lk.index] = vni
                br_vni[all_links[net.bridge].index] = vni
        policies = self.policy.dump()       # reads nvo3's nftables table (the one listing)
        macs = self.policy.port_macs()
        # a port counts as attached only with its anti-spoofing in place (else it is re-done)
        ports = [p for lk in all_links.values() if lk.master in br_vni
                 for p in [links.port_from(lk, br_vni[lk.master])]
                 if p and macs.get(p.name) == p.mac.lower()]
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
                            policies=tuple(p for p in policies
                                           if p.port in {q.name for q in ports}))

    # -- apply -----------------------------------------------------------------
    def apply(self, batch: Batch, dumped: list[nlbulk.LinkEntry] | None = None) -> None:
        """Apply ``batch`` in the documented order; all or nothing.  ``dumped``: a link dump
        the caller took just before (same lock), saving one (~25 us a link)."""
        undo: list[Callable[[], None]] = []
        dels: dict[str, list[KernelObject]] = {k: [] for k in KIND_OF.values()}
        for o in batch.deletes:                 # one pass per batch, not one per kind
            dels[KIND_OF[type(o)]].append(o)
        ups: dict[str, list[Update]] = {k: [] for k in KIND_OF.values()}
        for u in batch.updates:
            ups[KIND_OF[type(u.new)]].append(u)
        if self.echoes is not None:
            self.echoes.clear()     # left over from an earlier apply: decoded as usual then
        try:
            self._idx, self._devs = self._index(dumped), {}
            ops = _Ops()
            for o in (*dels["remote_mac"], *dels["flood"]):
                self._ops(ops, o, delete=True)
            self._bulk(undo, ops)
            self._detach(undo, dels["port"])  # type: ignore[arg-type]
            for obj in dels["network"]:
                self._step(undo, obj, lambda o=obj: self._drop_network(o))
            if dels["network"]:
                self._idx, self._devs = self._index(), {}
            elif dels["port"]:       # released, same ifindex: no new dump needed
                for port in dels["port"]:
                    lk = self._links.get(port.name)  # type: ignore[attr-defined]
                    if lk is not None and lk.alias.startswith(links.PORT_ALIAS):
                        self._links[lk.name] = dataclasses.replace(lk, master=0, alias="")
            for u in ups["port"]:             # before anything is done: the port must exist
                if u.new.name not in self._idx:  # type: ignore[attr-defined]
                    raise ApplyError(u.new, errno.ENODEV, f"{nlbulk.errno_text(errno.ENODEV)}: "
                                     f"port {u.new.name} does not exist")  # type: ignore
            for u in ups["network"]:
                self._step(undo, u.new, lambda o=u.new: self._network(o))
            if ups["network"]:
                self._idx, self._devs = self._index(), {}
            self._nft(undo, dels["port"], ups["port"], dels["policy"], ups["policy"])
            self._attach(undo, [u.new for u in ups["port"]])  # type: ignore[misc]
            ops = _Ops()
            for u in (*ups["flood"], *ups["remote_mac"]):
                self._update_ops(ops, u)
            self._bulk(undo, ops)
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

    def _nft(self, undo: list[Callable[[], None]], gone: list[KernelObject],
             ports: list[Update], pol_gone: list[KernelObject], pols: list[Update]) -> None:
        """Every anti-spoofing and policy change of the apply: one nft script."""
        spoof: dict[str, tuple[str | None, object]] = {}
        for p in gone:
            spoof[p.name] = (None, p)  # type: ignore[attr-defined]
        for u in ports:
            spoof[u.new.name] = (u.new.mac, u.new)  # type: ignore[attr-defined]
        policies: dict[str, tuple[Policy | None, object]] = {}
        for p in pol_gone:
            policies[p.port] = (None, p)  # type: ignore[attr-defined]
        for u in pols:
            policies[u.new.port] = (u.new, u.new)  # type: ignore[attr-defined]
        if not spoof and not policies:
            return
        try:
            undo.append(self.policy.apply(spoof, policies))
        except NftError as exc:
            obj = exc.obj if exc.obj is not None else next(iter((*spoof.values(),
                                                               *policies.values())))[1]
            raise ApplyError(obj, exc.errno or 0, str(exc)) from exc

    def _attach(self, undo: list[Callable[[], None]], ports: list[Port]) -> None:
        """Enslave ports to their bridges, set their alias and up: one bulk netlink step
        (a port with a VLAN: pyroute2, one port at a time)."""
        msgs, back, objs = [], [], []
        for port in ports:
            if port.vlan is not None:
                self._step(undo, port, lambda p=port: links.attach_port(self.ipr, p))
                continue
            lk, br = self._links.get(port.name), self._links.get(f"br-{port.vni}")
            if lk is None:
                raise ApplyError(port, errno.ENODEV, f"{nlbulk.errno_text(errno.ENODEV)}: "
                                 f"port {port.name} does not exist")
            if br is None or not br.alias.startswith(links.OWNER_ALIAS):
                raise ApplyError(port, errno.ENODEV, f"{nlbulk.errno_text(errno.ENODEV)}: "
                                 f"bridge br-{port.vni} does not exist")
            msgs.append(LinkSet(lk.index, br.index, links.port_alias(port), True))
            back.append(LinkSet(lk.index, lk.master, lk.alias,
                                None if lk.flags & 1 else False))
            objs.append(port)
        self._links_step(undo, msgs, back, objs)

    def _detach(self, undo: list[Callable[[], None]], ports: list[Port]) -> None:
        """Release ports nvo3 attached (absent is success): one bulk netlink step."""
        msgs, back, objs = [], [], []
        for port in ports:
            lk = self._links.get(port.name)
            if lk is None or not lk.alias.startswith(links.PORT_ALIAS):
                continue
            msgs.append(LinkSet(lk.index, 0, ""))
            back.append(LinkSet(lk.index, lk.master, lk.alias))
            objs.append(port)
        self._links_step(undo, msgs, back, objs, ok=OK_ON_DELETE)

    def _links_step(self, undo: list[Callable[[], None]], msgs: list[LinkSet],
                    back: list[LinkSet], objs: list[Port], ok: set[int] | None = None) -> None:
        if not msgs:
            return
        failures = nlbulk.send_link_sets(self.sock, msgs)
        failures = {i: e for i, e in failures.items() if e not in (ok or ())}

        def revert(skip: dict[int, int] = failures) -> None:
            bad = nlbulk.send_link_sets(self.sock, [back[i] for i in range(len(back) - 1, -1, -1)
                                                    if i not in skip])
            bad = {i: e for i, e in bad.items() if e not in OK_ON_DELETE}
            if bad:
                log.error("%d link undo messages failed, first: %s", len(bad),
                          nlbulk.errno_text(next(iter(bad.values()))))
        if failures:
            revert()
            i, err = min(failures.items())
            hint = " (a Linux bridge has at most 1,024 ports)" if err == errno.EXFULL else ""
            raise ApplyError(objs[i], err, f"{nlbulk.errno_text(err)}{hint}"
                             + (f" (+{len(failures) - 1} more)" if len(failures) > 1 else ""))
        undo.append(revert)

    # -- FDB / neighbour messages ----------------------------------------------
    def _devices(self, obj: KernelObject) -> tuple[int, int]:
        """(VXLAN ifindex, bridge ifindex) of ``obj``'s network (cached per apply)."""
        vni = obj.vni  # type: ignore[union-attr]
        devs = self._devs.get(vni)
        if devs is None:
            vx, br = self._idx.get(f"vx-{vni}"), self._idx.get(f"br-{vni}")
            if vx is None or br is None:
                raise ApplyError(obj, errno.ENODEV, f"network {vni} has no devices: "
                                 + nlbulk.errno_text(errno.ENODEV))
            devs = self._devs[vni] = (vx, br)
        return devs

    def _msgs(self, obj: KernelObject, op: tuple[int, int]) -> list[Msg]:
        vx, br = self._devices(obj)
        if type(obj) is FloodEntry:
            flood_op = nlbulk.OP_APPEND if op != nlbulk.OP_DEL else op
            return [Msg(flood_op, AF_BRIDGE, vx, NUD_PERMANENT, NTF_SELF,
                        bytes(6), nlbulk.ip_bytes(obj.remote_vtep)[1])]
        assert isinstance(obj, RemoteMac)
        mac = bytes.fromhex(obj.mac.replace(":", ""))
        vtep = obj.remote_vtep
        out = [Msg(op, AF_BRIDGE, vx, NUD_PERMANENT, NTF_SELF, mac,
                   inet_pton(AF_INET6 if ":" in vtep else AF_INET, vtep)),
               Msg(op, AF_BRIDGE, vx, NUD_NOARP, NTF_MASTER, mac, None)]
        for ip in obj.ips:
            fam, raw = nlbulk.ip_bytes(ip)
            out.append(Msg(op, fam, br, NUD_PERMANENT, 0, mac, raw))
        return out

    def _ops(self, ops: _Ops, obj: KernelObject, delete: bool) -> None:
        fwd, back = (nlbulk.OP_DEL, nlbulk.OP_ADD) if delete else (nlbulk.OP_ADD, nlbulk.OP_DEL)
        if type(obj) is FloodEntry and back != nlbulk.OP_DEL:
            back = nlbulk.OP_APPEND        # what _msgs would build for a flood entry
        msgs = self._msgs(obj, fwd)
        ops.msgs += msgs
        ops.objs += [obj] * len(msgs)
        ops.undos += [back] * len(msgs)

    def _update_ops(self, ops: _Ops, u: Update) -> None:
        if u.old is None:
            return self._ops(ops, u.new, delete=False)
        old_by_key = {(m.family, m.flags, m.dst if m.family != AF_BRIDGE else None): m
                      for m in self._msgs(u.old, nlbulk.OP_ADD)}
        for m in self._msgs(u.new, nlbulk.OP_ADD):
            prev = old_by_key.pop((m.family, m.flags, m.dst if m.family != AF_BRIDGE else None),
                                  None)
            ops.add(u.new, m, prev if prev else nlbulk.OP_DEL)
        for m in old_by_key.values():
            ops.add(u.new, _as(m, nlbulk.OP_DEL), m)
        return None

    def _bulk(self, undo: list[Callable[[], None]], ops: _Ops) -> None:
        if not ops.msgs:
            return
        msgs = ops.msgs
        failures = nlbulk.send_batch(self.sock, msgs, echoes=self.echoes)
        failures = {i: e for i, e in failures.items()
                    if not (msgs[i].op == nlbulk.OP_DEL and e in OK_ON_DELETE)
                    and not (msgs[i].op == nlbulk.OP_APPEND and e == errno.EEXIST)}
        revert = lambda: self._send_undo(ops.undo_of_done(failures))  # noqa: E731
        if failures:
            revert()
            i, err = min(failures.items())
            raise ApplyError(ops.objs[i], err, f"{nlbulk.errno_text(err)}"
                             + (f" (+{len(failures) - 1} more)" if len(failures) > 1 else ""))
        undo.append(revert)

    def _send_undo(self, msgs: list[Msg]) -> None:
        bad = nlbulk.send_batch(self.sock, msgs)
        bad = {i: e for i, e in bad.items() if e not in OK_ON_DELETE}
        if bad:
            log.error("%d undo messages failed, first: %s", len(bad),
                      nlbulk.errno_text(next(iter(bad.values()))))


class _Ops:
    """One bulk step as parallel lists: per message its object and its undo (a message, an
    operation meaning "this message with that operation", or None = nothing to undo).

    Why lists and a lazy undo: a 10k-entry push has 20k messages, and building an undo
    message and a tuple for each, only to drop them when the apply succeeds, cost ~30 ms.
    """

    __slots__ = ("msgs", "objs", "undos")

    def __init__(self) -> None:
        self.objs: list[KernelObject] = []
        self.msgs: list[Msg] = []
        self.undos: list[Msg | tuple[int, int] | None] = []

    def add(self, obj: KernelObject, msg: Msg, undo: Msg | tuple[int, int] | None) -> None:
        """Append one message."""
        self.objs.append(obj)
        self.msgs.append(msg)
        self.undos.append(undo)

    def undo_of_done(self, failures: dict[int, int]) -> list[Msg]:
        """Undo messages of every message that did not fail, last first."""
        out = []
        for i in range(len(self.msgs) - 1, -1, -1):
            u = self.undos[i]
            if i in failures or u is None:
                continue
            out.append(u if type(u) is Msg else Msg(u, *self.msgs[i][1:]))  # type: ignore
        return out


def _as(m: Msg, op: tuple[int, int]) -> Msg:
    return Msg(op, *m[1:])


def _reason(exc: NetlinkError) -> str:
    text = str(exc.args[1]) if len(exc.args) > 1 else ""
    return f"{nlbulk.errno_text(exc.code)}{': ' + text if text else ''}"

