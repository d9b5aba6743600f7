"""The NVE agent role: the nvo3-nve running datastore made real in one host's kernel.

Three steps per commit (style.md, "roles as three steps"): derive the desired kernel state
from the validated configuration (:mod:`nvo3.roles.nve.desired`, pure), record it in a
:class:`~nvo3.dataplane.tracker.DeltaTracker`, apply only the pending deltas in one batched
step through the :class:`~nvo3.dataplane.kernel.Kernel` (on Linux
:class:`~nvo3.dataplane.linux.PyrouteKernel`).  The kernel applies a batch all or nothing;
when it refuses, the role raises :class:`ApplyError` with the kernel's reason, the engine
keeps the old datastore and the tracker gets the old desired state back.  What each entry's
status is (``<get>``) is :mod:`nvo3.roles.nve.status`; whether a kernel event means drift is
:mod:`nvo3.roles.nve.drift`.

Design notes:

* The tracker's view of the kernel is a dump taken at start and kept current by a netlink
  :class:`~nvo3.dataplane.monitor.NetlinkMonitor`: FDB and neighbour events that do not match what
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
* An edit the engine made in place and that touched only attachments, policies and remote
  MACs (:func:`~nvo3.roles.nve.running.touched_entries`) is applied entry by entry, at the
  cost of the edit: those entries are read alone (``change.after_at``) and patched into the
  role's copy of the configuration (:class:`~nvo3.roles.nve.running.RunningConfig`), only
  their (vni, MAC) keys are derived again (:func:`~nvo3.roles.nve.desired.derive_entries`,
  the same per-entry rules as the full derivation), and only their kernel objects are
  compared with the tracker's view.  Whenever the view may be stale (dirty, links to check,
  entries failed) or the kernel refuses, the commit takes the full path above, whose result
  and errors are the reference; the repair thread's full reconcile stays the safety net.
"""

from __future__ import annotations

import gc
import logging
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from nvo3.common.clock import iso
from nvo3.common.tree import Tree
from nvo3.dataplane.kernel import Kernel, KernelApplyError
from nvo3.dataplane.linux import PyrouteKernel
from nvo3.dataplane.model import KIND_OF, DesiredState, KernelObject, Network, Policy, Port
from nvo3.dataplane.monitor import NetlinkEvent, NetlinkMonitor
from nvo3.dataplane.nlbulk import LinkEntry
from nvo3.dataplane.tracker import APPLY_ORDER, Batch, DeltaTracker, Update
from nvo3.dataplane.vlan_support import VlanSupport
from nvo3.netconf.server.role_api import ApplyError, ConfigChange, Notifier, Role
from nvo3.roles.nve import desired as nd
from nvo3.roles.nve.drift import DriftJudge
from nvo3.roles.nve.running import RunningConfig, TouchedEntries, touched_entries
from nvo3.roles.nve.status import (
    ProgrammingStatus,
    config_path,
    describe,
    operational_state,
    status_key,
)

log = logging.getLogger(__name__)

MODULE = "nvo3-nve"
DEBOUNCE_S = 0.05
RETRY_S = 5.0
MAX_ROUNDS = 32          # best-effort apply: objects dropped one failure at a time
StatusKey = nd.StatusKey


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


