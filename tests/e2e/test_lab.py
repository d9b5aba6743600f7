"""`nvo3 lab up|status|down` and the draft's four use cases, each its own test, on one lab.

The lab is the default topology under a prefix of its own and a state file in tmp, brought
up once by the real command (12 daemons as processes, namespaces, NETCONF between them).
The use-case tests run in file order on it (use case 4 moves vm1, so it comes last); the
last test takes it down and checks that no namespace and no daemon is left. Two more tests
check that a failed or interrupted `up` leaves nothing behind.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from nvo3.lab.use_cases import Demo, use_case_1, use_case_2, use_case_3, use_case_4

from .conftest import TWO_DC, nvo3

PREFIX = f"nvo3e{os.getpid() % 100000}"


def namespaces(prefix: str) -> set[str]:
    out = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, check=True)
    return {ln.split()[0] for ln in out.stdout.splitlines() if ln.startswith(f"{prefix}-")}


def daemons_of(work_dir: Path) -> list[int]:
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                cmd = (entry / "cmdline").read_bytes().decode(errors="replace")
            except OSError:
                continue
            if "nvo3.cli" in cmd and str(work_dir) in cmd:
                pids.append(int(entry.name))
    return pids


@pytest.fixture(scope="module")
def demo(lab: Path) -> Demo:
    return Demo.from_state(lab, quiet=False)


def test_up_and_status(lab: Path) -> None:
    saved = json.loads(lab.read_text())
    assert oct(lab.stat().st_mode & 0o777) == "0o600"      # it holds passwords
    assert len(saved["daemons"]) == 12
    assert {(u["name"], tuple(u["groups"]), u["tenant"]) for u in saved["users"]} == {
        ("operator", ("operators",), None), ("alice-admin", ("tenant-alice",), "alice"),
        ("bob-admin", ("tenant-bob",), "bob")}
    summary = json.loads(nvo3("lab", "status", "--json", state=lab).stdout)
    assert all(d["alive"] for d in summary["daemons"]), summary["daemons"]
    sessions = {d["name"]: d["sessions"] for d in summary["daemons"]}
    assert sessions["nve-host1"] == 2          # its vServer and the nDirector
    assert sessions["vcenter-dc1"] >= 2        # its vServers (and the root once it asked)
    assert {f"{PREFIX}-ul", f"{PREFIX}-host1", f"{PREFIX}-host4"} <= set(summary["namespaces"])
    vms = {v["name"]: v for v in summary["vms"]}
    assert set(vms) == {"vm1", "vm2", "vm3", "vm9"}
    assert all(v["state"] == "powered-on" and v["attachment-state"] == "activated"
               for v in vms.values())
    table = nvo3("lab", "status", state=lab).stdout
    print(table)
    assert "vcenter-root" in table and "alive" in table


def test_use_case_1_on_demand_provisioning(demo: Demo) -> None:
    out = use_case_1(demo)
    print(out)
    assert out["passed"], out
    assert out["vcenter"] == "vcenter-dc1" and out["vserver"] in ("vserver1", "vserver2")
    assert out["cross_tenant_refused"] is True       # created as alice-admin, bob's refused


def test_use_case_2_inter_dc_layer2(demo: Demo) -> None:
    out = use_case_2(demo)
    print(out)
    assert out["passed"], out
    assert {p["tenant"] for p in out["pairs"]} == {"alice", "bob"} and out["isolated"]


def test_use_case_3_several_dcs_as_one(demo: Demo) -> None:
    out = use_case_3(demo)
    print(out)
    assert out["passed"], out
    assert out["data_centers"] == ["dc1", "dc2"]


def test_use_case_4_migration_across_dcs(demo: Demo) -> None:
    out = use_case_4(demo)
    print(out)
    assert out["passed"], out
    assert out["now_on"] == "vserver3" and out["loss_ms"] <= 400
    pytest.relocation_reply = out  # type: ignore[attr-defined]


def test_relocate_reply_names_the_source(demo: Demo) -> None:
    out = getattr(pytest, "relocation_reply", None)
    if out is None:
        pytest.skip("use case 4 did not run")
    assert out["reply_source_vserver"] == out["from"]


def test_down_leaves_nothing(lab: Path) -> None:
    work = Path(json.loads(lab.read_text())["work_dir"])
    out = nvo3("lab", "down", state=lab)
    print(out.stdout)
    assert not namespaces(PREFIX)
    assert not daemons_of(work)
    assert not lab.exists() and not work.exists()
    again = nvo3("lab", "down", "--prefix", PREFIX, state=lab)      # idempotent
    assert "0 daemons stopped" in again.stdout


def test_failed_up_cleans_up(tmp_path: Path) -> None:
    """The last step fails (vserver1 has room for one VM, the topology puts two there)."""
    if os.geteuid() != 0:
        pytest.skip("needs root")
    text = TWO_DC.read_text().replace("capacity = { vcpus = 16, memory = 16384 }\n",
                                      "capacity = { vcpus = 1, memory = 16384 }\n", 1)
    text = text.replace('host = "host4"\nmac = "02:00:00:0a:00:09"',
                        'host = "host1"\nmac = "02:00:00:0a:00:09"')
    topo = tmp_path / "tiny.toml"
    topo.write_text(text)
    state, prefix = tmp_path / "lab.json", f"{PREFIX}f"
    out = nvo3("lab", "up", str(topo), "--prefix", prefix, state=state, check=False)
    print(out.stdout, out.stderr)
    assert out.returncode != 0
    assert "resource" in (out.stdout + out.stderr) or "capacity" in (out.stdout + out.stderr)
    assert not namespaces(prefix) and not state.exists()
    assert not daemons_of(tmp_path)


def test_interrupted_up_cleans_up(tmp_path: Path) -> None:
    if os.geteuid() != 0:
        pytest.skip("needs root")
    state, prefix = tmp_path / "lab.json", f"{PREFIX}i"
    proc = subprocess.Popen([sys.executable, "-m", "nvo3.cli", "lab", "up", str(TWO_DC),
                             "--prefix", prefix], stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True,
                            env={**os.environ, "NVO3_LAB_STATE": str(state)})
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and len(daemons_of(tmp_path)) < 4:
        time.sleep(0.1)
    assert daemons_of(tmp_path), "no daemon started within 30 s"
    proc.send_signal(signal.SIGINT)                   # Ctrl-C
    out, _ = proc.communicate(timeout=60)
    print(out)
    assert proc.returncode == 130
    assert not namespaces(prefix) and not state.exists()
    assert not daemons_of(tmp_path)
