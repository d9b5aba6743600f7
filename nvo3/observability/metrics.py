"""A role daemon's Prometheus metrics: one registry per daemon, fed by the engine's observer
hook and the role's telemetry, plus what is read at scrape time.

Metric names are listed in README.md ("Metrics, health and audit"). Every hook here costs a
few microseconds (a dictionary lookup and a labelled counter/histogram update); sizes and
role counters are read only when Prometheus scrapes.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

from lxml import etree
from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    Info,
    disable_created_metrics,
)
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from nvo3 import __version__
from nvo3.netconf.proto.xml import BASE_NS, MONITORING_NS, NOTIF_NS
from nvo3.netconf.server.monitoring import SessionInfo
from nvo3.netconf.server.observer import EngineObserver, Telemetry
from nvo3.observability.role_metrics import role_collector

if TYPE_CHECKING:
    from nvo3.netconf.server.engine import NetconfServer

#: Seconds: from a fraction of a millisecond (a one-entry edit) to half a minute (a bulk push).
LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
                   5.0, 10.0, 30.0)
_BASE = frozenset({BASE_NS, NOTIF_NS, MONITORING_NS})
#: A vCenter RPC's kind of operation, where its name does not say it plainly.
_VCENTER_KINDS = {"terminate-vm": "delete", "bulk-register-vms": "bulk-register",
                  "bulk-unregister-vms": "bulk-unregister"}


def vcenter_kind(rpc: str) -> str:
    """create-vm -> create, terminate-vm -> delete, relocate-vm -> relocate, ..."""
    return _VCENTER_KINDS.get(rpc) or rpc.removesuffix("-vm")


class DaemonMetrics(EngineObserver, Telemetry):
    """The metrics of one daemon: the engine's observer and its role's telemetry."""

    def __init__(self, engine: NetconfServer) -> None:
        self.engine = engine
        role = engine.role.name
        self.role = role
        disable_created_metrics()      # no *_created series: counters are enough here
        self.registry = r = CollectorRegistry(auto_describe=True)
        self.config_applied_at: float | None = None
        Info("nvo3_daemon", "The role this daemon serves", registry=r).info(
            {"role": role, "version": __version__})
        self.rpcs = Counter("nvo3_netconf_rpcs", "NETCONF RPCs answered, by operation and "
                            "outcome (ok or the rpc-error's error-tag)",
                            ["operation", "outcome"], registry=r)
        self.rpc_seconds = Histogram("nvo3_netconf_rpc_duration_seconds", "Time from an <rpc> "
                                     "received to its reply sent", ["operation"],
                                     buckets=LATENCY_BUCKETS, registry=r)
        self.sessions_total = Counter("nvo3_netconf_sessions", "NETCONF sessions opened",
                                      registry=r)
        self.sessions_open = Gauge("nvo3_netconf_sessions_open", "NETCONF sessions open now",
                                   registry=r)
        what = "nve_programming" if role == "nve" else "role_apply"
        doing = "NVE programming (a configuration change made real in the kernel)" \
            if role == "nve" else f"The {role} role applying a configuration change"
        self.apply_seconds = Histogram(f"nvo3_{what}_duration_seconds", doing,
                                       buckets=LATENCY_BUCKETS, registry=r)
        self.apply_failures = Counter(f"nvo3_{what}_failures", f"{doing}: refused, by "
                                      "error-tag", ["error_tag"], registry=r)
        self._observe: dict[str, Callable[[float, dict[str, str]], None]] = {}
        self._rpc_children: dict[tuple[Any, str], list[tuple[Any, Any]]] = {}
        if role == "ndirector":
            self._ndirector_metrics()
        if role == "vcenter":
            self.vcenter_ops = Counter("nvo3_vcenter_operations", "vCenter operations by kind "
                                       "(create, delete, modify, relocate, replicate, ...) and "
                                       "outcome", ["kind", "outcome"], registry=r)
            self.vcenter_seconds = Histogram("nvo3_vcenter_operation_duration_seconds",
                                             "vCenter operations, from request to reply",
                                             ["kind"], buckets=LATENCY_BUCKETS, registry=r)
        r.register(DatastoreCollector(engine))
        extra = role_collector(engine.role)
        if extra is not None:
            r.register(extra)

    def _ndirector_metrics(self) -> None:
        r = self.registry
        push = Histogram("nvo3_ndirector_push_duration_seconds", "One push (edit-config) to an "
                         "NVE, from request to reply", ["nve"], buckets=LATENCY_BUCKETS,
                         registry=r)
        conv = Histogram("nvo3_ndirector_convergence_seconds", "From an NVE's attachment "
                         "event to the last NVE concerned acknowledging the push",
                         buckets=LATENCY_BUCKETS, registry=r)
        self._observe["push_seconds"] = lambda v, lb: push.labels(lb.get("nve", "?")).observe(v)
        self._observe["convergence_seconds"] = lambda v, _lb: conv.observe(v)

    # -- the engine's hook ----------------------------------------------------------------
    def session_opened(self, info: SessionInfo) -> None:
        self.sessions_total.inc()
        self.sessions_open.inc()

    def session_closed(self, info: SessionInfo) -> None:
        self.sessions_open.dec()

    def rpc_done(self, info: SessionInfo, op: etree._Element | None, outcome: str,
                 seconds: float) -> None:
        key = (None if op is None else op.tag, outcome)
        children = self._rpc_children.get(key)
        if children is None:
            children = self._rpc_children[key] = self._children(op, outcome)
        for counter, histogram in children:
            counter.inc()
            histogram.observe(seconds)

    def _children(self, op: etree._Element | None, outcome: str) -> list[tuple[Any, Any]]:
        """The labelled metrics one (operation, outcome) updates, looked up once."""
        name = "(malformed)" if op is None else etree.QName(op).localname
        out = [(self.rpcs.labels(name, outcome), self.rpc_seconds.labels(name))]
        if self.role == "vcenter" and op is not None and etree.QName(op).namespace not in _BASE:
            kind = vcenter_kind(name)
            out.append((self.vcenter_ops.labels(kind, outcome), self.vcenter_seconds.labels(kind)))
        return out

    def role_applied(self, seconds: float, error_tag: str | None) -> None:
        self.apply_seconds.observe(seconds)
        if error_tag is not None:
            self.apply_failures.labels(error_tag).inc()

    def config_applied(self) -> None:
        self.config_applied_at = time.time()

    # -- the role's telemetry -------------------------------------------------------------
    def observe(self, name: str, value: float, **labels: str) -> None:
        record = self._observe.get(name)
        if record is not None:
            record(value, labels)


class DatastoreCollector(Collector):
    """Sizes of the running datastore, read at scrape time (printed once per change)."""

    def __init__(self, engine: NetconfServer) -> None:
        self.engine = engine

    def collect(self) -> Iterator[Metric]:
        with self.engine.lock:
            xml = self.engine.datastores.running.xml()
        # every element ends with "</name>" or "/>"; values are escaped ("<" never in text)
        nodes = xml.count(b"</") + xml.count(b"/>")
        yield GaugeMetricFamily("nvo3_datastore_running_bytes", "The running configuration, "
                                "printed as XML", value=len(xml))
        yield GaugeMetricFamily("nvo3_datastore_running_nodes", "Data nodes (containers, list "
                                "entries, leaves) of the running configuration", value=nodes)
