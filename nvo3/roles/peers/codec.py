"""The one place where a role talks to another role's NETCONF server in YANG terms.

Roles work on dicts; the client (`nvo3.netconf.client.session`) speaks XML. This adapter converts both
ways with libyang over the project's YANG modules, so a request is validated against the
peer's module before it leaves and a reply is read by the schema, not by hand:

* `call(client, module, rpc, input)` -> the RPC's output as a dict (libyang print_dict shape);
* `get_config(client, module, top)` / `get_state(...)` -> RFC 7951-style dicts, prefixes
  stripped, as the engine hands configuration to roles;
* `merge_config(client, module, tree, target)` -> an edit-config merge built from a dict;
* `list_edit(module, top, ops)` -> one <config> with per-entry operations (merge, replace,
  remove, ...) on lists directly under `top`, built from dicts;
* `notification(element)` -> (module, name, content dict) of a received notification.
"""

from __future__ import annotations

import json
import threading
from typing import Any

import libyang
from lxml import etree

from nvo3 import YANG_DIR
from nvo3.netconf.client.session import Client

Tree = dict[str, Any]
NC_NS = "urn:ietf:params:xml:ns:netconf:base:1.0"

_lock = threading.Lock()
_context: libyang.Context | None = None


def context() -> libyang.Context:
    """One libyang context with every nvo3 module (shared; use under `_lock`)."""
    global _context
    if _context is None:
        ctx = libyang.Context(str(YANG_DIR))
        for path in sorted(YANG_DIR.glob("*.yang")):
            ctx.load_module(path.stem).feature_enable_all()
        _context = ctx
    return _context


def _unprefixed(pairs: list[tuple[str, Any]]) -> Tree:
    return {k.partition(":")[2] or k: v for k, v in pairs}


def _to_dict(dnode: libyang.DNode | None) -> Tree:
    if dnode is None:
        return {}
    try:
        text = dnode.print_mem("json", with_siblings=True, pretty=False,
                               include_implicit_defaults=True)
    finally:
        dnode.free()
    return json.loads(text or "{}", object_pairs_hook=_unprefixed)


def build_rpc(module: str, rpc: str, given: Tree) -> etree._Element:
    """The RPC element for `given` input, validated against the module."""
    with _lock:
        node = context().get_module(module).parse_data_dict({rpc: given}, rpc=True,
                                                            strict=True)
        try:
            return etree.fromstring(node.print_mem("xml", pretty=False))
        finally:
            node.free()


def call(client: Client, module: str, rpc: str, given: Tree) -> Tree:
    """Invoke `module:rpc` on the peer; its output as a dict ({} for <ok/>).

    An rpc-error from the peer raises the client's RemoteRpcError unchanged.
    """
    reply = client.dispatch(build_rpc(module, rpc, given))
    children = [c for c in reply if isinstance(c.tag, str)
                and etree.QName(c).namespace != NC_NS]
    if not children:
        return {}
    ns = etree.QName(children[0]).namespace
    wrapper = etree.Element(f"{{{ns}}}{rpc}", nsmap={None: ns})
    wrapper.extend(children)
    with _lock:
        node = context().parse_op_mem("xml", etree.tostring(wrapper).decode(),
                                      libyang.DataType.REPLY_YANG)
        try:
            return node.print_dict(strip_prefixes=True).get(rpc, {})
        finally:
            node.free()


def data_tree(xml: str) -> Tree:
    """Instance data of any nvo3 module, parsed (not validated), as libyang's print_dict tree
    with prefixes stripped (the shape the engine hands to roles, without defaults)."""
    with _lock:
        dnode = context().parse_data_mem(xml, "xml", parse_only=True)
        try:
            return dnode.print_dict(strip_prefixes=True) if dnode else {}
        finally:
            if dnode is not None:
                dnode.free()


