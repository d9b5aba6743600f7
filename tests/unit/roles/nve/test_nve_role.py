"""nvo3.roles.nve.role: the NVE agent against an in-memory kernel (no netlink, no root).

What a user would check: the objects in the kernel after a commit, the error a refused commit
gives and that the kernel is left as it was, the status <get> reports, drift repaired.
"""

from __future__ import annotations

import errno
from collections.abc import Iterator
from typing import Any

import pytest

from nvo3.dataplane.fake import FakeKernel
from nvo3.dataplane.kernel import LinkCounters
from nvo3.dataplane.model import DesiredState, FloodEntry, Network, Policy, Port, RemoteMac
from nvo3.netconf.server.role_api import ApplyError, ConfigChange
from nvo3.roles.nve.role import NveRole

Tree = dict[str, Any]
VNI = 100
LOCAL, REMOTE = "198.18.0.1", "198.18.0.2"
MAC1, MAC2 = "02:00:00:00:01:01", "02:00:00:00:02:01"
IP1, IP2 = "198.19.1.1", "198.19.2.1"


class Notifications:
    """A Notifier that records what the role sends."""

    def __init__(self) -> None:
        self.sent: list[tuple[str, Tree]] = []

    def notify(self, module: str, name: str, content: Tree) -> None:
        self.sent.append((name, content))

    def notify_batch(self, module: str, name: str, contents: list[Tree]) -> None:
        self.sent += [(name, c) for c in contents]


def config(state: str = "activated", remote_vtep: str = REMOTE, policy: bool = False) -> Tree:
    """One network with a remote MAC and a flood-list VTEP, one VM attached on tap-vm1."""
    net = {"vni": VNI, "flood-mode": "head-end-replication", "arp-nd-suppression": True,
           "remote-macs": {"remote-mac": [{"mac": MAC2, "ip-address": [IP2],
                                           "remote-vtep": remote_vtep}]},
           "flood-list": {"vtep": [{"address": REMOTE}]}}
    att = {"vni": VNI, "mac": MAC1, "vm-id": "vm1", "ip-address": [IP1], "port": "tap-vm1",
           "state": state}
    nve: Tree = {"local-vtep-address": LOCAL, "udp-port": 4789, "networks": {"network": [net]},
                 "attachments": {"attachment": [att]}}
    if policy:
        nve["policies"] = {"policy": [{"vni": VNI, "mac": MAC1,
                                       "rate-limit": {"rate": 10000, "burst": 32}}]}
    return {"nve": nve}


def commit(role: NveRole, before: Tree, after: Tree) -> None:
    role.apply(ConfigChange(lambda: before, lambda: after))


@pytest.fixture
def kernel() -> FakeKernel:
    return FakeKernel(ports=("tap-vm1", "eth0"))


@pytest.fixture
def notes() -> Notifications:
    return Notifications()


@pytest.fixture
def role(kernel: FakeKernel, notes: Notifications) -> Iterator[NveRole]:
    """An NVE role started on ``kernel`` with an empty saved configuration (the reconcile)."""
    r = NveRole(netns="h1", kernel_factory=lambda _ns: kernel, monitor=False)
    r.start(notes)
    commit(r, {}, {})
    yield r
    r.stop()


def status(role: NveRole) -> dict[str, str]:
    """programming-status of every entry <get> reports, by a readable name."""
    nve = role.state()["nvo3-nve"]["nve"]
    out = {}
    for net in nve.get("networks", {}).get("network", []):
        out[f"network {net['vni']}"] = net["programming-status"]
        for rm in net.get("remote-macs", {}).get("remote-mac", []):
            out[f"remote {rm['mac']}"] = rm["programming-status"]
        for v in net.get("flood-list", {}).get("vtep", []):
            out[f"flood {v['address']}"] = v["programming-status"]
    for att in nve.get("attachments", {}).get("attachment", []):
        out[f"attachment {att['mac']}"] = att["programming-status"]
    for pol in nve.get("policies", {}).get("policy", []):
        out[f"policy {pol['mac']}"] = pol["programming-status"]
    return out


def programmed(kernel: FakeKernel, with_policy: bool = False) -> bool:
    """True when the kernel holds exactly what config() asks for."""
    got = kernel.dump()
    return (got.networks == (Network(VNI, LOCAL),)
            and got.ports == (Port("tap-vm1", VNI, None, MAC1, (IP1,)),)
            and got.remote_macs == (RemoteMac(VNI, MAC2, REMOTE, (IP2,)),)
            and got.floods == (FloodEntry(VNI, REMOTE),)
            and len(got.policies) == (1 if with_policy else 0))


def test_commit_programs_the_kernel_and_reports_programmed(
        role: NveRole, kernel: FakeKernel, notes: Notifications) -> None:
    commit(role, {}, config(policy=True))
    assert programmed(kernel, with_policy=True)
    assert kernel.dump().policies == (Policy("tap-vm1", (), 10000, 32 * 1024),)
    port = {lk.name: lk for lk in kernel.dump_links()}["tap-vm1"]
    bridge = {lk.name: lk for lk in kernel.dump_links()}["br-100"]
    assert port.master == bridge.index
    assert set(status(role).values()) == {"programmed"}
    assert [(name, c["port"], c["state"]) for name, c in notes.sent] == [
        ("attachment-added", "tap-vm1", "activated")]


