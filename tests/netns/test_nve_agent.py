"""The NVE agent end to end: `nvo3 serve nve --netns HOST` per host, configured only through
NETCONF, real VXLAN traffic between VMs (namespaces) on three hosts joined by an underlay.

Each agent is its own process (loopback of the root namespace); it programs only its host's
namespace. Every namespace and process is removed afterwards (the lab fixture, finally).
"""

from __future__ import annotations

import re
import shutil
import threading
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
NC = "urn:ietf:params:xml:ns:netconf:base:1.0"
VNI = 100
HOSTS = (1, 2, 3)
VTEP = {i: f"198.18.0.{i}" for i in HOSTS}
MAC = {i: f"02:00:00:00:0{i}:01" for i in HOSTS}
VM_IP = {i: f"198.19.0.{i}" for i in HOSTS}


def test_nft_is_installed() -> None:
    """ACL and anti-spoofing live in nftables: without `nft` this suite must fail."""
    assert shutil.which("nft"), "nftables (the `nft` binary) must be installed"


# -- helpers ------------------------------------------------------------------------------

def cfg(body: str, vtep: str | None = None) -> str:
    local = f"<local-vtep-address>{vtep}</local-vtep-address>" if vtep else ""
    return f'<config><nve xmlns="{NVE}" xmlns:nc="{NC}">{local}{body}</nve></config>'


def network(vni: int, remotes: str = "", floods: str = "", op: str = "") -> str:
    return (f"<networks><network{op}><vni>{vni}</vni><remote-macs>{remotes}</remote-macs>"
            f"<flood-list>{floods}</flood-list></network></networks>")


def remote(mac: str, vtep: str, ip: str | None = None, op: str = "") -> str:
    ip_leaf = f"<ip-address>{ip}</ip-address>" if ip else ""
    return (f"<remote-mac{op}><mac>{mac}</mac>{ip_leaf}<remote-vtep>{vtep}</remote-vtep>"
            "</remote-mac>")


def flood(vtep: str, op: str = "") -> str:
    return f"<vtep{op}><address>{vtep}</address></vtep>"


def attachment(i: int, port: str | None = None, state: str = "activated") -> str:
    return (f"<attachments><attachment><vni>{VNI}</vni><mac>{MAC[i]}</mac><vm-id>vm{i}</vm-id>"
            f"<ip-address>{VM_IP[i]}</ip-address><port>{port or f'tap-vm{i}'}</port>"
            f"<state>{state}</state></attachment></attachments>")


DELETE = ' nc:operation="delete"'


@dataclass
class Host:
    """One host namespace, its agent process and a NETCONF session to it."""

    i: int
    ns: str
    agent: RoleProcess
    client: Client
    state_dir: Path

    def edit(self, body: str) -> None:
        self.client.edit_config(cfg(body, VTEP[self.i]), target="running")

    def restart(self, lab: Lab) -> None:
        self.client.close()
        self.agent.kill()
        self.agent = start_role("nve", self.state_dir, extra_args=("--netns", self.ns))
        self.client = self.agent.connect()


@pytest.fixture
def agents(lab: Lab, tmp_path: Path) -> Iterator[list[Host]]:
    """A list to which tests append started agents; every one is stopped afterwards."""
    started: list[Host] = []
    try:
        yield started
    finally:
        for h in started:
            try:
                h.client.close()
            except Exception:
                pass
            if h.agent.stop(timeout=5) not in (0, -15):
                print((h.state_dir / "daemon.log").read_text()[-3000:])


def start_host(lab: Lab, agents: list[Host], tmp: Path, i: int) -> Host:
    ns = lab.ns(f"h{i}")
    state_dir = tmp / f"nve{i}"
    state_dir.mkdir()
    agent = start_role("nve", state_dir, extra_args=("--netns", ns))
    host = Host(i, ns, agent, agent.connect(), state_dir)
    agents.append(host)
    return host


def fdb(lab: Lab, ns: str, dev: str = f"vx-{VNI}") -> set[tuple[str, str]]:
    """(MAC, dst) of the `self` entries with a dst on ``dev`` (remote MACs + flood entries)."""
    out = lab.sh("bridge", "-n", ns, "fdb", "show", "dev", dev, check=False).stdout
    return {(m.group(1), m.group(2)) for m in
            re.finditer(r"^(\S+) dst (\S+) self permanent", out, re.M)}


