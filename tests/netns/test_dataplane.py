"""Real-kernel tests of nvo3.dataplane: two hosts, one VM each, VXLAN between them."""

from __future__ import annotations

import errno
import json
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from nvo3.bench.fdb import bench_entries
from nvo3.dataplane.kernel import KernelApplyError
from nvo3.dataplane.linux import PyrouteKernel
from nvo3.dataplane.model import AclRule, DesiredState, FloodEntry, Network, Policy, Port, RemoteMac
from nvo3.dataplane.tracker import Batch, DeltaTracker, Update

if TYPE_CHECKING:
    from conftest import Lab

sh: Any = None
in_ns: Any = None
ping: Any = None  # bound from the lab fixture below (conftest is not importable)


@pytest.fixture(autouse=True)
def _helpers(lab: Lab) -> None:
    """Bind the lab's command helpers to module names."""
    global sh, in_ns, ping
    sh, in_ns, ping = lab.sh, lab.in_ns, lab.ping

VNI = 100
MAC = {1: "02:00:00:00:01:01", 2: "02:00:00:00:02:01"}
VM_IP = {1: "198.19.1.1", 2: "198.19.2.1"}
VTEP = {1: "198.18.0.1", 2: "198.18.0.2"}


@dataclass
class Host:
    """One NVE host namespace with its VM namespace and kernel handle."""

    ns: str
    vm: str
    kernel: PyrouteKernel
    tracker: DeltaTracker

    def converge(self, state: DesiredState) -> None:
        """Set desired state and apply the pending deltas."""
        self.tracker.set_desired(state)
        self.tracker.observe(self.kernel.dump())
        batch = self.tracker.pending()
        self.kernel.apply(batch)
        self.tracker.applied(batch)


def desired(i: int, remote: bool = True, policy: Policy | None = None) -> DesiredState:
    """Host ``i``'s desired state: its network, its VM port, the other VM remote."""
    j = 3 - i
    return DesiredState(
        networks=(Network(VNI, VTEP[i]),),
        ports=(Port(f"tap-vm{i}", VNI, None, MAC[i], (VM_IP[i],)),),
        floods=(FloodEntry(VNI, VTEP[j]),) if remote else (),
        remote_macs=(RemoteMac(VNI, MAC[j], VTEP[j], (VM_IP[j],)),) if remote else (),
        policies=(policy,) if policy else ())


@pytest.fixture
def hosts(lab: Lab, _helpers: None) -> Iterator[dict[int, Host]]:
    """Two hosts joined by an underlay veth, one VM on each (no overlay programmed yet)."""
    h = {i: lab.ns(f"h{i}") for i in (1, 2)}
    lab.veth(h[1], "ul0", h[2], "ul0")
    out: dict[int, Host] = {}
    try:
        for i in (1, 2):
            sh("ip", "-n", h[i], "addr", "add", f"{VTEP[i]}/24", "dev", "ul0")
            vm = lab.ns(f"vm{i}")
            lab.veth(vm, "eth0", h[i], f"tap-vm{i}", mac_a=MAC[i])
            sh("ip", "-n", vm, "addr", "add", f"{VM_IP[i]}/16", "dev", "eth0")
            out[i] = Host(h[i], vm, PyrouteKernel(netns=h[i]), DeltaTracker())
        yield out
    finally:
        for host in out.values():
            host.kernel.close()


def test_ping_crosses_vxlan_and_stops_without_fdb(hosts: dict[int, Host]) -> None:
    for i in (1, 2):
        hosts[i].converge(desired(i))
        assert hosts[i].kernel.dump() == desired(i)
        assert hosts[i].tracker.in_sync()
    assert ping(hosts[1].vm, VM_IP[2], count=2)
    tx = in_ns(hosts[2].ns, "cat", "/sys/class/net/vx-100/statistics/rx_packets").stdout
    assert int(tx) > 0, "traffic must arrive through the VXLAN device"
    hosts[1].converge(desired(1, remote=False))
    assert hosts[1].kernel.dump() == desired(1, remote=False)
    sh("ip", "-n", hosts[1].vm, "neigh", "flush", "all")
    assert not ping(hosts[1].vm, VM_IP[2])
    hosts[1].converge(desired(1))
    sh("ip", "-n", hosts[1].vm, "neigh", "flush", "all")
    assert ping(hosts[1].vm, VM_IP[2], count=3)


