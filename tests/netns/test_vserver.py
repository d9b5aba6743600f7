"""The vServer agent end to end: per host an NVE agent and a vServer agent
(`nvo3 serve nve|vserver --netns HOST`), an nDirector for the overlay, VMs as namespaces
created by NETCONF RPCs, real VXLAN traffic between them.

The test plays the vCenter (it calls create-vm, relocate-vm, ... on the vServers); the last
test runs a real vCenter when the role exists. Every daemon is stopped by PID, every VM
namespace (and the workload inside, by PID) and every lab namespace is removed afterwards.
"""

from __future__ import annotations

import re
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from nvo3.launcher import RoleProcess, start_role
from nvo3.netconf.client.session import Client, RemoteRpcError
from nvo3.roles.peers import codec as peer

if TYPE_CHECKING:
    from conftest import Lab

NVE = "urn:nvo3:yang:nvo3-nve"
ND = "urn:nvo3:yang:nvo3-ndirector"
VS = "urn:nvo3:yang:nvo3-vserver"
VC = "urn:nvo3:yang:nvo3-vcenter"
VNI = 300
HOSTS = (1, 2)
VTEP = {i: f"198.18.0.{i}" for i in HOSTS}


def wait_for(pred: Any, timeout: float = 10.0, step: float = 0.05) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pred():
            return True
        time.sleep(step)
    return bool(pred())


def mac(n: int) -> str:
    return f"02:00:00:00:03:{n:02x}"


def ip(n: int) -> str:
    return f"198.19.3.{n}"


@dataclass
class Host:
    i: int
    ns: str
    nve: RoleProcess
    vs: RoleProcess
    vsc: Client
    vs_dir: Path

    def call(self, rpc: str, **given: Any) -> dict[str, Any]:
        return peer.call(self.vsc, "nvo3-vserver", rpc,
                         {k.replace("_", "-"): v for k, v in given.items()})

    def vms(self) -> dict[str, dict[str, Any]]:
        tree = peer.get_state(self.vsc, "nvo3-vserver", "vserver")
        return {v["name"]: v for v in (tree.get("vms") or {}).get("vm", [])}

    def state(self) -> dict[str, Any]:
        return peer.get_state(self.vsc, "nvo3-vserver", "vserver")

    def vm_ns(self, name: str, tenant: str = "t1") -> str:
        return f"{self.ns}-vm-{tenant}:{name}"


@dataclass
class Overlay:
    lab: Lab
    tmp: Path
    hosts: dict[int, Host] = field(default_factory=dict)
    procs: list[RoleProcess] = field(default_factory=list)
    nd: RoleProcess | None = None
    vc: RoleProcess | None = None

    def nve_config(self, i: int) -> str:
        p = self.hosts[i].nve
        return (f"<nve><name>h{i}</name><address>{p.host}</address><port>{p.port}</port>"
                f"<username>{p.username}</username><password>{p.password}</password>"
                f"<host-key>{p.host_key}</host-key></nve>")

    def configure_vserver(self, i: int, capacity: str = "<vcpus>8</vcpus>",
                          vcenter: str = "") -> None:
        h = self.hosts[i]
        h.vsc.edit_config(f'<config><vserver xmlns="{VS}"><name>vs{i}</name>'
                          f"<capacity>{capacity}</capacity>{self.nve_config(i)}{vcenter}"
                          "</vserver></config>", target="running")

    def restart_vserver(self, i: int) -> None:
        h = self.hosts[i]
        h.vsc.close()
        h.vs.kill()
        h.vs = start_role("vserver", h.vs_dir, extra_args=("--netns", h.ns))
        self.procs.append(h.vs)
        h.vsc = h.vs.connect()

    def vm_namespaces(self) -> set[str]:
        out = self.lab.sh("ip", "netns", "list").stdout
        return {line.split()[0] for line in out.splitlines() if "-vm-" in line
                and line.startswith(self.lab.prefix)}

    def ping(self, src: Host, vm: str, dst: str, count: int = 2) -> bool:
        return self.lab.ping(src.vm_ns(vm), dst, count=count)


