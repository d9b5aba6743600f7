"""The NETCONF operations: one function per RPC, all behind `dispatch`.

Base operations (RFC 6241), create-subscription (RFC 5277), get-schema (RFC 6022), and the
role's own RPCs (validated against its YANG modules by libyang, input and output).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

import libyang
from lxml import etree

from nvo3.netconf.proto.errors import (
    RpcError,
    bad_element,
    invalid_value,
    missing_element,
    operation_not_supported,
)
from nvo3.netconf.proto.xml import (
    BASE_NS,
    MONITORING_NS,
    NOTIF_NS,
    WITH_DEFAULTS_NS,
    base,
    find_child,
    local_name,
    namespace,
    qname,
)
from nvo3.netconf.server import split_edit
from nvo3.netconf.server.context import CallingSession, OperationServer
from nvo3.netconf.server.datastore import Snapshot, data_element
from nvo3.netconf.server.edit import Editor
from nvo3.netconf.server.filters import FilterError, subtree_filter, xpath_filter
from nvo3.netconf.server.merge import edit_content, is_plain_merge, merged
from nvo3.netconf.server.notifications import STREAM, Subscription, now, parse_time
from nvo3.netconf.server.replies import RawXml, Reply, RpcErrors
from nvo3.netconf.server.role_api import ApplyError
from nvo3.netconf.server.validation import rpc_error_from, validate_rpc_input

#: One NETCONF operation: the server, the calling session and the operation element.
Operation = Callable[[OperationServer, CallingSession, etree._Element], Reply]
WITH_DEFAULTS_MODES = ("explicit", "trim", "report-all", "report-all-tagged")


# -- parameters ---------------------------------------------------------------------------

def _text(op: etree._Element, name: str, default: str | None = None,
          ns: str = BASE_NS) -> str | None:
    for child in op:
        if isinstance(child.tag, str) and local_name(child) == name \
                and namespace(child) in (ns, None):
            return (child.text or "").strip()
    return default


def _choice(op: etree._Element, name: str, allowed: tuple[str, ...], default: str) -> str:
    value = _text(op, name)
    if value is None:
        return default
    if value not in allowed:
        raise bad_element(name, f'<{name}> must be one of {", ".join(allowed)}, not "{value}"',
                          tag="invalid-value")
    return value


def _datastore_element(op: etree._Element, name: str) -> etree._Element:
    """The element inside <source>/<target>: a datastore name or an inline <config>."""
    holder = find_child(op, name)
    if holder is None:
        raise missing_element(name, local_name(op))
    child = next((c for c in holder if isinstance(c.tag, str)), None)
    if child is None:
        raise missing_element("datastore", name)
    if local_name(child) == "url":
        raise operation_not_supported("the :url capability")
    return child


def _allowed(op: etree._Element, name: str, child: etree._Element,
             allowed: tuple[str, ...]) -> str:
    ds = local_name(child)
    if ds not in allowed:
        raise bad_element(ds, f"<{name}> cannot be <{ds}> for <{local_name(op)}>",
                          tag="invalid-value")
    return ds


def _datastore(op: etree._Element, name: str, allowed: tuple[str, ...]) -> str:
    """The datastore named in <source>/<target>, one of `allowed`."""
    return _allowed(op, name, _datastore_element(op, name), allowed)


def _source(op: etree._Element, allowed: tuple[str, ...]) -> str | etree._Element:
    """The datastore named in <source>, one of `allowed`, or the inline <config> element."""
    child = _datastore_element(op, "source")
    if local_name(child) == "config":
        return child
    return _allowed(op, "source", child, allowed)


def _with_defaults(op: etree._Element) -> str:
    value = _text(op, "with-defaults", ns=WITH_DEFAULTS_NS)
    if value is None:
        return "explicit"
    if value not in WITH_DEFAULTS_MODES:
        raise bad_element("with-defaults", f'unknown with-defaults mode "{value}"',
                          tag="invalid-value")
    return value


def _filtered(server: OperationServer, xml: bytes, filt: etree._Element | None) -> RawXml:
    if filt is None:
        return RawXml(b"<data xmlns=\"%s\">%s</data>" % (BASE_NS.encode(), xml))
    data = data_element(xml)
    kind = filt.get("type") or filt.get(qname(BASE_NS, "type")) or "subtree"
    keys = server.schema.list_keys
    try:
        if kind == "subtree":
            result = subtree_filter(data, filt, keys)
        elif kind == "xpath":
            select = filt.get("select") or filt.get(qname(BASE_NS, "select"))
            if not select:
                raise RpcError("missing-attribute", "an xpath filter needs a select attribute",
                               type="protocol", info=[("bad-attribute", "select"),
                                                      ("bad-element", "filter")])
            nsmap = {p: n for p, n in filt.nsmap.items() if p}
            nsmap.update(server.schema.namespaces)
            result = xpath_filter(data, select, nsmap, keys)
        else:
            raise RpcError("bad-attribute", f'unknown filter type "{kind}"', type="protocol",
                           info=[("bad-attribute", "type"), ("bad-element", "filter")])
    except FilterError as exc:
        raise invalid_value(f"bad filter: {exc}") from None
    return RawXml(etree.tostring(result))


# -- retrieval ----------------------------------------------------------------------------

def get_config(server: OperationServer, session: CallingSession, op: etree._Element) -> Reply:
    """<get-config> (RFC 6241 section 7.1): a datastore's configuration, filtered."""
    source = _datastore(op, "source", ("running", "candidate", "startup"))
    wd = _with_defaults(op)
    with server.lock:                  # printed under the lock: an in-place edit may follow
        xml = server.datastores.get(source).xml(wd)
    return [_filtered(server, xml, find_child(op, "filter"))]


