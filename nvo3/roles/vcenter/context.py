"""What the parts of the vCenter role share: one lock, the profile store, the vServers and
child vCenters of the configuration with their sessions and load, the state file and the
notifier.

The RPC handlers (registration, VM life cycle, mobility, root delegation) each hold this
context; the role builds it and fills it from the configuration. The lock is never held while
a peer is called, and notifications go out after it is released.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from pathlib import Path

from nvo3.common import names
from nvo3.common.files import write_atomically
from nvo3.common.tree import Tree
from nvo3.netconf.server.role_api import ApplyError, Notifier
from nvo3.roles.peers.sessions import PeerConfig, PeerLinks
from nvo3.roles.vcenter.placement import Candidate, Load, release, reserve
from nvo3.roles.vcenter.profiles import Key, Profile, ProfileError, ProfileStore
from nvo3.roles.vcenter.refusals import refuse

log = logging.getLogger(__name__)

MODULE = names.VCENTER
VSERVER = names.VSERVER
STATE_FILE = "vcenter-profiles.json"

#: A notification to send: (name in nvo3-vcenter, content).
Note = tuple[str, Tree]


class VCenterContext:
    """The vCenter's shared state; every field is read and written under `lock`."""

    def __init__(self, state_dir: Path | None = None) -> None:
        self.lock = threading.RLock()
        self.store = ProfileStore()
        self.path = Path(state_dir) / STATE_FILE if state_dir else None
        self.me: str | None = None
        self.policy = "least-loaded"
        self.dead_interval = 120
        self.vservers: dict[str, PeerConfig] = {}
        self.children: dict[str, PeerConfig] = {}
        self.loads: dict[str, Load] = {}
        self.last_report: dict[str, float] = {}
        self.links = PeerLinks("vServer")
        self.child_links = PeerLinks("child vCenter")
        self.last_placed: str | None = None
        self.notifier: Notifier | None = None

    # persistence ---------------------------------------------------------------------------
    def load(self) -> None:
        """Restore what the role owns (learned profiles, loads, report times) from its file."""
        if self.path is None or not self.path.exists():
            return
        tree = json.loads(self.path.read_text())
        self.store.load(tree)
        self.loads = {k: Load(**v) for k, v in (tree.get("loads") or {}).items()}
        self.last_report = dict(tree.get("last-report") or {})
        log.info("vcenter: %d VM profiles restored from %s", len(self.store.profiles),
                 self.path)

    def save(self) -> None:
        """Persist the role-owned state (under the lock)."""
        if self.path is None:
            return
        tree = self.store.dump()
        tree["loads"] = {k: v.__dict__ for k, v in self.loads.items()}
        tree["last-report"] = self.last_report
        write_atomically(self.path, json.dumps(tree, separators=(",", ":")).encode())

    # notifications -------------------------------------------------------------------------
    def notify(self, notes: list[Note]) -> None:
        """Send `notes` (outside the lock); one that cannot be sent is logged."""
        if self.notifier is None:
            return
        for name, content in notes:
            try:
                self.notifier.notify(MODULE, name, content)
            except Exception:
                log.exception("vcenter: could not send %s", name)

    # lookups that refuse -------------------------------------------------------------------
    def known_vserver(self, name: str) -> None:
        """Refuse a vServer that is not configured (access-denied, unknown-vserver)."""
        if name not in self.vservers:
            raise ApplyError(f"vServer {name!r} is not configured under /vcenter/vservers",
                             tag="access-denied", app_tag="unknown-vserver")

    def profile(self, tenant: str, name: str) -> Profile:
        """The profile of VM tenant/name, or a refusal (unknown tenant, unknown-vm)."""
        try:
            self.store.tenant(tenant)
        except ProfileError as exc:
            raise refuse(exc) from None
        p = self.store.profiles.get((tenant, name))
        if p is None:
            raise ApplyError(f"vCenter has no VM {tenant}/{name}", tag="invalid-value",
                             app_tag="unknown-vm")
        return p

    def restore(self, key: Key, old: Profile | None) -> None:
        """Put back the profile a failed operation had staged (`old` None: remove it)."""
        with self.lock:
            if old is None:
                self.store.remove(key)
            else:
                self.store.put(old)

    # vServers ------------------------------------------------------------------------------
    def location_extras(self, vserver: str) -> tuple[str | None, str | None]:
        """(data center, NVE) of a configured vServer."""
        cfg = self.vservers.get(vserver)
        return (cfg.data_centers[0] if cfg and cfg.data_centers else None,
                cfg.nve if cfg else None)

    def candidates(self) -> list[Candidate]:
        """Every configured vServer as a placement candidate (available: reported within
        the dead interval, or its session is up)."""
        now = time.time()
        return [Candidate(name, self.loads.get(name), frozenset(cfg.data_centers),
                          available=now - self.last_report.get(name, 0) <= self.dead_interval
                          or self.links.states.get(name) == "connected")
                for name, cfg in self.vservers.items()]

    def placed(self, vserver: str, need: dict[str, int], sign: int = 1) -> None:
        """Count a VM placed on (sign 1) or gone from (sign -1) `vserver` until its next
        report."""
        load = self.loads.get(vserver)
        if load is not None:
            self.loads[vserver] = reserve(load, need) if sign > 0 else release(load, need)

    def vserver_profile(self, p: Profile) -> Tree:
        """The VM's profile in the nvo3-vserver shape (effective items, group policy)."""
        out: Tree = {"resources": self.store.resources_of(p)}
        vnid, vlan = self.store.vnid_of(p), self.store.vlan_of(p)
        for leaf, value in (("vcenter", self.me), ("vnid", vnid), ("vlan", vlan),
                            ("vm-group", p.vm_group), ("port", p.port)):
            if value is not None:
                out[leaf] = value
        out["mac-address"] = p.mac
        if p.ips:
            out["ip-address"] = list(p.ips)
        policy = self.store.policy_of(p)
        if policy:
            out["policy"] = policy
        return out
