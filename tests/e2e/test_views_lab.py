"""The operator views and issue 15's bugs against a whole lab, read as an operator reads them.

One two-DC lab (`nvo3 lab up`, prefix with the PID) for the module; every command runs as
`python -m nvo3.cli ...` with NVO3_LAB_STATE, the way an operator or a script runs it.
Checked: `nvo3 show`, `nvo3 nve show`, `nvo3 mapping stats`, `nvo3 events` (human and JSON
lines, any role), and bugs 1, 2, 6 and 7 of issue 15 (each failed before its fix).
The lab's VMs: alice/vm1 (host1, dc1), alice/vm9 (host4, dc2), bob/vm2 (host3), bob/vm3
(host2); VNI 10010 (alice) and 10020 (bob).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from lxml import etree

from nvo3.common.mac import derived_mac
from nvo3.common.names import NVE, VCENTER
from nvo3.lab.lab import session
from nvo3.lab.state import LabState
from nvo3.launcher import start_role
from nvo3.roles.peers import codec

from .conftest import TOP, nvo3

PREFIX = f"nvo3w{os.getpid() % 100000}"
VM9_MAC, VM1_MAC = "02:00:00:0a:00:09", "02:00:00:0a:00:01"
NC = "urn:ietf:params:xml:ns:netconf:base:1.0"


def run(lab: Path, *args: str, code: int = 0) -> subprocess.CompletedProcess[str]:
    r = nvo3(*args, state=lab, check=False)
    print(f"$ nvo3 {' '.join(args)} -> {r.returncode}\n{r.stdout}{r.stderr}")
    assert r.returncode == code, r.stdout + r.stderr
    return r


def as_json(lab: Path, *args: str, code: int = 0) -> Any:
    return json.loads(run(lab, *args, "--json", code=code).stdout)


def wait_for(pred: Any, timeout: float = 15.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pred():
            return True
        time.sleep(0.2)
    return bool(pred())


# -- the views --------------------------------------------------------------------------------

def test_show_the_whole_overlay(lab: Path) -> None:
    out = run(lab, "show").stdout
    assert "vCenter vcenter-root (root), data centers dc1, dc2" in out
    assert "data center dc1: vCenter vcenter-dc1 connected" in out
    for vs, nve in (("vserver1", "host1"), ("vserver4", "host4")):
        assert f"vServer {vs}: connected, NVE {nve}, 1 VMs" in out
    assert "tenant alice: VNI 10010, 2 VMs (2 powered-on), groups web" in out
    assert "nDirector: 4 NVEs (4 connected), 2 VNIs" in out
    assert "VNI 10020 (bob): NVEs host1, host2, host3, host4, 2 mappings" in out
    assert "NVE host3: VTEP 198.18.0.21, session connected since " in out
    conv = next(line for line in out.splitlines() if "convergence:" in line)
    assert conv.count(" ms") == 3, conv          # last, average, max: each with its unit
    o = as_json(lab, "show")
    assert [c["name"] for c in o["child-vcenters"]] == ["vcenter-dc1", "vcenter-dc2"]
    assert sum(v["vms"] for c in o["child-vcenters"] for v in c["vservers"]) == 4
    assert {n["name"]: n["session"] for n in o["ndirector"]["nves"]} == \
        dict.fromkeys(("host1", "host2", "host3", "host4"), "connected")
    assert isinstance(o["ndirector"]["statistics"]["max-convergence-ms"], float)


def test_mapping_stats_with_units(lab: Path) -> None:
    lines = dict(line.split(":", 1) for line in run(lab, "mapping", "stats").stdout.splitlines())
    assert int(lines["mappings"]) == 4
    assert lines["max convergence"].strip().endswith(" ms")
    s = as_json(lab, "mapping", "stats")
    assert s["mappings"] == 4 and isinstance(s["mapping-updates"], int)
    assert 0 < s["max-convergence-ms"] < 60_000       # milliseconds, not microseconds
    assert s["average-convergence-ms"] <= s["max-convergence-ms"]


def test_nve_show_tables(lab: Path) -> None:
    out = run(lab, "nve", "show", "host1").stdout
    assert out.startswith("NVE host1  VTEP 198.18.0.11  UDP port 4789")
    assert "nDirector session: connected" in out
    vni = out.split("VNI 10010")[1].split("VNI 10020")[0]
    remote = next(line.split() for line in vni.splitlines() if VM9_MAC in line)
    assert remote[:5] == [VM9_MAC, "198.19.10.9", "198.18.0.22", "host4", "0"]
    assert remote[-2:] == ["programmed", "-"]
    assert "flood list (3):" in vni and "198.18.0.21  programmed" in vni
    local = next(line.split() for line in vni.splitlines() if VM1_MAC in line)
    assert local[1:3] == ["vm1", "198.19.10.1"] and "activated" in local
    assert "drift: none" in out and "programming failures: none" in out
    v = as_json(lab, "nve", "show", "nve-host4")          # the lab daemon's name works too
    assert v["nve"] == "host4" and v["drift"]["in-sync"] is True
    [net] = [n for n in v["networks"] if n["vni"] == 10010]
    assert {m["mac"]: m["sequence-number"] for m in net["remote-macs"]} == {VM1_MAC: 0}
    assert [a["vm-id"] for a in net["attachments"]] == ["vm9"]
    assert nvo3("nve", "show", "host9", state=lab, check=False).returncode == 2


def test_nve_show_drift(lab: Path) -> None:
    """A remote MAC removed behind the nDirector's back: `nve show` names it as missing."""
    st = LabState.load(lab)
    with session(st.daemon("nve-host1")) as c:
        c.edit_config(
            f'<config xmlns="{NC}" xmlns:nc="{NC}"><nve xmlns="urn:nvo3:yang:{NVE}"><networks>'
            f'<network><vni>10010</vni><remote-macs><remote-mac nc:operation="delete">'
            f'<mac>{VM9_MAC}</mac></remote-mac></remote-macs></network></networks></nve>'
            '</config>', target="running")
    r = run(lab, "nve", "show", "host1")
    assert f"drift, missing: 10010/{VM9_MAC}" in r.stdout
    assert as_json(lab, "nve", "show", "host1")["drift"]["missing"] == [f"10010/{VM9_MAC}"]
    with session(st.daemon("ndirector")) as c:     # every NVE (naming one is refused today:
        codec.call(c, "nvo3-ndirector", "resync", {})  # its leafref is checked on no data)
    assert wait_for(lambda: as_json(lab, "nve", "show", "host1")["drift"]["in-sync"])


