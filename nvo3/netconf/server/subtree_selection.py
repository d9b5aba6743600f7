"""A subtree filter that names one subtree by its path, answered from the libyang tree.

The general subtree filter (:mod:`nvo3.netconf.server.filters`) works on lxml: the whole
datastore is printed, parsed, copied, marked and serialised again, ~20 ms for 10,000 list
entries however little the filter selects. Most filters clients send are a *path*: from the
top, one containment node per level, a list entry named by all its keys (content match nodes),
down to one selection node (or a list entry given by its keys alone). Such a filter is
resolved here against the schema (:func:`path_filter`), then answered by finding that
one data node in the libyang tree and printing only it (:func:`print_selection`), wrapped in
its ancestors.

The answer equals the general filter's (RFC 6241 section 6) for the same printed data:

* a key is compared as text with the printed key leaf, as the general filter compares it (a
  non-canonical key in the filter selects nothing, though libyang's path would find it);
* a node that prints to nothing in the with-defaults mode (a non-presence container holding
  only defaults, in ``explicit``/``trim``) is absent, as it is from the printed data;
* when the selected node is absent, the deepest list entry on the way that exists is returned
  with its keys alone (its key content matches hold, section 6.2.5), or nothing at all.

Anything else (attributes, unqualified names, content matches on non-keys, several branches,
key values libyang's path syntax cannot quote) is not a path: :func:`path_filter` returns
None and the general filter answers.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import libyang
from _libyang import ffi, lib
from lxml import etree

from nvo3.netconf.proto.xml import BASE_NS
from nvo3.netconf.server.schema import NodeInfo, Schema

#: The comment standing for the selected subtree while its ancestors are serialised.
_MARK = "nvo3-selected-subtree"


@dataclass(frozen=True)
class Step:
    """One level of a path filter: a schema node and, for a list entry, its key values in the
    schema's key order."""

    info: NodeInfo
    keys: tuple[str, ...] = ()

    def segment(self, parent: NodeInfo | None) -> str | None:
        """This step in libyang's path syntax (module-prefixed where the module changes); None
        when a key value holds both quote characters (the syntax has no escape)."""
        name = self.info.name if parent is not None and parent.module == self.info.module \
            else f"{self.info.module}:{self.info.name}"
        predicates = []
        for key, value in zip(self.info.keys, self.keys, strict=True):
            quote = "'" if "'" not in value else '"'
            if quote in value:
                return None
            predicates.append(f"[{key}={quote}{value}{quote}]")
        return name + "".join(predicates)


def _children(node: etree._Element) -> list[etree._Element]:
    return [child for child in node if isinstance(child.tag, str)]


def _text(node: etree._Element) -> str:
    return (node.text or "").strip()


def _qualified(node: etree._Element) -> tuple[str, str] | None:
    """(namespace, local name) of a filter node in a data namespace, else None (unqualified
    and base-namespace filter nodes match any namespace: not a path)."""
    name = etree.QName(node)
    if name.namespace in (None, BASE_NS) or node.attrib:
        return None
    return name.namespace, name.localname


def path_filter(schema: Schema, filter_elem: etree._Element) -> list[Step] | None:
    """The path a <filter> names, top first; None when it is not a subtree filter or not
    a path."""
    kind = filter_elem.get("type") or filter_elem.get(f"{{{BASE_NS}}}type") or "subtree"
    if kind != "subtree":
        return None
    tops = _children(filter_elem)
    if len(tops) != 1:
        return None
    name = _qualified(tops[0])
    info = None if name is None else schema.top_node(*name)
    steps: list[Step] = []
    fnode = tops[0]
    while info is not None and info.config and info.kind in ("container", "list"):
        fchildren = _children(fnode)
        if not fchildren:
            if _text(fnode):
                return None
            steps.append(Step(info))
            return steps if info.kind == "container" else None   # every entry: not one node
        matches = [f for f in fchildren if not _children(f) and _text(f)]
        others = [f for f in fchildren if f not in matches]
        keys = _key_values(info, matches)
        if keys is None or len(others) > 1:
            return None
        steps.append(Step(info, keys))
        if not others:                     # a list entry by its keys: the whole entry
            return steps if info.kind == "list" else None
        fnode = others[0]
        name = _qualified(fnode)
        info = None if name is None else info.child(*name)
    return None


def _key_values(info: NodeInfo, matches: list[etree._Element]) -> tuple[str, ...] | None:
    """The key values of a list step given by content match nodes naming each key once, in the
    list's namespace; () for a container without content matches; None otherwise."""
    if info.kind != "list":
        return () if not matches else None
    given: dict[str, str] = {}
    for match in matches:
        name = _qualified(match)
        if name is None or name[0] != info.namespace or name[1] in given:
            return None
        given[name[1]] = _text(match)
    if set(given) != set(info.keys):
        return None
    return tuple(given[key] for key in info.keys)


def print_selection(dnode: libyang.DNode | None, steps: list[Step],
                    print_node: Callable[[libyang.DNode], bytes]) -> bytes:
    """The <data> reply for path `steps` over the data tree `dnode` (any node of it; None: an
    empty configuration), a node printed (alone, with its subtree) by `print_node`."""
    found: list[libyang.DNode] = []
    path = ""
    parent: NodeInfo | None = None
    for step in steps:
        segment = step.segment(parent) if dnode is not None else None
        node = None if segment is None else dnode.find_path(f"{path}/{segment}")  # type: ignore[union-attr]
        if node is None or not _keys_print_as(node, step, print_node):
            break
        found.append(node)
        path, parent = f"{path}/{segment}", step.info
    if dnode is not None:
        lib.ly_err_clean(dnode.context.cdata, ffi.NULL)   # a path not found leaves an error
    selected = b""
    if len(found) == len(steps):
        selected = print_node(found[-1])
    if not selected:                       # fall back to the deepest list entry, keys alone
        while found and not steps[len(found) - 1].keys:
            found.pop()
    return _wrapped(steps[:len(found)], selected)


def _keys_print_as(node: libyang.DNode, step: Step,
                   print_node: Callable[[libyang.DNode], bytes]) -> bool:
    """True when each key leaf of list entry `node` prints with exactly the text the filter
    gives (the general filter compares printed text)."""
    for key, value in zip(step.info.keys, step.keys, strict=True):
        leaf = node.find_path(key)
        if leaf is None:
            return False
        printed = etree.fromstring(print_node(leaf))
        if _text(printed) != value:
            return False
    return True


def _wrapped(steps: list[Step], selected: bytes) -> bytes:
    """<data> holding the ancestors `steps` (list entries with their keys) and, inside the
    last, the printed `selected` subtree."""
    data = etree.Element(f"{{{BASE_NS}}}data", nsmap={None: BASE_NS})
    inner = data
    for n, step in enumerate(steps):
        is_last = n == len(steps) - 1
        if is_last and selected:
            break
        info = step.info
        inner = etree.SubElement(inner, f"{{{info.namespace}}}{info.name}",
                                 nsmap={None: info.namespace})
        for key, value in zip(info.keys, step.keys, strict=True):
            etree.SubElement(inner, f"{{{info.namespace}}}{key}").text = value
    if not selected:
        return etree.tostring(data)
    inner.append(etree.Comment(_MARK))
    return etree.tostring(data).replace(f"<!--{_MARK}-->".encode(), selected, 1)
