"""The constraint index: every validation constraint of the served modules, found once.

libyang validates a whole data tree; an edit can only break the constraints it affects. This
index, built from the compiled schema at start, lists every constraint (must, when, leafref,
unique, min-elements, max-elements, mandatory) with the schema node that carries it, its
expression and the schema nodes its expression reaches (`xpath_reach`), so that the incremental
validator (`incremental`) can find the constraints an edit touches without looking at the data.

It also marks the schema nodes where libyang's validation itself changes the tree or depends on
state it keeps (inside a choice: case auto-deletion; under a `when`: auto-deletion and the
when-true flags), which the incremental validator leaves to a full validation.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

import libyang
from _libyang import ffi, lib

from nvo3.netconf.server import libyang_extra as lx
from nvo3.netconf.server.xpath_reach import ROOT, Position, SchemaView, Unbounded, reaches

_KIND_OF = {int(lib.LYS_CONTAINER): "container", int(lib.LYS_LIST): "list",
            int(lib.LYS_LEAF): "leaf", int(lib.LYS_LEAFLIST): "leaf-list",
            int(lib.LYS_ANYDATA): "anydata", int(lib.LYS_ANYXML): "anydata"}
_STRUCT_OF = {"container": "struct lysc_node_container *", "list": "struct lysc_node_list *",
              "leaf": "struct lysc_node_leaf *", "leaf-list": "struct lysc_node_leaflist *"}
_CHOICE_OR_CASE = int(lib.LYS_CHOICE) | int(lib.LYS_CASE)
_UINT32_MAX = 0xFFFFFFFF


@dataclass
class SchemaInfo:
    """One data node of the schema, as the incremental validator needs it."""

    id: int                                  # address of its lysc_node
    cdata: Any
    name: str
    module: str
    kind: str                                # container | list | leaf | leaf-list | anydata
    parent: int                              # ROOT for top-level nodes
    depth: int
    config: bool
    in_choice: bool = False                  # a choice or case between it and its parent
    has_when: bool = False                   # a when on it (or on a choice/case above it)
    under_when: bool = False                 # has_when here or on an ancestor
    has_default: bool = False                # a leaf or leaf-list with a default value
    children: list[int] = field(default_factory=list)
    #: a node of its subtree (itself included) is in a choice or carries a when
    volatile_subtree: bool = False

    @property
    def volatile(self) -> bool:
        """Validation may auto-delete, switch or replace this node (choice/case, when, the
        default instances of a leaf-list)."""
        return self.in_choice or self.under_when or (self.kind == "leaf-list" and
                                                     self.has_default)


@dataclass
class Constraint:
    """One constraint and what can affect it."""

    kind: str                                # must | when | leafref | unique | min-elements
    #                                          | max-elements | mandatory | unsupported
    carrier: int                             # the schema node that carries it
    expression: str = ""
    #: (schema node, anchor) pairs its expression reaches (see `xpath_reach`)
    reaches: frozenset[Position] = frozenset()
    #: why its reach is unknown (then any edit it may concern goes to full validation)
    unbounded: str | None = None
    cond: Any = None                         # lyxp_expr * (must, leafref path)
    prefixes: Any = None                     # its compiled prefixes
    cur_mod: Any = None                      # lys_module * of the carrier
    unique: tuple[tuple[int, ...], ...] = ()  # unique: schema paths (ids) below the list
    bound: int = 0                           # min-elements / max-elements


class ConstraintIndex:
    """Every constraint of the implemented modules of a libyang context."""

    def __init__(self, context: libyang.Context):
        self.nodes: dict[int, SchemaInfo] = {}
        self._children: dict[tuple[int, str, str], int] = {}
        self._descendants: dict[int, list[int]] = {}
        self.constraints: list[Constraint] = []
        #: carrier id -> its constraints
        self.carried: dict[int, list[Constraint]] = {}
        #: reached schema node id -> (constraint, anchor) reaching it
        self.reached_by: dict[int, list[tuple[Constraint, int]]] = {}
        #: unique leaf id -> the unique constraints using it
        self.unique_of_leaf: dict[int, list[Constraint]] = {}
        #: unbounded constraints of unknown reach: every edit may concern them
        self.everywhere: list[Constraint] = []
        for module in context:
            if not module.implemented():
                continue
            for snode in module.children():
                self._add_node(snode, ROOT, 1)
        self.view = SchemaView(child=self._child, parent=lambda n: self.nodes[n].parent,
                               depth=lambda n: 0 if n == ROOT else self.nodes[n].depth,
                               is_term=lambda n: n != ROOT and self.nodes[n].kind in
                               ("leaf", "leaf-list"),
                               descendants=self.descendants)
        for info in list(self.nodes.values()):
            if info.config:
                self._collect(info)
        for info in sorted(self.nodes.values(), key=lambda i: -i.depth):
            info.volatile_subtree = info.volatile or any(
                self.nodes[c].volatile_subtree for c in info.children)
        for constraint in self.constraints:
            self.carried.setdefault(constraint.carrier, []).append(constraint)
            for target, anchor in constraint.reaches:
                if target != ROOT:
                    self.reached_by.setdefault(target, []).append((constraint, anchor))
            for path in constraint.unique:
                for leaf in path:
                    self.unique_of_leaf.setdefault(leaf, []).append(constraint)

    # -- schema walk -------------------------------------------------------------------------
    def _add_node(self, snode: libyang.SNode, parent: int, depth: int) -> None:
        if isinstance(snode, (libyang.SRpc, libyang.schema.SNotif)):
            return
        kind = _KIND_OF.get(int(snode.cdata.nodetype))
        if kind is None:                                  # actions, notifications
            return
        node_id = lx.address(snode.cdata)
        info = SchemaInfo(id=node_id, cdata=snode.cdata, name=snode.name(),
                          module=snode.module().name(), kind=kind, parent=parent, depth=depth,
                          config=not snode.config_false())
        above = snode.cdata.parent
        while above != ffi.NULL and int(above.nodetype) & _CHOICE_OR_CASE:
            info.in_choice = True
            if _whens(above):
                info.has_when = True
            above = above.parent
        if _whens(snode.cdata):
            info.has_when = True
        if kind == "leaf":
            info.has_default = ffi.cast("struct lysc_node_leaf *", snode.cdata).dflt != ffi.NULL
        elif kind == "leaf-list":
            info.has_default = bool(_array(
                ffi.cast("struct lysc_node_leaflist *", snode.cdata).dflts))
        info.under_when = info.has_when or (parent != ROOT and self.nodes[parent].under_when)
        self.nodes[node_id] = info
        self._children[(parent, info.module, info.name)] = node_id
        if parent != ROOT:
            self.nodes[parent].children.append(node_id)
        if isinstance(snode, (libyang.SContainer, libyang.SList)):
            for child in snode.children():
                self._add_node(child, node_id, depth + 1)

    def _child(self, parent: int, module: str, name: str) -> int | None:
        return self._children.get((parent, module, name))

    def descendants(self, node: int) -> list[int]:
        """Every schema data node below `node`."""
        if node not in self._descendants:
            out: list[int] = []
            for child in self.nodes[node].children:
                out.append(child)
                out.extend(self.descendants(child))
            self._descendants[node] = out
        return self._descendants[node]

    def path_down(self, ancestor: int, node: int) -> list[int]:
        """The schema nodes from below `ancestor` down to `node` (inclusive)."""
        chain = []
        while node != ancestor:
            chain.append(node)
            node = self.nodes[node].parent if node != ROOT else ROOT
            if node == ROOT and ancestor != ROOT:
                raise ValueError("not an ancestor")
        return chain[::-1]

    # -- constraints -------------------------------------------------------------------------
    def _collect(self, info: SchemaInfo) -> None:
        cdata = info.cdata
        cur_mod = cdata.module
        typed: Any = ffi.cast(_STRUCT_OF[info.kind], cdata) if info.kind in _STRUCT_OF else None
        if typed is not None:
            for must in _array(typed.musts):
                self._expression("must", info, must.cond, must.prefixes, cur_mod, info.id)
        for when in _whens(cdata):
            context = lx.address(when.context) if when.context != ffi.NULL else info.parent
            self._expression("when", info, when.cond, when.prefixes, cur_mod, context)
        if info.kind in ("leaf", "leaf-list"):
            self._leafref(info, typed.type, cur_mod)
        if info.kind in ("leaf", "anydata") and int(cdata.flags) & int(lib.LYS_MAND_TRUE):
            self._add(Constraint("mandatory", info.id))
        if info.kind in ("list", "leaf-list"):
            if typed.min > 0:
                self._add(Constraint("min-elements", info.id, bound=int(typed.min)))
            if typed.max != _UINT32_MAX and int(cdata.flags) & int(lib.LYS_SET_MAX):
                self._add(Constraint("max-elements", info.id, bound=int(typed.max)))
        if info.kind == "list":
            for unique in _array(typed.uniques):
                paths = tuple(tuple(self.path_down(info.id, lx.address(leaf)))
                              for leaf in _array(unique))
                text = " ".join("/".join(self.nodes[n].name for n in p) for p in paths)
                self._add(Constraint("unique", info.id, expression=text, unique=paths))

    def _leafref(self, info: SchemaInfo, ltype: Any, cur_mod: Any) -> None:
        base = int(ltype.basetype)
        if base == int(lib.LY_TYPE_LEAFREF):
            lref = ffi.cast("struct lysc_type_leafref *", ltype)
            if lref.require_instance:
                self._expression("leafref", info, lref.path, lref.prefixes, cur_mod, info.id)
        elif base == int(lib.LY_TYPE_INST):
            self._unsupported(info, "instance-identifier", "instance-identifier type")
        elif base == int(lib.LY_TYPE_UNION):
            union = ffi.cast("struct lysc_type_union *", ltype)
            if any(int(t.basetype) in (int(lib.LY_TYPE_LEAFREF), int(lib.LY_TYPE_INST),
                                       int(lib.LY_TYPE_UNION)) for t in _array(union.types)):
                self._unsupported(info, "union", "union with a leafref or instance-identifier")

    def _unsupported(self, info: SchemaInfo, what: str, why: str) -> None:
        constraint = Constraint("unsupported", info.id, expression=what, unbounded=why)
        self.everywhere.append(constraint)
        self._add(constraint)

    def _expression(self, kind: str, info: SchemaInfo, cond: Any, prefixes: Any, cur_mod: Any,
                    context: int) -> None:
        text = ffi.string(lib.lyxp_get_expr(cond)).decode()
        constraint = Constraint(kind, info.id, expression=text, cond=cond, prefixes=prefixes,
                                cur_mod=cur_mod)
        module = ffi.string(cur_mod.name).decode()
        try:
            if context == ROOT:
                raise Unbounded("context is the root")
            found = reaches(text, self.view, lx.prefix_modules(prefixes), module, context)
            if kind == "leafref":
                found |= {(info.id, info.id)}
            constraint.reaches = found
            self._cross_check(constraint, context)
        except Unbounded as exc:
            constraint.unbounded = str(exc)
            constraint.reaches = self._atoms_reach(constraint, context)
        if not constraint.unbounded and any(
                n != ROOT and self.nodes[n].under_when for n, _ in constraint.reaches):
            constraint.unbounded = "reaches a node under a when"
        self._add(constraint)

    def _cross_check(self, constraint: Constraint, context: int) -> None:
        """libyang's own atoms of the expression must all be reached: else it is unbounded."""
        atoms = lx.expr_atoms(self.nodes[context].cdata, constraint.cur_mod, constraint.cond,
                              constraint.prefixes)
        if atoms is None:
            raise Unbounded("libyang cannot list the atoms")
        reached = {n for n, _ in constraint.reaches} | {context}
        for atom in atoms:
            if atom not in reached and atom in self.nodes:
                raise Unbounded(f"libyang reaches {self.nodes[atom].name} the analysis did not")
            if atom not in self.nodes:
                raise Unbounded("libyang reaches a node outside the data nodes")

    def _atoms_reach(self, constraint: Constraint, context: int) -> frozenset[Position]:
        """For an unbounded expression: libyang's atoms and their subtrees, anchored at the
        root (only used to tell whether an edit may concern it), or nothing known."""
        atoms = None if context == ROOT else lx.expr_atoms(
            self.nodes[context].cdata, constraint.cur_mod, constraint.cond, constraint.prefixes)
        if atoms is None or any(a not in self.nodes for a in atoms):
            self.everywhere.append(constraint)
            return frozenset()
        found = set()
        for atom in atoms:
            found.add((atom, ROOT))
            found.update((sub, ROOT) for sub in self.descendants(atom))
        return frozenset(found)

    def _add(self, constraint: Constraint) -> None:
        self.constraints.append(constraint)

    # -- queries -----------------------------------------------------------------------------
    def info(self, snode: Any) -> SchemaInfo | None:
        """The SchemaInfo of a lysc_node pointer (None for nodes not indexed, e.g. state)."""
        return self.nodes.get(lx.address(snode))

    def summary(self) -> Iterator[str]:
        """One line per constraint (for logs and reports)."""
        for c in self.constraints:
            where = self.nodes[c.carrier]
            reach = ",".join(sorted(f"{self.nodes[n].name}@{self._name(a)}"
                                    for n, a in c.reaches if n != ROOT))
            yield (f"{c.kind:12} {where.module}:{where.name:20} {c.expression!r} "
                   f"{'UNBOUNDED: ' + c.unbounded if c.unbounded else reach}")

    def _name(self, node: int) -> str:
        return "/" if node == ROOT else self.nodes[node].name


def _array(cdata: Any) -> Iterable[Any]:
    """The items of a libyang sized array."""
    if cdata == ffi.NULL:
        return []
    return list(libyang.util.ly_array_iter(cdata))


def _whens(snode: Any) -> list[Any]:
    """The when conditions of a schema node (lysc_when pointers)."""
    whens = lib.lysc_node_when(snode)
    return list(_array(whens))