def get(server: OperationServer, session: CallingSession, op: etree._Element) -> Reply:
    """<get> (RFC 6241 section 7.7): running plus every config-false tree, filtered."""
    wd = _with_defaults(op)
    return [_filtered(server, server.operational(wd), find_child(op, "filter"))]


# -- editing ------------------------------------------------------------------------------

def edit_config(server: OperationServer, session: CallingSession, op: etree._Element) -> Reply:
    """<edit-config> (RFC 6241 section 7.2) on running or candidate."""
    target = _datastore(op, "target", ("running", "candidate"))
    default_op = _choice(op, "default-operation", ("merge", "replace", "none"), "merge")
    test_option = _choice(op, "test-option", ("test-then-set", "set", "test-only"),
                          "test-then-set")
    error_option = _choice(op, "error-option", ("stop-on-error", "continue-on-error",
                                                "rollback-on-error"), "stop-on-error")
    config = find_child(op, "config")
    if config is None:
        if find_child(op, "url") is not None:
            raise operation_not_supported("the :url capability")
        raise missing_element("config", "edit-config")
    sid = session.session_id
    ds = server.datastores
    with server.lock:
        ds.check_writable(target, sid)
        if is_plain_merge(config, default_op):
            content = edit_content(config)
            if test_option != "test-only" and _as_session(
                    server, sid, lambda: ds.merge_in_place(target, content, sid)):
                return []
            snapshot = merged(server.schema, ds.get(target), content)
            if test_option != "test-only":
                _store(server, target, snapshot, sid, merged_xml=content)
            return []
        budget = ds.in_place_budget(target)
        if test_option != "test-only" and error_option != "continue-on-error" and budget:
            split = split_edit.split(server.schema, config, default_op, budget)
            if split is not None and _as_session(
                    server, sid, lambda: ds.edit_in_place(target, split, sid)):
                return []
        tree = ds.get(target).tree()
        editor = Editor(server.schema, default_op, error_option == "continue-on-error")
        try:
            errors = editor.apply(tree, config).errors
        except RpcError as first:
            if error_option == "rollback-on-error":
                raise
            errors = [first]                   # stop-on-error keeps what came before it
        try:
            snapshot = Snapshot.validated(server.schema, tree)
        except RpcError as invalid:
            raise RpcErrors([*errors, invalid]) from None
        if test_option != "test-only":
            _store(server, target, snapshot, sid)
    if errors:
        raise RpcErrors(errors)
    return []


