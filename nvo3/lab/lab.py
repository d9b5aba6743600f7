"""`nvo3 lab up|status|down`: a whole overlay system on one machine, from a topology file.

up
  1. namespaces: `<prefix>-ul` holds the underlay bridge, `<prefix>-<host>` one per host
     (its `ul0` on the underlay with the host's VTEP address);
  2. daemons, each `nvo3 serve ROLE` in a session of its own on 127.0.0.1 with its own port
     and password: per host an NVE agent (`--netns <prefix>-<host>`) and a vServer agent
     (same namespace: its VMs' vNICs land there), a child vCenter per data center, a root
     vCenter, the nDirector;
  3. configuration, only through NETCONF, each peer given the other's host key (read from
     its ready line) and password: NVEs (nve-id, VTEP), the nDirector (NVE inventory,
     networks per tenant VNI), child vCenters (tenants, their vServers), the root vCenter
     (tenants, child vCenters), vServers (their NVE and their vCenter);
  4. the topology's VMs (not the on-demand ones): create-vm at the root vCenter, pinned to
     the VM's vServer.
  The state file (nvo3.lab.state) is saved after every namespace and every daemon, so a
  crash at any point leaves enough behind for `down`. A failure or Ctrl-C in `up` runs
  `down` before the error is shown.

status
  one table of daemons (PID alive, port, NETCONF sessions from <get> netconf-state), the
  namespaces, and the VMs as the vServers report them.

down
  stops every daemon by its recorded PID (checked against /proc/PID/cmdline first: a reused
  PID is never signalled), finds daemons of the lab's work directory that the state file
  lost, kills what runs inside the lab's namespaces (VM workloads, probes) by PID, deletes
  every namespace with the prefix, removes the work directory and the state file.
  Idempotent; works from a stale state file, or with none (default prefix).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

from nvo3.common import names
from nvo3.common.tree import Tree
from nvo3.dashboard.process import is_dashboard, start_dashboard
from nvo3.lab import federation
from nvo3.lab.netns import Netns, run
from nvo3.lab.state import Daemon, LabState, state_path
from nvo3.lab.topology import Topology, VmSpec, load
from nvo3.lab.users import MANAGING_ROLES, install, lab_users
from nvo3.launcher import RoleProcess, start_role
from nvo3.netconf.client.session import Client, connect
from nvo3.netconf.proto.xml import MONITORING_NS
from nvo3.roles.peers import codec

ROOT_VCENTER = "vcenter-root"
NDIRECTOR = federation.EMBEDDED_NDIRECTOR
REPORT_INTERVAL_S = 5
STOP_TIMEOUT_S = 5.0

Progress = Callable[[str], None]


class LabError(RuntimeError):
    """The lab could not be built, or is not up."""


def _quiet(_: str) -> None:
    pass


# -- names ---------------------------------------------------------------------------------

def host_namespace(prefix: str, host: str) -> str:
    return f"{prefix}-{host}"


def vm_namespace(prefix: str, host: str, tenant: str, vm: str) -> str:
    """The namespace the vServer of `host` gives VM tenant/vm (nvo3.roles.vserver.vm_driver)."""
    return f"{host_namespace(prefix, host)}-vm-{tenant}:{vm}"


def nve_name(host: str) -> str:
    return f"nve-{host}"


def vcenter_name(dc: str) -> str:
    return f"vcenter-{dc}"


def work_dir_for(prefix: str, path: Path | None = None) -> Path:
    """Where the lab's daemons keep their state and logs (next to the state file)."""
    return (path or state_path()).parent / f"{prefix}.d"


# -- talking to the lab's daemons ----------------------------------------------------------

def client(d: Daemon, **kwargs: Any) -> Client:
    """A verified NETCONF session to a daemon of the lab."""
    return connect(d.host, d.port, d.username, d.password, host_key=d.host_key,
                   **kwargs)


