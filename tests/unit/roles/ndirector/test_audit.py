"""The nDirector's audit trail of its mapping table (roles/ndirector/audit.py): each change
and move logged with mac, VNI, from NVE -> to NVE and sequence number; a burst summarised."""

from __future__ import annotations

import logging

from nvo3.roles.ndirector.audit import DETAILED, audit_mappings
from nvo3.roles.ndirector.mapping_table import MappingTable, Report

MAC = "02:00:00:00:00:01"


def test_an_add_and_a_move_are_logged_with_where_from_and_the_sequence(caplog):
    caplog.set_level(logging.INFO, logger="nvo3.audit")
    table = MappingTable()
    audit_mappings(table.report(Report(100, MAC, "nve-h1", "198.18.0.1", time=1.0), 1.0).changes)
    audit_mappings(table.report(Report(100, MAC, "nve-h2", "198.18.0.2", time=2.0), 2.0).changes)
    added, moved = [r for r in caplog.records if r.name == "nvo3.audit"]
    assert added.getMessage() == (f"mapping added: mac {MAC} vni 100 at nve-h1 (vtep "
                                  "198.18.0.1) sequence 0")
    assert moved.getMessage() == (f"mapping moved: mac {MAC} vni 100 at nve-h1 -> nve-h2 "
                                  "(vtep 198.18.0.2) sequence 1")
    assert (moved.mac, moved.vni, moved.previous_nve, moved.nve, moved.sequence) == \
        (MAC, 100, "nve-h1", "nve-h2", 1)


def test_a_burst_is_summarised_after_the_first_changes(caplog):
    caplog.set_level(logging.INFO, logger="nvo3.audit")
    table = MappingTable()
    changes = []
    for i in range(DETAILED + 30):
        r = Report(100, f"02:00:00:00:{i >> 8:02x}:{i & 255:02x}", "nve-h1", "198.18.0.1",
                   time=1.0)
        changes += table.report(r, 1.0).changes
    audit_mappings(changes)
    records = [r for r in caplog.records if r.name == "nvo3.audit"]
    assert len(records) == DETAILED + 1
    assert records[-1].getMessage() == "mappings: 30 more changes (added 30)"
