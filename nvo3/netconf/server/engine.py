"""The NETCONF server engine: sessions, RPC dispatch, replies, notifications.

A `NetconfServer` serves one role's YANG modules. The transport (ssh.py) calls
`open_session` for each authenticated SSH session and feeds it whole <rpc> messages; the
engine answers through the session's sink. Every datastore operation runs under one lock, so
each is atomic with respect to the others. The engine knows YANG and NETCONF, nothing of VMs.
"""

from __future__ import annotations

import gc
import hashlib
import itertools
import logging
import threading
import time
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote

import libyang
from lxml import etree

from nvo3 import YANG_DIR
from nvo3.netconf.limits import ServerLimits
from nvo3.netconf.proto.errors import RpcError
from nvo3.netconf.proto.xml import BASE_NS, base, local_name, parse
from nvo3.netconf.server import config_change, operations
from nvo3.netconf.server.datastore import Snapshot, print_xml
from nvo3.netconf.server.datastores import Datastores
from nvo3.netconf.server.monitoring import ServerStatistics, SessionInfo, netconf_state
from nvo3.netconf.server.nacm import NACM_PATH, Accounts, Identity, Nacm
from nvo3.netconf.server.notifications import EventLog, Subscription, now
from nvo3.netconf.server.observer import EngineObserver
from nvo3.netconf.server.replies import RawXml, Reply, RpcErrors
from nvo3.netconf.server.role_api import ApplyError, ConfigChange, Role
from nvo3.netconf.server.schema import Schema
from nvo3.netconf.server.validation import rpc_error_from
from nvo3.netconf.ssh.transport import MessageSink

log = logging.getLogger(__name__)

BASE_CAPABILITIES = [
    "urn:ietf:params:netconf:base:1.0",
    "urn:ietf:params:netconf:base:1.1",
    "urn:ietf:params:netconf:capability:writable-running:1.0",
    "urn:ietf:params:netconf:capability:candidate:1.0",
    "urn:ietf:params:netconf:capability:confirmed-commit:1.0",
    "urn:ietf:params:netconf:capability:confirmed-commit:1.1",
    "urn:ietf:params:netconf:capability:rollback-on-error:1.0",
    "urn:ietf:params:netconf:capability:validate:1.0",
    "urn:ietf:params:netconf:capability:validate:1.1",
    "urn:ietf:params:netconf:capability:startup:1.0",
    "urn:ietf:params:netconf:capability:xpath:1.0",
    "urn:ietf:params:netconf:capability:notification:1.0",
    "urn:ietf:params:netconf:capability:interleave:1.0",
    "urn:ietf:params:netconf:capability:with-defaults:1.0?basic-mode=explicit"
    "&also-supported=report-all,report-all-tagged,trim",
]

_SPLIT = "\ue000"


