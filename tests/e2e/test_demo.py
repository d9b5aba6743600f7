"""The README's main job, end to end: `nvo3 demo` on this machine, as an operator runs it.

It brings up the default two-DC lab (12 daemons, real namespaces, real NETCONF over SSH,
real VXLAN in the kernel), runs the draft's four use cases and takes the lab down.
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
    return [ln for ln in out.stdout.splitlines() if "nvo3demo" in ln]


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
    assert cases["4"]["now_on"] == "vserver3" and cases["4"]["loss_ms"] <= 400
    assert not {n for n in _namespaces() if n.startswith("nvo3demo-")}, "namespaces left"
    assert not _daemons(), "daemons left"
