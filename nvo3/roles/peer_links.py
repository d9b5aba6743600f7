"""Sessions from a role to the peers it manages (vServers, child vCenters), by name.

A session is opened on first use (host key verified, password from the configuration) and
reopened once when it broke; a peer's refusal or unreachability becomes a PeerError.
"""

from __future__ import annotations

import getpass
import logging
import threading
from dataclasses import dataclass
from typing import Any, Callable

from ..netconf.client import Client, RemoteRpcError, connect
from ..netconf.role import Tree
from . import peer

log = logging.getLogger(__name__)

CONNECT_TIMEOUT_S = 5.0
RPC_TIMEOUT_S = 60.0


class PeerError(Exception):
    """A call to a vServer or child vCenter failed (unreachable, refused, timed out)."""


@dataclass(frozen=True)
class PeerConfig:
    """A vServer or child vCenter of the configuration and how to log in to it."""

    name: str
    address: str
    port: int = 830
    username: str | None = None
    password: str | None = None
    host_key: str | None = None
    data_centers: tuple[str, ...] = ()
    nve: str | None = None

    @classmethod
    def from_config(cls, tree: Tree, data_centers: list[str]) -> "PeerConfig":
        return cls(tree["name"], tree["address"], int(tree.get("port", 830)),
                   tree.get("username"), tree.get("password"), tree.get("host-key"),
                   tuple(data_centers), tree.get("nve"))


class PeerLinks:
    """NETCONF sessions to peers, opened on first use and reopened once when broken."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self.configs: dict[str, PeerConfig] = {}
        self.clients: dict[str, Client] = {}
        self.states: dict[str, str] = {}
        self._locks: dict[str, threading.Lock] = {}
        self._lock = threading.Lock()

    def configure(self, configs: dict[str, PeerConfig]) -> None:
        closing: list[Client] = []
        with self._lock:
            for name in list(self.clients):
                if configs.get(name) != self.configs.get(name):
                    closing.append(self.clients.pop(name))
                    self.states.pop(name, None)
            self.configs = dict(configs)
            for name in configs:
                self._locks.setdefault(name, threading.Lock())
                self.states.setdefault(name, "disconnected")
        for c in closing:
            threading.Thread(target=c.close, daemon=True).start()

    def _client(self, name: str) -> Client:
        cfg = self.configs.get(name)
        if cfg is None:
            raise PeerError(f"{self.kind} {name!r} is not configured")
        client = self.clients.get(name)
        if client is not None and client.connected:
            return client
        self.states[name] = "connecting"
        try:
            client = connect(cfg.address, cfg.port, cfg.username or getpass.getuser(),
                             cfg.password, host_key=cfg.host_key, timeout=CONNECT_TIMEOUT_S,
                             rpc_timeout=RPC_TIMEOUT_S)
        except Exception as exc:
            self.states[name] = "disconnected"
            raise PeerError(f"cannot reach {self.kind} {name} at {cfg.address} port "
                            f"{cfg.port}: {exc}") from None
        self.states[name] = "connected"
        self.clients[name] = client
        return client

    def run(self, name: str, fn: Callable[[Client], Any]) -> Any:
        """`fn(client)` on the peer's session; a broken session is reopened once."""
        lock = self._locks.get(name)
        if lock is None:
            raise PeerError(f"{self.kind} {name!r} is not configured")
        for attempt in (1, 2):
            with lock:
                client = self._client(name)
            try:
                return fn(client)
            except RemoteRpcError as exc:
                raise PeerError(f"{self.kind} {name}: {exc.message or exc.tag}") from None
            except Exception as exc:
                if client.connected and attempt == 1:
                    raise PeerError(f"{self.kind} {name}: {exc}") from None
                self.states[name] = "disconnected"
                if attempt == 2:
                    raise PeerError(f"{self.kind} {name}: {exc}") from None
        raise AssertionError("unreachable")

    def call(self, name: str, module: str, rpc: str, given: Tree) -> Tree:
        log.info("%s %s: %s %s/%s", self.kind, name, rpc, given.get("tenant"),
                 given.get("name"))
        return self.run(name, lambda c: peer.call(c, module, rpc, given))  # type: ignore[no-any-return]

    def close_all(self) -> None:
        with self._lock:
            clients, self.clients = list(self.clients.values()), {}
        for c in clients:
            c.close()
