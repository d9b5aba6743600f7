"""The VM driver: capacity accounting and records (pure), and VMs as namespaces (real kernel,
root only: every namespace and workload created here is removed in a ``finally``)."""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from lxml import etree

from nvo3.roles.vserver.capacity import Ledger, Resources
from nvo3.roles.vserver.nve_entries import default_port, nve_edit, nve_entries
from nvo3.roles.vserver.processes import netns_inode
from nvo3.roles.vserver.usage import UsageSampler, pct, pids_in_netns
from nvo3.roles.vserver.vm_driver import Vm, VmDriver

# -- pure ----------------------------------------------------------------------------------

def test_resources_defaults_and_merge() -> None:
    assert Resources.of(None) == Resources(1, 512, 10)
    assert Resources.of({"vcpus": 4}) == Resources(4, 512, 10)
    assert Resources(2, 1024, 20).merged({"memory": 2048}) == Resources(2, 2048, 20)


def test_ledger_capacity_and_resize() -> None:
    ledger = Ledger()
    ledger.set_capacity({"vcpus": 4, "memory": 2048, "max-vms": 2})
    assert ledger.shortfall(("t", "a"), Resources(2, 1024, 10)) is None
    ledger.reserve(("t", "a"), Resources(2, 1024, 10))
    assert "vcpus: 3 asked, 2 free of 4" in ledger.shortfall(("t", "b"), Resources(3, 512, 1))
    assert "memory" in ledger.shortfall(("t", "b"), Resources(1, 1536, 1))
    ledger.reserve(("t", "b"), Resources(2, 1024, 10))
    assert "max-vms 2" in ledger.shortfall(("t", "c"), Resources(1, 1, 1))
    # a resize counts the VM's own allocation as free
    assert ledger.shortfall(("t", "a"), Resources(2, 1024, 50)) is None
    assert "vcpus" in ledger.shortfall(("t", "a"), Resources(3, 1024, 10))
    assert ledger.load() == {"vcpus-used": 4, "memory-used": 2048, "disk-used": 20,
                             "vm-count": 2, "vcpus-total": 4, "memory-total": 2048}
    ledger.release(("t", "a"))
    assert ledger.load()["vm-count"] == 1
    ledger.set_capacity(None)                     # no capacity configured: no limit
    assert ledger.shortfall(("t", "z"), Resources(1000, 10**6, 10**6)) is None


def test_record_round_trip_and_percent() -> None:
    vm = Vm("alice", "vm1", "h-vm-alice:vm1", "vmabc", "02:00:00:00:01:01", ["198.19.0.1"],
            Resources(2, 256, 5), {"vnid": 100, "state": "powered-on"}, 42, 4242)
    assert Vm.from_json(vm.to_json()) == vm
    assert (pct(-1), pct(12.345), pct(250)) == ("0.00", "12.35", "100.00")


def test_port_names_fit_an_interface() -> None:
    port = default_port("alice", "a-very-long-vm-name-" * 3)
    assert len(port) == 15 and port != default_port("alice", "other")


def test_nve_entries_follow_power_state_and_policy() -> None:
    vm = Vm("t", "vm1", "ns", "p1", "02:00:00:00:01:01", ["198.19.0.1"],
            profile={"vnid": 300, "vlan": 10, "state": "created",
                     "policy": {"rate-limit": {"rate": 1000}}})
    network, att, policy = nve_entries(vm)
    assert network == {"vni": 300}
    assert att == {"vni": 300, "mac": "02:00:00:00:01:01", "vm-id": "vm1", "port": "p1",
                   "state": "associated", "ip-address": ["198.19.0.1"], "vlan": 10}
    assert policy == {"vni": 300, "mac": "02:00:00:00:01:01", "rate-limit": {"rate": 1000}}
    vm.profile.update(state="powered-on", policy={})
    _, att, policy = nve_entries(vm)
    assert att["state"] == "activated" and policy is None


def test_nve_edit_orders_containers_and_marks_operations() -> None:
    xml = nve_edit([("attachments", "remove", {"vni": 1, "mac": "02:00:00:00:00:01"}),
                    ("networks", "merge", {"vni": 1}),
                    ("policies", "replace", {"vni": 1, "mac": "02:00:00:00:00:01"})])
    root = etree.fromstring(xml)
    nve = root[0]
    assert [etree.QName(c).localname for c in nve] == ["networks", "attachments", "policies"]
    ops = [e.get("{urn:ietf:params:xml:ns:netconf:base:1.0}operation") for e in nve.iter()
           if e.get("{urn:ietf:params:xml:ns:netconf:base:1.0}operation")]
    assert ops == ["merge", "remove", "replace"]