def _as_session(server: OperationServer, sid: int, change: Callable[[], bool]) -> bool:
    """Run `change` on behalf of session `sid` (the netconf-config-change event names it)."""
    server.current_session = sid
    try:
        return change()
    finally:
        server.current_session = None


def _store(server: OperationServer, target: str, snapshot: Snapshot, sid: int,
           merged_xml: bytes | None = None) -> None:
    """Write `snapshot` to `target`; `merged_xml`: the plain-merge edit content that made it
    from the target's current configuration (running records just that in its journal)."""
    ds = server.datastores
    server.current_session = sid
    try:
        if target == "running":
            ds.set_running(snapshot, sid, merged_xml)
        elif target == "candidate":
            ds.set_candidate(snapshot, sid)
        else:
            ds.set_startup(snapshot, sid)
    finally:
        server.current_session = None


def _source_snapshot(server: OperationServer, source: str | etree._Element) -> Snapshot:
    if isinstance(source, str):
        return server.datastores.get(source)
    data = etree.Element(base("data"))
    data.extend(etree.fromstring(etree.tostring(c)) for c in source if isinstance(c.tag, str))
    return Snapshot.validated(server.schema, data)


def copy_config(server: OperationServer, session: CallingSession, op: etree._Element) -> Reply:
    """<copy-config> (RFC 6241 section 7.3) from a datastore or inline <config>."""
    target = _datastore(op, "target", ("running", "candidate", "startup"))
    source = _source(op, ("running", "candidate", "startup"))
    if source == target:
        raise invalid_value("<source> and <target> are the same datastore")
    with server.lock:
        snapshot = _source_snapshot(server, source)
        _store(server, target, snapshot, session.session_id)
    return []


def delete_config(server: OperationServer, session: CallingSession, op: etree._Element) -> Reply:
    """<delete-config> (RFC 6241 section 7.4): only startup can be deleted."""
    _datastore(op, "target", ("startup",))
    with server.lock:
        server.datastores.delete_startup(session.session_id)
    return []


def validate(server: OperationServer, session: CallingSession, op: etree._Element) -> Reply:
    """<validate> (RFC 6241 section 8.6) of a datastore or inline <config>."""
    source = _source(op, ("running", "candidate", "startup"))
    with server.lock:
        snapshot = _source_snapshot(server, source)
        if isinstance(source, str):
            Snapshot.validated(server.schema, snapshot.tree())
    return []


# -- locks and commit ---------------------------------------------------------------------

def lock(server: OperationServer, session: CallingSession, op: etree._Element) -> Reply:
    """<lock> (RFC 6241 section 7.5) of a datastore for the calling session."""
    target = _datastore(op, "target", ("running", "candidate", "startup"))
    with server.lock:
        server.datastores.lock_datastore(target, session.session_id)
        server.lock_times[target] = now()
    return []


def unlock(server: OperationServer, session: CallingSession, op: etree._Element) -> Reply:
    """<unlock> (RFC 6241 section 7.6) of a datastore the calling session holds."""
    target = _datastore(op, "target", ("running", "candidate", "startup"))
    with server.lock:
        server.datastores.unlock_datastore(target, session.session_id)
        server.lock_times.pop(target, None)
    return []


def commit(server: OperationServer, session: CallingSession, op: etree._Element) -> Reply:
    """<commit> (RFC 6241 sections 8.3, 8.4), confirmed or not."""
    confirmed = find_child(op, "confirmed") is not None
    timeout_text = _text(op, "confirm-timeout", "600")
    try:
        timeout = int(timeout_text or "")
        if not 1 <= timeout <= 4294967295:
            raise ValueError
    except ValueError:
        raise bad_element("confirm-timeout", f'confirm-timeout "{timeout_text}" is not a '
                          "number of seconds (1..4294967295)", tag="invalid-value") from None
    with server.lock:
        server.current_session = session.session_id
        try:
            server.datastores.commit(session.session_id, confirmed=confirmed, timeout=timeout,
                                     persist=_text(op, "persist"),
                                     persist_id=_text(op, "persist-id"))
        finally:
            server.current_session = None
    return []


