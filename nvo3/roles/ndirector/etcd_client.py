"""etcd for the nDirector: several endpoints behind one client, through etcd3gw (the v3
grpc-gateway at /v3/ of each client URL).

etcd3gw talks to one endpoint; :class:`EtcdClient` keeps one per endpoint and moves to the
next when one cannot be reached or cannot answer (a member without quorum times out). When
no endpoint answers, :class:`StoreUnavailable` is raised: the caller keeps what it has and
refuses to change it.

What is used of etcd: ranges with their header revision, transactions with compares, leases
(grant, keepalive, revoke), and a watch of a prefix. The watch is etcd3gw's stream parser
(``etcd3gw.watch._watch``) run in a thread of ours: etcd3gw's own ``Watcher`` ends silently
when the stream breaks, and the nDirector must know it (it reloads and watches again).
"""

from __future__ import annotations

import base64
import contextlib
import logging
import socket
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import requests
from etcd3gw.client import Etcd3Client
from etcd3gw.exceptions import Etcd3Exception
from etcd3gw.watch import _watch

log = logging.getLogger(__name__)

REQUEST_TIMEOUT_S = 1.0


class StoreUnavailable(Exception):
    """No etcd endpoint could answer (unreachable, or no quorum)."""


@dataclass(frozen=True)
class EtcdSettings:
    """Where etcd is and how to reach it (TLS optional)."""

    endpoints: tuple[str, ...]
    ca_cert: str | None = None
    cert: str | None = None
    key: str | None = None

    @classmethod
    def parse(cls, text: str, ca_cert: str | None = None, cert: str | None = None,
              key: str | None = None) -> EtcdSettings:
        eps = tuple(e.strip() for e in text.split(",") if e.strip())
        for e in eps:
            u = urlsplit(e)
            if u.scheme not in ("http", "https") or not u.hostname or not u.port:
                raise ValueError(f"bad etcd endpoint {e!r}: expected http(s)://HOST:PORT")
        if not eps:
            raise ValueError("no etcd endpoint given")
        if (cert is None) != (key is None):
            raise ValueError("an etcd client certificate needs its key, and the key its "
                             "certificate")
        return cls(eps, ca_cert, cert, key)


def b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def unb64(text: str) -> str:
    return base64.b64decode(text).decode()


def prefix_end(prefix: str) -> str:
    return prefix[:-1] + chr(ord(prefix[-1]) + 1)


@dataclass(frozen=True)
class KeyValue:
    key: str
    value: str
    mod_revision: int
    lease: int = 0


@dataclass(frozen=True)
class TxnResult:
    succeeded: bool
    revision: int
    responses: list[dict[str, Any]]


def _kvs(reply: dict[str, Any]) -> list[KeyValue]:
    return [KeyValue(unb64(kv["key"]), unb64(kv.get("value", "")), int(kv.get("mod_revision", 0)),
                     int(kv.get("lease", 0))) for kv in reply.get("kvs", [])]


def _session(settings: EtcdSettings) -> requests.Session:
    """An HTTP session for etcd: the configured CA and client certificate, and nothing from
    the environment (a REQUESTS_CA_BUNDLE would override the CA, a proxy would be used)."""
    s = requests.Session()
    s.trust_env = False
    if settings.ca_cert is not None:
        s.verify = settings.ca_cert
    if settings.cert is not None and settings.key is not None:
        s.cert = (settings.cert, settings.key)
    return s


