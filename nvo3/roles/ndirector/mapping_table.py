"""The nDirector's global mapping table: per VNI, which NVE every VM MAC lives behind.

Pure: no I/O, no threads, no clock of its own (every call gets ``now``, a monotonic time in
seconds). The role feeds it what the NVEs report and turns what it returns into pushes and
notifications.

Design notes
------------
* Every NVE that reports a (VNI, MAC) attached is a *candidate*; the *mapping* is the one
  candidate the overlay forwards to. Candidates are kept even when they do not win, so a
  withdrawn location falls back to the next best one (RFC 8394 make-before-break: the source
  stays until the destination is activated; a destination that is only *associated* never
  displaces an activated location).
* Sequence numbers (RFC 7432 section 15): every change of location increments the mapping's
  sequence number. A report carries either an explicit sequence number (a peer nDirector's
  entry) or the NVE's event time (a NETCONF notification's eventTime). A report from another
  NVE that is not newer than the current location -- an explicit sequence number not above
  the mapping's, an event time before the current location's, or a report read from a datastore
  (no event time) while the MAC lives elsewhere -- is *stale*: recorded as a candidate, refused
  as a location, counted and returned so the caller logs it.
* Duplicate-MAC detection (RFC 7432 section 15.1, the FRR/Junos defaults 5 moves in 180 s):
  ``max_moves`` moves within ``window`` seconds declare the MAC a duplicate; with ``freeze`` it
  stays where it is (further moves refused) until ``recovery`` seconds pass or it is cleared.
* After an nDirector restart, :meth:`seed` gives the sequence numbers and locations the NVEs
  still hold in their remote-mac entries, so numbers keep growing and the last known location
  wins over leftovers.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass, field, replace

ASSOCIATED = "associated"
ACTIVATED = "activated"

Key = tuple[int, str]              # (vni, mac)


@dataclass(frozen=True)
class Report:
    """One NVE's view of one vNIC attached behind it."""

    vni: int
    mac: str
    nve: str
    vtep: str
    ips: tuple[str, ...] = ()
    state: str = ACTIVATED
    vm_id: str | None = None
    time: float | None = None      # the NVE's event time; None when read from its datastore
    seq: int | None = None         # an explicit sequence number (peers), else None

    @property
    def key(self) -> Key:
        return (self.vni, self.mac)


@dataclass
class Mapping:
    """The current location of one (VNI, MAC)."""

    vni: int
    mac: str
    nve: str
    vtep: str
    ips: tuple[str, ...]
    seq: int
    state: str
    vm_id: str | None = None
    time: float | None = None      # event time of the report that made or updated it
    last_moved: float = 0.0        # monotonic time of the last change of location
    moves: deque[tuple[float, str]] = field(default_factory=deque)  # (when, from-nve)
    frozen: bool = False
    frozen_at: float = 0.0
    origin: str = "local"
    seeded: tuple[int, str] | None = None   # (seq, nve) the NVEs pointed at, while unconfirmed

    @property
    def key(self) -> Key:
        return (self.vni, self.mac)


@dataclass(frozen=True)
class Change:
    """A change of the table: added, moved, updated or removed."""

    kind: str
    mapping: Mapping               # a copy, after the change (before it for removed)
    previous_nve: str | None = None
    previous_vtep: str | None = None


@dataclass(frozen=True)
class Refusal:
    """A report that did not become the location, and why."""

    report: Report
    reason: str
    current_nve: str
    current_seq: int


@dataclass(frozen=True)
class Duplicate:
    """A duplicate MAC detection."""

    vni: int
    mac: str
    moves: int
    window: int
    nves: tuple[str, ...]
    frozen: bool


@dataclass
class MappingOutcome:
    """What one call on the mapping table did: mappings changed, reports refused, duplicate
    MACs detected."""

    changes: list[Change] = field(default_factory=list)
    refused: list[Refusal] = field(default_factory=list)
    duplicates: list[Duplicate] = field(default_factory=list)

    def extend(self, other: MappingOutcome) -> None:
        self.changes += other.changes
        self.refused += other.refused
        self.duplicates += other.duplicates


@dataclass(frozen=True)
class DuplicateMacConfig:
    """The nDirector's duplicate-mac-detection container."""

    enabled: bool = True
    max_moves: int = 5
    window: int = 180
    freeze: bool = True
    recovery: int | None = None


@dataclass
class Statistics:
    updates: int = 0
    stale_refused: int = 0
    duplicates: int = 0


