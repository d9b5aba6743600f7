"""The topology picture: well-formed SVG, one element per VM, names escaped."""

from __future__ import annotations

from lxml import etree

from nvo3.dashboard import svg
from nvo3.dashboard.model import DataCenter, HostBox, Topology, VmBox

SVG = "{http://www.w3.org/2000/svg}"


def test_render() -> None:
    evil = VmBox("alice", "<script>x</script>", "powered-on", 10010, "02:00:00:00:00:01", [])
    host = HostBox("host1", "host1", "vserver1", "198.18.0.11",
                   [VmBox("alice", "vm1", "powered-on", 10010, "02:00:00:00:00:02", []), evil])
    topo = Topology([DataCenter("dc1", [host]), DataCenter("dc2", [HostBox("h2", "h2", "vs2")])],
                    [VmBox("bob", "off", "powered-off", 10020, "02:00:00:00:00:03", [])],
                    [10010, 10020])
    text = svg.render(topo)
    root = etree.fromstring(text)                       # well-formed, with the names escaped
    assert "<script>" not in text
    ids = {el.get("id") for el in root.iter() if el.get("id")}
    assert {"dc-dc1", "dc-dc2", "host-host1", "host-h2", "vm-alice-vm1"} <= ids
    vm1 = root.find(f".//{SVG}g[@id='vm-alice-vm1']")
    assert vm1 is not None and vm1.get("data-vni") == "10010"
    assert vm1.getparent().get("href") == "/vm/alice/vm1"
    assert "not running: bob/off (powered-off)" in "".join(root.itertext())
    assert svg.colour(10010, topo.vnis) != svg.colour(10020, topo.vnis)
