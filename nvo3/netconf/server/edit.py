"""edit-config processing (RFC 6241 section 7.2) on an lxml copy of a datastore.

The edit walks the <config> content alongside the schema index, finds each target node
(list entries by key, leaf-list entries by value) and applies merge, replace, create, delete
or remove. It never validates the result: the caller hands the edited tree to libyang, which
checks types, keys, mandatory, unique, min/max-elements, leafref, must and when.

Error handling follows the error-option: `stop` raises at the first failing node (what was
applied before it stays in the edited copy), `continue` records the failure and goes on.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from lxml import etree

from nvo3.netconf.proto.errors import RpcError
from nvo3.netconf.proto.xml import BASE_NS, YANG_NS, local_name, namespace
from nvo3.netconf.server.schema import NodeInfo, Schema

OPERATIONS = ("merge", "replace", "create", "delete", "remove", "none")
_OP_ATTR = f"{{{BASE_NS}}}operation"
_INSERT_ATTR = f"{{{YANG_NS}}}insert"
_PREDICATE = re.compile(r"\[\s*(?:[\w.-]+:)?([\w.-]+)\s*=\s*(['\"])(.*?)\2\s*\]")
_EDIT_ATTRS = (_OP_ATTR, _INSERT_ATTR, f"{{{YANG_NS}}}key", f"{{{YANG_NS}}}value")


@dataclass
class EditResult:
    """What an edit did: errors met under continue-on-error, and whether anything changed."""

    errors: list[RpcError] = field(default_factory=list)
    changed: bool = False


class Editor:
    """Applies one <config> to a <data> tree in place (give it a copy)."""

    def __init__(self, schema: Schema, default_operation: str, continue_on_error: bool):
        self.schema = schema
        self.default_operation = default_operation
        self.continue_on_error = continue_on_error
        self.result = EditResult()
        # list entries by key values, per (parent element, list): built at the first lookup
        # in a list and kept up to date by this editor, so an edit of n entries into a list
        # of m is O(n + m), not O(n * m) (a 7,500-entry remote-mac push)
        self._index: dict[tuple[etree._Element, str], dict[tuple[str | None, ...],
                                                             etree._Element]] = {}

    def apply(self, data: etree._Element, config: etree._Element) -> EditResult:
        """Apply an <edit-config>'s <config> to `data` (a mutable <data> copy), in place."""
        if self.default_operation == "replace":   # the <config> replaces the whole datastore
            given = [self.schema.top_node(namespace(n), local_name(n))
                     for n in config if isinstance(n.tag, str)]
            keep = {(i.namespace, i.name) for i in given if i is not None}
            for old in [n for n in data if (namespace(n), local_name(n)) not in keep]:
                data.remove(old)
                self.result.changed = True
        for node in config:
            if not isinstance(node.tag, str):
                continue
            info = self.schema.top_node(namespace(node), local_name(node))
            self._guard(self._edit_child, data, None, node, info, self.default_operation, "")
        return self.result

    # -- one node -------------------------------------------------------------------------

    def _guard(self, fn: Callable[..., None], *args: Any) -> None:
        """Run one edit step; with continue-on-error an rpc-error is kept and editing goes on."""
        try:
            fn(*args)
        except RpcError as err:
            if not self.continue_on_error:
                raise
            self.result.errors.append(err)

    def _edit_child(self, parent: etree._Element, parent_info: NodeInfo | None,
                    edit: etree._Element, info: NodeInfo | None, inherited: str,
                    parent_path: str) -> None:
        name = local_name(edit)
        if info is None:
            raise RpcError("unknown-element", f'unknown element "{name}"', type="application",
                           path=f"{parent_path}/{name}", info=[("bad-element", name)])
        op = _operation(edit) or inherited
        if op not in OPERATIONS:
            raise RpcError("bad-attribute", f'operation "{op}" is not one of merge, replace, '
                           "create, delete, remove", type="protocol",
                           info=[("bad-attribute", "operation"), ("bad-element", name)])
        path = self._path(parent_info, info, edit, parent_path)
        existing = self._find(parent, info, edit, path)
        if op == "create" and existing is not None:
            raise RpcError("data-exists", f"{path} already exists", path=path,
                           path_namespaces=self._path_ns(path))
        if op == "delete" and existing is None:
            raise RpcError("data-missing", f"{path} does not exist", path=path,
                           path_namespaces=self._path_ns(path))
        if op in ("delete", "remove"):
            if existing is not None:
                parent.remove(existing)
                self._indexed(parent, info, edit, None)
                self.result.changed = True
            return
        if op in ("create", "replace") or (op == "merge" and existing is None
                                           and not _has_nested_operation(edit)):
            self._indexed(parent, info, edit, self._put(parent, info, edit, existing))
            return
        if info.kind in ("leaf", "leaf-list", "anydata"):
            if op == "merge" and info.kind != "leaf-list" and existing is not None \
                    and (existing.text or "") != (edit.text or "").strip():
                existing.text = (edit.text or "").strip()
                self.result.changed = True
            return
        if existing is not None and info.user_ordered and _INSERT_ATTR in edit.attrib:
            self._insert(parent, info, edit, existing)   # merge moves it (RFC 7950 7.8.6)
            self.result.changed = True
        created = existing is None                # op "none" on a node not yet there
        if existing is None:
            existing = self._new_navigation_node(parent, info, edit)
            self._indexed(parent, info, edit, existing)
        for child in edit:
            if not isinstance(child.tag, str):
                continue
            sub = info.child(namespace(child), local_name(child))
            if sub is not None and info.kind == "list" and sub.name in info.keys \
                    and _operation(child) is None:
                continue                          # keys only identify the entry
            self._guard(self._edit_child, existing, info, child, sub, op, path)
        if created and len(existing) == len(info.keys):
            parent.remove(existing)               # navigation only: nothing was put inside
            self._indexed(parent, info, edit, None)

    # -- finding and placing --------------------------------------------------------------

    def _find(self, parent: etree._Element, info: NodeInfo, edit: etree._Element,
              path: str) -> etree._Element | None:
        tag = f"{{{info.namespace}}}{info.name}"
        if info.kind == "list":
            wanted = tuple(v for _, v in self._key_values(info, edit, path))
            index = self._index.get((parent, tag))
            if index is None:
                index = self._index[(parent, tag)] = {}
                for candidate in parent.iterchildren(tag):
                    index.setdefault(tuple(_child_text(candidate, info.namespace, k)
                                           for k in info.keys), candidate)
            return index.get(wanted)
        if info.kind == "leaf-list":
            value = (edit.text or "").strip()
            for candidate in parent.iterchildren(tag):
                if (candidate.text or "").strip() == value:
                    return candidate
            return None
        return next(parent.iterchildren(tag), None)

    def _indexed(self, parent: etree._Element, info: NodeInfo, edit: etree._Element,
                 now: etree._Element | None) -> None:
        """Keep the list index of `parent` right: the entry keyed like `edit` is now `now`."""
        if info.kind != "list":
            return
        index = self._index.get((parent, f"{{{info.namespace}}}{info.name}"))
        if index is None:
            return
        key = tuple(_child_text(edit, info.namespace, k) for k in info.keys)
        if now is None:
            index.pop(key, None)
        else:
            index[key] = now

    def _key_values(self, info: NodeInfo, edit: etree._Element,
                    path: str) -> list[tuple[str, str]]:
        values = []
        for key in info.keys:
            text = _child_text(edit, info.namespace, key)
            if text is None:
                raise RpcError("missing-element", f'list "{info.name}" entry is missing its key '
                               f'"{key}"', path=path, info=[("bad-element", key)],
                               path_namespaces=self._path_ns(path))
            values.append((key, text))
        return values

    def _put(self, parent: etree._Element, info: NodeInfo, edit: etree._Element,
             existing: etree._Element | None) -> etree._Element:
        """Create or replace `existing` with a clean copy of the edit content; the copy."""
        fresh = _clean_copy(edit, info)
        if existing is not None and not (info.user_ordered and _INSERT_ATTR in edit.attrib):
            existing.addnext(fresh)
            parent.remove(existing)
        else:
            self._insert(parent, info, edit, fresh)
            if existing is not None:              # replaced and moved (RFC 7950 7.8.6)
                parent.remove(existing)
        self.result.changed = True
        return fresh

    def _insert(self, parent: etree._Element, info: NodeInfo, edit: etree._Element,
                fresh: etree._Element) -> None:
        where = edit.get(_INSERT_ATTR, "last") if info.user_ordered else "last"
        if where == "last":                       # the common case: no sibling scan
            parent.append(fresh)
            return
        tag = f"{{{info.namespace}}}{info.name}"
        siblings = [s for s in parent.iterchildren(tag) if s is not fresh]
        if where in ("before", "after"):
            anchor = self._anchor(siblings, info, edit, where)
            if where == "before":
                anchor.addprevious(fresh)
            else:
                anchor.addnext(fresh)
        elif where == "first" and siblings:
            siblings[0].addprevious(fresh)
        elif where in ("first", "last"):
            parent.append(fresh)
        else:
            raise RpcError("bad-attribute", f'insert "{where}" is not one of first, last, '
                           "before, after", info=[("bad-attribute", "insert"),
                                                  ("bad-element", info.name)])

    def _anchor(self, siblings: list[etree._Element], info: NodeInfo, edit: etree._Element,
                where: str) -> etree._Element:
        """The entry named by the key (list) or value (leaf-list) attribute of an insert."""
        attr = "key" if info.kind == "list" else "value"
        ref = edit.get(f"{{{YANG_NS}}}{attr}")
        if info.kind == "list":
            wanted = [(k, v) for k, _, v in _PREDICATE.findall(ref or "")]
            found = [s for s in siblings if wanted and all(
                _child_text(s, info.namespace, k) == v for k, v in wanted)]
        else:
            found = [s for s in siblings if (s.text or "").strip() == ref]
        if ref is None or not found:
            raise RpcError("bad-attribute", f'insert {where}: no {info.name} entry {ref}',
                           app_tag="missing-instance",
                           info=[("bad-attribute", attr), ("bad-element", info.name)])
        return found[0]

    def _new_navigation_node(self, parent: etree._Element, info: NodeInfo,
                             edit: etree._Element) -> etree._Element:
        node = etree.SubElement(parent, f"{{{info.namespace}}}{info.name}")
        if info.kind == "list":
            for key in info.keys:
                etree.SubElement(node, f"{{{info.namespace}}}{key}").text = \
                    _child_text(edit, info.namespace, key)
        return node

    # -- error paths ----------------------------------------------------------------------

    def _path(self, parent_info: NodeInfo | None, info: NodeInfo, edit: etree._Element,
              parent_path: str) -> str:
        prefix = f"{info.module}:" if parent_info is None or \
            parent_info.module != info.module else ""
        step = f"{parent_path}/{prefix}{info.name}"
        if info.kind == "list":
            for key in info.keys:
                value = _child_text(edit, info.namespace, key)
                if value is not None:
                    step += f"[{key}='{value}']"
        elif info.kind == "leaf-list":
            step += f"[.='{(edit.text or '').strip()}']"
        return step

    def _path_ns(self, path: str) -> dict[str, str]:
        return {m: ns for m, ns in self.schema.namespaces.items() if f"/{m}:" in path}