def _snapshot(m: Mapping) -> Mapping:
    return replace(m, moves=deque(m.moves))


class MappingTable:
    """Candidates per (VNI, MAC), the elected mapping, sequence numbers, duplicate detection."""

    def __init__(self, dup: DuplicateMacConfig | None = None) -> None:
        self.dup = dup or DuplicateMacConfig()
        self.mappings: dict[Key, Mapping] = {}
        self.candidates: dict[Key, dict[str, Report]] = {}
        self.seeds: dict[Key, tuple[int, str | None]] = {}   # seq, nve it pointed to
        self.stats = Statistics()

    # queries -------------------------------------------------------------------------------
    def get(self, vni: int, mac: str) -> Mapping | None:
        return self.mappings.get((vni, mac))

    def by_ip(self, vni: int, ip: str) -> Mapping | None:
        return next((m for m in self.mappings.values() if m.vni == vni and ip in m.ips), None)

    def local_to(self, nve: str) -> list[Report]:
        """Every candidate report of `nve` (what it says is attached behind it)."""
        return [c[nve] for c in self.candidates.values() if nve in c]

    def __len__(self) -> int:
        return len(self.mappings)

    # inputs ---------------------------------------------------------------------------------
    def seed(self, vni: int, mac: str, seq: int, nve: str | None) -> None:
        """A sequence number (and location) an NVE still holds for a MAC (after a restart)."""
        old = self.seeds.get((vni, mac))
        if old is None or seq > old[0]:
            self.seeds[(vni, mac)] = (seq, nve)
        m = self.mappings.get((vni, mac))
        if m is not None and seq > m.seq and nve == m.nve:
            m.seq = seq

    def report(self, r: Report, now: float) -> MappingOutcome:
        """An NVE reports (vni, mac) attached (new, changed, or re-read)."""
        self.candidates.setdefault(r.key, {})[r.nve] = r
        cur = self.mappings.get(r.key)
        if cur is None:
            return self._add(r, now)
        if cur.nve == r.nve:
            return self._update(cur, r)
        if cur.seeded is not None and cur.seeded[1] == r.nve and r.time is None:
            return self._confirm_seed(cur, r, cur.seeded[0])
        if r.state != ACTIVATED:
            return MappingOutcome()            # make-before-break: pre-installed, not forwarding yet
        reason = self._stale(cur, r)
        if reason is None and cur.frozen:
            reason = "frozen duplicate MAC"
        if reason is not None:
            return self._refuse(cur, r, reason)
        return self._move(cur, r, now)

    def withdraw(self, vni: int, mac: str, nve: str, now: float) -> MappingOutcome:
        """An NVE no longer has (vni, mac) attached."""
        cands = self.candidates.get((vni, mac), {})
        if cands.pop(nve, None) is None:
            return MappingOutcome()
        if not cands:
            self.candidates.pop((vni, mac), None)
        cur = self.mappings.get((vni, mac))
        if cur is None or cur.nve != nve:
            return MappingOutcome()
        best = self._best(cands.values())
        if best is None:
            del self.mappings[(vni, mac)]
            self.stats.updates += 1
            return MappingOutcome([Change("removed", _snapshot(cur))])
        return self._move(cur, best, now)

    def snapshot(self, nve: str, reports: Iterable[Report], now: float) -> MappingOutcome:
        """Everything `nve` has attached, read from its datastore: reports, and withdrawals of
        what it no longer has."""
        out = MappingOutcome()
        seen: set[Key] = set()
        for r in reports:
            seen.add(r.key)
            known = self.candidates.get(r.key, {}).get(nve)
            if known is not None and _same(known, r):
                continue                # nothing new: keep the event time it had
            out.extend(self.report(r, now))
        for key in [k for k, c in self.candidates.items() if nve in c and k not in seen]:
            out.extend(self.withdraw(key[0], key[1], nve, now))
        return out

    def tick(self, now: float) -> MappingOutcome:
        """Age move windows; unfreeze MACs whose recovery time passed."""
        out = MappingOutcome()
        for m in list(self.mappings.values()):
            self._age(m, now)
            rec = self.dup.recovery
            if m.frozen and rec is not None and now - m.frozen_at >= rec:
                out.extend(self._unfreeze(m, now))
        return out

    def clear_duplicates(self, now: float, vni: int | None = None,
                         mac: str | None = None) -> tuple[int, MappingOutcome]:
        """Unfreeze (and restart the move count of) the selected frozen MACs."""
        out, cleared = MappingOutcome(), 0
        for m in list(self.mappings.values()):
            if m.frozen and (vni is None or m.vni == vni) and (mac is None or m.mac == mac):
                cleared += 1
                out.extend(self._unfreeze(m, now))
        return cleared, out

    def configure(self, dup: DuplicateMacConfig) -> None:
        self.dup = dup
        if not dup.enabled or not dup.freeze:
            for m in self.mappings.values():
                m.frozen = False

    # a shared store (etcd mode) ----------------------------------------------------------------
    def adopt(self, m: Mapping, now: float) -> MappingOutcome:
        """A location decided in the shared store (by this or another nDirector) becomes the
        mapping, as it is: its sequence number, NVE, origin and frozen flag. The candidates
        stay what this nDirector's own NVEs report."""
        cur = self.mappings.get(m.key)
        if cur is None:
            new = replace(m, moves=deque(), last_moved=now)
            self.mappings[m.key] = new
            self.stats.updates += 1
            return MappingOutcome([Change("added", _snapshot(new))])
        before = (cur.nve, cur.vtep, cur.ips, cur.seq, cur.state, cur.vm_id, cur.frozen)
        if before == (m.nve, m.vtep, m.ips, m.seq, m.state, m.vm_id, m.frozen):
            cur.time, cur.origin = m.time, m.origin
            return MappingOutcome()
        prev_nve, prev_vtep = cur.nve, cur.vtep
        moved = cur.nve != m.nve
        cur.nve, cur.vtep, cur.ips, cur.seq, cur.state = m.nve, m.vtep, m.ips, m.seq, m.state
        cur.vm_id, cur.time, cur.origin, cur.frozen, cur.seeded = m.vm_id, m.time, m.origin, \
            m.frozen, None
        self.stats.updates += 1
        if moved:
            cur.last_moved = now
            self._age(cur, now)
            cur.moves.append((now, prev_nve))
            return MappingOutcome([Change("moved", _snapshot(cur), prev_nve, prev_vtep)])
        return MappingOutcome([Change("updated", _snapshot(cur))])

    def best_candidate(self, vni: int, mac: str) -> Report | None:
        """The report this nDirector's NVEs give for (vni, mac) that should be the location."""
        return self._best(self.candidates.get((vni, mac), {}).values())

    def forget(self, vni: int, mac: str) -> MappingOutcome:
        """The shared store no longer has (vni, mac): the mapping goes (candidates stay)."""
        cur = self.mappings.pop((vni, mac), None)
        if cur is None:
            return MappingOutcome()
        self.stats.updates += 1
        return MappingOutcome([Change("removed", _snapshot(cur))])

    def release(self, vni: int, mac: str, now: float) -> MappingOutcome:
        """The mapping points at an NVE that no longer reports the MAC (it went while this
        nDirector did not watch): fall back to the best candidate, as a withdrawal would."""
        cur = self.mappings.get((vni, mac))
        if cur is None:
            return MappingOutcome()
        self.candidates.setdefault(cur.key, {}).setdefault(
            cur.nve, Report(vni, mac, cur.nve, cur.vtep, cur.ips, cur.state, cur.vm_id, cur.time))
        return self.withdraw(vni, mac, cur.nve, now)

    # decisions ------------------------------------------------------------------------------
    @staticmethod
    def _stale(cur: Mapping, r: Report) -> str | None:
        if r.seq is not None:
            if r.seq <= cur.seq:
                return f"sequence number {r.seq} not above {cur.seq}"
            return None
        if r.time is None:
            return "read from the datastore while the MAC lives elsewhere"
        if cur.time is not None and r.time < cur.time:
            return "event older than the current location's"
        return None

    @staticmethod
    def _best(cands: Iterable[Report]) -> Report | None:
        """The candidate to fall back to: activated first, then the newest event."""
        ranked = sorted(cands, key=lambda c: (c.state == ACTIVATED, c.time is not None,
                                              c.time or 0.0, c.nve))
        return ranked[-1] if ranked else None

    def _add(self, r: Report, now: float) -> MappingOutcome:
        seed_seq, seed_nve = self.seeds.pop(r.key, (0, None))
        seq = seed_seq + (1 if seed_nve is not None and seed_nve != r.nve else 0)
        if r.seq is not None:
            seq = max(seq, r.seq)
        m = Mapping(r.vni, r.mac, r.nve, r.vtep, r.ips, seq, r.state, r.vm_id, r.time, now)
        if r.time is None and seed_nve is not None and seed_nve != r.nve:
            m.seeded = (seed_seq, seed_nve)    # until the NVE it was at is read
        self.mappings[r.key] = m
        self.stats.updates += 1
        return MappingOutcome([Change("added", _snapshot(m))])

    def _update(self, cur: Mapping, r: Report) -> MappingOutcome:
        if r.time is not None and cur.time is not None and r.time < cur.time:
            return MappingOutcome()            # an older event of the same NVE: nothing to learn
        changed = (cur.ips, cur.state, cur.vm_id, cur.vtep) != (r.ips, r.state, r.vm_id, r.vtep)
        cur.ips, cur.state, cur.vm_id, cur.vtep = r.ips, r.state, r.vm_id, r.vtep
        cur.time = r.time if r.time is not None else cur.time
        if r.seq is not None and r.seq > cur.seq:
            cur.seq, changed = r.seq, True
        out = MappingOutcome()
        if changed:
            self.stats.updates += 1
            out.changes.append(Change("updated", _snapshot(cur)))
        if cur.state != ACTIVATED and not cur.frozen:
            # deactivated at the source: an activated destination takes over
            best = self._best(c for c in self.candidates.get(cur.key, {}).values()
                              if c.nve != cur.nve)
            if best is not None and best.state == ACTIVATED:
                out.extend(self._move(cur, best, r.time or 0.0))
        return out

    def _confirm_seed(self, cur: Mapping, r: Report, seq: int) -> MappingOutcome:
        """After a restart, the location the NVEs pointed at is read after a leftover elsewhere:
        the pointed-at location wins, the leftover is refused as stale."""
        leftover = self.candidates.get(cur.key, {}).get(cur.nve)
        prev_nve, prev_vtep = cur.nve, cur.vtep
        cur.nve, cur.vtep, cur.ips, cur.state, cur.vm_id = r.nve, r.vtep, r.ips, r.state, r.vm_id
        cur.seq, cur.seeded = seq, None
        self.stats.updates += 1
        out = MappingOutcome([Change("moved", _snapshot(cur), prev_nve, prev_vtep)])
        if leftover is not None:
            self.stats.stale_refused += 1
            out.refused.append(Refusal(leftover, "read from the datastore, but the NVEs point "
                                       f"at {r.nve} (sequence number {seq})", r.nve, seq))
        return out

    def _refuse(self, cur: Mapping, r: Report, reason: str) -> MappingOutcome:
        if not cur.frozen:
            self.stats.stale_refused += 1
        return MappingOutcome(refused=[Refusal(r, reason, cur.nve, cur.seq)])

    def _move(self, cur: Mapping, r: Report, now: float) -> MappingOutcome:
        cur.seeded = None
        prev_nve, prev_vtep = cur.nve, cur.vtep
        cur.seq = max(cur.seq + 1, r.seq or 0)
        cur.nve, cur.vtep, cur.ips, cur.state, cur.vm_id = r.nve, r.vtep, r.ips, r.state, r.vm_id
        cur.time = r.time if r.time is not None else cur.time
        cur.last_moved = now
        self.stats.updates += 1
        self._age(cur, now)
        cur.moves.append((now, prev_nve))
        out = MappingOutcome([Change("moved", _snapshot(cur), prev_nve, prev_vtep)])
        d = self.dup
        if d.enabled and not cur.frozen and len(cur.moves) >= d.max_moves:
            self.stats.duplicates += 1
            cur.frozen, cur.frozen_at = d.freeze, now
            nves = sorted({n for _, n in cur.moves} | {cur.nve})
            out.duplicates.append(Duplicate(cur.vni, cur.mac, len(cur.moves), d.window,
                                            tuple(nves), d.freeze))
        return out

    def _age(self, m: Mapping, now: float) -> None:
        while m.moves and now - m.moves[0][0] > self.dup.window:
            m.moves.popleft()

    def _unfreeze(self, m: Mapping, now: float) -> MappingOutcome:
        m.frozen = False
        m.moves.clear()
        cands = self.candidates.get(m.key, {})
        best = self._best(cands.values())
        if best is None or best.nve == m.nve or best.state != ACTIVATED:
            return MappingOutcome()
        mine = cands.get(m.nve)
        if mine is not None and mine.state == ACTIVATED and (mine.time or 0.0) >= (best.time or 0.0):
            return MappingOutcome()
        return self._move(m, best, now)


def _same(a: Report, b: Report) -> bool:
    return (a.ips, a.state, a.vm_id, a.vtep) == (b.ips, b.state, b.vm_id, b.vtep)
