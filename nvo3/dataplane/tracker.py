"""Desired versus actual kernel state: a pure delta tracker (Calico felix style).

Modelled on felix's ``deltatracker``: for every object kind the tracker holds
the *desired* objects and the objects believed to be in the *dataplane*, and
answers which updates and deletions are pending.  It never touches the kernel.

Two phases, as in felix: ``set_desired``/``observe`` only record; ``pending()``
hands one :class:`Batch` to the kernel layer, which applies it in one deferred
step; ``applied()`` records success.  A failed write is simply never reported
as applied, so it stays pending and the next ``pending()`` retries it.  A
``resync`` is ``observe(kernel.dump())``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import NamedTuple

from nvo3.dataplane.model import KIND_OF, KINDS, DesiredState, KernelObject

# Updates are applied in this order, deletions in the reverse one.
APPLY_ORDER: tuple[str, ...] = KINDS


class Update(NamedTuple):
    """Make ``new`` real; ``old`` is what the dataplane holds now (None = absent).

    A named tuple: a bulk push makes one per entry, and a tuple is cheaper than a dataclass.
    """

    new: KernelObject
    old: KernelObject | None = None


@dataclass(frozen=True)
class Batch:
    """One apply step: deletions (the objects as they are now) and updates."""

    deletes: tuple[KernelObject, ...] = ()
    updates: tuple[Update, ...] = ()

    def __bool__(self) -> bool:
        return bool(self.deletes or self.updates)

    def __len__(self) -> int:
        return len(self.deletes) + len(self.updates)


def _kind(obj: KernelObject) -> str:
    return KIND_OF[type(obj)]


@dataclass
class DeltaTracker:
    """Desired and dataplane objects per kind, keyed by each object's ``key``."""

    desired: dict[str, dict[object, KernelObject]] = field(
        default_factory=lambda: {k: {} for k in KINDS})
    dataplane: dict[str, dict[object, KernelObject]] = field(
        default_factory=lambda: {k: {} for k in KINDS})

    # -- recording (no I/O) -------------------------------------------------
    def set_desired(self, state: DesiredState) -> None:
        """Replace the whole desired state."""
        self.desired = {k: state.by_kind(k) for k in KINDS}

    def set_desired_one(self, obj: KernelObject) -> None:
        """Add or change one desired object."""
        self.desired[_kind(obj)][obj.key] = obj

    def observe(self, actual: DesiredState) -> None:
        """Replace the dataplane view with a fresh dump (a resync)."""
        self.dataplane = {k: actual.by_kind(k) for k in KINDS}

    def observe_one(self, obj: KernelObject, present: bool) -> None:
        """Record one dataplane change seen by the monitor."""
        table = self.dataplane[_kind(obj)]
        if present:
            table[obj.key] = obj
        else:
            table.pop(obj.key, None)

    # -- queries -------------------------------------------------------------
    def pending_updates(self, kind: str) -> dict[object, KernelObject]:
        """Desired objects missing from, or different in, the dataplane."""
        actual = self.dataplane[kind]
        return {k: v for k, v in self.desired[kind].items() if actual.get(k) != v}

    def pending_deletions(self, kind: str) -> dict[object, KernelObject]:
        """Dataplane objects (as they are now) that are no longer desired."""
        wanted = self.desired[kind]
        return {k: v for k, v in self.dataplane[kind].items() if k not in wanted}

    def in_sync(self) -> bool:
        """True when nothing is pending for any kind."""
        return not any(self.pending_updates(k) or self.pending_deletions(k) for k in KINDS)

    def pending(self) -> Batch:
        """Everything pending, in apply order (deletions reverse, updates forward)."""
        deletes: list[KernelObject] = []
        for kind in reversed(APPLY_ORDER):
            deletes.extend(self.pending_deletions(kind).values())
        updates: list[Update] = []
        for kind in APPLY_ORDER:
            get = self.dataplane[kind].get
            for k, v in self.desired[kind].items():
                old = get(k)
                if old is None:
                    updates.append(Update(v))
                elif old != v:
                    updates.append(Update(v, old))
        return Batch(tuple(deletes), tuple(updates))

    # -- results -------------------------------------------------------------
    def applied(self, batch: Batch) -> None:
        """Record that the kernel layer applied ``batch`` completely."""
        dataplane = self.dataplane
        for obj in batch.deletes:
            dataplane[KIND_OF[type(obj)]].pop(obj.key, None)
        for new, _old in batch.updates:
            dataplane[KIND_OF[type(new)]][new.key] = new
