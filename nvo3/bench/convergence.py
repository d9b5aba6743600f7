"""`nvo3 bench convergence`: from an attachment change at one NVE to the last remote kernel FDB.

A lab of N host namespaces (an NVE agent process each, `nvo3 serve nve --netns`) joined by an
underlay bridge, and the nDirector as a process. One MAC moves around the hosts; for each move
the clock starts before the edit-config that attaches it at the destination NVE and stops when
the last other host's kernel reported (netlink RTM_NEWNEIGH) the FDB entry pointing at the
destination VTEP. The NVE agent today refuses to attach a MAC it holds as a remote MAC, so a
move is break-before-make: detach at the source, wait until every remote entry is gone, then
attach (only the attach is timed).

Namespaces are ``nvo3b-<pid>-*`` and removed in a ``finally``; addresses are 198.18.0.0/15;
only the daemons started here are stopped, by PID.
"""

from __future__ import annotations

import os
import statistics
import subprocess
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from ..dataplane.monitor import Event, Monitor
from ..launcher import RoleProcess, start_role

NVE_NS = "urn:nvo3:yang:nvo3-nve"
ND_NS = "urn:nvo3:yang:nvo3-ndirector"
NC = "urn:ietf:params:xml:ns:netconf:base:1.0"
VNI = 300
MAC = "02:00:00:00:aa:01"
ANCHOR = {"p50_ms": 61.0, "p95_ms": 62.0, "what": "FRR 8.4.4 BGP EVPN, 3 VTEPs, MAC move"}
GOAL = {"p50_ms": 20.0, "p95_ms": 30.0}


def _sh(*args: str) -> None:
    subprocess.run(list(args), check=True, capture_output=True, timeout=30)


class _Lab:
    def __init__(self) -> None:
        self.prefix = f"nvo3b-{os.getpid()}"
        self.created: list[str] = []

    def ns(self, tag: str) -> str:
        name = f"{self.prefix}-{tag}"
        _sh("ip", "netns", "add", name)
        self.created.append(name)
        _sh("ip", "-n", name, "link", "set", "lo", "up")
        return name

    def cleanup(self) -> None:
        for name in reversed(self.created):
            subprocess.run(["ip", "netns", "del", name], capture_output=True, timeout=30)


class _FdbWatch:
    """First time each host's kernel reported (mac, dst) on the VXLAN device."""

    def __init__(self, ns: str) -> None:
        self.seen: dict[tuple[str, str], float] = {}
        self.gone: dict[str, float] = {}
        self.cond = threading.Condition()
        self.monitor = Monitor(self._on, netns=ns, poll=0.05).start()

    def _on(self, events: list[Event]) -> None:
        now = time.perf_counter()
        with self.cond:
            for e in events:
                if e.what == "fdb" and e.mac and e.dst:
                    if e.action == "new":
                        self.seen.setdefault((e.mac, e.dst), now)
                    else:
                        self.gone[e.mac] = now
                        self.seen.pop((e.mac, e.dst), None)
            self.cond.notify_all()

    def wait(self, pred: Any, timeout: float) -> bool:
        with self.cond:
            return self.cond.wait_for(pred, timeout)


def _edit(proc_client: Any, body: str) -> None:
    proc_client.edit_config(f'<config><nve xmlns="{NVE_NS}" xmlns:nc="{NC}">{body}</nve>'
                            "</config>", target="running")


def _attach(c: Any, port: str) -> None:
    _edit(c, f"<attachments><attachment><vni>{VNI}</vni><mac>{MAC}</mac><port>{port}</port>"
             "<state>activated</state></attachment></attachments>")


def _detach(c: Any) -> None:
    _edit(c, f'<attachments><attachment nc:operation="remove"><vni>{VNI}</vni><mac>{MAC}</mac>'
             "</attachment></attachments>")


