"""Unit tests of the pure desired-state model and the delta tracker."""

from __future__ import annotations

import pytest

from nvo3.dataplane import nlbulk
from nvo3.dataplane.model import (
    DesiredState,
    FloodEntry,
    Network,
    Port,
    RemoteMac,
    bridge_name,
    vni_of,
    vxlan_name,
)
from nvo3.dataplane.tracker import DeltaTracker, Update

NET = Network(100, "198.18.0.1")
R1 = RemoteMac(100, "02:00:00:00:00:01", "198.18.0.2", ("198.19.0.1",))


def test_names_are_deterministic_and_short() -> None:
    assert vxlan_name(16777215) == "vx-16777215" and len(bridge_name(16777215)) <= 15
    assert vni_of("br-42") == 42 and vni_of("eth0") is None and vni_of("vx-a") is None


def test_values_are_normalised_and_validated() -> None:
    assert RemoteMac(100, "02-00-00-00-00-0A", "198.18.0.2").mac == "02:00:00:00:00:0a"
    assert Port("tap1", 100, None, "02:00:00:00:00:01", ("198.19.0.2", "198.19.0.1")).ips == (
        "198.19.0.1", "198.19.0.2")
    with pytest.raises(ValueError):
        Network(0, "198.18.0.1")
    with pytest.raises(ValueError):
        Port("a-name-longer-than-15", 100, None, "02:00:00:00:00:01")
    with pytest.raises(ValueError):
        DesiredState(remote_macs=(R1, RemoteMac(100, R1.mac, "198.18.0.3")))


def test_state_equality_ignores_order_and_validate_finds_dangling() -> None:
    f1, f2 = FloodEntry(100, "198.18.0.2"), FloodEntry(100, "198.18.0.3")
    assert DesiredState(floods=(f1, f2)) == DesiredState(floods=(f2, f1))
    assert DesiredState(remote_macs=(R1,)).validate() == ["remote MAC 02:00:00:00:00:01: no network 100"]


def test_tracker_pending_in_order_and_in_sync_after_applied() -> None:
    t = DeltaTracker()
    t.set_desired(DesiredState(networks=(NET,), remote_macs=(R1,)))
    batch = t.pending()
    assert [type(u.new).__name__ for u in batch.updates] == ["Network", "RemoteMac"]
    assert not t.in_sync()
    t.applied(batch)
    assert t.in_sync() and not t.pending()


def test_tracker_failed_write_stays_pending_and_changes_carry_old_value() -> None:
    t = DeltaTracker()
    t.set_desired(DesiredState(networks=(NET,), remote_macs=(R1,)))
    t.observe(DesiredState(networks=(NET,)))
    first = t.pending()
    assert first.updates == (Update(R1, None),)
    assert t.pending() == first  # not applied (failed): still pending
    moved = RemoteMac(100, R1.mac, "198.18.0.9")
    t.observe(DesiredState(networks=(NET,), remote_macs=(R1,)))
    t.set_desired_one(moved)
    assert t.pending().updates == (Update(moved, R1),)


def test_tracker_deletions_reverse_order_and_observe_one() -> None:
    t = DeltaTracker()
    t.observe(DesiredState(networks=(NET,), remote_macs=(R1,)))
    assert [type(o).__name__ for o in t.pending().deletes] == ["RemoteMac", "Network"]
    t.observe_one(R1, present=False)
    t.observe_one(NET, present=False)
    assert t.in_sync()


def test_encode_fdb_message_layout() -> None:
    msg = nlbulk.NeighMsg(nlbulk.OP_ADD, nlbulk.AF_BRIDGE, 5, nlbulk.NUD_PERMANENT,
                          nlbulk.NTF_SELF, nlbulk.mac_bytes("02:00:00:00:00:01"),
                          nlbulk.ip_bytes("198.18.0.2")[1])
    raw = nlbulk.encode(msg, 7)
    assert len(raw) == 48 and raw[:4] == (48).to_bytes(4, "little")
    entry = nlbulk.parse_neigh(memoryview(raw)[16:])
    assert (entry.ifindex, entry.mac, nlbulk.ip_text(entry.dst or b"")) == (
        5, msg.mac, "198.18.0.2")
    (mtype, flags, seq, _p), = nlbulk.iter_messages(raw)
    assert (mtype, seq) == (nlbulk.RTM_NEWNEIGH, 7) and flags & nlbulk.NLM_F_ACK
