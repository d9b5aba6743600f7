"""The nDirector end to end: four NVE agents (`nvo3 serve nve --netns HOST`) and the nDirector
as processes, VMs as namespaces, real VXLAN traffic.

The test plays the vServers: it attaches VMs by edit-config on an NVE's attachments. The
nDirector learns them (its NVE sessions: a read, then notifications) and pushes remote MACs
and flood lists to the other NVEs. Every namespace and process is removed afterwards.
"""

from __future__ import annotations

import re
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from nvo3.launcher import RoleProcess, start_role
from nvo3.netconf.client.session import Client, RemoteRpcError

if TYPE_CHECKING:
    from conftest import Lab

NVE = "urn:nvo3:yang:nvo3-nve"
ND = "urn:nvo3:yang:nvo3-ndirector"
NC = "urn:ietf:params:xml:ns:netconf:base:1.0"
VNI = 200
HOSTS = (1, 2, 3, 4)
VTEP = {i: f"198.18.0.{i}" for i in HOSTS}
MAC = {i: f"02:00:00:00:0{i}:01" for i in HOSTS}
VM_IP = {i: f"198.19.0.{i}" for i in HOSTS}


def wait_for(pred: Any, timeout: float = 5.0, step: float = 0.02) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pred():
            return True
        time.sleep(step)
    return bool(pred())


@dataclass
class Host:
    i: int
    ns: str
    agent: RoleProcess
    client: Client
    state_dir: Path

    def edit(self, body: str) -> None:
        self.client.edit_config(f'<config><nve xmlns="{NVE}" xmlns:nc="{NC}">{body}</nve>'
                                "</config>", target="running")

    def attach(self, mac: str, ip: str, port: str, state: str = "activated",
               vm: str = "vm") -> None:
        self.edit(f"<attachments><attachment><vni>{VNI}</vni><mac>{mac}</mac><vm-id>{vm}</vm-id>"
                  f"<ip-address>{ip}</ip-address><port>{port}</port><state>{state}</state>"
                  "</attachment></attachments>")

    def detach(self, mac: str) -> None:
        self.edit(f'<attachments><attachment nc:operation="remove"><vni>{VNI}</vni>'
                  f"<mac>{mac}</mac></attachment></attachments>")

    def restart(self, crash: bool = True) -> None:
        self.client.close()
        self.agent.kill() if crash else self.agent.stop()
        deadline = time.monotonic() + 5
        while True:
            try:
                self.agent = start_role("nve", self.state_dir, port=self.agent.port,
                                        password=self.agent.password,
                                        extra_args=("--netns", self.ns))
                break
            except RuntimeError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)
        self.client = self.agent.connect()


class Processes:
    """Every daemon a test starts; stopped (by PID) at the end."""

    def __init__(self) -> None:
        self.hosts: list[Host] = []
        self.others: list[RoleProcess] = []

    def stop_all(self) -> None:
        for h in self.hosts:
            try:
                h.client.close()
            except Exception:
                pass
            h.agent.stop(timeout=5)
        for p in self.others:
            p.stop(timeout=5)


@pytest.fixture
def procs() -> Iterator[Processes]:
    p = Processes()
    try:
        yield p
    finally:
        p.stop_all()


def fdb(lab: Lab, ns: str) -> dict[str, set[str]]:
    """MAC -> dsts of the `self permanent` entries on the VNI's VXLAN device."""
    out = lab.sh("bridge", "-n", ns, "fdb", "show", "dev", f"vx-{VNI}", check=False).stdout
    table: dict[str, set[str]] = {}
    for m in re.finditer(r"^(\S+) dst (\S+) self permanent", out, re.M):
        table.setdefault(m.group(1), set()).add(m.group(2))
    return table


def nd_config(hosts: dict[int, Host], extra: str = "") -> str:
    nves = "".join(
        f"<nve><name>h{i}</name><address>{h.agent.host}</address><port>{h.agent.port}</port>"
        f"<username>{h.agent.username}</username><password>{h.agent.password}</password>"
        f"<host-key>{h.agent.host_key}</host-key><vtep-address>{VTEP[i]}</vtep-address></nve>"
        for i, h in hosts.items())
    members = "".join(f"<member-nve>h{i}</member-nve>" for i in hosts)
    return (f'<config><ndirector xmlns="{ND}"><nves>{nves}</nves><networks><network>'
            f"<vni>{VNI}</vni><tenant>t1</tenant>{members}</network></networks>{extra}"
            "</ndirector></config>")


