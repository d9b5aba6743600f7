"""The federated lab (a topology with an ``[etcd]`` table): the etcd cluster, the nDirector
replicas of each data center, and what `lab status` shows of them.

The cluster's members are started in sessions of their own (they outlive `lab up`), their
PIDs saved in the lab state, and only ever signalled by PID after checking that the PID
still runs ``/usr/bin/etcd`` with a data directory of the lab.
"""

from __future__ import annotations

import contextlib
import os
import signal
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from nvo3.lab.etcd import ETCD, EtcdCluster
from nvo3.lab.state import Daemon, LabState
from nvo3.lab.topology import Topology
from nvo3.netconf.client.session import connect
from nvo3.roles.peers import codec

EMBEDDED_NDIRECTOR = "ndirector"      # the one nDirector of a lab without etcd


def director_names(topo: Topology) -> list[tuple[str, str | None]]:
    """(daemon name, data center) of every nDirector of the topology."""
    if not topo.etcd_members:
        return [(EMBEDDED_NDIRECTOR, None)]
    return [(f"ndirector-{dc.name}{'abc'[i]}", dc.name) for dc in topo.data_centers
            for i in range(dc.ndirectors)]


def start_etcd(topo: Topology, state: LabState) -> EtcdCluster:
    """Start the cluster under the lab's work directory; its members go in the state."""
    cluster = EtcdCluster(Path(state.work_dir) / "etcd", topo.etcd_members, token=state.prefix)
    try:
        cluster.start(new_session=True)
    finally:
        state.etcd = cluster.to_json()
    return cluster


def cluster_of(state: LabState) -> EtcdCluster | None:
    if not state.etcd:
        return None
    return EtcdCluster.from_json(Path(state.work_dir) / "etcd", state.etcd)


def director_args(state: LabState, name: str, dc: str | None) -> tuple[str, ...]:
    cluster = cluster_of(state)
    if cluster is None or dc is None:
        return ()
    return ("--etcd", ",".join(cluster.endpoints), "--data-center", dc,
            "--director-name", name)


def _etcd_pids(work_dir: str) -> list[int]:
    """etcd processes whose data directory is in the lab's work directory."""
    pids = []
    root = work_dir.rstrip("/") + "/"
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmd = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        args = [a.decode(errors="replace") for a in cmd if a]
        if args and args[0] == ETCD and any(a.startswith(root) for a in args):
            pids.append(int(entry.name))
    return pids


def stop_etcd(work_dir: str) -> int:
    """Stop the lab's etcd members (by PID, SIGTERM then SIGKILL); how many ran."""
    if not work_dir:
        return 0
    pids = _etcd_pids(work_dir)
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and (left := [p for p in pids if p in
                                                    _etcd_pids(work_dir)]):
        for pid in left:
            with contextlib.suppress(ChildProcessError, OSError):
                os.waitpid(pid, os.WNOHANG)
        time.sleep(0.05)
    for pid in _etcd_pids(work_dir):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    return len(pids)


def director_state(d: Daemon) -> dict[str, Any] | None:
    """The nDirector's config-false state (shared-store, statistics), or None."""
    try:
        c = connect(d.host, d.port, d.username, d.password, host_key=d.host_key, timeout=5.0)
    except Exception:
        return None
    try:
        return dict(codec.get_state(c, "nvo3-ndirector", "ndirector"))
    except Exception:
        return None
    finally:
        c.close()


def leading_director(state: LabState, dc: str | None = None) -> Daemon:
    """The nDirector to ask: the embedded one, or the leader of `dc` (any data center when
    None), or the first replica when no leader answers."""
    directors = [d for d in state.of_role("ndirector") if dc is None or d.data_center == dc]
    if not directors:
        raise KeyError(f"the lab has no nDirector{f' in {dc}' if dc else ''}")
    if len(directors) == 1 or not state.etcd:
        return directors[0]
    for d in directors:
        st = director_state(d) or {}
        if (st.get("shared-store") or {}).get("role") == "leader":
            return d
    return directors[0]


def status_tables(state: LabState) -> list[tuple[str, list[str], list[list[str]]]]:
    """The cluster's members and the nDirectors' election and lag, for `lab status`: (title,
    header, rows) per table."""
    cluster = cluster_of(state)
    if cluster is None:
        return []
    members = [[m.name, str(m.pid), "yes" if m.running else "NO",
                "yes" if m.healthy(0.5) else "no", m.client_url] for m in cluster.members]
    directors = state.of_role("ndirector")
    with ThreadPoolExecutor(max_workers=4) as pool:
        states = list(pool.map(director_state, directors))
    rows = []
    for d, st in zip(directors, states, strict=True):
        store = (st or {}).get("shared-store") or {}
        stats = (st or {}).get("statistics") or {}
        rows.append([d.name, d.data_center or "-", store.get("role", "?") if st else "DOWN",
                     store.get("leader", "-"), str(store.get("available", "-")).lower(),
                     str(store.get("lag", "-")), str(store.get("applied-revision", "-")),
                     str(stats.get("mappings", "-"))])
    return [(f"etcd cluster ({len(cluster.members)} members, data under {cluster.base_dir}):",
             ["member", "pid", "alive", "healthy", "client url"], members),
            ("nDirectors (one control plane over etcd):",
             ["ndirector", "dc", "role", "leader", "etcd", "lag", "revision", "mappings"], rows)]


def mapping_views(state: LabState) -> dict[str, dict[str, Any]]:
    """Every nDirector's role and mapping table ((vni, mac) -> (nve, sequence number)), for
    the demo's "one control plane" check."""
    out: dict[str, dict[str, Any]] = {}
    for d in state.of_role("ndirector"):
        st = director_state(d) or {}
        table = {f"{n['vni']}/{m['mac']}": (m["nve"], int(m["sequence-number"]))
                 for n in (st.get("mapping-table") or {}).get("network", [])
                 for m in n.get("mapping", [])}
        out[d.name] = {"data-center": d.data_center,
                       "role": (st.get("shared-store") or {}).get("role", "down" if not st
                                                                   else "embedded"),
                       "mappings": table}
    return out
