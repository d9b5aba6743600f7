"""edit-config (RFC 6241 section 7.2) through in-memory sessions: operations, options, errors.

Real libyang validation and real datastores on disk (tmp_path); see engine_harness.py.
"""

from __future__ import annotations

import pytest
from engine_harness import BASE, NS, Client, errors, make_server, ok, saved_running
from lxml import etree

NC = f'xmlns:nc="{BASE}"'


def edit(client: Client, config: str, target: str = "running", **options: str) -> etree._Element:
    """An <edit-config>; options are parameter elements such as default_operation="none"."""
    params = "".join(f"<{k.replace('_', '-')}>{v}</{k.replace('_', '-')}>"
                     for k, v in options.items())
    return client.rpc(f"<edit-config {NC}><target><{target}/></target>{params}"
                      f"<config>{config}</config></edit-config>")


def top(body: str, attrs: str = "") -> str:
    return f'<top xmlns="{NS}" {attrs}>{body}</top>'


def item(id_: int, value: str | None = None, group: str | None = None, op: str = "") -> str:
    attr = f' nc:operation="{op}"' if op else ""
    inner = f"<id>{id_}</id>"
    inner += f"<value>{value}</value>" if value is not None else ""
    inner += f"<group>{group}</group>" if group is not None else ""
    return f"<item{attr}>{inner}</item>"


def config(client: Client, source: str = "running") -> etree._Element:
    """The <data> of a get-config."""
    reply = client.rpc(f"<get-config><source><{source}/></source></get-config>")
    data = reply.find(f"{{{BASE}}}data")
    assert data is not None, etree.tostring(reply)
    return data


def texts(data: etree._Element, path: str) -> list[str]:
    return [e.text or "" for e in data.iterfind(path, {"t": NS})]


def items(data: etree._Element) -> dict[str, str | None]:
    out = {}
    for entry in data.iterfind("t:top/t:item", {"t": NS}):
        out[entry.findtext("t:id", namespaces={"t": NS})] = \
            entry.findtext("t:value", namespaces={"t": NS})
    return out


def one_error(reply: etree._Element) -> dict[str, str]:
    errs = errors(reply)
    assert len(errs) == 1, etree.tostring(reply)
    return errs[0]


@pytest.fixture
def server(tmp_path):
    srv = make_server(tmp_path)
    yield srv
    srv.stop()


@pytest.fixture
def client(server):
    c = Client(server)
    reply = edit(c, top("<group><name>g1</name></group>" + item(1, "a", "g1") + item(2, "b")
                        + "<tag>t1</tag><tag>t2</tag>"))
    assert ok(reply), etree.tostring(reply)
    return c


# -- operations -------------------------------------------------------------------------------

def test_merge_creates_and_changes_deep_nodes(client):
    assert ok(edit(client, top(item(1, "a2") + item(3, "c") + "<tag>t3</tag>")))
    data = config(client)
    assert items(data) == {"1": "a2", "2": "b", "3": "c"}
    assert texts(data, "t:top/t:item[t:id='1']/t:group") == ["g1"]      # merge keeps it
    assert texts(data, "t:top/t:tag") == ["t1", "t2", "t3"]


def test_replace_list_entry_drops_what_was_not_given(client):
    assert ok(edit(client, top(item(1, "new", op="replace"))))
    data = config(client)
    assert items(data)["1"] == "new"
    assert texts(data, "t:top/t:item[t:id='1']/t:group") == []


def test_replace_at_top_level(client):
    assert ok(edit(client, top("<name>only</name>", 'nc:operation="replace"')))
    data = config(client)
    assert texts(data, "t:top/t:name") == ["only"]
    assert items(data) == {}
    assert texts(data, "t:top/t:tag") == []


def test_replace_leaf(client):
    assert ok(edit(client, top('<item><id>2</id><value nc:operation="replace">bb</value></item>')))
    assert items(config(client))["2"] == "bb"


