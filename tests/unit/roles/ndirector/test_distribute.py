"""nvo3.roles.ndirector.role: what one change records in the NVEs' trackers.

The director's control logic runs without threads or SSH: NVE sessions are built but not
started, and events are fed to ``_process`` as the control thread does. What is under test:

* incremental = whole: after every random event, re-deriving every NVE against the whole
  table (what a configuration change does) finds nothing left to change;
* a change of one mapping derives its remote entry once, and every NVE of the VNI holds that
  same entry;
* an NVE that joins a VNI by attaching a VM gets the VNI's other mappings.
"""

from __future__ import annotations

import random
import time
from typing import Any

import pytest

from nvo3.roles.ndirector.nve_client import AttachmentEvent, NveConfig
from nvo3.roles.ndirector.nve_sessions import Endpoint, NveSession
from nvo3.roles.ndirector.role import NDirectorRole

VNIS = (300, 301)
NVES = tuple(f"h{i}" for i in range(6))
MACS = tuple(f"02:00:00:00:00:{i:02x}" for i in range(1, 9))


def director(members: dict[int, set[str]] | None = None,
             held: dict[str, set[int]] | None = None) -> NDirectorRole:
    """A director with sessions that are never started, every NVE read once (empty)."""
    role = NDirectorRole()
    role.endpoints = {n: Endpoint(n, "127.0.0.1", 830, f"198.18.0.{i + 1}")
                      for i, n in enumerate(NVES)}
    role.sessions = {n: NveSession(ep, role) for n, ep in role.endpoints.items()}
    role.members_cfg = members if members is not None else {}
    role._process([("up", n, NveConfig(networks=set((held or {}).get(n, ()))), [], 0.0)
                   for n in NVES], [])
    assert role._may_push()
    return role


def event(role: NDirectorRole, nve: str, kind: str, vni: int, mac: str,
          state: str = "activated") -> None:
    content: dict[str, Any] = {"vni": vni, "mac": mac}
    if kind != "attachment-removed":
        content["state"] = state
    role._process([("events", nve, [AttachmentEvent(kind, time.time(), content)],
                    time.monotonic())], [])


def desired(role: NDirectorRole) -> dict[str, Any]:
    return {n: ({k: dict(v) for k, v in s.tracker.macs.items()},
                {v: set(t) for v, t in s.tracker.floods.items()},
                dict(s.tracker.policies))
            for n, s in role.sessions.items()}


@pytest.mark.parametrize("seed", range(30))
def test_incremental_distribution_equals_the_whole(seed: int) -> None:
    rng = random.Random(seed)
    # h0, h1 members by configuration, h2 holds VNI 300 configured; the others join by
    # attaching (and leave when their last attachment goes)
    role = director({300: {"h0", "h1"}, 301: {"h0"}}, {"h2": {300}})
    role.vm_policies = {(300, MACS[0]): {"vni": 300, "mac": MACS[0], "vlan": 7}}
    for _ in range(60):
        nve, vni, mac = rng.choice(NVES), rng.choice(VNIS), rng.choice(MACS)
        kind = rng.choice(("attachment-added", "attachment-changed", "attachment-removed"))
        event(role, nve, kind, vni, mac, rng.choice(("associated", "activated")))
        before = desired(role)
        role._distribute(set(), set(), set(NVES), 0.0)    # everything, against the table
        assert desired(role) == before


def test_one_change_derives_one_entry_for_every_nve() -> None:
    role = director({300: set(NVES)})
    key = (300, MACS[0])
    event(role, "h0", "attachment-added", 300, MACS[0])
    event(role, "h1", "attachment-added", 300, MACS[0], "associated")
    event(role, "h1", "attachment-changed", 300, MACS[0], "activated")     # the move
    assert role.table.mappings[key].nve == "h1"
    held = [s.tracker.macs.get(key) for n, s in role.sessions.items() if n != "h1"]
    assert held[0] is not None and held[0]["remote-vtep"] == "198.18.0.2"
    assert all(e is held[0] for e in held)              # built once, shared
    assert key not in role.sessions["h1"].tracker.macs  # it forwards locally


def test_an_nve_joining_a_vni_gets_its_mappings() -> None:
    role = director({300: {"h0", "h1"}})
    for mac in MACS[:3]:
        event(role, "h0", "attachment-added", 300, mac)
    assert set(role.sessions["h1"].tracker.macs) == {(300, m) for m in MACS[:3]}
    assert not role.sessions["h4"].tracker.macs
    event(role, "h4", "attachment-added", 300, MACS[5])          # h4 joins VNI 300
    assert set(role.sessions["h4"].tracker.macs) == {(300, m) for m in MACS[:3]}
    assert role.sessions["h4"].tracker.floods[300] == {"198.18.0.1", "198.18.0.2"}
    event(role, "h4", "attachment-removed", 300, MACS[5])        # ... and leaves it
    assert not role.sessions["h4"].tracker.macs
    assert 300 not in role.sessions["h4"].tracker.floods
