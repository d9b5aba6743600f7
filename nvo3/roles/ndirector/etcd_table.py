"""The mapping table shared in etcd by the nDirectors of every data center.

Keys (values are JSON):

* ``/nvo3/mappings/<vni>/<mac>``: the location of one (VNI, MAC): NVE, VTEP, RFC 7432
  sequence number, IP addresses, state, event time, the data center that wrote it, and
  whether it is a frozen duplicate.
* ``/nvo3/members/<dc>/<nve>``: an NVE of a data center, its VTEP and VNIs (the flood lists
  of the other data centers).
* ``/nvo3/leaders/<dc>``: the leader replica of a data center (see
  :mod:`nvo3.roles.ndirector.election`).

A local decision (an NVE of this data center reported or withdrew a MAC) is made by the
:class:`MappingTable` as in the embedded mode, then written in one transaction per batch
that compares each key's mod_revision with the one this nDirector last saw: if another
nDirector wrote the key meanwhile, the write is refused, the decision is undone, the newer
location adopted, and the decision made again against it (so a stale sequence number never
overwrites a newer one). Only what etcd stored becomes the table that is pushed: a
standby, a leader without a fresh lease, or a leader that etcd cannot answer (no quorum)
changes nothing and says so (``refusal``); the leader reconsiders its NVEs' reports once
etcd answers again or it takes over.

Every nDirector watches ``/nvo3/`` and adopts what the others wrote; it pushes to the NVEs of
its own data center only.
"""

from __future__ import annotations

import functools
import json
import logging
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import replace
from typing import Any

from nvo3.common.tree import Tree
from nvo3.roles.ndirector.election import Election
from nvo3.roles.ndirector.etcd_client import (
    EtcdClient,
    EtcdSettings,
    KeyValue,
    StoreUnavailable,
    b64,
)
from nvo3.roles.ndirector.mapping_table import (
    Change,
    Mapping,
    MappingOutcome,
    MappingTable,
    Report,
)
from nvo3.roles.ndirector.table_store import Deliver, Key, StoreUpdate

log = logging.getLogger(__name__)

PREFIX = "/nvo3/"
MAPPINGS = PREFIX + "mappings/"
MEMBERS = PREFIX + "members/"
LEADERS = PREFIX + "leaders/"
TXN_KEYS = 100                 # keys per transaction (etcd's default limit is 128 operations)
RELOAD_BACKOFF_S = 0.3


def mapping_key(key: Key) -> str:
    return f"{MAPPINGS}{key[0]}/{key[1]}"


def parse_mapping_key(path: str) -> Key | None:
    parts = path[len(MAPPINGS):].split("/")
    if len(parts) != 2 or not parts[0].isdigit():
        return None
    return int(parts[0]), parts[1]


def encode(m: Mapping, dc: str) -> str:
    return json.dumps({"nve": m.nve, "vtep": m.vtep, "seq": m.seq, "ips": list(m.ips),
                       "state": m.state, "vm": m.vm_id, "time": m.time, "dc": dc,
                       "frozen": m.frozen}, separators=(",", ":"))


def decode(key: Key, value: str, own_dc: str) -> Mapping:
    v = json.loads(value)
    dc = str(v.get("dc") or "")
    return Mapping(key[0], key[1], str(v["nve"]), str(v["vtep"]), tuple(v.get("ips") or ()),
                   int(v["seq"]), str(v.get("state") or "activated"), v.get("vm"), v.get("time"),
                   origin="local" if dc == own_dc else dc, frozen=bool(v.get("frozen")))


