"""The kernel side of a VM on a vServer: its network namespace and its vNIC, via pyroute2.

A VM's vNIC is a veth pair: ``eth0`` (:data:`VNIC`) inside the VM's namespace carries the
VM's MAC and IP addresses; the other end, the VM's *port*, lives in the host namespace (the
one the NVE agent programs, which enslaves it into the VNI's bridge). :class:`VmLinks` does
every netlink operation on these for one host namespace; the VM bookkeeping (records,
workloads, capacity) is the vServer's (``nvo3.roles.vserver.vm_driver``).

Every method opens its own netlink socket (into the host namespace or the VM's) and closes
it again; errors are pyroute2's, except where a method says it ignores them.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from pyroute2 import IPRoute, netns

from nvo3.dataplane.links import IFF_UP

VNIC = "eth0"

#: An IP address and its prefix length, as put on a vNIC.
Address = tuple[str, int]


@dataclass(frozen=True)
class VnicView:
    """What the kernel holds for a VM's vNIC."""

    mac: str
    ips: list[str]              # without link-local IPv6 addresses
    up: bool

    def as_dict(self) -> dict[str, Any]:
        """{"mac", "ips", "up"}: the shape checks and tests compare."""
        return {"mac": self.mac, "ips": self.ips, "up": self.up}


@contextlib.contextmanager
def _ipr(namespace: str | None) -> Iterator[Any]:
    """A netlink socket in `namespace` (None: the current one), closed afterwards."""
    with (IPRoute(netns=namespace) if namespace else IPRoute()) as ipr:
        yield ipr


def _index(ipr: Any, ifname: str) -> int:
    return int(ipr.link_lookup(ifname=ifname)[0])


class VmLinks:
    """Namespaces, veth pairs and vNIC addresses of the VMs of one host namespace."""

    def __init__(self, host_netns: str | None = None) -> None:
        self.host_netns = host_netns

    # namespaces ----------------------------------------------------------------------------
    @staticmethod
    def namespaces() -> set[str]:
        """The names of every named network namespace."""
        return set(netns.listnetns())

    @staticmethod
    def create_namespace(name: str) -> None:
        netns.create(name)

    @staticmethod
    def remove_namespace(name: str) -> None:
        netns.remove(name)

    # the host-side port --------------------------------------------------------------------
    def port_exists(self, port: str) -> bool:
        """An interface named `port` exists in the host namespace."""
        with _ipr(self.host_netns) as host:
            return bool(host.link_lookup(ifname=port))

    def remove_port(self, port: str) -> None:
        """Delete the host interface `port` (and so its veth peer); errors are ignored."""
        with contextlib.suppress(Exception), _ipr(self.host_netns) as host:
            for idx in host.link_lookup(ifname=port):
                host.link("del", index=idx)

    def port_bytes(self, port: str) -> int:
        """Bytes received plus sent on host interface `port` (0 when it cannot be read)."""
        with contextlib.suppress(Exception), _ipr(self.host_netns) as host:
            idx = host.link_lookup(ifname=port)
            if idx:
                stats = host.get_links(idx[0])[0].get_attr("IFLA_STATS64") or {}
                return int(stats.get("rx_bytes", 0)) + int(stats.get("tx_bytes", 0))
        return 0

    # the vNIC ------------------------------------------------------------------------------
    def add_vnic(self, namespace: str, port: str, mac: str, addresses: list[Address]) -> None:
        """The veth pair: `port` in the host namespace (up, not enslaved) and the vNIC in
        `namespace` with `mac` and `addresses` (up; the namespace's loopback too)."""
        with _ipr(self.host_netns) as host:
            host.link("add", ifname=port, kind="veth",
                      peer={"ifname": VNIC, "net_ns_fd": namespace})
            host.link("set", index=_index(host, port), state="up")
        with _ipr(namespace) as v:
            v.link("set", index=_index(v, "lo"), state="up")
            idx = _index(v, VNIC)
            v.link("set", index=idx, address=mac)
            for ip, plen in addresses:
                v.addr("add", index=idx, address=ip, prefixlen=plen)
            v.link("set", index=idx, state="up")

    @staticmethod
    def set_vnic_up(namespace: str, up: bool) -> None:
        """Bring the vNIC in `namespace` up or down."""
        with _ipr(namespace) as v:
            v.link("set", index=_index(v, VNIC), state="up" if up else "down")

    @staticmethod
    def set_vnic_mac(namespace: str, mac: str) -> None:
        """Give the vNIC another MAC address (down while it changes, then as it was)."""
        with _ipr(namespace) as v:
            idx = _index(v, VNIC)
            up = bool(v.get_links(idx)[0]["flags"] & IFF_UP)
            v.link("set", index=idx, state="down")
            v.link("set", index=idx, address=mac)
            if up:
                v.link("set", index=idx, state="up")

    @staticmethod
    def change_vnic_addresses(namespace: str, remove: list[Address],
                              add: list[Address]) -> None:
        """Delete `remove` (errors ignored: already gone) and add `add` on the vNIC."""
        with _ipr(namespace) as v:
            idx = _index(v, VNIC)
            for ip, plen in remove:
                with contextlib.suppress(Exception):
                    v.addr("del", index=idx, address=ip, prefixlen=plen)
            for ip, plen in add:
                v.addr("add", index=idx, address=ip, prefixlen=plen)

    @staticmethod
    def vnic_view(namespace: str) -> VnicView:
        """The vNIC's MAC, IP addresses (no IPv6 link-local) and whether it is up."""
        with _ipr(namespace) as v:
            idx = _index(v, VNIC)
            link = v.get_links(idx)[0]
            ips = [str(a.get_attr("IFA_ADDRESS")) for a in v.get_addr(index=idx)
                   if not str(a.get_attr("IFA_ADDRESS")).startswith("fe80")]
            return VnicView(str(link.get_attr("IFLA_ADDRESS")), ips,
                            bool(link["flags"] & IFF_UP))