@contextlib.contextmanager
def session(d: Daemon) -> Iterator[Client]:
    c = client(d)
    try:
        yield c
    finally:
        c.close()


def _peer(d: Daemon, name: str, **extra: Any) -> Tree:
    """A peer entry: name, address, port, credentials and host key of daemon `d`, then
    `extra` leaves (a dict in the codec's shape)."""
    return {"name": name, "address": d.host, "port": d.port, "username": d.username,
            "password": d.password, "host-key": d.host_key, **extra}


def _edit(d: Daemon, module: str, top: str, body: Tree) -> None:
    """edit-config merge of /module:top = `body` into the daemon's running datastore (built
    and validated by the codec)."""
    with session(d) as c:
        codec.merge_config(c, module, {top: body})


# -- up ------------------------------------------------------------------------------------

@dataclass
class _Builder:
    topo: Topology
    state: LabState
    path: Path
    say: Progress

    def save(self) -> None:
        self.state.save(self.path)

    def namespaces(self) -> None:
        net = Netns(self.state.prefix)
        underlay = net.namespace("ul")
        self.state.namespaces.append(underlay)
        self.save()
        net.bridge(underlay, "ulbr")
        plen = self.topo.underlay.prefixlen
        for h in self.topo.hosts:
            ns = net.namespace(h.name)
            self.state.namespaces.append(ns)
            self.save()
            net.veth(ns, "ul0", underlay, f"ul-{h.name}")
            net.enslave(underlay, f"ul-{h.name}", "ulbr")
            net.address(ns, "ul0", f"{h.underlay_address}/{plen}")
        self.say(f"{len(self.state.namespaces)} namespaces: underlay bridge "
                 f"{self.topo.underlay} and hosts "
                 + ", ".join(f"{h.name} ({h.data_center}, {h.underlay_address})"
                             for h in self.topo.hosts))

    def daemons(self) -> None:
        work = Path(self.state.work_dir)
        plan: list[tuple[str, str, str | None, str | None]] = []   # name, role, netns, dc
        for h in self.topo.hosts:
            ns = host_namespace(self.state.prefix, h.name)
            plan += [(nve_name(h.name), "nve", ns, h.data_center),
                     (h.vserver, "vserver", ns, h.data_center)]
        plan += [(vcenter_name(dc.name), "vcenter", None, dc.name)
                 for dc in self.topo.data_centers]
        plan += [(ROOT_VCENTER, "vcenter", None, None)]
        plan += [(n, "ndirector", None, dc) for n, dc in federation.director_names(self.topo)]
        if self.topo.etcd_members:           # the federated lab: etcd first
            try:
                federation.start_etcd(self.topo, self.state)
            finally:
                self.save()
            self.say(f"etcd cluster of {self.topo.etcd_members} members on 127.0.0.1: "
                     + ", ".join(m["name"] + f":{m['client-port']}" for m in self.state.etcd))

        def start(item: tuple[str, str, str | None, str | None]) -> Daemon:
            name, role, ns, dc = item
            d = work / name
            d.mkdir(parents=True, exist_ok=True)
            extra = ("--netns", ns) if ns else \
                federation.director_args(self.state, name, dc) if role == "ndirector" else ()
            args = ("--metrics", "127.0.0.1:0", *extra)
            p: RoleProcess = start_role(role, d, extra_args=args, new_session=True)
            return Daemon(name, role, p.host, p.port, p.username, p.password, p.host_key,
                          p.pid, str(d), ns, dc, p.metrics)

        errors = []
        with ThreadPoolExecutor(max_workers=6) as pool:
            futures = [pool.submit(start, item) for item in plan]
            for f in futures:              # record every daemon that started, even on errors
                try:
                    self.state.daemons.append(f.result())
                except Exception as exc:
                    errors.append(exc)
        self.save()
        if errors:
            raise LabError(f"{len(errors)} daemon(s) did not start: {errors[0]}")
        self.say(f"{len(self.state.daemons)} daemons, each its own process and NETCONF/SSH "
                 "server on 127.0.0.1: " + ", ".join(f"{d.name}:{d.port}"
                                                     for d in self.state.daemons))

    def configure(self) -> None:
        st, topo = self.state, self.topo
        # NVE agents: identity and VTEP; the vServers add networks and attachments
        for h in topo.hosts:
            _edit(st.daemon(nve_name(h.name)), names.NVE, "nve",
                  {"nve-id": h.name, "local-vtep-address": h.underlay_address})
        # nDirector(s): every NVE (with its VTEP; a federated lab's replicas: the NVEs of
        # their data center) and one network per tenant VNI
        for name, nd_dc in federation.director_names(topo):
            hosts = [h for h in topo.hosts if nd_dc is None or h.data_center == nd_dc]
            nves = [_peer(st.daemon(nve_name(h.name)), h.name,
                          **{"vtep-address": h.underlay_address}) for h in hosts]
            members = [h.name for h in hosts]
            nets = [{"vni": t.vni, "name": t.name, "tenant": t.name, "member-nve": members}
                    for t in topo.tenants]
            _edit(st.daemon(name), names.NDIRECTOR, "ndirector",
                  {**({"data-center": nd_dc} if nd_dc else {}), "nves": {"nve": nves},
                   "networks": {"network": nets}})
        tenants = {"tenant": [{"name": t.name, "vnid": t.vni,
                               "vm-group": [{"name": g} for g in t.vm_groups]}
                              for t in topo.tenants]}
        # child vCenters: their data center's vServers
        for dc in topo.data_centers:
            vss = [_peer(st.daemon(h.vserver), h.vserver, **{"data-center": dc.name,
                                                             "nve": h.name})
                   for h in topo.hosts_in(dc.name)]
            _edit(st.daemon(vcenter_name(dc.name)), names.VCENTER, "vcenter",
                  {"name": vcenter_name(dc.name), "data-center": [dc.name], "tenants": tenants,
                   "vservers": {"vserver": vss}})
        # root vCenter: the children
        children = [_peer(st.daemon(vcenter_name(dc.name)), vcenter_name(dc.name),
                          **{"data-center": [dc.name]}) for dc in topo.data_centers]
        _edit(st.daemon(ROOT_VCENTER), names.VCENTER, "vcenter",
              {"name": ROOT_VCENTER, "data-center": [dc.name for dc in topo.data_centers],
               "tenants": tenants, "child-vcenters": {"child-vcenter": children}})
        # vServers: their NVE and their data center's vCenter
        for h in topo.hosts:
            vc = st.daemon(vcenter_name(h.data_center))
            _edit(st.daemon(h.vserver), names.VSERVER, "vserver",
                  {"name": h.vserver, "data-center": h.data_center,
                   "capacity": dict(h.capacity),
                   "nve": _peer(st.daemon(nve_name(h.name)), h.name),
                   "vcenter": _peer(vc, vc.name, **{"report-interval": REPORT_INTERVAL_S})})
        self.say("configured through NETCONF: NVEs, nDirector, "
                 f"{len(topo.data_centers)} child vCenters under {ROOT_VCENTER}, "
                 f"{len(topo.hosts)} vServers")

    def users(self) -> None:
        tenants = [t.name for t in self.topo.tenants]
        self.state.users = lab_users(tenants)
        self.save()
        for d in self.state.daemons:
            if d.role in MANAGING_ROLES:
                with session(d) as c:
                    install(d.state_dir, d.role, c, self.state.users, tenants,
                            {t.name: t.vni for t in self.topo.tenants})
        self.say("users on the vCenters and the nDirector: " + ", ".join(
            u.name for u in self.state.users) + " (NACM rules installed over NETCONF)")

    def vms(self) -> None:
        wanted = [v for v in self.topo.vms if not v.on_demand]
        if not wanted:
            return
        with session(self.state.daemon(ROOT_VCENTER)) as root:
            for v in wanted:
                create_vm(root, self.topo, v)
        self.say("VMs created through the root vCenter: " + ", ".join(
            f"{v.tenant}/{v.name} on {self.topo.host(v.host).vserver}" for v in wanted))


    def dashboard(self) -> None:
        try:        # the lab works without it: a failure is reported, not fatal
            self.state.dashboard_pid, self.state.dashboard_url = start_dashboard(
                self.path, Path(self.state.work_dir) / "dashboard.log")
        except (RuntimeError, OSError) as exc:
            self.say(f"the dashboard did not start: {exc}")
            return
        self.save()
        self.say(f"dashboard: {self.state.dashboard_url} (log in with a NETCONF user)")


