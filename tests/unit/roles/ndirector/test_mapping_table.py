"""The global mapping table: election, sequence numbers, stale refusal, duplicate MACs,
make-before-break. Pure: no I/O, time is passed in."""

from __future__ import annotations

from nvo3.roles.ndirector.mapping_table import ACTIVATED, ASSOCIATED, DuplicateMacConfig, MappingTable, Report

VNI = 10010
MAC = "02:00:00:00:01:01"
VTEP = {"a": "198.18.0.1", "b": "198.18.0.2", "c": "198.18.0.3"}


def rep(nve: str, t: float | None, state: str = ACTIVATED, ips: tuple[str, ...] = ("198.19.10.1",),
        seq: int | None = None, mac: str = MAC) -> Report:
    return Report(VNI, mac, nve, VTEP[nve], ips, state, "vm1", t, seq)


def test_first_report_adds_with_sequence_zero() -> None:
    t = MappingTable()
    out = t.report(rep("a", 1.0), now=1.0)
    assert [c.kind for c in out.changes] == ["added"]
    m = t.get(VNI, MAC)
    assert m is not None and (m.nve, m.vtep, m.seq) == ("a", "198.18.0.1", 0)
    assert t.by_ip(VNI, "198.19.10.1") is m


def test_newer_location_wins_and_increments_sequence() -> None:
    t = MappingTable()
    t.report(rep("a", 1.0), 1.0)
    out = t.report(rep("b", 2.0), 2.0)
    (ch,) = out.changes
    assert (ch.kind, ch.mapping.nve, ch.mapping.seq, ch.previous_nve) == ("moved", "b", 1, "a")
    t.report(rep("c", 3.0), 3.0)
    assert t.get(VNI, MAC).seq == 2  # type: ignore[union-attr]


def test_reordered_event_is_refused_as_stale() -> None:
    t = MappingTable()
    t.report(rep("a", 1.0), 1.0)
    t.report(rep("b", 3.0), 3.0)
    out = t.report(rep("c", 2.0), 3.1)          # happened before b's, arrived after
    assert not out.changes
    (ref,) = out.refused
    assert ref.current_nve == "b" and "older" in ref.reason
    assert t.get(VNI, MAC).nve == "b"  # type: ignore[union-attr]
    assert t.stats.stale_refused == 1


def test_explicit_sequence_numbers() -> None:
    t = MappingTable()
    t.report(rep("a", None, seq=5), 1.0)
    assert t.get(VNI, MAC).seq == 5  # type: ignore[union-attr]
    out = t.report(rep("b", None, seq=5), 2.0)
    assert out.refused and "not above" in out.refused[0].reason
    out = t.report(rep("b", None, seq=4), 2.0)
    assert out.refused
    out = t.report(rep("b", None, seq=9), 2.0)
    assert out.changes[0].mapping.seq == 9 and t.get(VNI, MAC).nve == "b"  # type: ignore[union-attr]


def test_datastore_read_never_displaces_a_known_location() -> None:
    t = MappingTable()
    t.report(rep("b", 5.0), 5.0)
    out = t.snapshot("a", [rep("a", None)], 6.0)   # a leftover attachment at a
    assert not out.changes and out.refused
    assert t.get(VNI, MAC).nve == "b"  # type: ignore[union-attr]
    # when b withdraws, the leftover takes over (it is the only location left)
    out = t.withdraw(VNI, MAC, "b", 7.0)
    assert out.changes[0].kind == "moved" and t.get(VNI, MAC).nve == "a"  # type: ignore[union-attr]


def test_same_nve_update_and_removal() -> None:
    t = MappingTable()
    t.report(rep("a", 1.0), 1.0)
    assert not t.report(rep("a", 1.5), 1.5).changes            # nothing new
    out = t.report(rep("a", 2.0, ips=("198.19.10.9",)), 2.0)
    assert out.changes[0].kind == "updated" and t.get(VNI, MAC).seq == 0  # type: ignore[union-attr]
    out = t.withdraw(VNI, MAC, "a", 3.0)
    assert out.changes[0].kind == "removed" and t.get(VNI, MAC) is None
    assert not t.withdraw(VNI, MAC, "a", 3.0).changes          # idempotent


def test_make_before_break() -> None:
    t = MappingTable()
    t.report(rep("a", 1.0), 1.0)
    # associate at the destination: pre-installed, the mapping stays at the source
    out = t.report(rep("b", 2.0, ASSOCIATED), 2.0)
    assert not out.changes and not out.refused
    assert t.get(VNI, MAC).nve == "a"  # type: ignore[union-attr]
    # activate at the destination: switch
    out = t.report(rep("b", 3.0), 3.0)
    assert out.changes[0].kind == "moved" and out.changes[0].mapping.seq == 1
    # deactivate and disassociate at the source: nothing changes any more
    assert not t.report(rep("a", 4.0, ASSOCIATED), 4.0).changes
    assert not t.withdraw(VNI, MAC, "a", 5.0).changes
    assert t.get(VNI, MAC).nve == "b"  # type: ignore[union-attr]


