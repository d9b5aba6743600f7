"""One control plane for two data centers over etcd (issue 14), with real processes: a
three-member etcd cluster (Debian's etcd), four NVE agents in namespaces (h1, h2 in dc1; h3,
h4 in dc2), two nDirector replicas per data center (`nvo3 serve ndirector --etcd ...`), VMs
as namespaces, real VXLAN traffic.

The test plays the vServers (it attaches VMs by edit-config on an NVE, as test_ndirector
does). One federation serves the whole module (about 10 s to build); each test leaves it
whole again (a killed replica restarted, stopped etcd members started). Every process is
stopped by its PID and every namespace removed.
"""

from __future__ import annotations

import os
import signal
import subprocess
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from test_ndirector import HOSTS, MAC, ND, VM_IP, VNI, VTEP, Host, Processes, fdb, wait_for

from nvo3.lab.etcd import EtcdCluster
from nvo3.lab.netns import Netns, netns_exec, ping, run
from nvo3.launcher import RoleProcess, start_role
from nvo3.netconf.client.session import Client, RemoteRpcError
from nvo3.roles.ndirector.etcd_client import EtcdClient, EtcdSettings

DC = {1: "dc1", 2: "dc1", 3: "dc2", 4: "dc2"}
REPLICAS = {"dc1": ("dc1a", "dc1b"), "dc2": ("dc2a", "dc2b")}


class Lab(Netns):
    ns = Netns.namespace
    sh = staticmethod(run)
    in_ns = staticmethod(netns_exec)
    ping = staticmethod(ping)


@dataclass
class Director:
    name: str
    dc: str
    proc: RoleProcess
    client: Client

    def state(self) -> Any:
        return self.client.get(filter=("subtree", f'<ndirector xmlns="{ND}"/>'))

    def store(self, leaf: str) -> str | None:
        return self.state().findtext(f".//{{{ND}}}shared-store/{{{ND}}}{leaf}")


@dataclass
class Federation:
    lab: Lab
    etcd: EtcdCluster
    hosts: dict[int, Host]
    directors: dict[str, Director]
    procs: Processes
    tmp: Path
    config: dict[str, str] = field(default_factory=dict)

    def vm(self, i: int | str) -> str:
        return f"{self.lab.prefix}-vm{i}"

    def converged(self, mac: str, at: int) -> bool:
        return all(fdb(self.lab, h.ns).get(mac) == {VTEP[at]}
                   for i, h in self.hosts.items() if i != at)

    def kernels(self) -> dict[int, dict[str, set[str]]]:
        return {i: fdb(self.lab, h.ns) for i, h in self.hosts.items()}

    def leader(self, dc: str) -> Director:
        for name in REPLICAS[dc]:
            d = self.directors[name]
            if d.proc.process.poll() is None and _safe(lambda d=d: d.store("role")) == "leader":
                return d
        raise AssertionError(f"no leader in {dc}")

    def has_leader(self, dc: str) -> bool:
        try:
            self.leader(dc)
            return True
        except AssertionError:
            return False

    def start_director(self, name: str, dc: str, port: int = 0,
                       password: str | None = None) -> Director:
        state_dir = self.tmp / name
        state_dir.mkdir(exist_ok=True)
        deadline = time.monotonic() + 5
        while True:
            try:
                proc = start_role("ndirector", state_dir, port=port, password=password,
                                  extra_args=("--etcd", ",".join(self.etcd.endpoints),
                                              "--data-center", dc, "--director-name", name))
                break
            except RuntimeError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)
        self.procs.others.append(proc)
        client = proc.connect()
        client.edit_config(self.config[dc], target="running")
        d = Director(name, dc, proc, client)
        self.directors[name] = d
        return d

    def restart(self, name: str) -> Director:
        old = self.directors[name]
        try:
            old.client.close()
        except Exception:
            pass
        if old.proc.process.poll() is None:
            old.proc.kill()
        return self.start_director(name, old.dc, old.proc.port, old.proc.password)

    def move(self, mac: str, ip: str, vm: str, src: int, dst: int) -> None:
        """Make-before-break: the port appears at dst (associated, then activated), then
        leaves src."""
        port = f"tap-{vm}"
        self.lab.sh("ip", "-n", self.hosts[src].ns, "link", "del", port, check=False)
        self.lab.veth(self.vm(vm[2:]), "eth0", self.hosts[dst].ns, port, mac_a=mac)
        self.lab.sh("ip", "-n", self.vm(vm[2:]), "addr", "add", f"{ip}/24", "dev", "eth0")
        self.hosts[dst].attach(mac, ip, port, state="activated", vm=vm)
        self.hosts[src].detach(mac)


def _safe(fn: Any) -> Any:
    try:
        return fn()
    except Exception:
        return None


