"""An in-memory :class:`~nvo3.dataplane.kernel.Kernel` for unit tests: no netlink, no root.

:class:`FakeKernel` keeps one namespace's links, nvo3's networks, FDB (remote MACs and flood
entries), anti-spoofing and policies in dicts, and applies a batch the way
:class:`~nvo3.dataplane.linux.PyrouteKernel` does: in the same order, with the same checks (a
port must exist, a device name held by a foreign device is refused, FDB entries need their
network's devices, deleting what is absent is success), all or nothing, with the same
:class:`~nvo3.dataplane.kernel.KernelApplyError`.  Its dump reads back what is really there,
so drift is a plain edit of the dicts (or :meth:`FakeKernel.delete_link`).

Switches for tests: :meth:`FakeKernel.add_port` (the vServer's side: a VM's host interface
appears), :meth:`FakeKernel.fail_next` (the next apply touching an object fails with an
errno of the test's choosing) and :attr:`FakeKernel.counters`.
"""

from __future__ import annotations

import dataclasses
import errno
from dataclasses import dataclass, field

from nvo3.dataplane.kernel import KernelApplyError, LinkCounters
from nvo3.dataplane.links import IFF_UP, PORT_ALIAS, port_alias, port_from
from nvo3.dataplane.model import (
    KIND_OF,
    OWNER_ALIAS,
    DesiredState,
    FloodEntry,
    KernelObject,
    Network,
    Policy,
    Port,
    RemoteMac,
    bridge_name,
    vni_of,
    vxlan_name,
)
from nvo3.dataplane.nlbulk import LinkEntry, errno_text
from nvo3.dataplane.tracker import Batch


@dataclass
class FakeNamespace:
    """What one fake network namespace holds (plain values: a copy is a snapshot)."""

    links: dict[str, LinkEntry] = field(default_factory=dict)
    networks: dict[int, Network] = field(default_factory=dict)     # vx-<vni>'s settings
    remote_macs: dict[tuple[int, str], RemoteMac] = field(default_factory=dict)
    floods: dict[tuple[int, str], FloodEntry] = field(default_factory=dict)
    spoof: dict[str, str] = field(default_factory=dict)           # port -> the MAC allowed
    policies: dict[str, Policy] = field(default_factory=dict)

    def copy(self) -> FakeNamespace:
        """A snapshot (the values are immutable: copying the dicts is enough)."""
        return FakeNamespace(dict(self.links), dict(self.networks), dict(self.remote_macs),
                             dict(self.floods), dict(self.spoof), dict(self.policies))


