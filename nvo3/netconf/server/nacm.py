"""NACM (RFC 8341) enforcement for the engine: exec, read, write and notification checks.

`Nacm` holds the /nacm configuration of running (reloaded when running changes; recompiled
only when /nacm itself changed), the compiled rules of each user (cached, dropped on a /nacm
change), the schema's `nacm:default-deny-*` annotations and the denied-* counters.

A session's `Identity` (user name, groups from the user store, recovery flag) is fixed when it
opens. A recovery user, or any user while enable-nacm is false, is never checked (section
3.4.2). Every check skips the data it cannot change the answer for: a check descends into a
node's children only toward the nodes where a decision can differ from the parent's (rule
targets, annotated nodes, module boundaries); elsewhere a child inherits the parent's decision.
A write is checked on the edit itself, at a cost in proportion to the edit; a whole-datastore
replacement (copy-config, commit, delete-config) compares old and new and checks what differs.

The engine knows nothing of a role's data: a role may declare *access scopes* — "this RPC (or
notification) concerns the data entry whose key is this input leaf" — and the caller must then
be allowed to write (read, for a notification) that entry (`role_api.AccessScope`).
"""

from __future__ import annotations

import copy
import logging
import re
import threading
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import libyang
from lxml import etree

from nvo3.netconf.proto.errors import RpcError
from nvo3.netconf.proto.xml import BASE_NS
from nvo3.netconf.server.nacm_rules import (
    WRITE_OPERATIONS,
    NacmConfig,
    Path,
    PathError,
    Step,
    UserRules,
    parse_path,
)
from nvo3.netconf.server.role_api import AccessScope
from nvo3.netconf.server.schema import NodeInfo, Schema

log = logging.getLogger(__name__)

NACM_MODULE = "ietf-netconf-acm"
NACM_PATH = "/ietf-netconf-acm:nacm"
NOTIFICATIONS_MODULE = "ietf-netconf-notifications"
#: ietf-netconf (RFC 6241) marks these nacm:default-deny-all; pyang's copy omits the statements
BASE_DENY_ALL = frozenset({("ietf-netconf", "kill-session"), ("ietf-netconf", "delete-config")})
_OP_ATTR = f"{{{BASE_NS}}}operation"

SchemaPath = tuple[tuple[str, str], ...]


@dataclass(frozen=True)
class Identity:
    """Who a session is for NACM: user name, groups from the user store, recovery user."""

    username: str
    groups: tuple[str, ...] = ()
    recovery: bool = False


#: The identity of an engine without a user store (in-process embedding and tests).
Accounts = Callable[[str], Identity]


@dataclass
class Counters:
    """The /nacm counters (config false)."""

    denied_operations: int = 0
    denied_data_writes: int = 0
    denied_notifications: int = 0


@dataclass
class _Plan:
    """One user's compiled rules and where checks must descend."""

    rules: UserRules
    read_walk: frozenset[SchemaPath]
    write_walk: frozenset[SchemaPath]


def access_denied(message: str, path: str | None = None, data: bool = False,
                  namespaces: Mapping[str, str] | None = None) -> RpcError:
    """The rpc-error of a refused access (RFC 8341 section 3.4.5: application for data)."""
    return RpcError("access-denied", message, type="application" if data else "protocol",
                    path=path, path_namespaces=dict(namespaces or {}))


@dataclass
class _Annotations:
    """The schema's nacm:default-deny-* annotations and its module boundaries."""

    nodes: dict[SchemaPath, str] = field(default_factory=dict)   # every annotated node
    tops: set[SchemaPath] = field(default_factory=set)           # topmost annotated nodes
    boundaries: set[SchemaPath] = field(default_factory=set)     # module differs from parent
    operations: set[tuple[str, str]] = field(default_factory=set)     # deny-all RPCs
    notifications: set[tuple[str, str]] = field(default_factory=set)  # deny-all notifications


def _annotation(snode: libyang.SNode) -> str | None:
    names = {e.name() for e in snode.extensions() if e.module().name() == NACM_MODULE}
    if "default-deny-all" in names:
        return "all"
    return "write" if "default-deny-write" in names else None