@dataclass
class Overlay:
    lab: Lab
    hosts: dict[int, Host]
    nd: RoleProcess
    ndc: Client
    procs: Processes
    tmp: Path

    def vm(self, i: int | str) -> str:
        return f"{self.lab.prefix}-vm{i}"

    def converged(self, mac: str, at: int) -> bool:
        """Every other host's kernel points `mac` at host `at`'s VTEP."""
        return all(fdb(self.lab, h.ns).get(mac) == {VTEP[at]}
                   for i, h in self.hosts.items() if i != at)

    def move_port(self, vm: str, mac: str, ip: str, src: int, dst: int, port: str) -> None:
        """The VM's vNIC leaves host src and appears at host dst (same MAC and IP)."""
        lab = self.lab
        lab.sh("ip", "-n", self.hosts[src].ns, "link", "del", port, check=False)
        lab.veth(vm, "eth0", self.hosts[dst].ns, port, mac_a=mac)
        lab.sh("ip", "-n", vm, "addr", "add", f"{ip}/24", "dev", "eth0")

    def restart_nd(self, crash: bool = True) -> None:
        self.ndc.close()
        old = self.nd
        old.kill() if crash else old.stop()
        deadline = time.monotonic() + 5
        while True:
            try:
                self.nd = start_role("ndirector", old.state_dir, port=old.port,
                                     password=old.password)
                break
            except RuntimeError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)
        self.procs.others.append(self.nd)
        self.ndc = self.nd.connect()

    def nd_state(self) -> Any:
        return self.ndc.get(filter=("subtree", f'<ndirector xmlns="{ND}"/>'))

    def stat(self, name: str) -> int:
        return int(self.nd_state().findtext(f".//{{{ND}}}statistics/{{{ND}}}{name}") or 0)


def build_overlay(lab: Lab, procs: Processes, tmp: Path, extra: str = "") -> Overlay:
    underlay = lab.ns("ul")
    lab.sh("ip", "-n", underlay, "link", "add", "ulbr", "type", "bridge")
    lab.sh("ip", "-n", underlay, "link", "set", "ulbr", "up")
    hosts: dict[int, Host] = {}
    for i in HOSTS:
        ns = lab.ns(f"h{i}")
        lab.veth(ns, "ul0", underlay, f"ul-h{i}")
        lab.sh("ip", "-n", underlay, "link", "set", f"ul-h{i}", "master", "ulbr")
        lab.sh("ip", "-n", ns, "addr", "add", f"{VTEP[i]}/24", "dev", "ul0")
        vm = lab.ns(f"vm{i}")
        lab.veth(vm, "eth0", ns, f"tap-vm{i}", mac_a=MAC[i])
        lab.sh("ip", "-n", vm, "addr", "add", f"{VM_IP[i]}/24", "dev", "eth0")
        state_dir = tmp / f"nve{i}"
        state_dir.mkdir()
        agent = start_role("nve", state_dir, extra_args=("--netns", ns))
        h = Host(i, ns, agent, agent.connect(), state_dir)
        procs.hosts.append(h)
        h.edit(f"<local-vtep-address>{VTEP[i]}</local-vtep-address><networks><network>"
               f"<vni>{VNI}</vni></network></networks>")
        h.attach(MAC[i], VM_IP[i], f"tap-vm{i}", vm=f"vm{i}")
        hosts[i] = h
    nd_dir = tmp / "nd"
    nd_dir.mkdir()
    nd = start_role("ndirector", nd_dir)
    procs.others.append(nd)
    ndc = nd.connect()
    ndc.edit_config(nd_config(hosts, extra), target="running")
    ov = Overlay(lab, hosts, nd, ndc, procs, tmp)
    for i in HOSTS:
        assert wait_for(lambda i=i: ov.converged(MAC[i], i), 10), \
            f"MAC of vm{i} not on every other host: {[fdb(lab, h.ns) for h in hosts.values()]}"
    return ov


@pytest.fixture
def overlay(lab: Lab, procs: Processes, tmp_path: Path) -> Overlay:
    return build_overlay(lab, procs, tmp_path)


def lookup(c: Client, **key: str) -> dict[str, str]:
    body = "".join(f"<{k.replace('_', '-')}>{v}</{k.replace('_', '-')}>" for k, v in key.items())
    reply = c.dispatch(f'<lookup xmlns="{ND}"><vni>{VNI}</vni>{body}</lookup>')
    return {re.sub(r"{.*}", "", e.tag): e.text for e in reply if e.text}


# -- tests -----------------------------------------------------------------------------------