def cancel_commit(server: OperationServer, session: CallingSession, op: etree._Element) -> Reply:
    """<cancel-commit> (RFC 6241 section 8.4.4.1): roll a confirmed commit back."""
    with server.lock:
        server.datastores.cancel_commit(session.session_id, _text(op, "persist-id"))
    return []


def discard_changes(server: OperationServer, session: CallingSession, op: etree._Element) -> Reply:
    """<discard-changes> (RFC 6241 section 8.3.4.2): candidate := running."""
    with server.lock:
        server.datastores.discard_changes(session.session_id)
    return []


# -- sessions -----------------------------------------------------------------------------

def close_session(server: OperationServer, session: CallingSession, op: etree._Element) -> Reply:
    """<close-session> (RFC 6241 section 7.8): <ok/>, then the session closes."""
    return []                                   # the session closes after the reply


def kill_session(server: OperationServer, session: CallingSession, op: etree._Element) -> Reply:
    """<kill-session> (RFC 6241 section 7.9) of another session."""
    text = _text(op, "session-id")
    if text is None:
        raise missing_element("session-id", "kill-session")
    try:
        target_id = int(text)
    except ValueError:
        raise bad_element("session-id", f'"{text}" is not a session id',
                          tag="invalid-value") from None
    if target_id == session.session_id:
        raise invalid_value("a session cannot kill itself: use <close-session>")
    if not server.kill(target_id, killed_by=session.session_id):
        raise invalid_value(f"no session {target_id}")
    return []


# -- notifications and discovery ------------------------------------------------------------

def create_subscription(server: OperationServer, session: CallingSession,
                        op: etree._Element) -> Reply:
    """<create-subscription> (RFC 5277 section 2.1), with replay and filter."""
    if session.subscription is not None and not session.subscription.done:
        raise RpcError("operation-failed", "this session already has a subscription",
                       type="protocol")
    stream = _text(op, "stream", STREAM, ns=NOTIF_NS)
    if stream != STREAM:
        raise bad_element("stream", f'unknown stream "{stream}"', tag="invalid-value")
    try:
        start = _optional_time(op, "startTime")
        stop = _optional_time(op, "stopTime")
    except ValueError as exc:
        raise bad_element("startTime", f"bad time: {exc}", tag="bad-element") from None
    if stop is not None and start is None:
        raise bad_element("stopTime", "stopTime needs startTime", tag="bad-element")
    if start is not None and start > now():
        raise bad_element("startTime", "startTime is in the future", tag="bad-element")
    if stop is not None and start is not None and stop < start:
        raise bad_element("stopTime", "stopTime is before startTime", tag="bad-element")
    filt = find_child(op, "filter")
    if filt is None:
        filt = next((c for c in op if isinstance(c.tag, str) and local_name(c) == "filter"),
                    None)
    select = _notification_selector(server, filt)
    sub = Subscription(send=session.send_notification, select=select, start=start, stop=stop)
    session.subscription = sub
    # the reply must precede replayed events: subscribe after it is sent
    session.after_reply = lambda: server.events.subscribe(sub)
    return []


def _optional_time(op: etree._Element, name: str) -> datetime | None:
    text = _text(op, name, None, ns=NOTIF_NS)
    return parse_time(text) if text else None


def _notification_selector(server: OperationServer, filt: etree._Element | None,
                           ) -> Callable[[etree._Element], etree._Element | None]:
    if filt is None:
        return lambda content: content

    def select(content: etree._Element) -> etree._Element | None:
        try:
            out = etree.fromstring(_filtered(server, etree.tostring(content), filt).xml)
        except RpcError:
            return None
        return out[0] if len(out) else None
    _filtered(server, b"", filt)               # a broken filter fails the subscription now
    return select


