"""Issue 13, "each protocol behaviour made right": an ndirector daemon as its own process,
reached over real SSH by nvo3's client (ncclient underneath) and by raw sockets and paramiko
where a client must misbehave (drop the connection)."""

from __future__ import annotations

import socket
import struct
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import paramiko
import pytest
from lxml import etree

from nvo3.launcher import RoleProcess, start_role
from nvo3.netconf.client import Client, RemoteRpcError
from nvo3.netconf.proto.xml import BASE_NS, NC_NOTIFICATIONS_NS

if TYPE_CHECKING:
    from conftest import Daemons

NC = BASE_NS
ND = "urn:nvo3:yang:nvo3-ndirector"
NCN = NC_NOTIFICATIONS_NS
NS = {"nc": NC, "nd": ND, "ncn": NCN}


def nve(name: str, n: int, extra: str = "") -> str:
    """One valid managed NVE (address 198.18.1.n, VTEP 198.18.0.n)."""
    return (f"<nve><name>{name}</name><address>198.18.1.{n}</address>"
            f"<vtep-address>198.18.0.{n}</vtep-address>{extra}</nve>")


def config(*parts: str) -> str:
    return (f'<config xmlns="{NC}" xmlns:nc="{NC}"><ndirector xmlns="{ND}">{"".join(parts)}'
            "</ndirector></config>")


def nves(*items: str) -> str:
    return "<nves>" + "".join(items) + "</nves>"


def xp(el: etree._Element, path: str) -> Any:
    return el.xpath(path, namespaces=NS)


def nve_names(data: etree._Element) -> list[str]:
    return [str(t) for t in xp(data, "nd:ndirector/nd:nves/nd:nve/nd:name/text()")]


def wait_for(predicate: Callable[[], object], timeout: float, step: float = 0.05) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(step)
    return bool(predicate())


def next_event(c: Client, name: str, timeout: float = 5.0) -> etree._Element:
    """The next notification whose event is `name` (others are skipped)."""
    deadline = time.monotonic() + timeout
    while True:
        left = deadline - time.monotonic()
        assert left > 0, f"no {name} notification within {timeout} s"
        try:
            n = c.notifications.get(timeout=left)
        except Exception:
            continue
        events = [e for e in n if etree.QName(e).localname == name]
        if events:
            return events[0]


# 4. unlock of the candidate discards the locking session's uncommitted changes ---------------
def test_unlock_of_candidate_discards_its_uncommitted_changes(nd: RoleProcess,
                                                              session: Client) -> None:
    session.lock("candidate")
    session.edit_config(config(nves(nve("host1", 1))), target="candidate")
    assert nve_names(session.get_config("candidate")) == ["host1"]
    session.unlock("candidate")
    assert nve_names(session.get_config("candidate")) == []
    assert nve_names(session.get_config("running")) == []
    with nd.connect() as other:                   # and another session can lock it at once
        other.lock("candidate")
        other.unlock("candidate")


def test_unlock_after_commit_keeps_the_committed_configuration(session: Client) -> None:
    session.lock("candidate")
    session.edit_config(config(nves(nve("host1", 1))), target="candidate")
    session.commit()
    session.unlock("candidate")
    assert nve_names(session.get_config("running")) == ["host1"]
    assert nve_names(session.get_config("candidate")) == ["host1"]


# 5. a session that ends before confirming: rollback and its event ----------------------------
@pytest.mark.parametrize("how", ["close-session", "drop"])
def test_confirmed_commit_rollback_at_session_end_is_notified(nd: RoleProcess, session: Client,
                                                              how: str) -> None:
    session.create_subscription()
    a = nd.connect()
    a.edit_config(config(nves(nve("host1", 1))), target="candidate")
    a.commit(confirmed=True, timeout=60)
    started = next_event(session, "netconf-confirmed-commit")
    assert xp(started, "string(ncn:confirm-event)") == "start"
    sid = a.session_id
    if how == "close-session":
        a.close()
    else:
        a.session.transport.close()          # the TCP connection just goes away
    event = next_event(session, "netconf-confirmed-commit")
    assert xp(event, "string(ncn:confirm-event)") == "cancel"
    assert xp(event, "string(ncn:username)") == nd.username
    assert xp(event, "string(ncn:session-id)") == str(sid)
    assert xp(event, "string(ncn:source-host)") == "127.0.0.1"
    assert nve_names(session.get_config("running")) == []
    a.close()
    log = (nd.state_dir / "daemon.log").read_text()
    assert "could not build netconf-confirmed-commit" not in log


