"""The :class:`~nvo3.dataplane.kernel.Kernel` on Linux: pyroute2 for devices, pre-encoded
netlink (:mod:`nvo3.dataplane.nlbulk`) for FDB, neighbours and port attachment, nftables
(:mod:`nvo3.dataplane.policy`) for anti-spoofing and policies.

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
and :class:`~nvo3.dataplane.kernel.KernelApplyError` is raised naming the object and the
kernel's reason.  ENOENT/ENODEV on delete is success.  Only owned objects are touched: devices
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
from functools import partial
from socket import AF_INET, AF_INET6, inet_pton

from pyroute2 import IPRoute
from pyroute2.netlink.exceptions import NetlinkError

from nvo3.dataplane import links, nlbulk, vlan_support
from nvo3.dataplane.kernel import KernelApplyError, LinkCounters
from nvo3.dataplane.links import RouteSocket
from nvo3.dataplane.model import (
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
from nvo3.dataplane.nlbulk import (
    AF_BRIDGE,
    NTF_MASTER,
    NTF_SELF,
    NUD_NOARP,
    NUD_PERMANENT,
    LinkEntry,
    LinkSet,
)
from nvo3.dataplane.policy import NftError, NftPolicy, PolicyChanges, SpoofChanges
from nvo3.dataplane.tracker import Batch, Update
from nvo3.dataplane.vlan_support import VlanSupport

log = logging.getLogger(__name__)
OK_ON_DELETE = {errno.ENOENT, errno.ENODEV, errno.ESRCH}
Undo = Callable[[], None]
Msg = nlbulk.NeighMsg


class PyrouteKernel:
    """:class:`~nvo3.dataplane.kernel.Kernel` on Linux, in network namespace ``netns``
    (None: the caller's)."""

    def __init__(self, netns: str | None = None) -> None:
        self.netns = netns
        self.ipr: RouteSocket = IPRoute(netns=netns) if netns else IPRoute()
        self.sock = nlbulk.open_socket(netns)
        self.policy = NftPolicy(netns)
        self._idx: dict[str, int] = {}
        self._links: dict[str, LinkEntry] = {}
        self._devs: dict[int, tuple[int, int]] = {}    # vni -> (vx, br) ifindex, per _idx
        self._echoes: set[bytes] | None = None   # a monitor's: echo keys of what we send

    def close(self) -> None:
        """Release the netlink sockets and the nft worker."""
        self.ipr.close()
        self.sock.close()
        self.policy.close()

    def __enter__(self) -> PyrouteKernel:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def suppress_echoes(self, keys: set[bytes]) -> None:
        """Add the echo key of every FDB change sent from now on to ``keys``."""
        self._echoes = keys

    # -- dump ------------------------------------------------------------------
    def dump_links(self) -> list[LinkEntry]:
        """Index, name, master, flags and alias of every link (a raw dump, ~0.1 ms)."""
        return nlbulk.dump_links(self.sock)

    def link_counters(self) -> dict[str, LinkCounters]:
        """Counters of every link (pyroute2's full decoding: for <get>, not the hot path)."""
        out = {}
        for lk in self.ipr.get_links():
            stats = lk.get_attr("IFLA_STATS64") or lk.get_attr("IFLA_STATS")
            if stats:
                out[lk.get_attr("IFLA_IFNAME")] = LinkCounters(
                    stats["rx_packets"], stats["rx_bytes"], stats["rx_dropped"],
                    stats["tx_packets"], stats["tx_bytes"], stats["tx_dropped"])
        return out

    def _index(self, dumped: list[LinkEntry] | None = None) -> dict[str, int]:
        self._links = {lk.name: lk for lk in (self.dump_links() if dumped is None else dumped)}
        return {name: lk.index for name, lk in self._links.items()}

    def _lookup(self, names: set[str]) -> dict[str, int]:
        """:meth:`_index` of only the links named ``names`` (those of them that exist)."""
        self._links = nlbulk.get_links(self.sock, sorted(names)) if names else {}
        return {name: lk.index for name, lk in self._links.items()}

    def dump(self) -> DesiredState:
        """Read networks, ports, FDB, neighbours and policies back from the kernel."""
        # the raw dump for every link (name, master, alias); pyroute2's full decoding only for
        # nvo3's VXLAN devices: it costs ~1 ms a link, seconds with thousands of VM ports
        all_links = {lk.name: lk for lk in self.dump_links()}
        networks: list[Network] = []
        vx_vni: dict[int, int] = {}
        br_vni: dict[int, int] = {}
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
        floods: list[FloodEntry] = []
        selfs: dict[tuple[int, str], str] = {}
        masters: set[tuple[int, str]] = set()
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
        names = {q.name for q in ports}
        return DesiredState(networks=tuple(networks), ports=tuple(ports), floods=tuple(floods),
                            remote_macs=tuple(remote),
                            policies=tuple(p for p in policies if p.port in names))

    # -- apply -----------------------------------------------------------------
    def apply(self, batch: Batch, link_dump: list[LinkEntry] | None = None) -> None:
        """Apply ``batch`` in the documented order; all or nothing.  ``link_dump``: a link
        dump the caller took just before (same lock), saving one (~25 us a link).  Without
        one, a batch that creates or deletes no network asks the kernel for the links it
        names only (:func:`~nvo3.dataplane.nlbulk.get_links`: a remote-MAC change on a host
        with thousands of ports reads two links, not thousands); else every link is dumped."""
        undo: list[Undo] = []
        todo = _ByKind(batch)
        if self._echoes is not None:
            self._echoes.clear()    # left over from an earlier apply: decoded as usual then
        try:
            if link_dump is not None or todo.networks or todo.gone_networks:
                self._idx = self._index(link_dump)
            else:       # no device created or deleted: the links the batch names suffice
                self._idx = self._lookup(todo.link_names())
            self._devs = {}
            ops = _Ops()
            for mac in todo.gone_macs:
                self._ops(ops, mac, delete=True)
            for flood in todo.gone_floods:
                self._ops(ops, flood, delete=True)
            self._bulk(undo, ops)
            self._detach(undo, todo.gone_ports)
            for net in todo.gone_networks:
                self._step(undo, net, partial(self._drop_network, net))
            if todo.gone_networks:
                self._idx, self._devs = self._index(), {}
            elif todo.gone_ports:       # released, same ifindex: no new dump needed
                for port in todo.gone_ports:
                    lk = self._links.get(port.name)
                    if lk is not None and lk.alias.startswith(links.PORT_ALIAS):
                        self._links[lk.name] = dataclasses.replace(lk, master=0, alias="")
            for port in todo.ports:           # before anything is added: the port must exist
                if port.name not in self._idx:
                    raise KernelApplyError(port, errno.ENODEV,
                                           f"{nlbulk.errno_text(errno.ENODEV)}: "
                                           f"port {port.name} does not exist")
            for net in todo.networks:
                self._step(undo, net, partial(self._network, net))
            if todo.networks:
                self._idx, self._devs = self._index(), {}
            self._nft(undo, todo.gone_ports, todo.ports, todo.gone_policies, todo.policies)
            self._attach(undo, todo.ports)
            ops = _Ops()
            for u in (*todo.floods, *todo.macs):
                self._update_ops(ops, u)
            self._bulk(undo, ops)
        except KernelApplyError as exc:
            self._revert(undo)
            log.warning("apply of %d changes failed and was reverted: %s", len(batch), exc)
            raise

    def _revert(self, undo: list[Undo]) -> None:
        for fn in reversed(undo):
            try:
                fn()
            except Exception:  # keep undoing the rest
                log.exception("undo step failed")

    def vlan_support(self) -> VlanSupport:
        """Whether VM ports can have VLANs in this namespace (a throwaway bridge probes it)."""
        return vlan_support.probe(self.ipr)

    def _step(self, undo: list[Undo], obj: KernelObject, fn: Callable[[], Undo]) -> None:
        try:
            undo.append(fn())
        except NetlinkError as exc:
            raise KernelApplyError(obj, exc.code, _reason(exc)) from exc
        except OSError as exc:
            raise KernelApplyError(obj, exc.errno or 0, str(exc)) from exc

    def _network(self, net: Network) -> Undo:
        fn, reason = links.ensure_network(self.ipr, net)
        if reason:
            log.warning("%s", reason)
        return fn

    def _drop_network(self, net: Network) -> Undo:
        links.delete_link(self.ipr, net.vxlan)
        links.delete_link(self.ipr, net.bridge)
        return lambda: (links.ensure_network(self.ipr, net), None)[1]

    def _nft(self, undo: list[Undo], gone: list[Port], ports: list[Port],
             pol_gone: list[Policy], pols: list[Policy]) -> None:
        """Every anti-spoofing and policy change of the apply: one nft script."""
        spoof: SpoofChanges = {}
        for p in gone:
            spoof[p.name] = (None, p)
        for p in ports:
            spoof[p.name] = (p.mac, p)
        policies: PolicyChanges = {}
        for pol in pol_gone:
            policies[pol.port] = (None, pol)
        for pol in pols:
            policies[pol.port] = (pol, pol)
        if not spoof and not policies:
            return
        try:
            undo.append(self.policy.apply(spoof, policies))
        except NftError as exc:
            obj = exc.obj if exc.obj is not None else next(iter((*spoof.values(),
                                                               *policies.values())))[1]
            raise KernelApplyError(obj, exc.errno or 0, str(exc)) from exc

    def _attach(self, undo: list[Undo], ports: list[Port]) -> None:
        """Enslave ports to their bridges, set their alias and up: one bulk netlink step
        (a port with a VLAN: pyroute2, one port at a time)."""
        msgs, back, objs = [], [], []
        for port in ports:
            if port.vlan is not None:
                self._step(undo, port, partial(links.attach_port, self.ipr, port))
                continue
            lk, br = self._links.get(port.name), self._links.get(f"br-{port.vni}")
            if lk is None:
                raise KernelApplyError(port, errno.ENODEV, f"{nlbulk.errno_text(errno.ENODEV)}: "
                                       f"port {port.name} does not exist")
            if br is None or not br.alias.startswith(links.OWNER_ALIAS):
                raise KernelApplyError(port, errno.ENODEV, f"{nlbulk.errno_text(errno.ENODEV)}: "
                                       f"bridge br-{port.vni} does not exist")
            msgs.append(LinkSet(lk.index, br.index, links.port_alias(port), True))
            back.append(LinkSet(lk.index, lk.master, lk.alias,
                                None if lk.flags & links.IFF_UP else False))
            objs.append(port)
        self._links_step(undo, msgs, back, objs)

    def _detach(self, undo: list[Undo], ports: list[Port]) -> None:
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

    def _links_step(self, undo: list[Undo], msgs: list[LinkSet], back: list[LinkSet],
                    objs: list[Port], ok: set[int] | None = None) -> None:
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
            raise KernelApplyError(objs[i], err, f"{nlbulk.errno_text(err)}{hint}"
                                   + (f" (+{len(failures) - 1} more)" if len(failures) > 1
                                      else ""))
        undo.append(revert)

    # -- FDB / neighbour messages ----------------------------------------------
    def _devices(self, vni: int, obj: KernelObject) -> tuple[int, int]:
        """(VXLAN ifindex, bridge ifindex) of network ``vni`` (cached per apply); ``obj``:
        what needs them (named when they are missing)."""
        devs = self._devs.get(vni)
        if devs is None:
            vx, br = self._idx.get(f"vx-{vni}"), self._idx.get(f"br-{vni}")
            if vx is None or br is None:
                raise KernelApplyError(obj, errno.ENODEV, f"network {vni} has no devices: "
                                       + nlbulk.errno_text(errno.ENODEV))
            devs = self._devs[vni] = (vx, br)
        return devs

    def _msgs(self, obj: KernelObject, op: tuple[int, int]) -> list[Msg]:
        if type(obj) is RemoteMac:          # the bulk case first: 10k of them per push
            vni = obj.vni
            vx, br = self._devs.get(vni) or self._devices(vni, obj)
            mac = bytes.fromhex(obj.mac.replace(":", ""))
            vtep = obj.remote_vtep
            out = [Msg(op, AF_BRIDGE, vx, NUD_PERMANENT, NTF_SELF, mac,
                       inet_pton(AF_INET6 if ":" in vtep else AF_INET, vtep)),
                   Msg(op, AF_BRIDGE, vx, NUD_NOARP, NTF_MASTER, mac, None)]
            for ip in obj.ips:
                fam, raw = nlbulk.ip_bytes(ip)
                out.append(Msg(op, fam, br, NUD_PERMANENT, 0, mac, raw))
            return out
        if type(obj) is FloodEntry:
            vx, _br = self._devices(obj.vni, obj)
            flood_op = nlbulk.OP_APPEND if op != nlbulk.OP_DEL else op
            return [Msg(flood_op, AF_BRIDGE, vx, NUD_PERMANENT, NTF_SELF,
                        bytes(6), nlbulk.ip_bytes(obj.remote_vtep)[1])]
        raise TypeError(f"no FDB messages for {obj!r}")

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
            ops.add(u.new, m._replace(op=nlbulk.OP_DEL), m)
        return None

    def _bulk(self, undo: list[Undo], ops: _Ops) -> None:
        if not ops.msgs:
            return
        msgs = ops.msgs
        failures = nlbulk.send_batch(self.sock, msgs, echoes=self._echoes)
        failures = {i: e for i, e in failures.items()
                    if not (msgs[i].op == nlbulk.OP_DEL and e in OK_ON_DELETE)
                    and not (msgs[i].op == nlbulk.OP_APPEND and e == errno.EEXIST)}

        def revert() -> None:
            self._send_undo(ops.undo_of_done(failures))
        if failures:
            revert()
            i, err = min(failures.items())
            raise KernelApplyError(ops.objs[i], err, f"{nlbulk.errno_text(err)}"
                                   + (f" (+{len(failures) - 1} more)" if len(failures) > 1
                                      else ""))
        undo.append(revert)

    def _send_undo(self, msgs: list[Msg]) -> None:
        bad = nlbulk.send_batch(self.sock, msgs)
        bad = {i: e for i, e in bad.items() if e not in OK_ON_DELETE}
        if bad:
            log.error("%d undo messages failed, first: %s", len(bad),
                      nlbulk.errno_text(next(iter(bad.values()))))


class _ByKind:
    """The objects of one batch sorted by kind, in one pass (a bulk push has 10k of them)."""

    __slots__ = ("floods", "gone_floods", "gone_macs", "gone_networks", "gone_policies",
                 "gone_ports", "macs", "networks", "policies", "ports", "update_vnis")

    def __init__(self, batch: Batch) -> None:
        self.gone_networks: list[Network] = []
        self.gone_ports: list[Port] = []
        self.gone_floods: list[FloodEntry] = []
        self.gone_macs: list[RemoteMac] = []
        self.gone_policies: list[Policy] = []
        self.networks: list[Network] = []
        self.ports: list[Port] = []
        self.floods: list[Update] = []
        self.macs: list[Update] = []
        self.policies: list[Policy] = []
        self.update_vnis: set[int] = set()  # of the flood entries and remote MACs updated
        vnis = self.update_vnis
        for o in batch.deletes:
            if type(o) is RemoteMac:
                self.gone_macs.append(o)
            elif type(o) is FloodEntry:
                self.gone_floods.append(o)
            elif type(o) is Port:
                self.gone_ports.append(o)
            elif type(o) is Network:
                self.gone_networks.append(o)
            elif type(o) is Policy:
                self.gone_policies.append(o)
        for u in batch.updates:
            new = u.new
            if type(new) is RemoteMac:
                self.macs.append(u)
                vnis.add(new.vni)
            elif type(new) is FloodEntry:
                self.floods.append(u)
                vnis.add(new.vni)
            elif type(new) is Port:
                self.ports.append(new)
            elif type(new) is Network:
                self.networks.append(new)
            elif type(new) is Policy:
                self.policies.append(new)

    def link_names(self) -> set[str]:
        """The links an apply of these objects reads (when it creates or deletes no
        network): the ports it attaches or releases, and the ``vx-``/``br-`` devices of the
        networks of its ports, flood entries and remote MACs."""
        vnis = {m.vni for m in self.gone_macs} | {f.vni for f in self.gone_floods} \
            | {p.vni for p in self.ports}
        vnis.update(self.update_vnis)       # an update's old object: same key, same VNI
        names = {p.name for p in (*self.ports, *self.gone_ports)}
        for vni in vnis:
            names.update((f"vx-{vni}", f"br-{vni}"))
        return names


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
            out.append(u if isinstance(u, nlbulk.NeighMsg) else self.msgs[i]._replace(op=u))
        return out


def _reason(exc: NetlinkError) -> str:
    text = str(exc.args[1]) if len(exc.args) > 1 else ""
    return f"{nlbulk.errno_text(exc.code)}{': ' + text if text else ''}"