class NveRole(Role):
    """The NVE agent of one network namespace (None = the root namespace).

    ``kernel_factory`` builds the :class:`~nvo3.dataplane.kernel.Kernel` at start (default:
    :class:`~nvo3.dataplane.linux.PyrouteKernel` in ``netns``); ``monitor``: watch the
    kernel's netlink events and repair drift in a thread (off: call :meth:`repair`).
    """

    name = "nve"
    modules = (MODULE,)

    def __init__(self, netns: str | None = None,
                 kernel_factory: Callable[[str | None], Kernel] | None = None,
                 monitor: bool = True, debounce: float = DEBOUNCE_S) -> None:
        super().__init__()
        self.netns = netns
        self._kernel_factory = kernel_factory or PyrouteKernel
        self._use_monitor, self.debounce = monitor, debounce
        self.kernel: Kernel | None = None
        self.monitor: NetlinkMonitor | None = None
        self.lock = threading.RLock()
        self.tracker = DeltaTracker()
        self.drift = DriftJudge(self.tracker)
        self.config: Tree = {}
        self.running = RunningConfig({})     # `config` with its entries by key
        self.entry_commits = 0               # commits applied entry by entry
        self.derived = nd.Derived(DesiredState())
        self.failed: dict[StatusKey, str] = {}
        self.programmed_at: dict[StatusKey, str] = {}
        self.repairs = 0
        self._started = False
        self._dirty = threading.Event()     # the tracker's view of the kernel may be stale
        self._links_dirty = threading.Event()   # link events: check the links (cheap)
        self._links_changed = False         # this commit added/removed devices
        self._dumped: list[LinkEntry] | None = None   # a link dump taken in this commit, unused yet
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._port_names: set[str] = set()
        self.vlans: VlanSupport | None = None   # the kernel's, probed at start

    # -- life cycle ------------------------------------------------------------------------
    def start(self, notifier: Notifier) -> None:
        super().start(notifier)
        self.kernel = self._kernel_factory(self.netns)
        self.vlans = probe_vlans(self.kernel, self.netns)
        if self._use_monitor:
            self.monitor = NetlinkMonitor(self._on_events, netns=self.netns).start()
            # own FDB changes: not decoded, not judged
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
            if self.kernel is not None:
                self.kernel.close()
            self.kernel = None

    @property
    def _kernel(self) -> Kernel:
        """The kernel of a started role."""
        if self.kernel is None:
            raise RuntimeError(f"nve {self.netns or 'root'}: not started (or stopped)")
        return self.kernel

    # -- commit ----------------------------------------------------------------------------
    def apply(self, change: ConfigChange) -> None:
        """Program ``change.after``; refuse it (ApplyError) if it cannot be programmed."""
        t0 = time.perf_counter()
        touched = None if change.edited is None else touched_entries(change.edited)
        if touched is not None:
            with self.lock, _no_gc():
                events = self._apply_entries(change, touched)
            if events is not None:
                log.info("nve %s: committed %d entries in %.3f s", self.netns or "root",
                         sum(map(len, touched.by_kind.values())), time.perf_counter() - t0)
                self._send(events)
                return
            t0 = time.perf_counter()
        after = change.after
        with self.lock, _no_gc():
            t1 = time.perf_counter()
            reconcile = not self._started
            links = self._kernel.dump_links()
            derived = nd.derive(after, {lk.name for lk in links}, self.netns)
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
            self.running = RunningConfig(after)
            previous, self.config, self.derived = self.config, self.running.config, derived
            self._port_names = {a["port"] for a in nd.attachments_of(after).values()}
            self.drift.reindex(self._kernel.dump_links() if self._links_changed else links,
                               self._port_names)
            self._links_changed = False
            self._started = True
            t3 = time.perf_counter()
        log.info("nve %s: %s in %.3f s (config tree %.3f, derive %.3f, kernel %.3f)",
                 self.netns or "root", "reconciled" if reconcile else "committed", t3 - t0,
                 t1 - t0, t2 - t1, t3 - t2)
        if not reconcile:
            self._send(nd.attachment_events(previous, after))

    def _apply_entries(self, change: ConfigChange,
                       touched: TouchedEntries) -> list[tuple[str, Tree]] | None:
        """Apply an edit of `touched` entries only (see the module notes): the attachment
        notifications to send, or None when the commit must take the full path (nothing
        changed then).  Raises ApplyError as the full path would."""
        run = self.running
        if not self._started or self.failed or self._dirty.is_set() or not run.can_put(touched):
            return None
        dumped = None
        if self._links_dirty.is_set():       # link events (often the echo of our own change)
            dumped = self._kernel.dump_links()
            if not self._links_checked(dumped):
                self._dirty.set()            # the full path resyncs
                return None
        keys = touched.keys()
        atts = run.by_kind["attachment"]
        old_atts = {k: atts.get(k) for k in keys}
        undo = [(kind, k, run.by_kind[kind].get(k))
                for kind, found in touched.by_kind.items() for k in found]
        for kind, found in touched.by_kind.items():
            for k, path in found.items():
                run.put(kind, k, change.after_at(path))
        new_atts = {k: atts.get(k) for k in keys}
        wanted = {a["port"] for a in new_atts.values()
                  if a is not None and a.get("state", "associated") == "activated"}
        if dumped is None and not all(self.drift.port_present(a["port"])
                                      for a in new_atts.values() if a is not None):
            # a port not indexed yet (new to the configuration, or absent): look at the links,
            # and index it; done when a VM is associated, the activation then needs none
            dumped = self._kernel.dump_links()
        if dumped is not None:
            present = {lk.name for lk in dumped}
            links = {n for n in wanted if n in present}
        else:
            links = wanted
        derived = nd.derive_entries(run.nve or {}, atts, run.by_kind["policy"],
                                    run.by_kind["remote-mac"], keys, links, self.netns)
        if derived.problems:
            self._put_back(undo)
            first = derived.problems[0]
            more = f" (+{len(derived.problems) - 1} more)" if len(derived.problems) > 1 else ""
            raise ApplyError(first.message + more, tag=first.tag, path=first.path)
        names = {a["port"] for a in (*old_atts.values(), *new_atts.values()) if a is not None}
        slots: set[tuple[str, object]] = {("remote_mac", k) for k in keys} | {
            (kind, n) for n in names for kind in ("port", "policy")}
        desired = self.tracker.desired
        before = {slot: desired[slot[0]].get(slot[1]) for slot in slots}
        for kind, key in slots:
            desired[kind].pop(key, None)
        objs: list[KernelObject] = [*derived.state.ports, *derived.state.policies,
                                    *derived.state.remote_macs]
        for obj in objs:
            desired[KIND_OF[type(obj)]][obj.key] = obj
        self._dumped = dumped
        try:
            batch = self._slots_pending(slots)
            if batch:
                self._apply(batch)
        except KernelApplyError:
            for (kind, key), was in before.items():     # the full path decides, from scratch
                if was is None:
                    desired[kind].pop(key, None)
                else:
                    desired[kind][key] = was
            self._put_back(undo)
            return None
        finally:
            self._dumped = None
        pending = dict(self.derived.pending)
        for slot in slots:
            pending.pop(slot, None)
        pending.update(derived.pending)
        self.derived = nd.Derived(DesiredState(), pending)
        self._port_names = (self._port_names - {a["port"] for a in old_atts.values() if a}) \
            | {a["port"] for a in new_atts.values() if a}
        if dumped is not None or self._links_changed:
            self.drift.reindex(self._kernel.dump_links() if self._links_changed else dumped or [],
                               self._port_names)
            self._links_changed = False
        elif any(slot[0] == "remote_mac" and before[slot] != desired["remote_mac"].get(slot[1])
                 for slot in slots):
            self.drift.refresh_remote_macs()
        self.entry_commits += 1
        return nd.attachment_changes(old_atts, new_atts)

    def _put_back(self, undo: list[tuple[str, nd.EntryKey, Tree | None]]) -> None:
        """Undo `_apply_entries`'s patches of the running copy."""
        for kind, k, entry in reversed(undo):
            self.running.put(kind, k, entry)

    def _slots_pending(self, slots: set[tuple[str, object]]) -> Batch:
        """What `DeltaTracker.pending` gives, for the (kind, key) `slots` only."""
        desired, dataplane = self.tracker.desired, self.tracker.dataplane
        deletes = [dataplane[kind][k] for kind in reversed(APPLY_ORDER) for kd, k in slots
                   if kd == kind and k not in desired[kind] and k in dataplane[kind]]
        updates = [Update(desired[kind][k], dataplane[kind].get(k))
                   for kind in APPLY_ORDER for kd, k in slots
                   if kd == kind and k in desired[kind]
                   and dataplane[kind].get(k) != desired[kind][k]]
        return Batch(tuple(deletes), tuple(updates))

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
        if any(type(o) is Network     # new or removed devices: new ifindexes
               for o in (*batch.deletes, *(u.new for u in batch.updates))):
            self._links_changed = True
        dumped, self._dumped = self._dumped, None
        self._kernel.apply(batch, link_dump=dumped)
        self.tracker.applied(batch)
        stamp = iso()
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
        self.tracker.observe(self._kernel.dump())

    def _links_checked(self, links: list[LinkEntry]) -> bool:
        """After link events right after the agent's own link changes: True when the links
        still are what the tracker believes (then no full dump is needed), else False."""
        if not self._links_dirty.is_set():
            return True
        if self.failed:
            return False
        self._links_dirty.clear()        # an event arriving from now on sets it again
        return self.drift.links_as_tracked(links)

    def _send(self, events: list[tuple[str, Tree]]) -> None:
        """One notification per changed attachment (`nd.attachment_events`); a commit
        changing several sends them all in one attachments-changed (built from the validated
        configuration: no libyang round trip for 2,500 entries)."""
        if self.notifier is None:
            return
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
        verdict = self.drift.judge(events)
        if verdict == "resync":
            self._dirty.set()
        elif verdict == "check":
            self._links_dirty.set()
        else:
            return
        self._wake.set()

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
                    if self._started and self.kernel is not None:
                        links = self.kernel.dump_links()
                        if self._links_checked(links):
                            self.drift.reindex(links, self._port_names)
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
            links = self.kernel.dump_links()
            derived = nd.derive(self.config, {lk.name for lk in links}, self.netns)
            self._resync()
            self.tracker.set_desired(derived.state)
            batch = self.tracker.pending()
            failed = self._apply_best_effort(batch)
            failed.update({p.key: p.message for p in derived.problems})
            if failed and failed != self.failed:
                log.warning("nve %s: %d entries not programmed, first: %s",
                            self.netns or "root", len(failed), next(iter(failed.values())))
            self.failed, self.derived = failed, derived
            self.drift.reindex(self.kernel.dump_links() if batch else links, self._port_names)
            if batch:
                self.repairs += 1
                log.info("nve %s: repaired %d kernel entries, back in sync: %s",
                         self.netns or "root", len(batch), self.tracker.in_sync())
            return len(batch)

    # -- operational state -----------------------------------------------------------------
    def state(self) -> Tree:
        """Programming status of every entry and counters from the kernel, for <get>."""
        with self.lock:
            nve = self.config.get("nve") or {}
            kernel = {"kernel": self.vlans.state()} if self.vlans is not None else {}
            if not nve or self.kernel is None:
                return {MODULE: {"nve": kernel}} if kernel else {}
            status = ProgrammingStatus(self.tracker, self.derived, self.failed,
                                       self.programmed_at)
            out = {**operational_state(nve, status, self.kernel.link_counters()), **kernel}
            return {MODULE: {"nve": out}} if out else {}


