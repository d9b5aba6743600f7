"""nvo3.roles.ndirector.nve_client and the codec's builders: the nDirector's push payloads.

The push path builds its <config> with the codec's text builder (no libyang: a 7,500-entry
resync is about ten times cheaper); these tests hold it to the libyang builder: for random
edits and for hostile values, both give the same XML.
"""

from __future__ import annotations

import random

import libyang
import pytest
from lxml import etree

from nvo3.common.names import NVE, VCENTER
from nvo3.roles.ndirector import nve_client
from nvo3.roles.ndirector.nve_client import NveEdit
from nvo3.roles.peers import codec
from nvo3.roles.peers.codec import OPERATION

HOSTILE = ("<&'\"]]>", "a&amp;b", "</description><evil/>", "x\ty", "é\u2028✓", "'\"", "&#60;")


def canonical(xml: str) -> bytes:
    """The XML in canonical form (C14N): same bytes <=> same XML document."""
    return etree.tostring(etree.fromstring(xml), method="c14n")


def random_mac(rng: random.Random) -> str:
    return ":".join(f"{b:02x}" for b in (rng.randrange(0, 256) & 0xFC,
                                          *(rng.randrange(256) for _ in range(5))))


def random_edit(rng: random.Random) -> NveEdit:
    edit = NveEdit()
    for _ in range(rng.randint(0, 3)):
        ne = edit.network(rng.randint(1, 16_000_000))
        ne.replace = rng.random() < 0.3
        for _ in range(rng.randint(0, 6)):
            mac = random_mac(rng)
            entry = {"mac": mac, "remote-vtep": f"198.18.{rng.randrange(256)}.{rng.randrange(256)}",
                     "remote-nve": rng.choice(("host1", "nve-2", "h_3.x")),
                     "sequence-number": rng.randrange(2**32)}
            if rng.random() < 0.3:
                entry["ip-address"] = [f"198.19.0.{rng.randrange(256)}",
                                       f"2001:db8::{rng.randrange(65536):x}"]
            if rng.random() < 0.2:
                entry["sticky"] = rng.random() < 0.5
            ne.macs[mac] = entry
        if not ne.replace:
            ne.remove_macs = {random_mac(rng) for _ in range(rng.randint(0, 3))} - set(ne.macs)
        ne.vteps = {f"198.18.1.{rng.randrange(256)}" for _ in range(rng.randint(0, 3))}
        if not ne.replace:
            ne.remove_vteps = {f"198.18.2.{rng.randrange(256)}" for _ in range(rng.randint(0, 2))}
    edit.replace_policies = rng.random() < 0.2
    for _ in range(rng.randint(0, 3)):
        key = (rng.randint(1, 100), random_mac(rng))
        edit.policies[key] = {"vni": key[0], "mac": key[1], "vlan": rng.randint(1, 4094)}
    if not edit.replace_policies:
        edit.remove_policies = {(rng.randint(1, 100), random_mac(rng))
                                for _ in range(rng.randint(0, 2))}
    return edit


@pytest.mark.parametrize("seed", range(40))
def test_push_text_is_what_libyang_builds(seed: int) -> None:
    edit = random_edit(random.Random(seed))
    fast = nve_client.build_edit_text(edit)
    checked = codec.build_config(NVE, nve_client.edit_tree(edit))
    assert canonical(fast) == canonical(checked)


def test_push_operations() -> None:
    edit = NveEdit()
    edit.network(100).macs["02:00:00:00:00:01"] = {
        "mac": "02:00:00:00:00:01", "remote-vtep": "198.18.0.2", "remote-nve": "h2",
        "sequence-number": 3}
    edit.network(100).remove_macs.add("02:00:00:00:00:02")
    edit.network(200).replace = True
    root = etree.fromstring(nve_client.build_edit_text(edit))
    op = f"{{{codec.BASE_NS}}}operation"
    ns = {"n": "urn:nvo3:yang:nvo3-nve"}
    nets = root.findall(".//n:network", ns)
    assert [n.findtext("n:vni", namespaces=ns) for n in nets] == ["100", "200"]
    entries = nets[0].findall("n:remote-macs/n:remote-mac", ns)
    assert [(e.get(op), e.findtext("n:mac", namespaces=ns)) for e in entries] == [
        ("replace", "02:00:00:00:00:01"), ("remove", "02:00:00:00:00:02")]
    assert nets[1].find("n:remote-macs", ns).get(op) == "replace"
    assert nets[1].find("n:flood-list", ns).get(op) == "replace"


@pytest.mark.parametrize("text", HOSTILE)
def test_hostile_values_are_escaped_alike(text: str) -> None:
    tree = {"vcenter": {"tenants": {"tenant": [{"name": "t1", "vm-group": [
        {OPERATION: "create", "name": "g1", "description": text,
         "profile": {"vlan": 7, "resources": {"vcpus": 2}}}]}]}}}
    fast = codec.build_config_text(VCENTER, tree)
    checked = codec.build_config(VCENTER, tree)
    assert canonical(fast) == canonical(checked)
    found = etree.fromstring(fast).find(".//{urn:nvo3:yang:nvo3-vcenter}description")
    assert found is not None and found.text == text


def test_libyang_builder_refuses_bad_values() -> None:
    bad = {"nve": {"networks": {"network": [{"vni": 1, "remote-macs": {"remote-mac": [
        {"mac": "02:00:00:00:00:01", "remote-nve": "a<b"}]}}]}}}
    with pytest.raises(libyang.LibyangError):
        codec.build_config(NVE, bad)
    with pytest.raises(ValueError):
        codec.build_config_text(NVE, {"nve": {OPERATION: "drop"}})
