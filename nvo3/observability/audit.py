"""The audit trail: every configuration change and every role RPC, logged once.

One INFO record on the ``nvo3.audit`` logger per audited RPC, after its reply: who (user,
session id, peer address), what (the operation, its target datastore, a summary of the change
from `edit_summary`) and the result ("ok" or the rpc-error's error-tag). A change of running
made by the server itself (a confirmed commit rolled back) is logged when it happens. The
same facts ride on the record as fields (user, session, peer, operation, target, result,
summary) for ``--log-format json``.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Mapping

from lxml import etree

from nvo3.netconf.proto.xml import BASE_NS, MONITORING_NS, NOTIF_NS, local_name, namespace
from nvo3.netconf.server.monitoring import SessionInfo
from nvo3.netconf.server.observer import EngineObserver
from nvo3.observability.edit_summary import datastore_of, edit_summary, rpc_input_summary

audit = logging.getLogger("nvo3.audit")

#: Base operations that change a datastore or another session (the rest only read).
CHANGING = frozenset({"edit-config", "copy-config", "delete-config", "commit", "cancel-commit",
                      "discard-changes", "kill-session"})
_NOT_ROLE = frozenset({BASE_NS, NOTIF_NS, MONITORING_NS})
_NONE = object()


class AuditObserver(EngineObserver):
    """Audit records for one engine; `modules`: module name by XML namespace."""

    def __init__(self, role: str, modules: Mapping[str, str]) -> None:
        self.role = role
        self.modules = modules
        self._edited: dict[int, tuple[str, ...] | None] = {}
        self._audited: dict[str, str | None] = {}      # element tag -> operation (or None)
        self._lock = threading.Lock()

    def session_closed(self, info: SessionInfo) -> None:
        with self._lock:
            self._edited.pop(info.session_id, None)

    def running_changed(self, session_id: int | None, edited: tuple[str, ...] | None) -> None:
        if session_id is None:
            audit.info("%s: running changed by the server itself (a confirmed commit rolled "
                       "back or timed out)", self.role,
                       extra={"user": None, "session": None, "peer": None,
                              "operation": "rollback", "target": "running", "result": "ok"})
            return
        with self._lock:
            self._edited[session_id] = edited

    def rpc_done(self, info: SessionInfo, op: etree._Element | None, outcome: str,
                 seconds: float) -> None:
        if op is None:
            return
        tag = op.tag
        operation = self._audited.get(tag, _NONE)
        if operation is _NONE:
            operation = self._audited[tag] = self._operation(op)
        if operation is None:
            return                                  # a read: not audited
        with self._lock:
            edited = self._edited.pop(info.session_id, _NONE)
        if not audit.isEnabledFor(logging.INFO):
            return
        target, summary = _what(op, local_name(op), namespace(op) or BASE_NS, self.modules,
                                None if edited is _NONE else edited)  # type: ignore[arg-type]
        audit.info("%s: %s@%s session %d: %s%s%s -> %s", self.role, info.username,
                   info.source_host, info.session_id, operation,
                   f" {target}" if target else "", f": {summary}" if summary else "", outcome,
                   extra={"user": info.username, "session": info.session_id,
                          "peer": info.source_host, "operation": operation, "target": target,
                          "summary": summary, "result": outcome,
                          "duration_ms": round(seconds * 1000, 3)})

    def _operation(self, op: etree._Element) -> str | None:
        """What the audit calls operation `op` ("edit-config", "nvo3-vcenter:create-vm"), or
        None when it is not audited (a read); remembered by element tag."""
        ns, name = namespace(op) or BASE_NS, local_name(op)
        if ns in _NOT_ROLE:
            return name if ns == BASE_NS and name in CHANGING else None
        return f"{self.modules.get(ns, '?')}:{name}"


def _what(op: etree._Element, name: str, ns: str, modules: Mapping[str, str],
          edited: tuple[str, ...] | None) -> tuple[str, str]:
    """(target datastore, summary) of an audited operation."""
    if ns != BASE_NS:
        return "", rpc_input_summary(op)
    if name == "edit-config":
        return datastore_of(op, "target"), edit_summary(op, modules, edited)
    if name == "copy-config":
        return datastore_of(op, "target"), f"from {datastore_of(op, 'source')}"
    if name == "delete-config":
        return datastore_of(op, "target"), ""
    if name == "commit":
        confirmed = any(isinstance(c.tag, str) and local_name(c) == "confirmed" for c in op)
        return "running", "candidate (confirmed)" if confirmed else "candidate"
    if name == "kill-session":
        sid = next((c.text for c in op if isinstance(c.tag, str)
                    and local_name(c) == "session-id"), None)
        return "", f"session {(sid or '?').strip()}"
    return ("candidate" if name == "discard-changes" else "running"), ""
