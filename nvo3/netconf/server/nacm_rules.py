"""NACM (RFC 8341) rules: the /nacm configuration compiled for one user, and rule matching.

Pure: no engine, no I/O. `NacmConfig.parse` reads the `/nacm` container in `Snapshot.to_dict`
shape; `NacmConfig.rules_for` gives the `UserRules` of one user (the rule lists of the user's
groups, in order, split by kind); `UserRules.data`, `.exec` and `.notification` decide one
access as RFC 8341 section 3.4 says: the first matching rule wins, then the node's or
operation's `nacm:default-deny-*` annotation, then the global default.

Data node paths (a rule's `path`, the node a check is about) are `Step` tuples: namespace,
local name and, for a list entry, its key values. A rule's path is written as an instance
identifier (`/vc:vcenter/tenants/tenant[name='alice']`); a prefix is a module name or module
prefix (the XML namespace declarations of the edit that set it are not kept), an unknown or
missing prefix matches the name in any module. A rule's path matches the node it names and
every node below it (RFC 8341 section 3.2.3).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

OPERATIONS = ("create", "read", "update", "delete", "exec")
WRITE_OPERATIONS = ("create", "update", "delete")


@dataclass(frozen=True)
class Step:
    """One step of a data path: namespace (None: any), local name, key values (name, value)."""

    namespace: str | None
    name: str
    keys: tuple[tuple[str, str], ...] = ()


Path = tuple[Step, ...]


class PathError(ValueError):
    """A rule's path that cannot be read."""


_STEP = re.compile(r"\s*(?:([\w.-]+):)?([\w.-]+|\*)\s*")
_PRED = re.compile(r"\[\s*(?:(?:[\w.-]+):)?([\w.-]+|\.)\s*=\s*(?:'([^']*)'|\"([^\"]*)\")\s*\]")


def parse_path(text: str, namespaces: Mapping[str, str]) -> Path:
    """Steps of an instance-identifier-like path; `namespaces` maps module names and prefixes
    to namespaces. "/" is the empty path (every data node)."""
    text = text.strip()
    if not text.startswith("/"):
        raise PathError(f"path {text!r} does not start with /")
    steps: list[Step] = []
    pos = 1
    while pos < len(text):
        m = _STEP.match(text, pos)
        if m is None or not m.group(2):
            raise PathError(f"path {text!r}: cannot read a step at offset {pos}")
        prefix, name = m.group(1), m.group(2)
        pos = m.end()
        keys = []
        while pos < len(text) and text[pos] == "[":
            p = _PRED.match(text, pos)
            if p is None:
                raise PathError(f"path {text!r}: cannot read a predicate at offset {pos}")
            keys.append((p.group(1), p.group(2) if p.group(2) is not None else p.group(3)))
            pos = p.end()
        steps.append(Step(namespaces.get(prefix) if prefix else None, name, tuple(keys)))
        if pos < len(text):
            if text[pos] != "/":
                raise PathError(f"path {text!r}: expected / at offset {pos}")
            pos += 1
    return tuple(steps)


def path_matches(rule: Path, node: Path) -> bool:
    """True when `node` is the node `rule` names or below it."""
    if len(rule) > len(node):
        return False
    for r, n in zip(rule, node, strict=False):
        if r.name != "*" and r.name != n.name:
            return False
        if r.namespace is not None and r.namespace != n.namespace:
            return False
        if r.keys:
            have = dict(n.keys)
            if any(have.get(k) != v for k, v in r.keys):
                return False
    return True


def schema_path(path: Path) -> tuple[tuple[str | None, str], ...]:
    """The schema node a path names (keys dropped)."""
    return tuple((s.namespace, s.name) for s in path)


@dataclass(frozen=True)
class Rule:
    """One NACM rule. `kind`: any (no rule-type), rpc, notification or data."""

    name: str
    module: str                       # "*" or a module name
    kind: str
    target: str | None                # rpc-name or notification-name ("*": any)
    path: Path | None
    operations: frozenset[str]
    permit: bool

    def matches_module(self, module: str) -> bool:
        """The rule's module-name matches `module`."""
        return self.module in ("*", module)


def _operations(value: Any) -> frozenset[str]:
    if value is None or value == "*" or (isinstance(value, str) and value.strip() == "*"):
        return frozenset(OPERATIONS)
    words = value.split() if isinstance(value, str) else list(value)
    return frozenset(w for w in words if w in OPERATIONS)


def _rule(raw: Mapping[str, Any], namespaces: Mapping[str, str]) -> Rule | None:
    module = raw.get("module-name", "*") or "*"
    if "rpc-name" in raw:
        kind, target, path = "rpc", str(raw["rpc-name"]), None
    elif "notification-name" in raw:
        kind, target, path = "notification", str(raw["notification-name"]), None
    elif "path" in raw:
        kind, target = "data", None
        try:
            path = parse_path(str(raw["path"]), namespaces)
        except PathError:
            return None               # a rule that cannot match anything
    else:
        kind, target, path = "any", None, None
    return Rule(str(raw.get("name", "")), str(module), kind, target, path,
                _operations(raw.get("access-operations", "*")),
                raw.get("action") == "permit")


