"""The nDirector's sessions to its NVEs: one session thread and one push worker per NVE.

* :class:`RemoteTracker` (pure, like Felix's delta tracker): what the NVE should hold (remote
  MACs, flood lists, policies) versus what it acknowledged. Setting desired entries only
  records them and marks them dirty; :meth:`RemoteTracker.take` turns everything dirty into one
  :class:`~nvo3.roles.ndirector.nve_client.NveEdit`, so a burst of changes becomes one edit-config.
  After a (re)connect the next take is a full resync: every network's remote-macs and
  flood-list replaced in one edit-config.
* :class:`NveSession`: connects (host key verified, or trust on first use when the
  configuration has none), subscribes to the NVE's notifications, reads its configuration
  (attachments, and the remote entries it still holds), hands both to the director, then
  waits for the session to drop and reconnects with exponential backoff. Its push worker
  sends what the tracker has pending; a slow NVE only delays its own worker. Nothing is ever
  flushed on disconnect: the NVE keeps forwarding with what it has.
"""

from __future__ import annotations

import contextlib
import getpass
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from lxml import etree
from ncclient.transport.session import SessionListener

from nvo3.common.backoff import Backoff
from nvo3.common.clock import iso
from nvo3.common.tree import Tree
from nvo3.netconf.client.fastssh import fingerprint
from nvo3.netconf.client.session import Client, ClientError, HostKeyError, RemoteRpcError, connect
from nvo3.roles.ndirector import nve_client as nc
from nvo3.roles.ndirector.nve_client import AttachmentEvent, Key, NveConfig, NveEdit

log = logging.getLogger(__name__)

BACKOFF_MIN, BACKOFF_MAX = 0.1, 5.0     # reconnect: 0.1 s doubling up to 5 s
PUSH_RETRY_FIRST = 0.2                  # a refused push: 0.2 s doubling up to BACKOFF_MAX


@dataclass(frozen=True)
class Endpoint:
    """An NVE of the nDirector's configuration."""

    name: str
    address: str
    port: int
    vtep: str
    username: str | None = None
    password: str | None = field(default=None, repr=False)   # never in a log line
    host_key: str | None = None
    enabled: bool = True

    @classmethod
    def from_config(cls, nve: Tree) -> Endpoint:
        return cls(nve["name"], nve["address"], int(nve.get("port", 830)), nve["vtep-address"],
                   nve.get("username"), nve.get("password"), nve.get("host-key"),
                   nve.get("enabled", True) not in (False, "false"))


class Director(Protocol):
    """What a session reports to (the nDirector role)."""

    def nve_up(self, name: str, config: NveConfig, events: list[AttachmentEvent]) -> None: ...
    def nve_events(self, name: str, events: list[AttachmentEvent]) -> None: ...
    def nve_state(self, name: str, state: str, previous: str, reason: str | None) -> None: ...
    def nve_acked(self, name: str, generation: int) -> None: ...


# the tracker --------------------------------------------------------------------------------
@dataclass
class _Taken:
    macs: dict[Key, Tree | None]
    floods: dict[int, set[str]]
    policies: dict[Key, Tree | None]
    full: bool
    generation: int


