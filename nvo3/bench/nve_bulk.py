"""`nvo3 bench nve`: n remote MACs in ONE edit-config to a real NVE agent, against `bridge -batch`.

Side by side in the same run, each in a throwaway namespace (198.18.0.0/15 addresses, removed
whatever happens):

* nvo3: an `nvo3 serve nve --netns NS` daemon (its own process, loopback); one network, then
  one edit-config with n remote MACs over NETCONF/SSH; the time is the edit-config round trip,
  whose reply comes after the kernel is programmed (checked: n entries in the FDB afterwards).
* `bridge -batch`: the same kernel entries the agent installs per remote MAC (the VXLAN FDB
  entry `dst VTEP self permanent` and the bridge entry `master static`), into the same
  bridge + VXLAN device layout, in a fresh namespace.

The agent logs how its own part splits (config tree, derive, kernel); that line is returned
as ``agent_breakdown`` so the engine's share and the agent's share can be told apart.
"""

from __future__ import annotations

import os
import re
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

from nvo3.bench.fdb import bench_entries
from nvo3.common.names import NVE_NS
from nvo3.launcher import start_role

VNI = 4242
LOCAL = "198.18.0.1"


def _ip(ns: str, *args: str) -> None:
    subprocess.run(["ip", "-n", ns, *args], check=True, capture_output=True, timeout=30)


def _count(ns: str) -> int:
    out = subprocess.run(["bridge", "-n", ns, "fdb", "show", "dev", f"vx-{VNI}"], check=True,
                         capture_output=True, text=True, timeout=60).stdout
    return sum(1 for line in out.splitlines() if " dst " in line and " self " in line)


def _config(macs: str = "") -> str:
    return (f'<config><nve xmlns="{NVE_NS}"><local-vtep-address>{LOCAL}</local-vtep-address>'
            f"<networks><network><vni>{VNI}</vni><remote-macs>{macs}</remote-macs></network>"
            "</networks></nve></config>")


def time_agent(n: int) -> dict[str, Any]:
    """Seconds for one n-entry edit-config to an NVE agent, reply after the kernel."""
    ns = f"nvo3-nveb-{os.getpid()}"
    entries = bench_entries(n)
    body = "".join(f"<remote-mac><mac>{m}</mac><remote-vtep>{v}</remote-vtep></remote-mac>"
                   for m, v in entries)
    subprocess.run(["ip", "netns", "add", ns], check=True, timeout=30)
    try:
        with tempfile.TemporaryDirectory(prefix="nvo3-nve-bench-") as tmp:
            daemon = start_role("nve", Path(tmp), extra_args=("--netns", ns))
            try:
                with daemon.connect(rpc_timeout=300) as client:
                    client.edit_config(_config(), target="running")
                    t0 = time.perf_counter()
                    client.edit_config(_config(body), target="running")
                    elapsed = time.perf_counter() - t0
                got = _count(ns)
                rss = daemon.rss_bytes()
            finally:
                daemon.stop()
            log = (Path(tmp) / "daemon.log").read_text(errors="replace")
    finally:
        subprocess.run(["ip", "netns", "del", ns], check=False, timeout=30)
    if got != n:
        raise RuntimeError(f"the agent's reply came with {got} of {n} entries in the kernel")
    lines = re.findall(r"committed in .*", log)
    return {"nvo3_edit_config_s": round(elapsed, 4), "agent_rss_mb": round(rss / 2**20, 1),
            "agent_breakdown": lines[-1] if lines else None}


def time_bridge_batch(n: int) -> float:
    """Seconds `bridge -batch` takes for the agent's kernel entries of n remote MACs."""
    ns = f"nvo3-brb-{os.getpid()}"
    vx, br = f"vx-{VNI}", f"br-{VNI}"
    subprocess.run(["ip", "netns", "add", ns], check=True, timeout=30)
    try:
        _ip(ns, "link", "add", br, "type", "bridge")
        _ip(ns, "link", "add", vx, "type", "vxlan", "id", str(VNI), "local", LOCAL,
            "dstport", "4789", "nolearning")
        _ip(ns, "link", "set", vx, "master", br, "up")
        _ip(ns, "link", "set", br, "up")
        with tempfile.NamedTemporaryFile("w", suffix=".batch") as fh:
            for mac, vtep in bench_entries(n):
                fh.write(f"fdb add {mac} dev {vx} dst {vtep} self permanent\n"
                         f"fdb add {mac} dev {vx} master static\n")
            fh.flush()
            t0 = time.perf_counter()
            subprocess.run(["bridge", "-n", ns, "-batch", fh.name], check=True,
                           capture_output=True, timeout=300)
            elapsed = time.perf_counter() - t0
        if _count(ns) != n:
            raise RuntimeError("bridge -batch did not install every entry")
        return elapsed
    finally:
        subprocess.run(["ip", "netns", "del", ns], check=False, timeout=30)


def run_bench(n: int = 10_000) -> dict[str, Any]:
    """Measure both, print them and the ratio, return the figures."""
    agent = time_agent(n)
    bridge_s = time_bridge_batch(n)
    result = {"entries": n, "bridge_batch_s": round(bridge_s, 4), **agent,
              "ratio": round(agent["nvo3_edit_config_s"] / bridge_s, 2), "goal_ratio": 3.0}
    print(f"{n} remote MACs: one NETCONF edit-config to the NVE agent "
          f"{result['nvo3_edit_config_s']:.3f} s, bridge -batch {bridge_s:.3f} s, "
          f"ratio {result['ratio']:.2f} (goal <= 3)")
    if agent["agent_breakdown"]:
        print(f"  agent: {agent['agent_breakdown']}")
    return result


if __name__ == "__main__":  # pragma: no cover
    run_bench()
