"""Locks, the candidate, commit and confirmed commit (RFC 6241 sections 7.5, 8.3, 8.4), validate,
copy-config and delete-config, with real datastores on disk."""

from __future__ import annotations

import time
from collections.abc import Callable

import pytest
from engine_harness import BASE, NS, Client, errors, make_server, ok, restart
from lxml import etree

T = {"t": NS}


def edit(client: Client, body: str, target: str = "candidate") -> etree._Element:
    return client.rpc(f"<edit-config><target><{target}/></target>"
                      f'<config><top xmlns="{NS}">{body}</top></config></edit-config>')


def name_in(client: Client, source: str = "running") -> str | None:
    reply = client.rpc(f"<get-config><source><{source}/></source></get-config>")
    data = reply.find(f"{{{BASE}}}data")
    assert data is not None, etree.tostring(reply)
    return data.findtext("t:top/t:name", namespaces=T)


def one_error(reply: etree._Element) -> dict[str, str]:
    errs = errors(reply)
    assert len(errs) == 1, etree.tostring(reply)
    return errs[0]


def lock(client: Client, target: str = "candidate") -> etree._Element:
    return client.rpc(f"<lock><target><{target}/></target></lock>")


def unlock(client: Client, target: str = "candidate") -> etree._Element:
    return client.rpc(f"<unlock><target><{target}/></target></unlock>")


def wait_for(predicate: Callable[[], object], timeout: float = 3.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.05)
    return predicate()


@pytest.fixture
def server(tmp_path):
    srv = make_server(tmp_path)
    yield srv
    srv.stop()


@pytest.fixture
def a(server):
    return Client(server, "alice")


@pytest.fixture
def b(server):
    return Client(server, "bob")


# -- locks -------------------------------------------------------------------------------------

def test_lock_denied_carries_the_holders_session_id(a, b):
    assert ok(lock(a))
    err = one_error(lock(b))
    assert err["error-tag"] == "lock-denied"
    assert err["session-id"] == str(a.session.session_id)
    assert err["error-type"] == "protocol"


def test_lock_of_a_modified_candidate_is_refused(a, b):
    assert ok(edit(a, "<name>dirty</name>"))
    err = one_error(lock(b))
    assert err["error-tag"] == "lock-denied"
    assert ok(a.rpc("<discard-changes/>"))
    assert ok(lock(b))


def test_lock_holders_end_discards_its_uncommitted_candidate(a, b):
    assert ok(lock(a))
    assert ok(edit(a, "<name>uncommitted</name>"))
    assert name_in(b, "candidate") == "uncommitted"
    a.close()
    assert name_in(b, "candidate") is None
    assert ok(lock(b))                         # the lock went with the session


def test_commit_and_discard_by_another_session_are_refused_while_locked(a, b):
    assert ok(lock(a))
    assert ok(edit(a, "<name>mine</name>"))
    for op in ("<commit/>", "<discard-changes/>"):
        err = one_error(b.rpc(op))
        assert err["error-tag"] == "in-use"
    assert name_in(b, "candidate") == "mine"
    assert name_in(b) is None
    assert ok(a.rpc("<commit/>"))
    assert name_in(b) == "mine"


def test_edit_of_a_datastore_locked_by_another_session_is_in_use(a, b):
    assert ok(lock(a, "running"))
    err = one_error(edit(b, "<name>x</name>", target="running"))
    assert err["error-tag"] == "in-use"
    assert name_in(b) is None
    assert ok(edit(a, "<name>holder</name>", target="running"))
    assert ok(unlock(a, "running"))
    assert ok(edit(b, "<name>x</name>", target="running"))


def test_edit_of_a_locked_candidate_by_another_session_is_in_use(a, b):
    assert ok(lock(a))
    assert one_error(edit(b, "<name>x</name>"))["error-tag"] == "in-use"


def test_unlock_by_a_non_holder_fails(a, b):
    assert ok(lock(a))
    assert one_error(unlock(b))["error-tag"] == "operation-failed"
    assert one_error(unlock(b, "running"))["error-tag"] == "operation-failed"  # not locked
    assert ok(unlock(a))


def test_second_lock_by_the_same_session_is_denied(a):
    assert ok(lock(a))
    assert one_error(lock(a))["error-tag"] == "lock-denied"


# -- commit ------------------------------------------------------------------------------------

