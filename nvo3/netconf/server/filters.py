"""<get>/<get-config>/notification filters: RFC 6241 subtree (section 6) and XPath (section 8.9).

Design notes
------------
Both filters are pure: they deep-copy the <data> tree once, *mark* nodes of the copy and then
build a new tree from the marked nodes only, so the input is never mutated, document order is
the data's order and a node selected by several filter branches appears exactly once. Marks
are two sets:

* ``full``    -- the element and everything below it is returned;
* ``partial`` -- the element is returned with only its marked children (plus, when it is a
  YANG list entry, its key leaves: RFC 7950 section 7.8.5 identifies entries by key).

The engine supplies ``list_keys(element)`` (key leaf local names or None), so no schema is
needed here. It is called with elements of the private copy, whose ancestry mirrors the
input's up to the <data> root.

XPath: RFC 6241 makes the root node the context, with the top-level data nodes as its
children. lxml cannot hold several root elements, so the copy keeps <data> as document element
and every *absolute* location path is rewritten by a small XPath 1.0 tokenizer: ``/`` becomes
``/*`` (the <data> element) and ``/x`` / ``//x`` become ``/*/x`` / ``/*//x``. Relative paths
are evaluated with <data> as context node, so ``a:top`` also names a top-level node.

The same pass makes *unprefixed* element name tests namespace-agnostic, as ConfD and other
servers do (and as unqualified subtree filter nodes are): in XPath 1.0 ``x`` matches only an
element in no namespace, and every data node is namespaced, so ``/netconf-state/datastores``
would select nothing. Such a test ``x`` becomes ``*[local-name()='x']`` (a following predicate
still applies to the step). Function names and node-type tests (followed by ``(``), axis names
(followed by ``::``), the operator names and/or/div/mod after an operand, variables, prefixed
names, literals, numbers and attribute/namespace name tests (``@x``, ``attribute::x``) are
left alone.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from lxml import etree

from nvo3.netconf.proto.xml import BASE_NS
from nvo3.netconf.server.budget import BudgetExceeded, ChildFailed, run_with_budget

#: Key leaf local names of a YANG list entry element, or None when it is not a list entry.
ListKeys = Callable[[etree._Element], "tuple[str, ...] | None"]


class FilterError(Exception):
    """A filter the server cannot evaluate; the engine answers rpc-error invalid-value."""


class FilterBudgetExceeded(Exception):
    """An xpath filter used more CPU time than its budget; the engine answers rpc-error
    operation-failed."""


@dataclass
class _Marks:
    """Elements of the working copy that survive pruning (see the module notes)."""

    full: set[etree._Element] = field(default_factory=set)
    partial: set[etree._Element] = field(default_factory=set)

    def update(self, other: _Marks) -> None:
        """Add another branch's marks (union)."""
        self.full |= other.full
        self.partial |= other.partial


# --------------------------------------------------------------------------- pruning


def _copy_marked(node: etree._Element, marks: _Marks, list_keys: ListKeys, is_root: bool,
                 parent: etree._Element | None = None) -> etree._Element:
    """A new element holding ``node`` with only its marked children (recursively) and, for
    a list entry, its key leaves.

    Built rather than pruned in place: lxml's ``remove`` re-homes the removed subtree node by
    node (namespace fix-up), ~30 us a node, so dropping a 10,000-entry list to return one
    small container took seconds."""
    if parent is None:
        out = etree.Element(node.tag, node.attrib, nsmap=node.nsmap)
    else:
        out = etree.SubElement(parent, node.tag, node.attrib, nsmap=node.nsmap)
    out.text, out.tail = node.text, node.tail
    keys = None if is_root else list_keys(node)
    node_ns = etree.QName(node).namespace
    for child in node:
        if not isinstance(child.tag, str):
            continue      # comments and PIs of partially returned nodes
        if child in marks.full:
            out.append(copy.deepcopy(child))
        elif child in marks.partial:
            _copy_marked(child, marks, list_keys, False, out)
        elif keys and _is_key(child, keys, node_ns):
            out.append(copy.deepcopy(child))
    return out


