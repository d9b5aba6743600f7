"""The federated lab (nvo3/lab/topologies/federated.toml) by the real commands: `nvo3 lab up`
starts a three-member etcd cluster and two nDirector replicas per data center beside the
two-dc daemons; `nvo3 lab status` shows the cluster, the leaders and the lag; the demo's four
use cases pass on it (use case 3: the data centers' nDirectors hold one table; use case 4:
the migration crosses from dc1's leader's domain to dc2's); `nvo3 lab down` leaves no
process (etcd included) and no namespace.
"""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from nvo3.lab.use_cases import Demo, use_case_1, use_case_2, use_case_3, use_case_4

from .conftest import TOP, nvo3

PREFIX = f"nvo3g{os.getpid() % 100000}"
FEDERATED = TOP / "nvo3/lab/topologies/federated.toml"


def leftovers(work_dir: Path) -> list[str]:
    out = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                cmd = (entry / "cmdline").read_bytes().decode(errors="replace")
            except OSError:
                continue
            if str(work_dir) in cmd:
                out.append(cmd.replace("\0", " "))
    return out


@pytest.fixture(scope="module")
def fed_lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    assert os.geteuid() == 0, "the lab needs root (network namespaces)"
    state = tmp_path_factory.mktemp(f"lab-{PREFIX}") / "lab.json"
    try:
        print(nvo3("lab", "up", str(FEDERATED), "--prefix", PREFIX, state=state,
                   timeout=180).stdout)
        yield state
    finally:
        print(nvo3("lab", "down", "--prefix", PREFIX, state=state, check=False).stdout)


def test_federated_lab_status_demo_down(fed_lab: Path) -> None:
    saved = json.loads(fed_lab.read_text())
    work_dir = Path(saved["work_dir"])
    assert len(saved["etcd"]) == 3
    assert sorted(d["name"] for d in saved["daemons"] if d["role"] == "ndirector") == \
        ["ndirector-dc1a", "ndirector-dc1b", "ndirector-dc2a", "ndirector-dc2b"]
    table = nvo3("lab", "status", state=fed_lab).stdout
    print(table)
    assert "etcd cluster (3 members" in table
    summary = json.loads(nvo3("lab", "status", "--json", state=fed_lab).stdout)
    members, directors = (t["rows"] for t in summary["federation"])
    assert [m[2:4] for m in members] == [["yes", "yes"]] * 3          # alive, healthy
    roles = {r[0]: r[2] for r in directors}
    for dc in ("dc1", "dc2"):
        assert sorted(roles[f"ndirector-{dc}{x}"] for x in "ab") == ["leader", "standby"]
    assert all(r[4] == "true" and r[5] == "0" for r in directors), directors   # no lag

    demo = Demo.from_state(fed_lab)
    demo.reset()
    results = [case(demo) for case in (use_case_1, use_case_2, use_case_3, use_case_4)]
    print(results)
    assert all(r["passed"] for r in results), results
    assert results[2]["control_plane_agrees"] is True
    assert results[3]["domains"] == {"dc1": results[3]["domains"]["dc1"],
                                     "dc2": results[3]["domains"]["dc2"]}
    assert results[3]["domains"]["dc1"].startswith("ndirector-dc1")
    assert results[3]["leaders_agree"] and results[3]["now_on"] == "vserver3"

    out = nvo3("lab", "down", "--prefix", PREFIX, state=fed_lab).stdout
    assert "daemons stopped" in out
    assert not leftovers(work_dir), leftovers(work_dir)
    names = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    assert f"{PREFIX}-" not in names