# Link state the kernel changes by itself, asynchronously (carrier, operstate, a bridge
# port's forwarding state follow the peer's carrier up to a second or more later): not
# something the agent configures, so not part of what must stay untouched.
_VOLATILE = re.compile(r"\S+_timer\s+\S+|NO-CARRIER,|,?LOWER_UP|(?<=\s)state \S+")


def kernel_snapshot(lab: Lab, ns: str) -> str:
    """Everything the agent could touch in ``ns``, as text (timers and link state left out)."""
    return _VOLATILE.sub("", "\n".join(lab.sh(*cmd, check=False).stdout for cmd in (
        ("ip", "-n", ns, "-d", "-o", "link", "show"),
        ("bridge", "-n", ns, "fdb", "show"),
        ("ip", "-n", ns, "neigh", "show", "nud", "permanent"),
        ("ip", "netns", "exec", ns, "nft", "list", "ruleset"))))


def settled_snapshot(lab: Lab, ns: str, timeout: float = 5.0) -> str:
    """The kernel snapshot once the kernel has settled: link carrier and operstate of new
    bridges change asynchronously up to about a second later (more on a loaded machine), so
    take it when two readings 0.3 s apart agree."""
    last = kernel_snapshot(lab, ns)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        time.sleep(0.3)
        now = kernel_snapshot(lab, ns)
        if now == last:
            return now
        last = now
    return last


def wait_for(pred: Any, timeout: float = 1.0, step: float = 0.02) -> float | None:
    """Seconds until ``pred()`` held, or None after ``timeout``."""
    t0 = time.perf_counter()
    while time.perf_counter() - t0 < timeout:
        if pred():
            return time.perf_counter() - t0
        time.sleep(step)
    return time.perf_counter() - t0 if pred() else None


def ping_loss(lab: Lab, ns: str, dst: str, count: int, size: int, interval: float) -> float:
    out = lab.in_ns(ns, "ping", "-q", "-c", str(count), "-i", str(interval), "-s", str(size),
                    "-W", "1", dst, check=False).stdout
    m = re.search(r"([\d.]+)% packet loss", out)
    return float(m.group(1)) if m else 100.0


# -- three hosts, one VM each ---------------------------------------------------------------

@pytest.fixture
def overlay(lab: Lab, agents: list[Host], tmp_path: Path) -> dict[int, Host]:
    """Three hosts on an underlay bridge, VM i behind host i, agents configured by NETCONF."""
    underlay = lab.ns("ul")
    lab.sh("ip", "-n", underlay, "link", "add", "ulbr", "type", "bridge")
    lab.sh("ip", "-n", underlay, "link", "set", "ulbr", "up")
    hosts = {}
    for i in HOSTS:
        h = start_host(lab, agents, tmp_path, i)
        lab.veth(h.ns, "ul0", underlay, f"ul-h{i}")
        lab.sh("ip", "-n", underlay, "link", "set", f"ul-h{i}", "master", "ulbr")
        lab.sh("ip", "-n", h.ns, "addr", "add", f"{VTEP[i]}/24", "dev", "ul0")
        vm = lab.ns(f"vm{i}")
        lab.veth(vm, "eth0", h.ns, f"tap-vm{i}", mac_a=MAC[i])
        lab.sh("ip", "-n", vm, "addr", "add", f"{VM_IP[i]}/24", "dev", "eth0")
        hosts[i] = h
    return hosts


def program_overlay(hosts: dict[int, Host]) -> None:
    for i, h in hosts.items():
        others = [j for j in HOSTS if j != i]
        h.edit(network(VNI, "".join(remote(MAC[j], VTEP[j], VM_IP[j]) for j in others),
                       "".join(flood(VTEP[j]) for j in others)) + attachment(i))


def vm(lab: Lab, i: int) -> str:
    return f"{lab.prefix}-vm{i}"