def test_attachments_distributed_ping_lookup_state(overlay: Overlay) -> None:
    lab, hosts = overlay.lab, overlay.hosts
    for i in HOSTS:                      # flood lists: every other VTEP
        others = {VTEP[j] for j in HOSTS if j != i}
        assert fdb(lab, hosts[i].ns).get("00:00:00:00:00:00") == others
    for j in (2, 3, 4):
        assert lab.ping(overlay.vm(1), VM_IP[j], count=2), f"vm1 -> vm{j}"
    assert lookup(overlay.ndc, mac=MAC[3])["nve"] == "h3"
    found = lookup(overlay.ndc, ip_address=VM_IP[4])
    assert (found["nve"], found["vtep-address"], found["mac"]) == ("h4", VTEP[4], MAC[4])
    with pytest.raises(RemoteRpcError) as exc:
        lookup(overlay.ndc, mac="02:00:00:00:0f:0f")
    assert exc.value.tag == "data-missing"
    state = overlay.nd_state()
    sessions = state.findall(f".//{{{ND}}}nve/{{{ND}}}session")
    assert [s.findtext(f"{{{ND}}}state") for s in sessions] == ["connected"] * 4
    assert all(int(s.findtext(f"{{{ND}}}last-push-latency")) > 0 for s in sessions)
    assert all(s.findtext(f"{{{ND}}}remote-mappings") == "3" for s in sessions)
    assert overlay.stat("mappings") == 4


def test_move_repoints_every_remote_fdb(overlay: Overlay) -> None:
    """Break-before-make: detach at h1, attach at h2 (what the NVE agent accepts today)."""
    lab, hosts = overlay.lab, overlay.hosts
    overlay.move_port(overlay.vm(1), MAC[1], VM_IP[1], 1, 2, "tap-vm1")
    hosts[1].detach(MAC[1])
    assert wait_for(lambda: all(MAC[1] not in fdb(lab, h.ns) for h in hosts.values()))
    hosts[2].attach(MAC[1], VM_IP[1], "tap-vm1", vm="vm1")
    assert wait_for(lambda: overlay.converged(MAC[1], 2)), [fdb(lab, h.ns) for h in hosts.values()]
    assert lookup(overlay.ndc, mac=MAC[1])["nve"] == "h2"
    for j in (3, 4):
        lab.sh("ip", "-n", overlay.vm(j), "neigh", "flush", "all")
        assert lab.ping(overlay.vm(j), VM_IP[1], count=2), f"vm{j} -> moved vm1"


def test_move_make_before_break_and_stale_leftover(overlay: Overlay) -> None:
    lab, hosts = overlay.lab, overlay.hosts
    note = []
    overlay.ndc.create_subscription(callback=note.append)
    # vm1 moves from h1 to h2: associate at h2, then activate, then detach at h1
    overlay.move_port(overlay.vm(1), MAC[1], VM_IP[1], 1, 2, "tap-vm1")
    hosts[2].attach(MAC[1], VM_IP[1], "tap-vm1", state="associated", vm="vm1")
    time.sleep(0.2)
    assert fdb(lab, hosts[3].ns).get(MAC[1]) == {VTEP[1]}, "associated: not switched yet"
    hosts[2].attach(MAC[1], VM_IP[1], "tap-vm1", state="activated", vm="vm1")
    assert wait_for(lambda: overlay.converged(MAC[1], 2)), [fdb(lab, h.ns) for h in hosts.values()]
    found = lookup(overlay.ndc, mac=MAC[1])
    assert (found["nve"], found["sequence-number"]) == ("h2", "1")
    for j in (3, 4):
        lab.sh("ip", "-n", overlay.vm(j), "neigh", "flush", "all")
        assert lab.ping(overlay.vm(j), VM_IP[1], count=2), f"vm{j} -> moved vm1"
    assert wait_for(lambda: any(n.find(f".//{{{ND}}}mapping-changed") is not None
                                for n in note), 2)
    # h1 never detached (a leftover): after an nDirector restart it is read as stale
    overlay.restart_nd(crash=True)
    assert wait_for(lambda: overlay.stat("stale-updates-refused") >= 1, 15)
    found = lookup(overlay.ndc, mac=MAC[1])
    assert (found["nve"], found["sequence-number"]) == ("h2", "1")
    time.sleep(0.5)
    assert overlay.converged(MAC[1], 2) or fdb(lab, hosts[1].ns).get(MAC[1]) is None
    for i in (3, 4):
        assert fdb(lab, hosts[i].ns).get(MAC[1]) == {VTEP[2]}
    hosts[1].detach(MAC[1])
    assert wait_for(lambda: overlay.converged(MAC[1], 2))


