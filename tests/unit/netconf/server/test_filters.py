"""Subtree (RFC 6241 section 6, with every section 6.4 example) and XPath (section 8.9) filters."""

from __future__ import annotations

import pytest
from lxml import etree

from nvo3.netconf.proto.xml import BASE_NS, MONITORING_NS, PARSER
from nvo3.netconf.server.filters import FilterError, _rewrite, subtree_filter, xpath_filter

CFG = "http://example.com/schema/1.2/config"
STATS = "http://example.com/schema/1.2/stats"
NVE = "urn:example:nvo3-nve"

#: List entries and their keys in the test data (what the engine derives from the schema).
KEYS = {(CFG, "user"): ("name",), (STATS, "interface"): ("ifName",),
        (NVE, "vni"): ("id",), (NVE, "vtep"): ("vni-id", "address")}


def list_keys(element: etree._Element) -> tuple[str, ...] | None:
    name = etree.QName(element)
    return KEYS.get((name.namespace, name.localname))


def parse(text: str) -> etree._Element:
    return etree.fromstring(text, PARSER)


def data(body: str) -> etree._Element:
    return parse(f'<data xmlns="{BASE_NS}">{body}</data>')


def subtree(body: str) -> etree._Element:
    return parse(f'<filter xmlns="{BASE_NS}" type="subtree">{body}</filter>')


def canon(element: etree._Element) -> str:
    """Comparable text: C14N drops prefix choices and whitespace differences."""
    return etree.tostring(element, method="c14n").decode()


def assert_same(result: etree._Element, expected_body: str) -> None:
    assert canon(result) == canon(data(expected_body))


def user(name: str, type_: str, full: str, dept: int, id_: int) -> str:
    return (f"<user><name>{name}</name><type>{type_}</type><full-name>{full}</full-name>"
            f"<company-info><dept>{dept}</dept><id>{id_}</id></company-info></user>")


ROOT = user("root", "superuser", "Charlie Root", 1, 1)
FRED = user("fred", "admin", "Fred Flintstone", 2, 2)
BARNEY = user("barney", "admin", "Barney Rubble", 2, 3)
USERS = f'<top xmlns="{CFG}"><users>{ROOT}{FRED}{BARNEY}</users></top>'
INTERFACES = (f'<t:top xmlns:t="{STATS}"><t:interfaces>'
              '<t:interface t:ifName="eth0"><t:ifInOctets>45621</t:ifInOctets>'
              '<t:ifOutOctets>774344</t:ifOutOctets></t:interface>'
              '<t:interface t:ifName="eth1"><t:ifInOctets>1</t:ifInOctets>'
              '<t:ifOutOctets>2</t:ifOutOctets></t:interface>'
              '</t:interfaces></t:top>')
NVE_DATA = (f'<nve xmlns="{NVE}"><vni><id>10</id><name>blue</name><mtu>1500</mtu></vni>'
            '<vni><id>20</id><name>red</name><mtu>9000</mtu></vni>'
            '<vtep><vni-id>10</vni-id><address>192.0.2.1</address><state>up</state></vtep>'
            '<vtep><vni-id>20</vni-id><address>192.0.2.2</address><state>down</state></vtep>'
            '</nve><hostname xmlns="urn:example:system">leaf1</hostname>')
STORE = data(USERS + INTERFACES + NVE_DATA)


def run(body: str, store: etree._Element = STORE) -> etree._Element:
    return subtree_filter(store, subtree(body), list_keys)


# ----------------------------------------------------------------- RFC 6241 section 6.4


def test_6_4_2_empty_filter_selects_nothing() -> None:
    assert_same(run(""), "")
    assert_same(subtree_filter(STORE, parse(f'<filter xmlns="{BASE_NS}"/>'), list_keys), "")


def test_6_4_3_entire_users_subtree() -> None:
    assert_same(run(f'<top xmlns="{CFG}"><users/></top>'), USERS)


