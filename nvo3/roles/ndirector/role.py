"""The nDirector role: the global mapping table, and every NVE made to agree with it.

Flow: NVE sessions (:mod:`nvo3.roles.ndirector.nve_sessions`) report what each NVE has attached (a read
of its datastore at every (re)connect, then its attachment notifications). One control thread
feeds these into the :class:`~nvo3.roles.ndirector.mapping_table.MappingTable`, derives what every NVE
should hold (remote MACs of its VNIs, flood lists, the policies of the VMs attached to it),
records that in each NVE's tracker and wakes the NVEs' push workers, which send one coalesced
edit-config each, concurrently.

Design notes:

* A remote-mac entry goes to every NVE of the VNI except the mapping's location, including
  NVEs that still report the MAC attached (RFC 8394): an associated destination keeps
  forwarding to the source until it is activated, and the source is re-pointed at the
  destination when the destination is activated, before it deactivates. The NVE agent keeps
  such an entry pending while its own activated attachment's port exists (the local one takes
  precedence) and programs it once the port is gone or the attachment is deactivated.
* Members of a VNI: the configured member-nve list, the NVEs with an attachment in it and the
  NVEs that have the network configured.
* Startup (nDirector restart): no NVE is resynchronized before every enabled NVE was read once
  (or STARTUP_GRACE_S passed), so an NVE read first is not stripped of the entries of the
  NVEs not read yet. Sequence numbers are recovered from the remote-mac entries the NVEs hold.
* Nothing is withdrawn when an NVE's session drops: its VMs stay in the table and every NVE
  keeps forwarding.
* Notifications are sent by the control thread, outside the role's lock.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from nvo3.common.clock import iso
from nvo3.common.mac import norm_mac
from nvo3.common.names import NDIRECTOR
from nvo3.common.tree import Tree, entries
from nvo3.netconf.server.role_api import (
    AccessScope,
    ApplyError,
    ConfigChange,
    Notifier,
    Role,
    RpcHandler,
)
from nvo3.roles.ndirector.audit import audit_mappings
from nvo3.roles.ndirector.mapping_table import (
    ASSOCIATED,
    Change,
    DuplicateMacConfig,
    MappingOutcome,
    MappingTable,
    Report,
)
from nvo3.roles.ndirector.nve_client import AttachmentEvent, NveConfig
from nvo3.roles.ndirector.nve_sessions import Endpoint, NveSession
from nvo3.roles.ndirector.table_store import EmbeddedStore, TableStore

if TYPE_CHECKING:
    from nvo3.roles.ndirector.etcd_client import EtcdSettings

log = logging.getLogger(__name__)

MODULE = NDIRECTOR
STARTUP_GRACE_S = 10.0
TICK_S = 1.0
WITHDRAW_DELAY_S = 0.02     # a withdraw-only push waits this long after the installs
Key = tuple[int, str]
_UNCHANGED, _CHANGED, _INSTALLS = 0, 1, 2     # what recording a change did to a tracker


def _stop_all(sessions: list[NveSession]) -> None:
    for s in sessions:
        s.stop()


class NDirectorRole(Role):
    """The nDirector (the draft's control plane; RFC 8014's NVA)."""

    name = "ndirector"
    modules = (MODULE,)

    def __init__(self, etcd: EtcdSettings | None = None, data_center: str = "",
                 name: str = "") -> None:
        super().__init__()
        self.lock = threading.RLock()
        self.table = MappingTable()
        self.store: TableStore = EmbeddedStore(self.table)
        if etcd is not None:       # the shared table (etcd mode); imported only then
            from nvo3.roles.ndirector.etcd_table import EtcdStore
            self.store = EtcdStore(etcd, data_center, name, self.table,
                                   local_nves=lambda: set(self.endpoints),
                                   read_nves=lambda: self.read_once & set(self.endpoints))
        self.endpoints: dict[str, Endpoint] = {}
        self.sessions: dict[str, NveSession] = {}
        self.members_cfg: dict[int, set[str]] = {}
        self.vm_policies: dict[Key, Tree] = {}
        self.group_policies: dict[tuple[str, str], Tree] = {}
        self.held_networks: dict[str, set[int]] = {}
        self.attached: dict[int, dict[str, int]] = {}       # vni -> nve -> attachments
        self.read_once: set[str] = set()
        self._ready = False
        self._started_at = time.monotonic()
        self._queue: queue.Queue[tuple[Any, ...]] = queue.Queue()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._generation = 0
        self._pending: dict[int, tuple[float, set[str]]] = {}
        self._members: dict[int, frozenset[str]] = {}     # each VNI's members, last recorded
        self._conv = {"last": 0, "sum": 0, "count": 0, "max": 0}

    # life cycle ----------------------------------------------------------------------------
    def start(self, notifier: Notifier) -> None:
        super().start(notifier)
        self._started_at = time.monotonic()
        self._thread = threading.Thread(target=self._loop, name="ndirector", daemon=True)
        self._thread.start()
        self.store.start(self._queue.put)

    def stop(self) -> None:
        self._stop.set()
        self.store.stop()
        self._queue.put(("wake",))
        for s in list(self.sessions.values()):
            s.stop(timeout=2.0)
        if self._thread is not None:
            self._thread.join(5.0)

    # configuration -------------------------------------------------------------------------
    def apply(self, change: ConfigChange) -> None:
        nd = change.after.get("ndirector") or {}
        endpoints = {n["name"]: Endpoint.from_config(n) for n in entries(nd, "nves", "nve")}
        members = {int(n["vni"]): set(n.get("member-nve") or [])
                   for n in entries(nd, "networks", "network")}
        vm_pol = {(int(p["vni"]), norm_mac(p["mac"])): p for p in entries(nd, "policies",
                                                                          "vm-policy")}
        grp_pol = {(p["tenant"], p["group"]): p for p in entries(nd, "policies", "group-policy")}
        dmd = nd.get("duplicate-mac-detection") or {}
        dup = DuplicateMacConfig(
            enabled=dmd.get("enabled", True) not in (False, "false"),
            max_moves=int(dmd.get("max-moves", 5)), window=int(dmd.get("window-seconds", 180)),
            freeze=dmd.get("freeze", True) not in (False, "false"),
            recovery=int(dmd["recovery-seconds"]) if dmd.get("recovery-seconds") else None)
        stopping: list[NveSession] = []
        with self.lock:
            self.members_cfg, self.vm_policies, self.group_policies = members, vm_pol, grp_pol
            self.table.configure(dup)
            for name in list(self.sessions):
                if endpoints.get(name) != self.endpoints.get(name):
                    stopping.append(self.sessions.pop(name))
            if not self.endpoints:
                self._started_at = time.monotonic()    # the start-up grace begins now
            self.endpoints = endpoints
            for name, ep in endpoints.items():
                if name not in self.sessions:
                    self.sessions[name] = NveSession(ep, self, gate=self._may_push,
                                                     on_push=self._pushed)
                    self.sessions[name].start()
        if stopping:   # never join under the engine's lock: a session may be notifying
            threading.Thread(target=_stop_all, args=(stopping,), daemon=True).start()
        self._queue.put(("config",))

    # what sessions report (any thread) -----------------------------------------------------
    def nve_up(self, name: str, config: NveConfig, events: list[AttachmentEvent]) -> None:
        self._queue.put(("up", name, config, events, time.monotonic()))

    def nve_events(self, name: str, events: list[AttachmentEvent]) -> None:
        """Attachment events of one notification (several: a bulk commit at the NVE)."""
        self._queue.put(("events", name, events, time.monotonic()))

    def nve_state(self, name: str, state: str, previous: str, reason: str | None) -> None:
        self._queue.put(("state", name, state, previous, reason))

    def nve_acked(self, name: str, generation: int) -> None:
        done: list[float] = []
        now = time.monotonic()
        with self.lock:
            for gen in [g for g in self._pending if g <= generation]:
                t0, waiting = self._pending[gen]
                waiting.discard(name)
                if not waiting:
                    del self._pending[gen]
                    if t0:
                        done.append(now - t0)
            for d in done:
                self.telemetry.observe("convergence_seconds", d)
                us = int(d * 1e6)
                c = self._conv
                c["last"], c["sum"], c["count"] = us, c["sum"] + us, c["count"] + 1
                c["max"] = max(c["max"], us)

    def _pushed(self, nve: str, seconds: float, accepted: bool) -> None:
        self.telemetry.observe("push_seconds", seconds, nve=nve,
                               outcome="ok" if accepted else "failed")

    def _may_push(self) -> bool:
        if not self.store.may_push():
            return False
        if self._ready:
            return True
        enabled = {n for n, e in self.endpoints.items() if e.enabled}
        if not enabled:
            return False
        if enabled <= self.read_once or time.monotonic() - self._started_at > STARTUP_GRACE_S:
            self._ready = True
            log.info("ndirector: table rebuilt from %d NVEs; resynchronizing every NVE",
                     len(self.read_once))
            for s in list(self.sessions.values()):
                s.kick()
        return self._ready

    # the control thread --------------------------------------------------------------------
    def _loop(self) -> None:
        next_tick = time.monotonic() + TICK_S
        while not self._stop.is_set():
            try:
                items = [self._queue.get(timeout=max(0.0, next_tick - time.monotonic()))]
            except queue.Empty:
                items = []
            while True:
                try:
                    items.append(self._queue.get_nowait())
                except queue.Empty:
                    break
            notes: list[tuple[str, Tree]] = []
            try:
                with self.lock:
                    self._process(items, notes)
                    if time.monotonic() >= next_tick:
                        next_tick = time.monotonic() + TICK_S
                        ticked: set[Key] = set()
                        self._apply_outcome(self.store.tick(time.monotonic()), ticked, notes)
                        if ticked:      # an unfreeze that moved, a change stored late
                            self._distribute(ticked, set(), set(), 0.0)
                        self._may_push()
            except Exception:
                log.exception("ndirector: processing %d items failed", len(items))
            self._send_notes(notes)

    def _send_notes(self, notes: list[tuple[str, Tree]]) -> None:
        """Send notifications; a burst of mapping-changed goes out in one trusted batch (built
        here from validated values: no libyang round trip per MAC)."""
        if self.notifier is None:
            return
        changed = [c for n, c in notes if n == "mapping-changed"]
        if changed:
            try:
                self.notifier.notify_batch(MODULE, "mapping-changed", changed)
            except Exception:   # the table is right; only subscribers miss this burst
                log.exception("ndirector: %d mapping-changed notifications could not be sent",
                              len(changed))
        for name, content in notes:
            if name == "mapping-changed":
                continue
            try:
                self.notifier.notify(MODULE, name, content)
            except Exception:
                log.exception("ndirector: the %s notification could not be sent", name)

    def _process(self, items: list[tuple[Any, ...]], notes: list[tuple[str, Tree]]) -> None:
        keys: set[Key] = set()
        vnis: set[int] = set()
        full: set[str] = set()
        t0 = 0.0
        now = time.monotonic()
        for item in items:
            kind = item[0]
            if kind == "events":
                _, name, events, t_recv = item
                if name in self.endpoints:
                    t0 = t0 or t_recv
                    for event in events:
                        self._event(name, event, now, keys, vnis, notes)
            elif kind == "up":
                _, name, config, events, _t = item
                if name in self.endpoints:
                    self._up(name, config, now, keys, vnis, notes)
                    for ev in events:
                        self._event(name, ev, now, keys, vnis, notes)
                    full.add(name)
            elif kind == "config":
                full |= set(self.sessions)
            elif kind == "note":
                notes.append((item[1], item[2]))
            elif kind == "store":
                update = self.store.handle(item, now)
                self._apply_outcome(update.outcome, keys, notes)
                vnis |= update.vnis
                if update.full:
                    full |= set(self.sessions)
                    for s in self.sessions.values():
                        s.kick()
            elif kind == "state":
                _, name, state, previous, reason = item
                content: Tree = {"nve": name, "state": state, "previous-state": previous}
                if reason:
                    content["reason"] = reason[:500]
                notes.append(("nve-state-change", content))
        self._distribute(keys, vnis, full, t0)
        if vnis or full:
            self.store.publish_members(self._local_membership())

    def _local_membership(self) -> dict[str, tuple[str, set[int]]]:
        """Each NVE of this nDirector, its VTEP and the VNIs it is a member of."""
        out: dict[str, tuple[str, set[int]]] = {n: (e.vtep, set())
                                                 for n, e in self.endpoints.items()}
        for vni, mem in self._members.items():
            for n in mem:
                if n in out:
                    out[n][1].add(vni)
        return out

    def _report_of(self, name: str, att: Tree, t: float | None) -> Report:
        return Report(int(att["vni"]), norm_mac(att["mac"]), name, self.endpoints[name].vtep,
                      tuple(att.get("ip-address") or ()), att.get("state", ASSOCIATED),
                      att.get("vm-id"), t)

    def _count(self, key: Key, name: str, before: bool) -> bool:
        """Keep the per-VNI attachment counts; True when the NVE joined or left the VNI."""
        after = name in self.table.candidates.get(key, {})
        if before == after:
            return False
        per = self.attached.setdefault(key[0], {})
        per[name] = per.get(name, 0) + (1 if after else -1)
        if per[name] <= 0:
            del per[name]
            return True
        return per[name] == 1

    def _event(self, name: str, ev: AttachmentEvent, now: float, keys: set[Key],
               vnis: set[int], notes: list[tuple[str, Tree]]) -> None:
        c = ev.content
        key = (int(c["vni"]), norm_mac(c["mac"]))
        before = name in self.table.candidates.get(key, {})
        if ev.name == "attachment-removed":
            out = self.store.withdraw(key[0], key[1], name, now)
        else:
            out = self.store.report(self._report_of(name, c, ev.time), now)
        keys.add(key)
        if self._count(key, name, before):
            vnis.add(key[0])
        self._apply_outcome(out, keys, notes)

    def _up(self, name: str, config: NveConfig, now: float, keys: set[Key], vnis: set[int],
            notes: list[tuple[str, Tree]]) -> None:
        by_vtep = {e.vtep: n for n, e in self.endpoints.items()}
        for (vni, mac), rm in config.remote_macs.items():
            seq = rm.get("sequence-number")
            if seq is not None:
                self.table.seed(vni, mac, int(seq), rm.get("remote-nve")
                                or by_vtep.get(rm.get("remote-vtep", "")))
        old_nets = self.held_networks.get(name, set())
        self.held_networks[name] = set(config.networks)
        vnis |= old_nets ^ config.networks
        reports = [self._report_of(name, a, None) for a in config.attachments]
        before = {r.key for r in self.table.local_to(name)}
        out = self.store.snapshot(name, reports, now)
        for key in before | {r.key for r in reports}:
            keys.add(key)
            if self._count(key, name, key in before):
                vnis.add(key[0])
        self._apply_outcome(out, keys, notes)
        self.read_once.add(name)

    def _apply_outcome(self, out: MappingOutcome, keys: set[Key], notes: list[tuple[str, Tree]]) -> None:
        for ch in out.changes:
            keys.add(ch.mapping.key)
            notes.append(("mapping-changed", self._change_note(ch)))
        audit_mappings(out.changes)
        for ref in out.refused:
            r = ref.report
            log.warning("ndirector: refused %s of VNI %d at %s: %s (it lives at %s, sequence "
                        "number %d)", r.mac, r.vni, r.nve, ref.reason, ref.current_nve,
                        ref.current_seq)
        for d in out.duplicates:
            log.error("ndirector: duplicate MAC %s in VNI %d: %d moves within %d s between %s%s",
                      d.mac, d.vni, d.moves, d.window, ", ".join(d.nves),
                      "; frozen" if d.frozen else "")
            notes.append(("duplicate-mac-detected", {
                "vni": d.vni, "mac": d.mac, "moves": d.moves, "window-seconds": d.window,
                "nve": list(d.nves), "frozen": d.frozen}))

    @staticmethod
    def _change_note(ch: Change) -> Tree:
        m = ch.mapping
        note: Tree = {"change": ch.kind, "vni": m.vni, "mac": m.mac}     # schema order
        if m.ips:
            note["ip-address"] = list(m.ips)
        note.update({"nve": m.nve, "vtep-address": m.vtep, "sequence-number": m.seq,
                     "state": m.state})
        if ch.previous_nve:
            note["previous-nve"] = ch.previous_nve
            note["previous-vtep-address"] = ch.previous_vtep
        return note

    # desired state per NVE -----------------------------------------------------------------
    def members(self, vni: int) -> set[str]:
        m = set(self.members_cfg.get(vni, ())) | set(self.attached.get(vni, {}))
        m |= {n for n, nets in self.held_networks.items() if vni in nets}
        return m & set(self.endpoints)

    def _remote_entry(self, key: Key) -> Tree | None:
        """The remote-mac entry of `key` for the NVEs that get one (built once per change and
        shared by their trackers: nothing mutates it)."""
        m = self.table.mappings.get(key)
        if m is None:
            return None
        entry: Tree = {"mac": m.mac, "remote-vtep": m.vtep, "remote-nve": m.nve,
                       "sequence-number": m.seq}
        if m.ips:
            entry["ip-address"] = list(m.ips)
        return entry

    def effective_policy(self, key: Key) -> Tree | None:
        vm = self.vm_policies.get(key)
        if vm is None:
            return None
        grp = self.group_policies.get((vm.get("tenant", ""), vm.get("group", ""))) or {}
        out: Tree = {}
        vlan = vm.get("vlan", grp.get("vlan"))
        if vlan is not None:
            out["vlan"] = vlan
        acl = vm.get("acl") if (vm.get("acl") or {}).get("rule") or not grp.get("acl") \
            else grp.get("acl")
        if acl and (acl.get("rule") or acl.get("default-action", "permit") != "permit"):
            out["acl"] = acl
        rate = vm.get("rate-limit") or grp.get("rate-limit")
        if rate:
            out["rate-limit"] = rate
        return out

    def _distribute(self, keys: set[Key], vnis: set[int], full: set[str], t0: float) -> None:
        """Record what changed in the NVEs' trackers; wake the workers of those that changed.

        The work is in proportion to the change: each changed mapping's entry and policy are
        derived once, whatever the number of NVEs; the mappings of a VNI are all looked at
        again only for the NVEs that joined or left it. After a (re)connect or a
        configuration change (`full`) every NVE is compared with the whole table."""
        if full:
            keys = keys | set(self.table.mappings) | set(self.table.candidates) | \
                set(self.vm_policies)
            vnis = vnis | {k[0] for k in keys} | set(self.members_cfg) | \
                {v for nets in self.held_networks.values() for v in nets}
        members = {vni: self.members(vni) for vni in {k[0] for k in keys} | vnis}
        rejoined = self._membership_changes(members, vnis, everyone=bool(full))
        remote = {key: self._remote_entry(key) for key in keys}
        for extra in rejoined.values():
            for key in extra - remote.keys():
                remote[key] = self._remote_entry(key)
        touched: dict[str, bool] = {}     # NVE -> its change installs (or re-points) something
        for name, session in self.sessions.items():
            with session.lock:
                did = max(self._record_macs(name, session, keys, remote, members),
                          self._record_macs(name, session, rejoined.get(name, set()), remote,
                                            members),
                          self._record_policies(name, session, keys),
                          self._record_floods(name, session, vnis, members))
                if did != _UNCHANGED:
                    session.tracker.generation = self._generation + 1
            if did != _UNCHANGED:
                touched[name] = did == _INSTALLS
        if not touched:
            return
        self._generation += 1
        waiting = {n for n in touched if self.sessions[n].connected}
        if waiting and self._ready:
            self._pending[self._generation] = (t0, waiting)
        # make-before-break across NVEs: the pushes that install or re-point entries go first;
        # one that only withdraws waits a moment so it does not compete with them for the CPU
        # (a moved VM's new NVE drops its remote entry: it already forwards locally)
        for name, installs in touched.items():
            self.sessions[name].kick(0.0 if installs else WITHDRAW_DELAY_S)

    def _membership_changes(self, members: dict[int, set[str]], vnis: set[int],
                            everyone: bool) -> dict[str, set[Key]]:
        """Remember each VNI's members; for an NVE that joined or left one of `vnis` (where
        the members may have changed), the keys of that VNI's mappings (none when
        `everyone` is looked at anyway)."""
        moved: dict[int, set[str]] = {}
        for vni in vnis:
            now = frozenset(members[vni])
            before = self._members.get(vni, frozenset())
            if now != before:
                moved[vni] = set(now ^ before)
                self._members[vni] = now
        if everyone or not moved:
            return {}
        keys_of: dict[int, list[Key]] = {vni: [] for vni in moved}
        for key in self.table.mappings:
            if key[0] in keys_of:
                keys_of[key[0]].append(key)
        out: dict[str, set[Key]] = {}
        for vni, nves in moved.items():
            for name in nves:
                out.setdefault(name, set()).update(keys_of[vni])
        return out

    def _record_macs(self, name: str, session: NveSession, keys: Iterable[Key],
                     remote: dict[Key, Tree | None], members: dict[int, set[str]]) -> int:
        """Set the remote entries of `keys` in the NVE's tracker: _UNCHANGED, _CHANGED, or
        _INSTALLS (something installed or re-pointed)."""
        t, out = session.tracker, _UNCHANGED
        mappings = self.table.mappings
        for key in keys:
            entry = remote[key]
            if entry is not None and (name not in members[key[0]] or mappings[key].nve == name):
                entry = None
            if t.set_mac(key, entry):
                out = _INSTALLS if entry is not None else max(out, _CHANGED)
        return out

    def _record_policies(self, name: str, session: NveSession, keys: Iterable[Key]) -> int:
        """Set the effective policies of `keys` in the NVE's tracker (as _record_macs)."""
        t, out = session.tracker, _UNCHANGED
        candidates = self.table.candidates
        for key in keys:
            here = name in candidates.get(key, {})
            policy = self.effective_policy(key) if here else None
            if t.set_policy(key, policy):
                out = _INSTALLS if policy is not None else max(out, _CHANGED)
        return out

    def _record_floods(self, name: str, session: NveSession, vnis: Iterable[int],
                       members: dict[int, set[str]]) -> int:
        """Set the flood lists of `vnis` in the NVE's tracker (as _record_macs)."""
        t, out = session.tracker, _UNCHANGED
        for vni in vnis:
            mem = members[vni]
            vteps = {self.endpoints[o].vtep for o in mem if o != name} | \
                self.store.remote_vteps(vni) if name in mem else set()
            before = t.floods.get(vni, set())
            if t.set_flood(vni, vteps):
                out = _INSTALLS if vteps - before else max(out, _CHANGED)
        return out

    # RPCs ----------------------------------------------------------------------------------
    def access_scopes(self) -> dict[str, AccessScope]:
        """A notification about one VNI's mappings reaches a subscriber only when NACM lets it
        read that virtual network's entry (a tenant's operator sees its own VNIs' moves)."""
        network = f"/{MODULE}:ndirector/networks/network[vni={{}}]"
        return {f"{MODULE}:{name}": AccessScope("vni", network)
                for name in ("mapping-changed", "duplicate-mac-detected")}

    def rpc_handlers(self) -> dict[str, RpcHandler]:
        return {f"{MODULE}:lookup": self._lookup,
                f"{MODULE}:clear-duplicate-mac": self._clear,
                f"{MODULE}:resync": self._resync}

    def _lookup(self, given: Tree) -> Tree:
        vni = int(given["vni"])
        with self.lock:
            if given.get("mac"):
                m = self.table.get(vni, norm_mac(given["mac"]))
                what = f"MAC {given['mac']}"
            else:
                m = self.table.by_ip(vni, given.get("ip-address", ""))
                what = f"IP address {given.get('ip-address')}"
            if m is None:
                raise ApplyError(f"no mapping for {what} in VNI {vni}", tag="data-missing")
            out: Tree = {"mac": m.mac, "nve": m.nve, "vtep-address": m.vtep,
                         "sequence-number": m.seq, "state": m.state}
            if m.ips:
                out["ip-address"] = list(m.ips)
            return out

    def _clear(self, given: Tree) -> Tree:
        vni = int(given["vni"]) if given.get("vni") is not None else None
        mac = norm_mac(given["mac"]) if given.get("mac") else None
        notes: list[tuple[str, Tree]] = []
        with self.lock:
            refusal = self.store.refusal()
            if refusal is not None:
                raise ApplyError(refusal, tag="operation-failed")
            cleared, out = self.store.clear_duplicates(time.monotonic(), vni, mac)
            keys: set[Key] = set()
            self._apply_outcome(out, keys, notes)
            self._distribute(keys, set(), set(), 0.0)
        for name, content in notes:   # mapping-changed of a MAC that moved once cleared
            self._queue.put(("note", name, content))
        return {"cleared": cleared}

    def _resync(self, given: Tree) -> Tree:
        names = given.get("nve") or [n for n, s in self.sessions.items() if s.connected]
        done = []
        for name in names:
            s = self.sessions.get(name)
            if s is not None and s.connected:
                s.reread()
                done.append(name)
        return {"resynchronized": done} if done else {}

    # state ---------------------------------------------------------------------------------
    def state(self) -> Tree:
        with self.lock:
            nves = []
            local: dict[str, int] = {}
            for cands in self.table.candidates.values():
                for n in cands:
                    local[n] = local.get(n, 0) + 1
            for name, s in sorted(self.sessions.items()):
                st = s.stats
                sess: Tree = {"state": st.state, "since": st.since,
                              "local-mappings": local.get(name, 0),
                              "remote-mappings": len(s.tracker.acked_macs),
                              "pushes": st.pushes, "push-failures": st.push_failures}
                if st.last_error:
                    sess["last-error"] = st.last_error[:1000]
                if st.host_key_seen:
                    sess["host-key-seen"] = st.host_key_seen
                if st.last_push_latency_us is not None:
                    sess["last-push-latency"] = st.last_push_latency_us
                nves.append({"name": name, "session": sess})
            nets: dict[int, list[Tree]] = {}
            wall, mono = time.time(), time.monotonic()
            for m in self.table.mappings.values():
                entry: Tree = {"mac": m.mac, "nve": m.nve, "vtep-address": m.vtep,
                               "sequence-number": m.seq, "state": m.state, "origin": m.origin,
                               "last-moved": iso(wall - (mono - m.last_moved)),
                               "moves": len(m.moves), "frozen": m.frozen}
                if m.ips:
                    entry["ip-address"] = list(m.ips)
                nets.setdefault(m.vni, []).append(entry)
            c, st_ = self._conv, self.table.stats
            stats: Tree = {"mappings": len(self.table), "mapping-updates": st_.updates,
                           "stale-updates-refused": st_.stale_refused,
                           "duplicate-macs-detected": st_.duplicates}
            if c["count"]:
                stats.update({"last-convergence-time": c["last"],
                              "average-convergence-time": c["sum"] // c["count"],
                              "max-convergence-time": c["max"]})
            out: Tree = {"statistics": stats, "shared-store": self.store.state()}
            if nves:
                out["nves"] = {"nve": nves}
            if nets:
                out["mapping-table"] = {"network": [{"vni": v, "mapping": ms}
                                                    for v, ms in sorted(nets.items())]}
            return {MODULE: {"ndirector": out}}
