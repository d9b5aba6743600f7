"""nvo3.roles.ndirector.nve_sessions: when the push worker sends (a withdraw-only push waits for the
installs of the same change; an immediate kick cuts the wait short).

The NVE side is a recording stand-in for the engine's client (only its push worker runs, no
SSH): what is under test is the worker's timing, not the transport (tests/netns covers that).
"""

from __future__ import annotations

import threading
import time
from typing import Any

from nvo3.roles.ndirector.nve_sessions import Endpoint, NveSession


class RecordingClient:
    def __init__(self) -> None:
        self.sent: list[tuple[float, str]] = []
        self.event = threading.Event()
        self.connected = True

    def edit_config(self, config: str, target: str = "running") -> None:
        self.sent.append((time.monotonic(), config))
        self.event.set()


class Director:
    def nve_acked(self, name: str, generation: int) -> None:
        pass


def worker() -> tuple[NveSession, RecordingClient]:
    session = NveSession(Endpoint("h1", "127.0.0.1", 830, "198.18.0.1"), Director())  # type: ignore[arg-type]
    client = RecordingClient()
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
