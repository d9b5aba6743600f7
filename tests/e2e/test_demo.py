"""The README's main job, end to end: `nvo3 demo` on this machine, as an operator runs it.

It brings up the federated lab (two data centers, four hosts, a three-member etcd cluster, two
nDirector replicas per data center; real namespaces, real NETCONF over SSH, real VXLAN in the
kernel), runs the draft's four use cases and takes the lab down: no daemon and no etcd member
left.
"""

from __future__ import annotations

import json
import subprocess
import sys


def _namespaces() -> set[str]:
    out = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, check=True)
    return {line.split()[0] for line in out.stdout.splitlines() if line.strip()}


def _daemons() -> list[str]:
    out = subprocess.run(["pgrep", "-af", "nvo3.cli serve"], capture_output=True, text=True)
    out2 = subprocess.run(["pgrep", "-af", "etcd"], capture_output=True, text=True)
    return [ln for ln in (out.stdout + out2.stdout).splitlines() if "nvo3demo" in ln]


def test_demo_runs_the_four_use_cases_and_leaves_nothing_behind() -> None:
    result = subprocess.run([sys.executable, "-m", "nvo3.cli", "--log-level", "WARNING", "demo",
                             "--json"], capture_output=True, text=True, timeout=180)
    assert result.returncode == 0, result.stdout + result.stderr
    figures = json.loads(result.stdout)
    assert figures["passed"] is True
    cases = figures["use_cases"]
    assert cases["1"]["attachment"] == "activated" and cases["1"]["reachable_after_ms"] is not None
    assert all(p["ok"] for p in cases["2"]["pairs"]) and cases["2"]["isolated"] is True
    assert cases["3"]["data_centers"] == ["dc1", "dc2"]
    assert cases["3"]["control_plane_agrees"] is True    # the DCs' nDirectors share one table in etcd
    assert cases["4"]["now_on"] == "vserver3" and cases["4"]["loss_ms"] <= 400
    assert not {n for n in _namespaces() if n.startswith("nvo3demo-")}, "namespaces left"
    assert not _daemons(), "daemons left"
