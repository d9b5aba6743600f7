"""nvo3.roles.ndirector.nve_sessions: when the push worker sends (a withdraw-only push waits for the
installs of the same change; an immediate kick cuts the wait short); the pushes of one change
to several NVEs (one edit text built for all; a slow NVE delays only its own push).

The NVE side is a recording stand-in for the engine's client (only its push worker runs, no
SSH): what is under test is the worker's timing, not the transport (tests/netns covers that).
"""

from __future__ import annotations

import threading
import time
from typing import Any

from lxml import etree

from nvo3.roles.ndirector import nve_client
from nvo3.roles.ndirector.nve_sessions import Endpoint, NveSession

build_edit_text = nve_client.build_edit_text


class RecordingClient:
    def __init__(self) -> None:
        self.sent: list[tuple[float, str]] = []
        self.event = threading.Event()
        self.connected = True

    def edit_config(self, config: str | etree._Element, target: str = "running") -> None:
        text = config if isinstance(config, str) else etree.tostring(config).decode()
        self.sent.append((time.monotonic(), text))
        self.event.set()


class Director:
    def nve_acked(self, name: str, generation: int) -> None:
        pass


def worker(client: RecordingClient | None = None) -> tuple[NveSession, RecordingClient]:
    session = NveSession(Endpoint("h1", "127.0.0.1", 830, "198.18.0.1"), Director())  # type: ignore[arg-type]
    client = client or RecordingClient()
    session._client, session.stats.state = client, "connected"  # type: ignore[assignment]
    session.tracker.full = False
    session._threads[1].start()                      # the push worker only
    return session, client


def entry(vtep: str) -> dict[str, Any]:
    return {"remote-vtep": vtep, "remote-nve": "h2", "sequence-number": 1}


def test_delayed_kick_waits_and_an_immediate_kick_cuts_it_short() -> None:
    session, client = worker()
    try:
        with session.lock:
            session.tracker.set_mac((300, "02:00:00:00:00:01"), entry("198.18.0.2"))
        t0 = time.monotonic()
        session.kick(0.2)
        assert client.event.wait(2)
        waited = client.sent[0][0] - t0
        assert waited >= 0.2, waited
        assert "02:00:00:00:00:01" in client.sent[0][1]

        client.event.clear()
        with session.lock:
            session.tracker.set_mac((300, "02:00:00:00:00:02"), entry("198.18.0.3"))
        t0 = time.monotonic()
        session.kick(5.0)                 # a withdrawal would wait that long ...
        session.kick()                    # ... but an install arrives: no waiting at all
        assert client.event.wait(2)
        assert client.sent[1][0] - t0 < 1.0
        assert "02:00:00:00:00:02" in client.sent[1][1]
    finally:
        session.stop()


class BlockingClient(RecordingClient):
    """An NVE that does not answer until released."""

    def __init__(self) -> None:
        super().__init__()
        self.release = threading.Event()

    def edit_config(self, config: str | etree._Element, target: str = "running") -> None:
        self.release.wait(10)
        super().edit_config(config, target)


def test_one_change_to_many_nves_is_built_once_and_a_slow_nve_delays_nobody(
        monkeypatch: Any) -> None:
    built: list[str] = []

    def counting(edit: nve_client.NveEdit) -> str:
        text = build_edit_text(edit)
        built.append(text)
        return text
    monkeypatch.setattr(nve_client, "build_edit_text", counting)
    monkeypatch.setattr(nve_client, "_texts", nve_client.EditTexts())
    slow = BlockingClient()
    workers = [worker(slow if i == 0 else None) for i in range(8)]
    try:
        shared = entry("198.18.0.9")
        for session, _ in workers:
            with session.lock:
                session.tracker.set_mac((300, "02:00:00:00:00:01"), shared)
        t0 = time.monotonic()
        for session, _ in workers:
            session.kick()
        for _, client in workers[1:]:               # every NVE but the slow one: at once
            assert client.event.wait(2)
        assert time.monotonic() - t0 < 1.0
        assert not slow.sent
        slow.release.set()
        assert slow.event.wait(2)
        texts = {client.sent[0][1] for _, client in workers}
        assert len(texts) == 1 and len(built) == 1, (len(texts), len(built))
    finally:
        slow.release.set()
        for session, _ in workers:
            session.stop()


def test_edit_signature_is_the_text() -> None:
    def edit(vtep: str, order: tuple[str, ...]) -> nve_client.NveEdit:
        e = nve_client.NveEdit()
        for mac in order:
            e.network(300).macs[mac] = {"mac": mac, **entry(vtep)}
        e.network(300).vteps |= {"198.18.0.3", "198.18.0.2"}
        return e
    a = edit("198.18.0.2", ("02:00:00:00:00:01", "02:00:00:00:00:02"))
    b = edit("198.18.0.2", ("02:00:00:00:00:02", "02:00:00:00:00:01"))
    c = edit("198.18.0.3", ("02:00:00:00:00:01", "02:00:00:00:00:02"))
    assert nve_client.edit_signature(a) == nve_client.edit_signature(b)
    assert build_edit_text(a) == build_edit_text(b)
    assert nve_client.edit_signature(a) != nve_client.edit_signature(c)
    texts = nve_client.EditTexts(capacity=2)
    assert texts.text(a) == build_edit_text(a) and texts.text(c) == build_edit_text(c)
    assert texts.text(b) == build_edit_text(a)
