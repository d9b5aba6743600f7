"""Sessions and RPC framing errors (RFC 6241 sections 4, 7.8, 7.9), the role's own RPC, and
persistence of running (atomic file, restored and applied at start)."""

from __future__ import annotations

import re

import pytest
from engine_harness import BASE, NS, Client, EngineTestRole, errors, make_server, ok, restart, saved_running
from lxml import etree

T = {"t": NS}


def one_error(reply: etree._Element) -> dict[str, str]:
    errs = errors(reply)
    assert len(errs) == 1, etree.tostring(reply)
    return errs[0]


def raw(client: Client, message: bytes) -> etree._Element:
    """Send a whole message (not wrapped in <rpc>) and parse the one reply."""
    before = len(client.sink.messages)
    client.session.on_message(message)
    replies = [m for m in client.sink.messages[before:] if b"rpc-reply" in m[:200]]
    assert len(replies) == 1
    return etree.fromstring(replies[0])


@pytest.fixture
def server(tmp_path):
    srv = make_server(tmp_path)
    yield srv
    srv.stop()


# -- kill-session and close-session ------------------------------------------------------------

def test_kill_session_ends_the_target_not_the_caller(server):
    a, b = Client(server, "alice"), Client(server, "bob")
    assert ok(b.rpc("<lock><target><running/></target></lock>"))
    reply = a.rpc(f"<kill-session><session-id>{b.session.session_id}</session-id>"
                  "</kill-session>")
    assert ok(reply), etree.tostring(reply)
    assert b.sink.closed and not a.sink.closed
    assert b.session.session_id not in server.sessions
    assert a.session.session_id in server.sessions
    assert ok(a.rpc("<lock><target><running/></target></lock>"))   # b's lock is gone


def test_kill_session_discards_the_victims_locked_candidate(server):
    a, b = Client(server), Client(server)
    assert ok(b.rpc("<lock><target><candidate/></target></lock>"))
    assert ok(b.rpc(f'<edit-config><target><candidate/></target><config><top xmlns="{NS}">'
                    "<name>half-done</name></top></config></edit-config>"))
    assert ok(a.rpc(f"<kill-session><session-id>{b.session.session_id}</session-id>"
                    "</kill-session>"))
    assert ok(a.rpc("<lock><target><candidate/></target></lock>"))


def test_kill_session_of_self_is_invalid_value(server):
    a = Client(server)
    err = one_error(a.rpc(f"<kill-session><session-id>{a.session.session_id}</session-id>"
                          "</kill-session>"))
    assert err["error-tag"] == "invalid-value"
    assert not a.sink.closed


def test_kill_session_of_an_unknown_session(server):
    err = one_error(Client(server).rpc("<kill-session><session-id>999</session-id>"
                                       "</kill-session>"))
    assert err["error-tag"] == "invalid-value"


def test_kill_session_without_session_id(server):
    err = one_error(Client(server).rpc("<kill-session/>"))
    assert err["error-tag"] == "missing-element"


def test_close_session_closes_the_callers_sink_after_ok(server):
    a, b = Client(server), Client(server)
    assert ok(a.rpc("<close-session/>"))
    assert a.sink.closed and not b.sink.closed


# -- malformed requests ------------------------------------------------------------------------

def test_missing_message_id_is_missing_attribute(server):
    c = Client(server)
    reply = raw(c, f'<rpc xmlns="{BASE}"><get-config><source><running/></source></get-config>'
                   "</rpc>".encode())
    err = one_error(reply)
    assert err["error-tag"] == "missing-attribute"
    assert err["bad-attribute"] == "message-id"
    assert err["bad-element"] == "rpc"
    assert err["error-type"] == "rpc"


def test_malformed_xml_is_malformed_message(server):
    c = Client(server)
    err = one_error(raw(c, b"<rpc message-id='1' xmlns='" + BASE.encode() + b"'><get>"))
    assert err["error-tag"] == "malformed-message"
    assert ok(c.rpc("<get-config><source><running/></source></get-config>")) is False  # alive


def test_unknown_rpc_is_operation_not_supported(server):
    c = Client(server)
    assert one_error(c.rpc('<frobnicate xmlns="urn:example:nothing"/>'))["error-tag"] == \
        "operation-not-supported"
    assert one_error(c.rpc("<frobnicate/>"))["error-tag"] == "operation-not-supported"