def test_create_new_entry_and_leaf_list_entry(client):
    assert ok(edit(client, top(item(5, "e", op="create") + '<tag nc:operation="create">t9</tag>')))
    data = config(client)
    assert items(data)["5"] == "e"
    assert "t9" in texts(data, "t:top/t:tag")


def test_create_on_existing_entry_is_data_exists_with_error_path(client):
    err = one_error(edit(client, top(item(1, op="create"))))
    assert err["error-tag"] == "data-exists"
    assert err["error-type"] == "application"
    assert err["error-path"] == "/engine-test:top/item[id='1']"


def test_create_on_existing_leaf_list_entry_is_data_exists(client):
    err = one_error(edit(client, top('<tag nc:operation="create">t1</tag>')))
    assert err["error-tag"] == "data-exists"
    assert err["error-path"] == "/engine-test:top/tag[.='t1']"


def test_error_path_prefix_is_declared(client):
    reply = edit(client, top(item(1, op="create")))
    path = reply.find(f".//{{{BASE}}}error-path")
    assert path is not None and path.nsmap.get("engine-test") == NS


def test_delete_entry_leaf_and_leaf_list_entry(client):
    reply = edit(client, top(item(2, op="delete")
                             + '<item><id>1</id><value nc:operation="delete"/></item>'
                             + '<tag nc:operation="delete">t1</tag>'))
    assert ok(reply), etree.tostring(reply)
    data = config(client)
    assert items(data) == {"1": None}
    assert texts(data, "t:top/t:item/t:group") == ["g1"]
    assert texts(data, "t:top/t:tag") == ["t2"]


def test_delete_top_level_container(client):
    assert ok(edit(client, top("", 'nc:operation="delete"')))
    assert len(config(client)) == 0


@pytest.mark.parametrize("target", [item(9, op="delete"), '<tag nc:operation="delete">zz</tag>',
                                    '<item><id>2</id><group nc:operation="delete"/></item>'])
def test_delete_missing_is_data_missing(client, target):
    before = etree.tostring(config(client))
    err = one_error(edit(client, top(target)))
    assert err["error-tag"] == "data-missing"
    assert err["error-path"].startswith("/engine-test:top/")
    assert etree.tostring(config(client)) == before


def test_remove_missing_is_ok_and_remove_existing_removes(client):
    assert ok(edit(client, top(item(9, op="remove") + '<tag nc:operation="remove">zz</tag>')))
    assert ok(edit(client, top(item(2, op="remove") + '<tag nc:operation="remove">t2</tag>')))
    data = config(client)
    assert items(data) == {"1": "a"}
    assert texts(data, "t:top/t:tag") == ["t1"]


def test_bad_operation_attribute(client):
    err = one_error(edit(client, top(item(1, op="frobnicate"))))
    assert err["error-tag"] == "bad-attribute"
    assert err["bad-attribute"] == "operation"


def test_edit_spanning_two_top_level_nodes(client):
    assert ok(edit(client, top(item(7, "g")) + f'<extra xmlns="{NS}"><note>n</note></extra>'))
    data = config(client)
    assert items(data)["7"] == "g"
    assert texts(data, "t:extra/t:note") == ["n"]


# -- default-operation --------------------------------------------------------------------------

def test_default_operation_none_with_nested_merge_creates_the_parent(server):
    c = Client(server)
    assert ok(edit(c, top(item(4, "d", op="merge")), default_operation="none"))
    assert items(config(c)) == {"4": "d"}


def test_default_operation_none_changes_nothing_without_operations(client, server):
    applied = len(server.role.changes)
    assert ok(edit(client, top(item(1, "zzz") + "<name>x</name>"), default_operation="none"))
    data = config(client)
    assert items(data)["1"] == "a"
    assert texts(data, "t:top/t:name") == []
    assert len(server.role.changes) == applied


def test_default_operation_none_delete_of_missing_is_data_missing(client):
    err = one_error(edit(client, top(item(42, op="delete")), default_operation="none"))
    assert err["error-tag"] == "data-missing"


