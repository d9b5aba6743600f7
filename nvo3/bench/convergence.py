"""`nvo3 bench convergence`: from an attachment change at one NVE to the last remote kernel FDB.

A lab of N host namespaces (an NVE agent process each, `nvo3 serve nve --netns`) joined by an
underlay bridge, and the nDirector as a process. Three figures:

(a) **Move** (4 NVEs, 20 moves), make-before-break as RFC 8394 hot migration does it: the VM's
    MAC is *associated* at the destination NVE (pre-installed, not forwarding), the source
    deactivates it (the VM is paused there), then the destination *activates* it: the switch
    moment. The clock starts before the activating edit-config and stops when the last other
    NVE's kernel (the source included) reported (netlink RTM_NEWNEIGH) the FDB entry pointing at
    the destination VTEP. The attachment left at the source is removed afterwards (untimed).
    The time until the last NVE other than the source and the destination (the "remote" ones)
    is reported too.
(b) **Bulk**: 10,000 VMs, 2,500 behind each of the 4 NVEs, spread over 4 VNIs (BULK_VNIS,
    625 ports each per NVE: a Linux bridge holds at most 1,024 ports, so one VNI's bridge
    cannot take 2,500; every NVE is a member of every bulk VNI). Their ports are tap devices (what
    a hypervisor gives a VM; this kernel has no dummy driver), created beforehand with
    ``ip -batch`` (an activated attachment's port must exist: the NVE agent refuses it
    otherwise, see nve_desired.derive), and each NVE gets its 2,500
    attachments (activated) in one edit-config, the four sent at once. The clock starts before
    the four edit-configs and stops when every NVE's kernel holds the 7,500 remote MACs of the
    others, each pointing at the right VTEP.  Printed with it, measured in the same run: the
    *kernel floor*, the same kernel work done by iproute2 alone (``ip -batch`` enslaving the
    ports, ``bridge -batch`` installing the remote entries, four scratch hosts at once).  On
    this 2-core machine kind enslaving 10,000 ports alone takes seconds (RTNL is one lock for
    every namespace), so the 1 s goal is out of reach for any implementation that attaches the
    ports inside the measured interval; the ratio to the floor is what nvo3 adds.
(c) **Scale**: the move of (a) with 2, 4, 8 and 16 NVEs (a lab of each size, torn down before the
    next one).
(d) **Loaded move**: the move of (a), 10 moves, with 0, 2,000 and 10,000 VMs already attached
    across the 4 NVEs (one lab; the VMs are added between the steps as (b) attaches them: tap
    ports made beforehand, one edit-config per NVE sent at once, until every kernel holds the
    others' MACs, untimed; spread round-robin over the 4 BULK_VNIS).  p50/p95 at each load and
    the ratio loaded/empty: what a change costs in proportion to what is already configured.

Printed beside: the anchor (FRR 8.4.4 BGP EVPN on this machine kind) and the goals.
Namespaces are ``nvo3b-<pid>-*`` and removed in a ``finally``; addresses are 198.18.0.0/15;
only the daemons started here are stopped, by PID.
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from nvo3.common.names import NDIRECTOR_NS as ND_NS
from nvo3.common.names import NVE_NS
from nvo3.dataplane.monitor import RTMGRP_NEIGH, NetlinkEvent, NetlinkMonitor
from nvo3.launcher import RoleProcess, start_role
from nvo3.netconf.proto.xml import BASE_NS

NC = BASE_NS
VNI = 300
MAC = "02:00:00:00:aa:01"
PORT = "tap-mv"
ANCHOR = {"what": "FRR 8.4.4 BGP EVPN, 3 VTEPs (Debian package, this machine kind)",
          "move_p50_ms": 61.0, "move_p95_ms": 62.0, "macs_1000_ms": 106.0,
          "macs_5000_ms": 359.0}
GOAL = {"move_p50_ms": 20.0, "move_p95_ms": 30.0, "vms_10000_s": 1.0}
BULK_VMS = 10_000
BULK_VNIS = (10010, 10011, 10012, 10013)
SCALE_SIZES = (2, 4, 8, 16)
SCALE_MOVES = 10
LOADED_VMS = (0, 2_000, 10_000)
LOADED_MOVES = 10
GOAL_LOADED_RATIO = 1.5
WAIT_S = 10.0
BULK_WAIT_S = 120.0


def _sh(*args: str, stdin: str | None = None) -> None:
    subprocess.run(list(args), check=True, capture_output=True, timeout=60, input=stdin,
                   text=True)


def _vtep(i: int) -> str:
    return f"198.18.{i // 250}.{1 + i % 250}"


def _bulk_mac(host: int, k: int) -> str:
    return f"02:01:{host:02x}:00:{k >> 8:02x}:{k & 0xff:02x}"


class _FdbWatch:
    """Where each host's kernel points every MAC (FDB entries with a dst, from netlink), when
    that last changed, and how many of an expected set point where they should."""

    def __init__(self, ns: str) -> None:
        self.now: dict[str, tuple[str, float]] = {}      # mac -> (dst, when)
        self.flood: set[str] = set()
        self.expected: dict[str, str] = {}
        self.good = 0
        self.cond = threading.Condition()
        # FDB events only: the link events of thousands of ports would cost the measuring
        # process CPU that the measured daemons share
        self.monitor = NetlinkMonitor(self._on, netns=ns, poll=0.05, groups=RTMGRP_NEIGH).start()

    def expect(self, expected: dict[str, str]) -> None:
        with self.cond:
            self.expected = expected
            self.good = sum(1 for m, d in expected.items() if self.now.get(m, ("",))[0] == d)

    def _on(self, events: list[NetlinkEvent]) -> None:
        t = time.perf_counter()
        with self.cond:
            now, exp = self.now, self.expected
            for e in events:
                if e.what != "fdb" or not e.mac or not e.dst:
                    continue
                if e.mac == "00:00:00:00:00:00":
                    (self.flood.add if e.action == "new" else self.flood.discard)(e.dst)
                    continue
                old = now.get(e.mac)
                want = exp.get(e.mac)
                if e.action == "new":
                    now[e.mac] = (e.dst, t)
                    if want is not None and (old is None or old[0] != want) and e.dst == want:
                        self.good += 1
                    elif want is not None and old is not None and old[0] == want != e.dst:
                        self.good -= 1
                elif old is not None and old[0] == e.dst:
                    del now[e.mac]
                    if want is not None and e.dst == want:
                        self.good -= 1
            self.cond.notify_all()

    def points(self, mac: str, dst: str, since: float) -> bool:
        cur = self.now.get(mac)
        return cur is not None and cur[0] == dst and cur[1] >= since

    def wait(self, pred: Callable[[], bool], timeout: float) -> bool:
        with self.cond:
            return self.cond.wait_for(pred, timeout)


def _nve_edit(c: Any, body: str) -> None:
    c.edit_config(f'<config><nve xmlns="{NVE_NS}" xmlns:nc="{NC}">{body}</nve></config>',
                  target="running")


def _attachment(mac: str, port: str, state: str, vni: int = VNI) -> str:
    return (f"<attachment><vni>{vni}</vni><mac>{mac}</mac><port>{port}</port>"
            f"<state>{state}</state></attachment>")


class _Overlay:
    """N NVE agents in host namespaces on one underlay bridge, and the nDirector."""

    def __init__(self, n: int, tmp: Path, vnis: tuple[int, ...] = (VNI,)) -> None:
        self.n, self.tmp, self.vnis = n, tmp, vnis
        self.prefix = f"nvo3b-{os.getpid()}-{n}"
        self.created: list[str] = []
        self.procs: list[RoleProcess] = []
        self.clients: list[Any] = []
        self.watches: list[_FdbWatch] = []
        self.hosts: list[str] = []
        self.ndc: Any = None
        self.mac_at: int | None = None        # the NVE where MAC is attached and active
        self.loaded = 0                       # VMs attached by `load`, per NVE

    def _ns(self, tag: str) -> str:
        name = f"{self.prefix}-{tag}"
        _sh("ip", "netns", "add", name)
        self.created.append(name)
        _sh("ip", "-n", name, "link", "set", "lo", "up")
        return name

    def build(self) -> _Overlay:
        ul = self._ns("ul")
        _sh("ip", "-n", ul, "link", "add", "ulbr", "type", "bridge")
        _sh("ip", "-n", ul, "link", "set", "ulbr", "up")
        for i in range(self.n):
            ns = self._ns(f"h{i}")
            _sh("ip", "-n", ns, "-batch", "-", stdin=(
                f"link add ul0 type veth peer name ul-h{i} netns {ul}\n"
                "link set ul0 up\n"
                f"addr add {_vtep(i)}/15 dev ul0\n"
                f"link add {PORT} type veth peer name mv-peer\n"
                f"link set {PORT} up\nlink set mv-peer up\n"))
            _sh("ip", "-n", ul, "link", "set", f"ul-h{i}", "master", "ulbr", "up")
            self.hosts.append(ns)

        def agent(i: int) -> RoleProcess:
            d = self.tmp / f"n{self.n}-nve{i}"
            d.mkdir()
            return start_role("nve", d, extra_args=("--netns", self.hosts[i]))
        with ThreadPoolExecutor(4) as pool:
            futures = [pool.submit(agent, i) for i in range(self.n)]
            for f in futures:                  # every one, so none is left unstopped
                try:
                    self.procs.append(f.result())
                except Exception:
                    pass
        if len(self.procs) != self.n:
            raise RuntimeError("an NVE agent did not start")
        for i, p in enumerate(self.procs):
            c = p.connect()
            self.clients.append(c)
            _nve_edit(c, f"<local-vtep-address>{_vtep(i)}</local-vtep-address><networks>"
                         + "".join(f"<network><vni>{v}</vni></network>" for v in self.vnis)
                         + "</networks>")
        self.watches = [_FdbWatch(ns) for ns in self.hosts]
        self.start_ndirector()
        for i, w in enumerate(self.watches):       # the nDirector's sessions are up
            others = {_vtep(j) for j in range(self.n) if j != i}
            def arrived(w: _FdbWatch = w, o: set[str] = others) -> bool:
                return o <= w.flood
            if not w.wait(arrived, 30):
                raise RuntimeError(f"flood list of h{i} never arrived")
        return self

    def start_ndirector(self) -> None:
        """The nDirector as a process, given every NVE and the networks."""
        d = self.tmp / f"n{self.n}-nd"
        d.mkdir()
        nd = start_role("ndirector", d)
        self.procs.append(nd)
        self.ndc = nd.connect()
        entries = "".join(
            f"<nve><name>h{i}</name><address>{p.host}</address><port>{p.port}</port>"
            f"<username>{p.username}</username><password>{p.password}</password>"
            f"<host-key>{p.host_key}</host-key><vtep-address>{_vtep(i)}</vtep-address></nve>"
            for i, p in enumerate(self.procs[:self.n]))
        members = "".join(f"<member-nve>h{i}</member-nve>" for i in range(self.n))
        networks = "".join(f"<network><vni>{v}</vni><tenant>bench</tenant>{members}</network>"
                           for v in self.vnis)
        self.ndc.edit_config(f'<config><ndirector xmlns="{ND_NS}"><nves>{entries}</nves>'
                             f"<networks>{networks}</networks>"
                             # one MAC moved 20 times in seconds is what duplicate-MAC
                             # detection exists to catch: off for the benchmark
                             "<duplicate-mac-detection><enabled>false</enabled>"
                             "</duplicate-mac-detection></ndirector></config>",
                             target="running")

    def close(self) -> None:
        for w in self.watches:
            w.monitor.stop()
        for c in [*self.clients, self.ndc]:
            try:
                if c is not None:
                    c.close()
            except Exception:
                pass
        for p in reversed(self.procs):       # the nDirector first: no reconnect attempts
            p.stop(timeout=5)
        for name in reversed(self.created):
            subprocess.run(["ip", "netns", "del", name], capture_output=True, timeout=30)

    def nd_stats(self) -> dict[str, Any]:
        state = self.ndc.get(filter=("subtree", f'<ndirector xmlns="{ND_NS}"><statistics/>'
                                                "<nves/></ndirector>"))
        avg = state.findtext(f".//{{{ND_NS}}}average-convergence-time")
        push = [int(e.text) for e in state.iter(f"{{{ND_NS}}}last-push-latency")]
        return {"ndirector_avg_convergence_ms": round(int(avg) / 1000, 2) if avg else None,
                "last_push_latency_ms": [round(u / 1000, 2) for u in push]}

    # (a) and (c) ---------------------------------------------------------------------------
    def moves(self, moves: int) -> dict[str, Any]:
        n, w = self.n, self.watches
        vtep = [_vtep(i) for i in range(n)]
        all_ms, remote_ms, activate_ms = [], [], []

        def converged(dst: int, since: float, skip: set[int]) -> list[float]:
            ends = []
            for i in range(n):
                if i == dst or i in skip:
                    continue
                def points(i: int = i) -> bool:
                    return w[i].points(MAC, vtep[dst], since)
                if not w[i].wait(points, WAIT_S):
                    raise RuntimeError(f"h{i} never pointed {MAC} at h{dst}")
                ends.append(w[i].now[MAC][1])
            return ends

        if self.mac_at is None:          # warm-up: the MAC appears at h0
            t = time.perf_counter()
            _nve_edit(self.clients[0], "<attachments>" + _attachment(MAC, PORT, "activated")
                      + "</attachments>")
            converged(0, t, set())
            self.mac_at = 0
        src = self.mac_at
        for _ in range(moves):
            dst = (src + 1) % n
            _nve_edit(self.clients[dst], "<attachments>" + _attachment(MAC, PORT, "associated")
                      + "</attachments>")                       # pre-installed
            _nve_edit(self.clients[src], "<attachments>" + _attachment(MAC, PORT, "associated")
                      + "</attachments>")                       # paused at the source
            time.sleep(0.05)                                    # let both settle, untimed
            t0 = time.perf_counter()
            _nve_edit(self.clients[dst], "<attachments>" + _attachment(MAC, PORT, "activated")
                      + "</attachments>")                       # the switch moment
            activate_ms.append((time.perf_counter() - t0) * 1000)
            ends = converged(dst, t0, set())
            all_ms.append((max(ends) - t0) * 1000)
            if n > 2:
                others = [w[i].now[MAC][1] for i in range(n) if i not in (src, dst)]
                remote_ms.append((max(others) - t0) * 1000)
            _nve_edit(self.clients[src], f'<attachments><attachment nc:operation="remove">'
                      f"<vni>{VNI}</vni><mac>{MAC}</mac></attachment></attachments>")
            time.sleep(0.02)
            src = self.mac_at = dst
        out: dict[str, Any] = {"nves": n, "moves": moves, **_q(all_ms)}
        if remote_ms:
            out["remote_only"] = _q(remote_ms)
        out["activate_edit_config_p50_ms"] = round(statistics.median(activate_ms), 2)
        out.update(self.nd_stats())
        return out

    # (b) -----------------------------------------------------------------------------------
    def bulk(self, vms: int) -> dict[str, Any]:
        n, vnis = self.n, self.vnis
        per = vms // n
        vni_of = [vnis[k * len(vnis) // per] for k in range(per)]   # contiguous blocks
        port = [[f"vm{k}" for k in range(per)] for _ in range(n)]
        for i, ns in enumerate(self.hosts):
            _sh("ip", "-n", ns, "-batch", "-", stdin="".join(
                f"tuntap add mode tap name {p}\nlink set {p} up\n" for p in port[i]))
        macs = {i: [_bulk_mac(i, k) for k in range(per)] for i in range(n)}
        for i, w in enumerate(self.watches):
            w.expect({m: _vtep(j) for j in range(n) if j != i for m in macs[j]})
        bodies = ["<attachments>" + "".join(_attachment(m, port[i][k], "activated", vni_of[k])
                                            for k, m in enumerate(macs[i])) + "</attachments>"
                  for i in range(n)]
        done: dict[int, float] = {}

        for c in self.clients:
            c.timeout = BULK_WAIT_S        # an NVE attaches 2,500 ports in this one commit

        def send(i: int) -> None:
            _nve_edit(self.clients[i], bodies[i])
            done[i] = time.perf_counter()
        want = per * (n - 1)
        t0 = time.perf_counter()
        threads = [threading.Thread(target=send, args=(i,), daemon=True) for i in range(n)]
        for th in threads:
            th.start()
        for th in threads:
            th.join(BULK_WAIT_S)
        ends = []
        deadline = t0 + BULK_WAIT_S
        for w in self.watches:
            def complete(w: _FdbWatch = w) -> bool:
                return w.good >= want
            if not w.wait(complete, max(0.0, deadline - time.perf_counter())):
                raise RuntimeError(
                    f"not complete after {BULK_WAIT_S:g} s: remote MACs in place per NVE "
                    + ", ".join(f"h{j} {x.good}/{want}" for j, x in enumerate(self.watches))
                    + f" (attach edit-configs returned: {len(done)}/{n})")
            ends.append(max(w.now[m][1] for m in w.expected))
        if len(done) != n:
            raise RuntimeError("a bulk attach edit-config failed")
        return {"vms": per * n, "nves": n, "vnis": list(vnis), "complete_s": round(max(ends) - t0, 3),
                "attach_edit_configs_s": round(max(done.values()) - t0, 3),
                "per_nve_complete_s": [round(e - t0, 3) for e in ends],
                **self.nd_stats()}


    # (d) -----------------------------------------------------------------------------------
    def load(self, vms: int) -> dict[str, Any]:
        """Attach VMs until `vms` (activated, spread round-robin over BULK_VNIS) are attached
        across the NVEs: the missing ones' tap ports made beforehand, then one edit-config per
        NVE, sent at once, and wait until every kernel holds the others' MACs.  Untimed for the
        figures; the seconds it took are returned for the record."""
        n = self.n
        per = vms // n
        have = self.loaded
        if per <= have:
            return {"vms": have * n, "load_s": 0.0}
        for ns in self.hosts:
            _sh("ip", "-n", ns, "-batch", "-", stdin="".join(
                f"tuntap add mode tap name vm{k}\nlink set vm{k} up\n" for k in range(have, per)))
        for i, w in enumerate(self.watches):
            w.expect({_bulk_mac(j, k): _vtep(j) for j in range(n) if j != i for k in range(per)})
        bodies = ["<attachments>" + "".join(
            _attachment(_bulk_mac(i, k), f"vm{k}", "activated", BULK_VNIS[k % len(BULK_VNIS)])
            for k in range(have, per)) + "</attachments>" for i in range(n)]
        for c in self.clients:
            c.timeout = BULK_WAIT_S
        failed: list[BaseException] = []

        def send(i: int) -> None:
            try:
                _nve_edit(self.clients[i], bodies[i])
            except Exception as exc:         # reported below, by the caller's thread
                failed.append(exc)
        t0 = time.perf_counter()
        threads = [threading.Thread(target=send, args=(i,), daemon=True) for i in range(n)]
        for th in threads:
            th.start()
        for th in threads:
            th.join(BULK_WAIT_S)
        if failed:
            raise RuntimeError(f"a load edit-config failed: {failed[0]}")
        want = per * (n - 1)
        deadline = t0 + BULK_WAIT_S
        for j, w in enumerate(self.watches):
            def complete(w: _FdbWatch = w) -> bool:
                return w.good >= want
            if not w.wait(complete, max(0.0, deadline - time.perf_counter())):
                raise RuntimeError(f"load of {vms} VMs: h{j} holds {w.good}/{want} remote MACs")
        for c in self.clients:
            c.timeout = WAIT_S
        self.loaded = per
        return {"vms": per * n, "load_s": round(time.perf_counter() - t0, 3)}

    def loaded_moves(self, levels: tuple[int, ...], moves: int) -> dict[str, Any]:
        """The move of (a) at each load in `levels` (VMs attached across the NVEs, ascending);
        p50/p95 each and their ratio to the first (empty) level."""
        rows = []
        for vms in levels:
            print(f"  (d) loading {vms:,} VMs ...", file=sys.stderr, flush=True)
            loaded = self.load(vms)
            print(f"  (d) {moves} moves with {loaded['vms']:,} VMs attached ...",
                  file=sys.stderr, flush=True)
            rows.append({**loaded, **self.moves(moves)})
        base = rows[0]
        for r in rows:
            r["ratio_p50"] = round(r["p50_ms"] / base["p50_ms"], 2)
            r["ratio_p95"] = round(r["p95_ms"] / base["p95_ms"], 2)
        return {"nves": self.n, "moves": moves, "levels": rows}


def _kernel_floor(n: int, vms: int, vnis: tuple[int, ...]) -> dict[str, Any]:
    """The kernel work of (b) done by iproute2 alone, all hosts at once, in scratch
    namespaces: enslave each host's ports to its VNIs' bridges (``ip -batch``), then install
    the other hosts' MACs, the VXLAN entry and the bridge entry each, as the agent does
    (``bridge -batch``).  The same run's reference: the part of (b) no control plane can
    avoid.  Taps and devices are created beforehand, untimed, as in (b)."""
    per = vms // n
    vni_of = [vnis[k * len(vnis) // per] for k in range(per)]
    prefix = f"nvo3f-{os.getpid()}"
    hosts = [f"{prefix}-h{i}" for i in range(n)]
    created: list[str] = []

    def at_once(tool: str, scripts: list[str]) -> float:
        t0 = time.perf_counter()
        procs = [subprocess.Popen([tool, "-n", ns, "-batch", "-"], stdin=subprocess.PIPE,
                                  stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
                 for ns in hosts]
        try:
            for proc, script in zip(procs, scripts, strict=True):
                assert proc.stdin is not None
                proc.stdin.write(script)
                proc.stdin.close()
            failed = [proc.stderr.read() for proc in procs if proc.wait(120) != 0 and proc.stderr]
        finally:
            for proc in procs:          # only ours, by PID: none outlives the measurement
                if proc.poll() is None:
                    proc.kill()
                    proc.wait(10)
        if failed:
            raise RuntimeError(f"{tool} -batch failed: {failed[0][:200]}")
        return time.perf_counter() - t0
    try:
        for i, ns in enumerate(hosts):
            _sh("ip", "netns", "add", ns)
            created.append(ns)
            _sh("ip", "-n", ns, "-batch", "-", stdin="".join(
                f"link add br-{v} type bridge\nlink set br-{v} up\n"
                f"link add vx-{v} type vxlan id {v} local {_vtep(i)} dstport 4789 nolearning\n"
                f"link set vx-{v} master br-{v}\nlink set vx-{v} up\n" for v in vnis)
                + "".join(f"tuntap add mode tap name vm{k}\nlink set vm{k} up\n"
                          for k in range(per)))
        ports_s = at_once("ip", ["".join(f"link set vm{k} master br-{vni_of[k]}\n"
                                         for k in range(per)) for _ in hosts])
        fdb_s = at_once("bridge", ["".join(
            f"fdb add {_bulk_mac(j, k)} dev vx-{vni_of[k]} dst {_vtep(j)} self permanent\n"
            f"fdb add {_bulk_mac(j, k)} dev vx-{vni_of[k]} master static\n"
            for j in range(n) if j != i for k in range(per)) for i in range(n)])
    finally:
        for ns in created:
            subprocess.run(["ip", "netns", "del", ns], capture_output=True, timeout=60)
    return {"ports_s": round(ports_s, 3), "fdb_s": round(fdb_s, 3),
            "total_s": round(ports_s + fdb_s, 3)}


def _q(ms: list[float]) -> dict[str, float]:
    q = statistics.quantiles(ms, n=20, method="inclusive") if len(ms) > 1 else ms * 19
    return {"p50_ms": round(statistics.median(ms), 2), "p95_ms": round(q[18], 2),
            "min_ms": round(min(ms), 2), "max_ms": round(max(ms), 2)}


def _lab(n: int, work: Callable[[_Overlay], dict[str, Any]],
         vnis: tuple[int, ...] = (VNI,)) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="nvo3-bench-") as tmp:
        ov = _Overlay(n, Path(tmp), vnis)
        try:
            return work(ov.build())
        finally:
            ov.close()


def run_bench(nves: int = 4, moves: int = 20, vms: int = BULK_VMS,
        sizes: tuple[int, ...] = SCALE_SIZES, scale_moves: int = SCALE_MOVES,
        parts: str = "abcd", loaded_vms: tuple[int, ...] = LOADED_VMS,
        loaded_moves: int = LOADED_MOVES) -> dict[str, Any]:
    """Build the labs, measure, tear everything down; print and return the figures."""
    if os.geteuid() != 0:
        raise SystemExit("nvo3 bench convergence needs root (network namespaces)")
    result: dict[str, Any] = {"anchor": ANCHOR, "goal": GOAL}
    if "a" in parts:
        a = result["move"] = _lab(nves, lambda ov: ov.moves(moves))
        print(f"(a) move, {nves} NVEs, {moves} moves (activate at the destination -> last other "
              f"NVE's kernel FDB): p50 {a['p50_ms']:.1f} ms, p95 {a['p95_ms']:.1f} ms, max "
              f"{a['max_ms']:.1f} ms" + (f"; remote NVEs only p50 {a['remote_only']['p50_ms']:.1f}"
                                          f" ms, p95 {a['remote_only']['p95_ms']:.1f} ms"
                                          if "remote_only" in a else ""))
        print(f"    anchor {ANCHOR['what']}: p50 {ANCHOR['move_p50_ms']:.0f} ms, p95 "
              f"{ANCHOR['move_p95_ms']:.0f} ms; goal p50 <= {GOAL['move_p50_ms']:.0f} ms, "
              f"p95 <= {GOAL['move_p95_ms']:.0f} ms")
    b: dict[str, Any] | None = None
    if "b" in parts:
        try:
            b = result["bulk"] = _lab(nves, lambda ov: ov.bulk(vms), BULK_VNIS)
        except Exception as exc:     # reported, and (c) still runs
            result["bulk"] = {"vms": vms, "nves": nves, "error": str(exc)}
            print(f"(b) {vms} VMs on {nves} NVEs: did not complete: {exc}")
            b = None
    if b is not None:
        try:
            floor = b["kernel_floor"] = _kernel_floor(nves, vms, BULK_VNIS)
        except Exception as exc:     # reported; the figures above stand
            floor = None
            b["kernel_floor"] = {"error": str(exc)}
        b["distribution_s"] = round(b["complete_s"] - b["attach_edit_configs_s"], 3)
        print(f"(b) {b['vms']} VMs on {nves} NVEs ({b['vms'] // nves} each over "
              f"{len(b['vnis'])} VNIs, one edit-config per NVE): every kernel table complete in "
              f"{b['complete_s']:.3f} s: the attach edit-configs (ports enslaved, anti-spoofing) "
              f"returned after {b['attach_edit_configs_s']:.3f} s, distribution to the other "
              f"NVEs' kernels {b['distribution_s']:.3f} s more")
        if floor is not None:
            b["ratio_to_kernel_floor"] = round(b["complete_s"] / floor["total_s"], 2)
            print(f"    kernel floor, same run (iproute2 -batch, {nves} hosts at once, no control "
                  f"plane): ports {floor['ports_s']:.3f} s + FDB {floor['fdb_s']:.3f} s = "
                  f"{floor['total_s']:.3f} s; nvo3 / floor = {b['ratio_to_kernel_floor']:.2f}")
        print(f"    anchor {ANCHOR['what']}: 1,000 MACs {ANCHOR['macs_1000_ms']:.0f} ms, 5,000 "
              f"MACs {ANCHOR['macs_5000_ms']:.0f} ms; goal {BULK_VMS:,} VMs <= "
              f"{GOAL['vms_10000_s']:.0f} s")
    if "c" in parts:
        rows = result["scale"] = []
        for size in sizes:
            if size == nves and "move" in result:
                rows.append({**result["move"], "from": "(a)"})
            else:
                rows.append(_lab(size, lambda ov: ov.moves(scale_moves)))
        print("(c) the move by number of NVEs: " + "; ".join(
            f"{r['nves']}: p50 {r['p50_ms']:.1f} ms, p95 {r['p95_ms']:.1f} ms" for r in rows))
    if "d" in parts:
        d = result["loaded_move"] = _lab(nves, lambda ov: ov.loaded_moves(loaded_vms, loaded_moves),
                                         (VNI, *BULK_VNIS))
        print(f"(d) loaded move, {nves} NVEs, {loaded_moves} moves at each load: " + "; ".join(
            f"{r['vms']:,} VMs: p50 {r['p50_ms']:.1f} ms, p95 {r['p95_ms']:.1f} ms"
            + (f" (x{r['ratio_p50']:.2f} / x{r['ratio_p95']:.2f} of empty)" if k else "")
            for k, r in enumerate(d["levels"])))
        print(f"    goal with {loaded_vms[-1]:,} VMs: p50 <= {GOAL['move_p50_ms']:.0f} ms, p95 <= "
              f"{GOAL['move_p95_ms']:.0f} ms, loaded/empty <= {GOAL_LOADED_RATIO:g}")
    return result
