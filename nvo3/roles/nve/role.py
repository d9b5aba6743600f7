"""The NVE agent role: the nvo3-nve running datastore made real in one host's kernel.

Three steps per commit (style.md, "roles as three steps"): derive the desired kernel state
from the validated configuration (:mod:`nvo3.roles.nve.desired`, pure), record it in a
:class:`~nvo3.dataplane.tracker.DeltaTracker`, apply only the pending deltas in one batched
step through :class:`~nvo3.dataplane.kernel.PyrouteKernel`.  The kernel layer applies a batch
all or nothing; when it refuses, the role raises :class:`ApplyError` with the kernel's reason,
the engine keeps the old datastore and the tracker gets the old desired state back.

Design notes:

* The tracker's view of the kernel is a dump taken at start and kept current by a netlink
  :class:`~nvo3.dataplane.monitor.Monitor`: FDB and neighbour events that do not match what
  the agent asked for (an entry deleted or changed behind its back, an overrun) mark the view
  dirty and wake the repair thread, which waits ~50 ms for the burst to end, then re-dumps,
  re-derives and re-applies the pending deltas under the role's lock.  A link event whose
  content (master, alias, up) differs from what the agent wants, or that it cannot judge,
  asks for the cheap check instead: one raw link dump compared with the tracker, and the full
  resync only if they differ (link events also echo the agent's own changes, in intermediate
  states, thousands of them when a commit attaches thousands of ports).  A commit
  with a dirty view re-dumps first; a commit refused by the kernel re-dumps and retries once
  (the view may have been stale) before it refuses.
* Start (``apply`` with before={} and the saved running configuration) is a reconcile: dump,
  diff, apply the deltas; what cannot be programmed (a port that vanished while the agent was
  down) is reported ``failed`` instead of stopping the daemon, and retried by the repair
  thread every few seconds and whenever a link appears.
* Commits are strict: an activated attachment whose port does not exist is refused.
"""

from __future__ import annotations

import gc
import logging
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

from nvo3.dataplane.kernel import Kernel, KernelApplyError
from nvo3.dataplane.linux import PyrouteKernel
from nvo3.dataplane.links import IFF_UP, PORT_ALIAS, port_alias
from nvo3.dataplane.model import (
    KIND_OF,
    KINDS,
    OWNER_ALIAS,
    ZERO_MAC,
    DesiredState,
    KernelObject,
    Network,
    Port,
    vni_of,
)
from nvo3.dataplane.monitor import NetlinkEvent, NetlinkMonitor
from nvo3.dataplane.nlbulk import NUD_PERMANENT
from nvo3.dataplane.tracker import Batch, DeltaTracker
from nvo3.netconf.server.role import ApplyError, ConfigChange, Notifier, Role, Tree
from nvo3.roles.nve import desired as nd

log = logging.getLogger(__name__)

MODULE = "nvo3-nve"
DEBOUNCE_S = 0.05
RETRY_S = 5.0
MAX_ROUNDS = 32          # best-effort apply: objects dropped one failure at a time
StatusKey = nd.StatusKey


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


@contextmanager
def _no_gc() -> Iterator[None]:
    """Python's cyclic GC paused: a bulk commit allocates ~10 objects per entry, and with the
    engine's large configuration trees alive each full collection walks all of them (~10% of
    a 10k-entry commit).  Nothing here makes cycles; collection resumes right after."""
    was = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was:
            gc.enable()


def status_key(obj: KernelObject) -> StatusKey:
    """(kind, tracker key) of a dataplane object."""
    return (KIND_OF[type(obj)], obj.key)


def describe(obj: object) -> str:
    """An operator-facing name of a dataplane object."""
    kind = KIND_OF.get(type(obj), type(obj).__name__)
    if kind == "network":
        return f"network {obj.vni}"  # type: ignore[attr-defined]
    if kind == "remote_mac":
        return (f"remote MAC {obj.mac} in VNI {obj.vni} "  # type: ignore[attr-defined]
                f"(remote VTEP {obj.remote_vtep})")  # type: ignore[attr-defined]
    if kind == "flood":
        return f"flood-list VTEP {obj.remote_vtep} of VNI {obj.vni}"  # type: ignore[attr-defined]
    if kind == "port":
        return f"port {obj.name} of VNI {obj.vni}"  # type: ignore[attr-defined]
    if kind == "policy":
        return f"policy of port {obj.port}"  # type: ignore[attr-defined]
    return repr(obj)