def test_6_4_4_all_name_elements() -> None:
    result = run(f'<top xmlns="{CFG}"><users><user><name/></user></users></top>')
    names = "".join(f"<user><name>{n}</name></user>" for n in ("root", "fred", "barney"))
    assert_same(result, f'<top xmlns="{CFG}"><users>{names}</users></top>')


def test_6_4_5_one_specific_user_entry() -> None:
    result = run(f'<top xmlns="{CFG}"><users><user><name>fred</name></user></users></top>')
    assert_same(result, f'<top xmlns="{CFG}"><users>{FRED}</users></top>')


def test_6_4_6_specific_elements_from_a_specific_entry() -> None:
    result = run(f'<top xmlns="{CFG}"><users><user><name>fred</name><type/><full-name/>'
                 '</user></users></top>')
    assert_same(result, f'<top xmlns="{CFG}"><users><user><name>fred</name><type>admin</type>'
                        '<full-name>Fred Flintstone</full-name></user></users></top>')


def test_6_4_7_multiple_subtrees() -> None:
    result = run(f'<top xmlns="{CFG}"><users>'
                 '<user><name>root</name><company-info/></user>'
                 '<user><name>fred</name><company-info><id/></company-info></user>'
                 '<user><name>barney</name><type>superuser</type>'
                 '<company-info><dept/></company-info></user>'
                 '</users></top>')
    assert_same(result, f'<top xmlns="{CFG}"><users>'
                        '<user><name>root</name><company-info><dept>1</dept><id>1</id>'
                        '</company-info></user>'
                        '<user><name>fred</name><company-info><id>2</id></company-info></user>'
                        '</users></top>')


def test_6_4_8_elements_with_attribute_naming() -> None:
    result = run(f'<t:top xmlns:t="{STATS}"><t:interfaces>'
                 '<t:interface t:ifName="eth0"/></t:interfaces></t:top>')
    assert_same(result, f'<t:top xmlns:t="{STATS}"><t:interfaces>'
                        '<t:interface t:ifName="eth0"><t:ifInOctets>45621</t:ifInOctets>'
                        '<t:ifOutOctets>774344</t:ifOutOctets></t:interface>'
                        '</t:interfaces></t:top>')


# ----------------------------------------------------------------- subtree details


def test_attribute_mismatch_and_missing_attribute_select_nothing() -> None:
    assert_same(run(f'<top xmlns="{STATS}"><interfaces><interface xmlns:t="{STATS}" '
                    't:ifName="eth9"/></interfaces></top>'), "")
    assert_same(run(f'<top xmlns="{CFG}"><users color="red"/></top>'), "")


def test_namespace_must_match() -> None:
    assert_same(run('<top xmlns="urn:other"><users/></top>'), "")


def test_unqualified_filter_matches_any_namespace() -> None:
    result = run('<top><users><user><name>fred</name><type/></user></users></top>')
    assert_same(result, f'<top xmlns="{CFG}"><users><user><name>fred</name><type>admin</type>'
                        '</user></users></top>')


def test_base_namespace_filter_nodes_count_as_unqualified() -> None:
    """<rpc xmlns=base>...<filter><top>: the nodes inherit the base namespace."""
    result = run("<hostname/>")
    assert_same(result, '<hostname xmlns="urn:example:system">leaf1</hostname>')


def test_list_keys_included_when_other_children_selected() -> None:
    result = run(f'<nve xmlns="{NVE}"><vtep><state/></vtep></nve>')
    assert_same(result, f'<nve xmlns="{NVE}">'
                        '<vtep><vni-id>10</vni-id><address>192.0.2.1</address><state>up</state>'
                        '</vtep><vtep><vni-id>20</vni-id><address>192.0.2.2</address>'
                        '<state>down</state></vtep></nve>')