def test_default_operation_merge_is_the_default(client):
    assert ok(edit(client, top(item(6, "f")), default_operation="merge"))
    assert set(items(config(client))) == {"1", "2", "6"}


def test_default_operation_replace_replaces_the_datastore(client):
    assert ok(edit(client, f'<extra xmlns="{NS}"><note>n</note></extra>'))
    assert ok(edit(client, top("<name>fresh</name>"), default_operation="replace"))
    data = config(client)
    assert texts(data, "t:top/t:name") == ["fresh"]
    assert items(data) == {}
    assert texts(data, "t:extra/t:note") == []   # RFC 6241 7.2: completely replaces


def test_bad_default_operation(client):
    err = one_error(edit(client, top(""), default_operation="create"))
    assert err["error-tag"] == "invalid-value"


# -- test-option and error-option -----------------------------------------------------------

def test_test_only_changes_nothing(client, server, tmp_path):
    applied = len(server.role.changes)
    on_disk = saved_running(tmp_path)
    assert ok(edit(client, top(item(8, "h")), test_option="test-only"))
    assert "8" not in items(config(client))
    assert len(server.role.changes) == applied
    assert saved_running(tmp_path) == on_disk


def test_test_only_still_validates(client):
    err = one_error(edit(client, top(item(8, group="nope")), test_option="test-only"))
    assert err["error-tag"] == "data-missing"


def test_set_without_test_applies(client):
    assert ok(edit(client, top(item(8, "h")), test_option="set"))
    assert items(config(client))["8"] == "h"


FAILING_PAIR = item(10, "ten") + item(1, op="create")


def test_rollback_on_error_applies_nothing(client, server):
    before = etree.tostring(config(client))
    applied = len(server.role.changes)
    err = one_error(edit(client, top(FAILING_PAIR), error_option="rollback-on-error"))
    assert err["error-tag"] == "data-exists"
    assert etree.tostring(config(client)) == before
    assert len(server.role.changes) == applied


def test_stop_on_error_keeps_what_came_before(client):
    err = one_error(edit(client, top(FAILING_PAIR + item(11, "eleven")),
                         error_option="stop-on-error"))
    assert err["error-tag"] == "data-exists"
    got = items(config(client))
    assert got["10"] == "ten"
    assert "11" not in got


def test_continue_on_error_applies_valid_parts_and_reports_all(client):
    reply = edit(client, top(item(10, "ten") + item(1, op="create") + item(11, "eleven")
                             + item(99, op="delete")), error_option="continue-on-error")
    errs = errors(reply)
    assert [e["error-tag"] for e in errs] == ["data-exists", "data-missing"]
    assert len(reply.findall(f"{{{BASE}}}rpc-error")) == 2
    assert reply.find(f"{{{BASE}}}ok") is None
    got = items(config(client))
    assert got["10"] == "ten" and got["11"] == "eleven"


def test_invalid_result_applies_nothing_even_with_continue_on_error(client):
    before = etree.tostring(config(client))
    reply = edit(client, top(item(12, "x", group="missing-group")),
                 error_option="continue-on-error")
    assert errors(reply)[0]["error-tag"] == "data-missing"
    assert etree.tostring(config(client)) == before


# -- namespaces ------------------------------------------------------------------------------

def test_unqualified_config_element(server):
    c = Client(server)
    reply = c.rpc(f'<edit-config><target><running/></target><config xmlns="">'
                  f'<top xmlns="{NS}"><name>plain</name></top></config></edit-config>')
    assert ok(reply), etree.tostring(reply)
    assert texts(config(c), "t:top/t:name") == ["plain"]


def test_unqualified_data_nodes_resolve_to_the_unique_module(server):
    c = Client(server)
    reply = c.rpc('<edit-config><target><running/></target><config xmlns="">'
                  '<top><name>bare</name><item><id>3</id></item></top></config></edit-config>')
    assert ok(reply), etree.tostring(reply)
    data = config(c)
    assert texts(data, "t:top/t:name") == ["bare"]
    assert list(items(data)) == ["3"]