class EtcdStore:
    """The table in etcd (see the module's notes)."""

    def __init__(self, settings: EtcdSettings, dc: str, name: str, table: MappingTable,
                 local_nves: Callable[[], set[str]], read_nves: Callable[[], set[str]],
                 client: EtcdClient | None = None) -> None:
        self.table, self.dc, self.name = table, dc, name
        self.client = client or EtcdClient(settings)
        self._local_nves, self._read_nves = local_nves, read_nves
        self.revs: dict[Key, int] = {}            # mod_revision of each key this nDirector saw
        self.applied = 0                          # the store revision applied to the table
        self.leading = False                      # leader, caught up (control thread)
        self.unstored = 0                         # local changes etcd could not store
        self.conflicts = 0                        # writes refused: someone wrote the key first
        self.last_error: str | None = None
        self.remote_members: dict[str, tuple[str, str, set[int]]] = {}  # nve -> dc, vtep, vnis
        self._published: dict[str, tuple[str, set[int]]] = {}
        self._members_dirty = False
        self._retry = False                       # some local change waits to be stored
        self._deliver: Deliver = lambda item: None
        self._stop = threading.Event()
        self.election = Election(self.client, LEADERS + dc, name,
                                 on_change=lambda leading: self._deliver(("store", "leader",
                                                                          leading)),
                                 on_available=self._availability)
        self._watcher = threading.Thread(target=self._watch_loop, daemon=True,
                                         name="ndirector-etcd-watch")

    # life cycle ----------------------------------------------------------------------------
    def start(self, deliver: Deliver) -> None:
        self._deliver = deliver
        self._watcher.start()
        self.election.start()

    def stop(self) -> None:
        self._stop.set()
        self.election.stop()
        self.client.stop_watch()
        self._watcher.join(2.0)

    def _availability(self, ok: bool, error: str | None) -> None:
        if error:
            self.last_error = error[:500]
        self._deliver(("store", "available", ok))

    def _watch_loop(self) -> None:
        """Read everything, then watch from there; again after any break of the stream."""
        while not self._stop.is_set():
            try:
                rev, kvs = self.client.get_prefix(PREFIX)
                self._deliver(("store", "reload", rev, kvs))
                self.client.watch_prefix(PREFIX, rev + 1, self._on_event)
            except StoreUnavailable as exc:
                self.last_error = str(exc)[:500]
            except Exception:
                log.exception("ndirector: the etcd watch failed")
            self._stop.wait(RELOAD_BACKOFF_S)

    def _on_event(self, event: dict[str, Any]) -> None:
        kv = event["kv"]
        key = kv["key"].decode() if isinstance(kv["key"], bytes) else str(kv["key"])
        value = kv.get("value", b"")
        value = value.decode() if isinstance(value, bytes) else str(value)
        deleted = event.get("type") == "DELETE"
        self._deliver(("store", "event", key, None if deleted else value,
                       int(kv.get("mod_revision", 0))))

    # what the role asks (control thread, under the role's lock) ------------------------------
    def may_push(self) -> bool:
        return self.leading and self.election.fresh()

    def refusal(self) -> str | None:
        if not self.election.available:
            return ("the shared mapping table (etcd) cannot be written: "
                    f"{self.last_error or 'no quorum'}; nothing was changed")
        if not self.may_push():
            return (f"this nDirector ({self.name}) is a standby of data center {self.dc}; "
                    f"the leader is {self.election.leader_name or 'not elected yet'}")
        return None

    def remote_vteps(self, vni: int) -> set[str]:
        return {vtep for dc, vtep, vnis in self.remote_members.values()
                if dc != self.dc and vni in vnis}

    def report(self, r: Report, now: float) -> MappingOutcome:
        return self._decide({r.key}, lambda: self.table.report(r, now))

    def withdraw(self, vni: int, mac: str, nve: str, now: float) -> MappingOutcome:
        return self._decide({(vni, mac)}, lambda: self.table.withdraw(vni, mac, nve, now))

    def snapshot(self, nve: str, reports: Iterable[Report], now: float) -> MappingOutcome:
        reports = list(reports)
        seen = {r.key for r in reports}
        gone = {k for k, m in self.table.mappings.items() if m.nve == nve and k not in seen}
        keys = seen | gone | {k for k, c in self.table.candidates.items() if nve in c}

        def decide() -> MappingOutcome:
            out = self.table.snapshot(nve, reports, now)
            for k in gone:                  # held here while this NVE was not watched
                m = self.table.mappings.get(k)
                if m is not None and m.nve == nve:
                    out.extend(self.table.release(k[0], k[1], now))
            return out
        return self._decide(keys, decide)

    def tick(self, now: float) -> MappingOutcome:
        out = MappingOutcome()
        if self._retry and self.may_push() and self.election.available:
            self._retry = False              # changes etcd could not store: decide them again
            out.extend(self.reconsider_all(now))
        frozen = {k for k, m in self.table.mappings.items() if m.frozen}
        if not frozen or self.table.dup.recovery is None:
            out.extend(self.table.tick(now))     # ages move windows only: nothing to store
            return out
        out.extend(self._decide(frozen, lambda: self._unfrozen(frozen, self.table.tick(now))))
        return out

    def clear_duplicates(self, now: float, vni: int | None,
                         mac: str | None) -> tuple[int, MappingOutcome]:
        frozen = {k for k, m in self.table.mappings.items() if m.frozen}
        cleared = [0]

        def decide() -> MappingOutcome:
            cleared[0], out = self.table.clear_duplicates(now, vni, mac)
            return self._unfrozen(frozen, out)
        out = self._decide(frozen, decide)
        return cleared[0], out

    def _unfrozen(self, frozen: set[Key], out: MappingOutcome) -> MappingOutcome:
        """A MAC unfrozen where it is changes no location, but the stored freeze must go."""
        changed = {c.mapping.key for c in out.changes}
        for k in frozen - changed:
            m = self.table.mappings.get(k)
            if m is not None and not m.frozen:
                out.changes.append(Change("updated", _copy(m) or m))
        return out

    def publish_members(self, members: dict[str, tuple[str, set[int]]]) -> None:
        """This data center's NVEs, their VTEPs and VNIs (written by the leader)."""
        if members == self._published and not self._members_dirty:
            return
        if not self.may_push():
            return
        try:
            for nve, (vtep, vnis) in members.items():
                if self._published.get(nve) != (vtep, vnis) or self._members_dirty:
                    self.client.put(f"{MEMBERS}{self.dc}/{nve}",
                                    json.dumps({"vtep": vtep, "vnis": sorted(vnis)}))
            for nve in set(self._published) - set(members):
                self.client.txn([], [{"request_delete_range": {
                    "key": b64(f"{MEMBERS}{self.dc}/{nve}")}}])
            self._published = {n: (v, set(s)) for n, (v, s) in members.items()}
            self._members_dirty = False
        except StoreUnavailable as exc:
            self.last_error = str(exc)[:500]
            self._members_dirty = True

    # the store's own items (control thread) ---------------------------------------------------
    def handle(self, item: tuple[Any, ...], now: float) -> StoreUpdate:
        kind = item[1]
        if kind == "event":
            _, _, path, value, rev = item
            return self._event(path, value, rev, now)
        if kind == "reload":
            return self._reload(item[2], item[3], now)
        if kind == "leader":
            return self._leadership(bool(item[2]), now)
        if kind == "available" and item[2] and self.leading:
            self._members_dirty = True
            return StoreUpdate(self.reconsider_all(now), full=True)
        return StoreUpdate()

    def _leadership(self, leading: bool, now: float) -> StoreUpdate:
        if not leading:
            self.leading = False
            return StoreUpdate()
        try:                               # catch up with etcd before deciding anything
            rev, kvs = self.client.get_prefix(PREFIX)
        except StoreUnavailable as exc:
            self.last_error = str(exc)[:500]
            return StoreUpdate()
        up = self._reload(rev, kvs, now)
        self.leading = True
        self._members_dirty = True
        up.outcome.extend(self.reconsider_all(now))
        up.full = True
        return up

    def _reload(self, rev: int, kvs: list[KeyValue], now: float) -> StoreUpdate:
        out, vnis = MappingOutcome(), set()
        seen: set[Key] = set()
        members: dict[str, tuple[str, str, set[int]]] = {}
        for kv in kvs:
            if kv.key.startswith(MAPPINGS):
                key = parse_mapping_key(kv.key)
                if key is not None:
                    seen.add(key)
                    if kv.mod_revision != self.revs.get(key):
                        out.extend(self._adopt(key, kv.value, kv.mod_revision, now))
            elif kv.key.startswith(MEMBERS):
                parsed = self._member(kv.key, kv.value)
                if parsed is not None:
                    members[parsed[0]] = parsed[1]
        for key in [k for k in self.table.mappings if k not in seen]:
            out.extend(self._adopt(key, None, rev, now))
        for nve in set(members) | set(self.remote_members):
            if members.get(nve) != self.remote_members.get(nve):
                a, b = members.get(nve), self.remote_members.get(nve)
                vnis |= (a[2] if a else set()) | (b[2] if b else set())
        self.remote_members = members
        self.applied = max(self.applied, rev)
        if self.leading:
            out.extend(self.reconsider_all(now))
        return StoreUpdate(out, vnis)

    def _event(self, path: str, value: str | None, rev: int, now: float) -> StoreUpdate:
        self.applied = max(self.applied, rev)
        if path.startswith(MAPPINGS):
            key = parse_mapping_key(path)
            if key is None or rev <= self.revs.get(key, 0):
                return StoreUpdate()         # this nDirector's own write, or older
            out = self._adopt(key, value, rev, now)
            if self.leading and (key in self.table.candidates or value is None):
                out.extend(self._decide({key}, lambda: self._reconsider(key, now)))
            return StoreUpdate(out)
        if path.startswith(MEMBERS):
            nve = path.rsplit("/", 1)[-1]
            old = self.remote_members.pop(nve, None)
            vnis = set(old[2]) if old else set()
            parsed = self._member(path, value) if value is not None else None
            if parsed is not None:
                self.remote_members[nve] = parsed[1]
                vnis |= parsed[1][2]
            return StoreUpdate(vnis=vnis)
        return StoreUpdate()

    def _member(self, path: str, value: str) -> tuple[str, tuple[str, str, set[int]]] | None:
        parts = path[len(MEMBERS):].split("/")
        if len(parts) != 2:
            return None
        try:
            v = json.loads(value)
            return parts[1], (parts[0], str(v["vtep"]), {int(x) for x in v.get("vnis", [])})
        except (ValueError, KeyError, TypeError):
            log.warning("ndirector: ignoring the malformed member entry %s", path)
            return None

    def _adopt(self, key: Key, value: str | None, rev: int, now: float) -> MappingOutcome:
        self.revs[key] = rev if value is not None else 0
        if value is None:
            return self.table.forget(*key)
        try:
            m = decode(key, value, self.dc)
        except (ValueError, KeyError, TypeError):
            log.warning("ndirector: ignoring the malformed mapping %s", mapping_key(key))
            return MappingOutcome()
        return self.table.adopt(m, now)

    # local decisions ------------------------------------------------------------------------
    def _reconsider(self, key: Key, now: float) -> MappingOutcome:
        """Decide `key` again from what this data center's NVEs report."""
        cands = self.table.candidates.get(key, {})
        m = self.table.mappings.get(key)
        if m is not None and m.nve not in cands and m.nve in self._read_nves():
            return self.table.release(key[0], key[1], now)
        best = self.table.best_candidate(*key)
        if best is None:
            return MappingOutcome()
        return self.table.report(best, now)      # the table's rules decide (stale, move, ...)

    def reconsider_all(self, now: float) -> MappingOutcome:
        local = self._local_nves()
        keys = set(self.table.candidates) | {k for k, m in self.table.mappings.items()
                                             if m.nve in local}

        def decide() -> MappingOutcome:
            out = MappingOutcome()
            for k in keys:
                out.extend(self._reconsider(k, now))
            return out
        return self._decide(keys, decide)

    def _decide(self, keys: set[Key], fn: Callable[[], MappingOutcome],
                retry: bool = True) -> MappingOutcome:
        """Run a decision of the table over `keys`; keep what etcd stores, undo the rest."""
        befores = {k: _copy(self.table.mappings.get(k)) for k in keys}
        stats = replace(self.table.stats)
        out = fn()
        if not out.changes:
            return out
        if not self.leading or not self.election.fresh() or not self.election.available:
            self._restore(befores, {c.mapping.key for c in out.changes})
            self.table.stats = stats
            if self.leading:
                self.unstored += len({c.mapping.key for c in out.changes})
                self._retry = True
            return MappingOutcome(refused=out.refused)
        last: dict[Key, Change] = {}
        for ch in out.changes:
            last[ch.mapping.key] = ch
        stored, conflicts = self._store(last)
        kept = MappingOutcome([c for c in out.changes if c.mapping.key in stored], out.refused,
                              [d for d in out.duplicates if (d.vni, d.mac) in stored])
        self._restore(befores, set(last) - stored)
        for key, kv in conflicts.items():
            self.conflicts += 1
            kept.extend(self._adopt(key, kv.value if kv else None,
                                    kv.mod_revision if kv else 0, now=time.monotonic()))
            if retry:
                kept.extend(self._decide({key}, functools.partial(
                    self._reconsider, key, time.monotonic()), retry=False))
        return kept

    def _store(self, last: dict[Key, Change]) -> tuple[set[Key], dict[Key, KeyValue | None]]:
        """Write each key's last change, comparing mod revisions: (stored keys, conflicts with
        what etcd holds instead)."""
        stored: set[Key] = set()
        conflicts: dict[Key, KeyValue | None] = {}
        keys = list(last)
        try:
            for i in range(0, len(keys), TXN_KEYS):
                chunk = keys[i:i + TXN_KEYS]
                res = self.client.txn([self._compare(k) for k in chunk],
                                      [self._write(k, last[k]) for k in chunk])
                if res.succeeded:
                    self._stored(chunk, last, res.revision, stored)
                    continue
                for k in chunk:             # someone wrote one of them: key by key
                    path = mapping_key(k)
                    res = self.client.txn([self._compare(k)], [self._write(k, last[k])],
                                          [{"request_range": {"key": b64(path)}}])
                    if res.succeeded:
                        self._stored([k], last, res.revision, stored)
                    else:
                        kvs = self.client.txn_kvs(res)
                        conflicts[k] = kvs[0] if kvs else None
        except StoreUnavailable as exc:
            self.last_error = str(exc)[:500]
            self._retry = True
            self.unstored += len(set(keys) - stored - set(conflicts))
            log.warning("ndirector: %d mapping changes not stored (etcd unavailable): %s",
                        len(set(keys) - stored), exc)
        return stored, conflicts

    def _stored(self, chunk: list[Key], last: dict[Key, Change], rev: int,
                stored: set[Key]) -> None:
        for k in chunk:
            self.revs[k] = 0 if last[k].kind == "removed" else rev
            stored.add(k)
        self.applied = max(self.applied, rev)

    def _compare(self, key: Key) -> dict[str, Any]:
        return {"key": b64(mapping_key(key)), "target": "MOD", "result": "EQUAL",
                "mod_revision": self.revs.get(key, 0)}

    def _write(self, key: Key, ch: Change) -> dict[str, Any]:
        path = b64(mapping_key(key))
        m = self.table.mappings.get(key)
        if ch.kind == "removed" or m is None:
            return {"request_delete_range": {"key": path}}
        # the mapping as it is now (a change's copy predates a duplicate MAC's freeze)
        return {"request_put": {"key": path, "value": b64(encode(m, self.dc))}}

    def _restore(self, befores: dict[Key, Mapping | None], keys: set[Key]) -> None:
        for k in keys:
            before = befores.get(k)
            if before is None:
                self.table.mappings.pop(k, None)
            else:
                self.table.mappings[k] = before

    # state ----------------------------------------------------------------------------------
    def state(self) -> Tree:
        store_rev = max(self.election.store_revision, self.applied)
        out: Tree = {"backend": "etcd", "available": self.election.available,
                     "name": self.name, "role": "leader" if self.may_push() else "standby",
                     "applied-revision": self.applied, "store-revision": store_rev,
                     "lag": max(0, store_rev - self.applied),
                     "unstored-changes": self.unstored, "write-conflicts": self.conflicts}
        if self.election.leader_name:
            out["leader"] = self.election.leader_name
        if self.last_error and not self.election.available:
            out["last-error"] = self.last_error
        return out


def _copy(m: Mapping | None) -> Mapping | None:
    if m is None:
        return None
    return replace(m, moves=type(m.moves)(m.moves))