def test_content_match_on_non_key_with_selection_returns_match_plus_selected() -> None:
    result = run(f'<nve xmlns="{NVE}"><vni><name>red</name><mtu/></vni></nve>')
    assert_same(result, f'<nve xmlns="{NVE}"><vni><id>20</id><name>red</name><mtu>9000</mtu>'
                        '</vni></nve>')


def test_all_content_match_nodes_must_match() -> None:
    assert_same(run(f'<nve xmlns="{NVE}"><vni><id>10</id><name>red</name></vni></nve>'), "")
    result = run(f'<nve xmlns="{NVE}"><vni><id>10</id><name>blue</name></vni></nve>')
    assert_same(result, f'<nve xmlns="{NVE}"><vni><id>10</id><name>blue</name><mtu>1500</mtu>'
                        '</vni></nve>')


def test_whitespace_only_text_is_a_selection_node() -> None:
    result = run(f'<top xmlns="{CFG}"><users><user><name>fred</name><type>  \n </type>'
                 '</user></users></top>')
    assert_same(result, f'<top xmlns="{CFG}"><users><user><name>fred</name><type>admin</type>'
                        '</user></users></top>')


def test_containment_selecting_nothing_is_dropped() -> None:
    assert_same(run(f'<top xmlns="{CFG}"><users><user><missing/></user></users></top>'), "")


def test_multiple_top_level_filter_elements_union_in_document_order() -> None:
    result = run('<hostname/>' f'<top xmlns="{CFG}"><users><user><name>root</name></user>'
                 '</users></top><t:top xmlns:t="urn:nowhere"/>')
    assert_same(result, f'<top xmlns="{CFG}"><users>{ROOT}</users></top>'
                        '<hostname xmlns="urn:example:system">leaf1</hostname>')


def test_overlapping_filters_return_each_node_once() -> None:
    result = run(f'<nve xmlns="{NVE}"><vni><id>10</id><mtu/></vni></nve>'
                 f'<nve xmlns="{NVE}"><vni><name/></vni></nve><nve xmlns="{NVE}"><vni/></nve>')
    assert_same(result, NVE_DATA.split("<vtep>")[0] + "</nve>")


def test_comments_in_filter_are_ignored() -> None:
    assert_same(run(f'<!-- all users --><top xmlns="{CFG}"><!-- x --><users/></top>'), USERS)


# ----------------------------------------------------------------- xpath

XP_NS: dict[str | None, str] = {"nvo3-nve": NVE, "t": STATS, "sys": "urn:example:system", "c": CFG}


def xpath(select: str, nsmap: dict[str | None, str] | None = None) -> etree._Element:
    return xpath_filter(STORE, select, XP_NS if nsmap is None else nsmap, list_keys)


def test_xpath_module_name_prefix_selects_top_level_subtree() -> None:
    result = xpath("/nvo3-nve:nve")
    assert_same(result, NVE_DATA.split("<hostname")[0])


def test_xpath_filter_declared_prefix() -> None:
    result = xpath("/n:nve/n:vni[n:id='20']", {"n": NVE, None: BASE_NS})
    assert_same(result, f'<nve xmlns="{NVE}"><vni><id>20</id><name>red</name><mtu>9000</mtu>'
                        '</vni></nve>')


def test_xpath_predicate_on_composite_key() -> None:
    result = xpath("/nvo3-nve:nve/nvo3-nve:vtep[nvo3-nve:vni-id=20]"
                   "[nvo3-nve:address='192.0.2.2']/nvo3-nve:state")
    assert_same(result, f'<nve xmlns="{NVE}"><vtep><vni-id>20</vni-id>'
                        '<address>192.0.2.2</address><state>down</state></vtep></nve>')


def test_xpath_leaf_selection_includes_ancestors_and_keys() -> None:
    result = xpath("/c:top/c:users/c:user[c:name='barney']/c:company-info/c:id")
    assert_same(result, f'<top xmlns="{CFG}"><users><user><name>barney</name>'
                        '<company-info><id>3</id></company-info></user></users></top>')