def _operation(edit: etree._Element) -> str | None:
    """The operation attribute; an unqualified one is taken too rather than silently ignored
    (a YANG data node has no attributes of its own)."""
    return edit.get(_OP_ATTR) or edit.get("operation")


def _has_nested_operation(edit: etree._Element) -> bool:
    """Whether a descendant carries its own operation (then it must be walked, not copied)."""
    return any(d.get(_OP_ATTR) is not None or d.get("operation") is not None
               for d in edit.iterdescendants() if isinstance(d.tag, str))


def _child_text(element: etree._Element, ns: str, name: str) -> str | None:
    for child in element:
        if isinstance(child.tag, str) and local_name(child) == name \
                and namespace(child) in (ns, None):
            return (child.text or "").strip()
    return None


def _clean_copy(edit: etree._Element, info: NodeInfo) -> etree._Element:
    """A copy of an edit subtree in schema namespaces, without operation attributes and
    without children marked delete/remove (they cannot exist in what is being created)."""
    fresh = etree.Element(f"{{{info.namespace}}}{info.name}")
    if info.kind in ("leaf", "leaf-list", "anydata"):
        if info.kind == "anydata":
            for child in edit:
                fresh.append(copy.deepcopy(child))
        fresh.text = (edit.text or "").strip()
        return fresh
    children = [c for c in edit if isinstance(c.tag, str)
                and _operation(c) not in ("delete", "remove")]
    if info.kind == "list":                    # keys first, in key order
        rank = {k: i for i, k in enumerate(info.keys)}
        children.sort(key=lambda c: rank.get(local_name(c), len(rank)))
    for child in children:
        sub = info.child(namespace(child), local_name(child))
        if sub is None:
            name = local_name(child)
            raise RpcError("unknown-element", f'unknown element "{name}" in "{info.name}"',
                           info=[("bad-element", name)])
        fresh.append(_clean_copy(child, sub))
    return fresh
