"""A daemon's observability put together: the audit trail always, Prometheus metrics and
`/healthz` when `--metrics` is given. `nvo3/daemon.py` calls `Observability` and nothing else
from this package."""

from __future__ import annotations

from typing import TYPE_CHECKING

from lxml import etree

from nvo3.netconf.server.monitoring import SessionInfo
from nvo3.netconf.server.observer import EngineObserver
from nvo3.observability.address import MetricsAddress
from nvo3.observability.audit import AuditObserver
from nvo3.observability.health import Health

if TYPE_CHECKING:
    from nvo3.netconf.server.engine import NetconfServer
    from nvo3.netconf.ssh.listener import SshServer
    from nvo3.observability.http import MetricsServer
    from nvo3.observability.metrics import DaemonMetrics


class Both(EngineObserver):
    """The audit trail, then the metrics."""

    def __init__(self, audit: EngineObserver, metrics: EngineObserver) -> None:
        self.audit, self.metrics = audit, metrics

    def session_opened(self, info: SessionInfo) -> None:
        self.metrics.session_opened(info)

    def session_closed(self, info: SessionInfo) -> None:
        self.audit.session_closed(info)
        self.metrics.session_closed(info)

    def rpc_done(self, info: SessionInfo, op: etree._Element | None, outcome: str,
                 seconds: float) -> None:
        self.audit.rpc_done(info, op, outcome, seconds)
        self.metrics.rpc_done(info, op, outcome, seconds)

    def running_changed(self, session_id: int | None, edited: tuple[str, ...] | None) -> None:
        self.audit.running_changed(session_id, edited)

    def role_applied(self, seconds: float, error_tag: str | None) -> None:
        self.metrics.role_applied(seconds, error_tag)

    def config_applied(self) -> None:
        self.metrics.config_applied()


class Observability:
    """Plugs the audit trail (and metrics, given an address) into `engine`; `start` opens the
    HTTP endpoint (before the engine starts: `/healthz` says 503 until it is ready)."""

    def __init__(self, engine: NetconfServer, ssh: SshServer,
                 metrics: MetricsAddress | None = None) -> None:
        audit = AuditObserver(engine.role.name, engine.schema.modules_by_ns)
        self.metrics: DaemonMetrics | None = None
        self.server: MetricsServer | None = None
        if metrics is None:
            engine.observer = audit
            return
        # imported only when metrics are on: prometheus_client costs a daemon about 9 MB
        from nvo3.observability.http import MetricsServer
        from nvo3.observability.metrics import DaemonMetrics
        self.metrics = m = DaemonMetrics(engine)
        engine.observer = Both(audit, m)
        engine.role.telemetry = m
        health = Health(lambda: m.config_applied_at is not None, ssh.accepting)
        self.server = MetricsServer(metrics, m.registry, health)

    def start(self) -> None:
        if self.server is not None:
            self.server.start()

    def stop(self) -> None:
        if self.server is not None:
            self.server.stop()

    def ready_words(self) -> str:
        """What the daemon's ready line adds: " metrics HOST:PORT" when metrics are on."""
        if self.server is None:
            return ""
        host = self.server.host
        return f" metrics {f'[{host}]' if ':' in host else host}:{self.server.port}"
