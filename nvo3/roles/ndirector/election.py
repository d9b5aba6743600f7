"""Leader election of a data center's nDirector replicas, by an etcd lease.

Each replica holds a lease of its own (``LEASE_TTL_S``) and keeps it alive; the leader is
the replica whose name is at ``/nvo3/leaders/<dc>``, a key created only if absent
(compare create_revision == 0) and bound to the creator's lease. When the leader dies its
lease lapses, etcd deletes the key, and the first standby to create it again leads.

A leader that cannot renew its lease for ``LEASE_TTL_S - MARGIN_S`` seconds stops leading
on its own (:meth:`Election.fresh` turns false): by then another replica may lead, and a
partitioned or paused nDirector must not push what it holds. The keepalives also tell
whether etcd can be written at all (they need a quorum): :attr:`Election.available`.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

from nvo3.roles.ndirector.etcd_client import EtcdClient, StoreUnavailable, b64

log = logging.getLogger(__name__)

LEASE_TTL_S = 2
MARGIN_S = 0.5
STANDBY_POLL_S = 0.1


class Election:
    """Campaign for `key` as `name`; `on_change(leading)` and `on_available(ok, error)` are
    called from the election thread."""

    def __init__(self, client: EtcdClient, key: str, name: str,
                 on_change: Callable[[bool], None],
                 on_available: Callable[[bool, str | None], None],
                 ttl: int = LEASE_TTL_S) -> None:
        self.client, self.key, self.name, self.ttl = client, key, name, ttl
        self._on_change, self._on_available = on_change, on_available
        self.leader_name: str | None = None
        self.leading = False
        self.available = True
        self.store_revision = 0
        self._lease = 0
        self._last_ok = 0.0
        self._next_keepalive = 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True, name="ndirector-election")

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        """Stop campaigning; a leader hands over at once (its lease revoked)."""
        self._stop.set()
        self._thread.join(3.0)
        if self._lease:
            try:
                self.client.revoke(self._lease)
            except StoreUnavailable:
                pass

    def fresh(self) -> bool:
        """Leading, with a lease renewed recently enough that no one else can lead."""
        return self.leading and time.monotonic() - self._last_ok < self.ttl - MARGIN_S

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self._round()
            except StoreUnavailable as exc:
                self._set_available(False, str(exc))
            except Exception:     # a bug must not end the campaign
                log.exception("ndirector: election round failed")
            if self.leading and not self.fresh():
                log.warning("ndirector: lease of %s not renewed for %.1f s: no longer leading",
                            self.name, time.monotonic() - self._last_ok)
                self._set_leading(False)
            self._stop.wait(STANDBY_POLL_S)

    def _round(self) -> None:
        now = time.monotonic()
        if not self._lease:
            self._lease = self.client.grant(self.ttl)
            self._keepalive_ok(now)
        elif self.leading and now < self._next_keepalive:
            return                   # a leader looks again at its next keepalive
        elif now >= self._next_keepalive:
            left = self.client.keepalive(self._lease)
            if left <= 0:            # expired (paused or partitioned too long): start again
                self._lease = 0
                if self.leading:
                    self._set_leading(False)
                return
            self._keepalive_ok(now)
        rev, kv = self.client.get(self.key)
        self.store_revision = max(self.store_revision, rev)
        if kv is not None:
            self.leader_name = kv.value
            mine = kv.value == self.name and kv.lease == self._lease
            if self.leading and not mine:
                self._set_leading(False)
            elif mine and not self.leading:
                self._set_leading(True)
            return
        res = self.client.txn(
            [{"key": b64(self.key), "target": "CREATE", "result": "EQUAL", "create_revision": 0}],
            [{"request_put": {"key": b64(self.key), "value": b64(self.name),
                              "lease": self._lease}}])
        if res.succeeded:
            self.leader_name = self.name
            self._set_leading(True)

    def _keepalive_ok(self, now: float) -> None:
        self._last_ok = now
        self._next_keepalive = now + self.ttl / 4
        self._set_available(True, None)

    def _set_available(self, ok: bool, error: str | None) -> None:
        if ok == self.available:
            return
        log.warning("ndirector: etcd %s%s", "available again" if ok else "unavailable",
                    f": {error}" if error else "")
        self.available = ok
        self._on_available(ok, error)

    def _set_leading(self, leading: bool) -> None:
        if leading == self.leading:
            return
        self.leading = leading
        log.warning("ndirector: %s %s the leader of %s", self.name,
                    "is now" if leading else "is no longer", self.key)
        self._on_change(leading)
