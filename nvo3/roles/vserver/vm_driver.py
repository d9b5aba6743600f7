"""VMs made real on this machine: a VM is a network namespace with a vNIC into its host.

A VM ``(tenant, name)`` of a vServer is

* a network namespace ``<prefix>-<tenant>:<name>`` (``:`` never occurs in a tenant or VM
  name, so the name is unambiguous; the prefix is the vServer's own, e.g. its host
  namespace's name plus ``-vm``);
* a veth pair: ``eth0`` inside the VM (the VM's MAC and IP addresses) and the host-side end
  ``port`` in the host namespace (the namespace the NVE agent programs; the NVE enslaves it
  into the VNI's bridge when the attachment is activated);
* while powered on, a workload process inside the namespace (default ``sleep infinity``),
  started in its own session and signalled only by its PID (checked against its start time
  and its network namespace, so a reused PID is never signalled);
* a JSON record ``<state_dir>/vms/<tenant>:<name>.json`` (written atomically) with everything
  above plus the role's profile of the VM, so a restarted agent rediscovers its VMs:
  :meth:`VmDriver.discover` lists the namespaces with the prefix and reads the records back
  (a namespace without a record is the leftover of a creation cut short and is removed; a
  record without a namespace is a VM that is gone).

:class:`Ledger` accounts VM resources against the vServer's capacity (pure), and
:class:`Monitor` turns kernel figures (``/proc`` of the processes in the VM's namespace, the
vNIC counters) into the YANG monitoring figures.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import signal
import subprocess
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from pyroute2 import IPRoute, netns

from nvo3.fsutil import write_atomically

log = logging.getLogger(__name__)

NETNS_DIR = Path("/run/netns")
VNIC = "eth0"
DEFAULT_WORKLOAD = ("sleep", "infinity")
DEFAULTS = {"vcpus": 1, "memory": 512, "disk": 10}     # nvo3-vm vm-resources defaults
NIC_BPS = 10_000_000_000                               # nominal vNIC speed (veth has none)
CLK_TCK = os.sysconf("SC_CLK_TCK")
PAGE = os.sysconf("SC_PAGE_SIZE")


class DriverError(Exception):
    """A VM could not be created or changed; nothing of it is left half done."""


# -- resources ---------------------------------------------------------------------------------

@dataclass(frozen=True)
class Resources:
    vcpus: int = DEFAULTS["vcpus"]
    memory: int = DEFAULTS["memory"]     # MiB
    disk: int = DEFAULTS["disk"]         # GiB

    @classmethod
    def of(cls, tree: dict[str, Any] | None) -> Resources:
        tree = tree or {}
        return cls(*(int(tree.get(k, DEFAULTS[k])) for k in ("vcpus", "memory", "disk")))

    def merged(self, tree: dict[str, Any] | None) -> Resources:
        """These resources with the leaves given in `tree` replaced."""
        cur = asdict(self)
        cur.update({k: int(v) for k, v in (tree or {}).items() if k in DEFAULTS})
        return Resources(**cur)

    def as_tree(self) -> dict[str, int]:
        return asdict(self)


@dataclass
class Ledger:
    """Resources allocated to VMs against a capacity; None in the capacity means no limit."""

    vcpus: int | None = None
    memory: int | None = None
    disk: int | None = None
    max_vms: int | None = None
    allocated: dict[tuple[str, str], Resources] = field(default_factory=dict)

    def set_capacity(self, capacity: dict[str, Any] | None) -> None:
        capacity = capacity or {}
        for leaf, attr in (("vcpus", "vcpus"), ("memory", "memory"), ("disk", "disk"),
                           ("max-vms", "max_vms")):
            value = capacity.get(leaf)
            setattr(self, attr, None if value is None else int(value))

    def used(self) -> Resources:
        return Resources(sum(r.vcpus for r in self.allocated.values()),
                         sum(r.memory for r in self.allocated.values()),
                         sum(r.disk for r in self.allocated.values()))

    def shortfall(self, key: tuple[str, str], want: Resources) -> str | None:
        """Why `want` for VM `key` (new, or resized: its current allocation is returned
        first) does not fit, or None when it fits."""
        others = {k: r for k, r in self.allocated.items() if k != key}
        used = Resources(sum(r.vcpus for r in others.values()),
                         sum(r.memory for r in others.values()),
                         sum(r.disk for r in others.values()))
        if self.max_vms is not None and key not in self.allocated and \
                len(others) + 1 > self.max_vms:
            return f"max-vms {self.max_vms} reached"
        for what, unit in (("vcpus", ""), ("memory", " MiB"), ("disk", " GiB")):
            cap = getattr(self, what)
            if cap is None:
                continue
            need, have = getattr(want, what), cap - getattr(used, what)
            if need > have:
                return f"{what}: {need}{unit} asked, {max(have, 0)}{unit} free of {cap}{unit}"
        return None

    def reserve(self, key: tuple[str, str], want: Resources) -> None:
        self.allocated[key] = want

    def release(self, key: tuple[str, str]) -> None:
        self.allocated.pop(key, None)

    def load(self) -> dict[str, int]:
        used = self.used()
        tree = {"vcpus-used": used.vcpus, "memory-used": used.memory, "disk-used": used.disk,
                "vm-count": len(self.allocated)}
        for what in ("vcpus", "memory", "disk"):
            if getattr(self, what) is not None:
                tree[f"{what}-total"] = getattr(self, what)
        return tree


# -- processes -----------------------------------------------------------------------------

def proc_start_time(pid: int) -> int | None:
    """Start time of a process in clock ticks since boot (field 22 of /proc/PID/stat)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return int(stat[stat.rindex(")") + 2:].split()[19])