def _annotations(schema: Schema) -> _Annotations:
    out = _Annotations(operations=set(BASE_DENY_ALL))

    def walk(snode: libyang.SNode, parent: SchemaPath, parent_module: str | None,
             parent_annotated: bool) -> None:
        module = snode.module().name()
        path = (*parent, (schema.namespaces[module], snode.name()))
        if module != parent_module:
            out.boundaries.add(path)
        mark = _annotation(snode)
        if mark:
            out.nodes[path] = mark
            if not parent_annotated:
                out.tops.add(path)
        if isinstance(snode, (libyang.SList, libyang.SContainer)):
            for child in snode.children():
                if not isinstance(child, (libyang.SRpc, libyang.schema.SNotif)):
                    walk(child, path, module, bool(mark))

    for mod in schema.context:
        if not mod.implemented():
            continue
        for snode in mod.children():
            if isinstance(snode, libyang.SRpc):
                if _annotation(snode) == "all":
                    out.operations.add((mod.name(), snode.name()))
            elif isinstance(snode, libyang.schema.SNotif):
                if _annotation(snode) == "all":
                    out.notifications.add((mod.name(), snode.name()))
            else:
                walk(snode, (), None, False)
    return out


def _prefixes(paths: Iterable[SchemaPath]) -> frozenset[SchemaPath]:
    return frozenset(p[:i] for p in paths for i in range(1, len(p) + 1))


