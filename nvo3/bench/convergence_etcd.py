"""`nvo3 bench convergence`, the etcd mode's figures (issue 14): the lab of
:mod:`nvo3.bench.convergence` with 4 NVEs in two data centers (h0, h1 in dc1; h2, h3 in dc2), a
three-member etcd cluster (Debian's etcd on 127.0.0.1) and two nDirector replicas per data
center, each pushing to its own data center's NVEs only.

(e) **Cross-DC move** (20 moves between h1 in dc1 and h2 in dc2, make-before-break as (a)):
    the clock starts before the activating edit-config at the destination and stops when the
    last NVE of the *other* data center (the source's) reported the kernel FDB entry pointing
    at the destination: NVE -> its data center's leader -> etcd transaction -> the other
    leader's watch -> push -> kernel.
(f) **Failover**: kill -9 the leader of dc1, then at once move a MAC inside dc1 (h0 -> h1)
    and three more MACs of dc1 one after another: the time from the kill until the other dc1
    NVE's kernel points at the new location is the new leader's first push. Zero lost updates:
    afterwards every kernel points every moved MAC at its last location. Repeated
    (the killed replica restarted as a standby each time).

Printed with the goals: cross-DC move p50 <= 25 ms (FRR's BGP EVPN move on this machine
kind: 61 ms), failover <= 3 s with zero lost updates. Figures only, no timed assertions.
"""

from __future__ import annotations

import statistics
import tempfile
import time
from functools import partial
from pathlib import Path
from typing import Any

from nvo3.bench.convergence import (
    ANCHOR,
    MAC,
    ND_NS,
    PORT,
    VNI,
    WAIT_S,
    _attachment,
    _nve_edit,
    _Overlay,
    _q,
    _sh,
    _vtep,
)
from nvo3.lab.etcd import EtcdCluster
from nvo3.launcher import RoleProcess, start_role

GOAL = {"cross_dc_move_p50_ms": 25.0, "failover_s": 3.0, "lost_updates": 0}
DC_OF = ("dc1", "dc1", "dc2", "dc2")
FAILOVER_MACS = tuple(f"02:00:00:00:bb:{k:02x}" for k in range(4))


