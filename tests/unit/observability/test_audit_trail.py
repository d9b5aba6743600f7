"""The audit trail (nvo3.observability.audit) on the real engine, in memory (no SSH): every
configuration change and role RPC logged once on `nvo3.audit` with who, what and the result;
reads are not logged; leaf values never appear."""

from __future__ import annotations

import logging
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parents[1] / "netconf/server"))
from engine_harness import NS, Client, make_server, ok

from nvo3.observability.audit import AuditObserver


@pytest.fixture
def server(tmp_path):
    srv = make_server(tmp_path)
    srv.observer = AuditObserver(srv.role.name, srv.schema.modules_by_ns)
    yield srv
    srv.stop()


def audit_records(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.name == "nvo3.audit"]


def edit(target: str, body: str, op: str = "") -> str:
    return (f"<edit-config><target><{target}/></target>{op}<config>"
            f'<top xmlns="{NS}">{body}</top></config></edit-config>')


def test_an_edit_of_running_is_logged_once_with_who_what_and_result(server, caplog):
    caplog.set_level(logging.INFO, logger="nvo3.audit")
    c = Client(server, user="alice")
    many = "".join(f"<item><id>{i}</id><value>v{i}</value></item>" for i in range(100, 160))
    assert ok(c.rpc(edit("running", many)))    # a large store against each edit: in place
    (rec,) = audit_records(caplog)
    assert rec.summary == "merge 181 nodes: /engine-test:top/item"      # an empty store
    caplog.clear()
    assert ok(c.rpc(edit("running", "<item><id>1</id><value>s3cret-value</value></item>")))
    (rec,) = audit_records(caplog)
    assert (rec.user, rec.session, rec.peer) == ("alice", c.session.session_id, "127.0.0.1")
    assert (rec.operation, rec.target, rec.result) == ("edit-config", "running", "ok")
    assert rec.summary.startswith("merge 4 nodes: /engine-test:top/item[id='1']")
    assert rec.summary.endswith("(+1, ~0, -0)")          # made in place: created one entry
    assert "alice@127.0.0.1" in rec.getMessage() and rec.getMessage().endswith("-> ok")
    assert "s3cret" not in rec.getMessage() + str(vars(rec))   # values never logged
    caplog.clear()
    assert ok(c.rpc(edit("running", "<item><id>1</id><value>other</value></item>")))
    (rec,) = audit_records(caplog)
    assert rec.summary.endswith("(+0, ~1, -0)")


def test_reads_are_not_audited_refusals_are_with_their_error_tag(server, caplog):
    caplog.set_level(logging.INFO, logger="nvo3.audit")
    c = Client(server)
    c.rpc("<get-config><source><running/></source></get-config>")
    c.rpc("<get/>")
    c.rpc("<lock><target><candidate/></target></lock>")
    assert audit_records(caplog) == []
    assert not ok(c.rpc(edit("running", "<name>refuse</name>")))      # the role refuses it
    (rec,) = audit_records(caplog)
    assert rec.result == "operation-failed" and rec.target == "running"
    assert rec.getMessage().endswith("-> operation-failed")


def test_candidate_edit_and_commit_each_logged(server, caplog):
    caplog.set_level(logging.INFO, logger="nvo3.audit")
    c = Client(server, user="bob")
    assert ok(c.rpc(edit("candidate", "<item><id>7</id></item>",
                         "<default-operation>merge</default-operation>")))
    assert ok(c.rpc("<commit/>"))
    first, second = audit_records(caplog)
    assert (first.operation, first.target) == ("edit-config", "candidate")
    assert "/engine-test:top/item" in first.summary
    assert (second.operation, second.target, second.result) == ("commit", "running", "ok")
    assert second.user == "bob"


def test_role_rpcs_are_audited_with_their_input(server, caplog):
    caplog.set_level(logging.INFO, logger="nvo3.audit")
    c = Client(server)
    c.rpc(f'<ping xmlns="{NS}"><count>3</count></ping>')
    (rec,) = audit_records(caplog)
    assert rec.operation == "engine-test:ping" and rec.summary == "count=3"
    assert rec.result == "ok"
