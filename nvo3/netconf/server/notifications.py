"""RFC 5277 event notifications: the NETCONF stream, its bounded replay log, subscriptions.

Notifications arrive as finished <notification> content (an lxml element of the notification's
own module, validated by the caller); the log keeps the newest `capacity` of them for replay.
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
    content: etree._Element          # the notification's top element (never mutated)


def render(notification: Notification) -> bytes:
    """The whole <notification> message for one notification."""
    msg = etree.Element(qname(NOTIF_NS, "notification"), nsmap={None: NOTIF_NS})
    etree.SubElement(msg, qname(NOTIF_NS, "eventTime")).text = iso(notification.time.timestamp())
    msg.append(etree.fromstring(etree.tostring(notification.content)))
    return etree.tostring(msg)


def _marker(name: str, t: datetime) -> Notification:
    return Notification(t, etree.Element(qname(NETMOD_NOTIF_NS, name),
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

    def deliver(self, notification: Notification) -> None:
        """Send one notification if it passes the filter; end at the stop time."""
        if self.done:
            return
        if self.stop is not None and notification.time > self.stop:
            self.finish(notification.time)
            return
        content = self.select(notification.content)
        if content is not None:
            self.send(render(Notification(notification.time, content)))

    def finish(self, t: datetime) -> None:
        """End the subscription with notificationComplete (once)."""
        if not self.done:
            self.done = True
            self.send(render(_marker("notificationComplete", t)))
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
        notification = Notification(now(), content)
        with self.lock:
            self.events.append(notification)
            subs = list(self.subscriptions)
        for sub in subs:
            sub.deliver(notification)
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
                sub.send(render(_marker("replayComplete", now())))
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
