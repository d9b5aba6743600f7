"""Link-level primitives (pyroute2): nvo3's VXLAN devices, bridges and VM ports.

Each mutating function returns an *undo* callable (flannel style: the order of
steps is written down in :mod:`nvo3.dataplane.kernel`, undone in reverse).
Ownership: nvo3 devices are named ``vx-<vni>``/``br-<vni>`` and carry the
ifalias ``nvo3``; a VM port nvo3 attached carries ``nvo3 port mac=.. vlan=..
ips=..`` (the desired attributes the kernel cannot otherwise show).  Devices
with those names but without the alias are foreign and are never touched.

This kernel (6.18, CONFIG_BRIDGE_VLAN_FILTERING unset) cannot filter VLANs on a
bridge: a port with a VLAN fails with EOPNOTSUPP from the kernel, reported as
such; on kernels that have it, the bridge gets vlan_filtering and the port
``vid <vlan> pvid untagged``.
"""

from __future__ import annotations

import errno
from collections.abc import Callable, Iterable
from typing import Any, Protocol

from pyroute2.netlink.exceptions import NetlinkError

from nvo3.dataplane import nlbulk, vlan_support
from nvo3.dataplane.model import OWNER_ALIAS, FloodMode, Network, Port

Undo = Callable[[], None]
PORT_ALIAS = OWNER_ALIAS + " port"
IFF_UP = 0x1
FLOOD_FLAGS = ("unicast_flood", "mcast_flood", "bcast_flood")


class LinkMessage(Protocol):
    """A pyroute2 link message (``ifinfmsg``), as far as nvo3 reads it: the header fields
    (``msg["index"]``, ``msg["flags"]``) and IFLA_* attributes, nested ones by path."""

    def __getitem__(self, field: str) -> Any:
        """A header field."""

    def get_attr(self, name: str) -> Any:
        """One top-level IFLA_* attribute (None: absent)."""

    def get_nested(self, *names: str) -> Any:
        """An attribute nested under ``names`` (None: absent)."""


class RouteSocket(Protocol):
    """The part of pyroute2's ``IPRoute`` nvo3 uses (pyroute2 has no type information)."""

    def link(self, command: str, **kwargs: Any) -> list[LinkMessage]:
        """RTM_*LINK: ``add``, ``set``, ``del`` or ``get`` a link."""

    def brport(self, command: str, **kwargs: Any) -> Any:
        """Set bridge-port flags of a link."""

    def vlan_filter(self, command: str, **kwargs: Any) -> Any:
        """Add or remove a bridge VLAN of a port."""

    def get_links(self) -> Iterable[LinkMessage]:
        """Every link with all its attributes (statistics included)."""

    def close(self) -> None:
        """Release the netlink socket."""


def attr(link: LinkMessage, name: str) -> Any:
    """One IFLA_* attribute of a link message."""
    return link.get_attr(name)


def info_data(link: LinkMessage) -> dict[str, Any]:
    """IFLA_INFO_DATA of a link as a plain dict."""
    data = link.get_nested("IFLA_LINKINFO", "IFLA_INFO_DATA")
    return dict(data["attrs"]) if data else {}


def slave_data(link: LinkMessage) -> dict[str, Any]:
    """IFLA_INFO_SLAVE_DATA (bridge port flags) of a link as a plain dict."""
    data = link.get_nested("IFLA_LINKINFO", "IFLA_INFO_SLAVE_DATA")
    return dict(data["attrs"]) if data else {}


def lookup(ipr: RouteSocket, name: str) -> LinkMessage | None:
    """The link called ``name``, or None."""
    try:
        return ipr.link("get", ifname=name)[0]
    except NetlinkError as exc:
        if exc.code == errno.ENODEV:
            return None
        raise


def _get(ipr: RouteSocket, name: str) -> LinkMessage:
    """The link called ``name``, which must exist (NetlinkError ENODEV otherwise)."""
    link = lookup(ipr, name)
    if link is None:
        raise NetlinkError(errno.ENODEV, f"{name} does not exist")
    return link


def owned(link: LinkMessage | None) -> bool:
    """True when nvo3 created/attached this link."""
    return link is not None and (attr(link, "IFLA_IFALIAS") or "").startswith(OWNER_ALIAS)


def vxlan_conflicts(link: LinkMessage, net: Network) -> list[str]:
    """Field-by-field differences between an existing VXLAN device and ``net``."""
    kind = link.get_nested("IFLA_LINKINFO", "IFLA_INFO_KIND")
    if kind != "vxlan":
        return [f"kind: {kind} vs vxlan"]
    data = info_data(link)
    want = {"IFLA_VXLAN_ID": ("vni", net.vni), "IFLA_VXLAN_LOCAL": ("local", net.vtep_local),
            "IFLA_VXLAN_PORT": ("dstport", net.dstport), "IFLA_VXLAN_LEARNING": ("learning", 0)}
    return [f"{label}: {data.get(key)} vs {value}" for key, (label, value) in want.items()
            if data.get(key) != value]


def _refuse_foreign(link: LinkMessage | None, name: str) -> None:
    if link is not None and not owned(link):
        raise NetlinkError(errno.EEXIST, f"{name} exists and is not owned by nvo3")


