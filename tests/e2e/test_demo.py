"""The README's main job, end to end: `nvo3 demo` on this machine, as an operator runs it.

Real namespaces, real NVE agent processes, real NETCONF over SSH, real VXLAN in the kernel.
"""

from __future__ import annotations

import json
import subprocess
import sys


def _namespaces() -> set[str]:
    out = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, check=True)
    return {line.split()[0] for line in out.stdout.splitlines() if line.strip()}


def test_demo_passes_and_leaves_nothing_behind() -> None:
    before = _namespaces()
    result = subprocess.run([sys.executable, "-m", "nvo3.cli", "--log-level", "WARNING", "demo",
                             "--json"], capture_output=True, text=True, timeout=180)
    assert result.returncode == 0, result.stdout + result.stderr
    figures = json.loads(result.stdout)
    assert figures["passed"] is True
    assert figures["overlay_ping"] is True
    assert figures["bad_input_refused"] is True
    assert figures["path_closed_after_removal"] is True
    leftovers = {n for n in _namespaces() - before if n.startswith("nvo3demo")}
    assert not leftovers, f"the demo left namespaces behind: {leftovers}"
