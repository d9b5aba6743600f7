"""A lab topology: data centers, hosts, tenants and VMs, read from a TOML file.

The file (see nvo3/lab/topologies/two-dc.toml) has a few top-level keys and four arrays of
tables::

    name = "two-dc"
    prefix = "nvo3lab"                    # every namespace name starts with it
    underlay = "198.18.0.0/24"            # host (VTEP) addresses live here
    [etcd]           members?             # the federated lab: an etcd cluster, and
    [[data-center]]  name, ndirectors?    # that many nDirector replicas per data center
    [[host]]         name, data-center, underlay-address, vserver?, capacity?
    [[tenant]]       name, vni, vm-groups?
    [[vm]]           name, tenant, host, mac, ip, on-demand?

`load()` validates everything it can without touching the kernel and raises one
`TopologyError` listing every problem, each with where it is ("host[2].underlay-address:
..."). Every address must lie in 198.18.0.0/15 (RFC 2544 benchmarking range).
"""

from __future__ import annotations

import ipaddress
import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

BENCHMARK_RANGE = ipaddress.IPv4Network("198.18.0.0/15")
#: The lab's default topology, shipped in the package.
DEFAULT_TOPOLOGY = Path(__file__).resolve().parent / "topologies" / "two-dc.toml"
NAME_RE = re.compile(r"^[a-z][a-z0-9]{0,14}$")   # fits interface names, no ':' or '-'
MAC_RE = re.compile(r"^([0-9a-f]{2}:){5}[0-9a-f]{2}$")


class TopologyError(ValueError):
    """The topology file is unreadable or inconsistent (every problem in one message)."""


@dataclass(frozen=True)
class DataCenter:
    name: str
    ndirectors: int = 1           # replicas (the etcd mode); without etcd one nDirector in all


@dataclass(frozen=True)
class Host:
    name: str
    data_center: str
    underlay_address: str
    vserver: str
    capacity: dict[str, int] = field(default_factory=dict)


@dataclass(frozen=True)
class Tenant:
    name: str
    vni: int
    vm_groups: tuple[str, ...] = ()


@dataclass(frozen=True)
class VmSpec:
    name: str
    tenant: str
    host: str
    mac: str
    ip: str
    on_demand: bool = False     # not created by `lab up`: the demo provisions it


@dataclass(frozen=True)
class Topology:
    name: str
    prefix: str
    underlay: ipaddress.IPv4Network
    data_centers: tuple[DataCenter, ...]
    hosts: tuple[Host, ...]
    tenants: tuple[Tenant, ...]
    vms: tuple[VmSpec, ...]
    path: str = ""
    etcd_members: int = 0         # 0: one nDirector, its table embedded; else the etcd mode

    def host(self, name: str) -> Host:
        return next(h for h in self.hosts if h.name == name)

    def tenant(self, name: str) -> Tenant:
        return next(t for t in self.tenants if t.name == name)

    def vm(self, name: str) -> VmSpec:
        try:
            return next(v for v in self.vms if v.name == name)
        except StopIteration:
            raise KeyError(f"no VM {name!r} in topology {self.name}") from None

    def hosts_in(self, dc: str) -> list[Host]:
        return [h for h in self.hosts if h.data_center == dc]

    def host_of_vserver(self, vserver: str) -> Host:
        return next(h for h in self.hosts if h.vserver == vserver)

    def data_center_of(self, vm: VmSpec) -> str:
        return self.host(vm.host).data_center


