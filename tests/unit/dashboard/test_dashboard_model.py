"""What the dashboard's views show, from trees shaped like the servers' <get> replies."""

from __future__ import annotations

from nvo3.dashboard import model
from nvo3.dashboard.targets import HostPlace

HOSTS = (HostPlace("host1", "dc1", "host1", "vserver1"),
         HostPlace("host2", "dc1", "host2", "vserver2"),
         HostPlace("host3", "dc2", "host3", "vserver3"))

VC = {"tenants": {"tenant": [
    {"name": "alice", "vnid": 10010, "vm-group": [{"name": "web"}],
     "vm": [{"name": "vm1", "mac-address": "02:00:00:0a:00:01", "ip-address": ["198.19.10.1"],
             "state": "powered-on", "location": {"vserver": "vserver1", "nve": "host1",
                                                 "data-center": "dc1"}},
            {"name": "off", "mac-address": "02:00:00:0a:00:02", "state": "deleted"}]},
    {"name": "bob", "vnid": 10020,
     "vm": [{"name": "vm2", "mac-address": "02:00:00:0b:00:02", "state": "powered-on",
             "location": {"vserver": "vserver3"}}]}]}}

ND = {"nves": {"nve": [
    {"name": "host1", "vtep-address": "198.18.0.11",
     "session": {"state": "connected", "local-mappings": 1, "remote-mappings": 1}},
    {"name": "host2", "vtep-address": "198.18.0.12",
     "session": {"state": "connected", "local-mappings": 0, "remote-mappings": 0}},
    {"name": "host3", "vtep-address": "198.18.0.21",
     "session": {"state": "down", "local-mappings": 1, "remote-mappings": 0}}]},
    "networks": {"network": [{"vni": 10010, "member-nve": ["host1", "host2", "host3"]},
                             {"vni": 10020, "member-nve": ["host1", "host3"]}]},
    "mapping-table": {"network": [
        {"vni": 10010, "mapping": [{"mac": "02:00:00:0a:00:01", "nve": "host1",
                                    "vtep-address": "198.18.0.11", "sequence-number": 3}]},
        {"vni": 10020, "mapping": [{"mac": "02:00:00:0b:00:02", "nve": "host3",
                                    "vtep-address": "198.18.0.21"}]}]}}


def test_topology_places_vms_on_their_hosts_and_data_centers() -> None:
    topo = model.topology(HOSTS, VC, {"ndirector": ND})
    assert [dc.name for dc in topo.data_centers] == ["dc1", "dc2"]
    hosts = {h.name: h for dc in topo.data_centers for h in dc.hosts}
    assert [v.name for v in hosts["host1"].vms] == ["vm1"]
    assert hosts["host1"].vtep == "198.18.0.11"
    # no NVE in its location: placed by its vServer
    assert [v.name for v in hosts["host3"].vms] == ["vm2"]
    assert [v.name for v in topo.unplaced] == ["off"]          # deleted: not on a host
    assert topo.vnis == [10010, 10020]


def test_mapping_rows_name_the_vm_and_fall_back_to_the_vcenter() -> None:
    rows = model.mapping_rows({"ndirector": ND}, VC)
    assert [(r["vni"], r["mac"], r.get("vm")) for r in rows] == [
        (10010, "02:00:00:0a:00:01", "vm1"), (10020, "02:00:00:0b:00:02", "vm2")]
    # an nDirector this user may not read: the vCenter's locations, marked so
    rows = model.mapping_rows({}, VC)
    assert [(r["mac"], r["nve"], r["source"]) for r in rows] == [
        ("02:00:00:0a:00:01", "host1", "vcenter")]


def test_search_matches_any_column_case_insensitively() -> None:
    rows = model.mapping_rows({"ndirector": ND}, VC)
    assert [r["mac"] for r in model.search(rows, "198.18.0.21")] == ["02:00:00:0b:00:02"]
    assert [r["mac"] for r in model.search(rows, "  VM1 ")] == ["02:00:00:0a:00:01"]
    assert model.search(rows, "") == rows
    assert model.search(rows, "nothing-like-this") == []


def test_nve_drift_against_the_table() -> None:
    rows = {r["nve"]: r for r in model.nve_rows({"ndirector": ND})}
    assert rows["host1"]["drift"] == "in sync"          # local vm1, remote vm2 (vni 10020)
    assert (rows["host1"]["expected-local"], rows["host1"]["expected-remote"]) == (1, 1)
    assert rows["host2"]["drift"] == "remote 0 of 1"     # vm1's VNI only
    assert rows["host3"]["drift"] == "session down; remote 0 of 1"


def test_vm_history_by_mac_or_by_name() -> None:
    events = [{"id": 1, "kind": "added", "mac": "02:00:00:0A:00:01"},
              {"id": 2, "kind": "moved", "mac": "02:00:00:0b:00:02"},
              {"id": 3, "kind": "relocated", "tenant": "alice", "name": "vm1"}]
    assert [e["id"] for e in model.vm_history(events, "alice", "vm1", "02:00:00:0a:00:01")] \
        == [1, 3]