def netns_inode(name: str) -> int | None:
    try:
        return os.stat(NETNS_DIR / name).st_ino
    except OSError:
        return None


def pids_in_netns(inode: int) -> list[int]:
    """PIDs of the processes whose network namespace is the one with `inode`."""
    want = f"net:[{inode}]"
    pids = []
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            with contextlib.suppress(OSError):
                if os.readlink(f"/proc/{entry.name}/ns/net") == want:
                    pids.append(int(entry.name))
    return pids


def cpu_ticks_and_rss(pids: list[int]) -> tuple[int, int]:
    """Sum of utime+stime (ticks) and resident memory (bytes) of `pids`."""
    ticks = rss = 0
    for pid in pids:
        with contextlib.suppress(OSError, ValueError, IndexError):
            stat = Path(f"/proc/{pid}/stat").read_text()
            fields = stat[stat.rindex(")") + 2:].split()
            ticks += int(fields[11]) + int(fields[12])
            rss += int(fields[21]) * PAGE
    return ticks, rss


def boot_time() -> float:
    for line in Path("/proc/stat").read_text().splitlines():
        if line.startswith("btime "):
            return float(line.split()[1])
    return 0.0


# -- the VM record -------------------------------------------------------------------------

@dataclass
class Vm:
    """One VM as the driver knows it; `profile` belongs to the role (stored, not read)."""

    tenant: str
    name: str
    netns: str
    port: str
    mac: str
    ips: list[str]
    resources: Resources = field(default_factory=Resources)
    profile: dict[str, Any] = field(default_factory=dict)
    pid: int | None = None
    pid_start: int | None = None

    @property
    def key(self) -> tuple[str, str]:
        return (self.tenant, self.name)

    def to_json(self) -> bytes:
        data = asdict(self)
        return json.dumps(data, indent=1, sort_keys=True).encode()

    @classmethod
    def from_json(cls, text: bytes | str) -> Vm:
        data = json.loads(text)
        data["resources"] = Resources(**data.get("resources") or {})
        return cls(**data)


def _prefix_len(ip: str) -> int:
    return 64 if ":" in ip else 24


