"""A vServer's capacity and what its VMs hold of it (pure): :class:`Resources` of one VM and
the :class:`Ledger` of every allocation against the configured capacity."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

DEFAULTS = {"vcpus": 1, "memory": 512, "disk": 10}     # nvo3-vm vm-resources defaults


@dataclass(frozen=True)
class Resources:
    """The resources of one VM: vCPUs, memory (MiB), disk (GiB)."""

    vcpus: int = DEFAULTS["vcpus"]
    memory: int = DEFAULTS["memory"]     # MiB
    disk: int = DEFAULTS["disk"]         # GiB

    @classmethod
    def of(cls, tree: dict[str, Any] | None) -> Resources:
        """The resources of a `resources` container (defaults for absent leaves)."""
        tree = tree or {}
        return cls(*(int(tree.get(k, DEFAULTS[k])) for k in ("vcpus", "memory", "disk")))

    def merged(self, tree: dict[str, Any] | None) -> Resources:
        """These resources with the leaves given in `tree` replaced."""
        cur = asdict(self)
        cur.update({k: int(v) for k, v in (tree or {}).items() if k in DEFAULTS})
        return Resources(**cur)

    def as_tree(self) -> dict[str, int]:
        """The `resources` container."""
        return asdict(self)


@dataclass
class Ledger:
    """Resources allocated to VMs against a capacity; None in the capacity means no limit."""

    vcpus: int | None = None
    memory: int | None = None
    disk: int | None = None
    max_vms: int | None = None
    allocated: dict[tuple[str, str], Resources] = field(default_factory=dict)

    def set_capacity(self, capacity: dict[str, Any] | None) -> None:
        """Take the configured `capacity` container (absent leaves: no limit)."""
        capacity = capacity or {}
        for leaf, attr in (("vcpus", "vcpus"), ("memory", "memory"), ("disk", "disk"),
                           ("max-vms", "max_vms")):
            value = capacity.get(leaf)
            setattr(self, attr, None if value is None else int(value))

    def used(self) -> Resources:
        """The sum of every allocation."""
        return Resources(sum(r.vcpus for r in self.allocated.values()),
                         sum(r.memory for r in self.allocated.values()),
                         sum(r.disk for r in self.allocated.values()))

    def shortfall(self, key: tuple[str, str], want: Resources) -> str | None:
        """Why `want` for VM `key` (new, or resized: its current allocation is returned
        first) does not fit, or None when it fits."""
        others = {k: r for k, r in self.allocated.items() if k != key}
        used = Resources(sum(r.vcpus for r in others.values()),
                         sum(r.memory for r in others.values()),
                         sum(r.disk for r in others.values()))
        if self.max_vms is not None and key not in self.allocated and \
                len(others) + 1 > self.max_vms:
            return f"max-vms {self.max_vms} reached"
        for what, unit in (("vcpus", ""), ("memory", " MiB"), ("disk", " GiB")):
            cap = getattr(self, what)
            if cap is None:
                continue
            need, have = getattr(want, what), cap - getattr(used, what)
            if need > have:
                return f"{what}: {need}{unit} asked, {max(have, 0)}{unit} free of {cap}{unit}"
        return None

    def reserve(self, key: tuple[str, str], want: Resources) -> None:
        """Allocate `want` to VM `key` (replacing what it held)."""
        self.allocated[key] = want

    def release(self, key: tuple[str, str]) -> None:
        """VM `key` is gone: its allocation is free again."""
        self.allocated.pop(key, None)

    def load(self) -> dict[str, int]:
        """The `load` container (used figures, VM count, and the configured totals)."""
        used = self.used()
        tree = {"vcpus-used": used.vcpus, "memory-used": used.memory, "disk-used": used.disk,
                "vm-count": len(self.allocated)}
        for what in ("vcpus", "memory", "disk"):
            if getattr(self, what) is not None:
                tree[f"{what}-total"] = getattr(self, what)
        return tree