def nd_config(hosts: dict[int, Host], dc: str) -> str:
    mine = {i: h for i, h in hosts.items() if DC[i] == dc}
    nves = "".join(
        f"<nve><name>h{i}</name><address>{h.agent.host}</address><port>{h.agent.port}</port>"
        f"<username>{h.agent.username}</username><password>{h.agent.password}</password>"
        f"<host-key>{h.agent.host_key}</host-key><vtep-address>{VTEP[i]}</vtep-address></nve>"
        for i, h in mine.items())
    members = "".join(f"<member-nve>h{i}</member-nve>" for i in mine)
    return (f'<config><ndirector xmlns="{ND}"><data-center>{dc}</data-center><nves>{nves}</nves>'
            f"<networks><network><vni>{VNI}</vni><tenant>t1</tenant>{members}</network>"
            "</networks></ndirector></config>")


@pytest.fixture(scope="module")
def fed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Federation]:
    assert os.geteuid() == 0, "the netns tests need root"
    tmp = tmp_path_factory.mktemp("federated")
    lab = Lab(prefix=f"nvo3f{os.getpid() % 100000}")
    procs = Processes()
    etcd = EtcdCluster(tmp / "etcd")
    try:
        etcd.start()
        underlay = lab.ns("ul")
        lab.bridge(underlay, "ulbr")
        hosts: dict[int, Host] = {}
        for i in HOSTS:
            ns = lab.ns(f"h{i}")
            lab.veth(ns, "ul0", underlay, f"ul-h{i}")
            lab.enslave(underlay, f"ul-h{i}", "ulbr")
            lab.address(ns, "ul0", f"{VTEP[i]}/24")
            vm = lab.ns(f"vm{i}")
            lab.veth(vm, "eth0", ns, f"tap-vm{i}", mac_a=MAC[i])
            lab.address(vm, "eth0", f"{VM_IP[i]}/24")
            state_dir = tmp / f"nve{i}"
            state_dir.mkdir()
            agent = start_role("nve", state_dir, extra_args=("--netns", ns))
            h = Host(i, ns, agent, agent.connect(), state_dir)
            procs.hosts.append(h)
            h.edit(f"<local-vtep-address>{VTEP[i]}</local-vtep-address><networks><network>"
                   f"<vni>{VNI}</vni></network></networks>")
            h.attach(MAC[i], VM_IP[i], f"tap-vm{i}", vm=f"vm{i}")
            hosts[i] = h
        f = Federation(lab, etcd, hosts, {}, procs, tmp,
                       {dc: nd_config(hosts, dc) for dc in REPLICAS})
        for dc, names in REPLICAS.items():
            for name in names:
                f.start_director(name, dc)
        for i in HOSTS:
            assert wait_for(lambda i=i: f.converged(MAC[i], i), 20), f.kernels()
        yield f
    finally:
        for d in f.directors.values() if "f" in locals() else ():
            _safe(d.client.close)
        procs.stop_all()
        etcd.stop()
        lab.cleanup()


def etcd_mapping(fed: Federation, mac: str) -> str | None:
    client = EtcdClient(EtcdSettings(tuple(fed.etcd.endpoints)))
    _, kv = client.get(f"/nvo3/mappings/{VNI}/{mac}")
    return kv.value if kv else None


# -- tests -----------------------------------------------------------------------------------

def test_two_data_centers_one_control_plane(fed: Federation) -> None:
    lab, hosts = fed.lab, fed.hosts
    for i in HOSTS:        # flood lists: every other VTEP, the other data center's included
        assert fdb(lab, hosts[i].ns).get("00:00:00:00:00:00") == \
            {VTEP[j] for j in HOSTS if j != i}, i
    assert lab.ping(fed.vm(1), VM_IP[3], count=2), "vm1 (dc1) -> vm3 (dc2)"
    for dc in REPLICAS:    # one leader and one standby per data center, both warm
        leader = fed.leader(dc)
        standby = next(fed.directors[n] for n in REPLICAS[dc] if n != leader.name)
        assert standby.store("role") == "standby"
        assert standby.store("leader") == leader.name
        assert wait_for(lambda s=standby: s.state().findtext(
            f".//{{{ND}}}statistics/{{{ND}}}mappings") == "4", 3)
    # what dc2 learned reaches dc1 through etcd: vm1 moves from h1 (dc1) to h3 (dc2)
    fed.move(MAC[1], VM_IP[1], "vm1", 1, 3)
    assert wait_for(lambda: fed.converged(MAC[1], 3), 5), fed.kernels()
    assert '"nve":"h3"' in (etcd_mapping(fed, MAC[1]) or "")
    lab.sh("ip", "-n", fed.vm(2), "neigh", "flush", "all")
    assert lab.ping(fed.vm(2), VM_IP[1], count=2), "vm2 (dc1) -> vm1, now in dc2"
    fed.move(MAC[1], VM_IP[1], "vm1", 3, 1)
    assert wait_for(lambda: fed.converged(MAC[1], 1), 5), fed.kernels()
    # a standby refuses changes it cannot make: a clear rpc-error
    standby = next(fed.directors[n] for n in REPLICAS["dc1"] if n != fed.leader("dc1").name)
    with pytest.raises(RemoteRpcError) as exc:
        standby.client.dispatch(f'<clear-duplicate-mac xmlns="{ND}"/>')
    assert exc.value.tag == "operation-failed" and "standby" in str(exc.value)


