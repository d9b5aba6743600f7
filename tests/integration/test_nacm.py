"""NACM (RFC 8341) over real SSH: a vCenter and an nDirector daemon with the lab's users and
rules (nvo3.lab.users): two tenant administrators, an operator, and the daemon's recovery
admin. Every allowed and every refused case a user would try."""

from __future__ import annotations

import contextlib
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from lxml import etree

from nvo3.lab import users as lab_users
from nvo3.lab.state import LabUser
from nvo3.launcher import RoleProcess, start_role
from nvo3.netconf.client.session import Client, RemoteRpcError, connect
from nvo3.roles.peers import codec as peer

VC, ND = "nvo3-vcenter", "nvo3-ndirector"
VC_NS, ND_NS = "urn:nvo3:yang:nvo3-vcenter", "urn:nvo3:yang:nvo3-ndirector"
ACM_NS = lab_users.ACM_NS
TENANTS = ["alice", "bob"]


@pytest.fixture(scope="module")
def dead_port() -> Iterator[int]:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    try:
        yield s.getsockname()[1]
    finally:
        s.close()


def vcenter_config(port: int) -> dict[str, Any]:
    vserver = {"address": "127.0.0.1", "port": port, "username": "vcenter",
               "password": "vs-secret", "data-center": "dc1"}
    return {"vcenter": {
        "name": "vcenter-dc1", "data-center": ["dc1"],
        "tenants": {"tenant": [
            {"name": "alice", "vnid": 10010, "vm-group": [{"name": "web"}]},
            {"name": "bob", "vnid": 20020, "vm-group": [{"name": "db"}]}]},
        "vservers": {"vserver": [{"name": "vs1", "nve": "nve1", **vserver}]}}}


def ndirector_config(port: int) -> dict[str, Any]:
    return {"ndirector": {"nves": {"nve": [
        {"name": "nve1", "address": "127.0.0.1", "port": port, "vtep-address": "198.18.0.1",
         "username": "nd", "password": "nve-secret"}]},
        "networks": {"network": [{"vni": 10010, "tenant": "alice", "member-nve": ["nve1"]},
                                 {"vni": 20020, "tenant": "bob", "member-nve": ["nve1"]}]}}}


VNIS = {"alice": 10010, "bob": 20020}


@pytest.fixture(scope="module")
def users() -> list[LabUser]:
    return lab_users.lab_users(TENANTS)


def _daemon(tmp: Path, role: str, config: dict[str, Any], module: str,
            users: list[LabUser]) -> RoleProcess:
    state = tmp / role
    state.mkdir()
    proc = start_role(role, state, extra_args=("--store-only",) if role == "ndirector" else ())
    with proc.connect() as admin:
        peer.merge_config(admin, module, config, target="running")
        lab_users.install(state, role, admin, users, TENANTS, VNIS)
    return proc


@pytest.fixture(scope="module")
def vcenter(tmp_path_factory: pytest.TempPathFactory, dead_port: int,
            users: list[LabUser]) -> Iterator[RoleProcess]:
    proc = _daemon(tmp_path_factory.mktemp("nacm"), "vcenter", vcenter_config(dead_port), VC,
                   users)
    try:
        yield proc
    finally:
        proc.stop(timeout=5)


@pytest.fixture(scope="module")
def ndirector(tmp_path_factory: pytest.TempPathFactory, dead_port: int,
              users: list[LabUser]) -> Iterator[RoleProcess]:
    proc = _daemon(tmp_path_factory.mktemp("nacm"), "ndirector", ndirector_config(dead_port),
                   ND, users)
    try:
        yield proc
    finally:
        proc.stop(timeout=5)


@contextlib.contextmanager
def login(proc: RoleProcess, users: list[LabUser], name: str) -> Iterator[Client]:
    if name == "admin":
        c = proc.connect()
    else:
        user = next(u for u in users if u.name == name)
        c = connect(proc.host, proc.port, user.name, user.password, host_key=proc.host_key)
    try:
        yield c
    finally:
        c.close()