def test_overlay_ping_mapping_spoofing_acl_rate(lab: Lab, overlay: dict[int, Host]) -> None:
    h1 = overlay[1]
    h1.client.create_subscription()
    program_overlay(overlay)
    note = h1.client.notifications.get(timeout=5)
    assert note.find(f".//{{{NVE}}}attachment-added/{{{NVE}}}port").text == "tap-vm1"

    # a ping between VMs on different hosts crosses VXLAN
    for j in (2, 3):
        assert lab.ping(vm(lab, 1), VM_IP[j], count=2), f"vm1 -> vm{j}"
    data = overlay[2].client.get(filter=("subtree", f'<nve xmlns="{NVE}"/>'))
    counters = data.find(f".//{{{NVE}}}network/{{{NVE}}}counters")
    assert int(counters.findtext(f"{{{NVE}}}rx-packets")) > 0, "traffic arrived by VXLAN"
    statuses = {e.text for e in data.iter(f"{{{NVE}}}programming-status")}
    assert statuses == {"programmed"}
    att = data.find(f".//{{{NVE}}}attachment/{{{NVE}}}counters")
    assert int(att.findtext(f"{{{NVE}}}tx-packets")) > 0

    # removing the remote mapping (MAC and flood entry of host 2) stops vm1 -> vm2 only
    h1.edit(network(VNI, remote(MAC[2], VTEP[2], op=DELETE), flood(VTEP[2], op=DELETE)))
    assert (MAC[2], VTEP[2]) not in fdb(lab, h1.ns)
    lab.sh("ip", "-n", vm(lab, 1), "neigh", "flush", "all")
    assert not lab.ping(vm(lab, 1), VM_IP[2])
    assert lab.ping(vm(lab, 1), VM_IP[3])
    h1.edit(network(VNI, remote(MAC[2], VTEP[2], VM_IP[2]), flood(VTEP[2])))
    assert lab.ping(vm(lab, 1), VM_IP[2], count=2)

    # a VM spoofing another VM's MAC is dropped at its port
    lab.sh("ip", "-n", vm(lab, 1), "link", "set", "eth0", "address", MAC[3])
    assert not lab.ping(vm(lab, 1), VM_IP[2])
    lab.sh("ip", "-n", vm(lab, 1), "link", "set", "eth0", "address", MAC[1])
    lab.sh("ip", "-n", vm(lab, 1), "neigh", "flush", "all")
    assert lab.ping(vm(lab, 1), VM_IP[2], count=2)

    # ACL: deny ICMP to vm2 drops pings to vm2, not to vm3
    deny = (f"<policies><policy><vni>{VNI}</vni><mac>{MAC[1]}</mac><acl><rule>"
            f"<sequence-id>10</sequence-id><action>deny</action><protocol>icmp</protocol>"
            f"<destination-ip-prefix>{VM_IP[2]}/32</destination-ip-prefix></rule></acl>"
            "</policy></policies>")
    h1.edit(deny)
    assert not lab.ping(vm(lab, 1), VM_IP[2])
    assert lab.ping(vm(lab, 1), VM_IP[3])
    h1.edit(f"<policies><policy{DELETE}><vni>{VNI}</vni><mac>{MAC[1]}</mac></policy></policies>")
    assert lab.ping(vm(lab, 1), VM_IP[2])

    # rate limit: 40 pings of 1,200 bytes in 0.4 s pass unlimited, mostly not at 100 kbit/s
    assert ping_loss(lab, vm(lab, 1), VM_IP[2], 40, 1200, 0.01) == 0.0
    h1.edit(f"<policies><policy><vni>{VNI}</vni><mac>{MAC[1]}</mac><rate-limit><rate>100</rate>"
            "<burst>4</burst></rate-limit></policy></policies>")
    assert ping_loss(lab, vm(lab, 1), VM_IP[2], 40, 1200, 0.01) >= 50.0

    # detaching the VM sends attachment-removed
    while not h1.client.notifications.empty():
        h1.client.notifications.get_nowait()
    h1.edit(f"<policies><policy{DELETE}><vni>{VNI}</vni><mac>{MAC[1]}</mac></policy></policies>"
            f"<attachments><attachment{DELETE}><vni>{VNI}</vni><mac>{MAC[1]}</mac></attachment>"
            "</attachments>")
    note = h1.client.notifications.get(timeout=5)
    assert note.find(f".//{{{NVE}}}attachment-removed") is not None
    assert not lab.ping(vm(lab, 1), VM_IP[2])