class Nacm:
    """NACM for one engine (see the module notes)."""

    def __init__(self, schema: Schema, scopes: Mapping[str, AccessScope] | None = None):
        self.schema = schema
        self.scopes = dict(scopes or {})
        self.counters = Counters()
        self.annotations = _annotations(schema)
        self._names = dict(schema.namespaces)
        for mod in schema.context:
            prefix = mod.prefix()
            self._names.setdefault(prefix, schema.namespaces[mod.name()])
        self._raw: Any = object()
        self.config = NacmConfig.parse(None, self._names)
        self._plans: dict[tuple[str, tuple[str, ...]], _Plan] = {}
        self._lock = threading.Lock()

    # configuration ----------------------------------------------------------------------
    def reload(self, nacm: Mapping[str, Any] | None) -> None:
        """Take /nacm from running (`Snapshot.subtree_dict(NACM_PATH)`); recompiles, and
        drops every user's compiled rules, only when it changed."""
        if nacm == self._raw:
            return
        config = NacmConfig.parse(nacm, self._names)
        with self._lock:
            self._raw, self.config, self._plans = copy.deepcopy(nacm), config, {}
        log.info("NACM configuration loaded: %s, %d rule list(s)",
                 "enabled" if config.defaults.enabled else "disabled", len(config.rule_lists))

    def plan(self, who: Identity | None) -> _Plan | None:
        """The user's compiled rules; None when nothing is checked (recovery, disabled)."""
        if who is None or who.recovery or not self.config.defaults.enabled:
            return None
        key = (who.username, who.groups)
        with self._lock:
            plan = self._plans.get(key)
            if plan is None:
                rules = self.config.rules_for(who.username, who.groups)
                points = self._resolve(rules)
                boundaries = self.annotations.boundaries if rules.modules else set()
                read = _prefixes([*points, *boundaries, *(
                    p for p in self.annotations.tops if self.annotations.nodes[p] == "all")])
                write = _prefixes([*points, *boundaries, *self.annotations.tops])
                plan = self._plans[key] = _Plan(rules, read, write)
            return plan

    def _resolve(self, rules: UserRules) -> set[SchemaPath]:
        """The schema nodes the rules' paths name (an unqualified step: any namespace)."""
        found: set[SchemaPath] = set()
        for target in rules.targets:
            nodes: list[tuple[SchemaPath, NodeInfo | None]] = [((), None)]
            for ns, name in target:
                nxt: list[tuple[SchemaPath, NodeInfo | None]] = []
                for path, info in nodes:
                    children = self.schema.top.values() if info is None \
                        else info.children.values()
                    nxt.extend(((*path, (c.namespace, c.name)), c) for c in children
                               if (name in ("*", c.name)) and ns in (None, c.namespace))
                nodes = nxt
            found.update(p for p, _ in nodes if p)
        return found

    # exec -------------------------------------------------------------------------------------
    def check_exec(self, who: Identity | None, module: str, name: str) -> None:
        """Raise access-denied unless the user may invoke `module:name`."""
        plan = self.plan(who)
        if plan is None:
            return
        deny_all = (module, name) in self.annotations.operations
        if not plan.rules.exec(module, name, deny_all):
            self.counters.denied_operations += 1
            raise access_denied(f"access denied: {name}")

    def check_scope(self, who: Identity | None, operation: str, given: Mapping[str, Any]) -> None:
        """Raise access-denied unless the user may write every entry RPC `operation`'s input
        names (the role's AccessScope)."""
        scope = self.scopes.get(operation)
        plan = self.plan(who)
        if scope is None or plan is None:
            return
        values: list[str | None] = [*_values(given, scope.leaf.split("/"))] or [None]
        for value in values:
            steps, module = self._scope_steps(scope, value)
            if not plan.rules.data(steps, module, "update", self._annotation_of(steps)):
                self.counters.denied_operations += 1
                where = _scope_path(scope, value)
                what = f"{scope.leaf} {value!r}" if value is not None else f"every {scope.leaf}"
                raise access_denied(f"access denied: {operation.split(':')[-1]} for {what} "
                                    f"({where})", path=where)

    def _scope_steps(self, scope: AccessScope, value: str | None) -> tuple[Path, str]:
        steps = parse_path(_scope_path(scope, value), self._names)
        ns = steps[0].namespace or ""
        return self._qualified(steps), self.schema.modules_by_ns.get(ns, "")

    def _qualified(self, steps: Path) -> Path:
        """`steps` with each namespace filled in from the schema (a path given unqualified)."""
        out: list[Step] = []
        info: NodeInfo | None = None
        for step in steps:
            info = self.schema.top_node(step.namespace, step.name) if info is None \
                else info.child(step.namespace, step.name) or next(
                    (c for c in info.children.values() if c.name == step.name), None)
            if info is None:
                return steps
            out.append(Step(info.namespace, step.name, step.keys))
        return tuple(out)

    def _annotation_of(self, steps: Path) -> str | None:
        return self.annotations.nodes.get(tuple((s.namespace or "", s.name) for s in steps))

    # read -------------------------------------------------------------------------------------
    def readable(self, who: Identity | None) -> bool:
        """True when reads need no pruning for this user."""
        plan = self.plan(who)
        return plan is None or plan.rules.read_all

    def prune(self, who: Identity | None, data: etree._Element) -> None:
        """Remove from a <data> tree, in place, every node the user may not read (3.4.5)."""
        plan = self.plan(who)
        if plan is None or plan.rules.read_all:
            return
        for top in list(data):
            if isinstance(top.tag, str):
                self._prune(plan, top, data, None, (), ())

    def _prune(self, plan: _Plan, el: etree._Element, parent: etree._Element,
               pinfo: NodeInfo | None, spath: SchemaPath, steps: Path) -> None:
        qn = etree.QName(el)
        ns = qn.namespace or ""
        info = self.schema.child_of(pinfo, ns, qn.localname)
        if info is None:
            return
        here = (*spath, (info.namespace, info.name))
        at = (*steps, Step(info.namespace, info.name, _keys(el, info)))
        if not plan.rules.data(at, info.module, "read", self.annotations.nodes.get(here)):
            parent.remove(el)
            return
        for child in list(el):
            if isinstance(child.tag, str) and \
                    (*here, _qname(child, info)) in plan.read_walk:
                self._prune(plan, child, el, info, here, at)

    def may_read(self, who: Identity | None, steps: Path) -> bool:
        """May the user read the data node at `steps` (namespaces filled in when missing)?"""
        plan = self.plan(who)
        if plan is None or plan.rules.read_all:
            return True
        steps = self._qualified(steps)
        module = self.schema.modules_by_ns.get(steps[-1].namespace or "", "") if steps else ""
        return plan.rules.data(steps, module, "read", self._annotation_of(steps))

    # write: edit-config ----------------------------------------------------------------------
    def check_edit(self, who: Identity | None, config: etree._Element, default_op: str,
                   target: libyang.DNode | None) -> None:
        """Raise access-denied (nothing is changed yet) unless the user may make every write
        of edit-config `config` on a datastore whose tree is `target`."""
        plan = self.plan(who)
        if plan is None or plan.rules.write_all:
            return
        for top in config:
            if isinstance(top.tag, str):
                self._edit(plan, top, None, (), (), default_op, None, target)

    def _edit(self, plan: _Plan, el: etree._Element, pinfo: NodeInfo | None,
              spath: SchemaPath, steps: Path, inherited_op: str,
              inherited: dict[str, bool] | None, target: libyang.DNode | None) -> None:
        qn = etree.QName(el)
        ns = qn.namespace or (pinfo.namespace if pinfo else "")
        info = self.schema.child_of(pinfo, ns, qn.localname)
        if info is None:
            return                          # not in the schema: validation refuses it
        op = el.get(_OP_ATTR) or el.get("operation") or inherited_op
        here = (*spath, (info.namespace, info.name))
        at = (*steps, Step(info.namespace, info.name, _keys(el, info)))
        if inherited is None or here in plan.write_walk:
            annotation = self.annotations.nodes.get(here)
            decided = {o: plan.rules.data(at, info.module, o, annotation)
                       for o in WRITE_OPERATIONS}
        else:
            decided = inherited
        children = [c for c in el if isinstance(c.tag, str)]
        leafy = info.kind in ("leaf", "leaf-list", "anydata") or not children
        if op in ("delete", "remove"):
            self._require(decided, "delete", at)
            self._existing(plan, here, at, info, target, "delete")
            return
        if op == "create":
            self._require(decided, "create", at)
        elif op == "replace":
            self._require(decided, self._create_or_update(decided, at, target), at)
            if not leafy:
                self._existing(plan, here, at, info, target, "delete")
        elif op == "merge" and leafy:
            self._require(decided, self._create_or_update(decided, at, target), at)
        for child in children:
            self._edit(plan, child, info, here, at, op, decided, target)

    def _create_or_update(self, decided: dict[str, bool], at: Path,
                          target: libyang.DNode | None) -> str:
        if decided["create"] == decided["update"]:
            return "create"
        return "update" if target is not None and \
            target.find_path(self.xpath(at)[0]) is not None else "create"

    def _require(self, decided: dict[str, bool], op: str, at: Path) -> None:
        if not decided[op]:
            self.counters.denied_data_writes += 1
            path, prefixes = self.xpath(at)
            raise access_denied(f"access denied: {op} of {path}", path=path, data=True,
                                namespaces=prefixes)

    def _existing(self, plan: _Plan, here: SchemaPath, at: Path, info: NodeInfo,
                  target: libyang.DNode | None, op: str) -> None:
        """Check `op` on the nodes of the existing subtree at `at` where the decision can
        differ (a delete or replace removes them)."""
        if target is None or not any(len(p) > len(here) and p[:len(here)] == here
                                     for p in plan.write_walk):
            return
        node = target.find_path(self.xpath(at)[0])
        if node is None:
            return
        old = etree.fromstring(node.print_mem("xml", with_siblings=False, pretty=False))
        self._subtree(plan, old, info, here, at, op, walk_only=True)

    def _subtree(self, plan: _Plan, el: etree._Element, info: NodeInfo, here: SchemaPath,
                 at: Path, op: str, walk_only: bool = False) -> None:
        """Require `op` on `el` (unless `walk_only`) and on its nodes in the walk set."""
        if not walk_only and not plan.rules.data(at, info.module, op,
                                                 self.annotations.nodes.get(here)):
            self._require({op: False}, op, at)
        for child in el:
            if not isinstance(child.tag, str):
                continue
            qn = etree.QName(child)
            cinfo = info.child(qn.namespace, qn.localname)
            if cinfo is None:
                continue
            chere = (*here, (cinfo.namespace, cinfo.name))
            if chere in plan.write_walk:
                self._subtree(plan, child, cinfo, chere,
                              (*at, Step(cinfo.namespace, cinfo.name, _keys(child, cinfo))), op)

    # write: whole datastores ------------------------------------------------------------------
    def checks_writes(self, who: Identity | None) -> bool:
        """False when every write of the user is permitted (nothing to compute)."""
        plan = self.plan(who)
        return plan is not None and not plan.rules.write_all

    def check_replace(self, who: Identity | None,
                      old: Callable[[], etree._Element | None],
                      new: Callable[[], etree._Element | None]) -> None:
        """Raise access-denied unless the user may turn <data> tree `old()` into `new()`
        (copy-config, commit, delete-config): every difference is checked. The trees are
        built only when a check is needed."""
        plan = self.plan(who)
        if plan is None or plan.rules.write_all:
            return
        self._diff(plan, old(), new(), None, (), ())

    def _diff(self, plan: _Plan, old: etree._Element | None, new: etree._Element | None,
              pinfo: NodeInfo | None, spath: SchemaPath, steps: Path) -> None:
        olds = _children_by_key(old, pinfo, self.schema)
        news = _children_by_key(new, pinfo, self.schema)
        for key in [*olds, *(k for k in news if k not in olds)]:
            o, n = olds.get(key), news.get(key)
            if o is not None and n is not None and \
                    etree.tostring(o[0]) == etree.tostring(n[0]):
                continue
            el, info = (n or o)  # type: ignore[misc]
            here = (*spath, (info.namespace, info.name))
            at = (*steps, Step(info.namespace, info.name, _keys(el, info)))
            if o is None:
                self._subtree(plan, el, info, here, at, "create")
            elif n is None:
                self._subtree(plan, el, info, here, at, "delete")
            elif info.kind in ("leaf", "anydata"):
                self._subtree(plan, el, info, here, at, "update")
            else:
                self._diff(plan, o[0], n[0], info, here, at)

    # notifications ------------------------------------------------------------------------------
    def notification_guard(self, who: Identity | None,
                           select: Callable[[etree._Element], etree._Element | None],
                           ) -> Callable[[etree._Element], etree._Element | None]:
        """`select` preceded by the user's notification checks (3.4.6): a notification the
        user may not receive is dropped (and counted), the parts of netconf-config-change
        the user may not read are removed."""
        def guarded(content: etree._Element) -> etree._Element | None:
            allowed = self.filter_notification(who, content)
            return None if allowed is None else select(allowed)
        return guarded

    def filter_notification(self, who: Identity | None,
                            content: etree._Element) -> etree._Element | None:
        """The notification as the user may receive it, or None."""
        plan = self.plan(who)
        if plan is None:
            return content
        qn = etree.QName(content)
        module = self.schema.modules_by_ns.get(qn.namespace or "", "")
        name = qn.localname
        deny_all = (module, name) in self.annotations.notifications
        allowed = plan.rules.notification(module, name, deny_all)
        scope = self.scopes.get(f"{module}:{name}")
        if allowed and scope is not None:
            named: list[str | None] = [*_element_values(content, scope.leaf.split("/"))]
            for value in named or [None]:
                steps, smodule = self._scope_steps(scope, value)
                if not plan.rules.data(steps, smodule, "read", self._annotation_of(steps)):
                    allowed = False
        if not allowed:
            self.counters.denied_notifications += 1
            return None
        if module == NOTIFICATIONS_MODULE and name == "netconf-config-change":
            return self._config_change(who, content)
        return content

    def _config_change(self, who: Identity | None,
                       content: etree._Element) -> etree._Element | None:
        ns = etree.QName(content).namespace
        hidden = []
        for edit in content.iterchildren(f"{{{ns}}}edit"):
            target = edit.find(f"{{{ns}}}target")
            if target is None or not target.text:
                continue
            names = {**self._names, **{p: u for p, u in target.nsmap.items() if p}}
            try:
                steps = parse_path(target.text, names)
            except PathError:
                continue
            if not self.may_read(who, steps):
                hidden.append(edit)
        if not hidden:
            return content
        out = copy.deepcopy(content)
        for edit in list(out.iterchildren(f"{{{ns}}}edit")):
            if any(etree.tostring(edit) == etree.tostring(h) for h in hidden):
                out.remove(edit)
        return out

    # state --------------------------------------------------------------------------------------
    def state(self) -> dict[str, Any]:
        """The config-false /nacm counters, for <get>."""
        c = self.counters
        return {"nacm": {"denied-operations": c.denied_operations,
                         "denied-data-writes": c.denied_data_writes,
                         "denied-notifications": c.denied_notifications}}

    # paths --------------------------------------------------------------------------------------
    def xpath(self, steps: Path) -> tuple[str, dict[str, str]]:
        """The module-prefixed data path of `steps` (error-path, lookups) and its prefixes."""
        parts, prefixes, last = [], {}, None
        for step in steps:
            module = self.schema.modules_by_ns.get(step.namespace or "", "")
            name = step.name if module == last else f"{module}:{step.name}"
            prefixes[module] = step.namespace or ""
            last = module
            preds = "".join(f"[{k}={_quoted(v)}]" for k, v in step.keys)
            parts.append(name + preds)
        return "/" + "/".join(parts), prefixes