def test_commit_copies_candidate_to_running_and_persists(a, server, tmp_path):
    assert ok(edit(a, "<name>committed</name>"))
    assert name_in(a) is None
    assert ok(a.rpc("<commit/>"))
    assert name_in(a) == "committed"
    assert server.role.changes[-1].after["top"]["name"] == "committed"
    restarted = restart(server)
    assert name_in(Client(restarted)) == "committed"


def test_discard_changes_reverts_the_candidate(a):
    assert ok(edit(a, "<name>draft</name>"))
    assert ok(a.rpc("<discard-changes/>"))
    assert name_in(a, "candidate") is None


def test_edit_of_running_carries_over_to_an_unmodified_candidate(a):
    assert ok(edit(a, "<name>direct</name>", target="running"))
    assert name_in(a, "candidate") == "direct"


def test_confirmed_commit_then_confirming_commit(a, server):
    assert ok(edit(a, "<name>trial</name>"))
    assert ok(a.rpc("<commit><confirmed/><confirm-timeout>60</confirm-timeout></commit>"))
    assert name_in(a) == "trial"
    assert server.datastores.pending is not None
    assert ok(a.rpc("<commit/>"))
    assert server.datastores.pending is None
    assert name_in(a) == "trial"


def test_confirming_commit_from_another_session_is_refused(a, b):
    assert ok(edit(a, "<name>trial</name>"))
    assert ok(a.rpc("<commit><confirmed/></commit>"))
    assert one_error(b.rpc("<commit/>"))["error-tag"] == "in-use"
    assert ok(a.rpc("<cancel-commit/>"))


def test_confirm_timeout_expiry_rolls_back(a, server):
    assert ok(edit(a, "<name>kept</name>"))
    assert ok(a.rpc("<commit/>"))
    assert ok(edit(a, "<name>trial</name>"))
    assert ok(a.rpc("<commit><confirmed/><confirm-timeout>1</confirm-timeout></commit>"))
    assert name_in(a) == "trial"
    assert wait_for(lambda: name_in(a) == "kept")
    assert name_in(a, "candidate") == "kept"
    assert server.role.changes[-1].after["top"]["name"] == "kept"


def test_session_loss_rolls_back_an_unpersisted_confirmed_commit(a, b):
    assert ok(edit(a, "<name>trial</name>"))
    assert ok(a.rpc("<commit><confirmed/></commit>"))
    a.close()
    assert name_in(b) is None


def test_persisted_confirmed_commit_survives_session_loss_and_is_confirmed_elsewhere(a, b,
                                                                                     server):
    assert ok(edit(a, "<name>trial</name>"))
    assert ok(a.rpc("<commit><confirmed/><persist>p1</persist></commit>"))
    a.close()
    assert name_in(b) == "trial"
    err = one_error(b.rpc("<commit><persist-id>wrong</persist-id></commit>"))
    assert err["error-tag"] == "invalid-value"
    assert ok(b.rpc("<commit><persist-id>p1</persist-id></commit>"))
    assert server.datastores.pending is None
    assert name_in(b) == "trial"


def test_cancel_commit_rolls_back(a, server):
    assert ok(edit(a, "<name>trial</name>"))
    assert ok(a.rpc("<commit><confirmed/></commit>"))
    assert ok(a.rpc("<cancel-commit/>"))
    assert name_in(a) is None
    assert name_in(a, "candidate") is None
    assert server.datastores.pending is None


def test_cancel_commit_of_a_persisted_commit_needs_the_persist_id(a, b):
    assert ok(edit(a, "<name>trial</name>"))
    assert ok(a.rpc("<commit><confirmed/><persist>p2</persist></commit>"))
    assert one_error(b.rpc("<cancel-commit/>"))["error-tag"] == "invalid-value"
    assert ok(b.rpc("<cancel-commit><persist-id>p2</persist-id></cancel-commit>"))
    assert name_in(b) is None


def test_cancel_commit_without_a_pending_commit(a):
    assert one_error(a.rpc("<cancel-commit/>"))["error-tag"] == "operation-failed"


def test_persist_id_without_a_pending_commit(a):
    err = one_error(a.rpc("<commit><persist-id>nothing</persist-id></commit>"))
    assert err["error-tag"] == "invalid-value"


