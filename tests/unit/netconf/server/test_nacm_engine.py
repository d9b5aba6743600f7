"""NACM through the whole engine (in memory): exec, read, write, notifications, counters,
recovery users, /nacm edited over NETCONF, a role's access scope. Over SSH:
tests/integration/test_nacm.py."""

from __future__ import annotations

from pathlib import Path

import pytest
from lxml import etree

from nvo3 import YANG_DIR
from nvo3.netconf.server.engine import NetconfServer
from nvo3.netconf.server.nacm import Identity
from nvo3.netconf.server.role_api import AccessScope, ConfigChange, Role
from tests.unit.netconf.server.engine_harness import TEST_YANG, Client, errors, ok

NT = "urn:nvo3:test:nacm"
ACM = "urn:ietf:params:xml:ns:yang:ietf-netconf-acm"

USERS = {"root": Identity("root", recovery=True), "ops": Identity("ops", ("operators",)),
         "alice": Identity("alice", ("tenant-alice",)), "bob": Identity("bob", ("tenant-bob",)),
         "guest": Identity("guest")}


class ShopRole(Role):
    name = "shop"
    modules = ("nacm-test",)

    def __init__(self) -> None:
        super().__init__()
        self.orders: list[str] = []

    def apply(self, change: ConfigChange) -> None:
        pass

    def rpc_handlers(self) -> dict:
        def order(given: dict) -> dict:
            self.orders.append(given["tenant"])
            assert self.notifier is not None
            self.notifier.notify("nacm-test", "sold", {"tenant": given["tenant"]})
            return {"done": True}
        return {"nacm-test:order": order, "nacm-test:wipe": lambda given: None}

    def access_scopes(self) -> dict[str, AccessScope]:
        scope = AccessScope("tenant", "/nacm-test:shop/tenant[name={}]")
        return {"nacm-test:order": scope, "nacm-test:sold": scope}


def tenant_rules(t: str) -> str:
    return f"""<rule-list><name>tenant-{t}</name><group>tenant-{t}</group>
      <rule><name>own</name><path>/nt:shop/nt:tenant[nt:name='{t}']</path>
        <access-operations>*</access-operations><action>permit</action></rule>
      <rule><name>others</name><path>/nt:shop/nt:tenant</path>
        <access-operations>*</access-operations><action>deny</action></rule>
    </rule-list>"""


NACM = f"""<nacm xmlns="{ACM}" xmlns:nt="{NT}">
  <rule-list><name>operators</name><group>operators</group>
    <rule><name>no-secrets</name><path>/nt:shop/nt:tenant/nt:secret</path>
      <access-operations>read</access-operations><action>deny</action></rule>
    <rule><name>all</name><module-name>*</module-name><access-operations>*</access-operations>
      <action>permit</action></rule>
  </rule-list>
  {tenant_rules("alice")}{tenant_rules("bob")}
</nacm>"""

SHOP = f"""<shop xmlns="{NT}"><motto>buy</motto>
  <tenant><name>alice</name><note>a</note><secret>sa</secret><limit>1</limit></tenant>
  <tenant><name>bob</name><note>b</note><secret>sb</secret></tenant></shop>"""


@pytest.fixture
def server(tmp_path: Path):
    srv = NetconfServer(ShopRole(), tmp_path, yang_dirs=(TEST_YANG, YANG_DIR),
                        accounts=lambda name: USERS.get(name, Identity(name)))
    srv.start()
    root = Client(srv, "root")
    assert ok(root.rpc(f"<edit-config><target><running/></target><config>{NACM}{SHOP}"
                       "</config></edit-config>"))
    yield srv
    srv.stop()


def edit(client: Client, content: str, target: str = "running") -> etree._Element:
    return client.rpc(f"<edit-config><target><{target}/></target><config>{content}</config>"
                      "</edit-config>")


def get_config(client: Client, filt: str = "") -> etree._Element:
    return client.rpc(f"<get-config><source><running/></source>{filt}</get-config>")


def texts(reply: etree._Element, name: str) -> list[str]:
    return [e.text or "" for e in reply.iter(f"{{{NT}}}{name}")]


