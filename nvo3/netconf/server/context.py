"""What an operation sees of the engine: the server it runs in and the session that called it.

The operations (operations.py) are written against these two Protocols, not against the
engine's classes, so they never import the engine; the engine imports them to dispatch.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from contextlib import AbstractContextManager
from datetime import datetime
from typing import Any, Protocol

from nvo3.netconf.limits import ServerLimits
from nvo3.netconf.server.datastores import Datastores
from nvo3.netconf.server.nacm import Identity, Nacm
from nvo3.netconf.server.notifications import EventLog, Subscription
from nvo3.netconf.server.role_api import RpcHandler
from nvo3.netconf.server.schema import Schema


class CallingSession(Protocol):
    """The session an operation runs for."""

    subscription: Subscription | None
    #: Run once the reply has been sent (create-subscription replays after its <ok/>).
    after_reply: Callable[[], None] | None
    #: Who the session is for NACM.
    identity: Identity | None

    @property
    def session_id(self) -> int:
        """The session-id the server gave this session."""

    def send_notification(self, message: bytes) -> None:
        """Send a whole <notification> message to this session's client."""

    def send_notification_later(self, produce: Callable[[], bytes | None], size: int) -> None:
        """Send what `produce()` makes, when the session's output gets to it."""


class OperationServer(Protocol):
    """The engine as the operations use it; every datastore access is under `lock`."""

    #: The session changing running now (for netconf-config-change); set under `lock`.
    current_session: int | None

    @property
    def lock(self) -> AbstractContextManager[Any]:
        """The one lock every datastore operation runs under."""

    @property
    def limits(self) -> ServerLimits:
        """The server's resource limits (the xpath filter budget)."""

    @property
    def schema(self) -> Schema:
        """The served YANG modules."""

    @property
    def datastores(self) -> Datastores:
        """running, candidate and startup."""

    @property
    def nacm(self) -> Nacm:
        """Access control (RFC 8341)."""

    @property
    def events(self) -> EventLog:
        """The NETCONF event stream."""

    @property
    def handlers(self) -> Mapping[str, RpcHandler]:
        """The role's RPC handlers, keyed by `module:rpc-name`."""

    @property
    def lock_times(self) -> dict[str, datetime]:
        """When each held datastore lock was taken, by datastore name."""

    def operational(self, with_defaults: str) -> bytes:
        """Running plus every config-false tree, as XML."""

    def kill(self, session_id: int, killed_by: int) -> bool:
        """End session `session_id` on behalf of `killed_by`; False when there is none."""
