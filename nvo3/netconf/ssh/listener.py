"""NETCONF over SSH server (RFC 6242): our own listener, paramiko for SSH, our framing.

We own the listening socket instead of ``sshutil.server.SSHServer`` (which the `netconf` package's
``NetconfSSHServer`` is built on) because that one binds ``('::', port)`` on every interface; we
bind only the configured IPv4/IPv6 literal. Authentication is against :class:`UserStore`
(password and public key), only ``session`` channels and only the ``netconf`` subsystem are
accepted, and a connection that has not authenticated and requested the subsystem within
``auth_timeout`` is dropped. Each SSH connection carries one NETCONF session, served by
:func:`nvo3.netconf.ssh.transport.run_session` on its own thread.
"""

from __future__ import annotations

import ipaddress
import logging
import os
import selectors
import socket
import threading
import time
from collections.abc import Callable
from pathlib import Path

import paramiko
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519

from nvo3.netconf.limits import ServerLimits
from nvo3.netconf.ssh import algorithms, disconnects
from nvo3.netconf.ssh.admission import FATAL_ACCEPT_ERRNOS, AcceptBackoff, Admission, LoginDelays
from nvo3.netconf.ssh.transport import HELLO_TIMEOUT, ChannelSink, SessionFactory, SessionLog, run_session
from nvo3.netconf.ssh.users import UserStore

log = logging.getLogger(__name__)

SUBSYSTEM = "netconf"


def load_or_create_host_key(path: Path) -> paramiko.PKey:
    """Load the host key at `path`, creating an Ed25519 key (mode 0600) on first use."""
    path = Path(path)
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        pem = ed25519.Ed25519PrivateKey.generate().private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.OpenSSH,
            serialization.NoEncryption())
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(pem)
            f.flush()
            os.fsync(f.fileno())
        log.info("generated Ed25519 host key %s", path)
    mode = path.stat().st_mode & 0o777
    if mode & 0o077:
        log.warning("host key %s had mode %o; setting 0600", path, mode)
        path.chmod(0o600)
    return paramiko.PKey.from_path(path)


def host_key_line(key: paramiko.PKey) -> str:
    """The public host key as ``type base64`` (what a client stores as the expected key)."""
    return f"{key.get_name()} {key.get_base64()}"


class _Interface(paramiko.ServerInterface):
    """Authentication and channel policy for one SSH connection."""

    def __init__(self, users: UserStore, slog: SessionLog, delays: LoginDelays) -> None:
        self.users = users
        self.log = slog
        self.delays = delays
        self.source = slog.context["peer"][0]
        self.username: str | None = None
        self.requested = threading.Event()   # set when the netconf subsystem is granted
        self.netconf = False                 # True once the netconf subsystem was granted
        self._channels = 0

    def get_allowed_auths(self, username: str) -> str:
        return "publickey,password"     # the same for every name: existence is not revealed

    def check_auth_password(self, username: str, password: str) -> int:
        if self.users.check_password(username, password):
            self.delays.succeeded(self.source, username)
            return self._success(username, "password")
        delay = self.delays.failed(self.source, username)   # this connection waits, alone
        self.log.warning("password authentication failed for %r (delayed %.1f s)", username,
                         delay)
        return paramiko.AUTH_FAILED

    def check_auth_publickey(self, username: str, key: paramiko.PKey) -> int:
        if self.users.check_public_key(username, key):
            return self._success(username, f"publickey {key.get_name()}")
        self.log.info("public key %s not accepted for %r", key.get_name(), username)
        return paramiko.AUTH_FAILED

    def _success(self, username: str, method: str) -> int:
        self.username = username
        self.log.context["user"] = username
        self.log.info("authenticated by %s", method)
        return paramiko.AUTH_SUCCESSFUL

    def check_channel_request(self, kind: str, chanid: int) -> int:
        if kind != "session" or self._channels:
            self.log.warning("refused channel %r (one session channel per connection)", kind)
            return paramiko.OPEN_FAILED_ADMINISTRATIVELY_PROHIBITED
        self._channels += 1
        return paramiko.OPEN_SUCCEEDED

    def check_channel_subsystem_request(self, channel: paramiko.Channel, name: str) -> bool:
        if name != SUBSYSTEM or self.netconf:
            self.log.warning("refused subsystem %r", name)
            return False   # the client may still ask for "netconf" until auth_timeout
        self.netconf = True
        self.requested.set()
        return True

    def check_channel_shell_request(self, channel: paramiko.Channel) -> bool:
        self.log.warning("refused shell request")
        return False

    def check_channel_exec_request(self, channel: paramiko.Channel, command: bytes) -> bool:
        self.log.warning("refused exec request")
        return False