def test_missing_config_is_missing_element(client):
    err = one_error(client.rpc("<edit-config><target><running/></target></edit-config>"))
    assert err["error-tag"] == "missing-element"
    assert err["bad-element"] == "config"


# -- errors from the schema ------------------------------------------------------------------

def test_unknown_element_under_existing_node(client):
    err = one_error(edit(client, top("<bogus>1</bogus>")))
    assert err["error-tag"] == "unknown-element"
    assert err["bad-element"] == "bogus"


def test_unknown_element_inside_new_entry(client):
    err = one_error(edit(client, top("<item><id>30</id><bogus>1</bogus></item>")))
    assert err["error-tag"] == "unknown-element"
    assert err["bad-element"] == "bogus"
    assert "30" not in items(config(client))


def test_unknown_top_level_element(client):
    err = one_error(edit(client, '<nothing xmlns="urn:example:none"/>'))
    assert err["error-tag"] in ("unknown-element", "unknown-namespace")
    assert err.get("bad-element") == "nothing" or err.get("bad-namespace") == "urn:example:none"


def test_invalid_value_out_of_range(client):
    err = one_error(edit(client, top(item(0, "zero"))))
    assert err["error-tag"] == "invalid-value"
    assert err["error-type"] == "application"
    assert "engine-test:top" in err["error-path"] and "id" in err["error-path"]


def test_invalid_value_not_a_number(client):
    err = one_error(edit(client, top("<limits><min>lots</min></limits>")))
    assert err["error-tag"] == "invalid-value"
    assert err["error-path"].endswith("min")


def test_dangling_leafref_is_data_missing_instance_required(client):
    err = one_error(edit(client, top(item(1, group="g-none"))))
    assert err["error-tag"] == "data-missing"
    assert err["error-app-tag"] == "instance-required"
    assert err["error-path"].startswith("/engine-test:top/item[id='1']/group")


def test_deleting_a_referenced_group_is_data_missing(client):
    err = one_error(edit(client, top('<group nc:operation="delete"><name>g1</name></group>')))
    assert err["error-tag"] == "data-missing"
    assert err["error-app-tag"] == "instance-required"


def test_missing_mandatory_leaf(client):
    err = one_error(edit(client, top("<rule><seq>1</seq></rule>")))
    assert err["error-tag"] == "data-missing"
    assert "rule" in err["error-path"]


def test_must_violation_carries_the_error_message(client):
    err = one_error(edit(client, top("<limits><min>50</min><max>5</max></limits>")))
    assert err["error-tag"] == "operation-failed"
    assert err["error-app-tag"] == "must-violation"
    assert err["error-message"] == "max is below min"


def test_unique_violation(client):
    err = one_error(edit(client, top(item(3, "a"))))            # item 1 has value "a"
    assert err["error-tag"] == "operation-failed"
    assert err["error-app-tag"] == "data-not-unique"
    assert "item" in err["error-path"]


def test_missing_list_key(client):
    err = one_error(edit(client, top("<item><value>nokey</value></item>")))
    assert err["error-tag"] == "missing-element"
    assert err["bad-element"] == "id"


def test_missing_list_key_in_new_top_level_tree(server):
    c = Client(server)
    err = one_error(edit(c, top("<item><value>nokey</value></item>")))
    assert err["error-tag"] == "missing-element"
    assert err["bad-element"] == "id"


def test_error_is_well_formed_in_the_base_namespace(client):
    reply = edit(client, top(item(1, op="create")))
    err = reply.find(f"{{{BASE}}}rpc-error")
    assert err is not None
    names = [etree.QName(c).localname for c in err]
    assert names[:3] == ["error-type", "error-tag", "error-severity"]
    assert "error-message" in names
    assert all(etree.QName(c).namespace == BASE for c in err)
    assert err.findtext(f"{{{BASE}}}error-severity") == "error"
    assert err.find(f"{{{BASE}}}error-message").get(
        "{http://www.w3.org/XML/1998/namespace}lang") == "en"
    assert reply.get("message-id") == str(client.ids)