def test_xpath_union_merges_in_document_order_without_duplicates() -> None:
    result = xpath("/sys:hostname | //nvo3-nve:vni[nvo3-nve:id=10]/nvo3-nve:mtu"
                   " | /nvo3-nve:nve/nvo3-nve:vni[1]")
    assert_same(result, f'<nve xmlns="{NVE}"><vni><id>10</id><name>blue</name><mtu>1500</mtu>'
                        '</vni></nve><hostname xmlns="urn:example:system">leaf1</hostname>')


def test_xpath_text_and_attribute_results_select_their_parent() -> None:
    assert_same(xpath("/sys:hostname/text()"),
                '<hostname xmlns="urn:example:system">leaf1</hostname>')
    result = xpath("//t:interface[@t:ifName='eth1']/@t:ifName")
    assert_same(result, f'<t:top xmlns:t="{STATS}"><t:interfaces><t:interface t:ifName="eth1">'
                        '<t:ifInOctets>1</t:ifInOctets><t:ifOutOctets>2</t:ifOutOctets>'
                        '</t:interface></t:interfaces></t:top>')


def test_xpath_relative_path_and_absolute_path_inside_predicate() -> None:
    result = xpath("nvo3-nve:nve/nvo3-nve:vtep"
                   "[nvo3-nve:vni-id = /nvo3-nve:nve/nvo3-nve:vni[nvo3-nve:name='blue']"
                   "/nvo3-nve:id]/nvo3-nve:address")
    assert_same(result, f'<nve xmlns="{NVE}"><vtep><vni-id>10</vni-id>'
                        '<address>192.0.2.1</address></vtep></nve>')


def test_xpath_root_selects_everything_and_no_match_selects_nothing() -> None:
    assert canon(xpath("/")) == canon(STORE)
    assert_same(xpath("/nvo3-nve:nve/nvo3-nve:vni[nvo3-nve:id=99]"), "")


@pytest.mark.parametrize("select", ["count(/nvo3-nve:nve)", "/nvo3-nve:nve[", "'x'",
                                    "1 = 1", "undefined-function()", "/a:b#"])
def test_bad_xpath_raises_filter_error(select: str) -> None:
    with pytest.raises(FilterError):
        xpath(select)


def test_unknown_prefix_is_named() -> None:
    with pytest.raises(FilterError, match="'nope'"):
        xpath("/nope:nve")


# ----------------------------------------------------------------- xpath, unprefixed names

NCM = MONITORING_NS
NCM_KEYS = {(NCM, "datastore"): ("name",), (NCM, "session"): ("session-id",)}
DATASTORES = ("<datastores><datastore><name>running</name><locks/></datastore>"
              "<datastore><name>candidate</name></datastore></datastores>")
SESSIONS = ("<sessions><session><session-id>1</session-id><username>admin</username>"
            "<transport>netconf-ssh</transport></session>"
            "<session><session-id>2</session-id><username>oper</username>"
            "<transport>netconf-ssh</transport></session></sessions>")
MON = data(f'<netconf-state xmlns="{NCM}">{DATASTORES}{SESSIONS}</netconf-state>')
#: Element names that are XPath keywords elsewhere, and an unprefixed attribute.
ODD = data('<odd xmlns="urn:example:odd"><and>1</and><div>2</div><text>t</text>'
           '<node>n</node><item type="a"><id>1</id></item><item type="b"><id>2</id></item>'
           '</odd>')


def mon(select: str) -> etree._Element:
    def keys(element: etree._Element) -> tuple[str, ...] | None:
        name = etree.QName(element)
        return NCM_KEYS.get((name.namespace, name.localname))
    return xpath_filter(MON, select, {"ncm": NCM}, keys)


def odd(select: str) -> etree._Element:
    return xpath_filter(ODD, select, {"o": "urn:example:odd"}, list_keys)


