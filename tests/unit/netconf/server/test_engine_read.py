"""<get> and <get-config>: with-defaults (RFC 6243), determinism, state (RFC 6022, yang-library),
subtree and XPath filters through the RPC (RFC 6241 sections 6 and 8.9)."""

from __future__ import annotations

import pytest
from engine_harness import BASE, NS, Client, errors, make_server, ok
from lxml import etree

from nvo3.netconf.proto.xml import MONITORING_NS, WD_ATTR_NS, WITH_DEFAULTS_NS, qname

WD = WITH_DEFAULTS_NS
WD_ATTR = qname(WD_ATTR_NS, "default")
MON = MONITORING_NS
YANGLIB = "urn:ietf:params:xml:ns:yang:ietf-yang-library"
T = {"t": NS}


def edit(client: Client, body: str, **options: str) -> etree._Element:
    params = "".join(f"<{k.replace('_', '-')}>{v}</{k.replace('_', '-')}>"
                     for k, v in options.items())
    return client.rpc(f"<edit-config><target><running/></target>{params}"
                      f'<config><top xmlns="{NS}">{body}</top></config></edit-config>')


def data_of(reply: etree._Element) -> etree._Element:
    data = reply.find(f"{{{BASE}}}data")
    assert data is not None, etree.tostring(reply)
    return data


def get_config(client: Client, source: str = "running", wd: str | None = None,
               filt: str = "") -> etree._Element:
    wd_el = f'<with-defaults xmlns="{WD}">{wd}</with-defaults>' if wd else ""
    return client.rpc(f"<get-config><source><{source}/></source>{filt}{wd_el}</get-config>")


@pytest.fixture
def server(tmp_path):
    srv = make_server(tmp_path)
    yield srv
    srv.stop()


@pytest.fixture
def client(server):
    c = Client(server)
    reply = edit(c, "<group><name>g1</name></group>"
                    "<item><id>1</id><value>a</value><group>g1</group></item>"
                    "<item><id>2</id><value>b</value></item><tag>x</tag>"
                    "<limits><min>1</min><max>20</max></limits>")
    assert ok(reply), etree.tostring(reply)
    return c


# -- with-defaults -----------------------------------------------------------------------------

def test_explicit_reports_set_values_only(client):
    data = data_of(get_config(client, wd="explicit"))
    assert data.findtext("t:top/t:limits/t:min", namespaces=T) == "1"   # set, equal to default
    assert data.find("t:top/t:name", T) is None                         # never set
    assert etree.tostring(data) == etree.tostring(data_of(get_config(client)))  # basic-mode


def test_trim_drops_values_equal_to_their_default(client):
    data = data_of(get_config(client, wd="trim"))
    assert data.find("t:top/t:limits/t:min", T) is None
    assert data.findtext("t:top/t:limits/t:max", namespaces=T) == "20"
    assert data.find("t:top/t:name", T) is None


def test_report_all_includes_defaults(client):
    data = data_of(get_config(client, wd="report-all"))
    assert data.findtext("t:top/t:name", namespaces=T) == "unnamed"
    assert data.findtext("t:top/t:limits/t:min", namespaces=T) == "1"
    assert data.find("t:top/t:name", T).get(WD_ATTR) is None


def test_report_all_tagged_marks_default_values(client):
    data = data_of(get_config(client, wd="report-all-tagged"))
    name = data.find("t:top/t:name", T)
    assert name is not None and name.text == "unnamed"
    assert name.get(WD_ATTR) == "true"
    assert data.find("t:top/t:limits/t:max", T).get(WD_ATTR) is None      # 20 is not default
    assert data.find("t:top/t:item/t:id", T).get(WD_ATTR) is None
    raw = etree.tostring(get_config(client, wd="report-all-tagged"))
    assert b"ietf-netconf-with-defaults" not in raw                       # not libyang's ncwd


def test_report_all_tagged_tags_a_set_value_equal_to_the_default(client):
    """RFC 6243 3.4: every node whose value equals its schema default is tagged."""
    data = data_of(get_config(client, wd="report-all-tagged"))
    assert data.find("t:top/t:limits/t:min", T).get(WD_ATTR) == "true"


def test_with_defaults_on_get(client):
    reply = client.rpc(f'<get><with-defaults xmlns="{WD}">report-all</with-defaults></get>')
    assert data_of(reply).findtext("t:top/t:name", namespaces=T) == "unnamed"


def test_unknown_with_defaults_mode(client):
    err = errors(get_config(client, wd="everything"))[0]
    assert err["error-tag"] == "invalid-value"


# -- determinism -------------------------------------------------------------------------------

def test_get_config_is_byte_identical_twice_and_after_a_no_op_edit(client, server):
    first = etree.tostring(get_config(client))
    assert etree.tostring(get_config(client)).replace(b'message-id="3"', b'message-id="2"') \
        == first
    applied = len(server.role.changes)
    assert ok(edit(client, "<item><id>1</id><value>a</value></item>"))
    again = etree.tostring(data_of(get_config(client)))
    assert again == etree.tostring(data_of(etree.fromstring(first)))
    assert len(server.role.changes) == applied                    # nothing to apply


def test_the_same_edit_on_two_servers_prints_the_same_bytes(client, tmp_path):
    other = Client(make_server(tmp_path / "other"))
    assert ok(edit(other, "<group><name>g1</name></group>"
                          "<item><id>1</id><value>a</value><group>g1</group></item>"
                          "<item><id>2</id><value>b</value></item><tag>x</tag>"
                          "<limits><min>1</min><max>20</max></limits>"))
    for wd in ("explicit", "report-all-tagged"):
        assert etree.tostring(data_of(get_config(other, wd=wd))) == \
            etree.tostring(data_of(get_config(client, wd=wd)))