def test_duplicate_mac_detected_and_frozen(lab: Lab, procs: Processes, tmp_path: Path) -> None:
    dmd = ("<duplicate-mac-detection><max-moves>3</max-moves><window-seconds>60</window-seconds>"
           "</duplicate-mac-detection>")
    ov = build_overlay(lab, procs, tmp_path, dmd)
    notes: list[Any] = []
    ov.ndc.create_subscription(callback=notes.append)
    dup_mac, dup_ip = "02:00:00:00:0d:01", "198.19.0.99"
    for i in (2, 3):                     # two VMs with the same MAC behind h2 and h3
        vm = lab.ns(f"dup{i}")
        lab.veth(vm, "eth0", ov.hosts[i].ns, "tap-dup", mac_a=dup_mac)
    ov.hosts[2].attach(dup_mac, dup_ip, "tap-dup", vm="dup")
    assert wait_for(lambda: ov.converged(dup_mac, 2))
    for i, state in ((3, "activated"), (2, "associated"), (2, "activated"),
                     (3, "associated"), (3, "activated")):
        ov.hosts[i].attach(dup_mac, dup_ip, "tap-dup", state=state, vm="dup")
        time.sleep(0.1)
    assert wait_for(lambda: any(n.find(f".//{{{ND}}}duplicate-mac-detected") is not None
                                for n in notes), 3)
    frozen_at = lookup(ov.ndc, mac=dup_mac)["nve"]
    state = ov.nd_state()
    entry = [m for m in state.iter(f"{{{ND}}}mapping") if m.findtext(f"{{{ND}}}mac") == dup_mac]
    assert entry[0].findtext(f"{{{ND}}}frozen") == "true"
    assert ov.stat("duplicate-macs-detected") == 1
    reply = ov.ndc.dispatch(f'<clear-duplicate-mac xmlns="{ND}"><vni>{VNI}</vni>'
                            f"<mac>{dup_mac}</mac></clear-duplicate-mac>")
    assert reply.findtext(f"{{{ND}}}cleared") == "1"
    assert frozen_at in ("h2", "h3")


def test_nve_agent_and_ndirector_restarts_lose_nothing(overlay: Overlay) -> None:
    lab, hosts = overlay.lab, overlay.hosts
    before = {i: fdb(lab, h.ns) for i, h in hosts.items()}
    # an NVE agent crashes; meanwhile a VM attaches elsewhere; it comes back resynchronized
    hosts[3].agent.kill()
    new_mac, new_ip = "02:00:00:00:0e:01", "198.19.0.50"
    vm = lab.ns("vm5")
    lab.veth(vm, "eth0", hosts[4].ns, "tap-vm5", mac_a=new_mac)
    lab.sh("ip", "-n", vm, "addr", "add", f"{new_ip}/24", "dev", "eth0")
    hosts[4].attach(new_mac, new_ip, "tap-vm5", vm="vm5")
    assert wait_for(lambda: all(fdb(lab, hosts[i].ns).get(new_mac) == {VTEP[4]} for i in (1, 2)))
    hosts[3].restart(crash=True)
    assert wait_for(lambda: fdb(lab, hosts[3].ns).get(new_mac) == {VTEP[4]}, 15)
    assert {k: v for k, v in fdb(lab, hosts[3].ns).items() if k != new_mac} == before[3]
    assert lab.ping(vm, VM_IP[3], count=2)
    # the nDirector crashes while vm1 pings vm2: no ping is lost, no entry is lost
    pinger = subprocess.Popen(["ip", "netns", "exec", overlay.vm(1), "ping", "-q", "-c", "40",
                               "-i", "0.1", "-W", "1", VM_IP[2]], stdout=subprocess.PIPE,
                              text=True)
    try:
        time.sleep(0.3)
        overlay.restart_nd(crash=True)
        out, _ = pinger.communicate(timeout=20)
    finally:
        if pinger.poll() is None:
            pinger.kill()
            pinger.wait(5)
    assert " 0% packet loss" in out, out
    assert wait_for(lambda: all(s.findtext(f"{{{ND}}}state") == "connected" for s in
                                overlay.nd_state().findall(f".//{{{ND}}}nve/{{{ND}}}session")), 15)
    time.sleep(0.5)
    after = {i: fdb(lab, h.ns) for i, h in hosts.items()}
    for i in HOSTS:
        assert {k: v for k, v in after[i].items() if k != new_mac} == before[i]
    assert overlay.stat("mappings") == 5