class SshServer:
    """Listens on one address and serves NETCONF sessions to the engine's factory;
    `after_connection`, if given, runs on each connection's thread once it has ended and its
    session's objects are released."""

    def __init__(self, factory: SessionFactory, users: UserStore, host_key_path: Path,
                 host: str = "127.0.0.1", port: int = 830, *, auth_timeout: float | None = None,
                 hello_timeout: float = HELLO_TIMEOUT,
                 after_connection: Callable[[], None] | None = None,
                 limits: ServerLimits | None = None) -> None:
        try:
            self._family = (socket.AF_INET6 if ipaddress.ip_address(host).version == 6
                            else socket.AF_INET)
        except ValueError as exc:
            raise ValueError(f"bind address must be an IPv4 or IPv6 literal: {host!r}") from exc
        self.factory, self.users = factory, users
        self.host_key_path = Path(host_key_path)
        self.host, self.port = host, port
        self.limits = limits = limits or ServerLimits()
        self.auth_timeout = limits.login_timeout if auth_timeout is None else auth_timeout
        self.hello_timeout = hello_timeout
        self.admission = Admission(limits)
        self.login_delays = LoginDelays(limits)
        self._refused_pending = 0
        self.after_connection = after_connection
        self.host_key: paramiko.PKey | None = None
        self._sock: socket.socket | None = None
        self._wake_r, self._wake_w = socket.socketpair()
        self._stopping = threading.Event()
        self._lock = threading.Lock()
        self._threads: set[threading.Thread] = set()
        self._transports: set[paramiko.Transport] = set()
        self._sinks: set[ChannelSink] = set()
        self._acceptor: threading.Thread | None = None

    def start(self) -> None:
        """Load/create the host key, bind, listen; returns once bound (see :attr:`port`)."""
        disconnects.install()
        self.host_key = load_or_create_host_key(self.host_key_path)
        sock = socket.socket(self._family, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if self._family == socket.AF_INET6:
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        try:
            sock.bind((self.host, self.port))
            sock.listen(64)
        except OSError:
            sock.close()
            raise
        self._sock = sock
        self.port = sock.getsockname()[1]
        self._acceptor = threading.Thread(target=self._accept_loop, daemon=True,
                                          name=f"netconf-ssh-accept-{self.port}")
        self._acceptor.start()
        log.info("NETCONF/SSH listening on %s port %d, host key %s", self.host, self.port,
                 host_key_line(self.host_key))

    @property
    def address(self) -> tuple[str, int]:
        """The address the listening socket is bound to (after :meth:`start`)."""
        if self._sock is None:
            raise RuntimeError("server not started")
        host, port = self._sock.getsockname()[:2]
        return str(host), int(port)

    def accepting(self) -> bool:
        """True while the socket listens and the accept loop runs (health checks)."""
        return self._sock is not None and self._acceptor is not None \
            and self._acceptor.is_alive() and not self._stopping.is_set()

    def stop(self, timeout: float = 5.0) -> None:
        """Close the listener and every session; join threads within about `timeout` s."""
        self._stopping.set()
        self._wake_w.send(b"x")
        deadline = time.monotonic() + timeout
        if self._acceptor is not None:
            self._acceptor.join(max(0.0, deadline - time.monotonic()))
        with self._lock:
            sinks, transports = list(self._sinks), list(self._transports)
        closers = [threading.Thread(target=sink.close, daemon=True) for sink in sinks]
        for closer in closers:      # in parallel: a stalled client's drain delays no other
            closer.start()
        for closer in closers:
            closer.join(max(0.0, deadline - time.monotonic()))
        for transport in transports:
            transport.close()
        with self._lock:
            threads = list(self._threads)
        for thread in threads:
            thread.join(max(0.0, deadline - time.monotonic()))
        left = [t.name for t in threads if t.is_alive()]
        if left:
            log.warning("threads still running after stop: %s", ", ".join(left))
        log.info("NETCONF/SSH server on %s port %d stopped", self.host, self.port)

    def _accept_loop(self) -> None:
        assert self._sock is not None
        sel = selectors.DefaultSelector()
        sel.register(self._sock, selectors.EVENT_READ)
        sel.register(self._wake_r, selectors.EVENT_READ)
        backoff = AcceptBackoff()
        try:
            while not self._stopping.is_set():
                for key, _ in sel.select():
                    if key.fileobj is self._sock and not self._stopping.is_set():
                        self._accept_one(backoff)
        except OSError as exc:
            if not self._stopping.is_set():
                log.error("listener on %s port %d failed: %s", self.host, self.port, exc)
        finally:
            sel.close()
            self._sock.close()

    def _accept_one(self, backoff: AcceptBackoff) -> None:
        """Accept one connection; out of file descriptors, memory or threads, pause and go on
        (the listener closes only when its own socket is broken)."""
        assert self._sock is not None
        try:
            conn, addr = self._sock.accept()
        except OSError as exc:
            if exc.errno in FATAL_ACCEPT_ERRNOS:
                raise
            backoff.failed(f"accept on port {self.port}", exc)
            return
        peer = (str(addr[0]), int(addr[1]))
        refused = self.admission.begin_auth(peer[0])
        if refused is not None:
            self._refused_pending += 1
            if self._refused_pending == 1 or self._refused_pending % 100 == 0:
                log.warning("%s: closed %s:%d (%d refused so far)", refused, peer[0], peer[1],
                            self._refused_pending)
            conn.close()
            return
        try:
            self._spawn(conn, peer)
        except RuntimeError as exc:          # can't start new thread
            self.admission.end_auth(peer[0])
            conn.close()
            backoff.failed("starting a connection thread", exc)
            return
        backoff.succeeded()

    def _spawn(self, conn: socket.socket, peer: tuple[str, int]) -> None:
        thread = threading.Thread(target=self._serve_connection, args=(conn, peer), daemon=True,
                                  name=f"netconf-ssh-{peer[0]}:{peer[1]}")
        with self._lock:
            self._threads.add(thread)
        try:
            thread.start()
        except RuntimeError:
            with self._lock:
                self._threads.discard(thread)
            raise

    def _serve_connection(self, conn: socket.socket, peer: tuple[str, int]) -> None:
        slog = SessionLog(log, {"peer": peer})
        pending = [True]              # counted by the admission until it logs in
        try:
            transport = paramiko.Transport(conn)
        except Exception as exc:         # out of memory or descriptors: drop this one only
            slog.warning("cannot set up SSH on the connection: %s", exc)
            self.admission.end_auth(peer[0])
            conn.close()
            with self._lock:
                self._threads.discard(threading.current_thread())
            return
        with self._lock:
            self._transports.add(transport)
        try:
            self._negotiate_and_run(transport, peer, slog, pending)
        except (OSError, EOFError, paramiko.SSHException) as exc:
            slog.info("SSH connection ended during setup: %s", exc)
        except Exception:
            slog.exception("unexpected error on SSH connection")
        finally:
            if pending:
                self.admission.end_auth(peer[0])
            transport.close()
            with self._lock:
                self._transports.discard(transport)
                self._threads.discard(threading.current_thread())
            del transport
            if self.after_connection is not None:
                self.after_connection()

    def _negotiate_and_run(self, transport: paramiko.Transport, peer: tuple[str, int],
                           slog: SessionLog, pending: list[bool]) -> None:
        assert self.host_key is not None
        transport.add_server_key(self.host_key)
        algorithms.restrict(transport)
        # paramiko's own timeouts a second later than ours: our deadline is what ends a
        # connection that does not log in, so its admission slot is free before the client
        # sees the close (paramiko would close the socket first, from its own thread)
        transport.banner_timeout = transport.handshake_timeout = self.auth_timeout + 1
        iface = _Interface(self.users, slog, self.login_delays)
        transport.start_server(server=iface)
        deadline = time.monotonic() + self.auth_timeout
        channel = None
        while channel is None and self._alive(transport, deadline):
            channel = transport.accept(min(deadline - time.monotonic(), 0.5))
        while channel is not None and not iface.requested.is_set() and self._alive(
                transport, deadline):
            iface.requested.wait(min(deadline - time.monotonic(), 0.5))
        if channel is None or not iface.netconf or iface.username is None:
            slog.warning("no authenticated netconf subsystem; disconnecting")
            return
        pending.clear()
        self.admission.end_auth(peer[0])
        exempt = self.users.identity(iface.username).recovery
        refused = self.admission.begin_session(iface.username, exempt)
        if refused is not None:
            slog.warning("session refused: %s", refused)
            return
        sinks: list[ChannelSink] = []
        try:
            run_session(channel, self.factory, iface.username, peer, self.hello_timeout,
                        on_sink=lambda sink: self._track(sink, sinks), limits=self.limits)
        finally:
            self.admission.end_session(iface.username, exempt)
            with self._lock:
                self._sinks.difference_update(sinks)

    def _alive(self, transport: paramiko.Transport, deadline: float) -> bool:
        return (transport.is_active() and not self._stopping.is_set()
                and time.monotonic() < deadline)

    def _track(self, sink: ChannelSink, sinks: list[ChannelSink]) -> None:
        sinks.append(sink)
        with self._lock:
            self._sinks.add(sink)
        if self._stopping.is_set():
            sink.close()
