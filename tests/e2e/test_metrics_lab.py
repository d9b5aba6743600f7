"""Every daemon of a lab serves Prometheus metrics and /healthz (`nvo3 lab up` turns them on):
scraped with prometheus_client's own parser before and after a VM is created, moved to the
other data center and deleted through the verbs, the counters move where the work was done
(RPCs, vCenter operations, nDirector pushes and convergence, NVE programming); the audit
trail names who did it and the nDirector logs the move."""

from __future__ import annotations

import json
import os
import re
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

from nvo3.lab.state import Daemon, LabState

from .conftest import nvo3

PREFIX = f"nvo3m{os.getpid() % 100000}"
VM = {"name": "metrics-vm", "tenant": "alice", "mac": "02:00:00:0a:00:4d", "ip": "198.19.10.77"}
Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def scrape(d: Daemon) -> Samples:
    assert d.metrics, f"{d.name} serves no metrics"
    with urllib.request.urlopen(f"http://{d.metrics}/metrics", timeout=20) as reply:
        text = reply.read().decode()
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for f in text_string_to_metric_families(text) for s in f.samples}


def scrape_all(state: LabState) -> dict[str, Samples]:
    with ThreadPoolExecutor(max_workers=6) as pool:
        return dict(zip((d.name for d in state.daemons), pool.map(scrape, state.daemons),
                        strict=True))


def total(samples: Samples, name: str, **labels: str) -> float:
    """The sum of `name` over the series whose labels include `labels`."""
    want = set(labels.items())
    return sum(v for (n, lb), v in samples.items() if n == name and want <= set(lb))


def test_every_daemon_scraped_counters_move_with_vm_operations(lab: Path) -> None:
    state = LabState.load(lab)
    assert len(state.daemons) == 12 and all(d.metrics for d in state.daemons)
    summary = json.loads(nvo3("lab", "status", "--json", state=lab).stdout)
    assert {d["name"]: d["metrics"] for d in summary["daemons"]} == \
        {d.name: d.metrics for d in state.daemons}
    assert re.search(r"\bmetrics\b", nvo3("lab", "status", state=lab).stdout)
    for d in state.daemons:
        with urllib.request.urlopen(f"http://{d.metrics}/healthz", timeout=20) as reply:
            assert reply.status == 200, d.name
    before = scrape_all(state)
    for d in state.daemons:
        assert total(before[d.name], "nvo3_daemon_info", role=d.role) == 1
    nd = before["ndirector"]
    assert total(nd, "nvo3_ndirector_nve_session_state", state="connected") == 4
    assert total(nd, "nvo3_ndirector_mappings") >= 4                    # the lab's VMs

    nvo3("vm", "create", VM["name"], "-t", VM["tenant"], "--vserver", "vserver1", "--mac",
         VM["mac"], "--ip", VM["ip"], state=lab)
    nvo3("vm", "move", VM["name"], "-t", VM["tenant"], "--to", "vserver3", state=lab)
    nvo3("vm", "delete", VM["name"], "-t", VM["tenant"], state=lab)
    after = scrape_all(state)

    def grew(daemon: str, name: str, **labels: str) -> float:
        return total(after[daemon], name, **labels) - total(before[daemon], name, **labels)

    root = "vcenter-root"
    for kind in ("create", "relocate", "delete"):
        assert grew(root, "nvo3_vcenter_operations_total", kind=kind, outcome="ok") == 1, kind
        assert grew(root, "nvo3_vcenter_operation_duration_seconds_count", kind=kind) == 1
    assert grew("vcenter-dc1", "nvo3_vcenter_operations_total", outcome="ok") >= 1
    assert grew("vcenter-dc2", "nvo3_vcenter_operations_total", outcome="ok") >= 1
    for d in ("vserver1", "vserver3"):
        assert grew(d, "nvo3_netconf_rpcs_total", outcome="ok") >= 1, d
    # the NVEs programmed the VM's attachment and the others its remote MAC, pushed by the
    # nDirector, which saw the whole network converge
    for d in ("nve-host1", "nve-host3"):
        assert grew(d, "nvo3_nve_programming_duration_seconds_count") >= 2, d
        assert grew(d, "nvo3_netconf_rpcs_total", operation="edit-config", outcome="ok") >= 2
    assert grew("ndirector", "nvo3_ndirector_push_duration_seconds_count") >= 3
    assert grew("ndirector", "nvo3_ndirector_nve_pushes_total", outcome="ok") >= 3
    assert grew("ndirector", "nvo3_ndirector_convergence_seconds_count") >= 1
    assert grew("ndirector", "nvo3_ndirector_mapping_updates_total") >= 3   # add, move, remove
    assert total(after["ndirector"], "nvo3_ndirector_mappings") == total(nd, "nvo3_ndirector_mappings")
    assert total(after["ndirector"], "nvo3_ndirector_nve_pushes_total", outcome="failed") == 0
    for d in state.daemons:
        assert total(after[d.name], "nvo3_nve_programming_failures_total") == 0, d.name

    # the audit trail: the root vCenter names who created the VM; the nDirector logs the move
    root_log = (Path(state.daemon(root).state_dir) / "daemon.log").read_text()
    user = state.daemon(root).username
    assert re.search(rf"nvo3\.audit: vcenter: \S+@127\.0\.0\.1 session \d+: "
                     rf"nvo3-vcenter:create-vm: .*name={VM['name']}.* -> ok", root_log), user
    nd_log = (Path(state.daemon("ndirector").state_dir) / "daemon.log").read_text()
    assert re.search(rf"mapping moved: mac {VM['mac']} vni 10010 at host1 -> host3 "
                     r"\(vtep [\d.]+\) sequence \d+", nd_log), nd_log[-3000:]
    for d in state.daemons:                         # no peer password ever reaches a log
        text = (Path(d.state_dir) / "daemon.log").read_text()
        assert all(o.password not in text for o in state.daemons), d.name