def test_bad_confirm_timeout(a):
    err = one_error(a.rpc("<commit><confirmed/><confirm-timeout>0</confirm-timeout></commit>"))
    assert err["error-tag"] == "invalid-value"


def test_persisted_confirmed_commit_survives_a_restart_then_times_out(a, server, tmp_path):
    assert ok(edit(a, "<name>kept</name>"))
    assert ok(a.rpc("<commit/>"))
    assert ok(edit(a, "<name>trial</name>"))
    assert ok(a.rpc("<commit><confirmed/><confirm-timeout>2</confirm-timeout>"
                    "<persist>p3</persist></commit>"))
    server.stop()                              # the old process is gone
    restarted = restart(server)
    c = Client(restarted)
    assert name_in(c) == "trial"
    assert restarted.datastores.pending is not None
    assert restarted.datastores.pending.persist == "p3"
    assert wait_for(lambda: name_in(c) == "kept", timeout=4)
    assert not (tmp_path / "confirmed-commit.json").exists()
    assert restarted.role.changes[-1].after["top"]["name"] == "kept"


def test_persisted_confirmed_commit_can_be_confirmed_after_a_restart(a, server, tmp_path):
    assert ok(edit(a, "<name>trial</name>"))
    assert ok(a.rpc("<commit><confirmed/><persist>p4</persist></commit>"))
    server.stop()
    restarted = restart(server)
    c = Client(restarted)
    assert ok(c.rpc("<commit><persist-id>p4</persist-id></commit>"))
    assert restarted.datastores.pending is None
    assert name_in(c) == "trial"
    assert not (tmp_path / "confirmed-commit.json").exists()


# -- validate, copy-config, delete-config --------------------------------------------------------

def test_validate_datastores(a):
    assert ok(edit(a, "<name>x</name>"))
    for source in ("candidate", "running", "startup"):
        assert ok(a.rpc(f"<validate><source><{source}/></source></validate>"))


def test_validate_inline_config(a):
    good = f'<config><top xmlns="{NS}"><item><id>5</id></item></top></config>'
    assert ok(a.rpc(f"<validate><source>{good}</source></validate>"))
    bad = f'<config><top xmlns="{NS}"><item><id>5</id><group>none</group></item></top></config>'
    err = one_error(a.rpc(f"<validate><source>{bad}</source></validate>"))
    assert err["error-tag"] == "data-missing"
    assert name_in(a) is None


def test_copy_running_to_startup(a, tmp_path):
    assert ok(edit(a, "<name>boot</name>", target="running"))
    assert ok(a.rpc("<copy-config><target><startup/></target><source><running/></source>"
                    "</copy-config>"))
    assert (tmp_path / "startup.xml").exists()
    assert b"boot" in (tmp_path / "startup.xml").read_bytes()
    assert name_in(a, "startup") == "boot"


def test_copy_inline_config_to_candidate(a):
    cfg = f'<config><top xmlns="{NS}"><name>inline</name></top></config>'
    assert ok(a.rpc(f"<copy-config><target><candidate/></target><source>{cfg}</source>"
                    "</copy-config>"))
    assert name_in(a, "candidate") == "inline"
    assert name_in(a) is None


def test_copy_config_to_the_same_datastore_is_refused(a):
    err = one_error(a.rpc("<copy-config><target><running/></target><source><running/></source>"
                          "</copy-config>"))
    assert err["error-tag"] == "invalid-value"


def test_delete_config_startup(a, tmp_path):
    assert ok(edit(a, "<name>boot</name>", target="running"))
    assert ok(a.rpc("<copy-config><target><startup/></target><source><running/></source>"
                    "</copy-config>"))
    assert ok(a.rpc("<delete-config><target><startup/></target></delete-config>"))
    assert name_in(a, "startup") is None
    assert b"boot" not in (tmp_path / "startup.xml").read_bytes()


def test_delete_config_running_is_refused(a):
    assert ok(edit(a, "<name>live</name>", target="running"))
    err = one_error(a.rpc("<delete-config><target><running/></target></delete-config>"))
    assert err["error-tag"] in ("invalid-value", "operation-not-supported")
    assert name_in(a) == "live"


def test_delete_config_of_a_startup_locked_by_another_session(a, b):
    assert ok(lock(a, "startup"))
    err = one_error(b.rpc("<delete-config><target><startup/></target></delete-config>"))
    assert err["error-tag"] == "in-use"