# -- one host --------------------------------------------------------------------------------

def bulk_macs(n: int) -> list[tuple[str, str]]:
    return [(f"02:4e:{i >> 24 & 255:02x}:{i >> 16 & 255:02x}:{i >> 8 & 255:02x}:{i & 255:02x}",
             f"198.18.{1 + (i // 250) % 250}.{1 + i % 250}") for i in range(n)]


def configured_fdb(h: Host) -> set[tuple[str, str]]:
    data = h.client.get_config(filter=("subtree", f'<nve xmlns="{NVE}"/>'))
    out = {(e.findtext(f"{{{NVE}}}mac").lower(), e.findtext(f"{{{NVE}}}remote-vtep"))
           for e in data.iter(f"{{{NVE}}}remote-mac")}
    return out | {("00:00:00:00:00:00", e.text) for e in data.iter(f"{{{NVE}}}address")}


def test_kill9_mid_push_then_restart_reconciles_exactly(lab: Lab, agents: list[Host],
                                                         tmp_path: Path) -> None:
    h = start_host(lab, agents, tmp_path, 1)
    h.edit(network(VNI, remote(MAC[2], VTEP[2]), flood(VTEP[2])))
    macs = bulk_macs(10_000)
    push = cfg(network(VNI, "".join(remote(m, v) for m, v in macs)), VTEP[1])
    errors: list[BaseException] = []

    def send() -> None:
        try:
            h.client.edit_config(push, target="running")
        except BaseException as exc:  # the session dies with the agent
            errors.append(exc)

    sender = threading.Thread(target=send, daemon=True)
    sender.start()
    time.sleep(0.05)
    # kill in the middle of the kernel programming if we can see it (bounded), else now
    wait_for(lambda: len(fdb(lab, h.ns)) > 2, timeout=3.0, step=0.002)
    in_kernel_at_kill = len(fdb(lab, h.ns))
    h.agent.kill()
    sender.join(10)
    print(f"kill -9 with {in_kernel_at_kill} FDB entries in the kernel")
    h.restart(lab)
    want = configured_fdb(h)
    got = fdb(lab, h.ns)
    assert len(want) in (2, 10_002)
    assert not want - got, f"{len(want - got)} missing"
    assert not got - want, f"{len(got - want)} extra"
    masters = lab.sh("bridge", "-n", h.ns, "fdb", "show", "dev", f"vx-{VNI}").stdout.count(
        "master br-100 static")
    assert masters == len(want) - 1


def test_hand_deleted_fdb_entries_come_back(lab: Lab, agents: list[Host],
                                            tmp_path: Path) -> None:
    h = start_host(lab, agents, tmp_path, 1)
    # a device and an entry the agent did not create: left alone
    lab.sh("ip", "-n", h.ns, "link", "add", "vxforeign", "type", "vxlan", "id", "999",
           "local", VTEP[1], "dstport", "4789", "nolearning")
    lab.sh("bridge", "-n", h.ns, "fdb", "add", "02:99:00:00:00:01", "dev", "vxforeign",
           "dst", "198.18.9.9", "self", "permanent")
    h.edit(network(VNI, remote(MAC[2], VTEP[2], VM_IP[2]) + remote(MAC[3], VTEP[3]),
                   flood(VTEP[2]) + flood(VTEP[3])))
    want = fdb(lab, h.ns)
    assert want == {(MAC[2], VTEP[2]), (MAC[3], VTEP[3]),
                    ("00:00:00:00:00:00", VTEP[2]), ("00:00:00:00:00:00", VTEP[3])}
    for mac, dst in ((MAC[2], VTEP[2]), ("00:00:00:00:00:00", VTEP[3])):
        lab.in_ns(h.ns, "bridge", "fdb", "del", mac, "dev", f"vx-{VNI}", "dst", dst, "self")
        assert (mac, dst) not in fdb(lab, h.ns)
        took = wait_for(lambda: fdb(lab, h.ns) == want, timeout=1.0)
        assert took is not None, f"{mac} dst {dst} did not come back within a second"
    # an entry changed behind the agent's back is put back too
    lab.in_ns(h.ns, "bridge", "fdb", "replace", MAC[3], "dev", f"vx-{VNI}", "dst", "198.18.7.7",
              "self", "permanent")
    assert wait_for(lambda: fdb(lab, h.ns) == want, timeout=1.0) is not None
    assert fdb(lab, h.ns, "vxforeign") == {("02:99:00:00:00:01", "198.18.9.9")}