# 6. ordinary client disconnects: one INFO line, no traceback ---------------------------------
def test_client_disconnects_are_logged_at_info_without_traceback(daemons: Daemons) -> None:
    proc = daemons.start()
    log_file = proc.state_dir / "daemon.log"
    # close without close-session (nvo3's client drops its transport)
    c = proc.connect()
    c.session.transport.close()
    # TCP reset before the SSH banner, and EOF after it
    s = socket.create_connection((proc.host, proc.port))
    s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    s.close()
    s = socket.create_connection((proc.host, proc.port))
    s.recv(100)
    s.close()
    # authenticated, the netconf subsystem open, then a TCP reset (no hello, no close)
    for hello in (False, True):
        s = socket.create_connection((proc.host, proc.port))
        t = paramiko.Transport(s)
        t.start_client(timeout=10)
        t.auth_password(proc.username, proc.password)
        ch = t.open_session()
        ch.invoke_subsystem("netconf")
        if hello:
            ch.sendall(f'<hello xmlns="{NC}"><capabilities><capability>'
                       'urn:ietf:params:netconf:base:1.0</capability></capabilities>'
                       "</hello>]]>]]>".encode())
        ch.recv(65536)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        s.close()
        t.close()
    with proc.connect() as probe:                  # the server still serves
        assert probe.get_config("running") is not None
    assert wait_for(lambda: log_file.read_text().count("session ended") >= 4, 5)
    time.sleep(0.3)
    text = log_file.read_text()
    assert "Traceback" not in text, text
    assert " ERROR " not in text and " WARNING " not in text, text
    assert "client disconnected" in text


# 2. the candidate's constraints wait for <commit> and <validate> (RFC 7950 section 8.3.3) ----
def network(vni: int, tenant: str, *members: str) -> str:
    m = "".join(f"<member-nve>{x}</member-nve>" for x in members)
    return f"<network><vni>{vni}</vni><tenant>{tenant}</tenant>{m}</network>"


def networks(*items: str) -> str:
    return "<networks>" + "".join(items) + "</networks>"


def test_candidate_replace_valid_only_with_a_later_edit(session: Client) -> None:
    """A default-operation replace whose network names an NVE (leafref) that only the next
    edit adds is accepted into the candidate; the commit of both succeeds."""
    session.edit_config(config(networks(network(100, "alice", "host9"))), target="candidate",
                        default_operation="replace")
    assert [str(v) for v in xp(session.get_config("candidate"),
                                "//nd:member-nve/text()")] == ["host9"]
    session.edit_config(config(nves(nve("host9", 9))), target="candidate")
    session.dispatch("<validate><source><candidate/></source></validate>")
    session.commit()
    running = session.get_config("running")
    assert nve_names(running) == ["host9"]
    assert [str(v) for v in xp(running, "//nd:member-nve/text()")] == ["host9"]