def test_leader_killed_during_moves(fed: Federation) -> None:
    """kill -9 dc1's leader while vm2 moves back and forth in dc1: the standby leads within
    a few seconds, the last move is where every kernel points, pings keep flowing."""
    lab = fed.lab
    old = fed.leader("dc1")
    # vm1 (h1, dc1) pings vm4 (h4, dc2) all along: the NVEs forward on what they hold
    pinger = subprocess.Popen(["ip", "netns", "exec", fed.vm(1), "ping", "-i", "0.05", "-c",
                               "120", "-W", "1", VM_IP[4]], stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, text=True)
    try:
        at = 2
        killed_at = 0.0
        for n in range(8):
            dst = 1 if at == 2 else 2
            fed.move(MAC[2], VM_IP[2], "vm2", at, dst)
            at = dst
            if n == 3:
                old.proc.kill()
                killed_at = time.monotonic()
            time.sleep(0.3)
        assert wait_for(lambda: fed.has_leader("dc1"), 5)
        new = fed.leader("dc1")
        assert new.name != old.name
        assert wait_for(lambda: fed.converged(MAC[2], at), 8), (at, fed.kernels())
        assert f'"nve":"h{at}"' in (etcd_mapping(fed, MAC[2]) or "")
        print(f"failover: new leader {new.name}, converged "
              f"{time.monotonic() - killed_at:.2f} s after the kill")
    finally:
        out, _ = pinger.communicate(timeout=20)
    received = int(out.split(" received")[0].rsplit(",", 1)[-1].strip()) \
        if " received" in out else 0
    assert received >= 114, out        # vm1 -> vm4 never depended on dc1's leader
    lab.sh("ip", "-n", fed.vm(4), "neigh", "flush", "all")
    assert lab.ping(fed.vm(4), VM_IP[2], count=2), "vm4 -> vm2 after the failover"
    fed.restart(old.name)
    assert wait_for(lambda: fed.directors[old.name].store("role") == "standby", 5)


def test_etcd_members_down(fed: Federation) -> None:
    """One member of three down: nothing stops. Two down: the NVEs keep what they have,
    changes are refused and the state says so; once etcd is back, everything catches up."""
    etcd, lab = fed.etcd, fed.lab
    first, second = etcd.members[0], etcd.members[1]
    etcd.stop_member(first)
    try:
        fed.move(MAC[4], VM_IP[4], "vm4", 4, 3)
        assert wait_for(lambda: fed.converged(MAC[4], 3), 5), fed.kernels()
        etcd.stop_member(second)
        leader1 = fed.leader("dc1")
        assert wait_for(lambda: leader1.store("available") == "false", 5)
        assert "cannot be written" in (leader1.store("last-error") or "") or \
            leader1.store("last-error") is not None
        with pytest.raises(RemoteRpcError) as exc:
            leader1.client.dispatch(f'<clear-duplicate-mac xmlns="{ND}"/>')
        assert exc.value.tag == "operation-failed" and "etcd" in str(exc.value)
        fed.move(MAC[4], VM_IP[4], "vm4", 3, 4)       # cannot be stored: nothing changes
        time.sleep(1.0)
        assert all(fdb(lab, fed.hosts[i].ns).get(MAC[4]) == {VTEP[3]} for i in (1, 2)), \
            fed.kernels()
        assert lab.ping(fed.vm(1), VM_IP[2], count=2), "dc1 keeps forwarding"
    finally:
        for m in (first, second):
            if not m.running:
                etcd.start_member(m, wait=False)
        etcd.wait_healthy(15)
    assert wait_for(lambda: fed.converged(MAC[4], 4), 10), fed.kernels()
    assert wait_for(lambda: fed.leader("dc1").store("available") == "true", 5)


def test_paused_leader_never_pushes_stale_mappings(fed: Federation) -> None:
    """A leader cut off (SIGSTOP: its lease lapses) while a VM moves: the standby leads and
    pushes the move; when the old leader runs again it pushes nothing older."""
    old = fed.leader("dc2")
    os.kill(old.proc.pid, signal.SIGSTOP)
    try:
        assert wait_for(lambda: any(_safe(lambda n=n: fed.directors[n].store("role")) ==
                                    "leader" for n in REPLICAS["dc2"] if n != old.name), 6)
        fed.move(MAC[3], VM_IP[3], "vm3", 3, 4)
        assert wait_for(lambda: fed.converged(MAC[3], 4), 5), fed.kernels()
    finally:
        os.kill(old.proc.pid, signal.SIGCONT)
    stable = threading.Event()
    deadline = time.monotonic() + 3
    while time.monotonic() < deadline:          # the old leader wakes: nothing goes back
        assert fed.converged(MAC[3], 4), fed.kernels()
        time.sleep(0.1)
    stable.set()
    assert wait_for(lambda: _safe(lambda: old.store("role")) == "standby", 5)
    fed.move(MAC[3], VM_IP[3], "vm3", 4, 3)
    assert wait_for(lambda: fed.converged(MAC[3], 3), 5), fed.kernels()