def denied(reply: etree._Element) -> dict[str, str]:
    [err] = errors(reply)
    assert err["error-tag"] == "access-denied", err
    return err


def counters(server: NetconfServer) -> dict[str, int]:
    c = server.nacm.counters
    return {"ops": c.denied_operations, "writes": c.denied_data_writes,
            "notifications": c.denied_notifications}


def test_tenant_reads_own_entry_only_and_no_secret(server: NetconfServer) -> None:
    alice = Client(server, "alice")
    reply = get_config(alice)
    assert texts(reply, "name") == ["alice"] and texts(reply, "secret") == ["sa"]
    assert texts(reply, "motto") == ["buy"]                          # read-default permit
    assert reply.find(f".//{{{ACM}}}nacm") is None                   # /nacm is deny-all
    ops = get_config(Client(server, "ops"))
    assert texts(ops, "name") == ["alice", "bob"] and texts(ops, "secret") == []
    guest = get_config(Client(server, "guest"))
    assert texts(guest, "secret") == [] and texts(guest, "note") == ["a", "b"]
    root = get_config(Client(server, "root"))
    assert texts(root, "secret") == ["sa", "sb"] and root.find(f".//{{{ACM}}}nacm") is not None


def test_filters_do_not_reveal_denied_nodes(server: NetconfServer) -> None:
    for user in ("alice", "ops", "guest"):
        client = Client(server, user)
        xpath = get_config(client, '<filter type="xpath" select="//secret"/>')
        assert texts(xpath, "secret") == ([] if user != "alice" else ["sa"]), user
        subtree = get_config(client, f'<filter type="subtree"><shop xmlns="{NT}"><tenant>'
                                     '<name>bob</name></tenant></shop></filter>')
        assert (texts(subtree, "note") == ["b"]) == (user != "alice"), user
    get = Client(server, "guest").rpc('<get><filter type="xpath" select="//secret"/></get>')
    assert texts(get, "secret") == []


def test_tenant_writes_own_entry_and_is_refused_elsewhere(server: NetconfServer) -> None:
    alice = Client(server, "alice")
    assert ok(edit(alice, f'<shop xmlns="{NT}"><tenant><name>alice</name><note>a2</note>'
                          "</tenant></shop>"))
    err = denied(edit(alice, f'<shop xmlns="{NT}"><tenant><name>bob</name><note>x</note>'
                             "</tenant></shop>"))
    assert err["error-type"] == "application"
    assert err["error-path"] == "/nacm-test:shop/tenant[name='bob']/name"
    denied(edit(alice, f'<shop xmlns="{NT}"><tenant><name>carol</name></tenant></shop>'))
    denied(edit(alice, f'<shop xmlns="{NT}"><motto>mine</motto></shop>'))
    denied(edit(alice, f'<shop xmlns="{NT}" xmlns:nc="urn:ietf:params:xml:ns:netconf:base:1.0"'
                       ' nc:operation="delete"/>'))
    denied(edit(alice, f'<shop xmlns="{NT}" xmlns:nc="urn:ietf:params:xml:ns:netconf:base:1.0"'
                       ' nc:operation="replace"><tenant><name>alice</name></tenant></shop>'))
    root_view = get_config(Client(server, "root"))
    assert texts(root_view, "note") == ["a2", "b"] and texts(root_view, "motto") == ["buy"]
    assert counters(server)["writes"] == 5


def test_default_deny_write_and_all_on_writes(server: NetconfServer) -> None:
    guest = Client(server, "guest")
    denied(edit(guest, f'<shop xmlns="{NT}"><motto>x</motto></shop>'))    # write-default deny
    alice = Client(server, "alice")
    assert ok(edit(alice, f'<shop xmlns="{NT}"><tenant><name>alice</name><limit>5</limit>'
                          "</tenant></shop>"))                           # her rule matches
    ops = Client(server, "ops")             # may set a secret, not read it back
    assert ok(edit(ops, f'<shop xmlns="{NT}"><tenant><name>bob</name><secret>s</secret>'
                        "</tenant></shop>"))
    assert texts(get_config(ops), "secret") == []
    assert ok(edit(ops, f'<shop xmlns="{NT}"><motto>sell</motto></shop>'))
    denied(edit(alice, f'<nacm xmlns="{ACM}"><read-default>deny</read-default></nacm>'))