def refused(call: Any, *args: Any, **kwargs: Any) -> Any:
    with pytest.raises(RemoteRpcError) as err:
        call(*args, **kwargs)
    assert err.value.tag == "access-denied", err.value
    return err.value


def texts(reply: etree._Element, ns: str, name: str) -> list[str]:
    return [e.text or "" for e in reply.iter(f"{{{ns}}}{name}")]


def tenants_in(reply: etree._Element) -> list[str]:
    return [t.findtext(f"{{{VC_NS}}}name") or "" for t in reply.iter(f"{{{VC_NS}}}tenant")]


def tenant_names(c: Client) -> list[str]:
    return tenants_in(c.get_config(source="running", filter=(
        "subtree", f'<vcenter xmlns="{VC_NS}"><tenants/></vcenter>')))


def edit_tenant(c: Client, tenant: str, description: str) -> None:
    c.edit_config(f'<config xmlns="urn:ietf:params:xml:ns:netconf:base:1.0">'
                  f'<vcenter xmlns="{VC_NS}"><tenants><tenant><name>{tenant}</name>'
                  f"<description>{description}</description></tenant></tenants></vcenter>"
                  "</config>", target="running")


def description(c: Client, tenant: str) -> str | None:
    reply = c.get_config(source="running", filter=(
        "xpath", f"/vcenter/tenants/tenant[name='{tenant}']/description"))
    found = texts(reply, VC_NS, "description")
    return found[0] if found else None


def call(c: Client, rpc: str, **given: Any) -> dict[str, Any]:
    return peer.call(c, VC, rpc, {k.replace("_", "-"): v for k, v in given.items()})


# reads -----------------------------------------------------------------------------------------
def test_each_tenant_sees_its_own_tenant_only(vcenter: RoleProcess, users: list[LabUser]) -> None:
    for name, seen in (("alice-admin", ["alice"]), ("bob-admin", ["bob"]),
                       ("operator", ["alice", "bob"]), ("admin", ["alice", "bob"])):
        with login(vcenter, users, name) as c:
            assert tenant_names(c) == seen, name
            whole = c.get(filter=("subtree", f'<vcenter xmlns="{VC_NS}"/>'))
            assert tenants_in(whole) == seen, name


@pytest.mark.parametrize("role", ["vcenter", "ndirector"])
def test_passwords_are_read_by_the_recovery_user_only(request: pytest.FixtureRequest,
                                                      users: list[LabUser], role: str) -> None:
    proc = request.getfixturevalue(role)
    for name in ("alice-admin", "bob-admin", "operator", "admin"):
        with login(proc, users, name) as c:
            found = [texts(r, ns, "password") for ns in (VC_NS, ND_NS)
                     for r in (c.get_config(source="running", filter=("xpath", "//password")),
                               c.get(filter=("xpath", "//password")),
                               c.get_config(source="running"))]
            flat = {p for group in found for p in group}
            secret = {"vcenter": "vs-secret", "ndirector": "nve-secret"}[role]
            assert flat == ({secret} if name == "admin" else set()), name


def test_nacm_itself_readable_by_operators_not_tenants(vcenter: RoleProcess,
                                                       users: list[LabUser]) -> None:
    for name, visible in (("alice-admin", False), ("operator", True)):
        with login(vcenter, users, name) as c:
            reply = c.get_config(source="running", filter=("subtree",
                                                           f'<nacm xmlns="{ACM_NS}"/>'))
            assert (reply.find(f".//{{{ACM_NS}}}rule-list") is not None) == visible, name