def test_commit_of_an_invalid_candidate_is_refused(session: Client) -> None:
    session.edit_config(config(nves(nve("host1", 1))), target="running")
    # a dangling leafref, and an NVE without its mandatory vtep-address
    session.edit_config(config(networks(network(100, "alice", "nosuch"))), target="candidate")
    with pytest.raises(RemoteRpcError) as excinfo:
        session.commit()
    err = excinfo.value
    assert err.tag == "data-missing"
    assert err.app_tag == "instance-required"
    assert err.path == "/nvo3-ndirector:ndirector/networks/network[vni='100']/member-nve[.='nosuch']"
    with pytest.raises(RemoteRpcError) as excinfo:
        session.dispatch("<validate><source><candidate/></source></validate>")
    assert excinfo.value.tag == "data-missing"
    assert nve_names(session.get_config("running")) == ["host1"]
    assert xp(session.get_config("running"), "//nd:network") == []
    session.discard_changes()
    session.edit_config(config(nves("<nve><name>host2</name><address>198.18.1.2</address>"
                                    "</nve>")), target="candidate")
    with pytest.raises(RemoteRpcError) as excinfo:
        session.commit()
    assert excinfo.value.tag == "data-missing"
    assert "vtep-address" in (excinfo.value.path or "") + str(excinfo.value)
    assert nve_names(session.get_config("running")) == ["host1"]
    # the candidate keeps what was refused, for the client to fix it
    assert nve_names(session.get_config("candidate")) == ["host1", "host2"]


def test_candidate_still_refuses_schema_and_type_errors(session: Client) -> None:
    with pytest.raises(RemoteRpcError) as excinfo:
        session.edit_config(config(nves(nve("host1", 1, "<bogus/>"))), target="candidate")
    assert excinfo.value.tag == "unknown-element"
    with pytest.raises(RemoteRpcError) as excinfo:
        session.edit_config(config(nves("<nve><name>h</name><address>198.18.1.1</address>"
                                        "<vtep-address>not-an-ip</vtep-address></nve>")),
                            target="candidate")
    assert excinfo.value.tag == "invalid-value"
    assert nve_names(session.get_config("candidate")) == []


def test_confirmed_commit_of_an_invalid_candidate_is_refused(session: Client) -> None:
    session.edit_config(config(networks(network(7, "bob", "ghost"))), target="candidate")
    with pytest.raises(RemoteRpcError) as excinfo:
        session.commit(confirmed=True, timeout=30)
    assert excinfo.value.tag == "data-missing"
    assert xp(session.get_config("running"), "//nd:network") == []
    with pytest.raises(RemoteRpcError):
        session.dispatch("<cancel-commit/>")          # nothing is pending


# 1. netconf-config-change carries its <edit> list (RFC 6470) ----------------------------------
def edits_of(event: etree._Element) -> list[tuple[str, str]]:
    """(target as the client reads it: namespaces resolved to local names, operation)."""
    out = []
    for edit in xp(event, "ncn:edit"):
        target = edit.find(f"{{{NCN}}}target")
        text = target.text or ""
        for prefix, uri in target.nsmap.items():
            if prefix and f"{prefix}:" in text:
                assert uri == ND, (prefix, uri)
                text = text.replace(f"{prefix}:", "")
        assert ":" not in text.split("[")[0], text          # every node was prefixed
        out.append((text, xp(edit, "string(ncn:operation)")))
    return out


NDP = "/ndirector/nves/nve"


def test_config_change_lists_its_edits(nd: RoleProcess, session: Client) -> None:
    session.create_subscription()
    with nd.connect() as b:
        b.edit_config(config(nves(nve("host1", 1), nve("host2", 2))), target="running")
        assert sorted(edits_of(next_event(session, "netconf-config-change"))) == [
            (f"{NDP}[name='host1']", "create"), (f"{NDP}[name='host2']", "create")]
        b.edit_config(config(nves(nve("host1", 1, "<port>831</port>"))), target="running")
        assert edits_of(next_event(session, "netconf-config-change")) == [
            (f"{NDP}[name='host1']", "merge")]
        b.edit_config(config(nves('<nve nc:operation="delete"><name>host2</name></nve>')),
                      target="running")
        assert edits_of(next_event(session, "netconf-config-change")) == [
            (f"{NDP}[name='host2']", "delete")]
        b.edit_config(config("<data-center>dc7</data-center>"), target="running")
        assert edits_of(next_event(session, "netconf-config-change")) == [
            ("/ndirector/data-center", "create")]
        # through the candidate: the entries that differ
        b.edit_config(config(nves(nve("host3", 3),
                                  '<nve nc:operation="delete"><name>host1</name></nve>')),
                      target="candidate")
        b.commit()
        assert sorted(edits_of(next_event(session, "netconf-config-change"))) == [
            (f"{NDP}[name='host1']", "delete"), (f"{NDP}[name='host3']", "create")]