def create_vm(root: Client, topo: Topology, v: VmSpec, pinned: bool = True) -> dict[str, Any]:
    """create-vm at a vCenter for a topology VM (pinned to its host's vServer, or placed)."""
    t = topo.tenant(v.tenant)
    given: dict[str, Any] = {"tenant": v.tenant, "name": v.name, "mac-address": v.mac,
                             "ip-address": [v.ip], "vnid": t.vni}
    if t.vm_groups:
        given["vm-group"] = t.vm_groups[0]
    if pinned:
        given["vserver"] = topo.host(v.host).vserver
    else:
        given["data-center"] = topo.data_center_of(v)
    return codec.call(root, "nvo3-vcenter", "create-vm", given)


def _sigterm_as_interrupt(*_: Any) -> None:
    raise KeyboardInterrupt


def up(topology: Path | str | None = None, path: Path | None = None, prefix: str | None = None,
       say: Progress = _quiet) -> LabState:
    """Build the lab; on any failure (or Ctrl-C) everything built so far is removed."""
    topo = load(topology)
    path = path or state_path()
    prefix = prefix or topo.prefix
    if path.exists():
        old = LabState.load(path)
        if any(_alive(d) for d in old.daemons):
            raise LabError(f"a lab is already up ({path}, prefix {old.prefix}): "
                           "run `nvo3 lab down` first")
        say(f"removing the remains of a lab that is gone ({path})")
        down(path)
    down_leftovers(prefix, work_dir_for(prefix, path))
    state = LabState(prefix=prefix, topology=topo.path,
                     work_dir=str(work_dir_for(prefix, path)))
    Path(state.work_dir).mkdir(parents=True, exist_ok=True)
    b = _Builder(topo, state, path, say)
    previous = signal.signal(signal.SIGTERM, _sigterm_as_interrupt)
    try:
        b.save()
        b.namespaces()
        b.daemons()
        b.configure()
        b.users()
        b.vms()
        b.dashboard()
        return state
    except BaseException:
        logs = failure_logs(state)
        try:
            down(path)
        finally:
            if logs:
                say(logs)
        raise
    finally:
        signal.signal(signal.SIGTERM, previous)


