"""An ncclient SSH session without the 100 ms send delay, and strict host-key checking.

ncclient 0.7.1's ``Session.run`` (ncclient/transport/session.py) loops: send one queued request
if any, then ``select`` on the channel with ``TICK = 0.1`` s. A request queued while the loop sits
in ``select`` waits for the tick (or for unrelated incoming data) before it is written, so every
synchronous RPC costs up to 100 ms. :class:`FastSSHSession` fixes this at the cause: ``send()``
writes one byte to a socketpair that ``run()`` selects on together with the channel, so the loop
wakes the moment a request is queued and otherwise sleeps with no timeout at all (no busy loop,
no change to the global ``TICK``). ``run()`` drains the whole queue on each wake, which is what
makes pipelining effective.

Host keys: ncclient's own checking consults ``~/.ssh/known_hosts`` implicitly. Here the caller
passes a :class:`HostKeyPolicy` (a known_hosts file, or the expected key / SHA256 fingerprint the
nDirector stores per NVE); it is checked in ``_auth``, which ncclient calls right after the key
exchange and before any credential is sent.
"""

from __future__ import annotations

import base64
import hashlib
import selectors
import socket
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import paramiko
from lxml import etree
from ncclient.transport import SSHSession
from ncclient.transport.errors import SessionCloseError, SSHError
from ncclient.transport.session import NetconfBase

from nvo3.netconf.proto.framing import Base, FrameDecoder, encode
from nvo3.netconf.proto.xml import NOTIF_NS, qname

NOTIFICATION = qname(NOTIF_NS, "notification")
_NOTIFICATION_NS = NOTIF_NS.encode()
_PARSER = etree.XMLParser(resolve_entities=False, no_network=True, huge_tree=True)


class HostKeyError(SSHError):
    """The server's host key is not the one we expected (or nothing to check it against)."""


def fingerprint(key: paramiko.PKey) -> str:
    """OpenSSH-style ``SHA256:<base64>`` fingerprint of a public key."""
    digest = hashlib.sha256(key.asbytes()).digest()
    return "SHA256:" + base64.b64encode(digest).decode().rstrip("=")


@dataclass(frozen=True)
class HostKeyPolicy:
    """What the server's host key must match.

    `expected` is an OpenSSH public-key line (``ssh-ed25519 AAAA...``), its bare base64 blob, or
    a ``SHA256:...`` fingerprint. `known_hosts` is an OpenSSH known_hosts file, looked up as
    ``host`` and ``[host]:port``. With neither, ``~/.ssh/known_hosts`` is used.
    """

    known_hosts: Path | None = None
    expected: str | None = None

    def blob_b64(self) -> str | None:
        """The expected key's base64 blob, if a key (not a fingerprint) was given."""
        if not self.expected or self.expected.startswith("SHA256:"):
            return None
        fields = self.expected.split()
        return fields[1] if len(fields) >= 2 else fields[0]

    def host_keys(self) -> paramiko.HostKeys:
        """The known_hosts entries to check against (empty when an expected key is given)."""
        keys = paramiko.HostKeys()
        if self.expected is None:
            path = self.known_hosts or Path("~/.ssh/known_hosts").expanduser()
            if Path(path).exists():
                keys.load(str(path))
        return keys

    def check(self, host: str, port: int, key: paramiko.PKey) -> None:
        """Raise HostKeyError unless `key` is acceptable for host:port."""
        got = fingerprint(key)
        if self.expected is not None:
            if self.expected.startswith("SHA256:"):
                ok = self.expected.rstrip("=") == got
            else:
                ok = self.blob_b64() == key.get_base64()
            if not ok:
                raise HostKeyError(f"host key of {host} port {port} is {key.get_name()} {got}, "
                                   "not the expected key")
            return
        known = self.host_keys()
        names = [host, f"[{host}]:{port}"]
        if not any(known.check(name, key) for name in names):
            raise HostKeyError(f"host key {key.get_name()} {got} of {host} port {port} is not "
                               f"in {self.known_hosts or '~/.ssh/known_hosts'}")