class VmDriver:
    """Creates, changes and removes VMs (namespaces, vNICs, workloads) of one vServer."""

    def __init__(self, state_dir: Path, host_netns: str | None = None, prefix: str | None = None,
                 workload: tuple[str, ...] = DEFAULT_WORKLOAD, prefix_len: int | None = None):
        self.records = Path(state_dir) / "vms"
        self.host_netns = host_netns
        self.prefix = prefix or f"{host_netns or 'root'}-vm"
        self.workload = tuple(workload)
        self.prefix_len = prefix_len
        self.children: dict[int, subprocess.Popen[bytes]] = {}

    # names --------------------------------------------------------------------------------
    def netns_name(self, tenant: str, name: str) -> str:
        return f"{self.prefix}-{tenant}:{name}"

    def _record(self, vm: Vm) -> Path:
        return self.records / f"{vm.tenant}:{vm.name}.json"

    def _host(self) -> IPRoute:
        return IPRoute(netns=self.host_netns) if self.host_netns else IPRoute()

    def _plen(self, ip: str) -> int:
        return self.prefix_len or _prefix_len(ip)

    # life cycle -------------------------------------------------------------------------
    def create(self, tenant: str, name: str, mac: str, ips: list[str], port: str,
               resources: Resources, profile: dict[str, Any]) -> Vm:
        """Namespace, vNIC (MAC, IPs, up) and host port (up, not enslaved); all or nothing."""
        vm = Vm(tenant, name, self.netns_name(tenant, name), port, mac.lower(), list(ips),
                resources, dict(profile))
        if netns_inode(vm.netns) is not None:
            raise DriverError(f"namespace {vm.netns} exists already")
        with self._host() as host:
            if host.link_lookup(ifname=port):
                raise DriverError(f"interface {port} exists already on the host")
        netns.create(vm.netns)
        try:
            with self._host() as host:
                host.link("add", ifname=port, kind="veth",
                          peer={"ifname": VNIC, "net_ns_fd": vm.netns})
                host.link("set", index=host.link_lookup(ifname=port)[0], state="up")
            with IPRoute(netns=vm.netns) as v:
                v.link("set", index=v.link_lookup(ifname="lo")[0], state="up")
                idx = v.link_lookup(ifname=VNIC)[0]
                v.link("set", index=idx, address=vm.mac)
                for ip in vm.ips:
                    v.addr("add", index=idx, address=ip, prefixlen=self._plen(ip))
                v.link("set", index=idx, state="up")
            self.save(vm)
        except Exception as exc:
            self._remove_kernel(vm)
            raise DriverError(f"cannot create VM {tenant}/{name}: {exc}") from exc
        return vm

    def save(self, vm: Vm) -> None:
        write_atomically(self._record(vm), vm.to_json())

    def destroy(self, vm: Vm) -> None:
        """Stop the workload, delete the vNIC, the namespace and the record."""
        self.power_off(vm)
        self._remove_kernel(vm)
        self._record(vm).unlink(missing_ok=True)

    def _remove_kernel(self, vm: Vm) -> None:
        with contextlib.suppress(Exception), self._host() as host:
            for idx in host.link_lookup(ifname=vm.port):
                host.link("del", index=idx)
        if netns_inode(vm.netns) is not None:
            netns.remove(vm.netns)

    def exists(self, vm: Vm) -> bool:
        return netns_inode(vm.netns) is not None

    # power -------------------------------------------------------------------------------
    def running(self, vm: Vm) -> bool:
        """The workload runs: same PID, same start time, in the VM's namespace."""
        if vm.pid is None:
            return False
        child = self.children.get(vm.pid)
        if child is not None and child.poll() is not None:
            self.children.pop(vm.pid, None)
            return False
        if proc_start_time(vm.pid) != vm.pid_start:
            return False
        inode = netns_inode(vm.netns)
        with contextlib.suppress(OSError):
            return inode is not None and os.readlink(f"/proc/{vm.pid}/ns/net") == \
                f"net:[{inode}]"
        return False

    def power_on(self, vm: Vm) -> None:
        if self.running(vm):
            return
        with IPRoute(netns=vm.netns) as v:
            v.link("set", index=v.link_lookup(ifname=VNIC)[0], state="up")
        child = subprocess.Popen(["ip", "netns", "exec", vm.netns, *self.workload],
                                 stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                 stderr=subprocess.DEVNULL, start_new_session=True)
        self.children[child.pid] = child
        deadline = time.monotonic() + 5.0       # `ip netns exec` execs the workload in place
        inode = netns_inode(vm.netns)
        while time.monotonic() < deadline:
            with contextlib.suppress(OSError):
                if os.readlink(f"/proc/{child.pid}/ns/net") == f"net:[{inode}]":
                    break
            if child.poll() is not None:
                raise DriverError(f"workload of {vm.tenant}/{vm.name} exited at once "
                                  f"(code {child.returncode})")
            time.sleep(0.005)
        vm.pid, vm.pid_start = child.pid, proc_start_time(child.pid)
        self.save(vm)

    def power_off(self, vm: Vm) -> None:
        """Stop the workload (SIGTERM, then SIGKILL) and take the vNIC down."""
        if self.running(vm):
            assert vm.pid is not None
            self._signal(vm.pid, signal.SIGTERM)
            if not self._wait_gone(vm, 2.0):
                self._signal(vm.pid, signal.SIGKILL)
                self._wait_gone(vm, 2.0)
        if vm.pid is not None:
            self.children.pop(vm.pid, None)
        vm.pid = vm.pid_start = None
        if self.exists(vm):
            with contextlib.suppress(Exception), IPRoute(netns=vm.netns) as v:
                v.link("set", index=v.link_lookup(ifname=VNIC)[0], state="down")
            self.save(vm)

    @staticmethod
    def _signal(pid: int, sig: int) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, sig)

    def _wait_gone(self, vm: Vm, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        child = self.children.get(vm.pid or -1)
        while time.monotonic() < deadline:
            if child is not None:
                with contextlib.suppress(subprocess.TimeoutExpired):
                    child.wait(0.05)
            if not self.running(vm):
                return True
            time.sleep(0.01)
        return not self.running(vm)

    # changes -----------------------------------------------------------------------------
    def set_mac(self, vm: Vm, mac: str) -> None:
        with IPRoute(netns=vm.netns) as v:
            idx = v.link_lookup(ifname=VNIC)[0]
            up = bool(v.get_links(idx)[0]["flags"] & 1)
            v.link("set", index=idx, state="down")
            v.link("set", index=idx, address=mac.lower())
            if up:
                v.link("set", index=idx, state="up")
        vm.mac = mac.lower()
        self.save(vm)

    def set_ips(self, vm: Vm, ips: list[str]) -> None:
        with IPRoute(netns=vm.netns) as v:
            idx = v.link_lookup(ifname=VNIC)[0]
            for ip in set(vm.ips) - set(ips):
                with contextlib.suppress(Exception):
                    v.addr("del", index=idx, address=ip, prefixlen=self._plen(ip))
            for ip in [i for i in ips if i not in vm.ips]:
                v.addr("add", index=idx, address=ip, prefixlen=self._plen(ip))
        vm.ips = list(ips)
        self.save(vm)

    def kernel_view(self, vm: Vm) -> dict[str, Any]:
        """What the kernel holds for the VM's vNIC (MAC, IPs, up) — for checks and tests."""
        with IPRoute(netns=vm.netns) as v:
            idx = v.link_lookup(ifname=VNIC)[0]
            link = v.get_links(idx)[0]
            ips = [a.get_attr("IFA_ADDRESS") for a in v.get_addr(index=idx)
                   if not str(a.get_attr("IFA_ADDRESS")).startswith("fe80")]
            return {"mac": link.get_attr("IFLA_ADDRESS"), "ips": ips,
                    "up": bool(link["flags"] & 1)}

    # rediscovery -------------------------------------------------------------------------
    def discover(self) -> list[Vm]:
        """The VMs left by a previous run: records whose namespace exists. Leftover
        namespaces without a record are removed, records without a namespace dropped."""
        names = set(netns.listnetns()) if NETNS_DIR.exists() else set()
        ours = {n for n in names if n.startswith(self.prefix + "-") and ":" in n}
        found: list[Vm] = []
        for path in sorted(self.records.glob("*.json")) if self.records.exists() else []:
            try:
                vm = Vm.from_json(path.read_bytes())
            except (OSError, ValueError, TypeError) as exc:
                log.error("VM record %s unreadable (%s): ignored", path, exc)
                continue
            if vm.netns not in ours:
                log.warning("VM %s/%s: namespace %s gone; record dropped", vm.tenant, vm.name,
                            vm.netns)
                path.unlink(missing_ok=True)
                continue
            ours.discard(vm.netns)
            if vm.pid is not None and not self.running(vm):
                vm.pid = vm.pid_start = None
            found.append(vm)
        for leftover in sorted(ours):
            log.warning("namespace %s has no VM record (creation cut short): removed", leftover)
            with contextlib.suppress(Exception):
                netns.remove(leftover)
        return found


# -- monitoring ----------------------------------------------------------------------------

@dataclass
class _Sample:
    at: float
    ticks: int
    nic_bytes: int


@dataclass
class Monitor:
    """Monitoring figures of one VM from successive kernel samples (see :meth:`sample`)."""

    samples: int = 0
    up_samples: int = 0
    last: _Sample | None = None
    figures: dict[str, Any] = field(default_factory=dict)

    def sample(self, driver: VmDriver, vm: Vm, now: float | None = None) -> dict[str, Any]:
        now = time.time() if now is None else now
        running = driver.running(vm)
        self.samples += 1
        self.up_samples += running
        inode = netns_inode(vm.netns)
        pids = pids_in_netns(inode) if inode is not None else []
        ticks, rss = cpu_ticks_and_rss(pids)
        nic = 0
        with contextlib.suppress(Exception), driver._host() as host:
            idx = host.link_lookup(ifname=vm.port)
            if idx:
                stats = host.get_links(idx[0])[0].get_attr("IFLA_STATS64") or {}
                nic = int(stats.get("rx_bytes", 0)) + int(stats.get("tx_bytes", 0))
        cur = _Sample(now, ticks, nic)
        cpu = net = 0.0
        if self.last is not None and cur.at > self.last.at:
            dt = cur.at - self.last.at
            cpu = max(0, cur.ticks - self.last.ticks) / CLK_TCK / dt / vm.resources.vcpus * 100
            net = max(0, cur.nic_bytes - self.last.nic_bytes) * 8 / dt / NIC_BPS * 100
        self.last = cur
        mem = rss / (vm.resources.memory * 1024 * 1024) * 100
        uptime = 0
        if running and vm.pid_start is not None:
            uptime = max(0, int(now - (boot_time() + vm.pid_start / CLK_TCK)))
        self.figures = {
            "cpu-utilization": pct(cpu), "memory-utilization": pct(mem),
            "network-utilization": pct(net),
            "availability": pct(100.0 * self.up_samples / self.samples),
            "uptime": uptime, "running": running, "at": now,
        }
        return self.figures


def pct(value: float) -> str:
    """A nvo3t:percent (decimal64, 2 digits, 0..100) as RFC 7951 text."""
    return f"{min(100.0, max(0.0, value)):.2f}"
