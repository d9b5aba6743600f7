"""Sessions from a role to other roles' NETCONF servers: the one place they are kept.

* :class:`PeerLink`: one lazily opened session to one peer (host key verified, password from
  the configuration), reopened when it broke, with backoff between failed attempts when the
  caller does not want to wait.  The vServer holds one to its NVE and one to its vCenter.
* :class:`PeerLinks`: the peers a role manages by name (the vCenter's vServers, the root
  vCenter's child vCenters), a :class:`PeerLink` each; a call is retried once on a fresh
  session when the old one broke, and a peer's refusal or unreachability becomes a
  :class:`PeerError`.
"""

from __future__ import annotations

import contextlib
import getpass
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from nvo3.common.backoff import Backoff
from nvo3.common.tree import Tree
from nvo3.netconf.client.session import Client, ClientError, RemoteRpcError, connect
from nvo3.roles.peers import codec

log = logging.getLogger(__name__)

CONNECT_TIMEOUT_S = 5.0
RPC_TIMEOUT_S = 60.0
BACKOFF_FIRST, BACKOFF_MAX = 0.1, 2.0   # between failed connects when the caller won't wait


class PeerError(Exception):
    """A call to a vServer or child vCenter failed (unreachable, refused, timed out)."""


@dataclass(frozen=True)
class PeerConfig:
    """A vServer or child vCenter of the configuration and how to log in to it."""

    name: str
    address: str
    port: int = 830
    username: str | None = None
    password: str | None = field(default=None, repr=False)   # never in a log line
    host_key: str | None = None
    data_centers: tuple[str, ...] = ()
    nve: str | None = None

    @classmethod
    def from_config(cls, tree: Tree, data_centers: list[str]) -> PeerConfig:
        return cls(tree["name"], tree["address"], int(tree.get("port", 830)),
                   tree.get("username"), tree.get("password"), tree.get("host-key"),
                   tuple(data_centers), tree.get("nve"))


class PeerLink:
    """A lazily opened, reconnecting NETCONF session to a peer role (NVE or vCenter)."""

    def __init__(self, what: str, connector: Callable[..., Client] = connect,
                 timeout: float = 3.0, rpc_timeout: float = 20.0) -> None:
        self.what = what
        self.timeout, self.rpc_timeout = timeout, rpc_timeout
        self.config: Tree | None = None
        self.client: Client | None = None
        self.state = "disconnected"
        self.ups = 0                       # sessions opened so far (a new one -> resync)
        self.lock = threading.Lock()
        self._connect = connector
        self._next_try = 0.0
        self._backoff = Backoff(BACKOFF_FIRST, BACKOFF_MAX)

    def configure(self, config: Tree | None) -> bool:
        """New endpoint configuration; True when it changed (the session is reopened)."""
        keep = ("name", "address", "port", "username", "password", "host-key")
        new = {k: config[k] for k in keep if k in config} if config else None
        with self.lock:
            if new == self.config:
                return False
            self.config = new
            self._close()
            self._next_try = 0.0
            return True

    def _close(self) -> None:
        if self.client is not None:
            with contextlib.suppress(Exception):
                self.client.close()
        self.client = None
        self.state = "disconnected"

    def close(self) -> None:
        with self.lock:
            self._close()

    def _ensure(self, wait: bool) -> Client:
        if self.config is None:
            raise ClientError(f"no {self.what} configured")
        if self.client is not None and self.client.connected:
            return self.client
        self._close()
        if not wait and time.monotonic() < self._next_try:
            raise ClientError(f"{self.what} unreachable (retrying)")
        c = self.config
        self.state = "connecting"
        try:
            self.client = self._connect(c["address"], int(c.get("port", 830)),
                                        c.get("username") or getpass.getuser(),
                                        c.get("password"), host_key=c.get("host-key"),
                                        timeout=self.timeout, rpc_timeout=self.rpc_timeout)
        except Exception as exc:
            self.state = "disconnected"
            self._next_try = time.monotonic() + self._backoff.next_delay()
            raise ClientError(f"{self.what} {c.get('name')} at {c['address']}:"
                              f"{c.get('port', 830)}: {exc}") from exc
        self.state = "connected"
        self._backoff.reset()
        self.ups += 1
        log.info("%s %s: session up", self.what, c.get("name"))
        return self.client

    def run(self, fn: Callable[[Client], Any], wait: bool = True) -> Any:
        """fn(client) on the session (opened if needed); a broken session is dropped."""
        with self.lock:
            client = self._ensure(wait)
            try:
                return fn(client)
            except RemoteRpcError:
                raise
            except Exception:
                self._close()
                raise

    def session(self, wait: bool = True) -> Client:
        """The open session (opened if needed), for calls made without holding the link."""
        with self.lock:
            return self._ensure(wait)

    def drop(self, client: Client) -> None:
        """Close ``client`` if it still is this link's session (it broke under a call)."""
        with self.lock:
            if self.client is client:
                self._close()


class PeerLinks:
    """NETCONF sessions to the peers a role manages, by name: a :class:`PeerLink` each."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self.configs: dict[str, PeerConfig] = {}
        self.links: dict[str, PeerLink] = {}
        self._lock = threading.Lock()

    @property
    def states(self) -> dict[str, str]:
        """Session state of each configured peer (disconnected, connecting, connected)."""
        return {name: link.state for name, link in list(self.links.items())}

    def configure(self, configs: dict[str, PeerConfig]) -> None:
        with self._lock:
            gone = [self.links.pop(name) for name in list(self.links) if name not in configs]
            self.configs = dict(configs)
            for name, cfg in configs.items():
                link = self.links.setdefault(name, PeerLink(
                    self.kind, timeout=CONNECT_TIMEOUT_S, rpc_timeout=RPC_TIMEOUT_S))
                link.configure({"name": cfg.name, "address": cfg.address, "port": cfg.port,
                                "username": cfg.username, "password": cfg.password,
                                "host-key": cfg.host_key})
        for link in gone:
            threading.Thread(target=link.close, daemon=True).start()

    def run(self, name: str, fn: Callable[[Client], Any]) -> Any:
        """`fn(client)` on the peer's session; a broken session is reopened once."""
        link = self.links.get(name)
        cfg = self.configs.get(name)
        if link is None or cfg is None:
            raise PeerError(f"{self.kind} {name!r} is not configured")
        for attempt in (1, 2):
            try:
                client = link.session()
            except ClientError as exc:
                raise PeerError(f"cannot reach {self.kind} {name} at {cfg.address} port "
                                f"{cfg.port}: {exc.__cause__ or exc}") from None
            try:
                return fn(client)
            except RemoteRpcError as exc:
                raise PeerError(f"{self.kind} {name}: {exc.message or exc.tag}") from None
            except Exception as exc:
                if client.connected and attempt == 1:
                    raise PeerError(f"{self.kind} {name}: {exc}") from None
                link.drop(client)
                if attempt == 2:
                    raise PeerError(f"{self.kind} {name}: {exc}") from None
        raise AssertionError("unreachable")

    def call(self, name: str, module: str, rpc: str, given: Tree) -> Tree:
        log.info("%s %s: %s %s/%s", self.kind, name, rpc, given.get("tenant"),
                 given.get("name"))
        return self.run(name, lambda c: codec.call(c, module, rpc, given))

    def close_all(self) -> None:
        with self._lock:
            links = list(self.links.values())
        for link in links:
            link.close()
