"""Metrics read from a role when Prometheus scrapes: the counters and sizes the role keeps.

Nothing here runs on a role's working path: each collector takes the role's own lock for a
moment at scrape time and reads what the role already counts (drift repairs, entries not
programmed, the mapping table's size, the state of each NVE session).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

#: The states an nDirector's session to an NVE can be in (nvo3-ndirector.yang).
SESSION_STATES = ("connected", "connecting", "down")


class NveCollector(Collector):
    """An NVE agent: drift repairs and entries the kernel did not take."""

    def __init__(self, role: Any) -> None:
        self.role = role

    def collect(self) -> Iterator[Metric]:
        with self.role.lock:
            repairs, failed = self.role.repairs, len(self.role.failed)
        yield CounterMetricFamily("nvo3_nve_drift_repairs", "Kernel drift repairs: the kernel "
                                  "differed from the running configuration and was put back",
                                  value=repairs)
        yield GaugeMetricFamily("nvo3_nve_entries_not_programmed", "Configured entries the "
                                "kernel refused (see programming status in <get>)", value=failed)


class NDirectorCollector(Collector):
    """The nDirector: mapping table size and updates, and its session to each NVE."""

    def __init__(self, role: Any) -> None:
        self.role = role

    def collect(self) -> Iterator[Metric]:
        with self.role.lock:
            table = self.role.table
            size, stats = len(table), table.stats
            updates, stale, dups = stats.updates, stats.stale_refused, stats.duplicates
            sessions = [(n, s.stats.state, len(s.tracker.acked_macs), s.stats.pushes,
                         s.stats.push_failures) for n, s in sorted(self.role.sessions.items())]
        yield GaugeMetricFamily("nvo3_ndirector_mappings", "Entries of the global mapping "
                                "table (VNI, MAC -> NVE)", value=size)
        yield CounterMetricFamily("nvo3_ndirector_mapping_updates", "Changes of the mapping "
                                  "table", value=updates)
        yield CounterMetricFamily("nvo3_ndirector_stale_updates_refused", "Reports refused as "
                                  "older than the current location", value=stale)
        yield CounterMetricFamily("nvo3_ndirector_duplicate_macs", "Duplicate MACs detected",
                                  value=dups)
        state = GaugeMetricFamily("nvo3_ndirector_nve_session_state", "1 for the current state "
                                  "of the nDirector's session to each NVE", labels=["nve", "state"])
        remote = GaugeMetricFamily("nvo3_ndirector_nve_remote_mappings", "Remote entries each "
                                   "NVE has acknowledged", labels=["nve"])
        pushes = CounterMetricFamily("nvo3_ndirector_nve_pushes", "Pushes to each NVE (a push "
                                     "is one edit-config)", labels=["nve", "outcome"])
        for name, current, acked, sent, failed in sessions:
            for s in {*SESSION_STATES, current}:
                state.add_metric([name, s], 1.0 if s == current else 0.0)
            remote.add_metric([name], acked)
            pushes.add_metric([name, "ok"], sent - failed)
            pushes.add_metric([name, "failed"], failed)
        yield from (state, remote, pushes)


def role_collector(role: Any) -> Collector | None:
    """The scrape-time collector of a role, if it has one (a --store-only role has none)."""
    if role.name == "nve" and hasattr(role, "repairs"):
        return NveCollector(role)
    if role.name == "ndirector" and hasattr(role, "table"):
        return NDirectorCollector(role)
    return None