def test_links_changed_behind_the_agents_back_come_back(lab: Lab, agents: list[Host],
                                                        tmp_path: Path) -> None:
    h = start_host(lab, agents, tmp_path, 1)
    lab.sh("ip", "-n", h.ns, "link", "add", "tap-vm1", "type", "veth", "peer", "name", "vm1-peer")
    lab.sh("ip", "-n", h.ns, "link", "add", "tap-other", "type", "veth", "peer", "name", "o-peer")
    h.edit(network(VNI, remote(MAC[2], VTEP[2]), flood(VTEP[2])) + attachment(1))
    want = fdb(lab, h.ns)
    assert want == {(MAC[2], VTEP[2]), ("00:00:00:00:00:00", VTEP[2])}

    def link(name: str) -> str:
        return lab.sh("ip", "-n", h.ns, "-o", "link", "show", "dev", name, check=False).stdout

    def attached() -> bool:
        return f"master br-{VNI}" in link("tap-vm1")
    assert attached()
    time.sleep(2.5)          # past the window in which link events are probably the agent's own
    for what, cmd, back in (
            ("a VM port released", ("link", "set", "tap-vm1", "nomaster"), attached),
            ("the VXLAN device set down", ("link", "set", f"vx-{VNI}", "down"),
             lambda: ",UP" in link(f"vx-{VNI}") and fdb(lab, h.ns) == want),
            ("the VXLAN device deleted", ("link", "del", f"vx-{VNI}"),
             lambda: f"master br-{VNI}" in link(f"vx-{VNI}") and fdb(lab, h.ns) == want)):
        lab.sh("ip", "-n", h.ns, *cmd)
        took = wait_for(back, timeout=1.0)
        assert took is not None, f"{what}: not repaired within a second"
    # a link the agent does not own, changed: left alone (no repair, nothing touched)
    lab.sh("ip", "-n", h.ns, "link", "set", "tap-other", "master", f"br-{VNI}")
    time.sleep(0.5)
    assert f"master br-{VNI}" in link("tap-other") and attached()


def test_bad_input_gets_rpc_error_and_leaves_kernel_untouched(lab: Lab, agents: list[Host],
                                                               tmp_path: Path) -> None:
    h = start_host(lab, agents, tmp_path, 1)
    lab.sh("ip", "-n", h.ns, "link", "add", "tap-vm1", "type", "veth", "peer", "name", "tap-p")
    h.edit(network(VNI, remote(MAC[2], VTEP[2]), flood(VTEP[2])) + attachment(1))
    before = settled_snapshot(lab, h.ns)
    bad = {
        "VNI 0": network(0),
        "VNI 2^24": network(1 << 24),
        "unknown port": attachment(1, port="nope0").replace(MAC[1], "02:00:00:00:01:02"),
        "malformed MAC": network(VNI, remote("02:00:00:zz:00:01", VTEP[2])),
        "multicast MAC": network(VNI, remote("03:00:00:00:00:01", VTEP[2])),
        "remote VTEP = local": network(VNI, remote("02:00:00:00:05:01", VTEP[1])),
        "flood VTEP = local": network(VNI, floods=flood(VTEP[1])),
        "kernel refuses (IPv6 VTEP on an IPv4 VXLAN)":
            network(VNI, remote("02:00:00:00:06:01", "2001:db8::6")),
    }
    for what, body in bad.items():
        with pytest.raises(RemoteRpcError) as err:
            h.edit(body)
        print(f"{what}: {err.value}")
        assert kernel_snapshot(lab, h.ns) == before, f"{what}: the kernel changed"
        if what == "unknown port":
            assert "nope0" in str(err.value) and err.value.tag == "invalid-value"
        if what.startswith("kernel"):
            assert err.value.tag == "operation-failed" and "02:00:00:00:06:01" in str(err.value)
    # the agent still works after all that
    h.edit(network(VNI, remote(MAC[3], VTEP[3])))
    assert (MAC[3], VTEP[3]) in fdb(lab, h.ns)
