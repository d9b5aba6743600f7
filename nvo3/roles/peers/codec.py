"""The one place where nvo3 turns dicts into NETCONF requests and replies into dicts.

Roles, verbs, the lab and the benchmarks work on dicts; the client
(`nvo3.netconf.client.session`) speaks XML. This codec converts both ways over the project's
YANG modules, so a request is escaped and validated against the peer's module before it
leaves, and a reply is read by the schema, not by hand.

Building (no I/O):

* `build_rpc(module, rpc, input)` -> the RPC element, validated by libyang;
* `build_config(module, tree)` -> the `<config>` of an edit-config: `tree` is `{top: {...}}` in
  libyang's print_dict shape (leaf -> value, list -> list of entry dicts, leaf-list -> list of
  values); a container or entry dict may carry ``OPERATION: "replace"`` (create, merge,
  replace, delete, remove), which becomes its ``nc:operation`` attribute. libyang parses the
  tree (every value checked against its type, unknown nodes refused) and prints it (schema
  order, keys first, escaped);
* `build_config_text(module, tree)` -> the same `<config>` built as text, every value escaped
  but not validated, in the dict's order: the nDirector's push path (a 7,500-entry resync is
  about ten times cheaper than through libyang), for trees it builds in schema order from
  values it validated when they came in. A unit test holds it to `build_config`;
* `list_edit(module, top, ops)` -> one `<config>` with per-entry operations on lists directly
  under `top`.

Talking to a peer: `call(client, module, rpc, input)` -> the RPC's output as a dict;
`get_config` / `get_state` -> RFC 7951-style dicts, prefixes stripped, as the engine hands
configuration to roles; `merge_config(client, module, tree, target)` -> an edit-config built
by `build_config`; `notification(element)` -> (module, name, content) of a notification.
"""

from __future__ import annotations

import json
import threading
from typing import Any

import libyang
from lxml import etree

from nvo3 import YANG_DIR
from nvo3.common.names import namespace
from nvo3.common.tree import Tree
from nvo3.netconf.client.session import Client
from nvo3.netconf.proto.xml import BASE_NS
from nvo3.netconf.server.schema import pyang_module_dir

#: The key of a container or list-entry dict that gives the node's nc:operation.
OPERATION = "@operation"
OPERATIONS = frozenset({"create", "merge", "replace", "delete", "remove"})
_OP_ATTR = f"{{{BASE_NS}}}operation"

_lock = threading.Lock()
_context: libyang.Context | None = None


def context() -> libyang.Context:
    """One libyang context with every nvo3 module (shared; use under `_lock`)."""
    global _context
    if _context is None:
        # nvo3's modules import ietf-netconf-acm (nacm:default-deny-all), which pyang ships
        ctx = libyang.Context(f"{YANG_DIR}:{pyang_module_dir()}")
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
                and etree.QName(c).namespace != BASE_NS]
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
    return "subtree", f'<{top} xmlns="{namespace(module)}"/>'


def get_config(client: Client, module: str, top: str, source: str = "running") -> Tree:
    """The peer's configuration under /module:top as a dict (empty when absent)."""
    data = client.get_config(source=source, filter=_subtree(module, top))
    return _data_to_dict(data, with_state=False).get(top, {})


def get_state(client: Client, module: str, top: str) -> Tree:
    """The peer's configuration and state under /module:top as a dict."""
    data = client.get(filter=_subtree(module, top))
    return _data_to_dict(data, with_state=True).get(top, {})


def _without_operations(value: Any) -> Any:
    """`value` with every OPERATION key dropped (the tree libyang parses)."""
    if isinstance(value, dict):
        return {k: _without_operations(v) for k, v in value.items() if k != OPERATION}
    if isinstance(value, list):
        return [_without_operations(v) for v in value]
    return value


def _operation(tree: Tree) -> str | None:
    op = tree.get(OPERATION)
    if op is not None and op not in OPERATIONS:
        raise ValueError(f"{op!r} is not an edit-config operation")
    return op


