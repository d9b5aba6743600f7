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
from typing import Any, Protocol

import paramiko

from nvo3.netconf.proto.framing import (
    Base,
    FrameDecoder,
    FramingError,
    HelloError,
    build_hello,
    encode,
    negotiate,
    parse_client_hello,
)

log = logging.getLogger(__name__)

RECV_SIZE = 65536
CLOSE_GRACE_S = 0.2   # a closing session waits this long for the client to hang up
HELLO_TIMEOUT = 30.0


class MessageSink(Protocol):
    """Implemented by the transport, given to the engine."""

    def send(self, message: bytes) -> None:
        """Thread-safe; framed per negotiated base; no-op on a closed session."""

    def close(self) -> None:
        """End the SSH session; idempotent."""


class SessionHandler(Protocol):
    """Implemented by the engine, one per session."""

    session_id: int

    def on_message(self, message: bytes) -> None:
        """One complete <rpc> document; reply through the sink, from any thread."""

    def on_close(self) -> None:
        """The transport is gone; called exactly once."""


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
    """A :class:`MessageSink` over one paramiko channel (the "netconf" subsystem)."""

    def __init__(self, channel: paramiko.Channel, slog: SessionLog) -> None:
        self.channel = channel
        self.version = Base.V10
        self.log = slog
        self._lock = threading.Lock()
        self._closed = False

    @property
    def closed(self) -> bool:
        """True once the session was closed by either side."""
        return self._closed

    def send(self, message: bytes) -> None:
        """Frame and write one message; a send on a closed session is dropped."""
        with self._lock:
            if self._closed:
                self.log.debug("dropping %d-byte message: session closed", len(message))
                return
            try:
                self.channel.sendall(encode(message, self.version))
            except (OSError, EOFError, paramiko.SSHException) as exc:
                self.log.info("send failed, closing session: %s", exc)
                self._close_locked()

    def close(self) -> None:
        """End the SSH connection (channel and transport); idempotent.

        Gracefully (RFC 6241 close-session): the channel closes first and the client gets
        CLOSE_GRACE_S to close the connection itself.  Closing the socket at once, with the
        client's last packets still unread, makes the kernel send a reset, which clients
        (paramiko under ncclient and Ansible) log as an ERROR."""
        with self._lock:
            transport = self._close_locked(close_transport=False)
        if transport is None:
            return
        deadline = time.monotonic() + CLOSE_GRACE_S
        while transport.is_active() and time.monotonic() < deadline:
            time.sleep(0.01)
        transport.close()

    def _close_locked(self, close_transport: bool = True) -> paramiko.Transport | None:
        """Close the channel (and the transport unless told not to); the transport to close
        later, if any."""
        if self._closed:
            return None
        self._closed = True
        self.log.info("closing SSH session")
        transport = self.channel.get_transport()
        try:
            self.channel.close()
        finally:
            if transport is not None and close_transport:
                transport.close()
        return None if close_transport else transport


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
                on_sink: Any = None) -> None:
    """Serve one NETCONF session on `channel` until either side ends it; never raises.

    `on_sink`, if given, is called with the sink before the engine sees it (the server keeps
    it to close the session on shutdown).
    """
    slog = SessionLog(log, {"peer": peer, "user": username})
    sink = ChannelSink(channel, slog)
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
        _serve(channel, factory, handler, sink, hello_timeout, slog)
    except (HelloError, FramingError) as exc:
        if channel.closed or channel.eof_received:     # the client went away: ordinary
            slog.info("client disconnected: %s", exc)
        else:
            slog.warning("protocol error, closing session: %s", exc)
    except (OSError, EOFError, paramiko.SSHException) as exc:
        slog.info("transport lost: %s", exc)
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
           sink: ChannelSink, hello_timeout: float, slog: SessionLog) -> None:
    ours = factory.capabilities()
    sink.send(build_hello(ours, handler.session_id))
    decoder = FrameDecoder(Base.V10)
    theirs = parse_client_hello(_read_hello(channel, decoder, hello_timeout))
    version = negotiate(ours, theirs)
    sink.version = decoder.version = version
    channel.settimeout(None)
    slog.info("session open, framing %s", "base:1.1 chunked" if version is Base.V11
              else "base:1.0 end-of-message")
    while True:
        while (msg := decoder.next_message()) is not None:
            handler.on_message(msg)
        if sink.closed:
            return
        data = channel.recv(RECV_SIZE)
        if not data:
            slog.info("peer closed the channel")
            return
        decoder.receive_data(data)
