"""RFC 6022 netconf-state as data: capabilities, datastores, schemas, sessions, statistics."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from nvo3.common.clock import iso
from nvo3.netconf.server.notifications import now


@dataclass
class Counters:
    """Per-session (and global) RFC 6022 counters."""

    in_rpcs: int = 0
    in_bad_rpcs: int = 0
    out_rpc_errors: int = 0
    out_notifications: int = 0

    def as_dict(self) -> dict[str, int]:
        """The counters as netconf-state leaves."""
        return {"in-rpcs": self.in_rpcs, "in-bad-rpcs": self.in_bad_rpcs,
                "out-rpc-errors": self.out_rpc_errors,
                "out-notifications": self.out_notifications}


@dataclass
class SessionInfo:
    """One session as netconf-state lists it."""

    session_id: int
    username: str
    source_host: str
    login_time: datetime = field(default_factory=now)
    counters: Counters = field(default_factory=Counters)


@dataclass
class ServerStatistics:
    """The server's netconf-state statistics."""

    start_time: datetime = field(default_factory=now)
    in_bad_hellos: int = 0
    in_sessions: int = 0
    dropped_sessions: int = 0
    counters: Counters = field(default_factory=Counters)


def netconf_state(capabilities: list[str], locks: dict[str, tuple[int, datetime]],
                  modules: list[tuple[str, str | None, str, list[str]]],
                  sessions: list[SessionInfo], stats: ServerStatistics) -> dict[str, Any]:
    """The netconf-state tree in libyang dict form (module ietf-netconf-monitoring)."""
    datastores = []
    for name in ("running", "candidate", "startup"):
        entry: dict[str, Any] = {"name": name}
        if name in locks:
            sid, since = locks[name]
            entry["locks"] = {"global-lock": {"locked-by-session": sid,
                                              "locked-time": iso(since.timestamp())}}
        datastores.append(entry)
    schemas = [{"identifier": name, "version": rev or "", "format": "yang", "namespace": ns,
                "location": ["NETCONF"]} for name, rev, ns, _ in modules]
    session_list = [{"session-id": s.session_id, "transport": "netconf-ssh",
                     "username": s.username, "source-host": s.source_host,
                     "login-time": iso(s.login_time.timestamp()), **s.counters.as_dict()}
                    for s in sessions]
    return {"netconf-state": {
        "capabilities": {"capability": capabilities},
        "datastores": {"datastore": datastores},
        "schemas": {"schema": schemas},
        "sessions": {"session": session_list},
        "statistics": {"netconf-start-time": iso(stats.start_time.timestamp()),
                       "in-bad-hellos": stats.in_bad_hellos,
                       "in-sessions": stats.in_sessions,
                       "dropped-sessions": stats.dropped_sessions,
                       **stats.counters.as_dict()},
    }}
