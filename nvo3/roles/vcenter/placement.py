"""Placement: which vServer (or, at a root vCenter, which child vCenter) gets a new VM.

Pure functions over the figures the vServers report (report-vm) and the child vCenters
serve (their vservers' load). No I/O.

* A vServer is a candidate when it is configured, has reported its load and the report is
  not older than the dead interval (the caller decides `available`).
* It fits when its free vCPUs, memory and disk (total - used; an absent total does not
  constrain) cover the VM's resources.
* ``least-loaded``: most free vCPUs, ties by most free memory, then by name (the YANG
  module's definition). ``first-fit``: the first by name. ``round-robin``: the fitting
  vServers in name order, starting after the one chosen last.
* Until the next report, the vCenter adds what it placed to the chosen vServer's used figures
  (:func:`reserve`), so a burst of create-vm does not pile onto one vServer.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace

from nvo3.common.tree import Tree

RESOURCE_FIGURES = (("vcpus", "vcpus"), ("memory", "memory"), ("disk", "disk"))


class NoCapacity(Exception):
    """No candidate fits; the message says why, per candidate."""


@dataclass(frozen=True)
class Load:
    """Capacity and load of one vServer (or the sum over a child vCenter's vServers)."""

    vcpus_total: int | None = None
    vcpus_used: int = 0
    memory_total: int | None = None
    memory_used: int = 0
    disk_total: int | None = None
    disk_used: int = 0
    vm_count: int = 0

    @classmethod
    def from_tree(cls, tree: Tree | None) -> Load:
        """The load of a `load` container (nvo3-vcenter / report-vm shape)."""
        t = tree or {}

        def num(name: str) -> int | None:
            value = t.get(name)
            return None if value is None else int(value)
        return cls(num("vcpus-total"), num("vcpus-used") or 0, num("memory-total"),
                   num("memory-used") or 0, num("disk-total"), num("disk-used") or 0,
                   num("vm-count") or 0)

    def to_tree(self) -> dict[str, int]:
        out = {"vcpus-used": self.vcpus_used, "memory-used": self.memory_used,
               "disk-used": self.disk_used, "vm-count": self.vm_count}
        for name, value in (("vcpus-total", self.vcpus_total),
                            ("memory-total", self.memory_total),
                            ("disk-total", self.disk_total)):
            if value is not None:
                out[name] = value
        return out

    def free(self, resource: str) -> float:
        total = getattr(self, f"{resource}_total")
        return math.inf if total is None else total - getattr(self, f"{resource}_used")

    def fits(self, need: dict[str, int]) -> str | None:
        """None when `need` fits, else the reason it does not."""
        for res, key in RESOURCE_FIGURES:
            want = int(need.get(key, 0))
            if want > self.free(res):
                return f"{want} {res} needed, {self.free(res):g} free"
        return None

    def __add__(self, other: Load) -> Load:
        def tot(a: int | None, b: int | None) -> int | None:
            return None if a is None or b is None else a + b
        return Load(tot(self.vcpus_total, other.vcpus_total), self.vcpus_used + other.vcpus_used,
                    tot(self.memory_total, other.memory_total),
                    self.memory_used + other.memory_used,
                    tot(self.disk_total, other.disk_total), self.disk_used + other.disk_used,
                    self.vm_count + other.vm_count)


@dataclass(frozen=True)
class Candidate:
    """A vServer or a child vCenter that might take the VM."""

    name: str
    load: Load | None                              # None: never reported
    data_centers: frozenset[str] = field(default_factory=frozenset)
    available: bool = True                         # connected / reported recently
    members: tuple[Load, ...] = ()                 # a child vCenter's vServers

    def misfit(self, need: dict[str, int]) -> str | None:
        """None when the VM fits (a child vCenter: on one of its vServers)."""
        assert self.load is not None
        if not self.members:
            return self.load.fits(need)
        reasons = [m.fits(need) for m in self.members]
        return None if None in reasons else f"none of its {len(reasons)} vServers fits"


def reserve(load: Load, need: dict[str, int]) -> Load:
    """`load` with a newly placed VM counted in."""
    return replace(load, vcpus_used=load.vcpus_used + int(need.get("vcpus", 0)),
                   memory_used=load.memory_used + int(need.get("memory", 0)),
                   disk_used=load.disk_used + int(need.get("disk", 0)),
                   vm_count=load.vm_count + 1)


def release(load: Load, need: dict[str, int]) -> Load:
    """`load` with a VM that left taken out (never below zero)."""
    return replace(load, vcpus_used=max(0, load.vcpus_used - int(need.get("vcpus", 0))),
                   memory_used=max(0, load.memory_used - int(need.get("memory", 0))),
                   disk_used=max(0, load.disk_used - int(need.get("disk", 0))),
                   vm_count=max(0, load.vm_count - 1))


def _rank(c: Candidate) -> tuple[float, float, str]:
    assert c.load is not None
    return (-c.load.free("vcpus"), -c.load.free("memory"), c.name)


def choose(candidates: list[Candidate], need: dict[str, int], policy: str = "least-loaded",
           data_center: str | None = None, last: str | None = None) -> str:
    """The candidate for a VM needing `need` (vcpus, memory, disk), or NoCapacity."""
    why: list[str] = []
    fitting: list[Candidate] = []
    for c in sorted(candidates, key=lambda c: c.name):
        if data_center is not None and data_center not in c.data_centers:
            continue
        if not c.available:
            why.append(f"{c.name}: not available")
        elif c.load is None:
            why.append(f"{c.name}: no load report yet")
        elif (reason := c.misfit(need)) is not None:
            why.append(f"{c.name}: {reason}")
        else:
            fitting.append(c)
    if not fitting:
        where = f" in data center {data_center}" if data_center else ""
        detail = "; ".join(why) if why else "none configured"
        raise NoCapacity(f"no vServer with capacity{where} for {need.get('vcpus', 0)} vCPUs, "
                         f"{need.get('memory', 0)} MiB, {need.get('disk', 0)} GiB ({detail})")
    if policy == "first-fit":
        return fitting[0].name
    if policy == "round-robin":
        after = [c for c in fitting if last is not None and c.name > last]
        return (after or fitting)[0].name
    return min(fitting, key=_rank).name


def choose_child(children: list[Candidate], need: dict[str, int],
                 data_center: str | None = None) -> str:
    """At a root vCenter: the child vCenter for a VM, from topology (its data centers) and
    load (the sum over its vServers): the least loaded that fits."""
    try:
        return choose(children, need, "least-loaded", data_center)
    except NoCapacity as exc:
        raise NoCapacity(str(exc).replace("no vServer", "no child vCenter", 1)) from None
