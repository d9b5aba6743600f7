"""Turn instance data into validated libyang trees, and libyang failures into <rpc-error>s.

Error tags follow RFC 7950 sections 8.3 and 15 and RFC 6241 Appendix A.
"""

from __future__ import annotations

import re

import libyang
from _libyang import ffi, lib
from lxml import etree

from nvo3.netconf.proto.errors import RpcError
from nvo3.netconf.server.schema import CapturedError, LibyangIssue, Schema

# libyang-python disables path resolution (ly_set_log_clb(NULL, 0)): without it no libyang
# error carries a path, and no <rpc-error> an <error-path>.
lib.ly_set_log_clb(ffi.NULL, True)

_APP_TAG_TO_TAG = {
    "instance-required": "data-missing",
    "missing-choice": "data-missing",
    "too-many-elements": "operation-failed",
    "too-few-elements": "operation-failed",
    "data-not-unique": "operation-failed",
    "must-violation": "operation-failed",
}


def _tag_for(issue: LibyangIssue) -> tuple[str, str | None]:
    """(error-tag, error-app-tag) for one libyang issue."""
    msg = issue.message
    if issue.app_tag in _APP_TAG_TO_TAG:
        return _APP_TAG_TO_TAG[issue.app_tag], issue.app_tag
    if issue.app_tag:                       # a must/when with its own error-app-tag
        return "operation-failed", issue.app_tag
    if "not found as a child" in msg:     # libyang 2.1 reports it as LYVE_REFERENCE too
        return "unknown-element", None
    if msg.startswith("No module with namespace"):
        return "unknown-namespace", None
    if issue.vecode == lib.LYVE_REFERENCE:
        return "data-missing", "instance-required"
    if "Mandatory" in msg or "mandatory" in msg:
        return "data-missing", None
    if "List instance is missing its key" in msg or "missing its key" in msg:
        return "missing-element", None
    if "Must condition" in msg:
        return "operation-failed", "must-violation"
    if "Duplicate instance" in msg:
        return "data-exists", None
    if issue.vecode == lib.LYVE_SYNTAX_XML and ("not found" in msg or "Unknown" in msg):
        return "unknown-element", None
    if "Invalid" in msg or "does not satisfy" in msg or "Unsatisfied" in msg \
            or "not a valid" in msg or "value" in msg:
        return "invalid-value", None
    return "operation-failed", None


_QUOTED_NODE = re.compile(r'(?:node|key) "([^"]+)"', re.IGNORECASE)
_QUOTED_NAMESPACE = re.compile(r'namespace "([^"]+)"')
_LOCATION = re.compile(r'(?:Data|Schema) location "([^"]+)"')


def rpc_error_from(exc: libyang.LibyangError, schema: Schema,
                   error_type: str = "application") -> RpcError:
    """The <rpc-error> for a libyang failure (its first issue carries the detail)."""
    issues = exc.issues if isinstance(exc, CapturedError) else []
    if not issues:
        return RpcError("operation-failed", str(exc), type=error_type)
    first = issues[0]
    tag, app_tag = _tag_for(first)
    info: list[tuple[str, str]] = []
    if tag in ("missing-element", "unknown-element", "bad-element"):
        m = _QUOTED_NODE.search(first.message)
        if m:
            info.append(("bad-element", m.group(1)))
    elif tag == "unknown-namespace":
        m = _QUOTED_NAMESPACE.search(first.message)
        if m:
            info.append(("bad-namespace", m.group(1)))
    where = _LOCATION.search(first.path or "")
    path = where.group(1) if where else first.path
    prefixes = {}
    if path:
        for mod in set(re.findall(r"([A-Za-z_][\w.-]*):", path)):
            if mod in schema.namespaces:
                prefixes[mod] = schema.namespaces[mod]
    return RpcError(tag, first.message, type=error_type, path=path, app_tag=app_tag,
                    info=info, path_namespaces=prefixes)


def _children_xml(data: etree._Element) -> bytes:
    return b"".join(etree.tostring(child) for child in data)


def parse_config(schema: Schema, data: etree._Element) -> libyang.DNode | None:
    """Parse and fully validate configuration (<data> children); raise RpcError if invalid."""
    xml = _children_xml(data)
    if not xml.strip():
        return None
    try:
        return schema.context.parse_data_mem(xml, "xml", strict=True, no_state=True)
    except libyang.LibyangError as exc:
        raise rpc_error_from(exc, schema) from None


def validate_rpc_input(rpc: libyang.DNode, running: libyang.DNode | None) -> None:
    """Validate a parsed RPC/action input against the data it refers to (RFC 7950 section
    7.14.2: leafrefs and must expressions of an input are evaluated against the datastore).

    The binding's `validate(rpc=True)` passes no data tree, so every leafref of an input into
    configuration (e.g. an NVE named by its key) would be refused as missing."""
    dep = ffi.NULL if running is None else running.cdata
    if lib.lyd_validate_op(rpc.cdata, dep, lib.LYD_TYPE_RPC_YANG, ffi.NULL) != lib.LY_SUCCESS:
        raise rpc.context.error("validation failed")