def test_counters_from_the_kernel_are_reported(role: NveRole, kernel: FakeKernel) -> None:
    kernel.counters["tap-vm1"] = LinkCounters(1, 100, 0, 2, 200, 0)
    commit(role, {}, config())
    [att] = role.state()["nvo3-nve"]["nve"]["attachments"]["attachment"]
    assert att["counters"] == {"rx-packets": 1, "rx-bytes": 100, "rx-drops": 0,
                               "tx-packets": 2, "tx-bytes": 200, "tx-drops": 0}


def test_removing_the_configuration_removes_everything(role: NveRole,
                                                       kernel: FakeKernel) -> None:
    commit(role, {}, config(policy=True))
    commit(role, config(policy=True), {})
    assert kernel.dump() == DesiredState()
    assert {lk.name for lk in kernel.dump_links()} == {"lo", "tap-vm1", "eth0"}
    assert role.state() == {}


def test_refused_kernel_apply_refuses_the_commit_and_leaves_the_kernel(
        role: NveRole, kernel: FakeKernel) -> None:
    commit(role, {}, config(state="associated"))
    before, links_before = kernel.dump(), kernel.dump_links()
    # the role retries once after a resync (its view may have been stale): refuse twice
    kernel.fail_next(RemoteMac(VNI, MAC2, "198.18.0.9"), errno.EPERM, times=2)
    with pytest.raises(ApplyError) as err:
        commit(role, config(state="associated"), config(remote_vtep="198.18.0.9"))
    assert str(err.value) == (f"the kernel refused remote MAC {MAC2} in VNI {VNI} (remote VTEP "
                              "198.18.0.9): Operation not permitted (EPERM)")
    assert err.value.path == ("/nvo3-nve:nve/networks/network[vni='100']/remote-macs/"
                              f"remote-mac[mac='{MAC2}']")
    assert kernel.dump() == before and kernel.dump_links() == links_before
    # the role is not stuck: the same commit goes through once the kernel accepts it
    commit(role, config(state="associated"), config(remote_vtep="198.18.0.9"))
    assert kernel.dump().remote_macs == (RemoteMac(VNI, MAC2, "198.18.0.9", (IP2,)),)


def test_one_refusal_is_retried_after_a_resync(role: NveRole, kernel: FakeKernel) -> None:
    kernel.fail_next(Network(VNI, LOCAL), errno.EBUSY, times=1)
    commit(role, {}, config())
    assert programmed(kernel)


def test_commit_with_a_missing_port_is_refused_naming_it(role: NveRole,
                                                        kernel: FakeKernel) -> None:
    bad = config()
    bad["nve"]["attachments"]["attachment"][0]["port"] = "tap-gone"
    with pytest.raises(ApplyError) as err:
        commit(role, {}, bad)
    assert str(err.value) == "port tap-gone does not exist in namespace h1"
    assert err.value.tag == "invalid-value"
    assert kernel.dump() == DesiredState()


def test_drift_is_repaired(role: NveRole, kernel: FakeKernel) -> None:
    commit(role, {}, config())
    assert programmed(kernel)
    # behind the agent's back: an FDB entry deleted, the VM's port released from its bridge
    del kernel.ns.remote_macs[(VNI, MAC2)]
    lk = kernel.ns.links["tap-vm1"]
    kernel.ns.links["tap-vm1"] = type(lk)(lk.index, lk.name, 0, lk.flags, "")
    assert not programmed(kernel)
    assert role.repair() == 2
    assert programmed(kernel)
    assert set(status(role).values()) == {"programmed"}
    assert role.repair() == 0          # in sync: nothing to do


def test_deleted_devices_are_recreated_with_their_entries(role: NveRole,
                                                          kernel: FakeKernel) -> None:
    commit(role, {}, config())
    kernel.delete_link("vx-100")
    assert kernel.dump().networks == () and kernel.dump().remote_macs == ()
    role.repair()
    assert programmed(kernel)


def test_start_with_a_missing_port_programs_the_rest_and_reports_it_failed(
        kernel: FakeKernel) -> None:
    saved = config()
    saved["nve"]["attachments"]["attachment"][0]["port"] = "tap-later"
    r = NveRole(netns="h1", kernel_factory=lambda _ns: kernel, monitor=False)
    r.start(Notifications())
    try:
        commit(r, {}, saved)                       # the reconcile at start never refuses
        assert kernel.dump().networks == (Network(VNI, LOCAL),)
        assert kernel.dump().ports == ()
        assert status(r)[f"attachment {MAC1}"] == "failed"
        assert status(r)[f"remote {MAC2}"] == "programmed"
        kernel.add_port("tap-later")               # the vServer creates the VM's port
        r.repair()
        assert kernel.dump().ports == (Port("tap-later", VNI, None, MAC1, (IP1,)),)
        assert status(r)[f"attachment {MAC1}"] == "programmed"
    finally:
        r.stop()
    assert kernel.closed