@dataclass(frozen=True)
class Defaults:
    """The global settings of /nacm (RFC 8341 defaults)."""

    enabled: bool = True
    read: bool = True
    write: bool = False
    exec: bool = True
    external_groups: bool = True


@dataclass
class NacmConfig:
    """The /nacm configuration: defaults, groups, rule lists."""

    defaults: Defaults = field(default_factory=Defaults)
    members: dict[str, set[str]] = field(default_factory=dict)          # group -> users
    rule_lists: list[tuple[frozenset[str], tuple[Rule, ...]]] = field(default_factory=list)

    @classmethod
    def parse(cls, nacm: Mapping[str, Any] | None, namespaces: Mapping[str, str]) -> NacmConfig:
        """From the /nacm container as `Snapshot.subtree_dict` gives it (None: defaults)."""
        nacm = nacm or {}
        defaults = Defaults(
            enabled=nacm.get("enable-nacm", True) is not False,
            read=nacm.get("read-default", "permit") == "permit",
            write=nacm.get("write-default", "deny") == "permit",
            exec=nacm.get("exec-default", "permit") == "permit",
            external_groups=nacm.get("enable-external-groups", True) is not False)
        members: dict[str, set[str]] = {}
        for group in (nacm.get("groups") or {}).get("group", []):
            members.setdefault(group["name"], set()).update(group.get("user-name", []))
        lists = []
        for rule_list in nacm.get("rule-list", []):
            rules = tuple(r for r in (_rule(raw, namespaces) for raw in rule_list.get("rule", []))
                          if r is not None)
            lists.append((frozenset(rule_list.get("group", [])), rules))
        return cls(defaults, members, lists)

    def groups_of(self, user: str, external: Iterable[str]) -> frozenset[str]:
        """The user's groups: configured ones, and the transport's when allowed (3.5.2)."""
        groups = {g for g, users in self.members.items() if user in users}
        if self.defaults.external_groups:
            groups.update(external)
        return frozenset(groups)

    def rules_for(self, user: str, external: Iterable[str]) -> UserRules:
        """The compiled rules of one user."""
        groups = self.groups_of(user, external)
        rules = [r for names, rs in self.rule_lists if "*" in names or names & groups
                 for r in rs]
        return UserRules(self.defaults, tuple(rules))


@dataclass
class UserRules:
    """The rules that apply to one user, in order, by kind."""

    defaults: Defaults
    rules: tuple[Rule, ...]
    data_rules: tuple[Rule, ...] = ()
    exec_rules: tuple[Rule, ...] = ()
    notification_rules: tuple[Rule, ...] = ()
    #: schema paths (namespace, name)... of rule targets: checks descend to them
    targets: frozenset[tuple[tuple[str | None, str], ...]] = frozenset()
    #: module names data rules name (a node of another module below a node may differ)
    modules: frozenset[str] = frozenset()
    write_all: bool = False
    read_all: bool = False

    def __post_init__(self) -> None:
        self.data_rules = tuple(r for r in self.rules if r.kind in ("any", "data"))
        self.exec_rules = tuple(r for r in self.rules if r.kind in ("any", "rpc"))
        self.notification_rules = tuple(r for r in self.rules
                                        if r.kind in ("any", "notification"))
        self.targets = frozenset(schema_path(r.path) for r in self.data_rules
                                 if r.path is not None)
        self.modules = frozenset(r.module for r in self.data_rules if r.module != "*")
        self.write_all = self._all(WRITE_OPERATIONS)
        self.read_all = self._all(("read",))

    def _all(self, operations: tuple[str, ...]) -> bool:
        """True when every data node is permitted `operations` by a catch-all rule that no
        earlier rule can override (annotations included: a matching rule overrides them)."""
        for rule in self.data_rules:
            if not rule.operations & set(operations):
                continue
            catch_all = rule.module == "*" and not rule.path
            if catch_all and rule.permit and rule.operations >= set(operations):
                return True
            if not rule.permit:
                return False
        return False

    # decisions -----------------------------------------------------------------------------
    def data(self, path: Path, module: str, operation: str, annotation: str | None) -> bool:
        """May the user do `operation` on the data node at `path` (of `module`, with
        `annotation` "all", "write" or None)?"""
        for rule in self.data_rules:
            if operation in rule.operations and rule.matches_module(module) and (
                    rule.path is None or path_matches(rule.path, path)):
                return rule.permit
        if annotation == "all" or (annotation == "write" and operation != "read"):
            return False
        if operation == "read":
            return self.defaults.read
        return self.defaults.write

    def exec(self, module: str, name: str, deny_all: bool) -> bool:
        """May the user invoke operation `module:name`?"""
        for rule in self.exec_rules:
            if "exec" in rule.operations and rule.matches_module(module) and (
                    rule.target is None or rule.target in ("*", name)):
                return rule.permit
        return False if deny_all else self.defaults.exec

    def notification(self, module: str, name: str, deny_all: bool) -> bool:
        """May the user receive notification `module:name`?"""
        for rule in self.notification_rules:
            if "read" in rule.operations and rule.matches_module(module) and (
                    rule.target is None or rule.target in ("*", name)):
                return rule.permit
        return False if deny_all else self.defaults.read