def test_failed_apply_reverts_everything(hosts: dict[int, Host]) -> None:
    k = hosts[1].kernel
    before = k.dump()
    links_before = sh("ip", "-n", hosts[1].ns, "-o", "link").stdout
    bad = DesiredState(networks=(Network(VNI, VTEP[1]),),
                       ports=(Port("missing0", VNI, None, MAC[1]),))
    tr = DeltaTracker()
    tr.set_desired(bad)
    tr.observe(before)
    with pytest.raises(KernelApplyError) as err:
        k.apply(tr.pending())
    assert "missing0" in str(err.value) and "No such device" in err.value.reason
    assert k.dump() == before
    assert sh("ip", "-n", hosts[1].ns, "-o", "link").stdout.count("vx-100") == 0
    assert len(links_before.splitlines()) == len(sh("ip", "-n", hosts[1].ns, "-o",
                                                     "link").stdout.splitlines())
    assert not tr.in_sync()  # the failed write stays pending


def test_failed_bulk_step_reverts_fdb_and_devices(hosts: dict[int, Host]) -> None:
    hosts[1].converge(desired(1, remote=False))
    k = hosts[1].kernel
    before = k.dump()
    good = [RemoteMac(VNI, f"02:00:00:00:09:{n:02x}", VTEP[2]) for n in range(50)]
    bad = RemoteMac(VNI, "02:00:00:00:0a:01", "2001:db8::1")  # IPv6 VTEP on an IPv4 VXLAN
    batch = Batch(updates=(Update(Network(200, VTEP[1])),
                           *(Update(r) for r in good), Update(bad)))
    with pytest.raises(KernelApplyError) as err:
        k.apply(batch)
    assert err.value.obj == bad
    assert k.dump() == before
    assert in_ns(hosts[1].ns, "ip", "link", "show", "vx-200", check=False).returncode != 0


def test_deleting_gone_entries_is_success(hosts: dict[int, Host]) -> None:
    k = hosts[1].kernel
    hosts[1].converge(desired(1))
    gone = desired(1)
    sh("bridge", "-n", hosts[1].ns, "fdb", "del", MAC[2], "dev", "vx-100", "dst", VTEP[2], "self")
    sh("bridge", "-n", hosts[1].ns, "fdb", "del", "00:00:00:00:00:00", "dev", "vx-100",
       "dst", VTEP[2], "self")
    k.apply(Batch(deletes=(*gone.remote_macs, *gone.floods)))
    k.apply(Batch(deletes=(*gone.remote_macs, *gone.floods)))
    assert k.dump() == desired(1, remote=False)


def test_bulk_10k_entries_dump_finds_exactly_them(hosts: dict[int, Host]) -> None:
    k = hosts[1].kernel
    hosts[1].converge(desired(1, remote=False))
    macs = tuple(RemoteMac(VNI, m, v) for m, v in bench_entries(10_000))
    want = DesiredState(networks=desired(1).networks, ports=desired(1).ports, remote_macs=macs)
    t0 = time.perf_counter()
    hosts[1].converge(want)
    elapsed = time.perf_counter() - t0
    assert k.dump() == want
    assert elapsed < 5.0
    hosts[1].converge(desired(1, remote=False))
    assert k.dump() == desired(1, remote=False)


def add_tap_ports(ns: str, count: int, tmp: Path) -> None:
    """``count`` tap links ``tap-d<n>`` in ``ns`` (one ``ip -batch``)."""
    script = tmp / f"{ns}-taps"
    script.write_text("".join(f"tuntap add mode tap name tap-d{n}\n" for n in range(count)))
    sh("ip", "-n", ns, "-batch", str(script), timeout=120)


