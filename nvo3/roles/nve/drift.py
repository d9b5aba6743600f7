"""Has the kernel drifted from what the NVE agent wants?  Netlink events and link dumps judged
against the delta tracker, without touching the kernel.

The agent's own changes echo back as events too (its FDB changes are mostly dropped
undecoded by the monitor, see :func:`~nvo3.dataplane.nlbulk.echo_key`; its link changes are
not), so an event is judged by its content, not by "one of ours changed":

* an FDB or neighbour event that does not match what the agent wants (an entry deleted or
  changed behind its back), or an overrun, asks for a **resync** (a full dump);
* a link event whose master, alias or up flag differs from what the agent wants, or that it
  cannot judge, asks for a **check**: one raw link dump compared with the tracker
  (:meth:`DriftJudge.links_as_tracked`), and the resync only if they differ (enslaving
  2,500 VM ports echoes link events, in intermediate states, for seconds after the commit).
"""

from __future__ import annotations

from typing import Literal

from nvo3.dataplane.links import IFF_UP, PORT_ALIAS, port_alias
from nvo3.dataplane.model import OWNER_ALIAS, ZERO_MAC, Network, Port, RemoteMac, vni_of
from nvo3.dataplane.monitor import NetlinkEvent
from nvo3.dataplane.nlbulk import NTF_SELF, NUD_PERMANENT, LinkEntry
from nvo3.dataplane.tracker import DeltaTracker

Verdict = Literal["resync", "check"] | None


