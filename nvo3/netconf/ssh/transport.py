"""The contract between the transport (SSH edge) and the engine, and one session's loop.

The engine implements :class:`SessionFactory` and :class:`SessionHandler`; the transport gives
each session a :class:`MessageSink`. :func:`run_session` drives one NETCONF session over an
already authenticated SSH channel: server hello (with the session-id the engine assigned),
client hello within a deadline, framing negotiation, then every complete message goes to
``handler.on_message``; ``handler.on_close`` is called exactly once when the session ends,
whoever ended it.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any, Protocol

import paramiko

from nvo3.netconf.limits import ServerLimits
from nvo3.netconf.proto.framing import (
    DEFAULT_MAX_MESSAGE_SIZE,
    Base,
    FrameDecoder,
    FramingError,
    HelloError,
    build_hello,
    encode,
    negotiate,
    parse_client_hello,
)
from nvo3.netconf.ssh.outbox import Outbox

log = logging.getLogger(__name__)

RECV_SIZE = 65536
CLOSE_GRACE_S = 0.2   # a closing session waits this long for the client to hang up
DRAIN_S = 5.0         # a closing session sends its queued output within this long
RECV_TICK = 1.0       # the reader wakes this often (idle timeout); the writer checks stalls
HELLO_TIMEOUT = 30.0


class MessageSink(Protocol):
    """Implemented by the transport, given to the engine."""

    def send(self, message: bytes) -> None:
        """Thread-safe; framed per negotiated base; no-op on a closed session."""

    def close(self) -> None:
        """End the SSH session; idempotent."""

    # optional: `send_later(produce, size)`, where `produce()` returns a message or None,
    # run when the session's output gets to it (on its writer, not the caller's thread)


class SessionHandler(Protocol):
    """Implemented by the engine, one per session."""

    session_id: int

    def on_message(self, message: bytes) -> None:
        """One complete <rpc> document; reply through the sink, from any thread."""

    def on_close(self) -> None:
        """The transport is gone; called exactly once."""

    # optional: `subscribed` (bool), True while a live subscription exempts the session from
    # the idle timeout


class SessionFactory(Protocol):
    """Implemented by the engine."""

    def capabilities(self) -> list[str]:
        """Server capability URIs for the hello (base:1.0 and base:1.1 included)."""

    def open_session(self, username: str, peer: tuple[str, int],
                     sink: MessageSink) -> SessionHandler:
        """Create a session and assign its session-id."""


class SessionLog(logging.LoggerAdapter[logging.Logger]):
    """Prefixes every line with peer, user and session-id (set in `context` once known)."""

    def __init__(self, logger: logging.Logger, context: dict[str, Any]) -> None:
        super().__init__(logger, context)
        self.context = context

    def process(self, msg: Any, kwargs: Any) -> tuple[Any, Any]:
        """`msg` with the session's context in front."""
        ctx = self.context
        peer = ctx.get("peer") or ("?", 0)
        return (f"[peer={peer[0]}:{peer[1]} user={ctx.get('user', '-')} "
                f"sid={ctx.get('sid', '-')}] {msg}", kwargs)


class ChannelSink:
    """A :class:`MessageSink` over one paramiko channel (the "netconf" subsystem): `send`
    only queues (see :mod:`nvo3.netconf.ssh.outbox`); a client that falls too far behind is
    dropped with a WARNING saying why."""

    def __init__(self, channel: paramiko.Channel, slog: SessionLog,
                 limits: ServerLimits | None = None) -> None:
        self.channel = channel
        self.version = Base.V10
        self.log = slog
        self.limits = limits or ServerLimits()
        self._lock = threading.Lock()
        self._closed = False
        self._closing = False
        channel.settimeout(RECV_TICK)
        self.outbox = Outbox(channel, self.limits, self._dropped,
                             name=f"netconf-writer-{slog.context['peer'][1]}")

    @property
    def closed(self) -> bool:
        """True once the session was closed by either side."""
        return self._closed

    def send(self, message: bytes) -> None:
        """Frame and queue one message; a send on a closed session is dropped."""
        if self._closed:
            self.log.debug("dropping %d-byte message: session closed", len(message))
            return
        self.outbox.put(encode(message, self.version))

    def send_later(self, produce: Callable[[], bytes | None], size: int) -> None:
        """Queue a message made by `produce()` on the writer's thread (None: no message);
        `size`: what it counts for against the output limits until then."""
        if self._closed:
            return

        def framed() -> bytes | None:
            try:
                message = produce()
            except Exception:          # a bug in one notification must not end the writer
                self.log.exception("building a deferred message failed")
                return None
            return None if message is None else encode(message, self.version)
        self.outbox.put(framed, size)

    def _dropped(self, reason: str, lagging: bool) -> None:
        """The outbox gave up on the client: end the connection without waiting for it."""
        if lagging:
            self.log.warning("dropping the session: %s", reason)
        else:
            self.log.info("closing the session: %s", reason)
        self._closed = True
        transport = self.channel.get_transport()
        if transport is not None:      # closing may wait for the writer: not on this thread
            threading.Thread(target=transport.close, daemon=True).start()

    def close(self) -> None:
        """End the SSH connection (channel and transport); idempotent.

        Gracefully (RFC 6241 close-session): queued output is sent first (for at most
        DRAIN_S), the channel closes and the client gets CLOSE_GRACE_S to close the
        connection itself.  Closing the socket at once, with the client's last packets still
        unread, makes the kernel send a reset, which clients (paramiko under ncclient and
        Ansible) log as an ERROR."""
        with self._lock:
            first, self._closing, self._closed = not self._closing, True, True
        if not first:
            return
        transport = self.channel.get_transport()
        if not self.outbox.drain(min(DRAIN_S, self.limits.send_timeout or DRAIN_S)):
            if transport is not None:
                transport.close()
            return
        self.log.info("closing SSH session")
        try:
            self.channel.close()
        except (OSError, EOFError, paramiko.SSHException) as exc:
            self.log.info("closing the channel: %s", exc)
        if transport is None:
            return
        deadline = time.monotonic() + CLOSE_GRACE_S
        while transport.is_active() and time.monotonic() < deadline:
            time.sleep(0.01)
        transport.close()


