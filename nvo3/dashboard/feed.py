"""One person's event feed: what the nDirector(s) notified and what the portal did, kept in a
bounded log and handed to the browser's open event streams (server-sent events).

Events are plain dicts (JSON for the browser) with an increasing ``id``. A move's
``convergence-us`` (the nDirector's push until every NVE acknowledged it) is read shortly after
the move's notification and sent as an ``annotate`` event for the same id; a move made through
the portal also carries the vCenter's ``duration-ms``.
"""

from __future__ import annotations

import logging
import queue
import threading
from collections import deque
from collections.abc import Callable
from typing import Any

from lxml import etree

from nvo3.common.clock import iso
from nvo3.common.names import NDIRECTOR
from nvo3.roles.peers import codec

log = logging.getLogger(__name__)

Event = dict[str, Any]
KEEP = 2000                    # events kept per person
LISTENER_BACKLOG = 1000        # events waiting for one browser stream before it is dropped
SAMPLE_DELAY_S = 0.5           # after a move's notification, when its convergence is read

_NC_NOTIF = "urn:ietf:params:xml:ns:netconf:notification:1.0"


class Feed:
    """The bounded event log of one session and its listeners (thread-safe)."""

    def __init__(self, convergence: Callable[[], int | None] | None = None) -> None:
        self._lock = threading.Lock()
        self._events: deque[Event] = deque(maxlen=KEEP)
        self._listeners: list[queue.Queue[Event]] = []
        self._next = 1
        self._convergence = convergence
        self.closed = False

    # producing -----------------------------------------------------------------------------
    def add(self, event: Event) -> Event:
        """Append `event` (an id and a time are added) and wake every listener."""
        with self._lock:
            event = {"id": self._next, "time": event.get("time") or iso(), **event}
            self._next += 1
            self._events.append(event)
            self._publish(event)
        return event

    def _publish(self, event: Event) -> None:
        for q in list(self._listeners):
            try:
                q.put_nowait(event)
            except queue.Full:          # a stream that stopped reading: let it go
                self._listeners.remove(q)

    def nudge(self) -> None:
        """Tell the listeners to re-read their views (nothing is logged: the nudge carries no
        content, each view is read again with this person's own credentials)."""
        with self._lock:
            self._publish({"kind": "refresh"})

    def annotate(self, event_id: int, **values: Any) -> None:
        """Add `values` to a logged event and tell the listeners."""
        with self._lock:
            for e in self._events:
                if e["id"] == event_id:
                    e.update(values)
                    self._publish({"kind": "annotate", "ref": event_id, **values})
                    return

    def on_notification(self, ndirector: str, message: etree._Element) -> None:
        """A <notification> from `ndirector` (called on its session thread: no I/O here)."""
        parsed = codec.notification(message)
        if parsed is None or parsed[0] != NDIRECTOR:
            return
        _, name, content = parsed
        when = message.findtext(f"{{{_NC_NOTIF}}}eventTime")
        event = _event_of(ndirector, name, content)
        if event is None:
            return
        if when:
            event["time"] = when
        added = self.add(event)
        if added["kind"] == "moved" and self._convergence is not None:
            timer = threading.Timer(SAMPLE_DELAY_S, self._sample, args=(added["id"],))
            timer.daemon = True
            timer.start()

    def _sample(self, event_id: int) -> None:
        if self.closed or self._convergence is None:
            return
        try:
            value = self._convergence()
        except Exception:      # the session went away meanwhile: the move keeps no figure
            log.debug("dashboard: convergence read failed", exc_info=True)
            return
        if value is not None:
            self.annotate(event_id, **{"convergence-us": value})

    # consuming -----------------------------------------------------------------------------
    @property
    def last_id(self) -> int:
        """The id of the newest event (0: none yet)."""
        with self._lock:
            return self._next - 1

    def events(self, since: int = 0) -> list[Event]:
        with self._lock:
            return [e for e in self._events if e["id"] > since]

    def listen(self) -> queue.Queue[Event]:
        q: queue.Queue[Event] = queue.Queue(LISTENER_BACKLOG)
        with self._lock:
            self._listeners.append(q)
        return q

    def unlisten(self, q: queue.Queue[Event]) -> None:
        with self._lock:
            if q in self._listeners:
                self._listeners.remove(q)

    def close(self) -> None:
        """Wake every stream so it ends (logout, expiry)."""
        self.closed = True
        with self._lock:
            for q in self._listeners:
                try:
                    q.put_nowait({"kind": "closed"})
                except queue.Full:
                    pass
            self._listeners.clear()


def _event_of(ndirector: str, name: str, c: dict[str, Any]) -> Event | None:
    """The feed event of one nDirector notification (None for one the dashboard ignores)."""
    if name == "mapping-changed":
        event: Event = {"kind": str(c.get("change")), "source": ndirector,
                        "vni": c.get("vni"), "mac": c.get("mac"), "nve": c.get("nve"),
                        "vtep-address": c.get("vtep-address"),
                        "ip-address": list(c.get("ip-address") or [])}
        if c.get("previous-nve"):
            event["previous-nve"] = c["previous-nve"]
        return event
    if name == "nve-state-change":
        return {"kind": "nve-state", "source": ndirector, "nve": c.get("nve"),
                "state": c.get("state"), "previous-state": c.get("previous-state"),
                "reason": c.get("reason")}
    if name == "duplicate-mac-detected":
        return {"kind": "duplicate-mac", "source": ndirector, "vni": c.get("vni"),
                "mac": c.get("mac"), "nve": list(c.get("nve") or [])}
    return None