def run(nves: int = 4, moves: int = 20) -> dict[str, Any]:
    """Build the lab, time `moves` moves, tear everything down; print and return figures."""
    if os.geteuid() != 0:
        raise SystemExit("nvo3 bench convergence needs root (network namespaces)")
    lab = _Lab()
    procs: list[RoleProcess] = []
    clients: list[Any] = []
    watches: list[_FdbWatch] = []
    vtep = {i: f"198.18.{i // 250}.{1 + i % 250}" for i in range(nves)}
    try:
        with tempfile.TemporaryDirectory(prefix="nvo3-bench-") as tmp:
            ul = lab.ns("ul")
            _sh("ip", "-n", ul, "link", "add", "ulbr", "type", "bridge")
            _sh("ip", "-n", ul, "link", "set", "ulbr", "up")
            hosts = []
            for i in range(nves):
                ns = lab.ns(f"h{i}")
                _sh("ip", "-n", ns, "link", "add", "ul0", "type", "veth", "peer", "name",
                    f"ul-h{i}", "netns", ul)
                _sh("ip", "-n", ns, "link", "set", "ul0", "up")
                _sh("ip", "-n", ul, "link", "set", f"ul-h{i}", "master", "ulbr", "up")
                _sh("ip", "-n", ns, "addr", "add", f"{vtep[i]}/15", "dev", "ul0")
                _sh("ip", "-n", ns, "link", "add", "tap-mv", "type", "veth", "peer", "name",
                    "mv-peer")
                _sh("ip", "-n", ns, "link", "set", "tap-mv", "up")
                _sh("ip", "-n", ns, "link", "set", "mv-peer", "up")
                d = Path(tmp) / f"nve{i}"
                d.mkdir()
                p = start_role("nve", d, extra_args=("--netns", ns))
                procs.append(p)
                c = p.connect()
                clients.append(c)
                _edit(c, f"<local-vtep-address>{vtep[i]}</local-vtep-address><networks>"
                         f"<network><vni>{VNI}</vni></network></networks>")
                hosts.append((ns, p))
            d = Path(tmp) / "nd"
            d.mkdir()
            nd = start_role("ndirector", d)
            procs.append(nd)
            ndc = nd.connect()
            clients.append(ndc)
            entries = "".join(
                f"<nve><name>h{i}</name><address>{p.host}</address><port>{p.port}</port>"
                f"<username>{p.username}</username><password>{p.password}</password>"
                f"<host-key>{p.host_key}</host-key><vtep-address>{vtep[i]}</vtep-address></nve>"
                for i, (_ns, p) in enumerate(hosts))
            members = "".join(f"<member-nve>h{i}</member-nve>" for i in range(nves))
            ndc.edit_config(f'<config><ndirector xmlns="{ND_NS}"><nves>{entries}</nves>'
                            f"<networks><network><vni>{VNI}</vni><tenant>bench</tenant>"
                            f"{members}</network></networks></ndirector></config>",
                            target="running")
            watches = [_FdbWatch(ns) for ns, _p in hosts]
            # wait for the nDirector's sessions: the flood lists arrive everywhere
            for i, w in enumerate(watches):
                others = [vtep[j] for j in range(nves) if j != i]
                if not w.wait(lambda w=w, o=others: all(("00:00:00:00:00:00", v) in w.seen
                                                        for v in o), 20):
                    raise RuntimeError(f"flood list of h{i} never arrived")
            latencies: list[float] = []
            attach_ms: list[float] = []
            at = None
            for k in range(moves + 1):
                dst = k % nves
                if at is not None:
                    t_det = time.perf_counter()
                    _detach(clients[at])
                    for i, w in enumerate(watches):
                        if i != at and not w.wait(lambda w=w: w.gone.get(MAC, 0) >= t_det and
                                                  not any(m == MAC for m, _ in w.seen), 10):
                            raise RuntimeError(f"remote entry on h{i} not removed")
                t0 = time.perf_counter()
                _attach(clients[dst], "tap-mv")
                attach_ms.append((time.perf_counter() - t0) * 1000)
                ends = []
                for i, w in enumerate(watches):
                    if i == dst:
                        continue
                    if not w.wait(lambda w=w: (MAC, vtep[dst]) in w.seen, 10):
                        raise RuntimeError(f"h{i} never pointed {MAC} at h{dst}")
                    ends.append(w.seen[(MAC, vtep[dst])])
                if k > 0:             # the first attach is a warm-up
                    latencies.append((max(ends) - t0) * 1000)
                at = dst
            state = ndc.get(filter=("subtree", f'<ndirector xmlns="{ND_NS}"><statistics/>'
                                               "</ndirector>"))
            avg = state.findtext(f".//{{{ND_NS}}}average-convergence-time")
            sess = ndc.get(filter=("subtree", f'<ndirector xmlns="{ND_NS}"><nves/></ndirector>'))
            push_us = [int(e.text) for e in sess.iter(f"{{{ND_NS}}}last-push-latency")]
    finally:
        for w in watches:
            w.monitor.stop()
        for c in clients:
            try:
                c.close()
            except Exception:
                pass
        for p in procs:
            p.stop(timeout=5)
        lab.cleanup()
    q = statistics.quantiles(latencies, n=20, method="inclusive") if len(latencies) > 1 \
        else latencies * 19
    result = {"nves": nves, "moves": len(latencies),
              "p50_ms": round(statistics.median(latencies), 2), "p95_ms": round(q[18], 2),
              "max_ms": round(max(latencies), 2), "min_ms": round(min(latencies), 2),
              "ndirector_avg_convergence_ms": round(int(avg) / 1000, 2) if avg else None,
              "attach_edit_config_p50_ms": round(statistics.median(attach_ms), 2),
              "last_push_latency_ms": [round(u / 1000, 2) for u in push_us],
              "anchor": ANCHOR, "goal": GOAL}
    print(f"convergence, {nves} NVEs, {len(latencies)} moves (attach at one NVE -> last remote "
          f"kernel FDB): p50 {result['p50_ms']:.1f} ms, p95 {result['p95_ms']:.1f} ms, "
          f"max {result['max_ms']:.1f} ms")
    print(f"  anchor {ANCHOR['what']}: p50 {ANCHOR['p50_ms']:.0f} ms, p95 {ANCHOR['p95_ms']:.0f} ms;"
          f" goal p50 <= {GOAL['p50_ms']:.0f} ms, p95 <= {GOAL['p95_ms']:.0f} ms")
    return result
