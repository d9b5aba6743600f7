"""Who may connect and log in, and how fast: the SSH listener's admission control.

- :class:`Admission` counts connections that have not authenticated yet (over
  `max_pending_auth`, or `max_pending_auth_per_source` from one address, a new one is closed
  at once) and authenticated sessions, in total and per
  user (over `max_sessions` / `max_sessions_per_user` a login's session is refused; a NACM
  recovery user's sessions, the roles' own peers', are neither capped nor counted).
- :class:`LoginDelays` makes each failed password cost a growing delay, per source address
  and user name: the connection that failed waits, no one else does.
- :class:`AcceptBackoff` paces the accept loop when accept() fails for want of resources
  (EMFILE, ENFILE, ENOMEM, ENOBUFS) or a connection's thread cannot start: it sleeps a
  bounded, growing delay, logs once per burst, and the listener keeps accepting.
"""

from __future__ import annotations

import errno
import logging
import threading
import time
from collections import Counter
from collections.abc import Callable

from nvo3.netconf.limits import ServerLimits

log = logging.getLogger(__name__)

#: accept() errors that mean the listening socket itself is gone; any other (EMFILE,
#: ENFILE, ENOMEM, ENOBUFS, ECONNABORTED, ...) passes and is met with a pause
FATAL_ACCEPT_ERRNOS = frozenset({errno.EBADF, errno.EINVAL, errno.ENOTSOCK})


class Admission:
    """Pending-authentication and session counts of one listener (thread-safe)."""

    def __init__(self, limits: ServerLimits) -> None:
        self.limits = limits
        self._lock = threading.Lock()
        self.pending = 0
        self.pending_from: Counter[str] = Counter()
        self.sessions: Counter[str] = Counter()
        self.exempt: Counter[str] = Counter()       # recovery users' sessions (not capped)

    def begin_auth(self, source: str) -> str | None:
        """Count a new unauthenticated connection from address `source`; None, or why it is
        refused (then not counted)."""
        limits = self.limits
        with self._lock:
            if limits.max_pending_auth and self.pending >= limits.max_pending_auth:
                return f"{self.pending} connections waiting to log in (the limit)"
            mine = self.pending_from[source]
            if limits.max_pending_auth_per_source and mine >= limits.max_pending_auth_per_source:
                return f"{mine} connections from {source} waiting to log in (the limit)"
            self.pending += 1
            self.pending_from[source] += 1
            return None

    def end_auth(self, source: str) -> None:
        """The connection authenticated, or went away before it did."""
        with self._lock:
            self.pending -= 1
            self.pending_from[source] -= 1
            if self.pending_from[source] <= 0:
                del self.pending_from[source]

    def begin_session(self, user: str, exempt: bool = False) -> str | None:
        """Count a session of `user`; None, or why it is refused (then not counted).

        `exempt`: a NACM recovery user's session (the roles' own peers log in as one: a
        vCenter with hundreds of vServers has as many such sessions) is never refused and not
        counted against the caps, which bound what users and attackers can take."""
        limits = self.limits
        with self._lock:
            if exempt:
                self.exempt[user] += 1
                return None
            total = sum(self.sessions.values())
            if limits.max_sessions and total >= limits.max_sessions:
                return f"{total} sessions open, the limit is {limits.max_sessions}"
            mine = self.sessions[user]
            if limits.max_sessions_per_user and mine >= limits.max_sessions_per_user:
                return (f"user {user} has {mine} sessions open, the limit is "
                        f"{limits.max_sessions_per_user}")
            self.sessions[user] += 1
            return None

    def end_session(self, user: str, exempt: bool = False) -> None:
        """A session counted by begin_session ended."""
        with self._lock:
            counts = self.exempt if exempt else self.sessions
            counts[user] -= 1
            if counts[user] <= 0:
                del counts[user]


class LoginDelays:
    """Failed passwords per (source address, user name), and the delay each one costs.

    The n-th failure in a row costs login_delay * 2**(n-1) seconds, at most login_delay_max.
    Failures of one key on parallel connections queue behind each other (each waits for the
    previous one's delay to end, at most login_timeout in all), so more connections do not
    buy more guesses. A success, or login_delay_max * 4 seconds without failure, forgets the
    count. At most `capacity` keys are remembered (the oldest are forgotten first)."""

    def __init__(self, limits: ServerLimits, capacity: int = 10_000,
                 sleep: Callable[[float], None] = time.sleep,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.limits = limits
        self.capacity = capacity
        self.sleep, self.clock = sleep, clock
        self._lock = threading.Lock()
        #: (source, user) -> (failures in a row, time of the last, end of its delay)
        self._failures: dict[tuple[str, str], tuple[int, float, float]] = {}

    def failed(self, source: str, user: str) -> float:
        """Record a failure and wait its delay (on the caller's thread); the delay."""
        delay = self._record(source, user)
        if delay > 0:
            self.sleep(delay)
        return delay

    def succeeded(self, source: str, user: str) -> None:
        """Forget the failures of (source, user)."""
        with self._lock:
            self._failures.pop((source, user), None)

    def _record(self, source: str, user: str) -> float:
        limits = self.limits
        if not limits.login_delay:
            return 0.0
        now = self.clock()
        key = (source, user)
        with self._lock:
            count, last, release = self._failures.pop(key, (0, now, now))
            if now - last > 4 * max(limits.login_delay_max, limits.login_delay):
                count, release = 0, now
            count += 1
            own = limits.login_delay * 2 ** min(count - 1, 32)
            if limits.login_delay_max:
                own = min(own, limits.login_delay_max)
            until = max(now, release) + own
            if limits.login_timeout:
                until = min(until, now + limits.login_timeout)
            self._failures[key] = (count, now, until)
            while len(self._failures) > self.capacity:
                del self._failures[next(iter(self._failures))]
        return until - now


class AcceptBackoff:
    """Bounded, growing pauses after accept() failures; one WARNING per burst."""

    def __init__(self, first: float = 0.01, longest: float = 1.0,
                 sleep: Callable[[float], None] = time.sleep) -> None:
        self.first, self.longest, self.sleep = first, longest, sleep
        self.delay = 0.0
        self.failures = 0

    def failed(self, what: str, exc: BaseException) -> None:
        """One failure: log it if it starts a burst, then pause."""
        self.failures += 1
        if self.failures == 1:
            log.warning("%s failed (%s): pausing and accepting again", what, exc)
        self.delay = min(self.longest, self.delay * 2 if self.delay else self.first)
        self.sleep(self.delay)

    def succeeded(self) -> None:
        """A connection was accepted: end the burst (logging how long it was)."""
        if self.failures:
            log.warning("accepting again after %d failures", self.failures)
            self.failures, self.delay = 0, 0.0
