"""VMs made real on this machine: a VM is a network namespace with a vNIC into its host.

A VM ``(tenant, name)`` of a vServer is

* a network namespace ``<prefix>-<tenant>:<name>`` (``:`` never occurs in a tenant or VM
  name, so the name is unambiguous; the prefix is the vServer's own, e.g. its host
  namespace's name plus ``-vm``);
* a veth pair: ``eth0`` inside the VM (the VM's MAC and IP addresses) and the host-side end
  ``port`` in the host namespace (the namespace the NVE agent programs; the NVE enslaves it
  into the VNI's bridge when the attachment is activated); the netlink work is
  :class:`~nvo3.dataplane.vm_links.VmLinks`';
* while powered on, a workload process inside the namespace (default ``sleep infinity``),
  started in its own session and signalled only by its PID (checked against its start time
  and its network namespace, so a reused PID is never signalled);
* a JSON record ``<state_dir>/vms/<tenant>:<name>.json`` (written atomically) with everything
  above plus the role's profile of the VM, so a restarted agent rediscovers its VMs:
  :meth:`VmDriver.discover` lists the namespaces with the prefix and reads the records back
  (a namespace without a record is the leftover of a creation cut short and is removed; a
  record without a namespace is a VM that is gone).

Capacity accounting is in capacity.py, monitoring figures in usage.py.
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

from nvo3.common.files import write_atomically
from nvo3.dataplane.vm_links import Address, VmLinks
from nvo3.roles.vserver.capacity import Resources
from nvo3.roles.vserver.processes import NETNS_DIR, in_netns, netns_inode, proc_start_time

log = logging.getLogger(__name__)

DEFAULT_WORKLOAD = ("sleep", "infinity")


class DriverError(Exception):
    """A VM could not be created or changed; nothing of it is left half done."""


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
        self.links = VmLinks(host_netns)

    # names --------------------------------------------------------------------------------
    def netns_name(self, tenant: str, name: str) -> str:
        """The namespace of VM tenant/name."""
        return f"{self.prefix}-{tenant}:{name}"

    def _record(self, vm: Vm) -> Path:
        return self.records / f"{vm.tenant}:{vm.name}.json"

    def _addresses(self, ips: list[str]) -> list[Address]:
        return [(ip, self.prefix_len or _prefix_len(ip)) for ip in ips]

    # life cycle -------------------------------------------------------------------------
    def create(self, tenant: str, name: str, mac: str, ips: list[str], port: str,
               resources: Resources, profile: dict[str, Any]) -> Vm:
        """Namespace, vNIC (MAC, IPs, up) and host port (up, not enslaved); all or nothing."""
        vm = Vm(tenant, name, self.netns_name(tenant, name), port, mac.lower(), list(ips),
                resources, dict(profile))
        if netns_inode(vm.netns) is not None:
            raise DriverError(f"namespace {vm.netns} exists already")
        if self.links.port_exists(port):
            raise DriverError(f"interface {port} exists already on the host")
        self.links.create_namespace(vm.netns)
        try:
            self.links.add_vnic(vm.netns, port, vm.mac, self._addresses(vm.ips))
            self.save(vm)
        except Exception as exc:
            self._remove_kernel(vm)
            raise DriverError(f"cannot create VM {tenant}/{name}: {exc}") from exc
        return vm

    def save(self, vm: Vm) -> None:
        """Write the VM's record."""
        write_atomically(self._record(vm), vm.to_json())

    def destroy(self, vm: Vm) -> None:
        """Stop the workload, delete the vNIC, the namespace and the record."""
        self.power_off(vm)
        self._remove_kernel(vm)
        self._record(vm).unlink(missing_ok=True)

    def _remove_kernel(self, vm: Vm) -> None:
        self.links.remove_port(vm.port)
        if netns_inode(vm.netns) is not None:
            self.links.remove_namespace(vm.netns)

    def exists(self, vm: Vm) -> bool:
        """The VM's namespace exists."""
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
        return in_netns(vm.pid, netns_inode(vm.netns))

    def power_on(self, vm: Vm) -> None:
        """vNIC up, then start the workload in the VM's namespace (waits until it is in)."""
        if self.running(vm):
            return
        self.links.set_vnic_up(vm.netns, True)
        child = subprocess.Popen(["ip", "netns", "exec", vm.netns, *self.workload],
                                 stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                 stderr=subprocess.DEVNULL, start_new_session=True)
        self.children[child.pid] = child
        deadline = time.monotonic() + 5.0       # `ip netns exec` execs the workload in place
        inode = netns_inode(vm.netns)
        while time.monotonic() < deadline:
            if in_netns(child.pid, inode):
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
            with contextlib.suppress(Exception):
                self.links.set_vnic_up(vm.netns, False)
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
        """Give the VM's vNIC another MAC address."""
        self.links.set_vnic_mac(vm.netns, mac.lower())
        vm.mac = mac.lower()
        self.save(vm)

    def set_ips(self, vm: Vm, ips: list[str]) -> None:
        """Give the VM's vNIC these IP addresses (others removed)."""
        self.links.change_vnic_addresses(
            vm.netns, self._addresses([ip for ip in vm.ips if ip not in ips]),
            self._addresses([i for i in ips if i not in vm.ips]))
        vm.ips = list(ips)
        self.save(vm)

    def kernel_view(self, vm: Vm) -> dict[str, Any]:
        """What the kernel holds for the VM's vNIC (MAC, IPs, up) — for checks and tests."""
        return self.links.vnic_view(vm.netns).as_dict()

    # rediscovery -------------------------------------------------------------------------
    def discover(self) -> list[Vm]:
        """The VMs left by a previous run: records whose namespace exists. Leftover
        namespaces without a record are removed, records without a namespace dropped."""
        names = self.links.namespaces() if NETNS_DIR.exists() else set()
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
                self.links.remove_namespace(leftover)
        return found