def _data_to_dict(data: etree._Element, with_state: bool) -> Tree:
    xml = b"".join(etree.tostring(c) for c in data if isinstance(c.tag, str))
    if not xml:
        return {}
    with _lock:
        return _to_dict(context().parse_data_mem(xml, "xml", parse_only=True, strict=False,
                                                 no_state=not with_state))


def _subtree(module: str, top: str) -> tuple[str, str]:
    with _lock:
        ns = libyang.util.c2str(context().get_module(module).cdata.ns)
    return "subtree", f'<{top} xmlns="{ns}"/>'


def get_config(client: Client, module: str, top: str, source: str = "running") -> Tree:
    """The peer's configuration under /module:top as a dict (empty when absent)."""
    data = client.get_config(source=source, filter=_subtree(module, top))
    return _data_to_dict(data, with_state=False).get(top, {})


def get_state(client: Client, module: str, top: str) -> Tree:
    """The peer's configuration and state under /module:top as a dict."""
    data = client.get(filter=_subtree(module, top))
    return _data_to_dict(data, with_state=True).get(top, {})


def merge_config(client: Client, module: str, tree: Tree, target: str = "running") -> None:
    """edit-config merge of `{top: ...}` (a dict in print_dict shape) into the peer."""
    with _lock:
        node = context().get_module(module).parse_data_dict(tree, validate=False, strict=True)
        try:
            xml = node.print_mem("xml", with_siblings=True, pretty=False)
        finally:
            node.free()
    client.edit_config(f'<config xmlns="{NC_NS}">{xml}</config>', target=target)


def _element(parent: etree._Element, ns: str, name: str, value: Any) -> None:
    """Dict / list / scalar -> XML under `parent` (lists repeat the element)."""
    if isinstance(value, list):
        for item in value:
            _element(parent, ns, name, item)
        return
    el = etree.SubElement(parent, f"{{{ns}}}{name}")
    if isinstance(value, dict):
        for k, v in value.items():
            _element(el, ns, k, v)
    else:
        el.text = ("true" if value else "false") if isinstance(value, bool) else str(value)


def list_edit(module: str, top: str, ops: list[tuple[str, str, str, Tree]]) -> str:
    """One edit-config <config> for `ops` = (container, list, operation, entry) on lists
    directly under /module:top (e.g. ("attachments", "attachment", "remove", {keys})).
    Containers come out in the order they first appear in `ops`."""
    with _lock:
        ns = libyang.util.c2str(context().get_module(module).cdata.ns)
    config = etree.Element(f"{{{NC_NS}}}config", nsmap={None: NC_NS})
    root = etree.SubElement(config, f"{{{ns}}}{top}", nsmap={None: ns, "nc": NC_NS})
    boxes: dict[str, etree._Element] = {}
    for container, item, op, entry in ops:
        box = boxes.get(container)
        if box is None:
            box = boxes[container] = etree.SubElement(root, f"{{{ns}}}{container}")
        _element(box, ns, item, entry)
        box[-1].set(f"{{{NC_NS}}}operation", op)
    return etree.tostring(config).decode()


def notification(message: etree._Element) -> tuple[str, str, Tree] | None:
    """(module, name, content) of a <notification>, or None when it is not one of ours."""
    content = next((c for c in message if isinstance(c.tag, str)
                    and etree.QName(c).localname != "eventTime"), None)
    if content is None:
        return None
    ns = etree.QName(content).namespace
    with _lock:
        ctx = context()
        module = next((m.name() for m in ctx if libyang.util.c2str(m.cdata.ns) == ns), None)
        if module is None:
            return None
        try:
            node = ctx.parse_op_mem("xml", etree.tostring(content).decode(),
                                    libyang.DataType.NOTIF_YANG)
        except libyang.LibyangError:
            return None
        try:
            tree = node.print_dict(strip_prefixes=True)
        finally:
            node.free()
    name = etree.QName(content).localname
    return module, name, tree.get(name, {})
