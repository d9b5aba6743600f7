"""Event notifications (RFC 5277), the base notifications (RFC 6470) and interleave."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta

import pytest
from engine_harness import NS, Client, errors, make_server, ok
from lxml import etree

from nvo3.common.clock import iso
from nvo3.netconf.proto.xml import NC_NOTIFICATIONS_NS, NETMOD_NOTIF_NS, NOTIF_NS

NOTIF = NOTIF_NS
NCN = NC_NOTIFICATIONS_NS
NETMOD = NETMOD_NOTIF_NS


def subscribe(client: Client, extra: str = "") -> etree._Element:
    return client.rpc(f'<create-subscription xmlns="{NOTIF}">{extra}</create-subscription>')


def events(client: Client) -> list[tuple[str, etree._Element]]:
    """(local name of the event, event element) of every notification received."""
    out = []
    for n in client.notifications():
        assert etree.QName(n).namespace == NOTIF
        assert n.findtext(f"{{{NOTIF}}}eventTime")
        body = [c for c in n if etree.QName(c).localname != "eventTime"]
        assert len(body) == 1
        out.append((etree.QName(body[0]).localname, body[0]))
    return out


def names(client: Client) -> list[str]:
    return [name for name, _ in events(client)]


def rfc3339(t: datetime) -> str:
    return iso(t.timestamp())


def ping(client: Client, count: int) -> None:
    reply = client.rpc(f'<ping xmlns="{NS}"><count>{count}</count></ping>')
    assert not errors(reply), etree.tostring(reply)


@pytest.fixture
def server(tmp_path):
    srv = make_server(tmp_path)
    yield srv
    srv.stop()


def test_live_role_notification(server):
    sub, other = Client(server), Client(server)
    assert ok(subscribe(sub))
    ping(other, 4)
    [(name, body)] = events(sub)
    assert name == "pinged"
    assert etree.QName(body).namespace == NS
    assert body.findtext(f"{{{NS}}}count") == "4"


def test_config_change_names_the_editing_session(server):
    sub, editor = Client(server, "alice"), Client(server, "bob")
    assert ok(subscribe(sub))
    assert ok(editor.rpc(f'<edit-config><target><running/></target><config><top xmlns="{NS}">'
                         "<name>n</name></top></config></edit-config>"))
    [(name, body)] = events(sub)
    assert name == "netconf-config-change"
    assert etree.QName(body).namespace == NCN
    assert body.findtext(f"{{{NCN}}}changed-by/{{{NCN}}}username") == "bob"
    assert body.findtext(f"{{{NCN}}}changed-by/{{{NCN}}}session-id") == \
        str(editor.session.session_id)
    assert body.findtext(f"{{{NCN}}}datastore") == "running"


def test_commit_sends_config_change(server):
    sub, editor = Client(server), Client(server, "carol")
    assert ok(subscribe(sub))
    assert ok(editor.rpc(f'<edit-config><target><candidate/></target><config><top xmlns="{NS}">'
                         "<name>n</name></top></config></edit-config>"))
    assert names(sub) == []                       # the candidate is not running
    assert ok(editor.rpc("<commit/>"))
    [(name, body)] = events(sub)
    assert name == "netconf-config-change"
    assert body.findtext(f"{{{NCN}}}changed-by/{{{NCN}}}username") == "carol"


def test_session_start_and_end(server):
    sub = Client(server)
    assert ok(subscribe(sub))
    other = Client(server, "dave")
    other.close()
    got = events(sub)
    assert [n for n, _ in got] == ["netconf-session-start", "netconf-session-end"]
    start, end = got[0][1], got[1][1]
    assert start.findtext(f"{{{NCN}}}username") == "dave"
    assert start.findtext(f"{{{NCN}}}session-id") == str(other.session.session_id)
    assert end.findtext(f"{{{NCN}}}termination-reason") == "closed"


def test_killed_session_end_names_the_killer(server):
    sub, victim = Client(server), Client(server)
    assert ok(subscribe(sub))
    assert ok(sub.rpc(f"<kill-session><session-id>{victim.session.session_id}</session-id>"
                      "</kill-session>"))
    [(name, end)] = events(sub)
    assert name == "netconf-session-end"
    assert end.findtext(f"{{{NCN}}}termination-reason") == "killed"
    assert end.findtext(f"{{{NCN}}}killed-by") == str(sub.session.session_id)


def test_confirmed_commit_events(server):
    sub, editor = Client(server), Client(server, "erin")
    assert ok(subscribe(sub))
    assert ok(editor.rpc(f'<edit-config><target><candidate/></target><config><top xmlns="{NS}">'
                         "<name>n</name></top></config></edit-config>"))
    assert ok(editor.rpc("<commit><confirmed/><confirm-timeout>30</confirm-timeout></commit>"))
    assert ok(editor.rpc("<commit/>"))
    got = [(n, b) for n, b in events(sub) if n == "netconf-confirmed-commit"]
    assert [b.findtext(f"{{{NCN}}}confirm-event") for _, b in got] == ["start", "complete"]
    assert got[0][1].findtext(f"{{{NCN}}}timeout") == "30"
    assert got[0][1].findtext(f"{{{NCN}}}username") == "erin"


def test_cancel_commit_event(server):
    sub, editor = Client(server), Client(server)
    assert ok(subscribe(sub))
    assert ok(editor.rpc(f'<edit-config><target><candidate/></target><config><top xmlns="{NS}">'
                         "<name>n</name></top></config></edit-config>"))
    assert ok(editor.rpc("<commit><confirmed/></commit>"))
    assert ok(editor.rpc("<cancel-commit/>"))
    got = [b.findtext(f"{{{NCN}}}confirm-event") for n, b in events(sub)
           if n == "netconf-confirmed-commit"]
    assert got == ["start", "cancel"]


# -- replay ------------------------------------------------------------------------------------

def test_replay_from_start_time_then_replay_complete_then_live(server):
    before = datetime.now(UTC) - timedelta(seconds=1)
    other = Client(server)
    ping(other, 1)
    ping(other, 2)
    sub = Client(server)
    reply = subscribe(sub, f"<startTime>{rfc3339(before)}</startTime>")
    assert ok(reply)
    assert sub.sink.messages.index(etree.tostring(reply)) < len(sub.sink.messages) - 1
    ping(other, 3)
    got = events(sub)
    pinged = [b.findtext(f"{{{NS}}}count") for n, b in got if n == "pinged"]
    assert pinged == ["1", "2", "3"]
    order = [n for n, _ in got]
    assert order.index("replayComplete") == len(order) - 2      # before the live ping
    assert etree.QName(got[order.index("replayComplete")][1]).namespace == NETMOD
    times = [n.findtext(f"{{{NOTIF}}}eventTime") for n in sub.notifications()]
    assert times[:-2] == sorted(times[:-2])


def test_reply_precedes_replayed_events(server):
    ping(Client(server), 1)
    sub = Client(server)
    start = rfc3339(datetime.now(UTC) - timedelta(seconds=5))
    subscribe(sub, f"<startTime>{start}</startTime>")
    kinds = [b"rpc-reply" in m[:200] for m in sub.sink.messages]
    assert kinds[0] is True and not any(kinds[1:])


def test_stop_time_ends_with_notification_complete(server):
    start = datetime.now(UTC) - timedelta(seconds=2)
    ping(Client(server), 1)
    stop = datetime.now(UTC)
    time.sleep(0.01)
    sub = Client(server)
    assert ok(subscribe(sub, f"<startTime>{rfc3339(start)}</startTime>"
                             f"<stopTime>{rfc3339(stop)}</stopTime>"))
    ping(Client(server), 2)
    order = names(sub)
    assert order[-2:] == ["replayComplete", "notificationComplete"]
    assert "pinged" in order
    assert order.count("pinged") == 1
    assert ok(subscribe(sub))                          # the finished subscription is gone


def test_stop_time_without_start_time_is_refused(server):
    sub = Client(server)
    err = errors(subscribe(sub, f"<stopTime>{rfc3339(datetime.now(UTC))}</stopTime>"))
    assert err and err[0]["error-tag"] in ("bad-element", "missing-element")


def test_start_time_in_the_future_is_refused(server):
    future = rfc3339(datetime.now(UTC) + timedelta(hours=1))
    assert errors(subscribe(Client(server), f"<startTime>{future}</startTime>"))


def test_unknown_stream_is_refused(server):
    err = errors(subscribe(Client(server), "<stream>OTHER</stream>"))[0]
    assert err["error-tag"] == "invalid-value"


# -- filters, second subscription, interleave -----------------------------------------------

def test_subscription_filter(server):
    sub, other = Client(server), Client(server)
    filt = f'<filter type="subtree"><pinged xmlns="{NS}"/></filter>'
    assert ok(subscribe(sub, filt))
    ping(other, 5)
    assert ok(other.rpc(f'<edit-config><target><running/></target><config><top xmlns="{NS}">'
                        "<name>n</name></top></config></edit-config>"))
    Client(server).close()
    assert names(sub) == ["pinged"]


def test_subscription_xpath_filter(server):
    sub, other = Client(server), Client(server)
    assert ok(subscribe(sub, '<filter type="xpath" '
                             "select=\"/ietf-netconf-notifications:netconf-config-change\"/>"))
    ping(other, 1)
    assert ok(other.rpc(f'<edit-config><target><running/></target><config><top xmlns="{NS}">'
                        "<name>n</name></top></config></edit-config>"))
    assert names(sub) == ["netconf-config-change"]


def test_bad_subscription_filter_is_refused(server):
    sub = Client(server)
    assert errors(subscribe(sub, '<filter type="xpath" select="/x:["/>'))
    assert ok(subscribe(sub))


def test_second_subscription_on_the_same_session_is_refused(server):
    sub = Client(server)
    assert ok(subscribe(sub))
    err = errors(subscribe(sub))[0]
    assert err["error-tag"] == "operation-failed"


def test_rpcs_are_answered_while_subscribed(server):
    sub, other = Client(server), Client(server)
    assert ok(subscribe(sub))
    ping(sub, 2)                                   # the subscriber itself (interleave)
    assert ok(sub.rpc(f'<edit-config><target><running/></target><config><top xmlns="{NS}">'
                      "<name>mine</name></top></config></edit-config>"))
    reply = sub.rpc("<get-config><source><running/></source></get-config>")
    assert b"mine" in etree.tostring(reply)
    ping(other, 3)
    assert names(sub) == ["pinged", "netconf-config-change", "pinged"]


def test_closed_subscriber_gets_nothing_more(server):
    sub, other = Client(server), Client(server)
    assert ok(subscribe(sub))
    sub.close()
    before = len(sub.sink.messages)
    ping(other, 1)
    assert len(sub.sink.messages) == before