def test_deactivated_source_hands_over_to_activated_destination() -> None:
    t = MappingTable()
    t.report(rep("a", 1.0), 1.0)
    t.report(rep("b", 2.0, ASSOCIATED), 2.0)
    t.report(rep("b", 0.5), 2.1)               # activated, but clock says older: stale
    assert t.get(VNI, MAC).nve == "a"  # type: ignore[union-attr]
    out = t.report(rep("a", 3.0, ASSOCIATED), 3.0)   # source deactivates
    assert [c.kind for c in out.changes] == ["updated", "moved"]
    assert t.get(VNI, MAC).nve == "b"  # type: ignore[union-attr]


def test_duplicate_mac_detection_freezes() -> None:
    t = MappingTable(DuplicateMacConfig(max_moves=3, window=180))
    t.report(rep("a", 0.0), 0.0)
    dups = []
    for i, nve in enumerate(["b", "a", "b"], start=1):
        out = t.report(rep(nve, float(i)), float(i))
        dups += out.duplicates
    (d,) = dups
    assert (d.moves, d.window, d.frozen, d.nves) == (3, 180, True, ("a", "b"))
    m = t.get(VNI, MAC)
    assert m is not None and m.frozen and m.nve == "b"
    out = t.report(rep("a", 10.0), 10.0)
    assert not out.changes and out.refused[0].reason == "frozen duplicate MAC"
    assert t.stats.duplicates == 1 and t.stats.stale_refused == 0
    cleared, out = t.clear_duplicates(11.0, vni=VNI, mac=MAC)
    # cleared: the newest activated candidate (a, reported at 10) takes over
    assert cleared == 1 and out.changes[0].mapping.nve == "a" and not t.get(VNI, MAC).frozen  # type: ignore[union-attr]


def test_moves_outside_the_window_do_not_count() -> None:
    t = MappingTable(DuplicateMacConfig(max_moves=3, window=10))
    t.report(rep("a", 0.0), 0.0)
    for i, nve in enumerate(["b", "a", "b", "a", "b"]):
        now = 100.0 + 6 * i
        assert not t.report(rep(nve, now), now).duplicates
    assert t.get(VNI, MAC).moves and len(t.get(VNI, MAC).moves) <= 2  # type: ignore[union-attr]


def test_detection_without_freeze_only_reports() -> None:
    t = MappingTable(DuplicateMacConfig(max_moves=2, window=60, freeze=False))
    t.report(rep("a", 0.0), 0.0)
    t.report(rep("b", 1.0), 1.0)
    out = t.report(rep("a", 2.0), 2.0)
    assert out.duplicates and not out.duplicates[0].frozen
    assert t.report(rep("b", 3.0), 3.0).changes[0].kind == "moved"


def test_recovery_unfreezes() -> None:
    t = MappingTable(DuplicateMacConfig(max_moves=2, window=60, recovery=30))
    t.report(rep("a", 0.0), 0.0)
    t.report(rep("b", 1.0), 1.0)
    t.report(rep("a", 2.0), 2.0)
    assert t.get(VNI, MAC).frozen  # type: ignore[union-attr]
    assert not t.tick(20.0).changes and t.get(VNI, MAC).frozen  # type: ignore[union-attr]
    t.tick(40.0)
    assert not t.get(VNI, MAC).frozen  # type: ignore[union-attr]


def test_seed_after_restart_keeps_sequence_and_last_location() -> None:
    t = MappingTable()
    t.seed(VNI, MAC, 4, "b")            # remote NVEs still point at b with seq 4
    out = t.snapshot("a", [rep("a", None)], 1.0)   # a leftover at a is read first
    assert out.changes[0].mapping.seq == 5          # it moved while we were away
    t2 = MappingTable()
    t2.seed(VNI, MAC, 4, "b")
    t2.snapshot("b", [rep("b", None)], 1.0)
    assert t2.get(VNI, MAC).seq == 4  # type: ignore[union-attr]
    out = t2.snapshot("a", [rep("a", None)], 1.0)  # the leftover is stale now
    assert out.refused and t2.get(VNI, MAC).nve == "b"  # type: ignore[union-attr]


def test_snapshot_withdraws_what_is_gone_and_ignores_unchanged() -> None:
    t = MappingTable()
    other = "02:00:00:00:01:02"
    t.report(rep("a", 1.0), 1.0)
    t.report(rep("a", 1.0, mac=other), 1.0)
    out = t.snapshot("a", [rep("a", None)], 2.0)
    assert [(c.kind, c.mapping.mac) for c in out.changes] == [("removed", other)]
    assert t.get(VNI, MAC).time == 1.0  # type: ignore[union-attr]
    assert [r.mac for r in t.local_to("a")] == [MAC]


def test_restart_leftover_read_first_yields_to_the_seeded_location() -> None:
    t = MappingTable()
    t.seed(VNI, MAC, 1, "b")                       # the others point at b, seq 1
    t.snapshot("a", [rep("a", None)], 1.0)         # a leftover at a, read first
    out = t.snapshot("b", [rep("b", None)], 1.1)   # then b
    m = t.get(VNI, MAC)
    assert m is not None and (m.nve, m.seq) == ("b", 1)
    assert out.refused and out.refused[0].report.nve == "a" and t.stats.stale_refused == 1
    assert not m.moves