def test_candidate_commit_copy_and_delete_config(server: NetconfServer) -> None:
    alice, root = Client(server, "alice"), Client(server, "root")
    # alice's candidate edits are checked as she makes them
    denied(edit(alice, f'<shop xmlns="{NT}"><motto>x</motto></shop>', "candidate"))
    # a change someone else put in the candidate is checked at her commit
    assert ok(edit(root, f'<shop xmlns="{NT}"><motto>x</motto></shop>', "candidate"))
    denied(alice.rpc("<commit/>"))
    assert texts(get_config(root), "motto") == ["buy"]
    assert ok(root.rpc("<discard-changes/>"))
    assert ok(edit(alice, f'<shop xmlns="{NT}"><tenant><name>alice</name><note>c</note>'
                          "</tenant></shop>", "candidate"))
    assert ok(alice.rpc("<commit/>"))
    denied(alice.rpc("<copy-config><target><startup/></target><source><running/></source>"
                     "</copy-config>"))
    assert ok(Client(server, "ops").rpc(
        "<copy-config><target><startup/></target><source><running/></source></copy-config>"))
    err = denied(alice.rpc("<delete-config><target><startup/></target></delete-config>"))
    assert err["error-type"] == "protocol"                  # default-deny-all operation
    assert texts(get_config(root), "note") == ["c", "b"]
    startup = root.rpc("<get-config><source><startup/></source></get-config>")
    assert texts(startup, "note") == ["c", "b"]
    # the operators' catch-all rule matches delete-config too (it overrides the annotation)
    assert ok(Client(server, "ops").rpc("<delete-config><target><startup/></target>"
                                        "</delete-config>"))


def test_exec_rules_kill_session_and_close_session(server: NetconfServer) -> None:
    alice, bob, guest = Client(server, "alice"), Client(server, "bob"), Client(server, "guest")
    denied(guest.rpc(f"<kill-session><session-id>{bob.session.session_id}</session-id>"
                     "</kill-session>"))
    denied(guest.rpc(f'<wipe xmlns="{NT}"/>'))                      # deny-all RPC
    assert ok(guest.rpc("<lock><target><running/></target></lock>"))   # exec permit
    assert ok(guest.rpc("<unlock><target><running/></target></unlock>"))
    assert ok(alice.rpc("<close-session/>"))
    assert counters(server)["ops"] == 2
    root = Client(server, "root")
    assert ok(root.rpc(f"<kill-session><session-id>{bob.session.session_id}</session-id>"
                       "</kill-session>"))


def test_scoped_rpc_needs_write_access_to_the_tenant(server: NetconfServer) -> None:
    alice = Client(server, "alice")
    assert texts(alice.rpc(f'<order xmlns="{NT}"><tenant>alice</tenant></order>'),
                 "done") == ["true"]
    err = denied(alice.rpc(f'<order xmlns="{NT}"><tenant>bob</tenant></order>'))
    assert "bob" in err["error-message"]
    denied(Client(server, "guest").rpc(f'<order xmlns="{NT}"><tenant>bob</tenant></order>'))
    assert texts(Client(server, "ops").rpc(f'<order xmlns="{NT}"><tenant>bob</tenant></order>'),
                 "done") == ["true"]
    assert server.role.orders == ["alice", "bob"]   # type: ignore[attr-defined]


def test_notifications_filtered_per_subscriber(server: NetconfServer) -> None:
    alice, bob, root = Client(server, "alice"), Client(server, "bob"), Client(server, "root")
    for c in (alice, bob):
        assert ok(c.rpc('<create-subscription xmlns="urn:ietf:params:xml:ns:netconf:'
                        'notification:1.0"/>'))
    root.rpc(f'<order xmlns="{NT}"><tenant>alice</tenant></order>')
    root.rpc(f'<order xmlns="{NT}"><tenant>bob</tenant></order>')

    def sold(client: Client) -> list[str]:
        return [t for n in client.notifications() for t in texts(n, "tenant")]
    assert sold(alice) == ["alice"] and sold(bob) == ["bob"]
    assert counters(server)["notifications"] == 2