class DriftJudge:
    """Judges kernel events and link dumps against ``tracker`` (desired and believed state).

    It keeps an index of the namespace's links (ifindex -> VNI of nvo3's devices, of the
    configured ports), rebuilt by :meth:`reindex` after every change of the links; events
    are judged from the monitor's thread, so each index is replaced whole, never edited.
    """

    def __init__(self, tracker: DeltaTracker) -> None:
        self.tracker = tracker
        self._vx: dict[int, int] = {}       # ifindex -> vni of owned devices
        self._br: dict[int, int] = {}
        self._br_of: dict[int, int] = {}    # vni -> ifindex of its owned bridge
        self._ports: dict[int, str] = {}    # ifindex -> configured port name
        self._port_names: set[str] = set()
        self._present_ports: frozenset[str] = frozenset()   # configured ports in the last dump
        self._remote_macs: set[str] = set()

    def reindex(self, links: list[LinkEntry], port_names: set[str]) -> None:
        """Index ``links`` (a fresh dump); ``port_names``: every configured attachment's port."""
        self.refresh_remote_macs()
        vx: dict[int, int] = {}
        br: dict[int, int] = {}
        ports: dict[int, str] = {}
        for lk in links:
            vni = vni_of(lk.name)
            if vni is not None:
                (vx if lk.name.startswith("vx-") else br)[lk.index] = vni
            elif lk.name in port_names:
                ports[lk.index] = lk.name
        self._vx, self._br, self._ports, self._port_names = vx, br, ports, port_names
        self._br_of = {vni: index for index, vni in br.items()}
        self._present_ports = frozenset(ports.values())

    def refresh_remote_macs(self) -> None:
        """Take the remote MACs the tracker wants again (after a change of them only: the
        links are indexed as they were)."""
        self._remote_macs = {rm.mac for rm in self.tracker.desired["remote_mac"].values()
                             if isinstance(rm, RemoteMac)}

    def port_present(self, name: str) -> bool:
        """Whether `name` was a configured port present in the namespace when the links were
        last indexed (a port deleted since makes a link event, which asks for a check)."""
        return name in self._present_ports

    def judge(self, events: list[NetlinkEvent]) -> Verdict:
        """What ``events`` ask for: a resync, a link check, or nothing (None)."""
        check = False
        for e in events:
            if e.what == "link":
                # not a full resync straight away: an event may show a state the agent's own
                # change passes through (a port enslaved a moment before its alias is set);
                # the cheap check reads the links as they are now and resyncs if they differ
                check = check or self.link_drift(e)
            elif self.entry_drift(e):
                return "resync"
        return "check" if check else None

    def link_drift(self, e: NetlinkEvent) -> bool:
        """A link event against what the agent wants: False when the link is as wanted (or
        is none of the agent's business), True when it visibly is not or when the event alone
        cannot tell (a device the index does not know yet)."""
        name = e.ifname or ""
        vni = vni_of(name)
        if vni is not None:
            if self.tracker.desired["network"].get(vni) is None:
                return e.action == "new" and e.alias.startswith(OWNER_ALIAS)  # ours, unwanted
            if e.action == "del" or not e.alias.startswith(OWNER_ALIAS) or not e.flags & IFF_UP:
                return True
            if name.startswith("vx-"):
                br = self._br_of.get(vni)
                return br is None or e.master != br
            return False
        port = self.tracker.desired["port"].get(name)
        if not isinstance(port, Port):
            if name in self._port_names or e.ifindex in self._ports:
                # configured but not attached (associated): must not sit on our bridge
                return e.action == "new" and e.alias.startswith(PORT_ALIAS) and e.master != 0
            return False
        if e.action == "del":
            return True
        br = self._br_of.get(port.vni)
        return br is None or e.master != br or e.alias != port_alias(port)

    def entry_drift(self, e: NetlinkEvent) -> bool:
        """True for FDB/neighbour changes the agent did not ask for (or cannot tell)."""
        if e.what == "overrun":
            return True
        desired = self.tracker.desired
        if e.what == "fdb" and e.ifindex in self._vx:
            vni = self._vx[e.ifindex]
            if e.mac == ZERO_MAC:
                wanted = (vni, e.dst) in desired["flood"]
                return wanted if e.action == "del" else not wanted
            rm = desired["remote_mac"].get((vni, e.mac))
            if e.action == "del":
                return rm is not None
            return not isinstance(rm, RemoteMac) or (e.dst is not None
                                                     and e.dst != rm.remote_vtep)
        if e.what == "fdb" and e.action == "new" and e.mac and not e.flags & NTF_SELF:
            # a remote MAC's bridge entry learned on another port: it moved away from vx-*
            return e.mac in self._remote_macs and e.ifindex not in self._vx
        if e.what == "neigh" and e.ifindex in self._br and e.state & NUD_PERMANENT:
            rm = desired["remote_mac"].get((self._br[e.ifindex], e.mac))
            wanted = isinstance(rm, RemoteMac) and e.dst in rm.ips
            return wanted if e.action == "del" else not wanted
        return False

    def links_as_tracked(self, links: list[LinkEntry]) -> bool:
        """True when ``links`` (a fresh dump) are what the tracker believes the kernel holds:
        every network's devices owned, up and joined, every port on its bridge with its
        alias, no released port still enslaved, no unwanted device of nvo3's."""
        by_name = {lk.name: lk for lk in links}
        networks = [n for n in self.tracker.dataplane["network"].values()
                    if isinstance(n, Network)]
        bridges = {}
        for net in networks:
            vx, br = by_name.get(net.vxlan), by_name.get(net.bridge)
            if vx is None or br is None or vx.master != br.index \
                    or not vx.alias.startswith(OWNER_ALIAS) or not br.alias.startswith(OWNER_ALIAS) \
                    or not vx.flags & br.flags & IFF_UP:
                return False
            bridges[br.index] = net.vni
        ports = self.tracker.dataplane["port"]
        for port in ports.values():
            if not isinstance(port, Port):
                continue
            lk = by_name.get(port.name)
            if lk is None or bridges.get(lk.master) != port.vni or lk.alias != port_alias(port):
                return False
        vnis = {n.vni for n in networks}
        for lk in links:       # a port released (or never attached) must not be enslaved
            if lk.master in bridges and lk.alias.startswith(PORT_ALIAS) and lk.name not in ports:
                return False
            vni = vni_of(lk.name)
            if vni is not None and lk.alias.startswith(OWNER_ALIAS) and vni not in vnis:
                return False
        return True
