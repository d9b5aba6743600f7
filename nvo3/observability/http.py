"""The daemon's HTTP endpoint: `/metrics` (Prometheus text exposition of its own registry) and
`/healthz`, served by wsgiref on a thread of its own (no HTTP parsing of ours).

`--metrics` takes HOST:PORT, [IPv6]:PORT, :PORT or PORT (the last two on 127.0.0.1).
"""

from __future__ import annotations

import socket
import threading
from collections.abc import Callable, Iterable
from socketserver import ThreadingMixIn
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from prometheus_client import CollectorRegistry, make_wsgi_app

from nvo3.observability.address import MetricsAddress
from nvo3.observability.health import Health

StartResponse = Callable[..., Any]


class _Server(ThreadingMixIn, WSGIServer):
    daemon_threads = True
    allow_reuse_address = True


class _Server6(_Server):
    address_family = socket.AF_INET6


class _Quiet(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass                        # one line per scrape is noise, not a log


def wsgi_app(registry: CollectorRegistry, health: Health) -> Callable[..., Iterable[bytes]]:
    """/metrics and /healthz; 404 for anything else."""
    metrics = make_wsgi_app(registry)

    def app(environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        path = environ.get("PATH_INFO", "/")
        if path == "/metrics":
            return metrics(environ, start_response)
        if path == "/healthz":
            ok, reason = health.check()
            start_response("200 OK" if ok else "503 Service Unavailable",
                           [("Content-Type", "text/plain; charset=utf-8")])
            return [reason.encode() + b"\n"]
        start_response("404 Not Found", [("Content-Type", "text/plain; charset=utf-8")])
        return [b"not found: try /metrics or /healthz\n"]

    return app


class MetricsServer:
    """The endpoint on its own thread; `start` returns once bound (see `port`)."""

    def __init__(self, address: MetricsAddress, registry: CollectorRegistry,
                 health: Health) -> None:
        self.address = address
        self._app = wsgi_app(registry, health)
        self._server: WSGIServer | None = None
        self._thread: threading.Thread | None = None

    @property
    def host(self) -> str:
        return self.address.host

    @property
    def port(self) -> int:
        return self._server.server_port if self._server is not None else self.address.port

    def start(self) -> None:
        server_class = _Server6 if ":" in self.address.host else _Server
        self._server = make_server(self.address.host, self.address.port, self._app,
                                   server_class=server_class, handler_class=_Quiet)
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True,
                                        name=f"nvo3-metrics-{self.port}")
        self._thread.start()

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
        if self._thread is not None:
            self._thread.join(5)