def _annotate(element: etree._Element, ns: str, tree: Tree) -> None:
    """Set the nc:operation attributes `tree` asks for on the libyang-printed `element`.

    libyang prints a system-ordered list's entries in the order they were given, so entries
    are matched by position; an empty container it left out is added back (a replace of it
    clears it)."""
    op = _operation(tree)
    if op is not None:
        element.set(_OP_ATTR, op)
    for name, value in tree.items():
        if name == OPERATION:
            continue
        tag = f"{{{ns}}}{name}"
        if isinstance(value, dict):
            child = element.find(tag)
            if child is None:
                child = etree.SubElement(element, tag)
            _annotate(child, ns, value)
        elif isinstance(value, list) and value and isinstance(value[0], dict):
            for child, entry in zip(element.iterchildren(tag), value, strict=True):
                _annotate(child, ns, entry)


def build_config(module: str, tree: Tree) -> str:
    """The `<config>` of an edit-config for `tree` ({top: {...}}), validated and printed by
    libyang, with the OPERATION markers as nc:operation attributes.

    Raises libyang.LibyangError when a value does not fit its type or a node is unknown."""
    with _lock:
        node = context().get_module(module).parse_data_dict(
            _without_operations(tree), validate=False, strict=True)
        try:
            xml = (node.print_mem("xml", with_siblings=True, pretty=False) or "") if node else ""
        finally:
            if node is not None:
                node.free()
    config = etree.fromstring(f'<nc:config xmlns:nc="{BASE_NS}">{xml}</nc:config>')
    ns = namespace(module)
    for name, value in tree.items():
        top = config.find(f"{{{ns}}}{name}")
        if top is None:
            top = etree.SubElement(config, f"{{{ns}}}{name}", nsmap={None: ns})
        _annotate(top, ns, value)
    return etree.tostring(config).decode()


def _escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _fill_text(out: list[str], tree: Tree) -> None:
    """The children of a container or list entry `tree`, as XML text appended to `out`
    (the hot path of a bulk push: the common types are tested first)."""
    for name, value in tree.items():
        kind = type(value)
        if name == OPERATION or value is None:
            continue
        if kind is str:
            out.append(f"<{name}>{_escape(value)}</{name}>")
        elif kind is bool:
            out.append(f"<{name}>{'true' if value else 'false'}</{name}>")
        elif kind is int:
            out.append(f"<{name}>{value}</{name}>")
        elif isinstance(value, dict):
            _node_text(out, name, value)
        elif isinstance(value, list):
            for item in value:
                if isinstance(item, dict):
                    _node_text(out, name, item)
                else:
                    _fill_text(out, {name: item})
        else:
            out.append(f"<{name}>{_escape(str(value))}</{name}>")


def _node_text(out: list[str], name: str, tree: Tree) -> None:
    op = _operation(tree)
    out.append(f'<{name} nc:operation="{op}">' if op else f"<{name}>")
    _fill_text(out, tree)
    out.append(f"</{name}>")


def build_config_text(module: str, tree: Tree) -> str:
    """:func:`build_config` as text, without libyang: every value escaped, nodes in the
    dict's order (give them in schema order, keys first), values not validated."""
    out = [f'<nc:config xmlns:nc="{BASE_NS}">']
    ns = namespace(module)
    for name, value in tree.items():
        op = _operation(value)
        out.append(f'<{name} xmlns="{ns}"' + (f' nc:operation="{op}">' if op else ">"))
        _fill_text(out, value)
        out.append(f"</{name}>")
    out.append("</nc:config>")
    return "".join(out)


def merge_config(client: Client, module: str, tree: Tree, target: str = "running") -> None:
    """edit-config (default operation merge) of `tree` ({top: {...}}, OPERATION markers
    allowed) into the peer, built by :func:`build_config`."""
    client.edit_config(build_config(module, tree), target=target)


def list_edit(module: str, top: str, ops: list[tuple[str, str, str, Tree]]) -> str:
    """One edit-config <config> for `ops` = (container, list, operation, entry) on lists
    directly under /module:top (e.g. ("attachments", "attachment", "remove", {keys})),
    built by :func:`build_config` (containers in schema order)."""
    body: Tree = {}
    for container, item, op, entry in ops:
        body.setdefault(container, {}).setdefault(item, []).append({**entry, OPERATION: op})
    return build_config(module, {top: body})


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