def _scope_path(scope: AccessScope, value: str | None) -> str:
    """The entry a scoped request names; without a value, the whole list (the predicate
    holding the value dropped)."""
    if value is None:
        return re.sub(r"\[[^\]]*\{\}[^\]]*\]", "", scope.path)
    return scope.path.format(_quoted(value))


def _quoted(value: str) -> str:
    return f'"{value}"' if "'" in value else f"'{value}'"


def _qname(el: etree._Element, parent: NodeInfo) -> tuple[str, str]:
    qn = etree.QName(el)
    return (qn.namespace or parent.namespace, qn.localname)


def _keys(el: etree._Element, info: NodeInfo) -> tuple[tuple[str, str], ...]:
    if info.kind == "list" and info.keys:
        found = {}
        for child in el:
            if isinstance(child.tag, str):
                local = etree.QName(child).localname
                if local in info.keys:
                    found[local] = (child.text or "").strip()
        return tuple((k, found[k]) for k in info.keys if k in found)
    if info.kind == "leaf-list":
        return ((".", (el.text or "").strip()),)
    return ()


def _children_by_key(el: etree._Element | None, pinfo: NodeInfo | None, schema: Schema,
                     ) -> dict[tuple[Any, ...], tuple[etree._Element, NodeInfo]]:
    out: dict[tuple[Any, ...], tuple[etree._Element, NodeInfo]] = {}
    if el is None:
        return out
    for child in el:
        if not isinstance(child.tag, str):
            continue
        qn = etree.QName(child)
        info = schema.child_of(pinfo, qn.namespace, qn.localname)
        if info is None:
            continue
        out[(child.tag, _keys(child, info))] = (child, info)
    return out


def _values(given: Any, names: list[str]) -> list[str]:
    """The values at a "/"-separated path in an input dict (through lists)."""
    if isinstance(given, list):
        return [v for item in given for v in _values(item, names)]
    if not names:
        return [] if given is None or isinstance(given, dict) else [str(given)]
    if not isinstance(given, Mapping):
        return []
    return _values(given.get(names[0]), names[1:])


def _element_values(el: etree._Element, names: list[str]) -> list[str]:
    """The texts at a "/"-separated path of local names below an element."""
    nodes = [el]
    for name in names:
        nodes = [c for n in nodes for c in n
                 if isinstance(c.tag, str) and etree.QName(c).localname == name]
    return [(n.text or "").strip() for n in nodes]