def ensure_network(ipr: RouteSocket, net: Network) -> tuple[Undo, str | None]:
    """Make bridge + VXLAN device of ``net`` exist as desired; (undo, recreate reason)."""
    created: list[str] = []
    reason = None
    br = lookup(ipr, net.bridge)
    _refuse_foreign(br, net.bridge)
    if br is None:
        ipr.link("add", ifname=net.bridge, kind="bridge", br_stp_state=0)
        created.append(net.bridge)
        br = _get(ipr, net.bridge)
        # the address is pinned (set explicitly, to the one it got): unpinned, a bridge takes
        # the lowest MAC of its ports, and when a device's address changes the kernel flushes
        # its neighbour entries, the permanent ARP/ND suppression ones included (a new VM
        # with a low MAC would drop them all)
        ipr.link("set", index=br["index"], ifalias=OWNER_ALIAS,
                 address=br.get_attr("IFLA_ADDRESS"))
    vx = lookup(ipr, net.vxlan)
    _refuse_foreign(vx, net.vxlan)
    if vx is not None and vxlan_conflicts(vx, net):
        reason = f"{net.vxlan} recreated: " + ", ".join(vxlan_conflicts(vx, net))
        ipr.link("del", index=vx["index"])
        vx = None
    if vx is None:
        ipr.link("add", ifname=net.vxlan, kind="vxlan", vxlan_id=net.vni,
                 vxlan_local=net.vtep_local, vxlan_port=net.dstport, vxlan_learning=0)
        created.append(net.vxlan)
        vx = _get(ipr, net.vxlan)
        ipr.link("set", index=vx["index"], ifalias=OWNER_ALIAS)
    ipr.link("set", index=vx["index"], master=br["index"], state="up")
    ipr.link("set", index=br["index"], state="up")
    flood = 0 if net.flood_mode == "none" else 1
    ipr.brport("set", index=vx["index"], neigh_suppress=1, learning=0,
               **dict.fromkeys(FLOOD_FLAGS, flood))

    def undo() -> None:
        for name in reversed(created):
            delete_link(ipr, name)
    return undo, reason


def delete_link(ipr: RouteSocket, name: str) -> None:
    """Delete an owned link; absent is success."""
    link = lookup(ipr, name)
    if link is None or not owned(link):
        return
    try:
        ipr.link("del", index=link["index"])
    except NetlinkError as exc:
        if exc.code != errno.ENODEV:
            raise


def network_from(vx: LinkMessage, br: nlbulk.LinkEntry | None) -> Network | None:
    """The Network an owned VXLAN device (full pyroute2 message) and its bridge (raw dump
    entry) implement, or None if incomplete."""
    if br is None or not br.alias.startswith(OWNER_ALIAS) or attr(vx, "IFLA_MASTER") != br.index \
            or not vx["flags"] & br.flags & IFF_UP:     # set down: re-done as if missing
        return None
    data, port = info_data(vx), slave_data(vx)
    if data.get("IFLA_VXLAN_LEARNING") != 0 or not data.get("IFLA_VXLAN_LOCAL"):
        return None
    mode: FloodMode = "none" if port.get("IFLA_BRPORT_BCAST_FLOOD") == 0 else "head-end"
    return Network(vni=data["IFLA_VXLAN_ID"], vtep_local=data["IFLA_VXLAN_LOCAL"],
                   dstport=data["IFLA_VXLAN_PORT"], flood_mode=mode)


def port_alias(port: Port) -> str:
    """The ifalias recording an attached port's desired attributes."""
    vlan = "-" if port.vlan is None else str(port.vlan)
    return f"{PORT_ALIAS} mac={port.mac} vlan={vlan} ips={','.join(port.ips) or '-'}"[:255]


def port_from(link: nlbulk.LinkEntry, vni: int) -> Port | None:
    """Parse an attached port back from its ifalias (None if not ours)."""
    if not link.alias.startswith(PORT_ALIAS + " "):
        return None
    fields = dict(f.split("=", 1) for f in link.alias[len(PORT_ALIAS) + 1:].split() if "=" in f)
    ips = () if fields.get("ips", "-") == "-" else tuple(fields["ips"].split(","))
    vlan = None if fields.get("vlan", "-") == "-" else int(fields["vlan"])
    return Port(name=link.name, vni=vni, vlan=vlan, mac=fields["mac"], ips=ips)


def attach_port(ipr: RouteSocket, port: Port) -> Undo:
    """Enslave the VM's host-side interface to its network's bridge."""
    link = lookup(ipr, port.name)
    if link is None:
        raise NetlinkError(errno.ENODEV, f"port {port.name} does not exist")
    br = lookup(ipr, f"br-{port.vni}")
    if br is None or not owned(br):
        raise NetlinkError(errno.ENODEV, f"bridge br-{port.vni} does not exist")
    old_master, old_alias = attr(link, "IFLA_MASTER") or 0, attr(link, "IFLA_IFALIAS") or ""
    old_up = bool(link["flags"] & 1)

    def undo() -> None:
        cur = lookup(ipr, port.name)
        if cur is None:
            return
        ipr.link("set", index=cur["index"], master=old_master, ifalias=old_alias)
        if not old_up:
            ipr.link("set", index=cur["index"], state="down")
    try:
        ipr.link("set", index=link["index"], master=br["index"], ifalias=port_alias(port))
        ipr.link("set", index=link["index"], state="up")
        if port.vlan is not None:
            try:
                ipr.link("set", index=br["index"], kind="bridge", br_vlan_filtering=1)
                ipr.vlan_filter("add", index=link["index"],
                                vlan_info={"vid": port.vlan, "flags": 6})
            except NetlinkError as exc:
                if exc.code != errno.EOPNOTSUPP:
                    raise
                raise vlan_support.unsupported_error(port.vlan, port.name) from None
    except BaseException:
        undo()
        raise
    return undo