def test_config_change_of_a_large_edit_names_every_entry(nd: RoleProcess,
                                                         session: Client) -> None:
    session.create_subscription()
    many = [nve(f"h{i}", 1 + i % 250, "").replace(f"198.18.0.{1 + i % 250}",
                                                 f"198.19.{i // 250}.{i % 250}")
            for i in range(600)]
    with nd.connect() as b:
        b.edit_config(config(nves(*many)), target="running")
        event = next_event(session, "netconf-config-change", timeout=30)
    assert sorted(edits_of(event)) == sorted((f"{NDP}[name='h{i}']", "create")
                                             for i in range(600))


# 7. secrets at rest ---------------------------------------------------------------------------
def _peer_state(proc: RoleProcess, name: str) -> str:
    with proc.connect() as c:
        return str(xp(c.get(), f"string(nd:ndirector/nd:nves/nd:nve[nd:name='{name}']"
                               "/nd:session/nd:state)"))


def _files_holding(root: Path, secret: bytes) -> list[str]:
    return [str(p) for p in root.rglob("*") if p.is_file() and secret in p.read_bytes()]


def test_peer_passwords_are_encrypted_at_rest(tmp_path: Path, daemons: Daemons) -> None:
    nve_dir = tmp_path / "nve"
    nve_dir.mkdir()
    peer = start_role("nve", nve_dir, extra_args=("--store-only",))
    try:
        nd = daemons.start()
        entry = ("<nve><name>host1</name><address>127.0.0.1</address>"
                 f"<port>{peer.port}</port><username>{peer.username}</username>"
                 f"<password>{peer.password}</password><host-key>{peer.host_key}</host-key>"
                 "<vtep-address>198.18.0.1</vtep-address></nve>")
        with nd.connect() as c:
            c.edit_config(config(nves(entry)), target="running")          # journal: merge
            c.dispatch("<copy-config><target><startup/></target><source><running/></source>"
                       "</copy-config>")                                     # startup
            c.edit_config(config(nves(entry.replace("<nve>", '<nve nc:operation="replace">'))),
                          target="running")                                  # journal: edit
        assert wait_for(lambda: _peer_state(nd, "host1") == "connected", 20)
        secret = peer.password.encode()
        assert _files_holding(nd.state_dir, secret) == []
        key = nd.state_dir / "secrets.key"
        assert (key.stat().st_mode & 0o777) == 0o600
        assert (nd.state_dir / "ssh_host_ed25519_key").exists()           # beside the host key
        assert not list((nd.state_dir / "datastores").glob("*.key"))
        # still served in clear to a client with the right, and read back after a restart
        with nd.connect() as c:
            assert str(xp(c.get_config(), "string(//nd:password)")) == peer.password
        nd = daemons.restart(nd)
        assert wait_for(lambda: _peer_state(nd, "host1") == "connected", 20)
        with nd.connect() as c:
            assert str(xp(c.get_config("startup"), "string(//nd:password)")) == peer.password
        assert _files_holding(nd.state_dir, secret) == []
    finally:
        peer.stop()