def probe_vlans(kernel: Kernel, netns: str | None) -> VlanSupport | None:
    """The kernel's VLAN support (None for a kernel that cannot tell, e.g. a fake), logged
    once when it is missing."""
    probe = getattr(kernel, "vlan_support", None)
    if probe is None:
        return None
    try:
        found: VlanSupport = probe()
    except OSError as exc:
        log.warning("nve %s: cannot probe VLAN support: %s", netns or "root", exc)
        return None
    if not found.supported:
        log.warning("nve %s: VM ports cannot have VLANs: %s", netns or "root", found.reason())
    return found


def _without(batch: Batch, bad: KernelObject, failed: dict[StatusKey, str]) -> Batch:
    """``batch`` minus ``bad`` and what depends on it (a network's entries, a port's policy)."""
    drop: Callable[[KernelObject], bool]
    if isinstance(bad, Network):
        def drop(o: KernelObject) -> bool:
            return o is bad or (not isinstance(o, Policy) and o.vni == bad.vni)
    elif isinstance(bad, Port):
        def drop(o: KernelObject) -> bool:
            return o == bad or (isinstance(o, Policy) and o.port == bad.name)
    else:
        def drop(o: KernelObject) -> bool:
            return o == bad
    for obj in [*batch.deletes, *(u.new for u in batch.updates)]:
        if drop(obj) and obj != bad:
            failed.setdefault(status_key(obj), f"depends on {describe(bad)}, which failed")
    return Batch(tuple(o for o in batch.deletes if not drop(o)),
                 tuple(u for u in batch.updates if not drop(u.new)))


__all__ = ["NveRole"]
