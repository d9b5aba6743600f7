"""The `nvo3` operator verbs against real daemons: two hosts (namespaces) each with an NVE and
a vServer agent, a vCenter configured with both vServers and tenant t1, an nDirector with
both NVEs. The verbs find them through a lab state file (NVO3_LAB_STATE) and run as
subprocesses (`python -m nvo3.cli ...`), the way an operator or a script runs them.

Checked: tables, --json, exit codes (0 ok, 1 refused or not found, 2 usage/connection),
create -> list/lookup/mapping, move re-points, replicate, delete, nve status, groups, and
bulk progress lines (stderr is not a TTY here).
Every daemon is stopped by its PID; VM namespaces (and their workloads) and the lab
namespaces are removed afterwards. Addresses from 198.18.0.0/15 only.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from nvo3.lab.state import Daemon, LabState
from nvo3.launcher import RoleProcess, start_role

NVE = "urn:nvo3:yang:nvo3-nve"
ND = "urn:nvo3:yang:nvo3-ndirector"
VS = "urn:nvo3:yang:nvo3-vserver"
VC = "urn:nvo3:yang:nvo3-vcenter"
VNI = 310
HOSTS = (1, 2)
VTEP = {i: f"198.18.1.{i}" for i in HOSTS}

pytestmark = pytest.mark.skipif(os.geteuid() != 0 or shutil.which("ip") is None,
                                reason="needs root and iproute2")


def sh(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(list(args), check=check, capture_output=True, text=True, timeout=30)


def wait_for(pred: Any, timeout: float = 15.0, step: float = 0.2) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pred():
            return True
        time.sleep(step)
    return bool(pred())


def mac(n: int) -> str:
    return f"02:00:00:00:31:{n:02x}"


def ip(n: int) -> str:
    return f"198.19.31.{n}"


@dataclass
class System:
    prefix: str
    state_file: Path
    namespaces: list[str] = field(default_factory=list)
    procs: list[RoleProcess] = field(default_factory=list)

    def nvo3(self, *args: str, env: dict[str, str] | None = None
             ) -> subprocess.CompletedProcess[str]:
        """Run `nvo3 ARGS` as an operator would (stderr is a pipe: plain progress lines)."""
        r = subprocess.run([sys.executable, "-m", "nvo3.cli", *args], capture_output=True,
                           text=True, timeout=120,
                           env={**os.environ, "NVO3_LAB_STATE": str(self.state_file),
                                **(env or {})})
        print(f"$ nvo3 {' '.join(args)}  -> {r.returncode}\n{r.stdout}{r.stderr}")
        return r

    def json(self, *args: str) -> Any:
        r = self.nvo3(*args, "--json")
        assert r.returncode == 0, r.stderr
        return json.loads(r.stdout)

    def vm_namespaces(self) -> list[str]:
        return [line.split()[0] for line in sh("ip", "netns", "list").stdout.splitlines()
                if line.startswith(self.prefix) and "-vm-" in line]


def _peer(p: RoleProcess, tag: str, extra: str = "") -> str:
    return (f"<{tag}><address>{p.host}</address><port>{p.port}</port>"
            f"<username>{p.username}</username><password>{p.password}</password>"
            f"<host-key>{p.host_key}</host-key>{extra}")


@pytest.fixture(scope="module")
def system(tmp_path_factory: pytest.TempPathFactory) -> Iterator[System]:
    tmp = tmp_path_factory.mktemp("verbs")
    s = System(f"nvo3v-{os.getpid()}", tmp / "lab.json")
    daemons: list[Daemon] = []

    def ns(tag: str) -> str:
        name = f"{s.prefix}-{tag}"
        sh("ip", "netns", "add", name)
        s.namespaces.append(name)
        sh("ip", "-n", name, "link", "set", "lo", "up")
        return name

    def start(role: str, name: str, netns: str | None = None) -> RoleProcess:
        (tmp / name).mkdir()
        p = start_role(role, tmp / name, extra_args=("--netns", netns) if netns else ())
        s.procs.append(p)
        daemons.append(Daemon(name, role, p.host, p.port, p.username, p.password, p.host_key,
                              p.pid, str(p.state_dir), netns, "dc1"))
        return p

    try:
        ul = ns("ul")
        sh("ip", "-n", ul, "link", "add", "ulbr", "type", "bridge")
        sh("ip", "-n", ul, "link", "set", "ulbr", "up")
        vc = start("vcenter", "vcenter-dc1")      # first: the vServers register with it
        vcenter = _peer(vc, "vcenter", "<name>vc1</name><report-interval>1</report-interval>"
                        ) + "</vcenter>"
        vservers, nves = "", ""
        for i in HOSTS:
            h = ns(f"h{i}")
            sh("ip", "-n", h, "link", "add", "ul0", "type", "veth", "peer", "name", f"ul-h{i}",
               "netns", ul)
            sh("ip", "-n", h, "link", "set", "ul0", "up")
            sh("ip", "-n", ul, "link", "set", f"ul-h{i}", "master", "ulbr", "up")
            sh("ip", "-n", h, "addr", "add", f"{VTEP[i]}/24", "dev", "ul0")
            nve = start("nve", f"nve-host{i}", h)
            with nve.connect() as c:
                c.edit_config(f'<config><nve xmlns="{NVE}"><nve-id>h{i}</nve-id>'
                              f"<local-vtep-address>{VTEP[i]}</local-vtep-address></nve>"
                              "</config>", target="running")
            vs = start("vserver", f"vserver{i}", h)
            with vs.connect() as c:
                c.edit_config(f'<config><vserver xmlns="{VS}"><name>vs{i}</name>'
                              f"<capacity><vcpus>16</vcpus></capacity>{vcenter}"
                              f'{_peer(nve, "nve", f"<name>h{i}</name>")}</nve>'
                              "</vserver></config>", target="running")
            vservers += _peer(vs, "vserver", f"<name>vs{i}</name><nve>h{i}</nve>") + \
                "</vserver>"
            nves += _peer(nve, "nve", f"<name>h{i}</name><vtep-address>{VTEP[i]}"
                          "</vtep-address>") + "</nve>"
        nd = start("ndirector", "ndirector")
        members = "".join(f"<member-nve>h{i}</member-nve>" for i in HOSTS)
        with nd.connect() as c:
            c.edit_config(f'<config><ndirector xmlns="{ND}"><nves>{nves}</nves><networks>'
                          f"<network><vni>{VNI}</vni><tenant>t1</tenant>{members}</network>"
                          "</networks></ndirector></config>", target="running")
        with vc.connect() as c:
            c.edit_config(f'<config><vcenter xmlns="{VC}"><name>vc1</name><tenants><tenant>'
                          f"<name>t1</name><vnid>{VNI}</vnid><vm-group><name>web</name>"
                          "</vm-group></tenant></tenants>"
                          f"<vservers>{vservers}</vservers></vcenter></config>",
                          target="running")
        LabState(s.prefix, "test", list(s.namespaces), daemons, str(tmp)).save(s.state_file)
        yield s
    finally:
        for p in reversed(s.procs):
            if p.stop(timeout=5) not in (0, -15):
                print(f"{p.role}: " + (p.state_dir / "daemon.log").read_text()[-3000:])
        for vm_ns in s.vm_namespaces():          # VMs outlive their agent: remove them
            for pid in sh("ip", "netns", "pids", vm_ns, check=False).stdout.split():
                subprocess.run(["kill", "-9", pid], check=False)
            sh("ip", "netns", "del", vm_ns, check=False)
        for name in reversed(s.namespaces):
            sh("ip", "netns", "del", name, check=False)


# -- tests ------------------------------------------------------------------------------------

def test_usage_and_connection_errors_exit_2(system: System, tmp_path: Path) -> None:
    r = system.nvo3("vm", "list", env={"NVO3_LAB_STATE": str(tmp_path / "none.json")})
    assert r.returncode == 2 and "no lab is up" in r.stderr and "--vcenter" in r.stderr
    r = system.nvo3("vm", "create", "x")                         # no --tenant
    assert r.returncode == 2 and "--tenant" in r.stderr
    r = system.nvo3("nve", "status", "--ndirector", "127.0.0.1:1")
    assert (r.returncode == 2 and "cannot connect" in r.stderr.lower()) or "open" in r.stderr
    vc = LabState.load(system.state_file).daemon("vcenter-dc1")
    wrong = LabState.load(system.state_file).daemon("ndirector").host_key
    pw = tmp_path / "pw"
    pw.write_text(vc.password + "\n")
    base = ("vm", "list", "--vcenter", f"{vc.host}:{vc.port}", "--user", vc.username,
            "--password-file", str(pw))
    r = system.nvo3(*base, "--host-key", wrong)                  # the wrong server key
    assert r.returncode == 2 and "host key" in r.stderr
    r = system.nvo3(*base, "--host-key", vc.host_key)            # explicit target works
    assert r.returncode == 0 and "no VMs" in r.stdout
    r = system.nvo3("vm", "create", "x", "-t", "t1", "--mac", "01:00:5e:00:00:01")
    assert r.returncode in (1, 2) and "nvo3" in r.stderr          # multicast: refused


def test_nve_status(system: System) -> None:
    assert wait_for(lambda: system.nvo3("nve", "status", "--check").returncode == 0)
    r = system.nvo3("nve", "status")
    lines = r.stdout.splitlines()
    assert lines[0].split()[:4] == ["NVE", "ADDRESS", "VTEP", "SESSION"]
    assert {tuple(line.split()[:4:3]) for line in lines[1:]} == {("h1", "connected"),
                                                                 ("h2", "connected")}
    rows = system.json("nve", "status")
    assert {r["name"]: r["vtep-address"] for r in rows} == {"h1": VTEP[1], "h2": VTEP[2]}
    assert "password" not in json.dumps(rows)


def test_groups(system: System) -> None:
    r = system.nvo3("group", "create", "db", "-t", "t1", "--vlan", "20", "--vcpus", "2",
                    "--description", "databases")
    assert r.returncode == 0 and "group t1/db created" in r.stdout
    r = system.nvo3("group", "list")
    assert r.stdout.split("\n")[0].split()[:3] == ["TENANT", "GROUP", "VLAN"]
    assert any(line.split()[:4] == ["t1", "db", "20", "2"] for line in r.stdout.splitlines())
    assert {g["name"]: g.get("vlan") for g in system.json("group", "list", "-t", "t1")} == \
        {"web": None, "db": 20}
    r = system.nvo3("group", "create", "db", "-t", "t1")       # exists: refused
    assert r.returncode == 1 and "edit-config refused: data-exists" in r.stderr
    assert "error-path: " in r.stderr
    r = system.nvo3("group", "delete", "nope", "-t", "t1", "--json")
    assert r.returncode == 1 and "data-missing" in r.stderr and "error-path: " in r.stderr
    assert json.loads(r.stdout)["error"]["tag"] == "data-missing"
    r = system.nvo3("group", "create", "x", "-t", "nobody")
    assert r.returncode == 1 and "no tenant 'nobody'" in r.stderr
    assert system.nvo3("group", "delete", "db", "-t", "t1").returncode == 0
    assert [g["name"] for g in system.json("group", "list")] == ["web"]


def registered(system: System) -> dict[str, bool]:
    return {v["name"]: v.get("registered") in (True, "true")
            for v in system.json("vm", "list")}


def mapping_of(system: System, m: str) -> dict[str, Any] | None:
    return next((r for r in system.json("mapping", "show", "--vni", str(VNI))
                 if r["mac"] == m), None)


def test_vm_lifecycle(system: System) -> None:
    r = system.nvo3("vm", "create", "vm1", "-t", "t1", "--vserver", "vs1", "--mac", mac(1),
                    "--ip", ip(1), "-g", "web", "--vcpus", "2")
    assert r.returncode == 0, r.stderr
    assert "vm:" in r.stdout and "t1/vm1" in r.stdout and "powered-on" in r.stdout
    listed = system.nvo3("vm", "list").stdout.splitlines()
    assert listed[0].split()[:5] == ["TENANT", "NAME", "STATE", "VSERVER", "NVE"]
    assert listed[1].split()[:8] == ["t1", "vm1", "powered-on", "vs1", "h1", str(VNI), mac(1),
                                     ip(1)]
    [vm1] = system.json("vm", "list", "-t", "t1")
    assert (vm1["vserver"], vm1["nve"], vm1["mac-address"]) == ("vs1", "h1", mac(1))
    assert wait_for(lambda: (mapping_of(system, mac(1)) or {}).get("nve") == "h1")
    shown = system.nvo3("mapping", "show").stdout
    assert any(line.split()[:5] == [str(VNI), mac(1), ip(1), "h1", VTEP[1]]
               for line in shown.splitlines())

    # refusals: exit 1, the rpc-error tag and message on stderr (and as JSON with --json)
    assert wait_for(lambda: registered(system) == {"vm1": True})
    r = system.nvo3("vm", "create", "vm1", "-t", "t1", "--mac", mac(1), "--json")
    assert r.returncode == 1 and "create-vm refused: data-exists" in r.stderr
    assert "already runs on vs1" in r.stderr
    assert json.loads(r.stdout)["error"]["tag"] == "data-exists"
    r = system.nvo3("vm", "create", "vm9", "-t", "t1", "--mac", mac(1))   # vm1's MAC
    assert r.returncode == 1 and "data-exists" in r.stderr and mac(1) in r.stderr
    r = system.nvo3("vm", "move", "vm1", "-t", "t1", "--to", "vs9")
    assert r.returncode == 1 and "invalid-value" in r.stderr and "vs9" in r.stderr
    r = system.nvo3("vm", "show", "ghost", "-t", "t1")
    assert r.returncode == 1 and "no VM t1/ghost" in r.stderr

    # show, lookup by IP and MAC
    r = system.nvo3("vm", "show", "vm1", "-t", "t1")
    assert r.returncode == 0 and "vtep-address:" in r.stdout and "vcpus:" in r.stdout
    r = system.nvo3("vm", "lookup", "vm1")                        # a name needs the tenant
    assert r.returncode == 2 and "needs the tenant" in r.stderr
    for key in (ip(1), mac(1), "vm1"):
        [row] = system.json("vm", "lookup", key, "-t", "t1")
        assert (row["name"], row["vserver"], row["nve"]) == ("vm1", "vs1", "h1")

    # move: the vCenter, the lookup and the nDirector's mapping all follow
    r = system.nvo3("vm", "move", "vm1", "-t", "t1", "--to", "vs2")
    assert r.returncode == 0 and "t1/vm1 moved vs1 -> vs2 (nve h2" in r.stdout
    assert wait_for(lambda: (mapping_of(system, mac(1)) or {}).get("nve") == "h2")
    assert mapping_of(system, mac(1))["vtep-address"] == VTEP[2]
    [row] = system.json("vm", "lookup", ip(1), "-t", "t1")
    assert (row["vserver"], row["nve"], row["vtep-address"]) == ("vs2", "h2", VTEP[2])
    assert system.nvo3("vm", "lookup", ip(1)).stdout.splitlines()[1].split()[3:6] == \
        ["vs2", "h2", VTEP[2]]

    # replicate to vs1 under a new name (its MAC derived from the name)
    out = system.json("vm", "replicate", "vm1", "-t", "t1", "--to", "vs1", "--as", "vm1-copy",
                      "--ip", ip(21))
    assert (out["replica-name"], out["destination-vserver"], out["state"]) == \
        ("vm1-copy", "vs1", "powered-on")
    assert {v["name"]: v["vserver"] for v in system.json("vm", "list")} == \
        {"vm1": "vs2", "vm1-copy": "vs1"}

    # delete both (a bulk: plain progress lines), then nothing is left
    r = system.nvo3("vm", "delete", "vm1", "vm1-copy", "-t", "t1")
    assert r.returncode == 0
    assert "delete 1/2 vm1: ok (vs2)" in r.stderr and "delete 2/2 vm1-copy: ok (vs1)" in r.stderr
    assert system.json("vm", "list") == []
    assert system.nvo3("vm", "list").stdout.strip() == "no VMs"
    r = system.nvo3("vm", "lookup", "vm1", "-t", "t1")
    assert r.returncode == 1 and "no VM matches vm1" in r.stdout
    assert wait_for(lambda: mapping_of(system, mac(1)) is None)
    assert wait_for(lambda: system.vm_namespaces() == [], 5)


def test_bulk_create_and_delete_with_progress(system: System) -> None:
    n = 4
    r = system.nvo3("vm", "create", "bulk", "-t", "t1", "--count", str(n), "--vserver", "vs2",
                    "--mac", mac(0x40), "--ip", ip(40))
    assert r.returncode == 0, r.stderr
    progress = [line for line in r.stderr.splitlines() if line.startswith("create ")]
    assert progress == [f"create {i}/{n} bulk-{i}: ok (vs2)" for i in range(1, n + 1)]
    assert f"create: {n} of {n} done" in r.stderr
    assert r.stdout.splitlines()[0].split() == ["NAME", "RESULT", "VSERVER", "NVE", "MAC",
                                                "STATE", "ERROR"]
    rows = {v["name"]: v for v in system.json("vm", "list")}
    assert sorted(rows) == [f"bulk-{i}" for i in range(1, n + 1)]
    assert [rows[f"bulk-{i}"]["mac-address"] for i in range(1, n + 1)] == \
        [mac(0x40 + i) for i in range(n)]
    assert rows["bulk-4"]["ip-address"] == [ip(43)]

    assert wait_for(lambda: all(registered(system).values()))

    # template: one more like bulk-1, and a refused one in the same batch (bulk-4 exists)
    r = system.nvo3("vm", "create", "bulk-{n}", "-t", "t1", "--count", "5", "--template",
                    "bulk-1", "--vserver", "vs1", "--json")
    assert r.returncode == 1                                       # bulk-1..4 exist
    results = json.loads(r.stdout)
    assert [x["result"] for x in results] == ["failed"] * 4 + ["ok"]
    assert results[0]["error"]["tag"] == "data-exists" and results[4]["vserver"] == "vs1"
    assert "create 5/5 bulk-5: ok (vs1)" in r.stderr and "4 failed" in r.stderr

    r = system.nvo3("vm", "delete", "bulk", "-t", "t1", "--count", "5", "--json")
    assert r.returncode == 0
    assert [x["result"] for x in json.loads(r.stdout)] == ["ok"] * 5
    assert [line for line in r.stderr.splitlines() if line.startswith("delete ")][-1] == \
        "delete 5/5 bulk-5: ok (vs1)"
    assert system.json("vm", "list") == []
    r = system.nvo3("vm", "delete", "bulk-1", "-t", "t1")         # gone: refused
    assert r.returncode == 1 and "terminate-vm refused" in r.stderr


# -- no daemons: the pieces ---------------------------------------------------------------------

def test_progress_bar_on_a_tty_and_plain_lines_otherwise() -> None:
    import io

    from nvo3.verbs.output import Progress
    tty = io.StringIO()
    with Progress("create", 4, stream=tty, tty=True) as p:
        for i in range(1, 5):
            p.step(f"vm-{i}", ok=i != 3)
    text = tty.getvalue()
    assert text.count("\r") == 4 and "[" + "#" * 30 + "] 4/4, 1 failed" in text
    assert text.endswith("create: 3 of 4 done, 1 failed in 0.0 s\n")
    plain = io.StringIO()
    with Progress("delete", 2, stream=plain, tty=False) as p:
        p.step("a", note="vs1")
        p.step("b", ok=False, note="data-missing")
    assert plain.getvalue().splitlines()[:2] == ["delete 1/2 a: ok (vs1)",
                                                 "delete 2/2 b: FAILED (data-missing)"]


def test_names_and_addresses() -> None:
    from nvo3.verbs.vm import classify, derived_mac, names_of, nth_ip, nth_mac
    assert names_of("web", 3) == ["web-1", "web-2", "web-3"]
    assert names_of("web{n}x", 2) == ["web1x", "web2x"] and names_of("one", None) == ["one"]
    assert nth_mac("02:00:00:00:00:ff", 1) == "02:00:00:00:01:00"
    assert nth_ip("198.19.0.255", 1) == "198.19.1.0"
    assert derived_mac("t1", "a") == derived_mac("t1", "a") != derived_mac("t1", "b")
    assert derived_mac("t1", "a").startswith("02:")
    assert [classify(k) for k in ("02:00:00:00:00:01", "198.19.0.1", "2001:db8::1", "vm1")] \
        == ["mac-address", "ip-address", "ip-address", "name"]