def test_reply_copies_the_rpc_attributes(server):
    c = Client(server)
    reply = raw(c, f'<rpc xmlns="{BASE}" message-id="m-7" xmlns:x="urn:x" x:trace="t1">'
                   "<get-config><source><running/></source></get-config></rpc>".encode())
    assert reply.get("message-id") == "m-7"
    assert reply.get("{urn:x}trace") == "t1"


def test_unsupported_url_capability(server):
    c = Client(server)
    err = one_error(c.rpc("<copy-config><target><url>file:///tmp/x</url></target>"
                          "<source><running/></source></copy-config>"))
    assert err["error-tag"] == "operation-not-supported"


# -- the role's RPC ----------------------------------------------------------------------------

def test_ping_returns_its_output(server):
    reply = Client(server).rpc(f'<ping xmlns="{NS}"><count>3</count></ping>')
    assert reply.findtext("t:replies", namespaces=T) == "3"
    assert server.role.hits == 1


@pytest.mark.parametrize("body,tag", [("<count>0</count>", "invalid-value"),
                                      ("<count>11</count>", "invalid-value"),
                                      ("<count>x</count>", "invalid-value"),
                                      ("", "data-missing"),
                                      ("<count>1</count><extra>1</extra>", "unknown-element")])
def test_ping_input_is_validated(server, body, tag):
    err = one_error(Client(server).rpc(f'<ping xmlns="{NS}">{body}</ping>'))
    assert err["error-tag"] == tag
    assert server.role.hits == 0


def test_rpc_input_leafrefs_point_into_running(server):
    c = Client(server)
    body = f'<ping xmlns="{NS}"><count>1</count><group>g1</group></ping>'
    err = one_error(c.rpc(body))
    assert err["error-tag"] == "data-missing"           # no group g1 configured yet
    assert server.role.hits == 0
    assert ok(c.rpc(f'<edit-config><target><running/></target><config><top xmlns="{NS}">'
                    '<group><name>g1</name></group></top></config></edit-config>'))
    assert c.rpc(body).findtext("t:replies", namespaces=T) == "1"


# -- persistence of running --------------------------------------------------------------------

def test_running_is_journaled_and_restored_after_a_restart(server, tmp_path):
    c = Client(server)
    for n in range(3):
        assert ok(c.rpc(f'<edit-config><target><running/></target><config><top xmlns="{NS}">'
                        f"<item><id>{n + 1}</id></item></top></config></edit-config>"))
    files = saved_running(tmp_path)
    assert files and all(re.fullmatch(r"running\.\d+\.(xml|journal)", name) for name in files)
    assert all((tmp_path / name).stat().st_mode & 0o077 == 0 for name in files)
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".") and p.name != ".running.lock"]
    data = Client(restart(server)).rpc("<get-config><source><running/></source></get-config>")
    assert [e.text for e in data.iterfind(f"{{{BASE}}}data/t:top/t:item/t:id", T)] == ["1", "2", "3"]


def test_restart_restores_running_and_applies_it_before_sessions(server, tmp_path):
    c = Client(server)
    assert ok(c.rpc(f'<edit-config><target><running/></target><config><top xmlns="{NS}">'
                    "<name>persisted</name><tag>a</tag></top></config></edit-config>"))
    role = EngineTestRole()
    restarted = restart(server, role)
    assert role.changes[0].after["top"]["name"] == "persisted"
    assert role.changes[0].after["top"]["tag"] == ["a"]
    assert role.changes[0].before == {}
    data = Client(restarted).rpc("<get-config><source><running/></source></get-config>")
    assert data.findtext(f"{{{BASE}}}data/t:top/t:name", namespaces=T) == "persisted"
    assert data.findtext(f"{{{BASE}}}data/t:top/t:name", namespaces=T) == "persisted"


def test_start_with_an_empty_state_dir_applies_an_empty_config(tmp_path):
    role = EngineTestRole()
    make_server(tmp_path / "fresh", role)
    assert len(role.changes) == 1
    assert role.changes[0].after.get("top", {}).get("item") is None


def test_candidate_is_not_persisted(server, tmp_path):
    c = Client(server)
    assert ok(c.rpc(f'<edit-config><target><candidate/></target><config><top xmlns="{NS}">'
                    "<name>draft</name></top></config></edit-config>"))
    restarted = restart(server)
    reply = Client(restarted).rpc("<get-config><source><candidate/></source></get-config>")
    assert reply.find(f"{{{BASE}}}data/t:top/t:name", T) is None