def _is_key(child: etree._Element, keys: tuple[str, ...], list_ns: str | None) -> bool:
    """True when `child` is one of the key leaves of its parent list entry."""
    name = etree.QName(child)
    return name.localname in keys and name.namespace == list_ns


def _result(work: etree._Element, marks: _Marks, list_keys: ListKeys) -> etree._Element:
    """A new tree: the marked parts of ``work``."""
    out = _copy_marked(work, marks, list_keys, True)
    out.tail = None
    if len(out) == 0:
        out.text = None
    return out


# --------------------------------------------------------------------------- subtree


def subtree_filter(data: etree._Element, filter_elem: etree._Element,
                   list_keys: ListKeys) -> etree._Element:
    """Apply an RFC 6241 section 6 subtree filter; return a new <data> element.

    `filter_elem` is the <filter type="subtree"> element: its element children are the
    top-level filter nodes, each applied independently (their results are merged). A filter
    without element children selects nothing. Filter elements without a namespace (or in
    the NETCONF base namespace, which is what an unqualified element inside <rpc> gets)
    match the local name in any namespace.
    """
    work = copy.deepcopy(data)
    marks = _Marks()
    for fnode in _element_children(filter_elem):
        for dnode in _element_children(work):
            if _node_matches(dnode, fnode):
                branch = _apply(dnode, fnode, list_keys)
                if branch is not None:
                    marks.update(branch)
    return _result(work, marks, list_keys)


def _apply(dnode: etree._Element, fnode: etree._Element, list_keys: ListKeys) -> _Marks | None:
    """Marks for a data node whose name and attributes match filter node `fnode`.

    Returns None when the filter node does not select `dnode`.
    """
    if _is_content_match(fnode):
        return _Marks(full={dnode}) if _text(dnode) == _text(fnode) else None
    if not _element_children(fnode):
        return _Marks(full={dnode})  # selection node (6.2.4)
    marks = _containment(dnode, fnode, list_keys)
    if marks is not None:
        marks.partial.add(dnode)
    return marks


def _containment(dnode: etree._Element, fnode: etree._Element,
                 list_keys: ListKeys) -> _Marks | None:
    """Evaluate the sibling set below containment node `fnode` against `dnode` (6.2.3, 6.2.5).

    All content match nodes must match (AND). With only content match nodes, the whole data
    node is selected; otherwise the result is the matched content nodes plus what the
    selection and containment siblings select. Nothing selected means `dnode` is dropped.
    """
    fchildren = _element_children(fnode)
    content = [f for f in fchildren if _is_content_match(f)]
    others = [f for f in fchildren if not _is_content_match(f)]
    dchildren = _element_children(dnode)
    marks = _Marks()
    for fchild in content:
        hits = [d for d in dchildren if _node_matches(d, fchild) and _text(d) == _text(fchild)]
        if not hits:
            return None
        marks.full.update(hits)
    if not others:
        return _Marks(full={dnode})
    selected = False
    for dchild in dchildren:
        for fchild in others:
            if _node_matches(dchild, fchild):
                branch = _apply(dchild, fchild, list_keys)
                if branch is not None:
                    marks.update(branch)
                    selected = True
    return marks if selected or content else None


def _node_matches(dnode: etree._Element, fnode: etree._Element) -> bool:
    """Namespace selection (6.2.1), name and attribute match expressions (6.2.2)."""
    dname, fname = etree.QName(dnode), etree.QName(fnode)
    if dname.localname != fname.localname:
        return False
    if fname.namespace not in (None, BASE_NS) and fname.namespace != dname.namespace:
        return False
    return all(dnode.get(attr) == value for attr, value in fnode.attrib.items())


def _is_content_match(fnode: etree._Element) -> bool:
    """A leaf filter node with non-whitespace text (6.2.5)."""
    return not _element_children(fnode) and bool(_text(fnode))


def _text(node: etree._Element) -> str:
    """The node's own text without surrounding whitespace."""
    return (node.text or "").strip()


