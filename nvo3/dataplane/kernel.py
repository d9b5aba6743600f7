"""The kernel behind one interface: what the NVE agent needs from a host's data plane.

:class:`Kernel` is that interface; :class:`~nvo3.dataplane.linux.PyrouteKernel` implements it
on Linux (pyroute2 for devices, pre-encoded netlink for FDB and neighbour entries, nftables
for policies) and :class:`~nvo3.dataplane.fake.FakeKernel` in memory, for unit tests.

The contract every implementation keeps:

* :meth:`Kernel.dump` reads back only what nvo3 owns, in the model's types
  (:mod:`nvo3.dataplane.model`), so "desired versus actual" is a comparison of values;
* :meth:`Kernel.apply` applies a :class:`~nvo3.dataplane.tracker.Batch` all or nothing: on
  any failure what it already did is undone and :class:`KernelApplyError` names the object
  and the kernel's reason; deleting something already absent is success;
* :meth:`Kernel.dump_links` is the cheap raw listing of every link (name, master, flags,
  alias) the agent uses to check ports and to judge link events.
"""

from __future__ import annotations

from typing import NamedTuple, Protocol

from nvo3.dataplane.model import DesiredState, KernelObject
from nvo3.dataplane.nlbulk import LinkEntry
from nvo3.dataplane.tracker import Batch


class KernelError(Exception):
    """Root of the dataplane's errors."""


class KernelApplyError(KernelError):
    """An apply failed and was reverted; ``obj`` failed with ``errno``/``reason``."""

    def __init__(self, obj: KernelObject, err: int, reason: str) -> None:
        super().__init__(f"{obj!r}: {reason} [apply reverted]")
        self.obj, self.errno, self.reason = obj, err, reason


class LinkCounters(NamedTuple):
    """Packet and byte counters of one link, as the kernel counts them."""

    rx_packets: int
    rx_bytes: int
    rx_drops: int
    tx_packets: int
    tx_bytes: int
    tx_drops: int


class Kernel(Protocol):
    """What the NVE agent needs from the data plane of one host (one network namespace)."""

    def dump(self) -> DesiredState:
        """The actual state of what nvo3 owns, in the model's types."""

    def apply(self, batch: Batch, link_dump: list[LinkEntry] | None = None) -> None:
        """Apply all of ``batch`` or nothing (raises :class:`KernelApplyError`).

        ``link_dump``: a :meth:`dump_links` the caller took just before, with nothing changed
        since (same lock); it saves the implementation one listing.
        """

    def dump_links(self) -> list[LinkEntry]:
        """Index, name, master, flags and alias of every link (a cheap raw listing)."""

    def link_counters(self) -> dict[str, LinkCounters]:
        """Counters of every link, by name (for operational state, not the hot path)."""

    def suppress_echoes(self, keys: set[bytes]) -> None:
        """From now on, add the echo key (:func:`~nvo3.dataplane.nlbulk.echo_key`) of every
        FDB change this kernel sends to ``keys``: a
        :class:`~nvo3.dataplane.monitor.NetlinkMonitor`'s set, so that the kernel's
        notifications of the agent's own changes are dropped undecoded."""

    def close(self) -> None:
        """Release what the implementation holds (sockets, threads)."""