def no_link_dump(*_args: object) -> list[object]:
    """Stands in for a link dump an apply must not take."""
    raise AssertionError("this apply must not dump every link")


def test_batch_among_many_ports_reads_only_its_links(hosts: dict[int, Host], tmp_path: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    """A remote-MAC change, a port attached and released, on a host with many ports: each
    apply looks up only the links it names, and programs what it did with a full dump."""
    h = hosts[1]
    h.converge(desired(1, remote=False))
    add_tap_ports(h.ns, 1_000, tmp_path)
    k = h.kernel
    monkeypatch.setattr(k, "dump_links", no_link_dump)
    port = Port("tap-d7", VNI, None, "02:00:00:00:07:07")
    k.apply(Batch(updates=(Update(port),)))
    assert "master br-100" in sh("ip", "-n", h.ns, "link", "show", "tap-d7").stdout
    k.apply(Batch(deletes=(port,)))
    assert "master" not in sh("ip", "-n", h.ns, "link", "show", "tap-d7").stdout
    # (after the port changes: a bridge whose address changes drops its neighbour entries)
    mac = RemoteMac(VNI, MAC[2], VTEP[2], (VM_IP[2],))
    k.apply(Batch(updates=(Update(mac),)))
    fdb = sh("bridge", "-n", h.ns, "fdb", "show", "dev", "vx-100").stdout
    assert f"{MAC[2]} dst {VTEP[2]} self permanent" in fdb
    moved = RemoteMac(VNI, MAC[2], "198.18.0.9", (VM_IP[2],))
    k.apply(Batch(updates=(Update(moved, mac),)))
    fdb = sh("bridge", "-n", h.ns, "fdb", "show", "dev", "vx-100").stdout
    assert f"{MAC[2]} dst 198.18.0.9 self permanent" in fdb and VTEP[2] not in fdb
    monkeypatch.undo()
    assert k.dump() == DesiredState(networks=desired(1).networks, ports=desired(1).ports,
                                    remote_macs=(moved,))


def test_batch_for_missing_devices_fails_as_with_a_dump(hosts: dict[int, Host]) -> None:
    """By name or from a full dump, a batch naming a network without devices or a missing
    port fails with the same error, and what it did first is undone."""
    h = hosts[1]
    h.converge(desired(1, remote=False))
    k = h.kernel
    before = k.dump()
    port = Port("tap-vm1", VNI, None, MAC[1], (VM_IP[1],))
    gone = RemoteMac(300, MAC[2], VTEP[2])          # no vx-300/br-300
    cases = [Batch(updates=(Update(RemoteMac(VNI, "02:00:00:00:09:01", VTEP[2])),
                            Update(gone))),
             Batch(deletes=(port,), updates=(Update(FloodEntry(300, VTEP[2])),)),
             Batch(updates=(Update(Port("missing0", VNI, None, MAC[1])),))]
    reasons = []
    for batch in cases:
        errors = []
        for link_dump in (None, k.dump_links()):
            with pytest.raises(KernelApplyError) as err:
                k.apply(batch, link_dump=link_dump)
            errors.append((err.value.obj, err.value.errno, err.value.reason))
            assert k.dump() == before
        assert errors[0] == errors[1]
        assert errors[0][1] == errno.ENODEV
        reasons.append(errors[0][2])
    assert reasons[:2] == ["network 300 has no devices: No such device (ENODEV)"] * 2
    assert reasons[2] == "No such device (ENODEV): port missing0 does not exist"


def test_policy_acl_drop_and_antispoofing(hosts: dict[int, Host]) -> None:
    assert shutil.which("nft"), "nft is missing: scripts/run installs nftables"
    for i in (1, 2):
        hosts[i].converge(desired(i))
    assert ping(hosts[1].vm, VM_IP[2])
    deny = Policy("tap-vm1", rules=(AclRule("drop", "out", "icmp", f"{VM_IP[2]}/32"),),
                  rate_kbps=10_000)
    hosts[1].converge(desired(1, policy=deny))
    assert hosts[1].kernel.dump() == desired(1, policy=deny)
    assert not ping(hosts[1].vm, VM_IP[2])
    hosts[1].converge(desired(1))
    assert ping(hosts[1].vm, VM_IP[2])
    sh("ip", "-n", hosts[1].vm, "link", "set", "eth0", "address", "02:00:00:00:01:99")
    assert not ping(hosts[1].vm, VM_IP[2]), "spoofed source MAC must be dropped"
    sh("ip", "-n", hosts[1].vm, "link", "set", "eth0", "address", MAC[1])
    assert ping(hosts[1].vm, VM_IP[2], count=2)


def test_monitor_sees_hand_deleted_fdb_entry_and_repairs(hosts: dict[int, Host]) -> None:
    from nvo3.dataplane.monitor import NetlinkEvent, NetlinkMonitor

    h = hosts[1]
    h.converge(desired(1))
    seen: list[NetlinkEvent] = []
    got = __import__("threading").Event()

    def on_events(events: list[NetlinkEvent]) -> None:
        for e in events:
            if e.what == "fdb" and e.action == "del" and e.mac == MAC[2] and e.dst == VTEP[2]:
                seen.append(e)
                got.set()

    mon = NetlinkMonitor(on_events, netns=h.ns).start()
    try:
        t0 = time.perf_counter()
        sh("bridge", "-n", h.ns, "fdb", "del", MAC[2], "dev", "vx-100", "dst", VTEP[2], "self")
        assert got.wait(1.0), "monitor must report the deletion within a second"
        assert time.perf_counter() - t0 < 1.0
        h.tracker.observe(h.kernel.dump())
        assert not h.tracker.in_sync()
        batch = h.tracker.pending()
        h.kernel.apply(batch)
        h.tracker.applied(batch)
        assert h.kernel.dump() == desired(1)
    finally:
        mon.stop()


def test_bench_json_output_is_json_alone() -> None:
    """`nvo3 bench ... --json` is for scripts: stdout holds the JSON document and nothing
    else (the readable lines go to stderr)."""
    out = subprocess.run([sys.executable, "-m", "nvo3.cli", "--log-level", "WARNING", "bench",
                          "fdb", "--json", "--entries", "500"],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    result = json.loads(out.stdout)
    assert result["entries"] == 500 and result["bridge_batch_s"] > 0 and result["nvo3_s"] > 0


def test_a_port_with_a_low_mac_keeps_the_bridge_address_and_its_arp_suppression(
        hosts: dict[int, Host]) -> None:
    """A bridge pinned at creation: a new VM whose MAC is lower than every other port's does not
    change the bridge's address, so the kernel keeps the bridge's permanent neighbour entries
    (ARP/ND suppression of remote VMs) instead of flushing them."""
    h = hosts[1]
    h.converge(desired(1))
    neigh = sh("ip", "-n", h.ns, "neigh", "show", "dev", "br-100").stdout
    assert VM_IP[2] in neigh and "PERMANENT" in neigh
    address = sh("ip", "-n", h.ns, "-br", "link", "show", "br-100").stdout.split()[2]
    sh("ip", "-n", h.ns, "link", "add", "tap-low", "type", "veth", "peer", "name", "tap-low-p")
    sh("ip", "-n", h.ns, "link", "set", "tap-low", "address", "00:00:00:00:00:01")
    h.kernel.apply(Batch(updates=(Update(Port("tap-low", VNI, None, "00:00:00:00:00:01")),)))
    assert "master br-100" in sh("ip", "-n", h.ns, "link", "show", "tap-low").stdout
    assert sh("ip", "-n", h.ns, "-br", "link", "show", "br-100").stdout.split()[2] == address
    assert VM_IP[2] in sh("ip", "-n", h.ns, "neigh", "show", "dev", "br-100").stdout