# -- real namespaces ---------------------------------------------------------------------------

@pytest.fixture
def host() -> Iterator[str]:
    if os.geteuid() != 0 or shutil.which("ip") is None:
        pytest.skip("needs root and iproute2")
    name = f"nvo3u-{os.getpid()}-h"
    subprocess.run(["ip", "netns", "add", name], check=True)
    try:
        yield name
    finally:
        for ns in subprocess.run(["ip", "netns", "list"], capture_output=True,
                                 text=True).stdout.split("\n"):
            ns = ns.split(" ")[0]
            if ns.startswith(name):
                for pid in subprocess.run(["ip", "netns", "pids", ns], capture_output=True,
                                          text=True).stdout.split():
                    os.kill(int(pid), 9)
                subprocess.run(["ip", "netns", "del", ns], check=False)


def links(ns: str) -> str:
    return subprocess.run(["ip", "-n", ns, "-o", "link"], capture_output=True,
                          text=True).stdout


def test_create_power_change_destroy(host: str, tmp_path: Path) -> None:
    drv = VmDriver(tmp_path, host)
    vm = drv.create("alice", "vm1", "02:00:00:00:01:01", ["198.19.0.1"], "vnic1",
                    Resources(1, 64, 1), {"vnid": 100})
    assert vm.netns == f"{host}-vm-alice:vm1" and drv.exists(vm)
    assert "vnic1@" in links(host)
    assert drv.kernel_view(vm) == {"mac": "02:00:00:00:01:01", "ips": ["198.19.0.1"],
                                   "up": True}
    drv.power_on(vm)
    assert drv.running(vm) and pids_in_netns(netns_inode(vm.netns)) == [vm.pid]
    mon = UsageSampler()
    first = mon.sample(drv, vm)
    time.sleep(0.05)
    second = mon.sample(drv, vm)
    assert first["running"] and second["availability"] == "100.00"
    assert float(second["memory-utilization"]) > 0           # sleep's RSS against 64 MiB
    drv.set_mac(vm, "02:00:00:00:01:02")
    drv.set_ips(vm, ["198.19.0.2", "198.19.1.2"])
    assert drv.kernel_view(vm) == {"mac": "02:00:00:00:01:02",
                                   "ips": ["198.19.0.2", "198.19.1.2"], "up": True}
    pid = vm.pid
    drv.power_off(vm)
    assert not drv.running(vm) and vm.pid is None and not Path(f"/proc/{pid}/ns").exists()
    drv.destroy(vm)
    assert not drv.exists(vm) and "vnic1" not in links(host)
    assert not list((tmp_path / "vms").glob("*.json"))


def test_create_refuses_a_taken_port_and_leaves_nothing(host: str, tmp_path: Path) -> None:
    drv = VmDriver(tmp_path, host)
    subprocess.run(["ip", "-n", host, "link", "add", "taken0", "type", "bridge"], check=True)
    with pytest.raises(Exception, match="taken0"):
        drv.create("t", "vm1", "02:00:00:00:01:01", [], "taken0", Resources(), {})
    assert netns_inode(drv.netns_name("t", "vm1")) is None


def test_rediscovery_after_a_restart(host: str, tmp_path: Path) -> None:
    drv = VmDriver(tmp_path, host)
    vm = drv.create("t", "vm1", "02:00:00:00:01:01", ["198.19.0.1"], "vnic1", Resources(),
                    {"vnid": 7, "state": "powered-on"})
    drv.power_on(vm)
    off = drv.create("t", "vm2", "02:00:00:00:01:02", [], "vnic2", Resources(), {"vnid": 7})
    subprocess.run(["ip", "netns", "add", f"{drv.prefix}-t:half"], check=True)   # cut short
    subprocess.run(["ip", "netns", "del", off.netns], check=True)                 # gone
    again = VmDriver(tmp_path, host)                 # a new agent process: no children
    found = again.discover()
    assert [v.key for v in found] == [("t", "vm1")]
    assert found[0].pid == vm.pid and again.running(found[0])
    assert found[0].profile == {"vnid": 7, "state": "powered-on"}
    assert netns_inode(f"{drv.prefix}-t:half") is None
    again.destroy(found[0])                          # kills the workload by its PID
    assert not drv.running(vm)