def _events(lab: Path, *args: str) -> subprocess.Popen[str]:
    p = subprocess.Popen([sys.executable, "-m", "nvo3.cli", "events", *args],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                         env={**os.environ, "NVO3_LAB_STATE": str(lab)})
    assert p.stderr is not None
    assert "following" in p.stderr.readline()            # subscribed
    return p


def test_events_any_role(lab: Path) -> None:
    nd = _events(lab, "--json", "--count", "2", "--timeout", "60")
    nve = _events(lab, "--daemon", "host2", "--count", "1", "--timeout", "60")
    run(lab, "vm", "create", "ev1", "-t", "alice", "--vserver", "vserver2", "--mac",
        "02:00:00:0a:00:71")
    nd_out, _ = nd.communicate(timeout=60)
    nve_out, _ = nve.communicate(timeout=60)
    assert nd.returncode == nve.returncode == 0
    events = [json.loads(line) for line in nd_out.splitlines()]
    assert [(e["daemon"], e["module"], e["event"]) for e in events] == \
        [("ndirector", "nvo3-ndirector", "mapping-changed")] * 2
    assert [(e["data"]["change"], e["data"]["state"]) for e in events] == \
        [("added", "associated"), ("updated", "activated")]
    assert events[0]["data"]["mac"] == "02:00:00:0a:00:71" and events[0]["time"]
    [line] = nve_out.splitlines()
    assert " nve-host2 nvo3-nve:attachment-added vni=10010 mac=02:00:00:0a:00:71 vm-id=ev1 " \
        in line
    quiet = nvo3("events", "--role", "vcenter", "--timeout", "1", state=lab)
    assert "following vcenter-root's notifications" in quiet.stderr
    assert all(" vcenter-root " in line for line in quiet.stdout.splitlines())