# writes ----------------------------------------------------------------------------------------
def test_tenant_edits_own_tenant_and_not_the_other(vcenter: RoleProcess,
                                                   users: list[LabUser]) -> None:
    with login(vcenter, users, "alice-admin") as alice, login(vcenter, users, "admin") as admin:
        edit_tenant(alice, "alice", "alice's")
        assert description(admin, "alice") == "alice's"
        err = refused(edit_tenant, alice, "bob", "hijacked")
        assert err.type == "application"
        assert err.path is not None and "tenant[name='bob']" in err.path
        assert description(admin, "bob") is None
        refused(alice.edit_config, f'<config xmlns="urn:ietf:params:xml:ns:netconf:base:1.0">'
                f'<vcenter xmlns="{VC_NS}"><name>mine</name></vcenter></config>',
                target="running")
        with login(vcenter, users, "operator") as op:
            edit_tenant(op, "bob", "by the operator")
        assert description(admin, "bob") == "by the operator"


def test_datastore_operations_refused_to_tenants(vcenter: RoleProcess,
                                                 users: list[LabUser]) -> None:
    with login(vcenter, users, "alice-admin") as alice, \
            login(vcenter, users, "operator") as op, login(vcenter, users, "admin") as admin:
        refused(alice.dispatch, "<copy-config><target><startup/></target><source><running/>"
                                "</source></copy-config>")
        refused(alice.dispatch, "<delete-config><target><startup/></target></delete-config>")
        err = refused(alice.kill_session, op.session_id)
        assert err.type == "protocol"
        assert op.connected
        alice.lock(target="running")              # lock is exec-permitted (RFC 8341 default)
        alice.unlock(target="running")
        refused(alice.dispatch, f'<copy-config><target><running/></target><source><config>'
                                f'<vcenter xmlns="{VC_NS}"><name>x</name></vcenter></config>'
                                "</source></copy-config>")
        assert tenant_names(admin) == ["alice", "bob"]
        op.dispatch("<copy-config><target><startup/></target><source><running/></source>"
                    "</copy-config>")
        startup = admin.get_config(source="startup")
        assert texts(startup, VC_NS, "password") == ["vs-secret"]   # copied whole


# tenant-scoped RPCs ------------------------------------------------------------------------------
def test_tenant_scoped_rpcs(vcenter: RoleProcess, users: list[LabUser]) -> None:
    with login(vcenter, users, "alice-admin") as alice, login(vcenter, users, "admin") as admin:
        call(admin, "register-vm", vserver="vs1", tenant="alice", name="a1",
             mac_address="02:00:00:00:01:01")
        call(admin, "register-vm", vserver="vs1", tenant="bob", name="b1",
             mac_address="02:00:00:00:02:01")
        assert [v["name"] for v in call(alice, "lookup-vm", tenant="alice",
                                        name="a1").get("vm", [])] == ["a1"]
        refused(call, alice, "lookup-vm", tenant="bob", name="b1")
        refused(call, alice, "lookup-vm", mac_address="02:00:00:00:02:01")  # no tenant named
        err = refused(call, alice, "create-vm", tenant="bob", name="evil", vm_group="db")
        assert "bob" in err.message
        refused(call, alice, "terminate-vm", tenant="bob", name="b1")
        with pytest.raises(RemoteRpcError) as own:          # allowed: fails further on only
            call(alice, "create-vm", tenant="alice", name="a2", vm_group="web")
        assert own.value.tag != "access-denied"
        with login(vcenter, users, "operator") as op:
            assert [v["name"] for v in call(op, "lookup-vm",
                                            mac_address="02:00:00:00:02:01")["vm"]] == ["b1"]


# notifications ------------------------------------------------------------------------------------
def alerts(c: Client, count: int, timeout: float = 3.0) -> list[str]:
    found: list[str] = []
    deadline = time.monotonic() + timeout
    while len(found) < count and time.monotonic() < deadline:
        with contextlib.suppress(Exception):
            parsed = peer.notification(c.notifications.get(timeout=0.2))
            if parsed is not None and parsed[1] == "vm-alert":
                found.append(parsed[2]["tenant"])
    return found