def test_xpath_unprefixed_absolute_path_matches_any_namespace() -> None:
    """netconf-console2 --get -x /netconf-state/datastores."""
    assert_same(mon("/netconf-state/datastores"), f'<netconf-state xmlns="{NCM}">{DATASTORES}'
                                                  '</netconf-state>')
    assert_same(xpath("/hostname"), '<hostname xmlns="urn:example:system">leaf1</hostname>')


def test_xpath_unprefixed_with_key_predicate() -> None:
    result = mon("/netconf-state/sessions/session[session-id=1]/username")
    assert_same(result, f'<netconf-state xmlns="{NCM}"><sessions><session>'
                        '<session-id>1</session-id><username>admin</username>'
                        '</session></sessions></netconf-state>')
    result = xpath("/nve/vni[id=20]/mtu")
    assert_same(result, f'<nve xmlns="{NVE}"><vni><id>20</id><mtu>9000</mtu></vni></nve>')


def test_xpath_positional_predicate_counts_matching_names_only() -> None:
    result = xpath("/nve/vtep[2]/state")
    assert_same(result, f'<nve xmlns="{NVE}"><vtep><vni-id>20</vni-id>'
                        '<address>192.0.2.2</address><state>down</state></vtep></nve>')


def test_xpath_mixed_prefixed_and_unprefixed() -> None:
    result = xpath("/nvo3-nve:nve/vni[nvo3-nve:id=20]/name")
    assert_same(result, f'<nve xmlns="{NVE}"><vni><id>20</id><name>red</name></vni></nve>')


def test_xpath_prefixed_names_keep_exact_namespace() -> None:
    assert_same(xpath("/c:nve"), "")
    assert_same(xpath("/nve/c:vni"), "")
    assert_same(xpath("/t:top/users"), "")  # users is in CFG, its t:top parent is not


def test_xpath_unprefixed_descendant_and_axis() -> None:
    result = mon("//session[username='oper']")
    assert_same(result, f'<netconf-state xmlns="{NCM}"><sessions><session>'
                        '<session-id>2</session-id><username>oper</username>'
                        '<transport>netconf-ssh</transport></session></sessions></netconf-state>')
    result = odd("/child::odd/child::item[child::id=2]")
    assert_same(result, '<odd xmlns="urn:example:odd"><item type="b"><id>2</id></item></odd>')
    assert_same(odd("//id[.=1]/parent::item/self::item"),
                '<odd xmlns="urn:example:odd"><item type="a"><id>1</id></item></odd>')


def test_xpath_unprefixed_relative_parent_steps() -> None:
    result = xpath("//vni/name[.='red']/..")
    assert_same(result, f'<nve xmlns="{NVE}"><vni><id>20</id><name>red</name><mtu>9000</mtu>'
                        '</vni></nve>')
    result = xpath("//vni/id[.=10]/../name")
    assert_same(result, f'<nve xmlns="{NVE}"><vni><id>10</id><name>blue</name></vni></nve>')
    result = xpath("nve/vtep/../vni[1]/mtu")  # relative to <data>
    assert_same(result, f'<nve xmlns="{NVE}"><vni><id>10</id><mtu>1500</mtu></vni></nve>')


def test_xpath_unprefixed_function_calls_untouched() -> None:
    with pytest.raises(FilterError, match="node-set"):
        xpath("count(/nve/vni)")
    result = xpath("/nve/vni[contains(name, 'lu')]/mtu")
    assert_same(result, f'<nve xmlns="{NVE}"><vni><id>10</id><mtu>1500</mtu></vni></nve>')
    result = xpath("/nve/vni[string-length(name) > 3 and starts-with(name,'b')]/id")
    assert_same(result, f'<nve xmlns="{NVE}"><vni><id>10</id></vni></nve>')
    assert_same(xpath("/nve/vni[last()]/name"),
                f'<nve xmlns="{NVE}"><vni><id>20</id><name>red</name></vni></nve>')
    assert_same(xpath("/hostname/text()"),
                '<hostname xmlns="urn:example:system">leaf1</hostname>')