@pytest.fixture
def overlay(lab: Lab, tmp_path: Path) -> Iterator[Overlay]:
    """Two hosts on an underlay, each with an NVE and a vServer agent; an nDirector."""
    ov = Overlay(lab, tmp_path)
    try:
        underlay = lab.ns("ul")
        lab.sh("ip", "-n", underlay, "link", "add", "ulbr", "type", "bridge")
        lab.sh("ip", "-n", underlay, "link", "set", "ulbr", "up")
        for i in HOSTS:
            ns = lab.ns(f"h{i}")
            lab.veth(ns, "ul0", underlay, f"ul-h{i}")
            lab.sh("ip", "-n", underlay, "link", "set", f"ul-h{i}", "master", "ulbr")
            lab.sh("ip", "-n", ns, "addr", "add", f"{VTEP[i]}/24", "dev", "ul0")
            (tmp_path / f"nve{i}").mkdir()
            (tmp_path / f"vs{i}").mkdir()
            nve = start_role("nve", tmp_path / f"nve{i}", extra_args=("--netns", ns))
            ov.procs.append(nve)
            with nve.connect() as c:
                c.edit_config(f'<config><nve xmlns="{NVE}"><nve-id>h{i}</nve-id>'
                              f"<local-vtep-address>{VTEP[i]}</local-vtep-address></nve>"
                              "</config>", target="running")
            vs = start_role("vserver", tmp_path / f"vs{i}", extra_args=("--netns", ns))
            ov.procs.append(vs)
            ov.hosts[i] = Host(i, ns, nve, vs, vs.connect(), tmp_path / f"vs{i}")
            ov.configure_vserver(i)
        (tmp_path / "nd").mkdir()
        ov.nd = start_role("ndirector", tmp_path / "nd")
        ov.procs.append(ov.nd)
        nves = "".join(ov.nve_config(i).replace("</nve>", f"<vtep-address>{VTEP[i]}"
                                                 "</vtep-address></nve>") for i in HOSTS)
        members = "".join(f"<member-nve>h{i}</member-nve>" for i in HOSTS)
        with ov.nd.connect() as c:
            c.edit_config(f'<config><ndirector xmlns="{ND}"><nves>{nves}</nves><networks>'
                          f"<network><vni>{VNI}</vni><tenant>t1</tenant>{members}</network>"
                          "</networks></ndirector></config>", target="running")
        yield ov
    finally:
        for h in ov.hosts.values():
            try:
                h.vsc.close()
            except Exception:
                pass
        for p in reversed(ov.procs):
            if p.stop(timeout=5) not in (0, -15):
                print(f"{p.role}: " + (p.state_dir / "daemon.log").read_text()[-3000:])
        # VMs outlive their agent (as on a real hypervisor): remove them and their workloads
        for ns in ov.vm_namespaces():
            for pid in lab.sh("ip", "netns", "pids", ns, check=False).stdout.split():
                subprocess.run(["kill", "-9", pid], check=False)
            lab.sh("ip", "netns", "del", ns, check=False)


def create(h: Host, n: int, name: str | None = None, **extra: Any) -> dict[str, Any]:
    return h.call("create-vm", tenant="t1", name=name or f"vm{n}", vnid=VNI, mac_address=mac(n),
                  ip_address=[ip(n)], vm_group="web", **extra)


def attachments(h: Host) -> dict[str, str]:
    with h.nve.connect() as c:
        cfg = peer.get_config(c, "nvo3-nve", "nve")
    return {a["mac"]: a.get("state", "associated")
            for a in (cfg.get("attachments") or {}).get("attachment", [])}