class _Checker:
    """Collects problems instead of stopping at the first."""

    def __init__(self) -> None:
        self.problems: list[str] = []

    def fail(self, where: str, text: str) -> None:
        self.problems.append(f"{where}: {text}")

    def table(self, raw: dict[str, Any], where: str, required: tuple[str, ...],
              optional: tuple[str, ...] = ()) -> bool:
        ok = True
        for key in required:
            if key not in raw:
                self.fail(where, f"missing {key!r}")
                ok = False
        for key in raw:
            if key not in required + optional:
                self.fail(where, f"unknown key {key!r} (allowed: "
                          f"{', '.join(required + optional)})")
        return ok

    def name(self, value: Any, where: str) -> str:
        if not isinstance(value, str) or not NAME_RE.match(value):
            self.fail(where, f"{value!r} is not a name (a lower-case letter, then up to 14 "
                      "lower-case letters or digits)")
        return str(value)

    def address(self, value: Any, where: str,
                within: ipaddress.IPv4Network | ipaddress.IPv6Network = BENCHMARK_RANGE) -> str:
        try:
            addr = ipaddress.ip_address(value)
        except ValueError:
            self.fail(where, f"{value!r} is not an IP address")
            return str(value)
        if addr not in within:
            self.fail(where, f"{value} is outside {within}")
        return str(addr)

    def unique(self, names: list[str], what: str) -> None:
        seen: set[str] = set()
        for n in names:
            if n in seen:
                self.fail(what, f"{n!r} appears twice")
            seen.add(n)


def _array(raw: dict[str, Any], key: str, check: _Checker) -> list[dict[str, Any]]:
    items = raw.get(key, [])
    if not isinstance(items, list) or not all(isinstance(i, dict) for i in items):
        check.fail(key, "must be an array of tables ([[" + key + "]])")
        return []
    if not items:
        check.fail(key, "at least one is needed")
    return items