class RemoteTracker:
    """Desired versus acknowledged remote state of one NVE. Not thread-safe by itself: the
    session holds its lock around every call."""

    def __init__(self) -> None:
        self.macs: dict[Key, Tree] = {}
        self.floods: dict[int, set[str]] = {}
        self.policies: dict[Key, Tree] = {}
        self.acked_macs: dict[Key, Tree] = {}
        self.acked_floods: dict[int, set[str]] = {}
        self.acked_policies: dict[Key, Tree] = {}
        self.dirty_macs: set[Key] = set()
        self.dirty_floods: set[int] = set()
        self.dirty_policies: set[Key] = set()
        self.full = True                     # next push replaces everything
        self.held: NveConfig = NveConfig()   # what the NVE held at the last read
        self.generation = 0

    def set_mac(self, key: Key, entry: Tree | None) -> bool:
        if self.macs.get(key) == entry:
            return False
        if entry is None:
            self.macs.pop(key, None)
        else:
            self.macs[key] = entry
        self.dirty_macs.add(key)
        return True

    def set_flood(self, vni: int, vteps: set[str]) -> bool:
        if self.floods.get(vni, set()) == vteps:
            return False
        if vteps:
            self.floods[vni] = set(vteps)
        else:
            self.floods.pop(vni, None)
        self.dirty_floods.add(vni)
        return True

    def set_policy(self, key: Key, policy: Tree | None) -> bool:
        if self.policies.get(key) == policy:
            return False
        if policy is None:
            self.policies.pop(key, None)
        else:
            self.policies[key] = policy
        self.dirty_policies.add(key)
        return True

    def resync(self, held: NveConfig) -> None:
        """After a (re)connect: the NVE holds `held`; replace it all at the next push."""
        self.held = held
        self.full = True

    def pending(self) -> bool:
        return self.full or bool(self.dirty_macs or self.dirty_floods or self.dirty_policies)

    def take(self) -> tuple[NveEdit, NveEdit, _Taken]:
        """(mapping edit, policy edit, token): everything pending, as at most two edits."""
        full = self.full
        t = _Taken(
            macs={k: self.macs.get(k) for k in (self.macs.keys() | self.acked_macs.keys()
                                                if full else self.dirty_macs)},
            floods={v: set(self.floods.get(v, ())) for v in (
                self.floods.keys() | self.acked_floods.keys() if full else self.dirty_floods)},
            policies={k: self.policies.get(k) for k in (
                self.policies.keys() | self.acked_policies.keys() if full
                else self.dirty_policies)},
            full=full, generation=self.generation)
        self.dirty_macs, self.dirty_floods, self.dirty_policies = set(), set(), set()
        self.full = False
        return self._mapping_edit(t), self._policy_edit(t), t

    def _mapping_edit(self, t: _Taken) -> NveEdit:
        edit = NveEdit()
        if t.full:
            held = self.held
            sticky = {k: v for k, v in held.remote_macs.items()
                      if v.get("sticky") in (True, "true") and k not in self.macs}
            vnis = {k[0] for k in self.macs} | set(self.floods) | {k[0] for k in sticky} | \
                {k[0] for k in held.remote_macs} | {v for v, s in held.floods.items() if s}
            for vni in vnis:
                edit.network(vni).replace = True
            for (vni, mac), entry in {**sticky, **self.macs}.items():
                edit.network(vni).macs[mac] = entry
            for vni, vteps in self.floods.items():
                edit.network(vni).vteps |= vteps
            return edit
        for (vni, mac), wanted in t.macs.items():
            if wanted is not None:
                edit.network(vni).macs[mac] = wanted
            elif (vni, mac) in self.acked_macs:
                edit.network(vni).remove_macs.add(mac)
        for vni, vteps in t.floods.items():
            old = self.acked_floods.get(vni, set())
            if vteps - old or old - vteps:
                ne = edit.network(vni)
                ne.vteps |= vteps - old
                ne.remove_vteps |= old - vteps
        return edit

    def _policy_edit(self, t: _Taken) -> NveEdit:
        edit = NveEdit()
        if t.full:
            edit.replace_policies = bool(self.policies or self.held.policies)
            edit.policies = dict(self.policies)
            return edit
        for key, pol in t.policies.items():
            if pol is not None:
                edit.policies[key] = pol
            elif key in self.acked_policies:
                edit.remove_policies.add(key)
        return edit

    def acked(self, t: _Taken, mappings: bool = True, policies: bool = True) -> None:
        if mappings:
            if t.full:
                self.acked_macs, self.acked_floods = {}, {}
            for k, v in t.macs.items():
                if v is None:
                    self.acked_macs.pop(k, None)
                else:
                    self.acked_macs[k] = v
            for vni, vteps in t.floods.items():
                if vteps:
                    self.acked_floods[vni] = vteps
                else:
                    self.acked_floods.pop(vni, None)
        if policies:
            if t.full:
                self.acked_policies = {}
            for k, p in t.policies.items():
                if p is None:
                    self.acked_policies.pop(k, None)
                else:
                    self.acked_policies[k] = p

    def failed(self, t: _Taken) -> None:
        """A push failed: resynchronize everything at the next one."""
        self.full = True


# the session ---------------------------------------------------------------------------------
class _DownListener(SessionListener):
    def __init__(self, down: threading.Event) -> None:
        self._down = down

    def callback(self, root: Any, raw: str) -> None:
        pass

    def errback(self, ex: Exception) -> None:
        self._down.set()


@dataclass
class SessionStats:
    state: str = "down"
    since: str = field(default_factory=iso)
    last_error: str | None = None
    host_key_seen: str | None = None
    last_push_latency_us: int | None = None
    pushes: int = 0
    push_failures: int = 0