def test_notifications_of_other_tenants_are_not_delivered(vcenter: RoleProcess,
                                                          users: list[LabUser]) -> None:
    with login(vcenter, users, "alice-admin") as alice, \
            login(vcenter, users, "bob-admin") as bob, login(vcenter, users, "admin") as admin:
        alice.create_subscription()
        bob.create_subscription()
        for tenant in ("bob", "alice", "bob"):
            call(admin, "unregister-vm", vserver="vs1", tenant=tenant, name="ghost")
        assert alerts(alice, 3) == ["alice"]
        assert alerts(bob, 3) == ["bob", "bob"]
        reply = admin.get(filter=("subtree", f'<nacm xmlns="{ACM_NS}"/>'))
        assert int(reply.findtext(f".//{{{ACM_NS}}}denied-notifications") or 0) >= 3


# /nacm over NETCONF, recovery users ---------------------------------------------------------------
def test_nacm_changes_take_effect_at_once(ndirector: RoleProcess, users: list[LabUser]) -> None:
    with login(ndirector, users, "alice-admin") as alice, \
            login(ndirector, users, "operator") as op:
        assert texts(alice.get_config(source="running"), ND_NS, "name") == ["nve1"]
        op.edit_config(f'<config xmlns="urn:ietf:params:xml:ns:netconf:base:1.0">'
                       f'<nacm xmlns="{ACM_NS}"><read-default>deny</read-default></nacm>'
                       "</config>", target="running")
        try:
            assert texts(alice.get_config(source="running"), ND_NS, "name") == []
            # the operators' rules permit reading /nacm only: the rest follows read-default
            assert texts(op.get_config(source="running"), ND_NS, "name") == []
            assert op.get_config(source="running").find(f".//{{{ACM_NS}}}nacm") is not None
        finally:
            op.edit_config(f'<config xmlns="urn:ietf:params:xml:ns:netconf:base:1.0">'
                           f'<nacm xmlns="{ACM_NS}"><read-default>permit</read-default>'
                           "</nacm></config>", target="running")
        assert texts(alice.get_config(source="running"), ND_NS, "name") == ["nve1"]


def test_recovery_user_added_by_the_cli_is_unrestricted(ndirector: RoleProcess) -> None:
    cli = [sys.executable, "-m", "nvo3.cli", "user", "add", "rescue", "--recovery",
           "--state-dir", str(ndirector.state_dir)]
    subprocess.run(cli, input=b"rescue-pw\n", check=True, capture_output=True, cwd="/tmp")
    with connect(ndirector.host, ndirector.port, "rescue", "rescue-pw",
                 host_key=ndirector.host_key) as c:
        assert texts(c.get_config(source="running", filter=("xpath", "//password")),
                     ND_NS, "password") == ["nve-secret"]
        c.edit_config(f'<config xmlns="urn:ietf:params:xml:ns:netconf:base:1.0">'
                      f'<nacm xmlns="{ACM_NS}"><write-default>deny</write-default></nacm>'
                      "</config>", target="running")


def test_no_password_in_the_logs(vcenter: RoleProcess, ndirector: RoleProcess,
                                 users: list[LabUser]) -> None:
    """Peer and user passwords never reach a daemon's log (after everything above)."""
    secrets = ["vs-secret", "nve-secret", "rescue-pw", *(u.password for u in users),
               vcenter.password, ndirector.password]
    for proc in (vcenter, ndirector):
        text = (proc.state_dir / "daemon.log").read_text(errors="replace")
        assert "session" in text                       # the log is the daemon's, and in use
        assert not [s for s in secrets if s in text], proc.role


@pytest.mark.parametrize("name,seen", [("alice-admin", ["10010"]), ("bob-admin", ["20020"]),
                                       ("operator", ["10010", "20020"])])
def test_a_tenant_reads_its_own_network_only_on_the_ndirector(
        ndirector: RoleProcess, users: list[LabUser], name: str, seen: list[str]) -> None:
    with login(ndirector, users, name) as c:
        reply = c.get_config(source="running")
        assert sorted(texts(reply, ND_NS, "vni")) == seen
        filtered = c.get(filter=("xpath", "//*[local-name()='network']"))
        assert sorted(texts(filtered, ND_NS, "vni")) == seen