def parse(raw: dict[str, Any], path: str = "") -> Topology:
    """A validated Topology from the parsed TOML document."""
    check = _Checker()
    check.table(raw, "topology", (), ("name", "prefix", "underlay", "data-center", "host",
                                      "tenant", "vm", "etcd"))
    etcd = raw.get("etcd", {})
    members = etcd.get("members", 3) if isinstance(etcd, dict) and "etcd" in raw else 0
    if isinstance(etcd, dict) and check.table(etcd, "etcd", (), ("members",)) and \
            "etcd" in raw and (not isinstance(members, int) or members not in (1, 3, 5)):
        check.fail("etcd.members", f"{members!r}: 1, 3 or 5 members")
        members = 3
    name = str(raw.get("name", Path(path).stem or "lab"))
    prefix = raw.get("prefix", "nvo3lab")
    if not isinstance(prefix, str) or not re.match(r"^[a-z][a-z0-9]{1,11}$", prefix):
        check.fail("prefix", f"{prefix!r}: 2 to 12 lower-case letters or digits")
    try:
        underlay = ipaddress.ip_network(raw.get("underlay", "198.18.0.0/24"))
        if not isinstance(underlay, ipaddress.IPv4Network) or \
                not underlay.subnet_of(BENCHMARK_RANGE):
            check.fail("underlay", f"{underlay} is not an IPv4 network inside "
                       f"{BENCHMARK_RANGE}")
            underlay = ipaddress.IPv4Network("198.18.0.0/24")
    except ValueError as exc:
        check.fail("underlay", str(exc))
        underlay = ipaddress.IPv4Network("198.18.0.0/24")

    dcs = []
    for i, d in enumerate(_array(raw, "data-center", check), 1):
        if check.table(d, f"data-center[{i}]", ("name",), ("ndirectors",)):
            replicas = d.get("ndirectors", 1)
            if not isinstance(replicas, int) or not 1 <= replicas <= 3 or \
                    (replicas > 1 and not members):
                check.fail(f"data-center[{i}].ndirectors", f"{replicas!r}: 1 to 3, and more "
                           "than 1 only with an [etcd] table")
                replicas = 1
            dcs.append(DataCenter(check.name(d["name"], f"data-center[{i}].name"), replicas))
    dc_names = [d.name for d in dcs]
    check.unique(dc_names, "data-center")

    hosts = []
    for i, h in enumerate(_array(raw, "host", check), 1):
        where = f"host[{i}]"
        if not check.table(h, where, ("name", "data-center", "underlay-address"),
                           ("vserver", "capacity")):
            continue
        if h["data-center"] not in dc_names:
            check.fail(f"{where}.data-center", f"{h['data-center']!r} is not a data center "
                       f"(have: {', '.join(dc_names)})")
        capacity = h.get("capacity", {"vcpus": 64, "memory": 65536})
        if not isinstance(capacity, dict) or not all(
                k in ("vcpus", "memory", "disk", "max-vms") and isinstance(v, int) and v > 0
                for k, v in capacity.items()):
            check.fail(f"{where}.capacity", "a table of positive integers among vcpus, "
                       "memory, disk, max-vms")
            capacity = {}
        hosts.append(Host(check.name(h["name"], f"{where}.name"), h["data-center"],
                          check.address(h["underlay-address"], f"{where}.underlay-address",
                                        underlay),
                          check.name(h.get("vserver", f"vserver{i}"), f"{where}.vserver"),
                          dict(capacity)))
    check.unique([h.name for h in hosts], "host")
    check.unique([h.vserver for h in hosts], "host.vserver")
    check.unique([h.underlay_address for h in hosts], "host.underlay-address")

    tenants = []
    for i, t in enumerate(_array(raw, "tenant", check), 1):
        where = f"tenant[{i}]"
        if not check.table(t, where, ("name", "vni"), ("vm-groups",)):
            continue
        vni = t["vni"]
        if not isinstance(vni, int) or not 1 <= vni <= 16_777_215:
            check.fail(f"{where}.vni", f"{vni!r} is not a VNI (1..16777215)")
        groups = t.get("vm-groups", [])
        if not isinstance(groups, list):
            check.fail(f"{where}.vm-groups", "must be a list of names")
            groups = []
        tenants.append(Tenant(check.name(t["name"], f"{where}.name"), int(vni)
                              if isinstance(vni, int) else 0,
                              tuple(check.name(g, f"{where}.vm-groups") for g in groups)))
    check.unique([t.name for t in tenants], "tenant")
    check.unique([str(t.vni) for t in tenants], "tenant.vni")

    vms = []
    host_names, tenant_names = [h.name for h in hosts], [t.name for t in tenants]
    for i, v in enumerate(raw.get("vm", []), 1):
        where = f"vm[{i}]"
        if not check.table(v, where, ("name", "tenant", "host", "mac", "ip"), ("on-demand",)):
            continue
        if v["tenant"] not in tenant_names:
            check.fail(f"{where}.tenant", f"{v['tenant']!r} is not a tenant")
        if v["host"] not in host_names:
            check.fail(f"{where}.host", f"{v['host']!r} is not a host")
        mac = str(v["mac"]).lower()
        if not MAC_RE.match(mac) or int(mac[:2], 16) & 1:
            check.fail(f"{where}.mac", f"{v['mac']!r} is not a unicast MAC address")
        vms.append(VmSpec(check.name(v["name"], f"{where}.name"), v["tenant"], v["host"], mac,
                          check.address(v["ip"], f"{where}.ip"), bool(v.get("on-demand"))))
    check.unique([v.name for v in vms], "vm")
    check.unique([v.mac for v in vms], "vm.mac")
    for tenant in tenants:
        check.unique([v.ip for v in vms if v.tenant == tenant.name],
                     f"vm.ip (tenant {tenant.name})")
    if check.problems:
        where = f"{path}: " if path else ""
        raise TopologyError(f"{where}invalid topology:\n  " + "\n  ".join(check.problems))
    return Topology(name, prefix, underlay, tuple(dcs), tuple(hosts), tuple(tenants),
                    tuple(vms), path, int(members))


def load(path: Path | str | None = None) -> Topology:
    """Read and validate a topology file (default: nvo3/lab/topologies/two-dc.toml)."""
    path = Path(path or DEFAULT_TOPOLOGY)
    try:
        raw = tomllib.loads(path.read_text())
    except OSError as exc:
        raise TopologyError(f"cannot read topology {path}: {exc.strerror or exc}") from None
    except tomllib.TOMLDecodeError as exc:
        raise TopologyError(f"{path}: not valid TOML: {exc}") from None
    return parse(raw, str(path.resolve()))
