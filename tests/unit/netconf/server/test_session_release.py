"""Nothing of a session outlives it (issue 12, memory): the engine over real SSH on 127.0.0.1.

Sessions are opened and closed (hello, an edit, a get-config, a subscription, then
close-session; one more dropped without close-session, one killed by another session); once
they have ended, no engine session, no channel sink, no server-side paramiko transport and no
session thread is left, the SSH server's `after_connection` hook ran once per connection, and
the replay log holds the notifications as bytes, not as trees.
"""

from __future__ import annotations

import gc
import threading
import time
import weakref
from collections.abc import Iterator
from pathlib import Path

import pytest
from engine_harness import NS, make_server

from nvo3.netconf.client import session as nc
from nvo3.netconf.server.engine import NetconfServer, Session
from nvo3.netconf.ssh.listener import SshServer, host_key_line
from nvo3.netconf.ssh.transport import ChannelSink, MessageSink
from nvo3.netconf.ssh.users import UserStore

SESSIONS = 5


class Served:
    """The engine behind an SSH server (through this session factory, which records each
    session, its sink and its SSH transport), and how many connections have ended."""

    def __init__(self, tmp_path: Path) -> None:
        self.engine: NetconfServer = make_server(tmp_path / "engine")
        users = UserStore(tmp_path / "users.json")
        users.add("admin", "s3cret")
        self.ended = 0
        self._lock = threading.Lock()
        self.opened: list[weakref.ref[object]] = []     # each session, its sink and transport
        self.ssh = SshServer(self, users, tmp_path / "ssh_host_key", port=0,
                             auth_timeout=5, hello_timeout=2, after_connection=self._ended)
        self.ssh.start()

    def capabilities(self) -> list[str]:
        return self.engine.capabilities()

    def open_session(self, username: str, peer: tuple[str, int], sink: MessageSink) -> Session:
        session = self.engine.open_session(username, peer, sink)
        assert isinstance(sink, ChannelSink)
        self.opened += [weakref.ref(session), weakref.ref(sink),
                        weakref.ref(sink.channel.get_transport())]
        return session

    def _ended(self) -> None:
        with self._lock:
            self.ended += 1

    def connect(self) -> nc.Client:
        assert self.ssh.host_key is not None
        return nc.connect("127.0.0.1", self.ssh.port, "admin", "s3cret",
                          host_key=host_key_line(self.ssh.host_key))

    def wait_ended(self, count: int, timeout: float = 10.0) -> None:
        deadline = time.monotonic() + timeout
        while self.ended < count and time.monotonic() < deadline:
            time.sleep(0.01)
        assert self.ended == count


@pytest.fixture
def served(tmp_path: Path) -> Iterator[Served]:
    s = Served(tmp_path)
    yield s
    s.ssh.stop()
    s.engine.stop()


def _alive(refs: list[weakref.ref[object]]) -> list[object]:
    gc.collect()
    return [o for o in (r() for r in refs) if o is not None]


def _session_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate()
            if t.name.startswith("netconf-ssh-") and not t.name.startswith("netconf-ssh-accept")]


def test_no_session_object_outlives_its_session(served: Served) -> None:
    for n in range(SESSIONS):
        with served.connect() as c:
            c.edit_config(f'<config xmlns="urn:ietf:params:xml:ns:netconf:base:1.0">'
                          f'<top xmlns="{NS}"><name>n{n}</name></top></config>',
                          target="running")
            assert c.get_config("running").find(f".//{{{NS}}}name").text == f"n{n}"
            c.create_subscription()
    dropped = served.connect()                # ends without close-session
    dropped.dispatch("<get-config><source><running/></source></get-config>")
    dropped.session.close()                   # the client's SSH transport, nothing sent
    victim, killer = served.connect(), served.connect()
    killer.kill_session(victim.session_id)
    killer.close()
    served.wait_ended(SESSIONS + 3)
    victim.close()
    deadline = time.monotonic() + 10
    while (_session_threads() or _alive(served.opened)) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert len(served.opened) == 3 * (SESSIONS + 3)
    assert served.engine.sessions == {}
    assert _alive(served.opened) == []
    assert _session_threads() == []
    events = served.engine.events.events
    assert events and all(isinstance(e.content, bytes) for e in events)
