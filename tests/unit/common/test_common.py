"""The shared helpers: one MAC form, list entries of a tree, timestamps, backoff."""

from __future__ import annotations

from datetime import datetime

import pytest

from nvo3.common.backoff import Backoff
from nvo3.common.clock import iso
from nvo3.common.mac import norm_mac
from nvo3.common.names import NVE, namespace
from nvo3.common.tree import entries, truthy


@pytest.mark.parametrize("given", ["02:00:C6:12:00:01", "02-00-c6-12-00-01", " 02:00:c6:12:00:01\n",
                                   "02:00:c6:12:00:01"])
def test_every_spelling_of_a_mac_gets_the_one_canonical_form(given: str) -> None:
    assert norm_mac(given) == "02:00:c6:12:00:01"


@pytest.mark.parametrize("bad", ["", "02:00:c6:12:00", "02:00:c6:12:00:01:02", "02:00:c6:12:00:zz",
                                 "0200c6120001", "02:00-c6:12:00:1"])
def test_a_malformed_mac_is_refused_by_name(bad: str) -> None:
    with pytest.raises(ValueError, match="bad MAC address"):
        norm_mac(bad)


def test_entries_of_a_list_under_a_container_whatever_is_absent() -> None:
    tree = {"networks": {"network": [{"vni": 1}, {"vni": 2}]}}
    assert entries(tree, "networks", "network") == [{"vni": 1}, {"vni": 2}]
    assert entries(tree, "networks", "other") == []
    assert entries({}, "networks", "network") == []
    assert entries(None, "networks", "network") == []
    assert entries({"networks": None}, "networks", "network") == []


def test_truthy_reads_yang_booleans_in_either_form() -> None:
    assert truthy(True) and truthy("true")
    assert not truthy(False) and not truthy("false") and not truthy(None)


def test_iso_is_yang_date_and_time_in_utc() -> None:
    text = iso(1_700_000_000.25)
    assert text == "2023-11-14T22:13:20.250000Z"
    assert datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp() == 1_700_000_000.25
    assert iso().endswith("Z")


def test_backoff_doubles_up_to_its_cap_and_starts_over_after_reset() -> None:
    backoff = Backoff(0.1, 0.5)
    assert [backoff.next_delay() for _ in range(5)] == [0.1, 0.2, 0.4, 0.5, 0.5]
    backoff.reset()
    assert backoff.next_delay() == 0.1


def test_module_namespaces_follow_one_pattern() -> None:
    assert namespace(NVE) == "urn:nvo3:yang:nvo3-nve"