def failure_logs(state: LabState, lines: int = 12) -> str:
    """The last lines of the daemons' logs that mention an error (for a failed `up`)."""
    out = []
    for d in state.daemons:
        log = Path(d.state_dir) / "daemon.log"
        with contextlib.suppress(OSError):
            tail = [ln for ln in log.read_text(errors="replace").splitlines()
                    if "ERROR" in ln or "Traceback" in ln or "Error" in ln][-lines:]
            if tail:
                out.append(f"--- {d.name} ({log}):\n" + "\n".join(tail))
    return "\n".join(out)


# -- down ----------------------------------------------------------------------------------

def _cmdline(pid: int) -> list[str]:
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return []
    return [a.decode(errors="replace") for a in raw.split(b"\0") if a]


def _has_cmdline(pid: int) -> bool:
    """Whether process `pid` still runs (a zombie's or a gone process's cmdline is empty)."""
    return bool(_cmdline(pid))


def _is_ours(pid: int, state_dir: str) -> bool:
    """PID runs `nvo3.cli serve ... --state-dir STATE_DIR` (never a reused PID)."""
    cmd = _cmdline(pid)
    return "nvo3.cli" in cmd and "serve" in cmd and state_dir in cmd


def _alive(d: Daemon) -> bool:
    return _is_ours(d.pid, d.state_dir)


