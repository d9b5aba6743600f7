"""NETCONF access for one logged-in person: their own sessions to the root vCenter and the
nDirector(s), opened with their username and password, host keys verified.

Nothing here is cached across people: what a call returns is what the servers (and their
access control) let this user see.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from typing import Any

import libyang
from lxml import etree

from nvo3.common.names import NDIRECTOR, VCENTER
from nvo3.common.tree import Tree
from nvo3.dashboard.targets import Endpoint, Targets
from nvo3.netconf.client.session import Client, ClientError, HostKeyError, RemoteRpcError, connect
from nvo3.roles.peers import codec

log = logging.getLogger(__name__)

CONNECT_TIMEOUT_S = 10.0
RPC_TIMEOUT_S = 60.0


class LoginFailed(Exception):
    """The root vCenter did not accept the user (or cannot be reached)."""


class Refused(Exception):
    """A server answered with <rpc-error>, or the input was invalid: the text to show."""

    def __init__(self, operation: str, text: str, tag: str = "", path: str = "") -> None:
        super().__init__(f"{operation}: {text}")
        self.operation, self.text, self.tag, self.path = operation, text, tag, path

    def __str__(self) -> str:
        tag = f"{self.tag}: " if self.tag else ""
        where = f" (error-path {self.path})" if self.path else ""
        return f"{self.operation} refused: {tag}{self.text}{where}"


def _open(ep: Endpoint, username: str, password: str) -> Client:
    return connect(ep.host, ep.port, username, password, host_key=ep.host_key,
                   timeout=CONNECT_TIMEOUT_S, rpc_timeout=RPC_TIMEOUT_S)


def _plain(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)) or type(value).__name__ == "KeyedList":
        return [_plain(v) for v in value]
    return value


def _refused(operation: str, exc: RemoteRpcError) -> Refused:
    return Refused(operation, exc.message or str(exc), exc.tag or "", exc.path or "")


@dataclass
class UserConnection:
    """One person's NETCONF sessions: the root vCenter (required) and the nDirectors that
    accepted the login (an nDirector that refuses leaves its views empty, with the reason)."""

    username: str
    vcenter: Client
    ndirectors: dict[str, Client] = field(default_factory=dict)
    unavailable: dict[str, str] = field(default_factory=dict)

    @classmethod
    def open(cls, targets: Targets, username: str, password: str) -> UserConnection:
        """Log in everywhere; LoginFailed when the root vCenter refuses."""
        try:
            vc = _open(targets.vcenter, username, password)
        except HostKeyError as exc:
            raise LoginFailed(f"{targets.vcenter.name}: host key not accepted: {exc}") from None
        except (ClientError, OSError) as exc:
            log.info("dashboard: login of %s at %s failed: %s", username, targets.vcenter.name,
                     exc)
            if "Authentication" in str(exc):
                raise LoginFailed("the vCenter did not accept this username and password") \
                    from None
            raise LoginFailed(f"cannot reach the vCenter {targets.vcenter.name}: {exc}") from None
        conn = cls(username, vc)
        for ep in targets.ndirectors:
            try:
                conn.ndirectors[ep.name] = _open(ep, username, password)
            except (ClientError, OSError) as exc:
                conn.unavailable[ep.name] = str(exc)
        return conn

    def close(self) -> None:
        """Close every session (logout, expiry, shutdown)."""
        for client in (self.vcenter, *self.ndirectors.values()):
            try:
                client.close()
            except Exception:   # a session already gone: nothing more to close
                log.debug("dashboard: closing a session of %s failed", self.username,
                          exc_info=True)
        self.ndirectors.clear()

    @property
    def alive(self) -> bool:
        return self.vcenter.connected

    # reads ---------------------------------------------------------------------------------
    def vcenter_state(self) -> Tree:
        """/vcenter (configuration and state) as this user may read it."""
        try:
            return _plain(codec.get_state(self.vcenter, VCENTER, "vcenter"))
        except RemoteRpcError as exc:
            raise _refused("get", exc) from None

    def ndirector_states(self) -> dict[str, Tree]:
        """/ndirector of each nDirector this user may read (refusals leave it out)."""
        out: dict[str, Tree] = {}
        for name, client in self.ndirectors.items():
            try:
                out[name] = _plain(codec.get_state(client, NDIRECTOR, "ndirector"))
            except (RemoteRpcError, ClientError) as exc:
                self.unavailable[name] = str(exc)
        return out

    # operations ----------------------------------------------------------------------------
    def vcenter_rpc(self, name: str, given: Tree) -> Tree:
        """`nvo3-vcenter:name` with `given`; its output, or Refused with the server's text."""
        try:
            return _plain(codec.call(self.vcenter, VCENTER, name, given))
        except RemoteRpcError as exc:
            raise _refused(name, exc) from None
        except libyang.LibyangError as exc:
            raise Refused(name, f"invalid input: {exc}", "invalid-value") from None
        except ClientError as exc:
            raise Refused(name, f"the session failed: {exc}", "operation-failed") from None

    def subscribe(self, callback: Callable[[str, etree._Element], None],
                  start_time: str | None) -> None:
        """RFC 5277 subscriptions at every nDirector (replay from `start_time`); each
        notification goes to `callback(ndirector, message)` on the session's thread."""
        for name, client in list(self.ndirectors.items()):
            try:
                client.create_subscription(callback=partial(callback, name),
                                           start_time=start_time)
            except (RemoteRpcError, ClientError) as exc:
                self.unavailable[name] = f"notifications: {exc}"
