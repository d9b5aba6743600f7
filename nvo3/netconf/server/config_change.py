"""The `<edit>` list of netconf-config-change (RFC 6470 section 2.2), and the notification.

An edit names a target (the topmost node changed: a data path in libyang's syntax, module
names where the module changes) and the operation performed. Edits are summarised at the first
list entry (or leaf-list entry) on the way down: a change anywhere inside one NVE entry is one
edit targeting that entry; a change of a leaf or container outside any list targets that node.
A change is never missing, whatever its size. Three sources, each in proportion to what is at
hand:

- `from_changes`: an edit made in place (the undo record already names what it created,
  changed and deleted);
- `from_content`: a plain merge made in a copy (each entry the edit names: merge, or create
  when it was not there);
- `from_diff`: any other change (commit, copy-config, an edit made by the Editor, a rollback):
  the entries that differ between the old and the new configuration.

`notification` builds the element directly with lxml (no libyang round trip: the targets of
deleted nodes do not exist, and the event must cost in proportion to the edit); a unit test
holds it equal to what libyang builds from the same values.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from typing import Any

from lxml import etree

from nvo3.netconf.proto.xml import NC_NOTIFICATIONS_NS, PARSER
from nvo3.netconf.server.datastore import Snapshot, data_element
from nvo3.netconf.server.incremental import Changes
from nvo3.netconf.server.schema import NodeInfo, Schema

#: (target data path, operation: merge | replace | create | delete | remove)
Edit = tuple[str, str]

_KEY_PREDICATE = re.compile(r"^\s*(?:([\w.-]+):)?([\w.-]+)\s*=\s*(.*)$", re.S)


# -- data paths -----------------------------------------------------------------------------

def steps(path: str) -> list[str]:
    """The steps of a data path ("/a:b/c[k='x/y']" -> ["a:b", "c[k='x/y']"]), quotes and
    predicates respected."""
    out: list[str] = []
    current: list[str] = []
    quote: str | None = None
    depth = 0
    for ch in path:
        if quote:
            if ch == quote:
                quote = None
        elif ch in "'\"" and depth:
            quote = ch
        elif ch == "[":
            depth += 1
        elif ch == "]":
            depth -= 1
        elif ch == "/" and not depth:
            if current:
                out.append("".join(current))
            current = []
            continue
        current.append(ch)
    if current:
        out.append("".join(current))
    return out


def summary_target(path: str) -> str:
    """`path` cut after its first list or leaf-list entry (the summary's granularity); scans
    only up to the end of that entry's predicates (a 10,000-entry edit summarises fast)."""
    end = path.find("[")
    if end < 0:
        return path
    quote: str | None = None
    while end < len(path) and path[end] == "[":
        end += 1
        while end < len(path):
            ch = path[end]
            end += 1
            if quote:
                if ch == quote:
                    quote = None
            elif ch in "'\"":
                quote = ch
            elif ch == "]":
                break
    return path[:end]


def _quoted(value: str) -> str:
    return f"'{value}'" if "'" not in value else f'"{value}"'


def _step(parent: NodeInfo | None, info: NodeInfo) -> str:
    return f"{info.module}:{info.name}" if parent is None or parent.module != info.module \
        else info.name


def _entry_step(parent: NodeInfo | None, info: NodeInfo, element: etree._Element) -> str:
    step = _step(parent, info)
    if info.kind == "list":
        for key in info.keys:
            value = element.findtext(f"{{{info.namespace}}}{key}")
            step += f"[{key}={_quoted((value or '').strip())}]"
    elif info.kind == "leaf-list":
        step += f"[.={_quoted((element.text or '').strip())}]"
    return step


def _units(schema: Schema, parent: etree._Element, parent_info: NodeInfo | None,
           path: str) -> Iterator[tuple[str, etree._Element]]:
    """(data path, element) of each summary unit under `parent`: list and leaf-list entries,
    leaves and empty containers outside lists."""
    for child in parent:
        if not isinstance(child.tag, str):
            continue
        q = etree.QName(child)
        info = schema.child_of(parent_info, q.namespace, q.localname)
        if info is None:
            continue
        here = f"{path}/{_entry_step(parent_info, info, child)}"
        if info.kind == "container" and len(child):
            yield from _units(schema, child, info, here)
        else:
            yield here, child


# -- the three sources ------------------------------------------------------------------------

def from_changes(changes: Changes) -> list[Edit]:
    """The edits of an edit made in place, from its undo record."""
    by_target: dict[str, set[str]] = {}
    for kind, paths in (("create", (c.path for c in changes.created)),
                        ("merge", (c.path for c in changes.changed))):
        for p in paths:
            target = summary_target(p)
            by_target.setdefault(target, set()).add(kind if target == p else "merge")
    for d in changes.deleted:
        target = summary_target(d.path)
        by_target.setdefault(target, set()).add(d.op if target == d.path else "merge")
    return [(t, _one(ops)) for t, ops in by_target.items()]


def _one(ops: set[str]) -> str:
    """One operation for a target that several changes summarise to."""
    if len(ops) == 1:
        return next(iter(ops))
    if "replace" in ops or ("delete" in ops and "create" in ops):
        return "replace"
    return "merge"


def from_content(schema: Schema, content: bytes, before: Snapshot) -> list[Edit]:
    """The edits of a plain merge (its `<config>` content) into `before`: each entry it names,
    created when `before` has no such entry, else merged (a hashed lookup each)."""
    root = etree.fromstring(b"<c>%s</c>" % content, PARSER)
    tree = before.dnode
    return [(p, "merge" if tree is not None and tree.find_path(p) is not None else "create")
            for p in dict.fromkeys(p for p, _ in _units(schema, root, None, ""))]


def from_diff(schema: Schema, before: Snapshot, after: Snapshot) -> list[Edit]:
    """The edits that make `after` from `before`: created, changed (merge) and deleted
    entries."""
    old = {p: etree.tostring(e) for p, e in _units(schema, data_element(before.xml()), None, "")}
    edits: list[Edit] = []
    for p, e in _units(schema, data_element(after.xml()), None, ""):
        was = old.pop(p, None)
        if was is None:
            edits.append((p, "create"))
        elif was != etree.tostring(e):
            edits.append((p, "merge"))
    edits.extend((p, "delete") for p in old)
    return edits


# -- the notification ---------------------------------------------------------------------------

def instance_identifier(path: str, namespaces: dict[str, str]) -> tuple[str, dict[str, str]]:
    """A data path as an XML instance-identifier (every node prefixed, RFC 7950 section
    9.13.2; the module names are the prefixes) and the namespaces it uses."""
    used: dict[str, str] = {}
    module = ""
    out = []
    for step in steps(path):
        name, _, rest = step.partition("[")
        if ":" in name:
            module, name = name.split(":", 1)
        used[module] = namespaces[module]
        text = f"{module}:{name}"
        for predicate in _predicates("[" + rest if rest else ""):
            m = _KEY_PREDICATE.match(predicate)
            if m and m.group(2) != ".":
                text += f"[{module}:{m.group(2)}={m.group(3).strip()}]"
            else:
                text += f"[{predicate}]"
        out.append(text)
    return "/" + "/".join(out), used


def _predicates(text: str) -> Iterator[str]:
    quote: str | None = None
    start = -1
    for i, ch in enumerate(text):
        if quote:
            if ch == quote:
                quote = None
        elif ch in "'\"":
            quote = ch
        elif ch == "[":
            start = i + 1
        elif ch == "]":
            yield text[start:i]


def notification(changed_by: dict[str, Any] | None, edits: Iterable[Edit],
                 namespaces: dict[str, str], datastore: str = "running") -> etree._Element:
    """The netconf-config-change element; `changed_by`: username, session-id and source-host
    of the session, or None (the server)."""
    ns = NC_NOTIFICATIONS_NS
    root = etree.Element(f"{{{ns}}}netconf-config-change", nsmap={None: ns})
    who = etree.SubElement(root, f"{{{ns}}}changed-by")
    if changed_by is None:
        etree.SubElement(who, f"{{{ns}}}server")
    else:
        for leaf in ("username", "session-id", "source-host"):
            if changed_by.get(leaf) is not None:
                etree.SubElement(who, f"{{{ns}}}{leaf}").text = str(changed_by[leaf])
    etree.SubElement(root, f"{{{ns}}}datastore").text = datastore
    for target, operation in edits:
        text, used = instance_identifier(target, namespaces)
        edit = etree.SubElement(root, f"{{{ns}}}edit")
        etree.SubElement(edit, f"{{{ns}}}target", nsmap=used).text = text
        etree.SubElement(edit, f"{{{ns}}}operation").text = operation
    return root