def config_path(obj: object) -> str | None:
    """Data path of the configuration entry behind a dataplane object."""
    nets = "/nvo3-nve:nve/networks/network"
    if isinstance(obj, Network):
        return f"{nets}[vni='{obj.vni}']"
    kind = KIND_OF.get(type(obj))
    if kind == "remote_mac":
        return f"{nets}[vni='{obj.vni}']/remote-macs/remote-mac[mac='{obj.mac}']"  # type: ignore
    if kind == "flood":
        return (f"{nets}[vni='{obj.vni}']/flood-list/vtep"  # type: ignore[attr-defined]
                f"[address='{obj.remote_vtep}']")  # type: ignore[attr-defined]
    return None


class NveRole(Role):
    """The NVE agent of one network namespace (None = the root namespace)."""

    name = "nve"
    modules = (MODULE,)

    def __init__(self, netns: str | None = None,
                 kernel_factory: Callable[[str | None], Kernel] | None = None,
                 monitor: bool = True, debounce: float = DEBOUNCE_S) -> None:
        super().__init__()
        self.netns = netns
        self._kernel_factory = kernel_factory or PyrouteKernel
        self._use_monitor, self.debounce = monitor, debounce
        self.kernel: Any = None
        self.monitor: NetlinkMonitor | None = None
        self.lock = threading.RLock()
        self.tracker = DeltaTracker()
        self.config: Tree = {}
        self.derived = nd.Derived(DesiredState())
        self.failed: dict[StatusKey, str] = {}
        self.programmed_at: dict[StatusKey, str] = {}
        self.repairs = 0
        self._started = False
        self._dirty = threading.Event()     # the tracker's view of the kernel may be stale
        self._links_dirty = threading.Event()   # link events: check the links (cheap)
        self._links_changed = False         # this commit added/removed devices
        self._dumped: list[Any] | None = None   # a link dump taken in this commit, unused yet
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._vx: dict[int, int] = {}       # ifindex -> vni of owned devices
        self._br: dict[int, int] = {}
        self._br_of: dict[int, int] = {}    # vni -> ifindex of its owned bridge
        self._ports: dict[int, str] = {}    # ifindex -> configured port name
        self._port_names: set[str] = set()
        self._remote_macs: set[str] = set()

    # -- life cycle ------------------------------------------------------------------------
    def start(self, notifier: Notifier) -> None:
        super().start(notifier)
        self.kernel = self._kernel_factory(self.netns)
        if self._use_monitor:
            self.monitor = NetlinkMonitor(self._on_events, netns=self.netns).start()
            # own FDB changes: not decoded, not checked
            self.kernel.suppress_echoes(self.monitor.echoes)
            self._thread = threading.Thread(target=self._repair_loop, daemon=True,
                                            name=f"nvo3-nve-repair-{self.netns}")
            self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(5)
        if self.monitor is not None:
            self.monitor.stop()
        with self.lock:
            if self.kernel is not None and hasattr(self.kernel, "close"):
                self.kernel.close()
            self.kernel = None

    # -- commit ----------------------------------------------------------------------------
    def apply(self, change: ConfigChange) -> None:
        """Program ``change.after``; refuse it (ApplyError) if it cannot be programmed."""
        t0 = time.perf_counter()
        after = change.after
        with self.lock, _no_gc():
            t1 = time.perf_counter()
            reconcile = not self._started
            links = self._fast_links()
            derived = nd.derive(after, self._link_names(links), self.netns)
            t2 = time.perf_counter()
            # a problem already reported (a port that vanished) does not block other changes
            new = [p for p in derived.problems if self.failed.get(p.key) != p.message]
            if new and not reconcile:
                more = f" (+{len(new) - 1} more)" if len(new) > 1 else ""
                raise ApplyError(new[0].message + more, tag=new[0].tag, path=new[0].path)
            if reconcile or self._dirty.is_set() or not self._links_checked(links):
                self._resync()
            old_desired = self.tracker.desired
            self.tracker.set_desired(derived.state)
            self._dumped = links     # the kernel's apply may use it once (nothing changed since)
            if reconcile:
                self.failed = self._apply_best_effort(self.tracker.pending())
                self.failed.update({p.key: p.message for p in derived.problems})
                for p in derived.problems:
                    log.error("nve %s: cannot program: %s", self.netns or "root", p.message)
            else:
                try:
                    self._apply_or_retry()
                except KernelApplyError as exc:
                    self.tracker.desired = old_desired
                    self._resync()
                    raise ApplyError(f"the kernel refused {describe(exc.obj)}: {exc.reason}",
                                     tag="operation-failed", path=config_path(exc.obj)) from None
                finally:
                    self._dumped = None   # unused (nothing to apply) or spent: never later
                self.failed = {p.key: p.message for p in derived.problems}
            self._dumped = None
            previous, self.config, self.derived = self.config, after, derived
            self._port_names = {a["port"] for a in nd.attachments_of(after).values()}
            self._refresh_index(None if self._links_changed else links)
            self._links_changed = False
            self._started = True
            t3 = time.perf_counter()
        log.info("nve %s: %s in %.3f s (config tree %.3f, derive %.3f, kernel %.3f)",
                 self.netns or "root", "reconciled" if reconcile else "committed", t3 - t0,
                 t1 - t0, t2 - t1, t3 - t2)
        if not reconcile:
            self._notify(previous, after)

    def _apply_or_retry(self) -> None:
        batch = self.tracker.pending()
        if not batch:
            return
        try:
            self._apply(batch)
        except KernelApplyError:
            self._resync()        # maybe the view was stale: diff against the kernel again
            batch = self.tracker.pending()
            self._apply(batch)

    def _apply(self, batch: Batch) -> None:
        if any(KIND_OF[type(o)] == "network"     # new or removed devices: new ifindexes
               for o in (*batch.deletes, *(u.new for u in batch.updates))):
            self._links_changed = True
        dumped, self._dumped = self._dumped, None
        self.kernel.apply(batch, link_dump=dumped)
        self.tracker.applied(batch)
        stamp = _now()
        self.programmed_at.update({(KIND_OF[type(new)], new.key): stamp
                                   for new, _old in batch.updates})
        for obj in batch.deletes:
            self.programmed_at.pop(status_key(obj), None)

    def _apply_best_effort(self, batch: Batch) -> dict[StatusKey, str]:
        """Apply what the kernel accepts; {status key: reason} of what it refused."""
        failed: dict[StatusKey, str] = {}
        for _ in range(MAX_ROUNDS):
            if not batch:
                return failed
            try:
                self._apply(batch)
                return failed
            except KernelApplyError as exc:
                bad = exc.obj
                failed[status_key(bad)] = exc.reason
                log.warning("nve %s: %s not programmed: %s", self.netns or "root",
                            describe(bad), exc.reason)
                batch = _without(batch, bad, failed)
        for obj in [*batch.deletes, *(u.new for u in batch.updates)]:
            failed.setdefault(status_key(obj), "not programmed: too many kernel failures")
        return failed

    def _resync(self) -> None:
        self._dirty.clear()
        self._links_dirty.clear()
        self.tracker.observe(self.kernel.dump())

    def _links_checked(self, links: list[Any] | None) -> bool:
        """After link events right after the agent's own link changes: True when the links
        still are what the tracker believes (then no full dump is needed), else False."""
        if not self._links_dirty.is_set():
            return True
        if links is None or self.failed:
            return False
        self._links_dirty.clear()        # an event arriving from now on sets it again
        by_name = {lk.name: lk for lk in links}
        networks = self.tracker.dataplane["network"].values()
        bridges = {}
        for net in networks:
            vx, br = by_name.get(net.vxlan), by_name.get(net.bridge)  # type: ignore[attr-defined]
            if vx is None or br is None or vx.master != br.index \
                    or not vx.alias.startswith(OWNER_ALIAS) or not br.alias.startswith(OWNER_ALIAS) \
                    or not vx.flags & br.flags & IFF_UP:
                return False
            bridges[br.index] = net.vni  # type: ignore[attr-defined]
        ports = self.tracker.dataplane["port"]
        for port in ports.values():
            lk = by_name.get(port.name)  # type: ignore[attr-defined]
            if lk is None or bridges.get(lk.master) != port.vni \
                    or lk.alias != port_alias(port):  # type: ignore[arg-type]
                return False
        vnis = {n.vni for n in networks}  # type: ignore[attr-defined]
        for lk in links:       # a port released (or never attached) must not be enslaved
            if lk.master in bridges and lk.alias.startswith(PORT_ALIAS) and lk.name not in ports:
                return False
            vni = vni_of(lk.name)
            if vni is not None and lk.alias.startswith(OWNER_ALIAS) and vni not in vnis:
                return False
        return True

    def _notify(self, before: Tree, after: Tree) -> None:
        """One notification per changed attachment; a commit changing several sends them all
        in one attachments-changed (built from the validated configuration: no libyang round
        trip for 2,500 entries)."""
        if self.notifier is None:
            return
        events = nd.attachment_events(before, after)
        try:
            if len(events) > 1:
                self.notifier.notify_batch(
                    MODULE, "attachments-changed",
                    [{"change": [nd.batch_entry(name, c) for name, c in events]}])
                return
            for name, content in events:
                self.notifier.notify(MODULE, name, content)
        except Exception:   # a notification must never undo a commit
            log.exception("nve: could not send the attachment notifications")

    # -- drift repair ----------------------------------------------------------------------
    def _on_events(self, events: list[NetlinkEvent]) -> None:
        dirty = check = False
        for e in events:
            if e.what == "link":
                # not a full resync straight away: an event may show a state the agent's own
                # change passes through (a port enslaved a moment before its alias is set);
                # the cheap check reads the links as they are now and resyncs if they differ
                check = check or self._link_drift(e)
            elif self._relevant(e):
                dirty = True
        if dirty:
            self._dirty.set()
        elif check:
            self._links_dirty.set()
        else:
            return
        self._wake.set()

    def _link_drift(self, e: NetlinkEvent) -> bool:
        """A link event against what the agent wants: False when the link is as wanted (or
        is none of the agent's business), True when it visibly is not or when the event alone
        cannot tell (a device the agent's index does not know yet).

        Why content, not just "one of ours changed": enslaving 2,500 VM ports echoes link
        events on every port and bridge for seconds after the commit; each used to cost a
        full kernel dump under the role's lock."""
        name = e.ifname or ""
        vni = vni_of(name)
        if vni is not None:
            if self.tracker.desired["network"].get(vni) is None:
                return e.action == "new" and e.alias.startswith(OWNER_ALIAS)  # ours, unwanted
            if e.action == "del" or not e.alias.startswith(OWNER_ALIAS) or not e.flags & IFF_UP:
                return True
            if name.startswith("vx-"):
                br = self._br_of.get(vni)
                return br is None or e.master != br
            return False
        port = self.tracker.desired["port"].get(name)
        if port is None:
            if name in self._port_names or e.ifindex in self._ports:
                # configured but not attached (associated): must not sit on our bridge
                return e.action == "new" and e.alias.startswith(PORT_ALIAS) and e.master != 0
            return False
        if e.action == "del":
            return True
        br = self._br_of.get(port.vni)  # type: ignore[attr-defined]
        return br is None or e.master != br or e.alias != port_alias(port)  # type: ignore

    def _relevant(self, e: NetlinkEvent) -> bool:
        """True for FDB/neighbour changes the agent did not ask for (or cannot tell)."""
        if e.what == "overrun":
            return True
        desired = self.tracker.desired
        if e.what == "fdb" and e.ifindex in self._vx:
            vni = self._vx[e.ifindex]
            if e.mac == ZERO_MAC:
                wanted = (vni, e.dst) in desired["flood"]
                return wanted if e.action == "del" else not wanted
            rm = desired["remote_mac"].get((vni, e.mac))
            if e.action == "del":
                return rm is not None
            return rm is None or (e.dst is not None and e.dst != rm.remote_vtep)  # type: ignore
        if e.what == "fdb" and e.action == "new" and e.mac and not e.flags & 0x02:
            # a remote MAC's bridge entry learned on another port: it moved away from vx-*
            return e.mac in self._remote_macs and e.ifindex not in self._vx
        if e.what == "neigh" and e.ifindex in self._br and e.state & NUD_PERMANENT:
            rm = desired["remote_mac"].get((self._br[e.ifindex], e.mac))
            wanted = rm is not None and e.dst in rm.ips  # type: ignore[union-attr]
            return wanted if e.action == "del" else not wanted
        return False

    def _repair_loop(self) -> None:
        while not self._stop.is_set():
            woke = self._wake.wait(RETRY_S)
            if self._stop.is_set():
                return
            if not woke and not (self.failed and self._started):
                continue
            time.sleep(self.debounce)       # let a burst of events end
            self._wake.clear()
            if woke and not self._dirty.is_set() and not self.failed:
                with self.lock:
                    if self._started and self.kernel is not None \
                            and self._links_checked(self._fast_links()):
                        self._refresh_index()
                        continue
            try:
                self.repair()
            except Exception:
                log.exception("nve %s: repair failed", self.netns or "root")

    def repair(self) -> int:
        """Re-dump the kernel, re-derive from running, apply the deltas; number repaired."""
        with self.lock:
            if not self._started or self.kernel is None:
                return 0
            links = self._fast_links()
            derived = nd.derive(self.config, self._link_names(links), self.netns)
            self._resync()
            self.tracker.set_desired(derived.state)
            batch = self.tracker.pending()
            failed = self._apply_best_effort(batch)
            failed.update({p.key: p.message for p in derived.problems})
            if failed and failed != self.failed:
                log.warning("nve %s: %d entries not programmed, first: %s",
                            self.netns or "root", len(failed), next(iter(failed.values())))
            self.failed, self.derived = failed, derived
            self._refresh_index(None if batch else links)
            if batch:
                self.repairs += 1
                log.info("nve %s: repaired %d kernel entries, back in sync: %s",
                         self.netns or "root", len(batch), self.tracker.in_sync())
            return len(batch)

    # -- kernel helpers --------------------------------------------------------------------
    def _links(self) -> list[Any]:
        """pyroute2 link messages (full attributes: <get> counters only, not the hot path)."""
        ipr = getattr(self.kernel, "ipr", None)
        return list(ipr.get_links()) if ipr is not None else []

    def _fast_links(self) -> list[Any] | None:
        """(index, name, master, flags, alias) of every link, one raw dump; None with a fake
        kernel."""
        return self.kernel.dump_links()

    def _link_names(self, links: list[Any] | None = None) -> set[str] | None:
        links = self._fast_links() if links is None else links
        if links is None:
            return None       # a fake kernel: ports are not checked
        return {lk.name for lk in links}

    def _refresh_index(self, links: list[Any] | None = None) -> None:
        self._remote_macs = {mac for _vni, mac in self.tracker.desired["remote_mac"]}
        vx, br, ports = {}, {}, {}
        for lk in (self._fast_links() or []) if links is None else links:
            vni = vni_of(lk.name)
            if vni is not None:
                (vx if lk.name.startswith("vx-") else br)[lk.index] = vni
            elif lk.name in self._port_names:
                ports[lk.index] = lk.name
        self._vx, self._br, self._ports = vx, br, ports
        self._br_of = {vni: index for index, vni in br.items()}

    def _stats(self) -> dict[str, dict[str, int]]:
        out = {}
        for lk in self._links():
            stats = lk.get_attr("IFLA_STATS64") or lk.get_attr("IFLA_STATS")
            if stats:
                out[lk.get_attr("IFLA_IFNAME")] = {
                    "rx-packets": stats["rx_packets"], "rx-bytes": stats["rx_bytes"],
                    "rx-drops": stats["rx_dropped"], "tx-packets": stats["tx_packets"],
                    "tx-bytes": stats["tx_bytes"], "tx-drops": stats["tx_dropped"]}
        return out

    # -- operational state -----------------------------------------------------------------
    def _status(self, key: StatusKey) -> Tree:
        if key in self.failed:
            return {"programming-status": "failed", "programming-reason": self.failed[key]}
        if key in self.derived.pending:
            return {"programming-status": "pending",
                    "programming-reason": self.derived.pending[key]}
        kind, k = key
        want = self.tracker.desired[kind].get(k)
        if want is None or self.tracker.dataplane[kind].get(k) != want:
            return {"programming-status": "pending", "programming-reason": "not programmed yet"}
        out: Tree = {"programming-status": "programmed"}
        if key in self.programmed_at:
            out["last-programmed"] = self.programmed_at[key]
        return out

    def _policy_status(self, port: str | None) -> Tree:
        if port is None:
            return {"programming-status": "pending",
                    "programming-reason": "no attachment with this VNI and MAC"}
        key = nd.policy_key(port)
        if key in self.failed or key in self.derived.pending or port in self.tracker.desired[
                "policy"]:
            return self._status(key)
        att = self._status(nd.port_key(port))
        if att["programming-status"] != "programmed":
            return {"programming-status": "pending",
                    "programming-reason": f"waits for port {port}"}
        return {"programming-status": "programmed"}    # nothing to install (permit all)

    def state(self) -> Tree:
        """Programming status of every entry and counters from the kernel, for <get>."""
        with self.lock:
            nve = self.config.get("nve") or {}
            if not nve or self.kernel is None:
                return {}
            stats = self._stats()
            nets = []
            for net in (nve.get("networks") or {}).get("network") or []:
                vni = int(net["vni"])
                entry: Tree = {"vni": vni, **self._status(nd.network_key(vni))}
                if f"vx-{vni}" in stats:
                    entry["counters"] = stats[f"vx-{vni}"]
                macs = [{"mac": rm["mac"], **self._status(nd.remote_mac_key(vni, rm["mac"]))}
                        for rm in (net.get("remote-macs") or {}).get("remote-mac") or []]
                vteps = [{"address": v["address"],
                          **self._status(nd.flood_key(vni, v["address"]))}
                         for v in (net.get("flood-list") or {}).get("vtep") or []]
                if macs:
                    entry["remote-macs"] = {"remote-mac": macs}
                if vteps:
                    entry["flood-list"] = {"vtep": vteps}
                nets.append(entry)
            atts = []
            for att in (nve.get("attachments") or {}).get("attachment") or []:
                entry = {"vni": int(att["vni"]), "mac": att["mac"],
                         **self._status(nd.port_key(att["port"]))}
                if att["port"] in stats:
                    entry["counters"] = stats[att["port"]]
                atts.append(entry)
            ports = {(int(a["vni"]), a["mac"].lower()): a["port"]
                     for a in (nve.get("attachments") or {}).get("attachment") or []}
            pols = []
            for pol in (nve.get("policies") or {}).get("policy") or []:
                port = ports.get((int(pol["vni"]), pol["mac"].lower()))
                pols.append({"vni": int(pol["vni"]), "mac": pol["mac"],
                             **self._policy_status(port)})
            out: Tree = {}
            if nets:
                out["networks"] = {"network": nets}
            if atts:
                out["attachments"] = {"attachment": atts}
            if pols:
                out["policies"] = {"policy": pols}
            return {MODULE: {"nve": out}} if out else {}


def _without(batch: Batch, bad: object, failed: dict[StatusKey, str]) -> Batch:
    """``batch`` minus ``bad`` and what depends on it (a network's entries, a port's policy)."""
    drop: Callable[[KernelObject], bool]
    if isinstance(bad, Network):
        def drop(o: KernelObject) -> bool:
            return getattr(o, "vni", None) == bad.vni or o is bad
    elif isinstance(bad, Port):
        def drop(o: KernelObject) -> bool:
            return o == bad or getattr(o, "port", None) == bad.name
    else:
        def drop(o: KernelObject) -> bool:
            return o == bad
    for obj in [*batch.deletes, *(u.new for u in batch.updates)]:
        if drop(obj) and obj != bad:
            failed.setdefault(status_key(obj), f"depends on {describe(bad)}, which failed")
    return Batch(tuple(o for o in batch.deletes if not drop(o)),
                 tuple(u for u in batch.updates if not drop(u.new)))


__all__ = ["KINDS", "NveRole", "config_path", "describe", "status_key"]