def _element_children(node: etree._Element) -> list[etree._Element]:
    """Element children only (no comments or processing instructions)."""
    return [child for child in node if isinstance(child.tag, str)]


# --------------------------------------------------------------------------- xpath


def xpath_filter(data: etree._Element, select: str, nsmap: Mapping[str | None, str],
                 list_keys: ListKeys) -> etree._Element:
    """Apply an RFC 6241 section 8.9 XPath filter; return a new <data> element.

    Each selected element is returned with its whole subtree; a selected text or attribute
    node returns its parent element. Every selected node comes with its ancestors up to <data>,
    list entries among them with their key leaves. `nsmap` maps prefixes (filter declarations
    and module names) to namespaces; a None/empty prefix is ignored. An unprefixed element
    name test matches that local name in any namespace (see the module notes).
    Raises FilterError for a syntax error, an unknown prefix or function, or a result that is
    not a node-set.
    """
    namespaces = {p: ns for p, ns in nsmap.items() if p}
    expr = _rewrite(select, namespaces)
    work = copy.deepcopy(data)
    try:
        result = etree.XPath(expr, namespaces=namespaces)(work)
    except etree.XPathError as exc:
        raise FilterError(f"invalid XPath expression {select!r}: {exc}") from exc
    if not isinstance(result, list):
        raise FilterError(f"XPath expression {select!r} does not evaluate to a node-set")
    marks = _Marks()
    for element in _result_elements(result):
        if element is work:
            return work
        marks.full.add(element)
        for ancestor in element.iterancestors():
            if ancestor is work:
                break
            marks.partial.add(ancestor)
    return _result(work, marks, list_keys)


#: a <data> tree this small is filtered in process (a notification, mostly): even an
#: expression of cost O(n^4) stays far below any budget there
SMALL_TREE = 32


def xpath_filter_bytes(data: etree._Element, select: str, nsmap: Mapping[str | None, str],
                       list_keys: ListKeys, budget: float) -> bytes:
    """`xpath_filter`, serialized, within `budget` seconds of CPU time (0: no budget).

    The evaluation runs in a child process (see :mod:`nvo3.netconf.server.budget`) unless
    `data` is tiny; past the budget it is killed and FilterBudgetExceeded raised."""
    def evaluate() -> bytes:
        return etree.tostring(xpath_filter(data, select, nsmap, list_keys))
    if not budget or _smaller_than(data, SMALL_TREE):
        return evaluate()
    try:
        return run_with_budget(evaluate, budget)
    except BudgetExceeded:
        raise FilterBudgetExceeded(
            f"the xpath filter {select!r} exceeded its budget of {budget:g} s of CPU time "
            "and was stopped") from None
    except ChildFailed as exc:
        raise FilterError(str(exc)) from None


def _smaller_than(data: etree._Element, count: int) -> bool:
    return all(n < count for n, _ in enumerate(data.iter()))


def _result_elements(result: list[object]) -> list[etree._Element]:
    """The elements a node-set stands for: elements, or the parent of any other node."""
    elements = []
    for item in result:
        node: object = item
        if isinstance(item, etree._Element) and not isinstance(item.tag, str):
            node = item.getparent()  # comment or processing instruction
        elif isinstance(item, str) and hasattr(item, "getparent"):
            node = item.getparent()  # text or attribute node ("smart string")
        if isinstance(node, etree._Element):
            elements.append(node)  # namespace nodes (tuples) select nothing
    return elements


_TOKEN = re.compile(r"""
    (?P<space>\s+)
  | (?P<literal>"[^"]*"|'[^']*')
  | (?P<number>\d+(?:\.\d*)?|\.\d+)
  | (?P<name>[^\W\d][\w.\-]*(?::(?:[^\W\d][\w.\-]*|\*))?)
  | (?P<op>//|/|::|!=|<=|>=|\.\.|[.=<>|+\-*()\[\],@$])
""", re.VERBOSE)

