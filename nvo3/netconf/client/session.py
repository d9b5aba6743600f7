"""The NETCONF client every role and test uses: ncclient on :class:`FastSSHSession`.

* no 100 ms polling delay (see :mod:`nvo3.netconf.client.fastssh`);
* host keys verified by default (known_hosts file, or the expected key/fingerprint stored per
  device); ``hostkey_verify=False`` only when the caller says so;
* :meth:`Client.pipeline` sends several RPCs before waiting for the first reply;
* replies are lxml elements; an ``<rpc-error>`` raises :class:`RemoteRpcError`, which is the
  engine's :class:`~nvo3.netconf.proto.errors.RpcError` (tag, path, message, info) plus the reply.

Every request is sent in ncclient's async mode and awaited here, so the single and the
pipelined path are the same code.
"""

from __future__ import annotations

import contextlib
import copy
import logging
import queue
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from lxml import etree
from ncclient import operations
from ncclient.manager import make_device_handler
from ncclient.operations.rpc import RaiseMode
from ncclient.transport.session import NotificationHandler

from nvo3.netconf.client.fastssh import FastSSHSession, HostKeyError, HostKeyPolicy, fingerprint
from nvo3.netconf.proto.errors import NetconfError, RpcError
from nvo3.netconf.proto.xml import BASE_NS

log = logging.getLogger(__name__)

__all__ = ["Client", "ClientError", "HostKeyError", "RemoteRpcError", "connect", "fingerprint"]

_PARSER = etree.XMLParser(resolve_entities=False, no_network=True, huge_tree=True)
_NC = f"{{{BASE_NS}}}"


class ClientError(NetconfError):
    """Connecting failed, the session broke, or a reply did not come in time."""


class RemoteRpcError(RpcError):
    """The server answered with ``<rpc-error>``; ``errors`` holds all of them, ``reply`` the
    whole ``<rpc-reply>``."""

    errors: list[RpcError]
    reply: etree._Element


def _rpc_error(el: etree._Element, cls: type[RpcError] = RpcError) -> RpcError:
    info = el.find(_NC + "error-info")
    return cls(tag=el.findtext(_NC + "error-tag", "").strip(),
               message=(el.findtext(_NC + "error-message") or "").strip(),
               type=el.findtext(_NC + "error-type", "application").strip(),
               path=(el.findtext(_NC + "error-path") or "").strip() or None,
               app_tag=el.findtext(_NC + "error-app-tag"),
               severity=el.findtext(_NC + "error-severity", "error").strip(),
               info=[(etree.QName(c).localname, c.text or "") for c in info]
               if info is not None else [])


def to_operation(rpc: etree._Element | str) -> etree._Element:
    """An operation element from an element (copied) or XML text; unqualified names in the
    text are in the NETCONF base namespace (``"<commit/>"`` works)."""
    if isinstance(rpc, str):
        return etree.fromstring(f'<w xmlns="{BASE_NS}">{rpc}</w>', _PARSER)[0]
    return copy.deepcopy(rpc)


def check_reply(reply: etree._Element) -> etree._Element:
    """Return `reply` unless it carries an rpc-error of severity error; then raise."""
    errors = reply.findall(_NC + "rpc-error")
    bad = [e for e in errors if e.findtext(_NC + "error-severity", "error").strip() == "error"]
    if bad:
        exc = _rpc_error(bad[0], RemoteRpcError)
        assert isinstance(exc, RemoteRpcError)
        exc.errors = [_rpc_error(e) for e in errors]
        exc.reply = reply
        raise exc
    return reply


