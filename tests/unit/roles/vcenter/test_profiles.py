"""The vCenter's profile store: registration, unregistration, bulk, lookup, persistence."""

from __future__ import annotations

import pytest

from nvo3.roles.vcenter.profiles import Group, Profile, ProfileError, ProfileStore, TenantConfig


def store() -> ProfileStore:
    s = ProfileStore()
    s.configure({"alice": TenantConfig("alice", 10010, {"web": Group("web", vlan=100,
                                                               resources={"vcpus": 2})}),
                 "bob": TenantConfig("bob", None)},
                [Profile("alice", "vm1", "02:00:00:00:01:01", vm_group="web",
                         ips=["198.19.10.1"], configured=True)])
    return s


def test_registration_creates_then_updates() -> None:
    s = store()
    out = s.register("vs1", "alice", "vm9", "02:00:00:00:01:09", ips=["198.19.10.9"],
                     nve="nve1")
    assert out.created and out.profile.location.vserver == "vs1"
    assert s.vnid_of(out.profile) == 10010 and out.profile.registered
    again = s.register("vs2", "alice", "vm9", "02:00:00:00:01:09", state="powered-off")
    assert not again.created and again.previous_state == "powered-on"
    assert again.profile.location.vserver == "vs2" and again.profile.state == "powered-off"


def test_configured_profile_keeps_its_items_and_gains_a_location() -> None:
    s = store()
    out = s.register("vs1", "alice", "vm1", "02:00:00:00:01:01", vlan=300)
    assert not out.created and s.vlan_of(out.profile) == 100     # group VLAN, not 300
    assert s.resources_of(out.profile) == {"vcpus": 2, "memory": 512, "disk": 10}
    with pytest.raises(ProfileError) as exc:
        s.register("vs1", "alice", "vm1", "02:00:00:00:01:99")
    assert exc.value.alert == "mac-address-mismatch"


@pytest.mark.parametrize("tenant,name,mac,kw,tag", [
    ("carol", "vm1", "02:00:00:00:00:01", {}, "unknown-tenant"),
    ("bob", "vm1", "02:00:00:00:00:01", {}, "no-vnid"),
    ("alice", "vm2", "02:00:00:00:01:01", {}, "duplicate-mac"),
    ("alice", "vm2", "02:00:00:00:01:02", {"vm_group": "db"}, "unknown-vm-group"),
])
def test_bad_registrations_change_nothing(tenant: str, name: str, mac: str, kw: dict,
                                          tag: str) -> None:
    s = store()
    before = s.dump()
    with pytest.raises(ProfileError) as exc:
        s.register("vs1", tenant, name, mac, **kw)
    assert exc.value.app_tag == tag
    assert s.dump() == before


def test_same_mac_in_another_vni_is_allowed() -> None:
    s = store()
    s.register("vs1", "bob", "b1", "02:00:00:00:01:01", vnid=20020)
    assert [p.name for p in s.lookup(mac="02:00:00:00:01:01")] == ["vm1", "b1"] or \
        sorted(p.name for p in s.lookup(mac="02:00:00:00:01:01")) == ["b1", "vm1"]
    assert [p.name for p in s.lookup(mac="02:00:00:00:01:01", vnid=20020)] == ["b1"]


def test_unregistration() -> None:
    s = store()
    s.register("vs1", "alice", "vm9", "02:00:00:00:01:09")
    assert s.unregister("vs1", "alice", "nope")[::2] == ("unknown-vm",
                                                         "unknown-vm-unregistration")
    assert s.unregister("vs1", "alice", "vm9", "02:00:00:00:00:aa")[0] == "rejected"
    assert s.unregister("vs2", "alice", "vm9")[0] == "ok"           # not its host: no-op
    assert ("alice", "vm9") in s.profiles
    assert s.unregister("vs1", "alice", "vm9")[0] == "ok"
    assert ("alice", "vm9") not in s.profiles and not s.lookup(mac="02:00:00:00:01:09")
    s.register("vs1", "alice", "vm1", "02:00:00:00:01:01")
    s.unregister("vs1", "alice", "vm1")                # configured: kept, location cleared
    assert s.profiles[("alice", "vm1")].location.vserver is None
    assert not s.profiles[("alice", "vm1")].registered