def get_schema(server: OperationServer, session: CallingSession, op: etree._Element) -> Reply:
    """<get-schema> (RFC 6022 section 3.1): a served module's YANG text."""
    ident = _text(op, "identifier", None, ns=MONITORING_NS)
    if not ident:
        raise missing_element("identifier", "get-schema")
    version = _text(op, "version", None, ns=MONITORING_NS) or None
    fmt = _text(op, "format", "yang", ns=MONITORING_NS) or "yang"
    if fmt.split(":")[-1] != "yang":
        raise invalid_value(f'schema format "{fmt}" is not supported (only yang)')
    text = server.schema.module_text(ident, version)
    if text is None:
        raise RpcError("invalid-value", f'no schema "{ident}"'
                       + (f" revision {version}" if version else ""), type="protocol",
                       info=[("bad-element", "identifier")])
    data = etree.Element(qname(MONITORING_NS, "data"), nsmap={None: MONITORING_NS})
    data.text = text
    return [data]


# -- the role's own RPCs --------------------------------------------------------------------

def role_rpc(server: OperationServer, session: CallingSession, op: etree._Element) -> Reply:
    """One of the role's own RPCs: input and output validated against its modules."""
    name = local_name(op)
    module = server.schema.modules_by_ns.get(namespace(op) or "")
    handler = server.handlers.get(f"{module}:{name}")
    if module is None or handler is None:
        raise RpcError("operation-not-supported", f'unknown operation "{name}"',
                       type="protocol", info=[("bad-element", name)])
    ctx = server.schema.context
    try:
        node = ctx.parse_op_mem("xml", etree.tostring(op).decode(),
                                libyang.DataType.RPC_YANG)
    except libyang.LibyangError as exc:
        raise rpc_error_from(exc, server.schema, error_type="application") from None
    try:
        with server.lock:              # the input's leafrefs point into running
            validate_rpc_input(node, server.datastores.get("running").dnode)
    except libyang.LibyangError as exc:
        node.free()
        raise rpc_error_from(exc, server.schema, error_type="application") from None
    try:
        given = node.print_dict(strip_prefixes=True,
                                include_implicit_defaults=True).get(name, {})
    finally:
        node.free()
    try:
        output = handler(given or {})
    except ApplyError as exc:
        raise RpcError(exc.tag, str(exc), path=exc.path, app_tag=exc.app_tag) from None
    if not output:
        return []
    try:
        reply = ctx.get_module(module).parse_data_dict({name: output}, rpcreply=True,
                                                       strict=True)
    except libyang.LibyangError as exc:
        raise RpcError("operation-failed", f"{name} produced invalid output: {exc}") from None
    try:
        printed = etree.fromstring(reply.print_mem("xml", pretty=False))
    finally:
        reply.free()
    return [RawXml(etree.tostring(child)) for child in printed]


BASE_OPERATIONS: dict[tuple[str, str], Operation] = {
    (BASE_NS, "get-config"): get_config,
    (BASE_NS, "get"): get,
    (BASE_NS, "edit-config"): edit_config,
    (BASE_NS, "copy-config"): copy_config,
    (BASE_NS, "delete-config"): delete_config,
    (BASE_NS, "validate"): validate,
    (BASE_NS, "lock"): lock,
    (BASE_NS, "unlock"): unlock,
    (BASE_NS, "commit"): commit,
    (BASE_NS, "cancel-commit"): cancel_commit,
    (BASE_NS, "discard-changes"): discard_changes,
    (BASE_NS, "close-session"): close_session,
    (BASE_NS, "kill-session"): kill_session,
    (NOTIF_NS, "create-subscription"): create_subscription,
    (MONITORING_NS, "get-schema"): get_schema,
}


def dispatch(server: OperationServer, session: CallingSession, op: etree._Element) -> Reply:
    """Run operation `op` for `session`: a base operation or one of the role's RPCs."""
    ns = namespace(op) or BASE_NS
    handler = BASE_OPERATIONS.get((ns, local_name(op)))
    if handler is None:
        return role_rpc(server, session, op)
    return handler(server, session, op)
