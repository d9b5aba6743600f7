"""What the etcd mode adds to the mapping table (adopt, forget, release) and its settings (the
`nvo3 serve ndirector --etcd` options). Pure: no etcd here (tests/integration/test_etcd_table.py
and tests/netns/test_federated.py run the real one)."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest

from nvo3.etcd_options import add_arguments, role_options
from nvo3.roles.ndirector.etcd_client import EtcdSettings
from nvo3.roles.ndirector.etcd_table import decode, encode, parse_mapping_key
from nvo3.roles.ndirector.mapping_table import ACTIVATED, Mapping, MappingTable, Report

VNI, MAC = 10010, "02:00:00:00:01:01"


def rep(nve: str, t: float | None) -> Report:
    return Report(VNI, MAC, nve, f"198.18.0.{ord(nve[-1]) - 96}", (), ACTIVATED, "vm1", t)


def remote(nve: str, seq: int, frozen: bool = False) -> Mapping:
    return Mapping(VNI, MAC, nve, "198.18.0.30", (), seq, ACTIVATED, "vm1", 5.0, origin="dc2",
                   frozen=frozen)


def test_adopt_takes_the_stored_location_as_it_is() -> None:
    t = MappingTable()
    assert [c.kind for c in t.adopt(remote("x", 4), 1.0).changes] == ["added"]
    assert not t.candidates                       # a remote location is not a local report
    assert t.adopt(remote("x", 4), 2.0).changes == []         # nothing new
    (ch,) = t.report(rep("a", 9.0), 3.0).changes  # a newer local event moves it: seq 5
    assert (ch.kind, ch.mapping.nve, ch.mapping.seq, ch.previous_nve) == ("moved", "a", 5, "x")
    (ch,) = t.adopt(remote("y", 6, frozen=True), 4.0).changes
    assert (ch.kind, ch.mapping.nve, ch.mapping.seq, ch.mapping.frozen) == ("moved", "y", 6, True)
    assert t.report(rep("a", 1.0), 5.0).refused       # older than the adopted location


def test_forget_and_release() -> None:
    t = MappingTable()
    t.report(rep("a", 1.0), 1.0)
    t.report(rep("b", 0.5), 1.0)                  # a candidate that does not win
    assert [c.kind for c in t.forget(VNI, MAC).changes] == ["removed"]
    assert t.get(VNI, MAC) is None and set(t.candidates[(VNI, MAC)]) == {"a", "b"}
    t.adopt(Mapping(VNI, MAC, "c", "198.18.0.3", (), 3, ACTIVATED), 2.0)
    (ch,) = t.release(VNI, MAC, 3.0).changes      # c no longer reports it: the best candidate
    assert (ch.kind, ch.mapping.nve, ch.mapping.seq) == ("moved", "a", 4)


def test_stored_value_round_trip() -> None:
    m = Mapping(VNI, MAC, "h3", "198.18.0.21", ("198.19.10.1",), 7, ACTIVATED, "vm1", 12.5)
    back = decode((VNI, MAC), encode(m, "dc2"), "dc1")
    assert (back.nve, back.vtep, back.ips, back.seq, back.time, back.origin) == \
        ("h3", "198.18.0.21", ("198.19.10.1",), 7, 12.5, "dc2")
    assert decode((VNI, MAC), encode(m, "dc1"), "dc1").origin == "local"
    assert parse_mapping_key(f"/nvo3/mappings/{VNI}/{MAC}") == (VNI, MAC)
    assert parse_mapping_key("/nvo3/mappings/x/y") is None


def _args(*argv: str) -> argparse.Namespace:
    p = argparse.ArgumentParser()
    p.add_argument("role")
    p.add_argument("--state-dir", type=Path)
    add_arguments(p)
    return p.parse_args(list(argv))


def test_etcd_options() -> None:
    assert role_options(_args("ndirector")) == {}
    got = role_options(_args("ndirector", "--etcd", "http://127.0.0.1:2379,https://127.0.0.1:2380",
                             "--data-center", "dc1", "--state-dir", "/var/lib/nvo3/nd-a"))
    assert got == {"etcd": EtcdSettings(("http://127.0.0.1:2379", "https://127.0.0.1:2380")),
                   "data_center": "dc1", "director_name": "nd-a"}
    for argv, problem in ((("ndirector", "--etcd", "127.0.0.1:2379", "--data-center", "d"),
                           "bad etcd endpoint '127.0.0.1:2379'"),
                          (("ndirector", "--etcd", "http://127.0.0.1:2379"), "needs --data-center"),
                          (("nve", "--etcd", "http://127.0.0.1:2379", "--data-center", "d"),
                           "ndirector role only"),
                          (("ndirector", "--data-center", "d"), "need --etcd"),
                          (("ndirector", "--etcd", "http://h:1", "--data-center", "d",
                            "--etcd-cert", "c.pem"), "needs its key")):
        with pytest.raises(ValueError, match=problem):
            role_options(_args(*argv))