def test_nacm_edited_over_netconf_takes_effect_at_once(server: NetconfServer) -> None:
    guest, root = Client(server, "guest"), Client(server, "root")
    assert texts(get_config(guest), "note") == ["a", "b"]
    assert ok(edit(root, f'<nacm xmlns="{ACM}"><read-default>deny</read-default></nacm>'))
    assert texts(get_config(guest), "note") == []
    assert ok(edit(root, f'<nacm xmlns="{ACM}"><enable-nacm>false</enable-nacm></nacm>'))
    assert texts(get_config(guest), "secret") == ["sa", "sb"]
    assert ok(edit(guest, f'<shop xmlns="{NT}"><motto>free</motto></shop>'))


def test_counters_in_get(server: NetconfServer) -> None:
    guest, root = Client(server, "guest"), Client(server, "root")
    denied(edit(guest, f'<shop xmlns="{NT}"><motto>x</motto></shop>'))
    reply = root.rpc(f'<get><filter type="subtree"><nacm xmlns="{ACM}"/></filter>'
                     '<with-defaults xmlns="urn:ietf:params:xml:ns:yang:ietf-netconf-with-defaults">'
                     "report-all</with-defaults></get>")
    assert reply.findtext(f".//{{{ACM}}}denied-data-writes") == "1"
    assert reply.findtext(f".//{{{ACM}}}write-default") == "deny"


def test_no_user_store_means_no_checks(tmp_path: Path) -> None:
    srv = NetconfServer(ShopRole(), tmp_path, yang_dirs=(TEST_YANG, YANG_DIR))
    srv.start()
    try:
        assert ok(edit(Client(srv, "anyone"), SHOP))
    finally:
        srv.stop()


def test_config_change_edits_hidden_per_subscriber(server: NetconfServer) -> None:
    """netconf-config-change (RFC 6470): a subscriber gets only the <edit>s it may read."""
    alice = Client(server, "alice")
    assert ok(alice.rpc('<create-subscription xmlns="urn:ietf:params:xml:ns:netconf:'
                        'notification:1.0"/>'))
    target = "/nacm-test:shop/nacm-test:tenant[nacm-test:name='{}']/nacm-test:note"
    # built without validation (libyang checks an edit's target against the notification's
    # own tree, where no instance exists)
    server.notify_batch("ietf-netconf-notifications", "netconf-config-change", [{
        "datastore": "running",
        "edit": [{"target": target.format(t), "operation": "merge"} for t in ("alice", "bob")]}])
    [note] = alice.notifications()
    ns = "urn:ietf:params:xml:ns:yang:ietf-netconf-notifications"
    targets = [t.text or "" for t in note.iter(f"{{{ns}}}target")]
    assert len(targets) == 1 and "'alice'" in targets[0], targets


def test_benchmark_write_check_at_10000_entries(server: NetconfServer) -> None:
    """The NACM check of a one-entry edit costs in proportion to the edit: figures printed
    for a tenant user (checked) and the recovery user (not checked) at 10,000 tenants."""
    import time
    root, alice = Client(server, "root"), Client(server, "alice")
    entries = "".join(f"<tenant><name>t{i}</name><note>n</note></tenant>" for i in range(10_000))
    assert ok(edit(root, f'<shop xmlns="{NT}">{entries}</shop>'))
    one = f'<shop xmlns="{NT}"><tenant><name>alice</name><note>%d</note></tenant></shop>'
    config = etree.fromstring(f"<config>{one % 0}</config>")
    who = USERS["alice"]
    running = server.datastores.running.dnode
    runs = 200
    t0 = time.perf_counter()
    for _ in range(runs):
        server.nacm.check_edit(who, config, "merge", running)
    check_us = (time.perf_counter() - t0) / runs * 1e6
    timings = {}
    for user, client in (("alice", alice), ("root", root)):
        t0 = time.perf_counter()
        for i in range(50):
            assert ok(edit(client, one % i))
        timings[user] = (time.perf_counter() - t0) / 50 * 1000
    print(f"\nNACM at 10,000 entries: check of a one-entry edit {check_us:.0f} us; "
          f"edit-config as a tenant user {timings['alice']:.2f} ms, as the recovery user "
          f"{timings['root']:.2f} ms")