def _stop_pid(pid: int, check: Callable[[], bool], timeout: float = STOP_TIMEOUT_S) -> bool:
    """SIGTERM, then SIGKILL; True when it was running."""
    if not check():
        return False
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and check():
        _reap(pid)
        time.sleep(0.05)
    if check():
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and check():
            _reap(pid)
            time.sleep(0.05)
    _reap(pid)
    return True


def _reap(pid: int) -> None:
    """Collect a child of ours that exited (a zombie keeps its cmdline empty, but reap it)."""
    with contextlib.suppress(ChildProcessError, OSError):
        os.waitpid(pid, os.WNOHANG)


def _orphans(work_dir: str) -> list[int]:
    """Daemons serving from the lab's work directory that the state file does not list."""
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            cmd = _cmdline(int(entry.name))
            if "nvo3.cli" in cmd and "serve" in cmd and any(
                    a.startswith(work_dir.rstrip("/") + "/") for a in cmd):
                pids.append(int(entry.name))
    return pids


def lab_namespaces(prefix: str) -> list[str]:
    """Every namespace of the lab: `<prefix>-...` (hosts, underlay, VMs)."""
    out = run("ip", "netns", "list").stdout
    return [ln.split()[0] for ln in out.splitlines() if ln.startswith(f"{prefix}-")]


def _kill_inside(ns: str) -> int:
    """Kill by PID what runs in a lab namespace (VM workloads, probes); returns a count."""
    pids = run("ip", "netns", "pids", ns, check=False).stdout.split()
    for pid in pids:
        with contextlib.suppress(ProcessLookupError, ValueError):
            os.kill(int(pid), signal.SIGKILL)
    return len(pids)


def down_leftovers(prefix: str, work_dir: Path) -> dict[str, int]:
    """Remove what a lab with this prefix may have left: daemons, processes, namespaces."""
    counts = {"daemons": 0, "processes": 0, "namespaces": 0}
    if work_dir.exists():
        for pid in _orphans(str(work_dir)):
            counts["daemons"] += _stop_pid(pid, partial(_has_cmdline, pid))
        counts["daemons"] += federation.stop_etcd(str(work_dir))     # a federated lab's
    for ns in lab_namespaces(prefix):
        counts["processes"] += _kill_inside(ns)
        run("ip", "netns", "del", ns, check=False)
        counts["namespaces"] += 1
    shutil.rmtree(work_dir, ignore_errors=True)
    return counts


def down(path: Path | None = None, prefix: str | None = None) -> dict[str, int]:
    """Stop and remove everything of the lab; safe to run again, or with no lab at all."""
    path = path or state_path()
    counts = {"daemons": 0, "processes": 0, "namespaces": 0}
    state: LabState | None = None
    if path.exists():
        try:
            state = LabState.load(path)
        except (ValueError, TypeError, KeyError):
            state = None                       # unreadable: fall back to the prefix
    if state is not None:
        if state.dashboard_pid:
            counts["daemons"] += _stop_pid(state.dashboard_pid, partial(
                is_dashboard, state.dashboard_pid, str(path.resolve())))
        for d in reversed(state.daemons):
            counts["daemons"] += _stop_pid(d.pid, partial(_alive, d))
    prefixes = {prefix or (state.prefix if state else None) or load().prefix}
    for p in prefixes:
        work = Path(state.work_dir) if state and state.work_dir else work_dir_for(p, path)
        for k, v in down_leftovers(p, work).items():
            counts[k] += v
    path.unlink(missing_ok=True)
    return counts


# -- status --------------------------------------------------------------------------------