class Session:
    """One NETCONF session: turns <rpc> messages into <rpc-reply> messages."""

    def __init__(self, server: NetconfServer, info: SessionInfo, sink: MessageSink):
        self.server = server
        self.info = info
        self.sink = sink
        self.session_id = info.session_id
        self.subscription: Subscription | None = None
        self.closed = False
        self.after_reply: Callable[[], None] | None = None
        self.identity: Identity | None = server.identity(info.username)

    @property
    def subscribed(self) -> bool:
        """True while the session has a live subscription (exempt from the idle timeout)."""
        return self.subscription is not None and not self.subscription.done

    def on_message(self, message: bytes) -> None:
        """Answer one whole <rpc> message (the transport calls this)."""
        t0 = time.perf_counter()
        counters = (self.info.counters, self.server.stats.counters)
        for c in counters:
            c.in_rpcs += 1
        op = None
        outcome = "ok"
        try:
            rpc = parse(message)
        except etree.XMLSyntaxError as exc:
            self._bad_rpc(RpcError("malformed-message", f"not well-formed XML: {exc}",
                                   type="rpc"), {})
            return
        if not isinstance(rpc.tag, str) or local_name(rpc) != "rpc":
            self._bad_rpc(RpcError("malformed-message", "expected an <rpc> element",
                                   type="rpc"), {})
            return
        attrs = dict(rpc.attrib)
        if "message-id" not in attrs:
            self._bad_rpc(RpcError("missing-attribute", "<rpc> has no message-id attribute",
                                   type="rpc", info=[("bad-attribute", "message-id"),
                                                     ("bad-element", "rpc")]), attrs)
            return
        op = next((c for c in rpc if isinstance(c.tag, str)), None)
        if op is None:
            self._bad_rpc(RpcError("missing-element", "<rpc> holds no operation",
                                   type="protocol", info=[("bad-element", "rpc")]), attrs)
            return
        try:
            content: Reply = self.server.dispatch(self, op)
            self._reply(attrs, content)
        except RpcError as err:
            outcome = err.tag
            self._reply_errors(attrs, [err])
        except RpcErrors as errs:
            outcome = errs.errors[0].tag if errs.errors else "operation-failed"
            self._reply_errors(attrs, errs.errors)
        except Exception as exc:  # a bug must not kill the session: report it
            log.exception("session %d: %s failed", self.session_id, local_name(op))
            outcome = "operation-failed"
            self._reply_errors(attrs, [RpcError("operation-failed", f"internal error: {exc}")])
        self.server.observer.rpc_done(self.info, op, outcome, time.perf_counter() - t0)
        if self.after_reply is not None:
            hook, self.after_reply = self.after_reply, None
            hook()
        if local_name(op) == "close-session" and op.nsmap.get(op.prefix) in (BASE_NS, None):
            self.sink.close()

    def _bad_rpc(self, err: RpcError, attrs: dict[str, str]) -> None:
        self.info.counters.in_bad_rpcs += 1
        self.server.stats.counters.in_bad_rpcs += 1
        self._reply_errors(attrs, [err])
        self.server.observer.rpc_done(self.info, None, err.tag, 0.0)

    def _reply(self, attrs: dict[str, str], content: Reply) -> None:
        head = etree.Element(base("rpc-reply"), nsmap={None: BASE_NS})
        for k, v in attrs.items():
            head.set(k, v)
        if not content:
            etree.SubElement(head, base("ok"))
            self.sink.send(etree.tostring(head))
            return
        raw = [c.xml for c in content if isinstance(c, RawXml)]
        if not raw:
            head.extend(c for c in content if not isinstance(c, RawXml))
            self.sink.send(etree.tostring(head))
            return
        head.text = _SPLIT        # the raw payload goes between the tags
        start, end = etree.tostring(head, encoding="utf-8").rsplit(_SPLIT.encode(), 1)
        self.sink.send(start + b"".join(raw) + end)

    def _reply_errors(self, attrs: dict[str, str], errors: list[RpcError]) -> None:
        for c in (self.info.counters, self.server.stats.counters):
            c.out_rpc_errors += 1
        self._reply(attrs, [e.to_xml() for e in errors])

    def send_notification(self, message: bytes) -> None:
        """Send a whole <notification> message to this session's client."""
        for c in (self.info.counters, self.server.stats.counters):
            c.out_notifications += 1
        self.sink.send(message)

    def send_notification_later(self, produce: Callable[[], bytes | None], size: int) -> None:
        """Send the <notification> message `produce()` makes (None: none), made on the
        session's own output thread when the transport has one (a filter's work then stalls
        no publisher), else now; `size`: its weight against the output limits meanwhile."""
        def counted() -> bytes | None:
            message = produce()
            if message is not None:
                for c in (self.info.counters, self.server.stats.counters):
                    c.out_notifications += 1
            return message
        later = getattr(self.sink, "send_later", None)
        if later is not None:
            later(counted, size)
        elif (message := counted()) is not None:
            self.sink.send(message)

    def on_close(self) -> None:
        """The transport is gone: end the session in the engine."""
        self.server.session_closed(self)