# -- issue 15's bugs --------------------------------------------------------------------------

def test_bug1_root_group_usable_in_every_data_center(lab: Path) -> None:
    run(lab, "group", "create", "app", "-t", "alice", "--vcpus", "2")
    for dc in ("dc1", "dc2"):
        r = as_json(lab, "vm", "create", f"app-{dc}", "-t", "alice", "-g", "app",
                    "--data-center", dc)
        assert r["data-center"] == dc and r["state"] == "powered-on"
    assert as_json(lab, "vm", "show", "app-dc2", "-t", "alice")["vm-group"] == "app"


def test_bug2_duplicate_ip_in_a_vni_refused(lab: Path) -> None:
    r = run(lab, "vm", "create", "web5", "-t", "alice", "--ip", "198.19.10.9", code=1)
    assert "data-exists: IP address 198.19.10.9 is already used by VM alice/vm9 in VNI " \
        "10010" in r.stderr
    assert "duplicate-ip" in r.stderr
    assert nvo3("vm", "show", "web5", "-t", "alice", state=lab, check=False).returncode == 1
    assert len(as_json(lab, "vm", "lookup", "198.19.10.9")) == 1
    # the same address in another VNI (bob's) is another network: accepted
    run(lab, "vm", "create", "db9", "-t", "bob", "--ip", "198.19.10.9")
    r = run(lab, "vm", "replicate", "vm1", "-t", "alice", "--to", "vserver2", "--as", "vm1b",
            "--ip", "198.19.10.9", code=1)
    assert "alice/vm9" in r.stderr


def kernel_filters_vlans() -> bool:
    """Whether this kernel makes a bridge with VLAN filtering (iproute2, a scratch namespace)."""
    ns = f"{PREFIX}-vlan"
    subprocess.run(["ip", "netns", "add", ns], check=True, timeout=10)
    try:
        return subprocess.run(["ip", "-n", ns, "link", "add", "br0", "type", "bridge",
                               "vlan_filtering", "1"], capture_output=True,
                              timeout=10).returncode == 0
    finally:
        subprocess.run(["ip", "netns", "del", ns], check=True, timeout=10)


def test_bug3_vlans_on_this_kernel(lab: Path) -> None:
    supported = kernel_filters_vlans()
    k = as_json(lab, "nve", "show", "host2")["kernel"]
    assert k["vlans-supported"] is supported
    out = run(lab, "nve", "show", "host2").stdout
    if supported:
        assert "VLANs: supported" in out
        run(lab, "vm", "create", "vlan1", "-t", "alice", "--vlan", "100", "--vserver",
            "vserver2")
        return
    assert "bridge VLAN filtering (CONFIG_BRIDGE_VLAN_FILTERING)" in k["vlans-missing"]
    assert "VLANs: not supported (the kernel lacks bridge VLAN filtering" in out
    r = run(lab, "vm", "create", "vlan1", "-t", "alice", "--vlan", "100", "--vserver",
            "vserver2", code=1)
    assert "VLAN 100 on port" in r.stderr and "needs bridge VLAN filtering" in r.stderr
    assert nvo3("vm", "show", "vlan1", "-t", "alice", state=lab, check=False).returncode == 1


