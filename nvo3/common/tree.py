"""Configuration and state as RFC 7951 dicts (module prefixes stripped): the shape roles use."""

from __future__ import annotations

from typing import Any

#: One YANG container or list entry as a dict: leaf name -> value, list name -> list of entries.
Tree = dict[str, Any]


def entries(tree: Tree | None, container: str, name: str) -> list[Tree]:
    """The entries of list `name` under `container` of `tree` (empty when any level is absent)."""
    return list(((tree or {}).get(container) or {}).get(name) or [])


def truthy(value: Any) -> bool:
    """A YANG boolean as RFC 7951 gives it (true/false) or as text ("true"/"false")."""
    return value is True or value == "true"