# -- the role refuses -------------------------------------------------------------------------

def test_refused_change_leaves_running_and_disk_unchanged(client, server, tmp_path):
    before = etree.tostring(config(client))
    on_disk = saved_running(tmp_path)
    applied = len(server.role.changes)
    err = one_error(edit(client, top("<name>refuse</name>")))
    assert err["error-tag"] == "operation-failed"
    assert "refused" in err["error-message"]
    assert etree.tostring(config(client)) == before
    assert saved_running(tmp_path) == on_disk
    assert len(server.role.changes) == applied
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".") and p.name != ".running.lock"]


def test_refused_change_on_candidate_is_refused_at_commit(client, tmp_path):
    on_disk = saved_running(tmp_path)
    assert ok(edit(client, top("<name>refuse</name>"), target="candidate"))
    err = one_error(client.rpc("<commit/>"))
    assert "refused" in err["error-message"]
    assert texts(config(client), "t:top/t:name") == []
    assert texts(config(client, "candidate"), "t:top/t:name") == ["refuse"]
    assert saved_running(tmp_path) == on_disk


# -- ordered-by user (RFC 7950 section 7.8.6) ------------------------------------------------

YANG = "urn:ietf:params:xml:ns:yang:1"


def rule(seq: int, insert: str = "", key: str = "", op: str = "") -> str:
    attrs = f' xmlns:yang="{YANG}"'
    attrs += f' yang:insert="{insert}"' if insert else ""
    attrs += f' yang:key="[et:seq=\'{key}\']" xmlns:et="{NS}"' if key else ""
    attrs += f' nc:operation="{op}"' if op else ""
    return f"<rule{attrs}><seq>{seq}</seq><action>a{seq}</action></rule>"


def rules(client: Client) -> list[str]:
    return texts(config(client), "t:top/t:rule/t:seq")


def test_ordered_by_user_keeps_the_given_order(client):
    assert ok(edit(client, top(rule(3) + rule(1) + rule(2))))
    assert rules(client) == ["3", "1", "2"]


@pytest.mark.parametrize("insert,key,expected", [
    ("first", "", ["9", "3", "1", "2"]),
    ("last", "", ["3", "1", "2", "9"]),
    ("before", "1", ["3", "9", "1", "2"]),
    ("after", "1", ["3", "1", "9", "2"]),
])
def test_insert_new_entry(client, insert, key, expected):
    assert ok(edit(client, top(rule(3) + rule(1) + rule(2))))
    reply = edit(client, top(rule(9, insert, key)))
    assert ok(reply), etree.tostring(reply)
    assert rules(client) == expected


def test_insert_moves_an_existing_entry(client):
    assert ok(edit(client, top(rule(3) + rule(1) + rule(2))))
    assert ok(edit(client, top(rule(2, "first"))))
    assert rules(client) == ["2", "3", "1"]
    assert ok(edit(client, top(rule(2, "after", "1", op="replace"))))
    assert rules(client) == ["3", "1", "2"]


def test_insert_relative_to_a_missing_entry_is_bad_attribute(client):
    assert ok(edit(client, top(rule(3))))
    err = one_error(edit(client, top(rule(9, "before", "77"))))
    assert err["error-tag"] == "bad-attribute"
    assert err["error-app-tag"] == "missing-instance"
    assert rules(client) == ["3"]


def test_unqualified_operation_attribute_is_not_silently_ignored(client):
    reply = edit(client, top('<item operation="delete"><id>2</id></item>'))
    assert ok(reply), etree.tostring(reply)
    assert "2" not in items(config(client))


def test_state_node_in_config_is_refused(client):
    reply = edit(client, top("<counters><hits>3</hits></counters>"))
    assert errors(reply), etree.tostring(reply)