def test_bug6_create_vm_without_mac(lab: Path) -> None:
    st = LabState.load(lab)
    with session(st.daemon("vcenter-root")) as c:
        first = codec.call(c, VCENTER, "create-vm", {"tenant": "alice", "name": "cache1"})
        second = codec.call(c, VCENTER, "create-vm", {"tenant": "alice", "name": "cache2"})
    assert first["mac-address"] == derived_mac("alice", "cache1")    # as the CLI derives it
    assert second["mac-address"] == derived_mac("alice", "cache2") != first["mac-address"]
    [row] = as_json(lab, "vm", "lookup", first["mac-address"])
    assert row["name"] == "cache1"


def test_bug7_cli(lab: Path, tmp_path: Path) -> None:
    r = run(lab, "vm", "show", "nosuch", "-t", "alice", "--json", code=1)
    assert json.loads(r.stdout) == {"error": {"message": "no VM alice/nosuch"}}
    r = run(lab, "vm", "list", "--state", "bogus", code=2)
    assert "'powered-on'" in r.stderr and "'deleted'" in r.stderr
    r = run(lab, "vm", "replicate", "vm1", "-t", "alice", "--to", "vserver2", code=2)
    assert "--as NAME" in r.stderr and "replica-name" not in r.stderr
    r = run(lab, "vm", "replicate", "vm1", "-t", "alice", "--to", "vserver2", "--as", "c1",
            "--mac", VM1_MAC, code=1)
    assert "replica" in r.stderr and "replica-mac-address" not in r.stderr
    moved = as_json(lab, "vm", "move", "vm3", "-t", "bob", "--to", "vserver2")
    assert (moved["source-vserver"], moved["destination-vserver"]) == ("vserver2", "vserver2")
    rows = as_json(lab, "nve", "status")
    assert all(isinstance(r[k], int) for r in rows
               for k in ("pushes", "push-failures", "local-mappings", "last-push-latency"))
    status = as_json(lab, "lab", "status")
    d = next(d for d in status["daemons"] if d["name"] == "ndirector")
    assert d["port"] == LabState.load(lab).daemon("ndirector").port and d["host"]
    assert f"{PREFIX}-host1" in status["namespaces"]
    assert next(d for d in status["daemons"] if d["name"] == "nve-host1")["netns"] == \
        f"{PREFIX}-host1"
    # an nDirector with no NVEs: --check fails
    bare = start_role("ndirector", tmp_path / "nd")
    try:
        (tmp_path / "pw").write_text(bare.password + "\n")
        r = run(lab, "nve", "status", "--check", "--ndirector", f"{bare.host}:{bare.port}",
                "--user", bare.username, "--password-file", str(tmp_path / "pw"),
                "--host-key", bare.host_key, code=1)
        assert "no NVEs configured" in r.stderr
    finally:
        bare.stop(timeout=5)


def test_bug7_readme_lookup_example(lab: Path) -> None:
    """The README's `recipes.sh lookup yang/examples/rpc/...` finds the lab's vm9."""
    r = subprocess.run(["bash", str(TOP / "clients/netconf-console/recipes.sh"), "lookup",
                        "yang/examples/rpc/nvo3-ndirector/lookup.xml"], cwd=TOP,
                       capture_output=True, text=True, timeout=60,
                       env={**os.environ, "NC_LAB": "ndirector", "NVO3_LAB_STATE": str(lab),
                            "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}",
                            "PYTHON": sys.executable})
    assert r.returncode == 0, r.stdout + r.stderr
    reply = etree.fromstring(r.stdout.encode())
    ns = {"nd": "urn:nvo3:yang:nvo3-ndirector"}
    assert reply.xpath("//nd:nve/text()", namespaces=ns) == ["host4"]
    assert reply.xpath("//nd:vtep-address/text()", namespaces=ns) == ["198.18.0.22"]


def test_vm_states_are_the_models() -> None:
    """`vm list --state` accepts exactly nvo3-types vm-state's values."""
    from nvo3.verbs.vm import VM_STATES
    ctx = codec.context()
    leaf = next(iter(ctx.find_path("/nvo3-vcenter:vcenter/tenants/tenant/vm/state")))
    assert tuple(e.name() for e in leaf.type().enums()) == VM_STATES