def _read_hello(channel: paramiko.Channel, decoder: FrameDecoder, timeout: float) -> bytes:
    deadline = time.monotonic() + timeout
    while True:
        msg = decoder.next_message()
        if msg is not None:
            return msg
        left = deadline - time.monotonic()
        if left <= 0:
            raise HelloError(f"no client hello within {timeout:g} s")
        channel.settimeout(left)
        try:
            data = channel.recv(RECV_SIZE)
        except TimeoutError as exc:
            raise HelloError(f"no client hello within {timeout:g} s") from exc
        if not data:
            raise HelloError("channel closed before the client hello")
        decoder.receive_data(data)


def run_session(channel: paramiko.Channel, factory: SessionFactory, username: str,
                peer: tuple[str, int], hello_timeout: float = HELLO_TIMEOUT,
                on_sink: Any = None, limits: ServerLimits | None = None) -> None:
    """Serve one NETCONF session on `channel` until either side ends it; never raises.

    `on_sink`, if given, is called with the sink before the engine sees it (the server keeps
    it to close the session on shutdown). `limits`: message size, output queue, idle timeout.
    """
    limits = limits or ServerLimits()
    slog = SessionLog(log, {"peer": peer, "user": username})
    sink = ChannelSink(channel, slog, limits)
    if on_sink is not None:
        on_sink(sink)
    try:
        handler = factory.open_session(username, peer, sink)
    except Exception:
        slog.exception("engine refused to open a session")
        sink.close()
        return
    slog.context["sid"] = handler.session_id
    try:
        _serve(channel, factory, handler, sink, hello_timeout, slog, limits)
    except (HelloError, FramingError) as exc:
        if channel.closed or channel.eof_received:     # the client went away: ordinary
            slog.info("client disconnected: %s", exc)
        else:
            slog.warning("protocol error, closing session: %s", exc)
    except (OSError, EOFError, paramiko.SSHException) as exc:
        slog.info("transport lost: %s", exc or type(exc).__name__)
    except Exception:
        slog.exception("unexpected error in session reader")
    finally:
        sink.close()
        try:
            handler.on_close()
        except Exception:
            slog.exception("engine on_close failed")
        slog.info("session ended")


def _serve(channel: paramiko.Channel, factory: SessionFactory, handler: SessionHandler,
           sink: ChannelSink, hello_timeout: float, slog: SessionLog,
           limits: ServerLimits) -> None:
    ours = factory.capabilities()
    sink.send(build_hello(ours, handler.session_id))
    decoder = FrameDecoder(Base.V10, limits.max_message_size or DEFAULT_MAX_MESSAGE_SIZE)
    theirs = parse_client_hello(_read_hello(channel, decoder, hello_timeout))
    version = negotiate(ours, theirs)
    sink.version = decoder.version = version
    channel.settimeout(RECV_TICK)
    slog.info("session open, framing %s", "base:1.1 chunked" if version is Base.V11
              else "base:1.0 end-of-message")
    last_rpc = time.monotonic()
    while True:
        while (msg := decoder.next_message()) is not None:
            handler.on_message(msg)
            last_rpc = time.monotonic()
        if sink.closed:
            return
        try:
            data = channel.recv(RECV_SIZE)
        except TimeoutError:
            idle = time.monotonic() - last_rpc
            if getattr(handler, "subscribed", False):
                last_rpc = time.monotonic()       # a subscriber is never idle
            elif limits.idle_timeout and idle > limits.idle_timeout:
                slog.info("no RPC for %.0f s (idle timeout %g s): closing the session",
                          idle, limits.idle_timeout)
                return
            continue
        if not data:
            slog.info("peer closed the channel")
            return
        decoder.receive_data(data)