def test_bulk_register_and_unregister_by_group() -> None:
    s = store()
    vms = [{"name": f"w{i}", "mac-address": f"02:00:00:00:10:{i:02x}",
            "ip-address": [f"198.19.11.{i}"]} for i in range(1, 51)]
    vms.append({"name": "dup", "mac-address": "02:00:00:00:01:01"})
    results = s.bulk_register("vs1", "alice", {"vm-group": "web", "resources": {"memory": 64}},
                              vms)
    assert sum(r[1] == "ok" for r in results) == 50
    assert results[-1][:2] == ("dup", "already-exists")
    assert s.member_count("alice", "web") == 51                 # 50 + the configured vm1
    assert s.lookup(ip="198.19.11.7")[0].name == "w7"
    assert s.resources_of(s.profiles[("alice", "w7")]) == {"vcpus": 2, "memory": 64,
                                                            "disk": 10}
    assert len(s.select_hosted("vs1", "alice", "web")) == 50
    for key in s.select_hosted("vs1", "alice", "web"):
        assert s.unregister("vs1", *key)[0] == "ok"
    assert s.member_count("alice", "web") == 1


def test_report_updates_state_and_figures() -> None:
    s = store()
    s.register("vs1", "alice", "vm9", "02:00:00:00:01:09")
    out = s.report("vs1", "alice", "vm9", "powered-off", "nve1", {"cpu-utilization": 7},
                   "2026-01-01T00:00:00Z")
    assert out is not None and out.previous_state == "powered-on"
    assert out.profile.monitoring == {"cpu-utilization": 7,
                                      "last-update": "2026-01-01T00:00:00Z"}
    assert s.report("vs1", "alice", "ghost", "powered-on", None, {}, None) is None


def test_lookup_by_name_needs_nothing_else() -> None:
    s = store()
    assert [p.name for p in s.lookup("alice", name="vm1")] == ["vm1"]
    assert s.lookup("alice", name="vm1", vnid=1) == []
    assert s.lookup(ip="198.19.10.1")[0].name == "vm1"


def test_persistence_round_trip_and_reconfigure() -> None:
    s = store()
    s.register("vs1", "alice", "vm9", "02:00:00:00:01:09", ips=["198.19.10.9"])
    s.register("vs1", "alice", "vm1", "02:00:00:00:01:01")
    t = ProfileStore()
    t.load(s.dump())
    t.configure(s.tenants, [Profile("alice", "vm1", "02:00:00:00:01:01", vm_group="web",
                                    configured=True)])
    assert t.profiles[("alice", "vm9")].location.vserver == "vs1"
    assert t.profiles[("alice", "vm1")].registered            # dynamic state kept
    assert t.lookup(ip="198.19.10.9")[0].name == "vm9"


def test_configuration_clashing_with_a_learned_mac_is_refused() -> None:
    s = store()
    s.register("vs1", "alice", "vm9", "02:00:00:00:01:09")
    before = s.dump()
    with pytest.raises(ProfileError):
        s.configure(s.tenants, [Profile("alice", "vm5", "02:00:00:00:01:09",
                                        configured=True)])
    assert s.dump() == before


def test_duplicate_ip_in_a_vni_is_refused_naming_the_holder() -> None:
    s = store()
    dup = Profile("alice", "web5", "02:00:00:00:01:05", ips=["198.19.10.1"])
    with pytest.raises(ProfileError) as exc:
        s.check_ips(dup)
    assert exc.value.app_tag == "duplicate-ip" and exc.value.tag == "data-exists"
    assert "198.19.10.1 is already used by VM alice/vm1 in VNI 10010" in str(exc.value)
    s.check_ips(dup, sharing=("alice", "vm1"))          # a replica that ends its source
    s.check_ips(Profile("bob", "b1", "02:00:00:00:02:01", vnid=20020, ips=["198.19.10.1"]))
    s.check_ips(s.profiles[("alice", "vm1")])            # its own address


def test_free_mac_is_derived_and_unique_in_the_vni() -> None:
    from nvo3.common.mac import derived_mac
    s = store()
    p = Profile("alice", "cache1", "")
    assert s.free_mac(p) == derived_mac("alice", "cache1")
    taken = Profile("alice", "other", derived_mac("alice", "cache1"))
    s.put(taken)
    assert s.free_mac(p) == derived_mac("alice", "cache1", 1) != taken.mac
