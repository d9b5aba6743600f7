"""An edit-config with operations, as deletions plus one plain merge (for editing in place).

RFC 6241's operations reduce, on the targets they name, to two steps libyang can take in the
live tree: delete the target (`delete`, `remove`, and the old content of a `replace`) and
merge content (`merge`, `create`, the new content of a `replace`). `split` turns an edit's
`<config>` into those steps when the result is the one `edit.Editor` gives (the reference):

- `targets`: the nodes deleted, replaced or created, each with its data path in libyang's
  form (`/module:node/list[key='value']`), in document order;
- `merge_xml`: every merged, created and replacing node, as one plain merge (operation
  attributes dropped, leaf values stripped as the Editor stores them, list keys first).

It gives None (the Editor edits a copy instead) for anything else: insert attributes,
operations on ordered-by-user lists or on keys, a node named twice at one level, unknown or
state nodes, unqualified top nodes, nested operations under create/replace, an operation-less
subtree under `none`. Errors are never answered here: an edit that would fail (delete of an
absent node, create of an existing one) is found while applying and left to the Editor, whose
error is the reference.

`apply` makes the split edit in a libyang tree (in place: the deleted subtrees are kept for an
exact undo, see `incremental.Deleted`); the running datastore's journal records the split edit
(`to_record`) and its replay applies it again (`from_record`, `apply`).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any
from xml.sax.saxutils import escape

import libyang
from _libyang import ffi, lib
from lxml import etree

from nvo3.netconf.proto.xml import BASE_NS, local_name, namespace
from nvo3.netconf.server import libyang_extra as lx
from nvo3.netconf.server.edit import OPERATIONS
from nvo3.netconf.server.incremental import Changes, Deleted, delete_node, not_deletable, plan_merge, undo
from nvo3.netconf.server.schema import NodeInfo, Schema

_OP_ATTR = f"{{{BASE_NS}}}operation"
_OPERATIONS = etree.XPath("count(.//@*[local-name()='operation'])")
_WITH_OPERATION = etree.XPath(".//*[@*[local-name()='operation']]")

#: What one target costs in place, counted as bytes of merged content (about the same time: a
#: look-up, an unlink, the constraints that reach the deleted node).
DELETE_COST = 64


class NotInPlace(Exception):
    """The edit cannot be made this way: the Editor decides (and reports any error)."""


@dataclass(frozen=True)
class Target:
    """A node an operation names: delete | remove | replace | create, at `path`."""

    op: str
    path: str
    kind: str                       # container | list | leaf | leaf-list


@dataclass
class SplitEdit:
    """An edit-config as deletions plus one plain merge (see the module notes)."""

    targets: list[Target] = field(default_factory=list)
    merge_xml: bytes = b""
    #: list keys and leaf-list values of `merge_xml` as the client wrote them: libyang
    #: compares canonical values, the Editor the text (checked by `apply`; None: not checked,
    #: a journal record's replay)
    values: list[str] | None = field(default_factory=list)

    @property
    def cost(self) -> int:
        """About what making it in place costs, in bytes of merged content."""
        return len(self.merge_xml) + DELETE_COST * len(self.targets)

    def to_record(self) -> bytes:
        """The split edit as a journal record payload."""
        return json.dumps({"targets": [[t.op, t.path, t.kind] for t in self.targets],
                           "merge": self.merge_xml.decode()}).encode()

    @classmethod
    def from_record(cls, payload: bytes) -> SplitEdit:
        """The split edit of a journal record (see `to_record`)."""
        saved = json.loads(payload)
        return cls([Target(*t) for t in saved["targets"]], saved["merge"].encode(), None)


# -- splitting --------------------------------------------------------------------------------
def split(schema: Schema, config: etree._Element, default_operation: str,
          budget: float = float("inf")) -> SplitEdit | None:
    """`config` (an edit-config's <config>) as a SplitEdit, or None (see the module notes);
    also None as soon as its `cost` exceeds `budget` (a large edit: the Editor takes it)."""
    if default_operation not in ("merge", "none"):
        return None
    if float(_OPERATIONS(config)) * DELETE_COST > budget:
        return None
    splitter = _Splitter(schema, config, budget)
    parts: list[str] = []
    seen: set[tuple[Any, ...]] = set()
    try:
        for node in config:
            if not isinstance(node.tag, str):
                continue
            ns = namespace(node)
            info = schema.top_node(ns, local_name(node)) if ns else None
            if info is None:
                raise NotInPlace("unqualified or unknown top node")
            parts.append(splitter.node(node, info, None, default_operation, "", seen, ""))
    except NotInPlace:
        return None
    return SplitEdit(splitter.targets, "".join(parts).encode(), splitter.values)


def _operation(edit: etree._Element) -> str | None:
    return edit.get(_OP_ATTR) or edit.get("operation")


def _quoted(value: str) -> str:
    if "'" not in value:
        return f"'{value}'"
    if '"' not in value:
        return f'"{value}"'
    raise NotInPlace("a key value with both quote characters")


def _text(element: etree._Element) -> str:
    return (element.text or "").strip()


class _Splitter:
    def __init__(self, schema: Schema, config: etree._Element, budget: float):
        self.schema = schema
        self.targets: list[Target] = []
        self.values: list[str] = []
        self.budget = budget
        self.cost = 0
        #: the elements with an operation attribute below them
        self.above_operations: set[etree._Element] = set()
        for element in _WITH_OPERATION(config):
            parent = element.getparent()
            while parent is not None and parent not in self.above_operations:
                self.above_operations.add(parent)
                parent = parent.getparent()

    def spend(self, cost: int) -> None:
        self.cost += cost
        if self.cost > self.budget:
            raise NotInPlace("over the budget")

    def node(self, el: etree._Element, info: NodeInfo, parent: NodeInfo | None, inherited: str,
             parent_path: str, seen: set[tuple[Any, ...]], parent_ns: str) -> str:
        """The merge content `el` contributes (its targets are recorded)."""
        if not info.config or info.kind == "anydata":
            raise NotInPlace("state or anydata")
        if any(a not in (_OP_ATTR, "operation") for a in el.attrib):
            raise NotInPlace("attributes other than the operation")
        own = _operation(el)
        if own is not None and own not in OPERATIONS:
            raise NotInPlace("unknown operation")
        op = own or inherited
        identity, step = self.step(el, info, parent)
        if identity in seen:
            raise NotInPlace("a node named twice")
        seen.add(identity)
        path = parent_path + step
        nested = el in self.above_operations
        if op in ("delete", "remove", "replace", "create"):
            if info.user_ordered:
                raise NotInPlace("an operation on an ordered-by-user list")
            if nested:
                raise NotInPlace("operations under an operation")
            if op != "replace" or info.kind in ("container", "list"):
                self.targets.append(Target(op, path, info.kind))
                self.spend(DELETE_COST)
            if op in ("delete", "remove"):
                return ""
            return self.copied(el, info, parent_ns)
        if op == "merge" and not nested:
            return self.copied(el, info, parent_ns)
        if info.kind in ("leaf", "leaf-list"):
            return ""                                   # none: nothing to do
        if not nested:
            raise NotInPlace("a subtree under none")    # the Editor checks its names
        keys_at = len(self.values)
        inner: list[str] = []
        child_seen: set[tuple[Any, ...]] = set()
        for child in el:
            if not isinstance(child.tag, str):
                continue
            sub = info.child(namespace(child), local_name(child))
            if sub is None:
                raise NotInPlace("unknown element")
            if info.kind == "list" and sub.name in info.keys:
                if _operation(child) is not None:
                    raise NotInPlace("an operation on a key")
                continue
            inner.append(self.node(child, sub, info, op, path, child_seen, info.namespace))
        content = "".join(inner)
        if not content:
            return ""                                   # navigation only
        key_values = [_key_text(el, info, k) for k in info.keys]
        self.values[keys_at:keys_at] = key_values
        keys = "".join(self.leaf(sub, value, info.namespace)
                       for (_, sub), value in zip(_key_infos(info), key_values, strict=True))
        return self.open(info, parent_ns) + keys + content + f"</{info.name}>"

    def step(self, el: etree._Element, info: NodeInfo,
             parent: NodeInfo | None) -> tuple[tuple[Any, ...], str]:
        prefix = f"{info.module}:" if parent is None or parent.module != info.module else ""
        step = f"/{prefix}{info.name}"
        identity: tuple[Any, ...] = (info.namespace, info.name)
        if info.kind == "list":
            values = tuple(_key_text(el, info, k) for k in info.keys)
            step += "".join(f"[{k}={_quoted(v)}]" for k, v in zip(info.keys, values, strict=True))
            identity += values
        elif info.kind == "leaf-list":
            step += f"[.={_quoted(_text(el))}]"
            identity += (_text(el),)
        return identity, step

    def open(self, info: NodeInfo, parent_ns: str) -> str:
        xmlns = f' xmlns="{info.namespace}"' if info.namespace != parent_ns else ""
        return f"<{info.name}{xmlns}>"

    def leaf(self, info: NodeInfo, value: str, parent_ns: str) -> str:
        return f"{self.open(info, parent_ns)}{escape(value)}</{info.name}>"

    def copied(self, el: etree._Element, info: NodeInfo, parent_ns: str) -> str:
        content = self.copy(el, info, parent_ns)
        self.spend(len(content))
        return content

    def copy(self, el: etree._Element, info: NodeInfo, parent_ns: str) -> str:
        """`el`'s subtree as merge content (what `edit._clean_copy` would put in the tree)."""
        if info.kind in ("leaf", "leaf-list"):
            if info.kind == "leaf-list":
                self.values.append(_text(el))
            return self.leaf(info, _text(el), parent_ns)
        if not info.config or info.kind == "anydata":
            raise NotInPlace("state or anydata")
        parts = [self.open(info, parent_ns)]
        children = [c for c in el if isinstance(c.tag, str)]
        if info.kind == "list":
            rank = {k: i for i, k in enumerate(info.keys)}
            children.sort(key=lambda c: rank.get(local_name(c), len(rank)))
        for child in children:
            if child.attrib:
                raise NotInPlace("attributes in merge content")
            sub = info.child(namespace(child), local_name(child))
            if sub is None:
                raise NotInPlace("unknown element")
            if info.kind == "list" and sub.name in info.keys:
                self.values.append(_text(child))
                parts.append(self.leaf(sub, _text(child), info.namespace))
            elif sub.kind in ("leaf", "leaf-list"):
                if sub.kind == "leaf-list":
                    self.values.append(_text(child))
                if not sub.config:
                    raise NotInPlace("state")
                parts.append(self.leaf(sub, _text(child), info.namespace))
            else:
                parts.append(self.copy(child, sub, info.namespace))
        parts.append(f"</{info.name}>")
        return "".join(parts)


def _key_infos(info: NodeInfo) -> list[tuple[str, NodeInfo]]:
    return [(k, info.children[(info.namespace, k)]) for k in info.keys]


def _key_text(el: etree._Element, info: NodeInfo, key: str) -> str:
    for child in el:
        if isinstance(child.tag, str) and local_name(child) == key \
                and namespace(child) in (info.namespace, None):
            return _text(child)
    raise NotInPlace("a list entry without its key")       # the Editor reports it


# -- applying ---------------------------------------------------------------------------------
@dataclass
class Applied:
    """A split edit made in a tree: its undo record and the tree's first node now."""

    changes: Changes
    first: libyang.DNode | None


def apply(schema: Schema, tree: libyang.DNode, edit: SplitEdit) -> Applied:
    """Make `edit` in `tree` (validated or parse_only; never empty): delete the targets (kept
    for undo), merge the rest, put replaced list entries back where the old ones were.

    Raises NotInPlace, with the tree as it was, when the edit is not the Editor's: a delete
    of an absent node, a create of an existing one, a top-level or key target, a leaf with a
    default or a mandatory leaf deleted, values the Editor compares differently, content
    libyang does not parse. The caller checks the result (`incremental.Checker`) and frees
    the deleted subtrees (`incremental.release`) once it is kept.
    """
    changes = Changes()
    root = tree.first_sibling().cdata
    try:
        for target in edit.targets:
            _target(root, target, changes, schema.context.cdata)
        merge = _parse(schema, edit.merge_xml)
    except NotInPlace:
        undo(tree, changes)
        raise
    merge_changes = plan_merge(tree, merge) if merge is not None else Changes()
    if merge is not None and (merge_changes.unsupported or (
            edit.values is not None and not _same_values(merge, edit.values))):
        merge.first_sibling().free()
        undo(tree, changes)
        raise NotInPlace(merge_changes.unsupported or "values the Editor compares as text")
    changes.created, changes.changed = merge_changes.created, merge_changes.changed
    first = tree.first_sibling()
    if merge is not None:
        first.merge(merge, with_siblings=True, destruct=True)
        first = first.first_sibling()
        _put_back_in_place(first.cdata, changes.deleted, schema.context.cdata)
    return Applied(changes, first)


def _find(root: Any, path: str, ctx: Any) -> Any:
    match = ffi.new("struct lyd_node **")
    rc = lib.lyd_find_path(root, path.encode(), 0, match)
    if rc == lib.LY_SUCCESS:
        return match[0]
    lib.ly_err_clean(ctx, ffi.NULL)          # no stale error for the next libyang call
    if rc in (lib.LY_ENOTFOUND, lib.LY_EINCOMPLETE):
        return ffi.NULL
    raise NotInPlace(f"cannot look up {path}")


def _target(root: Any, target: Target, changes: Changes, ctx: Any) -> None:
    node = _find(root, target.path, ctx)
    if node != ffi.NULL and int(node.flags) & 0x01:          # LYD_DEFAULT: not in the config
        node = ffi.NULL
    if node != ffi.NULL and _node_path(node) != target.path:
        raise NotInPlace("a value the Editor compares as text")
    if target.op == "create":
        if node != ffi.NULL:
            raise NotInPlace("create of an existing node")   # data-exists, by the Editor
        return
    if node == ffi.NULL:
        if target.op == "delete":
            raise NotInPlace("delete of an absent node")     # data-missing, by the Editor
        return
    reason = not_deletable(node)
    if reason:
        raise NotInPlace(reason)
    changes.deleted.append(delete_node(node, target.op, target.path))


def _node_path(node: Any) -> str:
    raw = lib.lyd_path(node, lib.LYD_PATH_STD, ffi.NULL, 0)
    try:
        return ffi.string(raw).decode()
    finally:
        lib.free(raw)


def _parse(schema: Schema, xml: bytes) -> libyang.DNode | None:
    if not xml:
        return None
    try:
        return schema.context.parse_data_mem(xml, "xml", strict=True, no_state=True,
                                             parse_only=True)
    except libyang.LibyangError:
        raise NotInPlace("content libyang does not parse") from None


_MULTI = int(lib.LYS_LIST) | int(lib.LYS_LEAFLIST)


def _same_values(merge: libyang.DNode, values: list[str]) -> bool:
    """Whether libyang's values of the list keys and leaf-list entries of the merge are the
    texts the client wrote (then libyang's matching is the Editor's)."""
    found: list[str] = []

    def walk(node: Any) -> None:
        while node != ffi.NULL:
            nodetype = int(node.schema.nodetype)
            if nodetype & int(lib.LYS_LEAFLIST) or int(node.schema.flags) & int(lib.LYS_KEY):
                found.append(ffi.string(lib.lyd_get_value(node)).decode())
            if nodetype & (int(lib.LYS_CONTAINER) | int(lib.LYS_LIST)):
                walk(lib.lyd_child(node))
            node = node.next

    walk(merge.first_sibling().cdata)
    return sorted(found) == sorted(values)


def _put_back_in_place(root: Any, deleted: list[Deleted], ctx: Any) -> None:
    """A replaced list entry goes where the old one was (the Editor replaces it in its place)."""
    if not any(d.op == "replace" for d in deleted):
        return
    replaced = {d.address: d for d in deleted if d.op == "replace" and d.anchor != ffi.NULL}
    new_of: dict[int, Any] = {}
    for d in deleted:
        if d.op == "replace":
            node = _find(root, d.path, ctx)
            if node != ffi.NULL:
                new_of[d.address] = node
    for d in deleted:
        # the only instance there was stays the first: the entries the edit creates follow it
        if d.op == "replace" and d.anchor == ffi.NULL and d.address in new_of:
            node = new_of[d.address]
            first = lx.find_first_instance(lib.lyd_child(ffi.cast("struct lyd_node *",
                                                                  node.parent)), node.schema)
            if first != ffi.NULL and first != node:
                lx.insert_next_to(first, node, False)
    by_address = {d.address: d for d in deleted}
    for d in reversed(deleted):
        if d.address not in replaced or d.address not in new_of:
            continue
        anchor, after = d.anchor, d.after
        while anchor != ffi.NULL and _address(anchor) in by_address:
            gone = by_address[_address(anchor)]
            if _address(anchor) in new_of:
                anchor = new_of[_address(anchor)]
                break
            anchor, after = gone.anchor, gone.after
        if anchor != ffi.NULL:
            lx.insert_next_to(anchor, new_of[d.address], after)


def _address(cdata: Any) -> int:
    return int(ffi.cast("uintptr_t", cdata))