class NetconfServer:
    """The engine for one role: schema, datastores, sessions, events."""

    def __init__(self, role: Role, state_dir: Path, yang_dirs: tuple[Path, ...] = (YANG_DIR,),
                 replay_capacity: int = 10_000, limits: ServerLimits | None = None,
                 accounts: Accounts | None = None):
        self.role = role
        self.limits = limits or ServerLimits()
        self.accounts = accounts       # None: no user store, every session is a recovery one
        self.state_dir = Path(state_dir)
        self.state_dir.mkdir(parents=True, exist_ok=True)
        self.schema = Schema(yang_dirs, role.modules)
        self.lock = threading.RLock()
        self.stats = ServerStatistics()
        self.events = EventLog(replay_capacity)
        self.sessions: dict[int, Session] = {}
        self.lock_times: dict[str, datetime] = {}
        self._ids = itertools.count(1)
        self.current_session: int | None = None   # who is changing running (under lock)
        self.handlers = role.rpc_handlers()
        self.observer = EngineObserver()      # metrics and audit plug in here (the daemon)
        self._edited: tuple[str, ...] | None = None
        self.datastores = Datastores(self.schema, self.state_dir, self._install, self.lock,
                                     self._datastore_event)
        self._capabilities = BASE_CAPABILITIES + self._module_capabilities()
        self.nacm = Nacm(self.schema, role.access_scopes())
        self.nacm.reload(self.datastores.running.subtree_dict(NACM_PATH))

    # -- life cycle -----------------------------------------------------------------------

    def start(self) -> None:
        """Hand the saved running configuration to the role, then resume a pending confirm."""
        self.role.start(self)
        running = self.datastores.running
        log.info("%s: applying saved running configuration (%d bytes)", self.role.name,
                 len(running.xml()))
        self.role.apply(ConfigChange(dict, running.to_dict))
        self.observer.config_applied()
        self.datastores.resume_pending()

    def stop(self) -> None:
        """Stop a pending confirmed-commit timer and the role."""
        self.datastores.close()
        self.role.stop()

    # -- transport-facing ------------------------------------------------------------------

    def capabilities(self) -> list[str]:
        """The capability URIs of the server's <hello>."""
        return list(self._capabilities)

    def _module_capabilities(self) -> list[str]:
        caps = []
        for name, rev, ns, feats in self.schema.implemented_modules():
            cap = f"{ns}?module={name}"
            if rev:
                cap += f"&revision={rev}"
            if feats:
                cap += "&features=" + ",".join(quote(f) for f in feats)
            caps.append(cap)
        content_id = self.content_id = hashlib.sha256("\n".join(caps).encode()).hexdigest()[:16]
        caps.append("urn:ietf:params:netconf:capability:yang-library:1.1?revision=2019-01-04"
                    f"&content-id={content_id}")
        return caps

    def identity(self, username: str) -> Identity:
        """Who `username` is for NACM (groups and recovery flag from the user store)."""
        if self.accounts is None:
            return Identity(username, recovery=True)
        return self.accounts(username)

    def open_session(self, username: str, peer: tuple[str, int], sink: MessageSink) -> Session:
        """A new session for an authenticated user, with its session-id."""
        with self.lock:
            sid = next(self._ids)
            session = Session(self, SessionInfo(sid, username, peer[0]), sink)
            self.sessions[sid] = session
            self.stats.in_sessions += 1
        log.info("session %d opened by %s from %s", sid, username, peer[0])
        self.observer.session_opened(session.info)
        self._publish_base("netconf-session-start", {
            "username": username, "session-id": sid, "source-host": peer[0]})
        return session

    def session_closed(self, session: Session, killed_by: int | None = None) -> None:
        """End a session in the engine (its subscription, locks, unpersisted confirmed commit);
        publishes netconf-session-end."""
        with self.lock:
            if session.closed:
                return
            session.closed = True
            if session.subscription:
                self.events.unsubscribe(session.subscription)
            # still known while its confirmed commit rolls back: the event names its user
            self.datastores.session_ended(session.session_id)
            self.sessions.pop(session.session_id, None)
            for name in [n for n in self.lock_times if n not in self.datastores.locks]:
                del self.lock_times[name]
        log.info("session %d closed", session.session_id)
        self.observer.session_closed(session.info)
        end = {"username": session.info.username, "session-id": session.session_id,
               "source-host": session.info.source_host,
               "termination-reason": "killed" if killed_by else "closed"}
        if killed_by:
            end["killed-by"] = killed_by
        self._publish_base("netconf-session-end", end)

    def kill(self, session_id: int, killed_by: int) -> bool:
        """End session `session_id` on behalf of session `killed_by` (<kill-session>);
        False when there is no such session."""
        with self.lock:
            target = self.sessions.get(session_id)
        if target is None:
            return False
        self.session_closed(target, killed_by=killed_by)
        target.sink.close()
        return True

    def dispatch(self, session: Session, op: etree._Element) -> Reply:
        """Run one operation for `session`; its reply content (see operations.dispatch)."""
        # an RPC allocates many short-lived objects (a 10,000-entry edit: hundreds of
        # thousands); the cyclic collector has nothing to find there, so it waits
        collecting = gc.isenabled()
        gc.disable()
        try:
            return operations.dispatch(self, session, op)
        finally:
            if collecting:
                gc.enable()

    # -- datastores -----------------------------------------------------------------------

    def _install(self, before: Snapshot, after: Snapshot,
                 edited: tuple[str, ...] | None = None) -> None:
        t0 = time.perf_counter()
        try:
            self.role.apply(ConfigChange(before.to_dict, after.to_dict, edited,
                                         after.subtree_dict))
        except ApplyError as exc:
            self.observer.role_applied(time.perf_counter() - t0, exc.tag)
            raise RpcError(exc.tag, f"{self.role.name} refused the change: {exc}",
                           path=exc.path, app_tag=exc.app_tag) from None
        self.observer.role_applied(time.perf_counter() - t0, None)
        self._edited = edited

    def _datastore_event(self, kind: str, details: dict[str, Any]) -> None:
        if kind == "config-change":
            self.observer.running_changed(self.current_session, self._edited)
            self._edited = None
            self.nacm.reload(self.datastores.running.subtree_dict(NACM_PATH))
            who = self.sessions.get(self.current_session or 0)
            self.events.publish(config_change.notification(
                None if who is None else {"username": who.info.username,
                                          "session-id": who.session_id,
                                          "source-host": who.info.source_host},
                details["edits"], self.schema.namespaces))
        elif kind == "confirmed-commit":
            content: dict[str, Any] = {"confirm-event": details["event"]}
            if details.get("timeout") and details["event"] in ("start", "extend"):
                content["timeout"] = details["timeout"]
            if details.get("session"):
                content["session-id"] = details["session"]
            self._publish_base("netconf-confirmed-commit", content)

    # -- notifications --------------------------------------------------------------------

    def notify(self, module: str, name: str, content: dict[str, Any]) -> None:
        """Publish a notification of one of the served modules (validated by libyang)."""
        try:
            mod = self.schema.context.get_module(module)
            dnode = mod.parse_data_dict({name: content}, notification=True, strict=True)
        except libyang.LibyangError as exc:
            raise rpc_error_from(exc, self.schema) from None
        try:
            xml = print_xml(dnode)
        finally:
            dnode.free()
        self.events.publish(etree.fromstring(xml))

    def notify_batch(self, module: str, name: str, contents: list[dict[str, Any]]) -> None:
        """Publish many notifications of one kind built by the role from values it already
        holds validated (e.g. the nDirector's mapping-changed, one per MAC of a 10,000-VM
        burst, or an NVE's attachments-changed with 2,500 entries): each becomes XML
        directly, without a libyang round trip.  Keys in each dict's order (the role gives
        them in schema order, list keys first); a dict is a container or list entry, a list
        a leaf-list or the entries of a list."""
        ns = libyang.util.c2str(self.schema.context.get_module(module).cdata.ns)
        tag = f"{{{ns}}}{name}"
        for content in contents:
            el = etree.Element(tag, nsmap={None: ns})
            _build(el, ns, content)
            self.events.publish(el)

    def _publish_base(self, name: str, content: dict[str, Any]) -> None:
        """RFC 6470 notifications (netconf-session-start, -end, -config-change, ...)."""
        if name == "netconf-confirmed-commit" and "session-id" in content:
            who = self.sessions.get(content["session-id"])
            if who is None:
                del content["session-id"]
            else:
                content = {"username": who.info.username, "source-host": who.info.source_host,
                           **content}
        try:
            self.notify("ietf-netconf-notifications", name, content)
        except RpcError as err:
            log.error("could not build %s: %s", name, err)

    # -- operational data -----------------------------------------------------------------

    def operational(self, with_defaults: str) -> bytes:
        """Running plus every config-false tree (role state, netconf-state, yang-library)."""
        ctx = self.schema.context
        with self.lock:                # copied under the lock: an in-place edit may follow
            config = self.datastores.running.dnode
            tree = config.first_sibling().duplicate(with_siblings=True, recursive=True) \
                if config is not None else None
        extra: list[libyang.DNode] = []
        try:
            for module, content in [*self.role.state().items(),
                                    ("ietf-netconf-acm", self.nacm.state())]:
                node = ctx.get_module(module).parse_data_dict(content, validate=False,
                                                              strict=True)
                if node is not None:
                    extra.append(node)
        except libyang.LibyangError as exc:
            log.error("%s state provider returned invalid data: %s", self.role.name, exc)
            raise rpc_error_from(exc, self.schema) from None
        with self.lock:
            locks = {n: (s, self.lock_times.get(n, now()))
                     for n, s in self.datastores.locks.items()}
            sessions = [s.info for s in self.sessions.values()]
        state = netconf_state(self.capabilities(), locks, self.schema.implemented_modules(),
                              sessions, self.stats)
        extra.append(ctx.get_module("ietf-netconf-monitoring").parse_data_dict(
            state, validate=False, strict=True))
        extra.append(ctx.get_yanglib_data(self.content_id))
        try:
            for node in extra:
                if tree is None:
                    tree = node
                else:
                    tree.merge(node, with_siblings=True)
            return print_xml(tree, with_defaults)
        finally:                  # libyang trees are C memory: free every one built here
            for node in [tree, *(n for n in extra if n is not tree)]:
                if node is not None:
                    node.free()


def _build(parent: etree._Element, ns: str, content: dict[str, Any]) -> None:
    """Children of ``parent`` from a dict of trusted values (see notify_batch)."""
    for name, value in content.items():
        for v in (value if isinstance(value, list) else (value,)):
            if v is None:
                continue
            child = etree.SubElement(parent, f"{{{ns}}}{name}")
            if isinstance(v, dict):
                _build(child, ns, v)
            else:
                child.text = ("true" if v else "false") if isinstance(v, bool) else str(v)
