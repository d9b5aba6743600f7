"""`ServerLimits`: every resource limit of a NETCONF/SSH server, with safe defaults.

One frozen dataclass shared by the SSH edge (admission, framing, output queues) and the engine
(xpath filter budget). `nvo3 serve` sets each field from a flag of the same name
(`add_arguments` / `from_args`); servers/README.md lists them in a table.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass, fields
from typing import Any

MIB = 1024 * 1024


@dataclass(frozen=True)
class ServerLimits:
    """Limits of one server; 0 disables a limit (never the default), except the login
    timeout, which is always on."""

    #: authenticated sessions at once, all users together
    max_sessions: int = 128
    #: authenticated sessions at once of one user (role-to-role sessions share one user:
    #: a vCenter hears from each of its vServers as the same user)
    max_sessions_per_user: int = 64
    #: connections that have not authenticated yet; more are closed at once
    max_pending_auth: int = 32
    #: of those, from one source address (one host cannot take every slot)
    max_pending_auth_per_source: int = 16
    #: a connection must authenticate and open the netconf subsystem within this time (s)
    login_timeout: float = 30.0
    #: a session with no RPC and no live subscription for this long is closed (s)
    idle_timeout: float = 3600.0
    #: a bigger incoming message closes the session, without being buffered whole (bytes)
    max_message_size: int = 32 * MIB
    #: first delay after a failed password, per source address and user name (s);
    #: doubles with each further failure
    login_delay: float = 1.0
    #: the delay after repeated failed passwords grows up to this (s)
    login_delay_max: float = 16.0
    #: CPU time an xpath filter may take before it is stopped with an rpc-error (s)
    xpath_budget: float = 2.0
    #: a session's unsent output beyond this drops the session (bytes)
    output_queue_bytes: int = 32 * MIB
    #: a session's unsent output beyond this many messages drops the session
    output_queue_messages: int = 50_000
    #: a session whose client accepts no output for this long, with output waiting, is
    #: dropped (s)
    send_timeout: float = 60.0

    def __post_init__(self) -> None:
        for f in fields(self):
            if getattr(self, f.name) < 0:
                raise ValueError(f"limit {f.name} must not be negative")
        if not self.login_timeout:
            raise ValueError("limit login_timeout must be positive")


_HELP = {
    "max_sessions": "sessions at once, all users (default %(default)s)",
    "max_sessions_per_user": "sessions at once per user (default %(default)s)",
    "max_pending_auth": "unauthenticated connections at once (default %(default)s)",
    "max_pending_auth_per_source": "unauthenticated connections at once from one address "
                                   "(default %(default)s)",
    "login_timeout": "seconds to log in and open the netconf subsystem (default %(default)s)",
    "idle_timeout": "close a session without RPCs or subscription after this many seconds "
                    "(default %(default)s; 0: never)",
    "max_message_size": "largest incoming message in bytes (default %(default)s)",
    "login_delay": "seconds of delay after a failed password, doubling per failure, per "
                   "source address and user (default %(default)s)",
    "login_delay_max": "largest failed-login delay in seconds (default %(default)s)",
    "xpath_budget": "CPU seconds an xpath filter may take (default %(default)s)",
    "output_queue_bytes": "unsent output in bytes that drops a session (default %(default)s)",
    "output_queue_messages": "unsent messages that drop a session (default %(default)s)",
    "send_timeout": "seconds a client may accept no output before it is dropped "
                    "(default %(default)s)",
}


def flag(name: str) -> str:
    """The `nvo3 serve` flag of limit `name`."""
    return "--" + name.replace("_", "-")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """One flag per limit (e.g. --max-sessions), defaulting to ServerLimits' value."""
    group = parser.add_argument_group("limits")
    defaults = ServerLimits()
    for f in fields(ServerLimits):
        value = getattr(defaults, f.name)
        group.add_argument(flag(f.name), type=type(value), default=value, metavar="N",
                           dest=f"limit_{f.name}", help=_HELP[f.name])


def from_args(args: argparse.Namespace) -> ServerLimits:
    """The limits given by `add_arguments`' flags (raises ValueError on a negative one)."""
    values: dict[str, Any] = {f.name: getattr(args, f"limit_{f.name}")
                              for f in fields(ServerLimits)}
    for name, value in values.items():
        if name == "login_timeout" and value <= 0:
            raise ValueError(f"{flag(name)} must be positive (got {value})")
        if value < 0:
            raise ValueError(f"{flag(name)} must be zero or more (got {value})")
    return ServerLimits(**values)