def sessions(d: Daemon) -> int | None:
    """NETCONF sessions on the daemon, not counting the one asking (None: unreachable)."""
    try:
        with session(d) as c:
            data = c.get(filter=("subtree", f'<netconf-state xmlns="{MONITORING_NS}"><sessions/>'
                                            "</netconf-state>"))
    except Exception:
        return None
    return len(data.findall(f".//{{{MONITORING_NS}}}session")) - 1


def vms_of(state: LabState) -> list[dict[str, Any]]:
    """Every VM as its vServer reports it, with the host it runs on."""
    rows = []
    for d in state.of_role("vserver"):
        try:
            with session(d) as c:
                tree = codec.get_state(c, "nvo3-vserver", "vserver")
        except Exception:
            continue
        for vm in (tree.get("vms") or {}).get("vm", []):
            rows.append({**vm, "vserver": d.name, "host-netns": d.netns,
                         "data-center": d.data_center})
    return rows


def _table(header: list[str], rows: list[list[str]]) -> str:
    widths = [max(len(str(x)) for x in col) for col in zip(header, *rows, strict=False)]
    line = "  ".join(f"{{:<{w}}}" for w in widths)
    return "\n".join([line.format(*header), line.format(*("-" * w for w in widths))]
                     + [line.format(*map(str, r)) for r in rows])


def status(path: Path | None = None) -> str:
    """A readable picture of the running lab."""
    path = path or state_path()
    state = LabState.load(path)
    with ThreadPoolExecutor(max_workers=8) as pool:
        counts = list(pool.map(sessions, state.daemons))
    rows = [[d.name, d.role, d.data_center or "-", d.netns or "-", str(d.pid),
             "yes" if _alive(d) else "NO", f"{d.host}:{d.port}", d.metrics or "-",
             "-" if n is None else str(n)] for d, n in zip(state.daemons, counts, strict=True)]
    out = [f"lab {state.prefix} (topology {state.topology}, state {path})", "",
           _table(["daemon", "role", "dc", "netns", "pid", "alive", "netconf", "metrics",
                   "sessions"], rows)]
    for title, header, trows in federation.status_tables(state):
        out += ["", title, _table(header, trows)]
    present = lab_namespaces(state.prefix)
    hosts = [n for n in present if "-vm-" not in n]
    out += ["", f"namespaces ({len(present)}): " + ", ".join(hosts)
            + (f" and {len(present) - len(hosts)} VM namespaces" if len(present) > len(hosts)
               else "")]
    vms = vms_of(state)
    if vms:
        out += ["", _table(["vm", "tenant", "vnid", "vserver", "dc", "state", "mac", "ip",
                            "nve", "attachment"],
                           [[v["name"], v["tenant"], v.get("vnid", "-"), v["vserver"],
                             v["data-center"] or "-", v.get("state", "-"),
                             v.get("mac-address", "-"), ",".join(v.get("ip-address", [])),
                             v.get("nve", "-"), v.get("attachment-state", "-")]
                            for v in sorted(vms, key=lambda v: v["name"])])]
    return "\n".join(out)


def daemon_summary(path: Path | None = None) -> dict[str, Any]:
    """status as data: daemons alive, session counts, namespaces, VMs (for --json and tests)."""
    state = LabState.load(path or state_path())
    return {"prefix": state.prefix,
            "daemons": [{"name": d.name, "role": d.role, "data-center": d.data_center,
                         "netns": d.netns, "pid": d.pid, "alive": _alive(d), "host": d.host,
                         "port": d.port, "sessions": sessions(d), "metrics": d.metrics}
                        for d in state.daemons],
            "namespaces": lab_namespaces(state.prefix),
            "federation": [{"title": t, "header": h, "rows": r}
                           for t, h, r in federation.status_tables(state)],
            "vms": [{k: v.get(k) for k in ("name", "tenant", "vserver", "state",
                                            "attachment-state")} for v in vms_of(state)]}