class _Federated(_Overlay):
    """4 NVEs in two data centers, etcd, two nDirector replicas per data center."""

    def __init__(self, tmp: Path) -> None:
        super().__init__(4, tmp)
        self.prefix = f"{self.prefix}e"
        self.etcd = EtcdCluster(tmp / "etcd")
        self.directors: dict[str, RoleProcess] = {}

    def start_ndirector(self) -> None:
        self.etcd.start()
        for dc in ("dc1", "dc2"):
            for name in (f"{dc}a", f"{dc}b"):
                self.start_director(name, dc)

    def start_director(self, name: str, dc: str, old: RoleProcess | None = None) -> RoleProcess:
        d = self.tmp / f"nd-{name}"
        d.mkdir(exist_ok=True)
        p = start_role("ndirector", d, port=old.port if old else 0,
                       password=old.password if old else None,
                       extra_args=("--etcd", ",".join(self.etcd.endpoints), "--data-center",
                                   dc, "--director-name", name))
        self.procs.append(p)
        self.directors[name] = p
        mine = [i for i in range(self.n) if DC_OF[i] == dc]
        entries = "".join(
            f"<nve><name>h{i}</name><address>{q.host}</address><port>{q.port}</port>"
            f"<username>{q.username}</username><password>{q.password}</password>"
            f"<host-key>{q.host_key}</host-key><vtep-address>{_vtep(i)}</vtep-address></nve>"
            for i, q in enumerate(self.procs[:self.n]) if i in mine)
        members = "".join(f"<member-nve>h{i}</member-nve>" for i in mine)
        c = p.connect()
        try:
            c.edit_config(f'<config><ndirector xmlns="{ND_NS}"><data-center>{dc}</data-center>'
                          f"<nves>{entries}</nves><networks><network><vni>{VNI}</vni><tenant>"
                          f"bench</tenant>{members}</network></networks>"
                          "<duplicate-mac-detection><enabled>false</enabled>"
                          "</duplicate-mac-detection></ndirector></config>", target="running")
        finally:
            c.close()
        return p

    def close(self) -> None:
        try:
            super().close()
        finally:
            self.etcd.stop()

    def leader(self, dc: str) -> str | None:
        for name, p in self.directors.items():
            if not name.startswith(dc) or p.process.poll() is not None:
                continue
            try:
                c = p.connect()
                try:
                    st = c.get(filter=("subtree", f'<ndirector xmlns="{ND_NS}"><shared-store/>'
                                                  "</ndirector>"))
                finally:
                    c.close()
            except Exception:
                continue
            if st.findtext(f".//{{{ND_NS}}}role") == "leader":
                return name
        return None

    # (e) ------------------------------------------------------------------------------------
    def cross_dc_moves(self, moves: int) -> dict[str, Any]:
        w, c = self.watches, self.clients
        ends_ms: list[float] = []
        self._attach(MAC, 1)
        src = 1
        for _ in range(moves):
            dst = 2 if src == 1 else 1
            _nve_edit(c[dst], "<attachments>" + _attachment(MAC, PORT, "associated")
                      + "</attachments>")
            _nve_edit(c[src], "<attachments>" + _attachment(MAC, PORT, "associated")
                      + "</attachments>")
            time.sleep(0.05)
            t0 = time.perf_counter()
            _nve_edit(c[dst], "<attachments>" + _attachment(MAC, PORT, "activated")
                      + "</attachments>")
            far = [i for i in range(self.n) if DC_OF[i] != DC_OF[dst]]
            for i in far:
                if not w[i].wait(partial(w[i].points, MAC, _vtep(dst), t0), WAIT_S):
                    raise RuntimeError(f"h{i} never pointed {MAC} at h{dst}")
            ends_ms.append((max(w[i].now[MAC][1] for i in far) - t0) * 1000)
            _nve_edit(c[src], f'<attachments><attachment nc:operation="remove"><vni>{VNI}</vni>'
                      f"<mac>{MAC}</mac></attachment></attachments>")
            time.sleep(0.02)
            src = dst
        return {"moves": moves, **_q(ends_ms)}

    def _attach(self, mac: str, at: int, port: str = PORT) -> None:
        t = time.perf_counter()
        _nve_edit(self.clients[at], "<attachments>" + _attachment(mac, port, "activated")
                  + "</attachments>")
        for i in range(self.n):
            if i != at and not self.watches[i].wait(
                    partial(self.watches[i].points, mac, _vtep(at), t), WAIT_S):
                raise RuntimeError(f"h{i} never pointed {mac} at h{at}")

    def _move(self, mac: str, port: str, src: int, dst: int) -> None:
        _nve_edit(self.clients[dst], "<attachments>" + _attachment(mac, port, "activated")
                  + "</attachments>")
        _nve_edit(self.clients[src], f'<attachments><attachment nc:operation="remove"><vni>'
                  f"{VNI}</vni><mac>{mac}</mac></attachment></attachments>")

    # (f) ------------------------------------------------------------------------------------
    def failovers(self, rounds: int) -> dict[str, Any]:
        w = self.watches
        for k, mac in enumerate(FAILOVER_MACS):      # ports for the MACs, on h0 and h1
            for i in (0, 1):
                _sh("ip", "-n", self.hosts[i], "link", "add", f"fo{k}", "type", "veth",
                    "peer", "name", f"fo{k}p")
                _sh("ip", "-n", self.hosts[i], "link", "set", f"fo{k}", "up")
            self._attach(mac, 0, f"fo{k}")
        at = dict.fromkeys(FAILOVER_MACS, 0)
        took, lost = [], 0
        for _ in range(rounds):
            name = self.leader("dc1")
            if name is None:
                raise RuntimeError("dc1 has no leader")
            old = self.directors[name]
            old.kill()
            t0 = time.perf_counter()
            for k, mac in enumerate(FAILOVER_MACS):   # a stream of moves during the failover
                dst = 1 - at[mac]
                self._move(mac, f"fo{k}", at[mac], dst)
                at[mac] = dst
            first, new_at = FAILOVER_MACS[0], at[FAILOVER_MACS[0]]
            other = w[1 - new_at]
            if not other.wait(partial(other.points, first, _vtep(new_at), t0), 15):
                raise RuntimeError("the new leader never pushed")
            took.append(other.now[first][1] - t0)
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline and not self._all_right(at):
                time.sleep(0.05)
            lost += sum(1 for mac in FAILOVER_MACS if not self._right(mac, at[mac]))
            self.procs.remove(old)
            self.start_director(name, "dc1", old)      # back as a standby
            time.sleep(0.5)
        return {"rounds": rounds, "moves_per_round": len(FAILOVER_MACS),
                "p50_s": round(statistics.median(took), 3), "max_s": round(max(took), 3),
                "lost_updates": lost}

    def _right(self, mac: str, at: int) -> bool:
        return all(self.watches[i].now.get(mac, ("",))[0] == _vtep(at)
                   for i in range(self.n) if i != at)

    def _all_right(self, at: dict[str, int]) -> bool:
        return all(self._right(mac, a) for mac, a in at.items())


def run_bench(moves: int = 20, rounds: int = 3) -> dict[str, Any]:
    """(e) and (f) on one federated lab; print and return the figures."""
    with tempfile.TemporaryDirectory(prefix="nvo3-bench-etcd-") as tmp:
        ov = _Federated(Path(tmp))
        try:
            ov.build()
            e = ov.cross_dc_moves(moves)
            f = ov.failovers(rounds)
        finally:
            ov.close()
    print(f"(e) cross-DC move through etcd, {moves} moves h1 (dc1) <-> h2 (dc2) (activate at the "
          f"destination -> last kernel FDB in the other data center): p50 {e['p50_ms']:.1f} ms, "
          f"p95 {e['p95_ms']:.1f} ms, max {e['max_ms']:.1f} ms")
    print(f"    anchor {ANCHOR['what']}: move p50 {ANCHOR['move_p50_ms']:.0f} ms; goal p50 <= "
          f"{GOAL['cross_dc_move_p50_ms']:.0f} ms")
    print(f"(f) failover, {rounds} rounds (kill -9 dc1's leader, {f['moves_per_round']} moves "
          f"in dc1 at once -> first kernel FDB pushed by the new leader): p50 {f['p50_s']:.2f} s,"
          f" max {f['max_s']:.2f} s; lost updates {f['lost_updates']}")
    print(f"    goal <= {GOAL['failover_s']:.0f} s, {GOAL['lost_updates']} lost updates")
    return {"cross_dc_move": e, "failover": f, "goal_etcd": GOAL}
