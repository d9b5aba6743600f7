"""error-option continue-on-error (RFC 6241 section 7.2): the valid parts of an edit applied,
an rpc-error for each of the others.

The Editor already goes on after an error it finds itself (data-exists, data-missing, unknown
elements); an error only validation finds (a wrong value, a dangling leafref, a must) fails the
whole result. Then the edit is taken apart: each part (a list or leaf-list entry, a leaf, a
node carrying its own operation, under the containers that lead to it) is applied to what the
parts before it made and checked; a part that fails is left out with its error. A part
refused only because of another one (a reference to an entry a later part creates) gets a
second try once the others are in.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterator

from lxml import etree

from nvo3.netconf.proto.errors import RpcError
from nvo3.netconf.proto.xml import BASE_NS, PARSER, local_name, namespace
from nvo3.netconf.server.datastore import Snapshot
from nvo3.netconf.server.edit import Editor
from nvo3.netconf.server.schema import NodeInfo, Schema

_OPERATION = f"{{{BASE_NS}}}operation"

#: Makes a snapshot of an edited <data> tree: validated (running) or parsed (candidate);
#: raises RpcError.
Finish = Callable[[etree._Element], Snapshot]


def parts(schema: Schema, config: etree._Element) -> Iterator[etree._Element]:
    """Each part of `config` (an edit-config's <config>) as a <config> of its own."""
    def walk(node: etree._Element, info: NodeInfo | None,
             chain: list[etree._Element]) -> Iterator[etree._Element]:
        for child in node:
            if not isinstance(child.tag, str):
                continue
            sub = schema.child_of(info, namespace(child), local_name(child))
            has_op = child.get(_OPERATION) is not None or child.get("operation") is not None
            if sub is not None and sub.kind == "container" and len(child) and not has_op:
                yield from walk(child, sub, [*chain, child])
            else:
                yield _wrapped([*chain, child])

    yield from walk(config, None, [config])


def _wrapped(chain: list[etree._Element]) -> etree._Element:
    """The last element of `chain` (copied) inside shallow copies of the ones before it."""
    top = etree.Element(chain[0].tag, chain[0].attrib, nsmap=chain[0].nsmap)
    parent = top
    for ancestor in chain[1:-1]:
        parent = etree.SubElement(parent, ancestor.tag, ancestor.attrib, nsmap=ancestor.nsmap)
    parent.append(copy.deepcopy(chain[-1]))
    return top


def apply_parts(schema: Schema, base: Snapshot, config: etree._Element, default_operation: str,
                finish: Finish) -> tuple[Snapshot | None, list[RpcError]]:
    """`config` applied part by part onto `base`: the result (None: no part changed anything)
    and the error of each part left out."""
    current: Snapshot | None = None
    data = base.tree()
    pending = list(parts(schema, config))
    failed: list[tuple[etree._Element, RpcError]] = []
    for _ in range(2):                       # a second try for the parts refused the first
        failed = []
        for part in pending:
            tree = etree.fromstring(etree.tostring(data), PARSER)
            try:
                if Editor(schema, default_operation, False).apply(tree, part).changed:
                    current = finish(tree)
            except RpcError as err:
                failed.append((part, err))
                continue
            data = tree
        if not failed or len(failed) == len(pending):
            break
        pending = [part for part, _ in failed]
    return current, [err for _, err in failed]
