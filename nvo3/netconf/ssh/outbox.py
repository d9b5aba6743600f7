"""One session's output: a bounded queue of framed messages and the writer thread draining it.

Whoever produces output (the session's reader answering an RPC, a publisher delivering a
notification, under the engine's lock or not) only appends to the queue, so a client that
stops reading stalls nobody else. Its writer alone waits on the SSH window. A client that falls
too far behind -- more than `output_queue_bytes` or `output_queue_messages` unsent, or no output
accepted for `send_timeout` seconds while some waits -- is dropped: `on_drop(reason, lagging)`
is called once, from whichever thread noticed, and must not block (`lagging` is False when the
connection simply failed under the writer: the client went away).
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable

import paramiko

from nvo3.netconf.limits import ServerLimits

SEND_CHUNK = 32768     # what one channel.send offers; the window decides what it takes

#: what the writer produces on its own thread when it comes to it: framed bytes, or None to
#: send nothing (a notification its subscriber's filter drops)
Producer = Callable[[], "bytes | None"]


class Outbox:
    """A bounded output queue over one paramiko channel, written by its own thread."""

    def __init__(self, channel: paramiko.Channel, limits: ServerLimits,
                 on_drop: Callable[[str, bool], None], name: str = "netconf-writer") -> None:
        self.channel = channel
        self.limits = limits
        self.on_drop = on_drop
        self._queue: deque[tuple[bytes | Producer, int]] = deque()
        self._bytes = 0               # queued plus the message being written
        self._cond = threading.Condition()
        self._stopping = False        # no more input; the writer ends when the queue is empty
        self._aborted = False         # the writer ends now
        self._dropped = False
        self._blocked_since: float | None = None
        self._writing = False
        self._thread = threading.Thread(target=self._run, daemon=True, name=name)
        self._thread.start()

    @property
    def dropped(self) -> bool:
        """True once the client was dropped for falling behind."""
        return self._dropped

    def put(self, data: bytes | Producer, size: int | None = None) -> bool:
        """Queue one framed message, or a producer of one (run on the writer's thread, counted
        as `size` bytes); False (and the client dropped) when over a limit."""
        limits = self.limits
        if size is None:
            size = len(data) if isinstance(data, bytes) else 0
        with self._cond:
            if self._stopping or self._aborted:
                return False
            reason = None
            if limits.output_queue_bytes and self._bytes + size > limits.output_queue_bytes:
                reason = (f"{self._bytes + size} bytes of output waiting, over the limit "
                          f"of {limits.output_queue_bytes}")
            elif limits.output_queue_messages and len(self._queue) >= limits.output_queue_messages:
                reason = (f"{len(self._queue) + 1} messages waiting, over the limit of "
                          f"{limits.output_queue_messages}")
            elif self._stalled_for() > limits.send_timeout > 0:
                reason = f"client accepted no output for {self._stalled_for():.0f} s"
            if reason is None:
                self._queue.append((data, size))
                self._bytes += size
                self._cond.notify()
                return True
        self._drop(reason)
        return False

    def drain(self, timeout: float) -> bool:
        """Accept no more output, let the writer send what is queued; True when all was sent
        within `timeout` seconds (else the writer is stopped)."""
        with self._cond:
            self._stopping = True
            self._cond.notify()
        self._thread.join(timeout)
        if self._thread.is_alive():
            self.abort()
            return False
        return not self._dropped

    def abort(self) -> None:
        """Stop the writer without sending what is queued (it ends when its send returns)."""
        with self._cond:
            self._aborted = True
            self._queue.clear()
            self._cond.notify()

    def _stalled_for(self) -> float:
        since = self._blocked_since
        return 0.0 if since is None else time.monotonic() - since

    def _drop(self, reason: str, lagging: bool = True) -> None:
        with self._cond:
            if self._dropped:
                return
            self._dropped = True
        self.abort()
        self.on_drop(reason, lagging)

    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._queue and not (self._stopping or self._aborted):
                    self._cond.wait()
                if self._aborted or not self._queue:
                    return
                item, size = self._queue.popleft()
            data = item if isinstance(item, bytes) else item()
            try:
                sent = data is None or self._write(data)
            except (OSError, EOFError, paramiko.SSHException) as exc:
                self._drop(f"send failed: {exc or type(exc).__name__}", lagging=False)
                return
            with self._cond:
                self._bytes -= size
            if not sent:
                return

    def _write(self, data: bytes) -> bool:
        """Send all of `data`; False when the writer must stop (aborted, channel closed, or the
        client dropped for accepting nothing for send_timeout)."""
        view = memoryview(data)
        while view:
            if self._aborted:
                return False
            if self._blocked_since is None:
                self._blocked_since = time.monotonic()
            try:
                n = self.channel.send(bytes(view[:SEND_CHUNK]))
            except TimeoutError:           # the channel's timeout: the window stayed shut
                if self._stalled_for() > self.limits.send_timeout > 0:
                    self._drop(f"client accepted no output for {self._stalled_for():.0f} s")
                    return False
                continue
            if n == 0:
                return False               # channel closed
            self._blocked_since = None
            view = view[n:]
        return True