def ping_loss(lab: Lab, ns: str, dst: str, count: int, interval: float) -> subprocess.Popen:
    return subprocess.Popen(["ip", "netns", "exec", ns, "ping", "-q", "-n", "-c", str(count),
                             "-i", str(interval), "-W", "1", dst],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def loss_of(p: subprocess.Popen) -> tuple[int, int]:
    out, _ = p.communicate(timeout=60)
    m = re.search(r"(\d+) packets transmitted, (\d+) received", out)
    assert m, out
    return int(m.group(1)), int(m.group(2))


# -- tests ------------------------------------------------------------------------------------

def test_create_ping_modify_terminate(overlay: Overlay) -> None:
    lab, h1, h2 = overlay.lab, overlay.hosts[1], overlay.hosts[2]
    h1.vsc.create_subscription()
    out = create(h1, 1, resources={"vcpus": 2, "memory": 256})
    assert out["vserver"] == "vs1" and out["nve"] == "h1" and out["state"] == "powered-on"
    create(h2, 2)
    assert attachments(h1) == {mac(1): "activated"}
    assert wait_for(lambda: overlay.ping(h1, "vm1", ip(2), count=1)), "vm1 -> vm2 over VXLAN"
    assert overlay.ping(h2, "vm2", ip(1))
    notes = [h1.vsc.notifications.get(timeout=5) for _ in range(2)]
    assert [n.findtext(f".//{{{VS}}}state") for n in notes] == ["created", "powered-on"]

    # state: the VM, its attachment, its monitoring figures, the load
    assert wait_for(lambda: "monitoring" in h1.vms().get("vm1", {}), 5)
    vm1 = h1.vms()["vm1"]
    assert (vm1["state"], vm1["nve"], vm1["attachment-state"], vm1["port"]) == \
        ("powered-on", "h1", "activated", out["port"])
    assert vm1["monitoring"]["availability"] == "100.0" or \
        float(vm1["monitoring"]["availability"]) == 100.0
    assert float(vm1["monitoring"]["memory-utilization"]) > 0
    state = h1.state()
    assert state["nve"]["connection-state"] == "connected"
    assert state["load"] == {"vcpus-total": 8, "vcpus-used": 2, "memory-used": "256",
                             "disk-used": "10", "vm-count": 1} or \
        int(state["load"]["vcpus-used"]) == 2
    print("vm1 monitoring:", vm1["monitoring"])

    # bad input: rpc-error, nothing changes
    before = (overlay.vm_namespaces(), attachments(h1))
    cases = {
        "duplicate MAC": (lambda: create(h1, 1, name="dup"), "invalid-value"),
        "existing VM": (lambda: create(h1, 9, name="vm1"), "data-exists"),
        "no capacity": (lambda: create(h1, 9, resources={"vcpus": 7}), "resource-denied"),
        "unknown VM (terminate)": (lambda: h1.call("terminate-vm", tenant="t1", name="nope"),
                                   "data-missing"),
        "unknown VM (modify)": (lambda: h1.call("modify-vm", tenant="t1", name="nope",
                                                vlan=5), "data-missing"),
        "modify beyond capacity": (lambda: h1.call("modify-vm", tenant="t1", name="vm1",
                                                   resources={"vcpus": 9}), "resource-denied"),
    }
    for what, (fn, tag) in cases.items():
        with pytest.raises(RemoteRpcError) as err:
            fn()
        print(f"{what}: {err.value.tag}: {err.value}")
        assert err.value.tag == tag, what
        assert (overlay.vm_namespaces(), attachments(h1)) == before, what
    with pytest.raises(RemoteRpcError) as err:
        cases["no capacity"][0]()
    assert "no capacity" in str(err.value)
    with pytest.raises(RemoteRpcError) as err:      # VNI out of range: the YANG says no
        h1.vsc.dispatch(f'<create-vm xmlns="{VS}"><tenant>t1</tenant><name>x</name>'
                        f"<vnid>16777216</vnid><mac-address>{mac(9)}</mac-address></create-vm>")
    print("VNI 2^24:", err.value)
    assert (overlay.vm_namespaces(), attachments(h1)) == before

    # modify: resources, IP (vNIC and NVE), power off and on
    out = h1.call("modify-vm", tenant="t1", name="vm1", resources={"vcpus": 4},
                  ip_address=[ip(11)])
    assert out["resources"] == {"vcpus": 4, "memory": 256, "disk": 10}
    assert ip(11) in lab.sh("ip", "-n", h1.vm_ns("vm1"), "addr").stdout
    assert wait_for(lambda: overlay.ping(h2, "vm2", ip(11), count=1))
    assert h1.vms()["vm1"]["ip-address"] == [ip(11)]
    try:                                             # VLAN: the NVE decides (kernel support)
        h1.call("modify-vm", tenant="t1", name="vm1", vlan=10)
        assert h1.vms()["vm1"]["vlan"] == 10
        h1.call("modify-vm", tenant="t1", name="vm1", vlan=1)
        print("VLAN change accepted by the NVE")
    except RemoteRpcError as exc:
        print("VLAN change refused by the NVE, nothing changed:", exc)
        assert "vlan" not in h1.vms()["vm1"] and attachments(h1) == {mac(1): "activated"}
        assert overlay.ping(h2, "vm2", ip(11))
    assert h1.call("modify-vm", tenant="t1", name="vm1",
                   power_state="powered-off")["state"] == "powered-off"
    assert attachments(h1) == {mac(1): "associated"}
    assert not overlay.ping(h2, "vm2", ip(11), count=1)
    assert h1.call("modify-vm", tenant="t1", name="vm1",
                   power_state="powered-on")["state"] == "powered-on"
    assert wait_for(lambda: overlay.ping(h2, "vm2", ip(11), count=1))

    # a MAC change: the vNIC and the NVE attachment follow, the overlay still reaches it
    h1.call("modify-vm", tenant="t1", name="vm1", mac_address=mac(12))
    assert mac(12) in lab.sh("ip", "-n", h1.vm_ns("vm1"), "link", "show", "eth0").stdout
    assert attachments(h1) == {mac(12): "activated"}
    lab.sh("ip", "-n", h2.vm_ns("vm2"), "neigh", "flush", "all")
    assert wait_for(lambda: overlay.ping(h2, "vm2", ip(11), count=1))

    # a VNI change: vm1 leaves vm2's virtual network (unreachable), then comes back
    h1.call("modify-vm", tenant="t1", name="vm1", vnid=VNI + 1)
    assert h1.vms()["vm1"]["vnid"] == VNI + 1
    lab.sh("ip", "-n", h2.vm_ns("vm2"), "neigh", "flush", "all")
    assert not overlay.ping(h2, "vm2", ip(11), count=2)
    h1.call("modify-vm", tenant="t1", name="vm1", vnid=VNI)
    lab.sh("ip", "-n", h2.vm_ns("vm2"), "neigh", "flush", "all")
    assert wait_for(lambda: overlay.ping(h2, "vm2", ip(11), count=1))

    # terminate: nothing left behind
    port2 = h2.vms()["vm2"]["port"]
    assert h2.call("terminate-vm", tenant="t1", name="vm2") == {"state": "deleted"}
    assert h2.vm_ns("vm2") not in overlay.vm_namespaces()
    assert port2 not in lab.sh("ip", "-n", h2.ns, "-o", "link").stdout
    assert attachments(h2) == {} and h2.vms() == {}
    assert int(h2.state()["load"]["vm-count"]) == 0
    assert not lab.in_ns(h2.ns, "sh", "-c", "ip netns pids " + h2.vm_ns("vm2"),
                         check=False).stdout.strip()


def test_relocate_while_pinging_then_replicate(overlay: Overlay) -> None:
    lab, h1, h2 = overlay.lab, overlay.hosts[1], overlay.hosts[2]
    create(h1, 1)
    create(h2, 2, resources={"vcpus": 2})
    assert wait_for(lambda: overlay.ping(h1, "vm1", ip(2), count=1))
    profile = {"vnid": VNI, "mac-address": mac(2), "ip-address": [ip(2)], "vm-group": "web",
               "resources": {"vcpus": 2}}
    losses = []
    for src, dst in ((h2, h1), (h1, h2)):            # h2 -> h1 (becomes local), and back
        pinger = ping_loss(lab, h1.vm_ns("vm1"), ip(2), 150, 0.02)
        time.sleep(0.5)
        t0 = time.perf_counter()
        out = dst.call("relocate-vm", tenant="t1", name="vm2", role="destination",
                       peer_vserver=f"vs{src.i}", profile=profile)
        assert out["state"] == "powered-on" and out["vserver"] == f"vs{dst.i}"
        assert src.call("relocate-vm", tenant="t1", name="vm2", role="source",
                        peer_vserver=f"vs{dst.i}")["state"] == "deleted"
        took = time.perf_counter() - t0
        sent, received = loss_of(pinger)
        losses.append(sent - received)
        print(f"relocate vm2 vs{src.i} -> vs{dst.i}: {took * 1000:.0f} ms for both calls, "
              f"{sent - received} of {sent} pings lost (20 ms interval)")
        assert "vm2" in dst.vms() and "vm2" not in src.vms()
        assert src.vm_ns("vm2") not in overlay.vm_namespaces()
        assert attachments(dst).get(mac(2)) == "activated" and mac(2) not in attachments(src)
        assert sent - received <= 25, "bounded loss (<= 0.5 s at 20 ms)"
    assert overlay.ping(h1, "vm1", ip(2))

    # replicate vm1 (h1) to h2 under a new name and address: the copy runs before the source
    # is touched, the source keeps running
    src_out = h1.call("replicate-vm", tenant="t1", name="vm1", role="source",
                      peer_vserver="vs2")
    assert (src_out["name"], src_out["state"]) == ("vm1", "powered-on")
    out = h2.call("replicate-vm", tenant="t1", name="vm1", role="destination",
                  peer_vserver="vs1", replica_name="vm1-copy",
                  profile={"vnid": VNI, "mac-address": mac(21), "ip-address": [ip(21)]})
    assert (out["name"], out["state"], out["vserver"]) == ("vm1-copy", "powered-on", "vs2")
    assert h2.vms()["vm1-copy"]["replica-of"] == "vm1"
    assert h1.vms()["vm1"]["state"] == "powered-on"
    assert wait_for(lambda: overlay.ping(h1, "vm1", ip(21), count=1))
    assert overlay.ping(h2, "vm1-copy", ip(1))


def test_restart_rediscovers_vms(overlay: Overlay) -> None:
    h1, h2 = overlay.hosts[1], overlay.hosts[2]
    create(h1, 1)
    create(h1, 3, resources={"memory": 128})
    create(h2, 2)
    assert wait_for(lambda: overlay.ping(h2, "vm2", ip(1), count=1))
    before = {k: (v["port"], v["mac-address"], v["state"]) for k, v in h1.vms().items()}
    pid = int(overlay.lab.sh("ip", "netns", "pids", h1.vm_ns("vm1")).stdout.split()[0])
    overlay.restart_vserver(1)                     # kill -9; the VMs keep running
    after = {k: (v["port"], v["mac-address"], v["state"]) for k, v in h1.vms().items()}
    assert after == before
    assert int(h1.state()["load"]["vm-count"]) == 2
    assert int(overlay.lab.sh("ip", "netns", "pids", h1.vm_ns("vm1")).stdout.split()[0]) == pid
    assert overlay.ping(h2, "vm2", ip(1)) and overlay.ping(h2, "vm2", ip(3))
    # the restarted agent still manages them
    assert h1.call("terminate-vm", tenant="t1", name="vm3") == {"state": "deleted"}
    assert h1.vm_ns("vm3") not in overlay.vm_namespaces()
    assert not Path(f"/proc/{pid}").exists() or h1.vms()["vm1"]["state"] == "powered-on"


def test_with_vcenter_registration_reports_and_rediscovery(overlay: Overlay) -> None:
    (overlay.tmp / "vc").mkdir()
    vc = overlay.vc = start_role("vcenter", overlay.tmp / "vc")
    overlay.procs.append(vc)
    vcc = vc.connect()
    h1 = overlay.hosts[1]
    vcc.edit_config(f'<config><vcenter xmlns="{VC}"><name>vc1</name><tenants><tenant>'
                    f"<name>t1</name><vnid>{VNI}</vnid><vm-group><name>web</name></vm-group>"
                    "</tenant></tenants><vservers><vserver>"
                    f"<name>vs1</name><address>{h1.vs.host}</address><port>{h1.vs.port}</port>"
                    f"<username>{h1.vs.username}</username><password>{h1.vs.password}"
                    f"</password><host-key>{h1.vs.host_key}</host-key><nve>h1</nve></vserver>"
                    "</vservers></vcenter></config>", target="running")
    vcenter = (f"<vcenter><name>vc1</name><address>{vc.host}</address><port>{vc.port}</port>"
               f"<username>{vc.username}</username><password>{vc.password}</password>"
               f"<host-key>{vc.host_key}</host-key><report-interval>1</report-interval>"
               "</vcenter>")
    overlay.configure_vserver(1, vcenter=vcenter)
    create(h1, 1)
    create(h1, 3)
    assert wait_for(lambda: all(v.get("registered") for v in h1.vms().values()), 15)
    assert h1.state()["vcenter"]["connection-state"] == "connected"
    found = list(peer.call(vcc, "nvo3-vcenter", "lookup-vm",
                           {"tenant": "t1", "name": "vm1"})["vm"])
    print("lookup vm1:", found)
    assert (found[0]["vserver"], found[0]["nve"], found[0]["state"]) == ("vs1", "h1",
                                                                        "powered-on")

    def last_report() -> str | None:
        vs = peer.get_state(vcc, "nvo3-vcenter", "vcenter").get("vservers", {}).get("vserver")
        return next((v.get("last-report") for v in vs or [] if v["name"] == "vs1"), None)

    assert wait_for(lambda: last_report() is not None, 5)
    before = last_report()
    overlay.restart_vserver(1)                     # rediscovered, bulk-registered, reported
    assert wait_for(lambda: len(h1.vms()) == 2 and
                    all(v.get("registered") for v in h1.vms().values()), 15)
    assert wait_for(lambda: last_report() != before, 5)
    log = (h1.vs_dir / "daemon.log").read_text()
    assert "bulk-register-vms t1: 2 registered, 0 failed" in log
    h1.call("terminate-vm", tenant="t1", name="vm3")

    def known(name: str) -> bool:
        try:
            return bool(peer.call(vcc, "nvo3-vcenter", "lookup-vm",
                                  {"tenant": "t1", "name": name}).get("vm"))
        except RemoteRpcError:
            return False
    assert wait_for(lambda: not known("vm3"), 10) and known("vm1")
    vcc.close()