def test_candidate_and_startup_sources(client):
    assert len(data_of(get_config(client, "startup"))) == 0
    assert etree.tostring(data_of(get_config(client, "candidate"))) == \
        etree.tostring(data_of(get_config(client)))


def test_unknown_source_is_refused(client):
    err = errors(get_config(client, source="nowhere"))[0]
    assert err["error-tag"] == "invalid-value"


# -- <get>: state ------------------------------------------------------------------------------

def test_get_includes_role_state_monitoring_and_yang_library(client):
    assert ok(client.rpc(f'<ping xmlns="{NS}"><count>2</count></ping>')) is False  # has output
    data = data_of(client.rpc("<get/>"))
    assert data.findtext("t:top/t:counters/t:hits", namespaces=T) == "1"
    assert data.findtext("t:top/t:item/t:value", namespaces=T) == "a"
    state = data.find(f"{{{MON}}}netconf-state")
    assert state is not None
    caps = [c.text for c in state.iter(f"{{{MON}}}capability")]
    assert "urn:ietf:params:netconf:base:1.1" in caps
    sessions = state.findall(f"{{{MON}}}sessions/{{{MON}}}session")
    assert [s.findtext(f"{{{MON}}}username") for s in sessions] == ["alice"]
    schemas = [s.findtext(f"{{{MON}}}identifier") for s in state.iter(f"{{{MON}}}schema")]
    assert "engine-test" in schemas
    assert any(etree.QName(c).namespace == YANGLIB for c in data)


def test_get_config_has_no_state(client):
    data = data_of(get_config(client))
    assert data.find("t:top/t:counters", T) is None
    assert data.find(f"{{{MON}}}netconf-state") is None


def test_get_shows_a_lock(client, server):
    assert ok(client.rpc("<lock><target><candidate/></target></lock>"))
    reply = client.rpc(f'<get><filter type="subtree"><netconf-state xmlns="{MON}"><datastores/>'
                       "</netconf-state></filter></get>")
    data = data_of(reply)
    locked = data.findtext(f".//{{{MON}}}datastore[{{{MON}}}name='candidate']"
                           f"/{{{MON}}}locks/{{{MON}}}global-lock/{{{MON}}}locked-by-session")
    assert locked == str(client.session.session_id)


# -- filters through the RPC -------------------------------------------------------------------

def test_subtree_filter_selects_one_list_entry(client):
    filt = (f'<filter type="subtree"><top xmlns="{NS}"><item><id>2</id></item></top>'
            "</filter>")
    data = data_of(get_config(client, filt=filt))
    assert [e.text for e in data.iterfind("t:top/t:item/t:id", T)] == ["2"]
    assert data.findtext("t:top/t:item/t:value", namespaces=T) == "b"
    assert data.find("t:top/t:tag", T) is None


def test_subtree_filter_on_get_mixes_config_and_state(client):
    filt = f'<filter type="subtree"><top xmlns="{NS}"><counters/></top></filter>'
    data = data_of(client.rpc(f"<get>{filt}</get>"))
    assert data.findtext("t:top/t:counters/t:hits", namespaces=T) == "0"
    assert data.find("t:top/t:item", T) is None


def test_empty_subtree_filter_selects_nothing(client):
    data = data_of(get_config(client, filt='<filter type="subtree"/>'))
    assert len(data) == 0


def test_xpath_filter_with_a_prefix_declared_on_the_filter(client):
    filt = (f'<filter xmlns:x="{NS}" type="xpath" select="/x:top/x:item[x:id=\'2\']"/>')
    data = data_of(get_config(client, filt=filt))
    assert [e.text for e in data.iterfind("t:top/t:item/t:id", T)] == ["2"]


def test_xpath_filter_with_module_name_prefixes(client):
    filt = '<filter type="xpath" select="/engine-test:top/engine-test:tag"/>'
    data = data_of(get_config(client, filt=filt))
    assert [e.text for e in data.iterfind("t:top/t:tag", T)] == ["x"]
    assert data.find("t:top/t:item", T) is None


def test_xpath_filter_on_state(client):
    filt = ('<filter type="xpath" select="/ietf-netconf-monitoring:netconf-state/'
            'ietf-netconf-monitoring:sessions"/>')
    data = data_of(client.rpc(f"<get>{filt}</get>"))
    assert data.find(f"{{{MON}}}netconf-state/{{{MON}}}sessions/{{{MON}}}session") is not None
    assert data.find("t:top", T) is None


@pytest.mark.parametrize("select", ["/t:top[", "/nope:top", "count(/*)"])
def test_bad_xpath_is_invalid_value(client, select):
    filt = f'<filter xmlns:t="{NS}" type="xpath" select="{select}"/>'
    err = errors(get_config(client, filt=filt))[0]
    assert err["error-tag"] == "invalid-value"


def test_xpath_filter_without_select(client):
    err = errors(get_config(client, filt='<filter type="xpath"/>'))[0]
    assert err["error-tag"] == "missing-attribute"
    assert err["bad-attribute"] == "select"


def test_unknown_filter_type(client):
    err = errors(get_config(client, filt='<filter type="regex"/>'))[0]
    assert err["error-tag"] == "bad-attribute"