def test_a_clear_text_store_is_read_and_rewritten_encrypted(daemons: Daemons) -> None:
    """A state directory written before secrets were encrypted (clear passwords in the
    running base and in startup) is loaded as it is and rewritten encrypted."""
    nd = daemons.start()
    nd.stop()
    password = "legacy-Secret-42"
    body = (f'<config xmlns="{NC}"><ndirector xmlns="{ND}"><nves><nve><name>old</name>'
            f"<address>198.18.1.9</address><port>830</port><password>{password}</password>"
            "<enabled>false</enabled><vtep-address>198.18.0.9</vtep-address></nve></nves>"
            "</ndirector></config>\n").encode()
    datastores = nd.state_dir / "datastores"
    for f in datastores.glob("running.*"):
        f.unlink()
    (datastores / "running.0.xml").write_bytes(body)
    (datastores / "startup.xml").write_bytes(body)
    (nd.state_dir / "secrets.key").unlink(missing_ok=True)
    assert _files_holding(nd.state_dir, password.encode())
    nd = daemons.restart(nd)
    with nd.connect() as c:
        assert str(xp(c.get_config("running"), "string(//nd:password)")) == password
        assert str(xp(c.get_config("startup"), "string(//nd:password)")) == password
    assert _files_holding(nd.state_dir, password.encode()) == []
    nd = daemons.restart(nd)
    with nd.connect() as c:
        assert str(xp(c.get_config("running"), "string(//nd:password)")) == password


# 3. continue-on-error applies the valid parts (RFC 6241 section 7.2) ---------------------------
def _mixed_edit() -> str:
    """Valid: NVE host1, network 100 -> host1. Invalid only to validation: NVE bad (its VTEP
    address is no IP address), network 200 -> nosuch (a dangling leafref)."""
    bad = ("<nve><name>bad</name><address>198.18.1.7</address>"
           "<vtep-address>not-an-ip</vtep-address></nve>")
    return config(nves(nve("host1", 1), bad),
                  networks(network(100, "alice", "host1"), network(200, "bob", "nosuch")))


def _vnis(data: etree._Element) -> list[int]:
    return [int(v) for v in xp(data, "nd:ndirector/nd:networks/nd:network/nd:vni/text()")]


@pytest.mark.parametrize("target", ["running", "candidate"])
def test_continue_on_error_applies_the_valid_parts(session: Client, target: str) -> None:
    with pytest.raises(RemoteRpcError) as excinfo:
        session.edit_config(_mixed_edit(), target=target, error_option="continue-on-error")
    errors = excinfo.value.errors
    data = session.get_config(target)
    assert nve_names(data) == ["host1"]
    if target == "running":
        assert sorted(e.tag for e in errors) == ["data-missing", "invalid-value"]
        assert any("nve[name='bad']" in (e.path or "") for e in errors), errors
        assert any("network[vni='200']" in (e.path or "") for e in errors), errors
        assert _vnis(data) == [100]
    else:            # the candidate checks the leafref at commit: network 200 is kept
        assert [e.tag for e in errors] == ["invalid-value"]
        assert _vnis(data) == [100, 200]


@pytest.mark.parametrize("option", ["stop-on-error", "rollback-on-error"])
def test_stop_and_rollback_on_error_apply_nothing_of_an_invalid_edit(session: Client,
                                                                     option: str) -> None:
    with pytest.raises(RemoteRpcError):
        session.edit_config(_mixed_edit(), target="running", error_option=option)
    assert nve_names(session.get_config()) == []
    assert _vnis(session.get_config()) == []


def test_continue_on_error_with_nothing_valid_changes_nothing(session: Client) -> None:
    session.edit_config(config(nves(nve("host1", 1))), target="running")
    with pytest.raises(RemoteRpcError) as excinfo:
        session.edit_config(config(networks(network(300, "x", "ghost"))), target="running",
                            error_option="continue-on-error")
    assert [e.tag for e in excinfo.value.errors] == ["data-missing"]
    assert nve_names(session.get_config()) == ["host1"] and _vnis(session.get_config()) == []


def test_copy_of_an_invalid_candidate_to_running_or_startup_is_refused(session: Client) -> None:
    session.edit_config(config(networks(network(9, "eve", "ghost"))), target="candidate")
    for target in ("running", "startup"):
        with pytest.raises(RemoteRpcError) as excinfo:
            session.dispatch(f"<copy-config><target><{target}/></target><source><candidate/>"
                             "</source></copy-config>")
        assert excinfo.value.tag == "data-missing"
        assert xp(session.get_config(target), "//nd:network") == []
