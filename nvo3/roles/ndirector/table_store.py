"""Where the nDirector's mapping table is kept: the storage backend behind the role.

The role asks its :class:`TableStore` for every change of the table; the store decides with
the :class:`~nvo3.roles.ndirector.mapping_table.MappingTable` and answers only the changes that
were kept. Two backends:

* :class:`EmbeddedStore` (the default, no etcd): the table in the nDirector's memory, every
  decision kept at once (one nDirector for every data center).
* :class:`~nvo3.roles.ndirector.etcd_table.EtcdStore`: the table shared in etcd by the
  nDirectors of every data center, one leader per data center.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any, Protocol

from nvo3.common.tree import Tree
from nvo3.roles.ndirector.mapping_table import MappingOutcome, MappingTable, Report

Key = tuple[int, str]
Deliver = Callable[[tuple[Any, ...]], None]     # puts an item on the role's control queue


class StoreUpdate:
    """What handling one of the store's own items did: the table's changes, the VNIs whose
    remote members changed, and whether every NVE must be compared with the whole table."""

    def __init__(self, outcome: MappingOutcome | None = None, vnis: set[int] | None = None,
                 full: bool = False) -> None:
        self.outcome = outcome or MappingOutcome()
        self.vnis = vnis or set()
        self.full = full


class TableStore(Protocol):
    table: MappingTable

    def start(self, deliver: Deliver) -> None: ...
    def stop(self) -> None: ...
    def report(self, r: Report, now: float) -> MappingOutcome: ...
    def withdraw(self, vni: int, mac: str, nve: str, now: float) -> MappingOutcome: ...
    def snapshot(self, nve: str, reports: Iterable[Report], now: float) -> MappingOutcome: ...
    def tick(self, now: float) -> MappingOutcome: ...
    def clear_duplicates(self, now: float, vni: int | None,
                         mac: str | None) -> tuple[int, MappingOutcome]: ...
    def handle(self, item: tuple[Any, ...], now: float) -> StoreUpdate: ...
    def may_push(self) -> bool: ...
    def refusal(self) -> str | None: ...
    def remote_vteps(self, vni: int) -> set[str]: ...
    def publish_members(self, members: dict[str, tuple[str, set[int]]]) -> None: ...
    def state(self) -> Tree: ...


class EmbeddedStore:
    """The table in this nDirector's memory (today's mode): every decision is kept."""

    def __init__(self, table: MappingTable) -> None:
        self.table = table

    def start(self, deliver: Deliver) -> None:
        pass

    def stop(self) -> None:
        pass

    def report(self, r: Report, now: float) -> MappingOutcome:
        return self.table.report(r, now)

    def withdraw(self, vni: int, mac: str, nve: str, now: float) -> MappingOutcome:
        return self.table.withdraw(vni, mac, nve, now)

    def snapshot(self, nve: str, reports: Iterable[Report], now: float) -> MappingOutcome:
        return self.table.snapshot(nve, reports, now)

    def tick(self, now: float) -> MappingOutcome:
        return self.table.tick(now)

    def clear_duplicates(self, now: float, vni: int | None,
                         mac: str | None) -> tuple[int, MappingOutcome]:
        return self.table.clear_duplicates(now, vni, mac)

    def handle(self, item: tuple[Any, ...], now: float) -> StoreUpdate:
        return StoreUpdate()

    def may_push(self) -> bool:
        return True

    def refusal(self) -> str | None:
        return None

    def remote_vteps(self, vni: int) -> set[str]:
        return set()

    def publish_members(self, members: dict[str, tuple[str, set[int]]]) -> None:
        pass

    def state(self) -> Tree:
        return {"backend": "embedded", "available": True}