class NveSession:
    """The nDirector's session to one NVE: connect, subscribe, read, push, reconnect."""

    def __init__(self, endpoint: Endpoint, director: Director,
                 connect_fn: Callable[..., Client] = connect,
                 gate: Callable[[], bool] = lambda: True,
                 on_push: Callable[[str, float, bool], None] | None = None) -> None:
        self.endpoint = endpoint
        self._on_push = on_push         # (NVE name, seconds, accepted) after each push
        self._gate = gate               # False while pushes must wait (nDirector start-up)
        self._reread = threading.Event()
        self._push_backoff = Backoff(PUSH_RETRY_FIRST, BACKOFF_MAX)
        self.director = director
        self.lock = threading.Lock()
        self.tracker = RemoteTracker()
        self.stats = SessionStats()
        self._connect = connect_fn
        self._client: Client | None = None
        self._pinned_key: str | None = endpoint.host_key
        self._stop = threading.Event()
        self._down = threading.Event()
        self._kick = threading.Event()
        self._not_before = 0.0          # monotonic time before which the next push waits
        self._buffer: list[AttachmentEvent] | None = None
        self._threads = [threading.Thread(target=self._run, daemon=True,
                                          name=f"nve-session-{endpoint.name}"),
                         threading.Thread(target=self._push_loop, daemon=True,
                                          name=f"nve-push-{endpoint.name}")]

    @property
    def name(self) -> str:
        return self.endpoint.name

    @property
    def connected(self) -> bool:
        return self.stats.state == "connected"

    def start(self) -> None:
        for t in self._threads:
            t.start()

    def stop(self, timeout: float = 5.0) -> None:
        """Stop both threads and close the session (the NVE keeps what it has)."""
        self._stop.set()
        self._down.set()
        self._kick.set()
        client = self._client
        if client is not None:
            with contextlib.suppress(Exception):
                client.close()
        for t in self._threads:
            if t.is_alive() and t is not threading.current_thread():
                t.join(timeout)

    def kick(self, delay: float = 0.0) -> None:
        """Something is pending in the tracker: wake the push worker (``delay``: let it wait
        that long first, unless a kick without delay comes meanwhile)."""
        with self.lock:
            due = time.monotonic() + delay if delay > 0 else 0.0
            self._not_before = min(self._not_before, due) if self._kick.is_set() else due
        self._kick.set()

    def reread(self) -> None:
        """Read the NVE's attachments again and push it a full resync."""
        self._reread.set()
        self._down.set()                # wakes the session thread

    # session thread ------------------------------------------------------------------------
    def _set_state(self, state: str, reason: str | None = None) -> None:
        previous = self.stats.state
        if state == previous:
            return
        self.stats.state, self.stats.since = state, iso()
        if reason:
            self.stats.last_error = reason
        log.log(logging.INFO if state != "down" else logging.WARNING,
                "nve %s (%s port %d): %s%s", self.name, self.endpoint.address,
                self.endpoint.port, state, f": {reason}" if reason else "")
        with contextlib.suppress(Exception):
            self.director.nve_state(self.name, state, previous, reason)

    def _open(self) -> Client:
        ep = self.endpoint
        username = ep.username or getpass.getuser()
        if self._pinned_key is None:         # trust on first use (the YANG's lab mode)
            client = self._connect(ep.address, ep.port, username, ep.password,
                                   hostkey_verify=False, timeout=5.0, rpc_timeout=30.0)
        else:
            client = self._connect(ep.address, ep.port, username, ep.password,
                                   host_key=self._pinned_key, timeout=5.0, rpc_timeout=30.0)
        with contextlib.suppress(Exception):
            key = client.session.transport.get_remote_server_key()
            self.stats.host_key_seen = f"{key.get_name()} {key.get_base64()}"
            if self._pinned_key is None:
                self._pinned_key = self.stats.host_key_seen
                log.warning("nve %s: no host-key configured; trusting %s on first use",
                            self.name, fingerprint(key))
        return client

    def _run(self) -> None:
        backoff = Backoff(BACKOFF_MIN, BACKOFF_MAX)
        while not self._stop.is_set():
            if not self.endpoint.enabled:
                self._set_state("down", "disabled")
                self._stop.wait(1.0)
                continue
            self._set_state("connecting")
            try:
                self._session_once()
                backoff = Backoff(BACKOFF_MIN, BACKOFF_MAX)
                reason = "session closed"
            except HostKeyError as exc:
                reason = f"host key mismatch: {exc}"
                backoff = Backoff(BACKOFF_MAX, BACKOFF_MAX)   # retrying soon will not help
            except (ClientError, RemoteRpcError, OSError, EOFError) as exc:
                reason = str(exc) or type(exc).__name__
            except Exception as exc:   # a bug must not end the reconnect loop
                log.exception("nve %s: session failed", self.name)
                reason = f"internal error: {exc}"
            finally:
                client, self._client = self._client, None
                if client is not None:
                    with contextlib.suppress(Exception):
                        client.close()
            if self._stop.is_set():
                break
            self._set_state("down", reason)
            self._stop.wait(backoff.next_delay())
        self._set_state("down", "stopped")

    def _session_once(self) -> None:
        self._down.clear()
        client = self._open()
        self._client = client
        client.session.add_listener(_DownListener(self._down))
        with self.lock:
            self._buffer = []
        client.create_subscription(callback=self._on_notification,
                                   filter=nc.attachment_filter())
        self._read(client)
        self._set_state("connected")
        self.kick()
        while not self._stop.is_set():
            self._down.wait(0.5)
            if not client.connected or self._stop.is_set():
                break
            if self._reread.is_set():
                self._reread.clear()
                self._down.clear()
                self._read(client)
                self.kick()
            elif self._down.is_set():
                break

    def _read(self, client: Client) -> None:
        """Read the NVE (notifications held back meanwhile), hand it to the director."""
        with self.lock:
            if self._buffer is None:
                self._buffer = []
        try:
            held = nc.read_nve_config(client)
        finally:
            with self.lock:
                events, self._buffer = self._buffer or [], None
        with self.lock:
            self.tracker.resync(held)
        self.director.nve_up(self.name, held, events)

    def _on_notification(self, message: etree._Element) -> None:
        events = nc.parse_notification(message)
        if not events:
            return
        with self.lock:
            if self._buffer is not None:
                self._buffer.extend(events)
                return
        self.director.nve_events(self.name, events)

    # push worker ---------------------------------------------------------------------------
    def _push_loop(self) -> None:
        while not self._stop.is_set():
            self._kick.wait(1.0)
            while not self._stop.is_set():    # a delayed kick: wait, unless one comes now
                with self.lock:
                    wait = self._not_before - time.monotonic()
                if wait <= 0:
                    break
                self._stop.wait(min(wait, 0.005))
            self._kick.clear()
            if self._stop.is_set():
                break
            client = self._client
            if client is None or not self.connected or not self._gate():
                continue
            with self.lock:
                if not self.tracker.pending():
                    continue
                mapping, policy, token = self.tracker.take()
            self._push(client, mapping, policy, token)

    def _push(self, client: Client, mapping: NveEdit, policy: NveEdit, token: Any) -> None:
        ok_map = ok_pol = True
        if mapping:
            ok_map = self._send(client, mapping, "remote entries")
        if policy:
            ok_pol = self._send(client, policy, "policies")
        with self.lock:
            self.tracker.acked(token, mappings=ok_map, policies=ok_pol)
            if not ok_map:
                self.tracker.failed(token)
            if not ok_pol:
                self.tracker.dirty_policies |= set(token.policies)   # again with the next push
        if ok_map:
            self._push_backoff.reset()
            self.director.nve_acked(self.name, token.generation)
        elif client.connected:
            self._stop.wait(self._push_backoff.next_delay())   # refused: try again, backing off
            self.kick()

    def _send(self, client: Client, edit: NveEdit, what: str) -> bool:
        t0 = time.perf_counter()
        self.stats.pushes += 1
        try:
            nc.push(client, edit)
            ok = True
        except RemoteRpcError as exc:
            ok = False
            self.stats.push_failures += 1
            self.stats.last_error = f"{what} refused: {exc}"
            log.error("nve %s: push of %d %s refused: %s", self.name, edit.size(), what, exc)
        except ClientError as exc:
            ok = False
            self.stats.push_failures += 1
            self.stats.last_error = f"{what} not sent: {exc}"
            log.warning("nve %s: push of %s failed: %s", self.name, what, exc)
            self._down.set()
        seconds = time.perf_counter() - t0
        if ok:
            self.stats.last_push_latency_us = int(seconds * 1e6)
        if self._on_push is not None:
            self._on_push(self.name, seconds, ok)
        return ok
