"""Which schema nodes a YANG XPath expression reaches, and from where.

A must, when or leafref expression is evaluated at a data node (its context). Whether an edit
can change its result depends on the data nodes the evaluation looks at. This module parses the
expression (XPath 1.0, as YANG uses it) and interprets it over the schema: every location step
yields the schema nodes it can select. Each reached node is recorded with its *anchor*: the
shallowest schema node the path went through on its way (the root for an absolute path). The
evaluation at a context instance only looks inside the data subtree of that instance's ancestor
at the anchor, so a change elsewhere cannot affect it.

A node whose *value* is used (compared, converted to a string or a number) makes all its schema
descendants reached too (the string value of an element is its text content). Anything this
module cannot bound -- `//`, `*`, `node()`, axes other than child, parent and self, attributes,
variables, `deref()`, `id()`, unknown functions or prefixes -- raises `Unbounded`.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass

#: The root of the data tree (parent of the top-level nodes), as a schema position.
ROOT = 0

_TOKEN = re.compile(r"""
    \s*(?:
      (?P<literal>"[^"]*"|'[^']*')
    | (?P<number>\d+(?:\.\d*)?|\.\d+)
    | (?P<op>\.\.|::|//|!=|<=|>=|[()\[\]@,/|+\-=<>*.$])
    | (?P<name>[A-Za-z_][\w.\-]*(?::(?:[A-Za-z_][\w.\-]*|\*))?)
    )""", re.VERBOSE)

_NO_VALUE_FUNCTIONS = {"count", "boolean", "not", "local-name", "name", "namespace-uri"}
_SCALAR_FUNCTIONS = {"true", "false", "last", "position"}
_VALUE_FUNCTIONS = {"string", "number", "string-length", "normalize-space", "concat", "contains",
                    "starts-with", "substring", "substring-before", "substring-after",
                    "translate", "sum", "floor", "ceiling", "round", "re-match", "enum-value",
                    "bit-is-set", "derived-from", "derived-from-or-self"}
_CONTEXT_VALUE_FUNCTIONS = {"string", "number", "string-length", "normalize-space"}
_NODE_TYPES = {"node", "text", "comment", "processing-instruction"}


class Unbounded(Exception):
    """The expression's reach cannot be bounded by this analysis."""


@dataclass(frozen=True)
class SchemaView:
    """What the analysis needs of a schema (nodes are integer ids; `ROOT` is the root)."""

    #: (parent id or ROOT, module name, node name) -> child id
    child: Callable[[int, str, str], int | None]
    #: id -> parent id (ROOT for top-level nodes)
    parent: Callable[[int], int]
    #: id -> depth (ROOT is 0, top-level nodes 1)
    depth: Callable[[int], int]
    #: id -> whether the node is a leaf or leaf-list (its value is its own)
    is_term: Callable[[int], bool]
    #: id -> every schema descendant (data nodes)
    descendants: Callable[[int], Iterable[int]]


Position = tuple[int, int]           # (schema node, anchor)


@dataclass
class _Value:
    nodes: frozenset[Position] | None       # None: not a node-set


class _Analysis:
    def __init__(self, text: str, view: SchemaView, prefixes: dict[str, str], default_module: str,
                 context: int):
        self.tokens = _tokens(text)
        self.pos = 0
        self.view = view
        self.prefixes = prefixes
        self.default_module = default_module
        self.current = frozenset({(context, context)})
        self.reaches: set[Position] = set()

    # -- token helpers -----------------------------------------------------------------------
    def peek(self, offset: int = 0) -> tuple[str, str] | None:
        i = self.pos + offset
        return self.tokens[i] if i < len(self.tokens) else None

    def take(self) -> tuple[str, str]:
        tok = self.peek()
        if tok is None:
            raise Unbounded("unexpected end of expression")
        self.pos += 1
        return tok

    def accept(self, *values: str) -> str | None:
        tok = self.peek()
        if tok is not None and tok[0] in ("op", "opname") and tok[1] in values:
            self.pos += 1
            return tok[1]
        return None

    def expect(self, value: str) -> None:
        if self.accept(value) is None:
            raise Unbounded(f"expected {value!r} at token {self.pos}")

    # -- value use ---------------------------------------------------------------------------
    def use(self, value: _Value) -> None:
        for node, anchor in value.nodes or ():
            if node == ROOT:
                raise Unbounded("the value of the root node")
            if not self.view.is_term(node):
                for sub in self.view.descendants(node):
                    self.reaches.add((sub, anchor))

    # -- grammar -----------------------------------------------------------------------------
    def expr(self, ctx: frozenset[Position]) -> _Value:
        return self.or_expr(ctx)

    def or_expr(self, ctx: frozenset[Position]) -> _Value:
        left = self.and_expr(ctx)
        while self.accept("or"):
            self.and_expr(ctx)
            left = _Value(None)
        return left

    def and_expr(self, ctx: frozenset[Position]) -> _Value:
        left = self.equality(ctx)
        while self.accept("and"):
            self.equality(ctx)
            left = _Value(None)
        return left

    def _binary(self, ctx: frozenset[Position], operators: tuple[str, ...],
                operand: Callable[[frozenset[Position]], _Value]) -> _Value:
        left = operand(ctx)
        while self.accept(*operators):
            right = operand(ctx)
            self.use(left)
            self.use(right)
            left = _Value(None)
        return left

    def equality(self, ctx: frozenset[Position]) -> _Value:
        return self._binary(ctx, ("=", "!="), self.relational)

    def relational(self, ctx: frozenset[Position]) -> _Value:
        return self._binary(ctx, ("<", "<=", ">", ">="), self.additive)

    def additive(self, ctx: frozenset[Position]) -> _Value:
        return self._binary(ctx, ("+", "-"), self.multiplicative)

    def multiplicative(self, ctx: frozenset[Position]) -> _Value:
        return self._binary(ctx, ("*mul", "div", "mod"), self.unary)

    def unary(self, ctx: frozenset[Position]) -> _Value:
        if self.accept("-"):
            value = self.unary(ctx)
            self.use(value)
            return _Value(None)
        return self.union(ctx)

    def union(self, ctx: frozenset[Position]) -> _Value:
        left = self.path_expr(ctx)
        while self.accept("|"):
            right = self.path_expr(ctx)
            left = _Value((left.nodes or frozenset()) | (right.nodes or frozenset()))
        return left

    def path_expr(self, ctx: frozenset[Position]) -> _Value:
        tok = self.peek()
        if tok is None:
            raise Unbounded("unexpected end of expression")
        kind, text = tok
        if kind in ("literal", "number"):
            self.take()
            return self.after_filter(ctx, _Value(None))
        if kind == "op" and text == "(":
            self.take()
            value = self.expr(ctx)
            self.expect(")")
            return self.after_filter(ctx, value)
        if kind == "op" and text == "$":
            raise Unbounded("XPath variable")
        if kind == "function":
            return self.after_filter(ctx, self.function(ctx))
        if kind == "op" and text == "//":
            raise Unbounded("'//'")
        if kind == "op" and text == "/":
            self.take()
            root = frozenset({(ROOT, ROOT)})
            self.reaches.update(root)
            if self.starts_step():
                return self.relative_path(root)
            return _Value(root)
        return self.relative_path(ctx)

    def after_filter(self, ctx: frozenset[Position], value: _Value) -> _Value:
        while self.peek() == ("op", "["):
            if value.nodes is None:
                raise Unbounded("a predicate on a non-node-set")
            value = _Value(self.predicate(value.nodes))
        if self.peek() in (("op", "/"), ("op", "//")):
            if value.nodes is None:
                raise Unbounded("a path from a non-node-set")
            if self.take()[1] == "//":
                raise Unbounded("'//'")
            return self.relative_path(value.nodes)
        return value

    def starts_step(self) -> bool:
        tok = self.peek()
        return tok is not None and (tok[0] in ("name", "axis", "nodetype")
                                    or tok in (("op", "."), ("op", ".."), ("op", "@"),
                                               ("op", "*")))

    def relative_path(self, ctx: frozenset[Position]) -> _Value:
        nodes = self.step(ctx)
        while True:
            sep = self.accept("/", "//")
            if sep is None:
                return _Value(nodes)
            if sep == "//":
                raise Unbounded("'//'")
            nodes = self.step(nodes)

    def step(self, ctx: frozenset[Position]) -> frozenset[Position]:
        kind, text = self.take()
        axis = "child"
        if kind == "op" and text == ".":
            result = ctx
        elif kind == "op" and text == "..":
            result = self.parents(ctx)
        elif kind == "op" and text in ("@", "*"):
            raise Unbounded(f"{text!r} step")
        else:
            if kind == "axis":
                axis = text
                self.expect("::")
                kind, text = self.take()
            if kind == "nodetype":
                self.expect("(")
                self.expect(")")
                if text != "node":
                    raise Unbounded(f"{text}() step")
                if axis == "self":
                    result = ctx
                elif axis == "parent":
                    result = self.parents(ctx)
                else:
                    raise Unbounded(f"{axis}::node()")
            elif kind == "name":
                if axis == "self":
                    result = frozenset(p for p in ctx if self.matches(p[0], text))
                elif axis == "parent":
                    result = frozenset(p for p in self.parents(ctx) if self.matches(p[0], text))
                elif axis == "child":
                    result = self.children(ctx, text)
                else:
                    raise Unbounded(f"axis {axis}")
            else:
                raise Unbounded(f"unexpected {text!r}")
        self.reaches.update(result)
        while self.peek() == ("op", "["):
            result = self.predicate(result)
        return result

    def predicate(self, nodes: frozenset[Position]) -> frozenset[Position]:
        self.expect("[")
        self.expr(nodes)
        self.expect("]")
        return nodes

    def qualified(self, name: str) -> tuple[str, str]:
        if ":" in name:
            prefix, local = name.split(":", 1)
            if local == "*":
                raise Unbounded("wildcard name test")
            if prefix not in self.prefixes:
                raise Unbounded(f"unknown prefix {prefix!r}")
            return self.prefixes[prefix], local
        return self.default_module, name

    def matches(self, node: int, name: str) -> bool:
        module, local = self.qualified(name)
        parent = self.view.parent(node) if node != ROOT else None
        return parent is not None and self.view.child(parent, module, local) == node

    def children(self, ctx: frozenset[Position], name: str) -> frozenset[Position]:
        module, local = self.qualified(name)
        out = set()
        for node, anchor in ctx:
            found = self.view.child(node, module, local)
            if found is not None:
                out.add((found, anchor))
        return frozenset(out)

    def parents(self, ctx: frozenset[Position]) -> frozenset[Position]:
        out = set()
        for node, anchor in ctx:
            if node == ROOT:
                continue
            parent = self.view.parent(node)
            if self.view.depth(parent) < self.view.depth(anchor):
                anchor = parent
            out.add((parent, anchor))
        return frozenset(out)

    def function(self, ctx: frozenset[Position]) -> _Value:
        _, name = self.take()
        self.expect("(")
        args: list[_Value] = []
        if not self.accept(")"):
            args.append(self.expr(ctx))
            while self.accept(","):
                args.append(self.expr(ctx))
            self.expect(")")
        if name == "current":
            self.reaches.update(self.current)
            return _Value(self.current)
        if name in _SCALAR_FUNCTIONS or name in _NO_VALUE_FUNCTIONS:
            return _Value(None)
        if name in _VALUE_FUNCTIONS:
            for arg in args:
                self.use(arg)
            if not args and name in _CONTEXT_VALUE_FUNCTIONS:
                self.use(_Value(ctx))
            return _Value(None)
        raise Unbounded(f"function {name}()")


_OPERATORS = {"and", "or", "mod", "div", "*mul", "/", "//", "|", "+", "-", "=", "!=", "<", "<=",
              ">", ">="}


def _ends_operand(prev: tuple[str, str]) -> bool:
    """Whether a token can end an operand (then `*` multiplies and a name is an operator)."""
    kind, value = prev
    if kind == "op" and value in ("@", "::", "(", "[", ",", "$"):
        return False
    return not (kind in ("op", "opname") and value in _OPERATORS) and kind != "axis"


def _tokens(text: str) -> list[tuple[str, str]]:
    """XPath tokens as (kind, text); kinds: literal, number, op, opname, name, function, axis,
    nodetype (the lexical disambiguation rules of XPath 1.0, section 3.7)."""
    raw: list[tuple[str, str]] = []
    pos = 0
    text = text.rstrip()
    while pos < len(text):
        m = _TOKEN.match(text, pos)
        if m is None or m.end() == pos:
            raise Unbounded(f"cannot tokenize at {text[pos:]!r}")
        pos = m.end()
        kind = m.lastgroup or "op"
        raw.append((kind, m.group(kind)))
    out: list[tuple[str, str]] = []
    for i, (kind, value) in enumerate(raw):
        operand_before = bool(out) and _ends_operand(out[-1])
        nxt = raw[i + 1] if i + 1 < len(raw) else None
        if kind == "op" and value == "*" and operand_before:
            out.append(("opname", "*mul"))
        elif kind == "name" and operand_before:
            if value not in ("and", "or", "div", "mod"):
                raise Unbounded(f"unexpected name {value!r}")
            out.append(("opname", value))
        elif kind == "name" and nxt == ("op", "("):
            out.append(("nodetype" if value in _NODE_TYPES else "function", value))
        elif kind == "name" and nxt == ("op", "::"):
            out.append(("axis", value))
        else:
            out.append((kind, value))
    return out


def reaches(text: str, view: SchemaView, prefixes: dict[str, str], default_module: str,
            context: int) -> frozenset[Position]:
    """The (schema node, anchor) pairs `text` reaches when evaluated at `context`.

    `prefixes` maps the expression's prefixes to module names; unprefixed names belong to
    `default_module`. Raises `Unbounded`.
    """
    analysis = _Analysis(text, view, prefixes, default_module, context)
    analysis.expr(analysis.current)
    if analysis.pos != len(analysis.tokens):
        raise Unbounded(f"trailing tokens from {analysis.pos}")
    return frozenset(analysis.reaches)
