"""The event feed: nDirector notifications (real <notification> XML) into events, listeners,
the move's convergence figure, bounds."""

from __future__ import annotations

import time

import pytest
from lxml import etree

from nvo3.common.names import NDIRECTOR_NS
from nvo3.dashboard import feed as feed_module
from nvo3.dashboard.feed import Feed

NOTIF = "urn:ietf:params:xml:ns:netconf:notification:1.0"


def notification(body: str) -> etree._Element:
    return etree.fromstring(f'<notification xmlns="{NOTIF}"><eventTime>2026-12-05T08:00:00Z'
                            f'</eventTime>{body}</notification>')


MOVED = (f'<mapping-changed xmlns="{NDIRECTOR_NS}"><change>moved</change><vni>10010</vni>'
         '<mac>02:00:00:0a:00:01</mac><nve>host2</nve><vtep-address>198.18.0.12</vtep-address>'
         '<previous-nve>host1</previous-nve></mapping-changed>')


def test_a_move_reaches_listeners_and_gets_its_convergence(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(feed_module, "SAMPLE_DELAY_S", 0.01)
    f = Feed(convergence=lambda: 1234)
    q = f.listen()
    f.on_notification("ndirector", notification(MOVED))
    e = q.get(timeout=1)
    assert (e["kind"], e["mac"], e["nve"], e["previous-nve"], e["vni"], e["time"]) == (
        "moved", "02:00:00:0a:00:01", "host2", "host1", 10010, "2026-12-05T08:00:00Z")
    note = q.get(timeout=2)
    assert note == {"kind": "annotate", "ref": e["id"], "convergence-us": 1234}
    assert f.events()[0]["convergence-us"] == 1234
    f.unlisten(q)


def test_other_notifications_and_bounds() -> None:
    f = Feed()
    f.on_notification("nd", notification(
        f'<nve-state-change xmlns="{NDIRECTOR_NS}"><nve>host3</nve><state>down</state>'
        '<previous-state>connected</previous-state></nve-state-change>'))
    f.on_notification("nd", notification('<other xmlns="urn:example"/>'))     # not ours
    assert [(e["kind"], e["nve"], e["state"]) for e in f.events()] == [
        ("nve-state", "host3", "down")]
    for i in range(feed_module.KEEP + 10):
        f.add({"kind": "created", "n": i})
    events = f.events()
    assert len(events) == feed_module.KEEP and events[-1]["n"] == feed_module.KEEP + 9
    assert [e["id"] for e in f.events(since=events[-2]["id"])] == [events[-1]["id"]]


def test_close_ends_streams() -> None:
    f = Feed()
    q = f.listen()
    f.close()
    assert q.get(timeout=1) == {"kind": "closed"}
    t0 = time.monotonic()
    f.add({"kind": "created"})          # no listener left: nothing blocks
    assert time.monotonic() - t0 < 1


def test_a_nudge_wakes_listeners_and_is_not_logged() -> None:
    f = Feed()
    q = f.listen()
    f.nudge()
    assert q.get(timeout=1) == {"kind": "refresh"}
    assert f.events() == []


def test_last_id() -> None:
    f = Feed()
    assert f.last_id == 0
    f.add({"kind": "created"})
    f.nudge()
    assert f.last_id == 1
