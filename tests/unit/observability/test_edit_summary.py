"""nvo3.observability.edit_summary: names and counts only, never a secret."""

from __future__ import annotations

from lxml import etree

from nvo3.netconf.server.observer import EditedPaths
from nvo3.observability.edit_summary import edit_summary, rpc_input_summary

NS = "urn:example:m"


def op(xml: str) -> etree._Element:
    return etree.fromstring(xml)


def test_a_request_is_summarised_by_its_top_paths_when_the_engine_knows_no_paths():
    e = op(f'<edit-config xmlns="urn:ietf:params:xml:ns:netconf:base:1.0"><config>'
           f'<top xmlns="{NS}"><a>1</a><b><c>2</c></b><a>3</a></top></config></edit-config>')
    assert edit_summary(e, {NS: "m"}, None) == "merge 5 nodes: /m:top/a, /m:top/b"


def test_edited_paths_and_counts_are_shown():
    e = op(f'<edit-config xmlns="urn:ietf:params:xml:ns:netconf:base:1.0">'
           f'<default-operation>replace</default-operation><config>'
           f'<top xmlns="{NS}"><a>1</a></top></config></edit-config>')
    paths = EditedPaths.of(["/m:top/a"], ["/m:top/b", "/m:top/c"], [])
    assert edit_summary(e, {NS: "m"}, paths) == \
        "replace 2 nodes: /m:top/a and 2 more (+1, ~2, -0)"


def test_rpc_input_leaves_leave_secrets_out():
    rpc = op(f'<add-peer xmlns="{NS}"><name>dc2</name><password>hunter2</password>'
             f'<private-key>k</private-key><host-key>AAAA</host-key><port>830</port>'
             f'<nested><x>1</x></nested></add-peer>')
    assert rpc_input_summary(rpc) == "name=dc2 port=830"
