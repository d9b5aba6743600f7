"""What a configuration change or role RPC did, in one short line for the audit trail.

Only names, list keys and counts: never a leaf's value (a peer's password is a leaf), except
the input leaves of a role RPC whose names say they are not secrets.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

from lxml import etree

from nvo3.netconf.proto.xml import BASE_NS, local_name, namespace

#: Input leaves of a role RPC never shown, by name.
SECRET = re.compile(r"pass|secret|private|token|key$|credential", re.IGNORECASE)
#: At most this many input leaves, each value at most this long.
MAX_LEAVES, MAX_VALUE = 6, 64


def child(op: etree._Element, name: str) -> etree._Element | None:
    """The child `name` of a base operation (in the base namespace, or in none)."""
    found = op.find(f"{{{BASE_NS}}}{name}")
    return found if found is not None else op.find(name)


def datastore_of(op: etree._Element, holder: str) -> str:
    """The datastore named in <target>/<source> ("config" for an inline one)."""
    el = child(op, holder)
    inner = next((c for c in el if isinstance(c.tag, str)), None) if el is not None else None
    return "-" if inner is None else local_name(inner)


def edit_summary(op: etree._Element, modules: Mapping[str, str],
                 edited: tuple[str, ...] | None) -> str:
    """E.g. "merge 5 nodes: /nvo3-nve:nve/remote-macs/remote-mac[vni='10'][mac='...'] (+1, ~0,
    -0)"; `edited` the paths an in-place edit touched (with their counts), else the request's
    top nodes are named."""
    default_op = child(op, "default-operation")
    how = (default_op.text or "").strip() if default_op is not None else "merge"
    config = child(op, "config")
    nodes = sum(1 for _ in config.iter(etree.Element)) - 1 if config is not None else 0
    text = f"{how} {nodes} node{'s' if nodes != 1 else ''}"
    counts = getattr(edited, "counts", None)
    if edited:
        more = f" and {len(edited) - 1} more" if len(edited) > 1 else ""
        text += f": {edited[0]}{more}"
    elif config is not None:
        text += ": " + ", ".join(request_paths(config, modules)[:3])
    if counts is not None:
        text += " (+{}, ~{}, -{})".format(*counts)
    return text


def request_paths(config: etree._Element, modules: Mapping[str, str]) -> list[str]:
    """The top two levels an edit names, module-prefixed: ["/nvo3-nve:nve/remote-macs"]."""
    paths: list[str] = []
    for top in config:
        if not isinstance(top.tag, str):
            continue
        head = f"/{modules.get(namespace(top) or '', '?')}:{local_name(top)}"
        below = sorted({local_name(c) for c in top if isinstance(c.tag, str)})
        paths += [f"{head}/{b}" for b in below] or [head]
    return paths or ["(nothing)"]


def rpc_input_summary(op: etree._Element) -> str:
    """The top-level input leaves of a role RPC ("name=web1 tenant=alice"), secrets left out."""
    shown: list[str] = []
    for c in op:
        if len(shown) == MAX_LEAVES:
            break
        if not isinstance(c.tag, str) or len(c) or SECRET.search(local_name(c)):
            continue
        value = (c.text or "").strip()
        if value and len(value) <= MAX_VALUE:
            shown.append(f"{local_name(c)}={value}")
    return " ".join(shown)
