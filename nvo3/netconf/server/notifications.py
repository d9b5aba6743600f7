"""RFC 5277 event notifications: the NETCONF stream, its bounded replay log, subscriptions.

Notifications arrive as finished <notification> content (an lxml element of the notification's
own module, validated by the caller); the log keeps the newest `capacity` of them for replay,
serialized: 10,000 small notifications took 16.5 MB as lxml trees, they take under 4 MB as
bytes. Live subscribers get the element as it was published; a replay parses the bytes again.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime

from lxml import etree

from nvo3.common.clock import iso
from nvo3.netconf.proto.xml import NETMOD_NOTIF_NS, NOTIF_NS, qname

STREAM = "NETCONF"


def now() -> datetime:
    """The current time, in UTC."""
    return datetime.now(UTC)


def parse_time(text: str) -> datetime:
    """Parse an RFC 3339 date-and-time (raises ValueError)."""
    value = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    if value.tzinfo is None:
        raise ValueError(f"{text!r} has no time zone")
    return value


@dataclass(frozen=True)
class Notification:
    """One event notification of the stream: when it happened and its content."""

    time: datetime
    content: bytes                   # the notification's top element, serialized


def render(t: datetime, content: bytes) -> bytes:
    """The whole <notification> message for one notification's serialized content (a
    namespace-qualified element, as every YANG notification and RFC 5277 marker is)."""
    return b'<notification xmlns="%s"><eventTime>%s</eventTime>%s</notification>' % (
        NOTIF_NS.encode(), iso(t.timestamp()).encode(), content)


def _marker(name: str) -> bytes:
    return etree.tostring(etree.Element(qname(NETMOD_NOTIF_NS, name),
                                        nsmap={None: NETMOD_NOTIF_NS}))


@dataclass
class Subscription:
    """One session's subscription; `select` returns the filtered content or None."""

    send: Callable[[bytes], None]
    select: Callable[[etree._Element], etree._Element | None]
    start: datetime | None = None
    stop: datetime | None = None
    done: bool = False
    on_done: Callable[[], None] = field(default=lambda: None)
    #: when set, a live notification is filtered and sent by what this queues (the
    #: session's own output thread), not on the publisher's thread: (produce, size)
    send_later: Callable[[Callable[[], bytes | None], int], None] | None = None

    def deliver(self, notification: Notification, content: etree._Element | None = None,
                ) -> None:
        """Send one notification if it passes the filter; end at the stop time. `content`:
        the notification's element when the caller holds it (live), else it is parsed from
        the serialized content (replay)."""
        if self.done:
            return
        if self.stop is not None and notification.time > self.stop:
            self.finish(notification.time)
            return
        if self.send_later is not None and content is not None:
            self.send_later(lambda: self._selected(notification, None), len(notification.content))
            return
        message = self._selected(notification, content)
        if message is not None:
            self.send(message)

    def _selected(self, notification: Notification, content: etree._Element | None,
                  ) -> bytes | None:
        """The <notification> message if the filter passes it, else None."""
        element = etree.fromstring(notification.content) if content is None else content
        selected = self.select(element)
        if selected is None:
            return None
        xml = (notification.content if selected is element
               else etree.tostring(selected, with_tail=False))
        return render(notification.time, xml)

    def finish(self, t: datetime) -> None:
        """End the subscription with notificationComplete (once)."""
        if not self.done:
            self.done = True
            self.send(render(t, _marker("notificationComplete")))
            self.on_done()


class EventLog:
    """The NETCONF stream: a bounded replay log and the live subscriptions."""

    def __init__(self, capacity: int = 10_000):
        self.events: deque[Notification] = deque(maxlen=capacity)
        self.subscriptions: list[Subscription] = []
        self.lock = threading.Lock()
        self.created = now()

    def publish(self, content: etree._Element) -> int:
        """Log a notification and send it to every live subscription; returns deliveries."""
        notification = Notification(now(), etree.tostring(content, with_tail=False))
        with self.lock:
            self.events.append(notification)
            subs = list(self.subscriptions)
        for sub in subs:
            sub.deliver(notification, content)
        return len(subs)

    def subscribe(self, sub: Subscription) -> None:
        """Replay from `sub.start` (then replayComplete), then go live."""
        with self.lock:
            replay = [e for e in self.events if sub.start is not None and e.time >= sub.start]
            if sub.start is not None:
                for notification in replay:
                    if sub.stop is not None and notification.time > sub.stop:
                        break
                    sub.deliver(notification)
                sub.send(render(now(), _marker("replayComplete")))
                if sub.stop is not None and sub.stop <= now():
                    sub.finish(now())
                    return
            self.subscriptions.append(sub)
        if sub.stop is not None:
            delay = max(0.0, (sub.stop - now()).total_seconds())
            timer = threading.Timer(delay, self._expire, args=(sub,))
            timer.daemon = True
            timer.start()

    def _expire(self, sub: Subscription) -> None:
        self.unsubscribe(sub)
        sub.finish(now())

    def unsubscribe(self, sub: Subscription) -> None:
        """Stop sending live notifications to `sub`."""
        with self.lock:
            if sub in self.subscriptions:
                self.subscriptions.remove(sub)
