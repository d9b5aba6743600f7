"""The fast path of edit-config: a plain merge done entirely inside libyang.

Most edits (ncclient scripts, Ansible, the nDirector's pushes) carry no operation attributes
and use default-operation merge. For those, libyang parses the <config> content, merges it
into a copy of the datastore's tree and validates the result, all in C: no lxml round trip,
no re-parse of the whole datastore. Everything else goes through `edit.Editor`.
"""

from __future__ import annotations

import libyang
from lxml import etree

from nvo3.netconf.proto.xml import BASE_NS, YANG_NS
from nvo3.netconf.server.datastore import Snapshot
from nvo3.netconf.server.schema import Schema
from nvo3.netconf.server.validation import rpc_error_from

_EDIT_ATTRIBUTES = etree.XPath(
    "boolean(.//@*[namespace-uri()=$base and local-name()='operation'] | .//@operation"
    " | .//@*[namespace-uri()=$yang])")


def is_plain_merge(config: etree._Element, default_operation: str) -> bool:
    """True when the edit is a merge libyang can do by itself."""
    if default_operation != "merge":
        return False
    tops = [c for c in config if isinstance(c.tag, str)]
    if any(etree.QName(c).namespace is None for c in tops):
        return False                        # unqualified top nodes: the editor resolves them
    return not _EDIT_ATTRIBUTES(config, base=BASE_NS, yang=YANG_NS)


def edit_content(config: etree._Element) -> bytes:
    """The top-level nodes of an edit's `<config>`, serialized: what libyang parses, and what
    the running datastore's journal records for a plain merge."""
    return b"".join(etree.tostring(c) for c in config if isinstance(c.tag, str))


def merged(schema: Schema, base: Snapshot, xml: bytes) -> Snapshot:
    """`base` with the edit content `xml` (see `edit_content`) merged in, validated (raises
    RpcError, changes nothing)."""
    ctx = schema.context
    try:
        edit = ctx.parse_data_mem(xml, "xml", strict=True, no_state=True, parse_only=True)
    except libyang.LibyangError as exc:
        raise rpc_error_from(exc, schema) from None
    if edit is None:
        return base
    if base.dnode is None:
        tree = edit
    else:
        tree = base.dnode.duplicate(with_siblings=True, recursive=True)
        # destruct: libyang moves the edit's nodes into the tree instead of copying them
        tree.merge(edit, with_siblings=True, destruct=True)
    try:
        tree.first_sibling().validate_all(no_state=True)
    except libyang.LibyangError as exc:
        tree.free()
        raise rpc_error_from(exc, schema) from None
    return Snapshot(schema, tree.first_sibling())