def test_xpath_operator_names_untouched() -> None:
    result = xpath("/nve/vni[id div 10 = 2 and mtu mod 1000 = 0 or name = 'nope']/name")
    assert_same(result, f'<nve xmlns="{NVE}"><vni><id>20</id><name>red</name></vni></nve>')
    result = xpath("/nve/vni[id*2=20]/name")
    assert_same(result, f'<nve xmlns="{NVE}"><vni><id>10</id><name>blue</name></vni></nve>')


def test_xpath_names_spelled_like_keywords_are_name_tests() -> None:
    result = odd("/odd/and | /odd/div | /odd/text | odd/node")
    assert_same(result, '<odd xmlns="urn:example:odd"><and>1</and><div>2</div><text>t</text>'
                        '<node>n</node></odd>')
    assert_same(odd("/odd[and and div]/and"), '<odd xmlns="urn:example:odd"><and>1</and></odd>')


def test_xpath_unprefixed_attribute_untouched() -> None:
    expected = '<odd xmlns="urn:example:odd"><item type="b"><id>2</id></item></odd>'
    assert_same(odd("/odd/item[@type='b']"), expected)
    assert_same(odd("/odd/item[attribute::type='b']"), expected)
    assert_same(odd("//item/@type[.='b']"), expected)


def test_xpath_string_literals_untouched() -> None:
    result = xpath("/nve/vni[name='blue/red' or name = \"red\"]/id")
    assert_same(result, f'<nve xmlns="{NVE}"><vni><id>20</id></vni></nve>')
    result = xpath("/nve/vni[name != 'name' and not(contains('//vni mtu', name))]/id")
    assert_same(result, f'<nve xmlns="{NVE}"><vni><id>10</id></vni><vni><id>20</id></vni></nve>')


@pytest.mark.parametrize(("select", "rewritten"), [
    ("$name/x", "$name/*[local-name()='x']"),
    ("n:a/b:*", "n:a/b:*"),
    ("self::node()/namespace::x/@y", "self::node()/namespace::x/@y"),
    ("item[id=1]", "*[local-name()='item'][*[local-name()='id']=1]"),
])
def test_xpath_rewrite_text(select: str, rewritten: str) -> None:
    assert _rewrite(select, {"n": NVE, "b": CFG}) == rewritten


def test_xpath_variables_untouched() -> None:
    with pytest.raises(FilterError):
        xpath("/nve/vni[id=$x]")  # no variables are bound: still an error, not a name test


# ----------------------------------------------------------------- purity


def test_input_untouched_and_output_deterministic() -> None:
    before = etree.tostring(STORE)
    flt = subtree(f'<top xmlns="{CFG}"><users><user><name>fred</name><type/></user>'
                  '</users></top><nve/>')
    first = etree.tostring(subtree_filter(STORE, flt, list_keys))
    assert first == etree.tostring(subtree_filter(STORE, flt, list_keys))
    select = "/c:top//c:user[c:name='fred'] | /nvo3-nve:nve/nvo3-nve:vtep/nvo3-nve:state"
    assert etree.tostring(xpath(select)) == etree.tostring(xpath(select))
    assert etree.tostring(STORE) == before
    assert etree.QName(subtree_filter(STORE, flt, list_keys)).text == f"{{{BASE_NS}}}data"


def test_pretty_printed_filter_from_a_client() -> None:
    flt = etree.fromstring(f"""<filter xmlns="{BASE_NS}" type="subtree">
      <top xmlns="{CFG}">
        <users>
          <user>
            <name>
              fred
            </name>
            <company-info>
            </company-info>
          </user>
        </users>
      </top>
    </filter>""")
    result = subtree_filter(STORE, flt, list_keys)
    assert_same(result, f'<top xmlns="{CFG}"><users><user><name>fred</name><company-info>'
                        '<dept>2</dept><id>2</id></company-info></user></users></top>')