class FakeKernel:
    """:class:`~nvo3.dataplane.kernel.Kernel` in memory: one namespace with a loopback."""

    def __init__(self, netns: str | None = None, ports: tuple[str, ...] = ()) -> None:
        self.netns = netns
        self.ns = FakeNamespace()
        self.counters: dict[str, LinkCounters] = {}   # what link_counters() reports
        self.applied = 0                              # batches applied completely
        self.closed = False
        self.echo_keys: set[bytes] | None = None
        self._next_index = 1
        self._fail: dict[tuple[str, object], tuple[int, int]] = {}   # -> (errno, times)
        self._add_link("lo", flags=IFF_UP)
        for name in ports:
            self.add_port(name)

    # -- switches for tests ------------------------------------------------------------------
    def add_port(self, name: str, up: bool = False) -> None:
        """A VM's host-side interface appears (created by the vServer), on no bridge."""
        self._add_link(name, flags=IFF_UP if up else 0)

    def delete_link(self, name: str) -> None:
        """A link disappears (deleted behind nvo3's back); with it its FDB entries, and the
        ports on it when it is a bridge are released (as the kernel does)."""
        lk = self.ns.links.pop(name, None)
        if lk is None:
            return
        vni = vni_of(name)
        if vni is not None and name == vxlan_name(vni):
            self._flush_fdb(vni)
        for other in list(self.ns.links.values()):
            if other.master == lk.index:
                self.ns.links[other.name] = dataclasses.replace(other, master=0)

    def fail_next(self, obj: KernelObject, err: int = errno.EPERM, times: int = 1) -> None:
        """The next ``times`` applies that touch ``obj`` (same kind and key: added, changed
        or deleted) fail on it with ``err``; each is reverted, as a real refusal would be."""
        self._fail[(KIND_OF[type(obj)], obj.key)] = (err, times)

    # -- the Kernel interface ----------------------------------------------------------------
    def dump(self) -> DesiredState:
        """What nvo3 owns, read back from the namespace (complete networks only, ports with
        their anti-spoofing in place, as the Linux dump)."""
        links, ns = self.ns.links, self.ns
        live: dict[int, int] = {}                     # bridge ifindex -> vni
        networks = []
        for vni, net in ns.networks.items():
            vx, br = links.get(net.vxlan), links.get(net.bridge)
            if vx is not None and br is not None and _owned(vx) and _owned(br) \
                    and vx.master == br.index and vx.flags & br.flags & IFF_UP:
                networks.append(net)
                live[br.index] = vni
        ports = [p for lk in links.values() if lk.master in live
                 for p in [port_from(lk, live[lk.master])]
                 if p is not None and ns.spoof.get(p.name) == p.mac]
        vnis, names = set(live.values()), {p.name for p in ports}
        return DesiredState(
            networks=tuple(networks), ports=tuple(ports),
            floods=tuple(f for f in ns.floods.values() if f.vni in vnis),
            remote_macs=tuple(r for r in ns.remote_macs.values() if r.vni in vnis),
            policies=tuple(p for p in ns.policies.values() if p.port in names))

    def apply(self, batch: Batch, link_dump: list[LinkEntry] | None = None) -> None:
        """Apply ``batch`` in the Linux order, all or nothing (``link_dump`` is not needed)."""
        before = self.ns.copy()
        try:
            self._apply(batch)
        except KernelApplyError:
            self.ns = before
            raise
        self.applied += 1

    def dump_links(self) -> list[LinkEntry]:
        """Every link of the namespace."""
        return list(self.ns.links.values())

    def link_counters(self) -> dict[str, LinkCounters]:
        """:attr:`counters` of the links that exist."""
        return {name: c for name, c in self.counters.items() if name in self.ns.links}

    def suppress_echoes(self, keys: set[bytes]) -> None:
        """Kept only (the fake sends no netlink messages, so there are no echoes)."""
        self.echo_keys = keys

    def close(self) -> None:
        """Nothing to release; remembered for tests."""
        self.closed = True

    # -- apply, step by step -----------------------------------------------------------------
    def _apply(self, batch: Batch) -> None:
        deletes = sorted(batch.deletes, key=lambda o: _DELETE_ORDER[type(o)])
        for obj in deletes:
            self._check(obj)
            self._delete(obj)
        news = [u.new for u in batch.updates]
        for obj in news:
            if isinstance(obj, Port) and obj.name not in self.ns.links:
                raise _error(obj, errno.ENODEV, f"port {obj.name} does not exist")
        for obj in sorted(news, key=lambda o: _UPDATE_ORDER[type(o)]):
            self._check(obj)
            self._put(obj)

    def _check(self, obj: KernelObject) -> None:
        key = (KIND_OF[type(obj)], obj.key)
        if key not in self._fail:
            return
        err, times = self._fail.pop(key)
        if times > 1:
            self._fail[key] = (err, times - 1)
        raise KernelApplyError(obj, err, errno_text(err))

    def _add_link(self, name: str, flags: int = 0, master: int = 0, alias: str = "") -> LinkEntry:
        old = self.ns.links.get(name)
        if old is None:
            index, self._next_index = self._next_index, self._next_index + 1
        else:
            index = old.index
        lk = self.ns.links[name] = LinkEntry(index, name, master, flags, alias)
        return lk

    def _devices(self, vni: int, obj: KernelObject) -> None:
        vx, br = self.ns.links.get(vxlan_name(vni)), self.ns.links.get(bridge_name(vni))
        if vx is None or br is None or vni not in self.ns.networks:
            raise KernelApplyError(obj, errno.ENODEV,
                                   f"network {vni} has no devices: {errno_text(errno.ENODEV)}")

    def _flush_fdb(self, vni: int) -> None:
        ns = self.ns
        ns.remote_macs = {k: v for k, v in ns.remote_macs.items() if v.vni != vni}
        ns.floods = {k: v for k, v in ns.floods.items() if v.vni != vni}

    def _delete(self, obj: KernelObject) -> None:
        """One object out (absent is success)."""
        ns = self.ns
        if isinstance(obj, RemoteMac):
            ns.remote_macs.pop(obj.key, None)
        elif isinstance(obj, FloodEntry):
            ns.floods.pop(obj.key, None)
        elif isinstance(obj, Port):
            lk = ns.links.get(obj.name)
            if lk is not None and lk.alias.startswith(PORT_ALIAS):
                ns.links[lk.name] = dataclasses.replace(lk, master=0, alias="")
            ns.spoof.pop(obj.name, None)
        elif isinstance(obj, Network):
            for name in (obj.vxlan, obj.bridge):
                lk = ns.links.get(name)
                if lk is not None and _owned(lk):
                    self.delete_link(name)
            self.ns.networks.pop(obj.vni, None)
        else:
            ns.policies.pop(obj.port, None)

    def _put(self, obj: KernelObject) -> None:
        """One object in, or changed."""
        ns = self.ns
        if isinstance(obj, RemoteMac):
            self._devices(obj.vni, obj)
            ns.remote_macs[obj.key] = obj
        elif isinstance(obj, FloodEntry):
            self._devices(obj.vni, obj)
            ns.floods[obj.key] = obj
        elif isinstance(obj, Port):
            lk, br = ns.links.get(obj.name), ns.links.get(bridge_name(obj.vni))
            if lk is None:
                raise _error(obj, errno.ENODEV, f"port {obj.name} does not exist")
            if br is None or not _owned(br):
                raise _error(obj, errno.ENODEV, f"bridge br-{obj.vni} does not exist")
            ns.spoof[obj.name] = obj.mac
            ns.links[obj.name] = dataclasses.replace(
                lk, master=br.index, alias=port_alias(obj), flags=lk.flags | IFF_UP)
        elif isinstance(obj, Network):
            for name in (obj.bridge, obj.vxlan):
                lk = ns.links.get(name)
                if lk is not None and not _owned(lk):
                    raise _error(obj, errno.EEXIST, f"{name} exists and is not owned by nvo3")
            br = self._add_link(obj.bridge, IFF_UP, 0, OWNER_ALIAS)
            old = ns.networks.get(obj.vni)
            if old is not None and old != obj:          # recreated: its FDB goes with it
                self._flush_fdb(obj.vni)
            self._add_link(obj.vxlan, IFF_UP, br.index, OWNER_ALIAS)
            ns.networks[obj.vni] = obj
        else:
            ns.policies[obj.port] = obj


# The Linux order (nvo3.dataplane.linux): FDB, ports, networks out; networks, policies, ports,
# FDB in (nftables between networks and ports).
_DELETE_ORDER = {RemoteMac: 0, FloodEntry: 0, Port: 1, Network: 2, Policy: 3}
_UPDATE_ORDER = {Network: 0, Policy: 1, Port: 2, FloodEntry: 3, RemoteMac: 3}


def _owned(lk: LinkEntry) -> bool:
    return lk.alias.startswith(OWNER_ALIAS)


def _error(obj: KernelObject, err: int, what: str) -> KernelApplyError:
    return KernelApplyError(obj, err, f"{errno_text(err)}: {what}")
