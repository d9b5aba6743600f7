"""`nvo3 demo`: the README's main job, until the full lab demo exists.

Builds two hosts and two VMs in network namespaces, starts one NVE agent per host (each its
own process and NETCONF server on loopback), configures the overlay only through NETCONF, and
shows a ping crossing the kernel VXLAN data plane, an rpc-error for bad input, and a removed
mapping cutting the path. Everything it creates is removed at the end, also on Ctrl-C.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from .lab.netns import Netns, netns_exec, ping
from .launcher import RoleProcess, start_role
from .netconf.client import RemoteRpcError

NVE_NS = "urn:nvo3:yang:nvo3-nve"
VNI = 10010
HOSTS = {  # host: (underlay address, VM name, VM MAC, VM overlay address)
    "host1": ("198.18.0.1", "vm1", "02:00:00:00:01:01", "198.19.10.1"),
    "host2": ("198.18.0.2", "vm2", "02:00:00:00:01:02", "198.19.10.2"),
}


class Narrator:
    """Numbered steps with their duration, for people; figures collected for --json."""

    def __init__(self, total: int, quiet: bool):
        self.total, self.step, self.quiet = total, 0, quiet
        self.figures: dict[str, Any] = {}
        self._t0 = 0.0

    def begin(self, text: str) -> None:
        self.step += 1
        self._t0 = time.perf_counter()
        if not self.quiet:
            print(f"[{self.step}/{self.total}] {text} ...", end="", flush=True)

    def end(self, result: str = "ok") -> float:
        elapsed = time.perf_counter() - self._t0
        if not self.quiet:
            print(f" {result} ({elapsed * 1000:.0f} ms)")
        return elapsed

    def say(self, text: str) -> None:
        if not self.quiet:
            print(f"      {text}")


def _attachment(host: str) -> str:
    _, vm, mac, ip = HOSTS[host]
    return (f"<attachment><vni>{VNI}</vni><mac>{mac}</mac><vm-id>{vm}</vm-id>"
            f"<ip-address>{ip}</ip-address><port>{vm}p</port><state>activated</state>"
            "</attachment>")


def _nve_config(host: str, remote: str | None) -> str:
    vtep = HOSTS[host][0]
    mappings = flood = ""
    if remote is not None:
        rvtep, rvm, rmac, rip = HOSTS[remote]
        mappings = (f"<remote-macs><remote-mac><mac>{rmac}</mac><ip-address>{rip}</ip-address>"
                    f"<remote-vtep>{rvtep}</remote-vtep><remote-nve>{remote}</remote-nve>"
                    "</remote-mac></remote-macs>")
        flood = f"<flood-list><vtep><address>{rvtep}</address></vtep></flood-list>"
    return (f'<config><nve xmlns="{NVE_NS}"><nve-id>{host}</nve-id>'
            f"<local-vtep-address>{vtep}</local-vtep-address><networks><network>"
            f"<vni>{VNI}</vni><tenant>alice</tenant>{mappings}{flood}</network></networks>"
            f"<attachments>{_attachment(host)}</attachments></nve></config>")


def _build_lab(lab: Netns) -> dict[str, str]:
    underlay = lab.namespace("ul")
    lab.bridge(underlay, "ul")
    names = {}
    for i, (host, (vtep, vm, mac, ip)) in enumerate(HOSTS.items(), start=1):
        hns = lab.namespace(host)
        lab.veth(hns, "eth0", underlay, f"ul{i}")
        lab.enslave(underlay, f"ul{i}", "ul")
        lab.address(hns, "eth0", f"{vtep}/24")
        vns = lab.namespace(vm)
        lab.veth(vns, "eth0", hns, f"{vm}p", mac_a=mac)
        lab.address(vns, "eth0", f"{ip}/24")
        names[host], names[vm] = hns, vns
    return names


def run_demo(json_output: bool = False) -> int:
    lab = Netns(f"nvo3demo{os.getpid()}")
    tmp = Path(tempfile.mkdtemp(prefix="nvo3-demo-"))
    daemons: dict[str, RoleProcess] = {}
    say = Narrator(total=7, quiet=json_output)
    previous = signal.signal(signal.SIGTERM, lambda *_: (_ for _ in ()).throw(KeyboardInterrupt))
    try:
        return _run(lab, tmp, daemons, say, json_output)
    except KeyboardInterrupt:
        print("\ninterrupted: cleaning up", file=sys.stderr)
        return 130
    finally:
        for daemon in daemons.values():
            daemon.stop()
        lab.cleanup()
        shutil.rmtree(tmp, ignore_errors=True)
        signal.signal(signal.SIGTERM, previous)


def _run(lab: Netns, tmp: Path, daemons: dict[str, RoleProcess], say: Narrator,
         json_output: bool) -> int:
    say.begin("building two hosts and two VMs in network namespaces (underlay 198.18.0.0/24)")
    ns = _build_lab(lab)
    say.end()

    say.begin("starting one NVE agent per host, each a NETCONF/SSH server on 127.0.0.1")
    for host in HOSTS:
        daemons[host] = start_role("nve", tmp / host, extra_args=("--netns", ns[host]))
    say.end()
    for host, d in daemons.items():
        say.say(f"{host}: port {d.port}, host key {d.host_key[:40]}...")
    clients = {host: d.connect() for host, d in daemons.items()}

    say.begin("attaching vm1 at host1 and vm2 at host2 (edit-config, VNI 10010)")
    for host, client in clients.items():
        client.edit_config(_nve_config(host, remote=None), target="running")
    say.figures["attach_ms"] = round(say.end() * 1000, 1)
    reachable = ping(ns["vm1"], HOSTS["host2"][3])
    say.say(f"vm1 -> vm2 without remote mappings: {'reachable' if reachable else 'no path'}")

    say.begin("pushing the remote mappings and flood lists to both NVEs")
    for host, client in clients.items():
        other = next(h for h in HOSTS if h != host)
        client.edit_config(_nve_config(host, remote=other), target="running")
    say.figures["mapping_push_ms"] = round(say.end() * 1000, 1)
    fdb = netns_exec(ns["host1"], "bridge", "fdb", "show", "dev", f"vx-{VNI}").stdout
    for line in fdb.splitlines():
        if "dst" in line:
            say.say(f"host1 kernel FDB: {line.strip()}")

    say.begin("pinging vm2 from vm1 across the VXLAN overlay")
    deadline = time.monotonic() + 5
    while not (ok := ping(ns["vm1"], HOSTS["host2"][3])) and time.monotonic() < deadline:
        time.sleep(0.1)
    say.figures["overlay_ping"] = ok
    say.end("reachable" if ok else "FAILED")

    say.begin("bad input: a remote VTEP equal to host1's own VTEP")
    bad = _nve_config("host1", remote="host1").replace("<remote-nve>host1</remote-nve>", "")
    try:
        clients["host1"].edit_config(bad, target="running")
        refused = False
    except RemoteRpcError as err:
        refused = True
        say.end("refused")
        say.say(f"rpc-error {err.tag}: {err.message}")
        say.say(f"error-path {err.path}")
    if not refused:
        say.end("ACCEPTED (unexpected)")
    say.figures["bad_input_refused"] = refused

    say.begin("withdrawing vm2's mapping and flood entry from host1: the path must close")
    withdraw = (f'<config><nve xmlns="{NVE_NS}" xmlns:nc="urn:ietf:params:xml:ns:netconf:base:1.0">'
                f"<networks><network><vni>{VNI}</vni>"
                '<remote-macs nc:operation="remove"/><flood-list nc:operation="remove"/>'
                "</network></networks></nve></config>")
    clients["host1"].edit_config(withdraw, target="running")
    closed = not ping(ns["vm1"], HOSTS["host2"][3])
    say.figures["path_closed_after_removal"] = closed
    say.end("closed" if closed else "STILL OPEN")
    for client in clients.values():
        client.close()

    passed = ok and refused and closed
    if json_output:
        print(json.dumps({"passed": passed, **say.figures}, indent=2))
    else:
        print("demo " + ("passed" if passed else "FAILED") + ": " +
              ", ".join(f"{k}={v}" for k, v in say.figures.items()))
    return 0 if passed else 1
