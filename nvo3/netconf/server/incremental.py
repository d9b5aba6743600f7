"""Deciding an edit without validating the whole datastore.

A merge without operation attributes only creates nodes and changes leaf values. Before the
merge, `plan_merge` finds what it will create and change (hashed look-ups, O(depth) per edit
node); that is also the undo record (`undo`). An edit with operations (`split_edit`) also
takes nodes out (`delete_node`: unlinked, kept for an exact undo until `release`). After the
edit, `Checker.check` adds the implicit nodes of the created subtrees and evaluates, with
libyang, only the constraints the change can affect (`constraints.ConstraintIndex` tells which):

- constraints carried by the nodes of created subtrees, at those instances: must, leafref,
  mandatory children, min-elements of their lists, unique and max-elements of created list
  entries;
- constraints carried by changed leaves (must, leafref, unique of their list entry);
- constraints whose expressions reach a created, changed or deleted schema node, at every
  instance of their carrier under the data node where the expression's path is anchored (at
  most `limit` instances; when a list on the way has more entries, libyang collects the
  carriers below it). A leafref path cannot be broken by creations (its predicates are
  equalities), only by changed values and deletions;
- for a deleted node: its own mandatory and min-elements, what the empty non-presence
  container put back in its place lacks, and the unique values of the entries it leaves.

The verdict is VALID only when a full `lyd_validate_all` of the same tree would accept it and
leave the same tree; every case it cannot decide that way (a constraint fails, a choice or a
when is involved, an unbounded expression, too many instances to check, ...) is FULL with its
reason, and the caller validates the whole tree as before (and reports that validation's error).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import libyang
from _libyang import ffi, lib

from nvo3.netconf.server import libyang_extra as lx
from nvo3.netconf.server.constraints import Constraint, ConstraintIndex, SchemaInfo
from nvo3.netconf.server.xpath_reach import ROOT

LYD_DEFAULT = 0x01
LYD_NEW = 0x04
_TERM = int(lib.LYS_LEAF) | int(lib.LYS_LEAFLIST)
_INNER = int(lib.LYS_CONTAINER) | int(lib.LYS_LIST)
_MULTI = int(lib.LYS_LIST) | int(lib.LYS_LEAFLIST)


@dataclass(frozen=True)
class Created:
    """A top-most node the merge creates (with its subtree)."""

    path: str
    schema: int


@dataclass(frozen=True)
class Changed:
    """An existing leaf the merge sets (a new value, or an explicit value over a default)."""

    path: str
    schema: int
    old_value: str
    old_flags: int


@dataclass
class Deleted:
    """A node an edit took out of the tree with its subtree, kept (unlinked) for an exact undo
    until `release`."""

    node: Any                       # the unlinked subtree
    parent: Any                     # its parent (deleted nodes are never top-level)
    #: an instance of the same list next to it, to put it back at its place (NULL: it was the
    #: only one); `after`: the anchor was before it
    anchor: Any
    after: bool
    op: str                         # delete | remove | replace
    path: str
    schema: int
    address: int
    #: the empty non-presence container put in its place (what validation would add), or NULL
    replacement: Any = ffi.NULL


@dataclass
class Changes:
    """What an edit does to the live tree; also its undo record."""

    created: list[Created] = field(default_factory=list)
    changed: list[Changed] = field(default_factory=list)
    deleted: list[Deleted] = field(default_factory=list)
    #: why the edit cannot be applied and checked incrementally (None: it can). When set, the
    #: record is incomplete: do not merge in place, take the full path (copy, merge, validate).
    unsupported: str | None = None


@dataclass(frozen=True)
class Verdict:
    """VALID (`valid`), or FULL: the caller must run a full validation (`reason` says why)."""

    valid: bool
    reason: str = ""
    evaluated: int = 0

    def __str__(self) -> str:
        return f"VALID ({self.evaluated} checks)" if self.valid else f"FULL: {self.reason}"


class _Full(Exception):
    """Leave the decision to a full validation."""


# -- low-level tree helpers (cdata) ----------------------------------------------------------
def _siblings(first: Any) -> Iterator[Any]:
    node = first
    while node != ffi.NULL:
        yield node
        node = node.next


def _child(node: Any) -> Any:
    if node == ffi.NULL or node.schema == ffi.NULL or not int(node.schema.nodetype) & _INNER:
        return ffi.NULL
    return lib.lyd_child(node)


def _value(node: Any) -> str:
    return ffi.string(lib.lyd_get_value(node)).decode()


def _path(node: Any) -> str:
    raw = lib.lyd_path(node, lib.LYD_PATH_STD, ffi.NULL, 0)
    try:
        return ffi.string(raw).decode()
    finally:
        lib.free(raw)


def _find(tree: Any, path: str) -> Any:
    match = ffi.new("struct lyd_node **")
    if lib.lyd_find_path(tree, path.encode(), 0, match) != lib.LY_SUCCESS:
        return ffi.NULL
    return match[0]


def _dfs(node: Any) -> Iterator[Any]:
    yield node
    for child in _siblings(_child(node)):
        yield from _dfs(child)


def _instances(siblings: Any, schema: Any, limit: int) -> list[Any]:
    """The instances of `schema` among `siblings` (adjacent in libyang), at most limit + 1."""
    out: list[Any] = []
    node = lx.find_first_instance(siblings, schema)
    while node != ffi.NULL and node.schema == schema and len(out) <= limit:
        out.append(node)
        node = node.next
    return out


# -- planning --------------------------------------------------------------------------------
def plan_merge(live: libyang.DNode | None, edit: libyang.DNode | None) -> Changes:
    """What merging `edit` (parsed with parse_only, no operation attributes) into `live` will
    create and change. Call it before the merge."""
    changes = Changes()
    if edit is None:
        return changes
    if live is None:
        changes.unsupported = "empty datastore"
        return changes
    live_first = live.first_sibling().cdata
    for node in _siblings(edit.first_sibling().cdata):
        _plan(live_first, node, changes)
    return changes


def _duplicated(node: Any) -> bool:
    """Whether an earlier sibling of an edit node is the same instance (parse_only keeps
    duplicates; validation refuses them)."""
    if int(node.schema.nodetype) & _MULTI:
        first = lx.find_sibling_first(node, node)
    else:
        first = lx.find_first_instance(node, node.schema)
    return bool(first != node)


def _plan(live_siblings: Any, node: Any, changes: Changes) -> None:
    if node.schema == ffi.NULL:
        changes.unsupported = "opaque node in the edit"
        return
    if _duplicated(node):
        changes.unsupported = f"duplicate {ffi.string(node.schema.name).decode()} in the edit"
        return
    if live_siblings == ffi.NULL:
        match = ffi.NULL
    elif int(node.schema.nodetype) & _MULTI:
        match = lx.find_sibling_first(live_siblings, node)     # by keys / by value
    else:                           # by schema (lyd_find_sibling_first compares leaf values)
        match = lx.find_first_instance(live_siblings, node.schema)
    if match == ffi.NULL:
        if any(_duplicated(sub) for sub in _dfs(node) if sub != node):
            changes.unsupported = "duplicate instances in the edit"
            return
        changes.created.append(Created(_path(node), lx.address(node.schema)))
        return
    if int(node.schema.nodetype) & _TERM:
        if int(node.schema.nodetype) & int(lib.LYS_LEAF) and (
                _value(node) != _value(match) or int(match.flags) & LYD_DEFAULT):
            changes.changed.append(Changed(_path(match), lx.address(node.schema),
                                           _value(match), int(match.flags)))
        return
    for child in _siblings(_child(node)):
        _plan(_child(match), child, changes)


# -- deleting --------------------------------------------------------------------------------
def not_deletable(node: Any) -> str | None:
    """Why `delete_node` cannot take this node out in place (None: it can)."""
    schema = node.schema
    if node.parent == ffi.NULL or schema == ffi.NULL:
        return "a top-level or opaque node"
    nodetype = int(schema.nodetype)
    if int(schema.flags) & int(lib.LYS_KEY):
        return "a list key"
    if nodetype & int(lib.LYS_LEAF) and \
            ffi.cast("struct lysc_node_leaf *", schema).dflt != ffi.NULL:
        return "a leaf with a default (validation puts the default back)"
    if nodetype & int(lib.LYS_LEAFLIST) and \
            ffi.cast("struct lysc_node_leaflist *", schema).dflts != ffi.NULL:
        return "a leaf-list with defaults"
    if not nodetype & (_TERM | _INNER):
        return "not a container, list or leaf"
    return None


def delete_node(node: Any, op: str, path: str) -> Deleted:
    """Take `node` (see `not_deletable`) out of its tree, as validation would leave the tree:
    a deleted non-presence container is there again, empty, as a default node."""
    parent = ffi.cast("struct lyd_node *", node.parent)
    schema = node.schema
    anchor, after = ffi.NULL, False
    if int(schema.nodetype) & _MULTI:
        if node.next != ffi.NULL and node.next.schema == schema:
            anchor = node.next
        elif lib.lyd_child(parent) != node and node.prev.schema == schema:
            anchor, after = node.prev, True
    lx.unlink_tree(node)
    deleted = Deleted(node, parent, anchor, after, op, path, lx.address(schema),
                      lx.address(node))
    if int(schema.nodetype) & int(lib.LYS_CONTAINER) and \
            not int(schema.flags) & int(lib.LYS_PRESENCE) and op != "replace":
        out = ffi.new("struct lyd_node **")
        if lib.lyd_new_inner(parent, schema.module, schema.name, 0, out) != lib.LY_SUCCESS:
            raise RuntimeError(f"cannot put an empty {path} back")
        deleted.replacement = out[0]
        # a new non-presence container is flagged default and new, which
        # lyd_new_implicit_tree takes for a node it added itself, and skips
        out[0].flags = int(out[0].flags) & ~LYD_NEW
        lx.new_implicit_tree(out[0])
        for inner in _dfs(out[0]):
            inner.flags = int(inner.flags) & ~LYD_NEW
        out[0].flags = int(out[0].flags) | LYD_DEFAULT
        _restore_default_parents(out[0])
    else:
        _restore_default_parents(parent, include_self=True)
    return deleted


def release(changes: Changes) -> None:
    """Free the subtrees an edit deleted (it is kept: no undo any more)."""
    for deleted in changes.deleted:
        lib.lyd_free_tree(deleted.node)
    changes.deleted.clear()


# -- undo ------------------------------------------------------------------------------------
def undo(tree: libyang.DNode, changes: Changes) -> None:
    """Take an edit back out of `tree`: free what it created, restore what it changed, put
    what it deleted back where it was."""
    root = tree.cdata
    for changed in changes.changed:
        node = _find(root, changed.path)
        if node != ffi.NULL:
            lx.change_term(node, changed.old_value)
            node.flags = changed.old_flags
            _restore_default_parents(node)
    for created in changes.created:
        node = _find(root, created.path)
        if node != ffi.NULL:
            parent = node.parent
            if root == node:
                root = node.next if node.next != ffi.NULL else node.prev
            lib.lyd_free_tree(node)
            if parent != ffi.NULL:
                _restore_default_parents(ffi.cast("struct lyd_node *", parent), include_self=True)
    for deleted in reversed(changes.deleted):
        if deleted.replacement != ffi.NULL:
            lib.lyd_free_tree(deleted.replacement)
        if deleted.anchor != ffi.NULL:
            lx.insert_next_to(deleted.anchor, deleted.node, deleted.after)
        elif lib.lyd_insert_child(deleted.parent, deleted.node) != lib.LY_SUCCESS:
            raise RuntimeError(f"cannot put {deleted.path} back")
        _clear_default_parents(deleted.node)
    changes.deleted.clear()


def _restore_default_parents(node: Any, include_self: bool = False) -> None:
    """A non-presence container whose children are all defaults is a default node again."""
    current = node if include_self else (ffi.cast("struct lyd_node *", node.parent)
                                         if node.parent != ffi.NULL else ffi.NULL)
    while current != ffi.NULL:
        schema = current.schema
        if not (int(schema.nodetype) & int(lib.LYS_CONTAINER)) or \
                int(schema.flags) & int(lib.LYS_PRESENCE):
            return
        if any(not int(c.flags) & LYD_DEFAULT for c in _siblings(_child(current))):
            return
        current.flags = int(current.flags) | LYD_DEFAULT
        current = ffi.cast("struct lyd_node *", current.parent) if current.parent != ffi.NULL \
            else ffi.NULL


def _clear_default_parents(node: Any) -> None:
    """An explicit leaf makes its non-presence container ancestors explicit (libyang's merge
    sets the leaf's flags only; inserting a node, as duplication does, also fixes the parents)."""
    parent = node.parent
    while parent != ffi.NULL and int(parent.flags) & LYD_DEFAULT:
        parent.flags = int(parent.flags) & ~LYD_DEFAULT
        parent = parent.parent


# -- checking --------------------------------------------------------------------------------
class UniqueValues:
    """The values of each unique constraint per list, kept between edits.

    Checking a unique constraint at one new entry needs the values of every other entry of the
    list; scanning them costs O(n) (12 ms at 10,000 entries with libyang's XPath). The values of
    a list are collected once (at its first check) and updated by each VALID edit. Anything
    else that changes the tree (a full validation, another kind of edit, `undo`) must call
    `forget()`.
    """

    def __init__(self) -> None:
        #: (constraint id, parent address) -> values -> entry addresses
        self._entries: dict[tuple[int, int], dict[tuple[str, ...], set[int]]] = {}
        #: (constraint id, parent address) -> entry address -> values
        self._values: dict[tuple[int, int], dict[int, tuple[str, ...] | None]] = {}

    def forget(self) -> None:
        """Drop everything (the tree changed in a way the cache did not follow)."""
        self._entries.clear()
        self._values.clear()

    def _build(self, key: tuple[int, int], constraint: Constraint, first: Any) -> None:
        values: dict[int, tuple[str, ...] | None] = {}
        if first.parent == ffi.NULL:
            for entry in _instances(first, first.schema, 1 << 62):
                values[lx.address(entry)] = unique_values(constraint, entry)
        else:
            values = _unique_values_under(constraint, first)
        entries: dict[tuple[str, ...], set[int]] = {}
        for addr, tup in values.items():
            if tup is not None:
                entries.setdefault(tup, set()).add(addr)
        self._entries[key] = entries
        self._values[key] = values

    def update(self, constraint: Constraint, entry: Any) -> None:
        """Record the current values of `entry` (new or changed)."""
        key = (id(constraint), lx.address(entry.parent) if entry.parent != ffi.NULL else 0)
        if key not in self._values:
            self._build(key, constraint, entry)
            return
        addr = lx.address(entry)
        old = self._values[key].get(addr)
        if old is not None:
            self._entries[key][old].discard(addr)
        tup = unique_values(constraint, entry)
        self._values[key][addr] = tup
        if tup is not None:
            self._entries[key].setdefault(tup, set()).add(addr)

    def discard(self, constraint: Constraint, parent: Any, address: int) -> None:
        """Forget a deleted entry (`address`) of the list under `parent`."""
        key = (id(constraint), lx.address(parent))
        values = self._values.get(key)
        if values is None:
            return
        old = values.pop(address, None)
        if old is not None:
            self._entries[key][old].discard(address)

    def duplicated(self, constraint: Constraint, entry: Any) -> bool:
        """Whether another entry of the list has the same values as `entry` (after update)."""
        key = (id(constraint), lx.address(entry.parent) if entry.parent != ffi.NULL else 0)
        tup = self._values[key].get(lx.address(entry))
        return tup is not None and len(self._entries[key].get(tup, ())) > 1


def unique_values(constraint: Constraint, entry: Any) -> tuple[str, ...] | None:
    """The values of a unique constraint's leaves in a list entry (None if one is missing)."""
    out = []
    for path in constraint.unique:
        node = entry
        for step in path:
            node = _child_of_schema(node, step)
            if node == ffi.NULL:
                return None
        out.append(_value(node))
    return tuple(out)


def _qualified(schema: Any) -> str:
    return f"{ffi.string(schema.module.name).decode()}:{ffi.string(schema.name).decode()}"


def _unique_values_under(constraint: Constraint, entry: Any) -> dict[int, tuple[str, ...] | None]:
    """entry address -> unique values, for every entry of `entry`'s list (one libyang XPath
    per unique leaf: the entries are walked in C)."""
    parent = ffi.cast("struct lyd_node *", entry.parent)
    found: dict[int, list[str]] = {}
    for position, path in enumerate(constraint.unique):
        xpath = "/".join(_qualified(_cdata_of(n)) for n in (lx.address(entry.schema), *path))
        out = ffi.new("struct ly_set **")
        if lib.lyd_find_xpath(parent, xpath.encode(), out) != lib.LY_SUCCESS:
            raise _Full(f"cannot collect the values of unique {constraint.expression}")
        try:
            for i in range(out[0].count):
                leaf = out[0].dnodes[i]
                owner = leaf
                for _ in path:
                    owner = owner.parent
                values = found.setdefault(lx.address(owner), [])
                if len(values) == position:
                    values.append(_value(leaf))
        finally:
            lib.ly_set_free(out[0], ffi.NULL)
    width = len(constraint.unique)
    return {addr: tuple(v) if len(v) == width else None for addr, v in found.items()}


def _child_of_schema(node: Any, schema_id: int) -> Any:
    """The child of `node` that is an instance of a single-instance schema node, or NULL
    (a scan of the few children of a list entry is cheaper than a hashed call from Python)."""
    for child in _siblings(_child(node)):
        if lx.address(child.schema) == schema_id:
            return child
    return ffi.NULL


class Checker:
    """Incremental validation of plain merges against a `ConstraintIndex`."""

    def __init__(self, index: ConstraintIndex, limit: int = 64):
        self.index = index
        self.limit = limit
        self.uniques = UniqueValues()

    def forget(self) -> None:
        """The live tree changed other than by a VALID checked merge."""
        self.uniques.forget()

    def check(self, tree: libyang.DNode, changes: Changes) -> Verdict:
        """Decide a merged edit (`tree` is the live tree after the merge)."""
        try:
            run = _Run(self, tree.first_sibling().cdata, changes)
            evaluated = run.decide()
        except _Full as exc:
            self.uniques.forget()
            return Verdict(False, str(exc))
        return Verdict(True, evaluated=evaluated)


class _Run:
    """One check: the instances to evaluate, then their evaluation."""

    def __init__(self, checker: Checker, root: Any, changes: Changes):
        self.checker = checker
        self.index = checker.index
        self.root = root
        self.changes = changes
        self.todo: dict[tuple[int, int], tuple[Constraint, Any]] = {}
        self.unique_entries: dict[tuple[int, int], tuple[Constraint, Any]] = {}
        self.counted: set[tuple[int, int]] = set()
        self.walked: set[tuple[int, int]] = set()
        self.touched: list[Any] = []
        #: (unique constraint, parent, entry address) of deleted entries of a unique list
        self.unique_gone: list[tuple[Constraint, Any, int]] = []
        self.forget_uniques = False

    def info(self, node: Any) -> SchemaInfo:
        found = self.index.info(node.schema) if node.schema != ffi.NULL else None
        if found is None or not found.config:
            raise _Full("a node outside the indexed configuration")
        return found

    def add(self, constraint: Constraint, node: Any) -> None:
        self.todo[(id(constraint), lx.address(node))] = (constraint, node)
        if len(self.todo) > 4 * self.checker.limit:
            raise _Full("too many constraint instances to evaluate")

    def decide(self) -> int:
        if self.changes.unsupported:
            raise _Full(self.changes.unsupported)
        if self.index.everywhere and (self.changes.created or self.changes.changed
                                      or self.changes.deleted):
            raise _Full(f"unbounded constraint on {self.index.everywhere[0].carrier}")
        created_tops = []
        for created in self.changes.created:
            node = _find(self.root, created.path)
            if node == ffi.NULL:
                raise _Full(f"created node {created.path} not found")
            info = self.info(node)
            if info.volatile_subtree:
                raise _Full(f"{info.name}: a choice or a when in the created subtree")
            if int(node.schema.nodetype) & _INNER:
                # lyd_new_implicit_tree skips inner nodes flagged default and new (it takes
                # them for nodes it added itself), which an empty non-presence container of
                # the edit is: they are not new any more for it
                for inner in _dfs(node):
                    if int(inner.flags) & (LYD_DEFAULT | LYD_NEW) == LYD_DEFAULT | LYD_NEW:
                        inner.flags = int(inner.flags) & ~LYD_NEW
                lx.new_implicit_tree(node)
            created_tops.append((node, info))
        for node, info in created_tops:
            self.created_subtree(node, info)
        for changed in self.changes.changed:
            node = _find(self.root, changed.path)
            if node == ffi.NULL:
                raise _Full(f"changed node {changed.path} not found")
            _clear_default_parents(node)
            info = self.info(node)
            if info.volatile:
                raise _Full(f"{info.name}: in a choice or under a when")
            self.touched.append(node)
            self.changed_leaf(node, info)
            self.reached(node, info, {info.id}, created=False)
        for node, info in created_tops:
            self.reached(node, info, {info.id, *self.index.descendants(info.id)}, created=True)
        for deleted in self.changes.deleted:
            self.deleted(deleted)
        for constraint, node in self.todo.values():
            self.evaluate(constraint, node)
        if self.forget_uniques:
            self.checker.uniques.forget()
        for constraint, parent, address in self.unique_gone:
            self.checker.uniques.discard(constraint, parent, address)
        for constraint, entry in self.unique_entries.values():
            self.checker.uniques.update(constraint, entry)
        for constraint, entry in self.unique_entries.values():
            if self.checker.uniques.duplicated(constraint, entry):
                raise _Full(f"unique {constraint.expression} violated")
        for node in self.touched:
            node.flags = int(node.flags) & ~LYD_NEW
        return len(self.todo) + len(self.unique_entries)

    # -- what to evaluate --------------------------------------------------------------------
    def deleted(self, deleted: Deleted) -> None:
        """What taking a subtree out can break: the mandatory node or the min-elements it
        was, what the empty container put in its place lacks, the constraints whose
        expressions reach into it (leafrefs to it, musts counting or reading it)."""
        info = self.index.nodes.get(deleted.schema)
        if info is None or not info.config:
            raise _Full("a node outside the indexed configuration")
        if info.volatile_subtree:
            raise _Full(f"{info.name}: a choice or a when in the deleted subtree")
        parent = deleted.parent
        subtree = {info.id, *self.index.descendants(info.id)}
        for constraint in self.index.carried.get(info.id, ()):
            if constraint.kind in ("mandatory", "unsupported"):
                raise _Full(f"{constraint.kind} {info.name} deleted")
            if constraint.kind == "min-elements":
                found = _instances(_child(parent), deleted.node.schema, constraint.bound)
                if len(found) < constraint.bound:
                    raise _Full(f"min-elements of {info.name}")
            elif constraint.kind == "unique":
                self.unique_gone.append((constraint, parent, deleted.address))
        for below in self.index.descendants(info.id):
            if any(c.kind == "unique" for c in self.index.carried.get(below, ())):
                self.forget_uniques = True          # its entries' addresses are freed
        for leaf in subtree:
            for constraint in self.index.unique_of_leaf.get(leaf, ()):
                if constraint.carrier not in subtree:
                    self.unique_entry_above(parent, constraint)
        if deleted.replacement != ffi.NULL:
            self.touched.append(deleted.replacement)
            self.created_subtree(deleted.replacement, info)
        self.reached(parent, self.info(parent), subtree, created=False)

    def unique_entry_above(self, node: Any, constraint: Constraint) -> None:
        """The entry of `constraint`'s list at or above `node`, to be checked (a leaf of its
        unique changed)."""
        entry = node
        while entry != ffi.NULL and lx.address(entry.schema) != constraint.carrier:
            entry = ffi.cast("struct lyd_node *", entry.parent) if entry.parent != ffi.NULL \
                else ffi.NULL
        if entry != ffi.NULL:
            self.unique_entries[(id(constraint), lx.address(entry))] = (constraint, entry)

    def created_subtree(self, top: Any, top_info: SchemaInfo) -> None:
        for node in _dfs(top):
            self.touched.append(node)
            info = self.info(node)
            for constraint in self.index.carried.get(info.id, ()):
                if constraint.kind in ("must", "leafref"):
                    self.add(constraint, node)
                elif constraint.kind == "unique":
                    self.unique_entries[(id(constraint), lx.address(node))] = (constraint, node)
                elif constraint.kind == "max-elements":
                    self.count(constraint, node)
                elif constraint.kind in ("when", "unsupported"):
                    raise _Full(f"{constraint.kind} on {info.name}")
            self.unique_of(node, info)
            if int(node.schema.nodetype) & _INNER:
                for child_id in info.children:
                    for constraint in self.index.carried.get(child_id, ()):
                        if constraint.kind == "mandatory":
                            if lx.find_first_instance(_child(node), _cdata_of(child_id)) \
                                    == ffi.NULL:
                                raise _Full(f"mandatory {self.index.nodes[child_id].name} missing")
                        elif constraint.kind == "min-elements":
                            found = _instances(_child(node), _cdata_of(child_id), constraint.bound)
                            if len(found) < constraint.bound:
                                raise _Full(f"min-elements of {self.index.nodes[child_id].name}")

    def count(self, constraint: Constraint, node: Any) -> None:
        if constraint.bound > 16 * self.checker.limit:
            raise _Full(f"max-elements {constraint.bound}: too many to count")
        key = (id(constraint), lx.address(node.parent) if node.parent != ffi.NULL else 0)
        if key in self.counted:
            return
        self.counted.add(key)
        first = self.root if node.parent == ffi.NULL else \
            _child(ffi.cast("struct lyd_node *", node.parent))
        if len(_instances(first, node.schema, constraint.bound)) > constraint.bound:
            raise _Full(f"max-elements of {self.index.nodes[constraint.carrier].name}")

    def changed_leaf(self, node: Any, info: SchemaInfo) -> None:
        for constraint in self.index.carried.get(info.id, ()):
            if constraint.kind in ("must", "leafref"):
                self.add(constraint, node)
            elif constraint.kind == "unsupported":
                raise _Full(f"{constraint.kind} on {info.name}")
        self.unique_of(node, info)

    def unique_of(self, node: Any, info: SchemaInfo) -> None:
        """The unique constraints a leaf takes part in, at its list entry (the leaf is new, or
        has a new value: the entry may now collide with another)."""
        for constraint in self.index.unique_of_leaf.get(info.id, ()):
            self.unique_entry_above(node, constraint)

    def reached(self, node: Any, info: SchemaInfo, schema_ids: set[int], created: bool) -> None:
        """Constraints whose expressions reach the changed schema nodes `schema_ids`."""
        for target in schema_ids:
            for constraint, anchor in self.index.reached_by.get(target, ()):
                if constraint.kind == "leafref" and created:
                    continue                    # equality predicates: creations cannot break it
                if constraint.kind == "unique":
                    continue                    # handled per entry
                if constraint.kind == "when":
                    raise _Full(f"a when reaches {self.index.nodes[target].name}")
                if constraint.unbounded:
                    raise _Full(f"unbounded {constraint.kind} reaches "
                                f"{self.index.nodes[target].name}: {constraint.unbounded}")
                anchor_depth = 0 if anchor == ROOT else self.index.nodes[anchor].depth
                if anchor_depth > info.depth:
                    continue                    # inside the created subtree: already evaluated
                self.instances_under(constraint, node, info.depth - anchor_depth, anchor)

    def instances_under(self, constraint: Constraint, node: Any, up: int, anchor: int) -> None:
        """Add `constraint` at every carrier instance under the `up`-th ancestor of `node`."""
        for _ in range(up):
            node = ffi.cast("struct lyd_node *", node.parent) if node.parent != ffi.NULL \
                else ffi.NULL
        steps = self.index.path_down(anchor, constraint.carrier)
        if anchor == ROOT:
            node = ffi.NULL
        done = (id(constraint), lx.address(node) if node != ffi.NULL else 0)
        if done in self.walked:
            return
        self.walked.add(done)
        for instance in self.walk(node, steps):
            self.add(constraint, instance)

    def walk(self, anchor_node: Any, steps: list[int]) -> list[Any]:
        """The instances at the end of `steps` below `anchor_node` (NULL: the root), at most
        `limit` of them."""
        current = [anchor_node]
        for step in steps:
            nxt: list[Any] = []
            for parent in current:
                first = self.root if parent == ffi.NULL else _child(parent)
                nxt.extend(_instances(first, _cdata_of(step), self.checker.limit))
                if len(nxt) > self.checker.limit:
                    if step == steps[-1]:
                        raise _Full(f"more than {self.checker.limit} instances of "
                                    f"{self.index.nodes[step].name} to check")
                    # many entries on the way, maybe few instances below them (an optional
                    # leaf): let libyang collect those (a scan in C, ~1.5 ms per 10,000)
                    return self.collect(anchor_node, steps)
            current = nxt
        return current

    def collect(self, anchor_node: Any, steps: list[int]) -> list[Any]:
        """The instances at the end of `steps` below `anchor_node` (NULL: the root), found by
        libyang, if there are at most `limit` of them."""
        relative = "/".join(_qualified(_cdata_of(step)) for step in steps)
        context = self.root if anchor_node == ffi.NULL else anchor_node
        xpath = "/" + relative if anchor_node == ffi.NULL else relative
        out = ffi.new("struct ly_set **")
        if lib.lyd_find_xpath(context, xpath.encode(), out) != lib.LY_SUCCESS:
            raise _Full(f"cannot collect {xpath}")
        try:
            if out[0].count > self.checker.limit:
                raise _Full(f"more than {self.checker.limit} instances of {xpath} to check")
            return [out[0].dnodes[i] for i in range(out[0].count)]
        finally:
            lib.ly_set_free(out[0], ffi.NULL)

    # -- evaluation --------------------------------------------------------------------------
    def evaluate(self, constraint: Constraint, node: Any) -> None:
        expression = constraint.expression if constraint.kind == "must" else \
            f"boolean(({constraint.expression})[. = current()])"   # leafref: a same-value target
        try:
            ok = lx.eval_xpath(node, node.schema.module, expression.encode(), constraint.prefixes)
        except RuntimeError as exc:             # e.g. LY_EINCOMPLETE: a when not evaluated yet
            raise _Full(str(exc)) from None
        if not ok:
            raise _Full(f"{constraint.kind} {constraint.expression!r} fails at {_path(node)}")


def _cdata_of(schema_id: int) -> Any:
    return ffi.cast("struct lysc_node *", schema_id)
