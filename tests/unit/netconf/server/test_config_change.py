"""netconf-config-change's <edit> list (RFC 6470): the cheap lxml builder against libyang, the
summary of data paths, and the edits found by comparison."""

from __future__ import annotations

import json
from typing import Any

import libyang
import pytest
from lxml import etree

from nvo3 import YANG_DIR
from nvo3.netconf.server import config_change
from nvo3.netconf.server.datastore import Snapshot, data_element
from nvo3.netconf.server.schema import Schema

ND = "urn:nvo3:yang:nvo3-ndirector"


@pytest.fixture(scope="module")
def schema() -> Schema:
    return Schema((YANG_DIR,), ["nvo3-ndirector"])


EDITS = [
    ("/nvo3-ndirector:ndirector/nves/nve[name='host1']", "create"),
    ("/nvo3-ndirector:ndirector/networks/network[vni='100']", "merge"),
    ("/nvo3-ndirector:ndirector/data-center", "replace"),
    ("/nvo3-ndirector:ndirector/nves/nve[name='h-2.x']", "delete"),
]


def _libyang_json(schema: Schema, xml: bytes) -> Any:
    node = schema.context.parse_op_mem("xml", xml.decode(), libyang.DataType.NOTIF_YANG)
    try:
        return json.loads(node.print_mem("json", pretty=False))
    finally:
        node.free()


@pytest.mark.parametrize("changed_by", [None, {"username": "admin", "session-id": 7,
                                              "source-host": "198.18.0.1"}])
def test_builder_equals_libyang(schema: Schema, changed_by: dict[str, Any] | None) -> None:
    """What the builder makes is what libyang makes of the same values (read back by libyang
    as a notification: instance-identifiers resolved through their namespaces)."""
    built = config_change.notification(changed_by, EDITS, schema.namespaces)
    content: dict[str, Any] = {
        "changed-by": {"server": None} if changed_by is None else changed_by,
        "datastore": "running",
        "edit": [{"target": t, "operation": o} for t, o in EDITS]}
    mod = schema.context.get_module("ietf-netconf-notifications")
    reference = mod.parse_data_dict({"netconf-config-change": content}, notification=True,
                                    strict=True, validate=False)
    try:
        want = json.loads(reference.print_mem("json", pretty=False))
    finally:
        reference.free()
    got = _libyang_json(schema, etree.tostring(built))
    assert got == want
    assert [e["target"] for e in got["ietf-netconf-notifications:netconf-config-change"]
            ["edit"]] == [t for t, _ in EDITS]


def test_instance_identifier_prefixes_every_node(schema: Schema) -> None:
    text, used = config_change.instance_identifier(
        "/nvo3-ndirector:ndirector/nves/nve[name='a/b]']/address", schema.namespaces)
    assert text == ("/nvo3-ndirector:ndirector/nvo3-ndirector:nves/nvo3-ndirector:nve"
                    "[nvo3-ndirector:name='a/b]']/nvo3-ndirector:address")
    assert used == {"nvo3-ndirector": ND}


@pytest.mark.parametrize(("path", "target"), [
    ("/m:a/b[k='1']/c/d[e='2']/f", "/m:a/b[k='1']"),
    ("/m:a/l[.='x/y']", "/m:a/l[.='x/y']"),
    ("/m:a/b/c", "/m:a/b/c"),
    ("/m:a/b[k=\"it's\"]/x", "/m:a/b[k=\"it's\"]"),
])
def test_summary_target(path: str, target: str) -> None:
    assert config_change.summary_target(path) == target


def _snapshot(schema: Schema, body: str) -> Snapshot:
    return Snapshot.validated(schema, data_element(
        f'<ndirector xmlns="{ND}">{body}</ndirector>'.encode()))


def _nve(name: str, n: int, extra: str = "") -> str:
    return (f"<nve><name>{name}</name><address>198.18.1.{n}</address>"
            f"<vtep-address>198.18.0.{n}</vtep-address>{extra}</nve>")


def test_diff_finds_every_created_changed_and_deleted_entry(schema: Schema) -> None:
    before = _snapshot(schema, "<data-center>dc1</data-center><nves>" + _nve("a", 1)
                       + _nve("b", 2) + _nve("c", 3) + "</nves>")
    after = _snapshot(schema, "<data-center>dc2</data-center><nves>" + _nve("a", 1)
                      + _nve("b", 2, "<port>831</port>") + _nve("d", 4) + "</nves>")
    nd = "/nvo3-ndirector:ndirector"
    assert sorted(config_change.from_diff(schema, before, after)) == sorted([
        (f"{nd}/data-center", "merge"),
        (f"{nd}/nves/nve[name='b']", "merge"),
        (f"{nd}/nves/nve[name='d']", "create"),
        (f"{nd}/nves/nve[name='c']", "delete")])
    assert config_change.from_diff(schema, before, before) == []


def test_content_edits_name_each_entry(schema: Schema) -> None:
    content = (f'<ndirector xmlns="{ND}"><nves>{_nve("a", 1)}{_nve("b", 2)}</nves>'
               "</ndirector>").encode()
    before = _snapshot(schema, f"<nves>{_nve('a', 1)}</nves>")
    assert config_change.from_content(schema, content, before) == [
        ("/nvo3-ndirector:ndirector/nves/nve[name='a']", "merge"),
        ("/nvo3-ndirector:ndirector/nves/nve[name='b']", "create")]
    assert config_change.from_content(schema, content, Snapshot.empty(schema)) == [
        ("/nvo3-ndirector:ndirector/nves/nve[name='a']", "create"),
        ("/nvo3-ndirector:ndirector/nves/nve[name='b']", "create")]


@pytest.mark.parametrize("path", [
    "/m:a/b[k='1'][j=\"]x[\"]/c", "/m:a/b/c", "/m:a[x='/']/b", "/m:l[.='a]b']/z[q='1']"])
def test_summary_target_equals_the_step_by_step_cut(path: str) -> None:
    kept = []
    for step in config_change.steps(path):
        kept.append(step)
        if "[" in step:
            break
    assert config_change.summary_target(path) == "/" + "/".join(kept)