class FastSSHSession(SSHSession):
    """ncclient SSH session whose loop wakes immediately when a request is queued."""

    def __init__(self, device_handler: Any, policy: HostKeyPolicy | None, port: int) -> None:
        super().__init__(device_handler)
        self._policy = policy
        self._port = port
        self._decoder = FrameDecoder()
        # where notifications go, parsed (None: to ncclient's listeners like any message)
        self.notification_sink: Callable[[etree._Element], None] | None = None
        self._wake_r, self._wake_w = socket.socketpair()
        self._wake_r.setblocking(False)
        self._wake_w.setblocking(False)
        if policy is not None:
            self._host_keys = policy.host_keys()   # also makes ncclient prefer these key types

    def _auth(self, username: Any, password: Any, key_filenames: Any, allow_agent: Any,
              look_for_keys: Any) -> None:
        if self._policy is not None:
            self._policy.check(self._host, self._port, self._transport.get_remote_server_key())
        super()._auth(username, password, key_filenames, allow_agent, look_for_keys)

    def send(self, message: str) -> None:
        """Queue `message` and wake the session loop."""
        super().send(message)
        self._wake()

    def _wake(self) -> None:
        try:
            self._wake_w.send(b"\0")
        except BlockingIOError:
            pass          # the loop already has wake-ups pending
        except OSError:
            pass          # closed: the session is ending

    def close(self) -> None:
        """Close the SSH transport, wake and join the loop, release the wake socketpair."""
        self._closing.set()
        self._wake()
        super().close()
        for s in (self._wake_r, self._wake_w):
            s.close()

    def _flush(self) -> None:
        while not self._q.empty():
            data = self._q.get().encode()
            version = Base.V11 if self._base == NetconfBase.BASE_11 else Base.V10
            self._channel.sendall(encode(data, version))

    def run(self) -> None:
        """Send queued requests as soon as they are queued; read replies as they arrive."""
        sel = selectors.DefaultSelector()
        try:
            sel.register(self._channel, selectors.EVENT_READ, "channel")
            sel.register(self._wake_r, selectors.EVENT_READ, "wake")
            while True:
                self._flush()
                for key, _ in sel.select():
                    if key.data == "wake":
                        try:
                            self._wake_r.recv(4096)
                        except BlockingIOError:
                            pass
                        continue
                    data = self._transport_read()
                    if data:
                        self._feed_parser(data)
                    elif self._closing.is_set():
                        return
                    else:
                        raise SessionCloseError(self._buffer.getvalue())
                if self._closing.is_set() and not self._transport.is_active():
                    return
        except Exception as exc:
            self.logger.debug("session loop ended: %r", exc)
            self._dispatch_error(exc)
            self.close()
        finally:
            sel.close()

    def _feed_parser(self, data: bytes) -> None:
        """Split received bytes into messages with the engine's sans-I/O decoder.

        Why not ncclient's DefaultXMLParser: its base:1.1 parser decodes and regex-matches the
        whole rest of the buffer for every chunk and recurses once per buffered message, so a
        burst of 2,500 notifications (one bulk commit at an NVE) costs quadratic time."""
        decoder = self._decoder
        decoder.receive_data(data)
        while True:
            decoder.version = Base.V11 if self._base == NetconfBase.BASE_11 else Base.V10
            message = decoder.next_message()
            if message is None:
                return
            self._dispatch_bytes(message)

    def _dispatch_bytes(self, message: bytes) -> None:
        """A notification goes straight to :attr:`notification_sink`, parsed once; anything
        else (hello, rpc-reply) to ncclient's listeners as before."""
        sink = self.notification_sink
        if sink is not None and _NOTIFICATION_NS in message[:512]:
            try:
                root = etree.fromstring(message, _PARSER)
            except etree.XMLSyntaxError as exc:   # as ncclient does: log it, keep the session
                self.logger.error("dropped a malformed message: %s", exc)
                return
            if root.tag == NOTIFICATION:
                sink(root)
                return
        self._dispatch_message(message.decode("utf-8", errors="replace"))