_OPERATOR_NAMES = frozenset({"and", "or", "mod", "div"})
_OPERAND_END = frozenset({")", "]", ".", ".."})
#: Axes whose principal node type is not element: name tests there are left alone.
_NON_ELEMENT_AXES = frozenset({"attribute", "namespace"})


def _tokenize(expr: str) -> list[tuple[str, str]]:
    """XPath 1.0 tokens (kind, text), whitespace included so the text can be rebuilt."""
    tokens: list[tuple[str, str]] = []
    pos = 0
    while pos < len(expr):
        match = _TOKEN.match(expr, pos)
        if match is None or match.lastgroup is None:
            raise FilterError(_syntax_message(expr, pos))
        tokens.append((match.lastgroup, match.group()))
        pos = match.end()
    return tokens


def _syntax_message(expr: str, pos: int) -> str:
    """lxml's own message for an expression the tokenizer rejects, else the position."""
    try:
        etree.XPath(expr)
    except etree.XPathError as exc:
        return f"invalid XPath expression {expr!r}: {exc}"
    return f"invalid XPath expression {expr!r}: unexpected {expr[pos]!r} at offset {pos}"


def _rewrite(expr: str, namespaces: dict[str, str]) -> str:
    """Rewrite absolute paths and unprefixed element name tests (module notes); check prefixes.

    Lexical rules of XPath 1.0 section 3.7: a `/` or `//` starts an absolute path, and a
    name is an operator name, only when the preceding token ends an operand (a name test,
    `)`, `]`, `.`, `..`, a literal or number) -- and a `*` is then a multiplication.
    """
    tokens = _tokenize(expr)
    significant = [i for i, (kind, _) in enumerate(tokens) if kind != "space"]
    out = [text for _, text in tokens]
    operand_end = False
    for n, i in enumerate(significant):
        kind, text = tokens[i]
        following = tokens[significant[n + 1]] if n + 1 < len(significant) else None
        if kind in ("literal", "number"):
            operand_end = True
        elif kind == "name":
            if operand_end and text in _OPERATOR_NAMES:
                operand_end = False
                continue
            _check_prefix(text, namespaces)
            if _is_element_name_test(tokens, significant, n):
                out[i] = f"*[local-name()='{text}']"
            operand_end = True
        elif text == "*":
            operand_end = not operand_end  # multiply after an operand, else a name test
        elif text in ("/", "//") and not operand_end:
            out[i], operand_end = _root_step(text, following)
        else:
            operand_end = text in _OPERAND_END
    return "".join(out)


def _is_element_name_test(tokens: list[tuple[str, str]], significant: list[int], n: int) -> bool:
    """True when name token `significant[n]` (not an operator) is an unprefixed element test.

    Excluded: prefixed names, function names and node types (`name(`), axis names
    (`name::`), variables (`$name`) and tests on the attribute or namespace axis.
    """
    text = tokens[significant[n]][1]
    if ":" in text:
        return False
    after = tokens[significant[n + 1]][1] if n + 1 < len(significant) else None
    if after in ("(", "::"):
        return False
    before = tokens[significant[n - 1]][1] if n >= 1 else None
    if before in ("$", "@"):
        return False
    if before == "::" and n >= 2:
        return tokens[significant[n - 2]][1] not in _NON_ELEMENT_AXES
    return True


def _root_step(slash: str, following: tuple[str, str] | None) -> tuple[str, bool]:
    """Replacement for an absolute `/` or `//`, and whether it ends an operand."""
    if slash == "//":
        return "/*//", False
    starts_step = following is not None and (
        following[0] == "name" or following[1] in ("*", "@", ".", ".."))
    return ("/*/", False) if starts_step else ("/*", True)


def _check_prefix(name: str, namespaces: dict[str, str]) -> None:
    """Raise FilterError when a QName's prefix is not bound."""
    prefix, colon, _ = name.partition(":")
    if colon and prefix != "xml" and prefix not in namespaces:
        raise FilterError(f"unknown namespace prefix {prefix!r} in XPath expression")