class Client:
    """One NETCONF session. Thread-safe for concurrent requests (replies match by message-id)."""

    def __init__(self, params: dict[str, Any], timeout: float = 30.0) -> None:
        self._params = params
        self.timeout = timeout
        self.notifications: queue.Queue[etree._Element] = queue.Queue()
        self._callback: Callable[[etree._Element], None] | None = None
        self._open()

    # connection ---------------------------------------------------------------------------------
    def _open(self) -> None:
        p = dict(self._params)
        policy, port = p.pop("policy"), p["port"]
        self._dh = make_device_handler(None)
        session = FastSSHSession(self._dh, policy, port)
        try:
            session.connect(p.pop("host"), allow_agent=False, look_for_keys=False,
                            hostkey_verify=False,
                            hostkey_b64=policy.blob_b64() if policy else None, **p)
        except HostKeyError:
            self._abort(session)
            raise
        except Exception as exc:
            self._abort(session)
            raise ClientError(f"cannot connect to {self._params['host']} port {port}: "
                              f"{exc}") from exc
        stock = session.get_listener_instance(NotificationHandler)
        if stock is not None:
            session.remove_listener(stock)   # its queue would grow unbounded; we keep our own
        session.notification_sink = self._on_notification
        self.session = session
        log.info("connected to %s port %d as %s, session-id %s", self._params["host"], port,
                 self._params.get("username"), session.id)

    @staticmethod
    def _abort(session: FastSSHSession) -> None:
        if session.transport is not None:
            with contextlib.suppress(Exception):
                session.close()

    @property
    def session_id(self) -> int:
        """The session-id the server assigned."""
        return int(self.session.id)

    @property
    def server_capabilities(self) -> list[str]:
        """Capability URIs from the server's hello."""
        return list(self.session.server_capabilities)

    @property
    def connected(self) -> bool:
        """True while the SSH session is up."""
        return bool(self.session.connected and self.session.transport.is_active())

    def close(self) -> None:
        """Send <close-session> (briefly waiting for the reply) and close the transport."""
        if self.connected:
            with contextlib.suppress(Exception):
                # synchronous: ncclient's CloseSession closes the transport right after
                # request() returns, which in async mode is before the rpc is even written
                operations.CloseSession(self.session, device_handler=self._dh,
                                        timeout=min(self.timeout, 5.0),
                                        raise_mode=RaiseMode.NONE).request()
        self._abort(self.session)

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # requests -----------------------------------------------------------------------------------
    def _start(self, cls: type, *args: Any, **kw: Any) -> Any:
        op = cls(self.session, device_handler=self._dh, async_mode=True, timeout=self.timeout,
                 raise_mode=RaiseMode.NONE, huge_tree=True)
        return op.request(*args, **kw)

    def _finish(self, op: Any) -> etree._Element:
        if not op.event.wait(self.timeout):
            raise ClientError(f"no reply within {self.timeout:g} s")
        if op.error is not None:
            raise ClientError(f"session failed: {op.error}") from op.error
        raw = op.reply.xml
        return etree.fromstring(raw.encode() if isinstance(raw, str) else raw, _PARSER)

    def _call(self, cls: type, *args: Any, **kw: Any) -> etree._Element:
        return check_reply(self._finish(self._start(cls, *args, **kw)))

    def dispatch(self, rpc: etree._Element | str) -> etree._Element:
        """Send any operation element (the child of <rpc>); return the <rpc-reply>."""
        return self._call(operations.Dispatch, to_operation(rpc))

    def pipeline(self, rpcs: Iterable[etree._Element | str],
                 raise_on_error: bool = True) -> list[etree._Element]:
        """Send every operation before waiting; return the <rpc-reply> elements in order.

        With `raise_on_error`, the first reply carrying an rpc-error is raised after all
        replies arrived (so the session is left with nothing outstanding).
        """
        ops = [self._start(operations.Dispatch, to_operation(rpc)) for rpc in rpcs]
        replies = [self._finish(op) for op in ops]
        if raise_on_error:
            for reply in replies:
                check_reply(reply)
        return replies

    @staticmethod
    def _data(reply: etree._Element) -> etree._Element:
        data = reply.find(_NC + "data")
        return data if data is not None else etree.Element(_NC + "data")

    def get(self, filter: Any = None, with_defaults: str | None = None) -> etree._Element:
        """<get>: the <data> element."""
        return self._data(self._call(operations.Get, filter=filter, with_defaults=with_defaults))

    def get_config(self, source: str = "running", filter: Any = None,
                   with_defaults: str | None = None) -> etree._Element:
        """<get-config>: the <data> element."""
        return self._data(self._call(operations.GetConfig, source, filter=filter,
                                     with_defaults=with_defaults))

    def edit_config(self, config: etree._Element | str, target: str = "candidate",
                    default_operation: str | None = None, test_option: str | None = None,
                    error_option: str | None = None) -> etree._Element:
        """<edit-config> with a <config> element (or its XML text); the <rpc-reply>."""
        return self._call(operations.EditConfig, config, target=target,
                          default_operation=default_operation, test_option=test_option,
                          error_option=error_option)

    def commit(self, confirmed: bool = False, timeout: int | None = None,
               persist: str | None = None) -> etree._Element:
        """<commit>; `timeout` is the confirm-timeout in seconds."""
        return self._call(operations.Commit, confirmed=confirmed,
                          timeout=None if timeout is None else str(timeout), persist=persist)

    def discard_changes(self) -> etree._Element:
        """<discard-changes>."""
        return self._call(operations.DiscardChanges)

    def lock(self, target: str = "candidate") -> etree._Element:
        """<lock>."""
        return self._call(operations.Lock, target)

    def unlock(self, target: str = "candidate") -> etree._Element:
        """<unlock>."""
        return self._call(operations.Unlock, target)

    def kill_session(self, session_id: int) -> etree._Element:
        """<kill-session> of another session."""
        return self._call(operations.KillSession, str(session_id))

    def create_subscription(self, callback: Callable[[etree._Element], None] | None = None,
                            stream: str | None = None, filter: Any = None,
                            start_time: str | None = None,
                            stop_time: str | None = None) -> etree._Element:
        """RFC 5277 subscription. Each <notification> goes to `callback` if given (called on
        the session thread: keep it short), else to :attr:`notifications`."""
        self._callback = callback
        return self._call(operations.CreateSubscription, filter=filter, stream_name=stream,
                          start_time=start_time, stop_time=stop_time)

    def _on_notification(self, notification: etree._Element) -> None:
        if self._callback is None:
            self.notifications.put(notification)
            return
        try:
            self._callback(notification)
        except Exception:
            log.exception("notification callback failed")


def connect(host: str, port: int = 830, username: str | None = None,
            password: str | None = None, key_filename: str | Path | None = None, *,
            known_hosts: str | Path | None = None, host_key: str | None = None,
            hostkey_verify: bool = True, timeout: float = 10.0,
            rpc_timeout: float = 30.0) -> Client:
    """Open a NETCONF session over SSH.

    The host key must match `host_key` (OpenSSH key line, base64 blob or ``SHA256:``
    fingerprint) or an entry of `known_hosts` (default ``~/.ssh/known_hosts``);
    ``hostkey_verify=False`` skips the check. `timeout` bounds connect and hello,
    `rpc_timeout` each reply.
    """
    policy = (HostKeyPolicy(Path(known_hosts) if known_hosts else None, host_key)
              if hostkey_verify else None)
    params = {"host": host, "port": port, "username": username, "password": password,
              "key_filename": str(key_filename) if key_filename else None,
              "timeout": timeout, "policy": policy}
    return Client(params, rpc_timeout)

