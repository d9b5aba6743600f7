"""Server-side sessions: one per login, holding the person's NETCONF sessions and event feed.

The browser's cookie carries only a random session id (signed by Flask with a key generated
at start); everything else stays here. A session ends at logout, after `idle_s` without a
request (its NETCONF sessions are closed then), or when its vCenter session is gone.
"""

from __future__ import annotations

import logging
import secrets
import threading
import time
from dataclasses import dataclass, field

from nvo3.dashboard.access import UserConnection
from nvo3.dashboard.feed import Feed

log = logging.getLogger(__name__)

IDLE_S = 30 * 60.0
REPLAY_FROM = "1970-01-01T00:00:00Z"      # replay whatever the nDirector still holds


@dataclass
class UserSession:
    """One login."""

    sid: str
    connection: UserConnection
    feed: Feed
    csrf: str = field(default_factory=lambda: secrets.token_urlsafe(32))
    last_seen: float = field(default_factory=time.monotonic)
    vm_names: dict[str, str] = field(default_factory=dict)   # MAC -> "tenant/name" seen

    @property
    def username(self) -> str:
        return self.connection.username

    def close(self) -> None:
        self.feed.close()
        self.connection.close()


def _convergence_reader(conn: UserConnection) -> int | None:
    """The nDirector's last convergence time (us), as this user may read it."""
    for tree in conn.ndirector_states().values():
        value = (tree.get("statistics") or {}).get("last-convergence-time")
        if value is not None:
            return int(value)
    return None


class SessionStore:
    """Every open session, by id; expired ones are closed on the next lookup."""

    def __init__(self, idle_s: float = IDLE_S) -> None:
        self.idle_s = idle_s
        self._lock = threading.Lock()
        self._sessions: dict[str, UserSession] = {}

    def create(self, connection: UserConnection) -> UserSession:
        """A session for a fresh login, subscribed to the nDirector(s)' notifications."""
        feed = Feed(lambda: _convergence_reader(connection))
        s = UserSession(secrets.token_urlsafe(32), connection, feed)
        connection.subscribe(feed.on_notification, REPLAY_FROM)
        with self._lock:
            self._sessions[s.sid] = s
        log.info("dashboard: %s logged in", s.username)
        return s

    def get(self, sid: str | None) -> UserSession | None:
        """The live session `sid`, touched; None when unknown, expired or broken."""
        self.expire()
        if not sid:
            return None
        with self._lock:
            s = self._sessions.get(sid)
        if s is None:
            return None
        if not s.connection.alive:
            self.end(sid)
            return None
        s.last_seen = time.monotonic()
        return s

    def end(self, sid: str) -> None:
        """Logout: forget the session and close its NETCONF sessions."""
        with self._lock:
            s = self._sessions.pop(sid, None)
        if s is not None:
            s.close()
            log.info("dashboard: %s logged out", s.username)

    def expire(self) -> None:
        now = time.monotonic()
        with self._lock:
            old = [sid for sid, s in self._sessions.items() if now - s.last_seen > self.idle_s]
        for sid in old:
            self.end(sid)

    def start_reaper(self, every_s: float = 60.0) -> threading.Event:
        """Expire idle sessions in the background (their NETCONF sessions are closed even
        when no request comes); set the returned event to stop."""
        stop = threading.Event()

        def reap() -> None:
            while not stop.wait(every_s):
                self.expire()

        threading.Thread(target=reap, name="dashboard-reaper", daemon=True).start()
        return stop

    def nudge_all(self) -> None:
        """After a portal action: every open page re-reads its views (a VM created or moved
        shows at once, also where no nDirector notification reaches that person)."""
        with self._lock:
            feeds = [s.feed for s in self._sessions.values()]
        for feed in feeds:
            feed.nudge()

    def close_all(self) -> None:
        with self._lock:
            sids = list(self._sessions)
        for sid in sids:
            self.end(sid)

    def __len__(self) -> int:
        with self._lock:
            return len(self._sessions)