class EtcdClient:
    """One etcd3gw client per endpoint; calls go to the current one, then the next."""

    def __init__(self, settings: EtcdSettings, timeout: float = REQUEST_TIMEOUT_S) -> None:
        self.settings = settings
        self._clients = []
        for ep in settings.endpoints:
            u = urlsplit(ep)
            assert u.hostname is not None and u.port is not None
            self._clients.append(Etcd3Client(
                host=u.hostname, port=u.port, protocol=u.scheme, timeout=timeout,
                api_path="/v3/", session=_session(settings)))
        self._current = 0
        self._lock = threading.Lock()

    def _post(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        errors = []
        with self._lock:
            start = self._current
        n = len(self._clients)
        for i in range(n):
            idx = (start + i) % n
            c = self._clients[idx]
            try:
                reply = c.post(c.get_url(path), json=body)
            except (Etcd3Exception, requests.RequestException, ValueError) as exc:
                errors.append(f"{c.base_url}: {str(exc)[:200] or type(exc).__name__}")
                continue
            with self._lock:
                self._current = idx
            return dict(reply)
        raise StoreUnavailable("; ".join(errors))

    # key-value ---------------------------------------------------------------------------
    def get_prefix(self, prefix: str) -> tuple[int, list[KeyValue]]:
        """Every key under `prefix`, and the store's revision they were read at."""
        reply = self._post("/kv/range", {"key": b64(prefix), "range_end": b64(prefix_end(prefix))})
        return int(reply["header"]["revision"]), _kvs(reply)

    def get(self, key: str) -> tuple[int, KeyValue | None]:
        reply = self._post("/kv/range", {"key": b64(key)})
        kvs = _kvs(reply)
        return int(reply["header"]["revision"]), (kvs[0] if kvs else None)

    def put(self, key: str, value: str, lease: int = 0) -> int:
        body: dict[str, Any] = {"key": b64(key), "value": b64(value)}
        if lease:
            body["lease"] = lease
        return int(self._post("/kv/put", body)["header"]["revision"])

    def delete_prefix(self, prefix: str) -> int:
        reply = self._post("/kv/deleterange", {"key": b64(prefix),
                                               "range_end": b64(prefix_end(prefix))})
        return int(reply["header"]["revision"])

    def txn(self, compare: list[dict[str, Any]], success: list[dict[str, Any]],
            failure: list[dict[str, Any]] | None = None) -> TxnResult:
        reply = self._post("/kv/txn", {"compare": compare, "success": success,
                                       "failure": failure or []})
        return TxnResult(bool(reply.get("succeeded")), int(reply["header"]["revision"]),
                         list(reply.get("responses", [])))

    @staticmethod
    def txn_kvs(result: TxnResult) -> list[KeyValue]:
        """The key-values of the range requests in a transaction's responses."""
        out: list[KeyValue] = []
        for r in result.responses:
            if "response_range" in r:
                out += _kvs(r["response_range"])
        return out

    # leases ------------------------------------------------------------------------------
    def grant(self, ttl: int) -> int:
        return int(self._post("/lease/grant", {"TTL": ttl, "ID": 0})["ID"])

    def keepalive(self, lease: int) -> int:
        """The lease's remaining TTL (0 or less: it expired)."""
        reply = self._post("/lease/keepalive", {"ID": lease})
        return int(reply.get("result", {}).get("TTL", 0))

    def revoke(self, lease: int) -> None:
        self._post("/kv/lease/revoke", {"ID": lease})

    def status(self) -> list[dict[str, Any]]:
        """Each endpoint's status (or its error), for the operator."""
        out = []
        for c in self._clients:
            try:
                st = c.post(c.get_url("/maintenance/status"), json={})
                out.append({"endpoint": c.base_url, "leader": st.get("leader") ==
                            st.get("header", {}).get("member_id"),
                            "revision": int(st.get("header", {}).get("revision", 0))})
            except (Etcd3Exception, requests.RequestException, ValueError) as exc:
                out.append({"endpoint": c.base_url, "error": str(exc)[:200]})
        return out

    # watch -------------------------------------------------------------------------------
    def watch_prefix(self, prefix: str, start_revision: int,
                     callback: Callable[[Any], None]) -> Callable[[], None]:
        """Stream the events under `prefix` from `start_revision` to `callback` until the
        stream ends (the call blocks; run it in a thread). Returns after the stream ends or
        fails; raises StoreUnavailable when no endpoint accepts the watch."""
        errors = []
        with self._lock:
            start = self._current
        n = len(self._clients)
        for i in range(n):
            c = self._clients[(start + i) % n]
            body: dict[str, Any] = {"create_request": {
                "key": b64(prefix), "range_end": b64(prefix_end(prefix)),
                "start_revision": start_revision}}
            try:
                resp = c.session.post(c.get_url("/watch"), json=body, stream=True,
                                      timeout=(REQUEST_TIMEOUT_S, None))
            except requests.RequestException as exc:
                errors.append(f"{c.base_url}: {exc}")
                continue
            if resp.status_code != 200:
                errors.append(f"{c.base_url}: HTTP {resp.status_code}")
                resp.close()
                continue
            self._watch_response = resp

            def stop(resp: requests.Response = resp) -> None:
                # as etcd3gw's Watcher.stop: shut the socket down under the reading thread
                with contextlib.suppress(Exception):
                    fd = resp.raw._fp.fileno()
                    s = socket.fromfd(fd, socket.AF_INET, socket.SOCK_STREAM)
                    s.shutdown(socket.SHUT_RDWR)
                    s.close()
            self._stop_watch = stop
            try:
                _watch(resp, callback)
            except Exception as exc:     # a broken stream: the caller reloads and watches again
                log.info("etcd watch on %s ended: %s", c.base_url, exc)
            return stop
        raise StoreUnavailable("; ".join(errors))

    def stop_watch(self) -> None:
        stop = getattr(self, "_stop_watch", None)
        if stop is not None:
            stop()
