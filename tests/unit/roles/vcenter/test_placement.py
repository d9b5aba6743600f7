"""Placement of a VM on a vServer, and of a request on a child vCenter."""

from __future__ import annotations

import pytest

from nvo3.roles.vcenter.placement import Candidate, Load, NoCapacity, choose, choose_child, reserve

NEED = {"vcpus": 2, "memory": 1024, "disk": 10}


def cand(name: str, vcpus_used: int, memory_used: int = 0, dc: str = "dc1",
         available: bool = True) -> Candidate:
    return Candidate(name, Load(16, vcpus_used, 32768, memory_used, 1000, 0), frozenset({dc}),
                     available)


def test_least_loaded_most_free_vcpus_then_memory_then_name() -> None:
    assert choose([cand("a", 10), cand("b", 4), cand("c", 8)], NEED) == "b"
    assert choose([cand("a", 4, 2000), cand("b", 4, 1000)], NEED) == "b"
    assert choose([cand("b", 4), cand("a", 4)], NEED) == "a"


def test_only_fitting_available_reported_vservers() -> None:
    cands = [cand("full", 15), cand("down", 0, available=False),
             Candidate("silent", None), cand("ok", 12)]
    assert choose(cands, NEED) == "ok"
    with pytest.raises(NoCapacity) as exc:
        choose(cands[:3], NEED)
    text = str(exc.value)
    assert "no vServer with capacity" in text and "full: 2 vcpus needed, 1 free" in text
    assert "down: not available" in text and "silent: no load report yet" in text


def test_data_center_filter_and_policies() -> None:
    cands = [cand("a", 0, dc="dc1"), cand("b", 8, dc="dc2"), cand("c", 4, dc="dc2")]
    assert choose(cands, NEED, data_center="dc2") == "c"
    assert choose(cands, NEED, "first-fit") == "a"
    assert choose(cands, NEED, "round-robin", last="a") == "b"
    assert choose(cands, NEED, "round-robin", last="c") == "a"
    with pytest.raises(NoCapacity):
        choose(cands, NEED, data_center="dc9")


def test_reserve_moves_the_next_vm_elsewhere() -> None:
    a, b = cand("a", 4), cand("b", 5)
    assert choose([a, b], NEED) == "a"
    a = Candidate("a", reserve(a.load, NEED), a.data_centers)          # type: ignore[arg-type]
    assert choose([a, b], NEED) == "b"


def test_absent_total_does_not_constrain() -> None:
    assert choose([Candidate("x", Load())], {"vcpus": 64}) == "x"


def test_child_vcenter_by_topology_and_load() -> None:
    small = Load(4, 3, 8192, 0, 100, 0)
    big = Load(32, 4, 65536, 0, 1000, 0)
    dc1 = Candidate("vc1", small + small, frozenset({"dc1"}), members=(small, small))
    dc2 = Candidate("vc2", big, frozenset({"dc2"}), members=(big,))
    assert choose_child([dc1, dc2], NEED) == "vc2"
    assert choose_child([dc1, dc2], {"vcpus": 1}, data_center="dc1") == "vc1"
    with pytest.raises(NoCapacity, match="no child vCenter"):
        choose_child([dc1, dc2], NEED, data_center="dc1")   # 2 free in total, 1 per vServer
