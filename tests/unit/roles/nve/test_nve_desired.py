"""nvo3.roles.nve.desired: configuration dict -> DesiredState, and the checks YANG cannot do."""

from __future__ import annotations

from typing import Any

import pytest

from nvo3.dataplane.model import AclRule, FloodEntry, Network, Policy, Port, RemoteMac
from nvo3.roles.nve import desired as nd

MAC1, MAC2 = "02:00:00:00:01:01", "02:00:00:00:02:01"


def config(**over: Any) -> dict[str, Any]:
    """A small running configuration as libyang's print_dict shows it (defaults included)."""
    att = {"vni": 100, "mac": MAC1, "vm-id": "vm1", "ip-address": ["198.19.1.1"],
           "port": "tap-vm1", "state": "activated", **over.pop("att", {})}
    net = {"vni": 100, "flood-mode": "head-end-replication", "arp-nd-suppression": True,
           "remote-macs": {"remote-mac": [{"mac": "02:00:00:00:02:0A",
                                           "ip-address": ["198.19.2.1"],
                                           "remote-vtep": "198.18.0.2", "sequence-number": 0,
                                           "sticky": False}]},
           "flood-list": {"vtep": [{"address": "198.18.0.2"}, {"address": "198.18.0.3"}]},
           **over.pop("net", {})}
    nve = {"local-vtep-address": "198.18.0.1", "udp-port": 4789,
           "networks": {"network": [net]}, "attachments": {"attachment": [att]},
           **over}
    return {"nve": nve}


def test_full_mapping() -> None:
    d = nd.derive(config(), links={"tap-vm1", "lo"})
    assert not d.problems and not d.pending
    s = d.state
    assert s.networks == (Network(100, "198.18.0.1", 4789, "head-end"),)
    assert s.ports == (Port("tap-vm1", 100, None, MAC1, ("198.19.1.1",)),)
    assert s.remote_macs == (RemoteMac(100, "02:00:00:00:02:0a", "198.18.0.2", ("198.19.2.1",)),)
    assert set(s.floods) == {FloodEntry(100, "198.18.0.2"), FloodEntry(100, "198.18.0.3")}
    assert s.validate() == []


def test_flood_mode_none_and_no_suppression() -> None:
    d = nd.derive(config(net={"flood-mode": "none", "arp-nd-suppression": False}))
    assert d.state.floods == ()
    assert d.pending[nd.flood_key(100, "198.18.0.3")].startswith("flood-mode none")
    assert d.state.remote_macs[0].ips == ()
    assert d.state.networks[0].flood_mode == "none"


def test_unknown_port_is_a_problem_naming_it() -> None:
    d = nd.derive(config(), links={"lo"}, netns="h1")
    assert d.state.ports == ()
    [p] = d.problems
    assert p.tag == "invalid-value" and "tap-vm1" in p.message and "h1" in p.message
    assert p.path and p.path.endswith("/port")


def test_associated_attachment_is_pending_and_needs_no_port() -> None:
    d = nd.derive(config(att={"state": "associated"}), links={"lo"})
    assert not d.problems and d.state.ports == ()
    assert nd.port_key("tap-vm1") in d.pending


def test_activated_local_attachment_wins_over_a_remote_mapping() -> None:
    """A VM that moved here is forwarded locally even before the nDirector withdraws the
    remote mapping (RFC 8394 mobility); the remote entry is kept in config, not programmed."""
    d = nd.derive(config(att={"mac": "02:00:00:00:02:0a"}), links={"tap-vm1"})
    assert not d.problems
    assert d.state.remote_macs == ()
    assert [p.mac for p in d.state.ports] == ["02:00:00:00:02:0a"]
    assert "attached locally" in d.pending[nd.remote_mac_key(100, "02:00:00:00:02:0a")]


def test_associated_local_attachment_leaves_the_remote_mapping() -> None:
    """Make-before-break: until the destination is activated, traffic goes to the source."""
    d = nd.derive(config(att={"mac": "02:00:00:00:02:0a", "state": "associated"}),
                  links={"tap-vm1"})
    assert not d.problems
    assert [r.mac for r in d.state.remote_macs] == ["02:00:00:00:02:0a"]


def test_port_named_like_an_nvo3_device_is_refused() -> None:
    d = nd.derive(config(att={"port": "br-100"}), links={"br-100"})
    assert d.problems and "own devices" in d.problems[0].message


def policy(acl: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {"policy": [{"vni": 100, "mac": MAC1, "acl": acl, **extra}]}


def test_policy_acl_rate_and_vlan() -> None:
    acl = {"default-action": "deny", "rule": [
        {"sequence-id": 20, "action": "permit", "protocol": "tcp",
         "destination-ip-prefix": "198.19.0.0/16",
         "destination-port": {"lower-port": 443, "upper-port": 443}},
        {"sequence-id": 10, "action": "deny", "protocol": "icmp",
         "source-ip-prefix": "198.19.2.0/24"},
    ]}
    cfg = config(policies=policy(acl, vlan=7, **{"rate-limit": {"rate": 8000}}))
    d = nd.derive(cfg, links={"tap-vm1"})
    assert not d.problems
    assert d.state.ports[0].vlan == 7
    [pol] = d.state.policies
    assert pol == Policy("tap-vm1", (
        # rule 10: the VM (198.19.1.1) is not in its source prefix: only inbound applies
        AclRule("drop", "in", "icmp", "198.19.2.0/24"),
        # rule 20: no source prefix: outbound with the peer prefix; inbound, the VM's address
        # is in the destination prefix, so it applies to every sender
        AclRule("accept", "out", "tcp", "198.19.0.0/16", 443),
        AclRule("accept", "in", "tcp", None, 443),
        AclRule("drop", "out"), AclRule("drop", "in")), rate_kbps=8000, burst=10000)


@pytest.mark.parametrize("rule", [
    {"source-mac": "02:00:00:00:00:01"},
    {"protocol": "udp", "source-port": {"lower-port": 1}},
    {"protocol": "udp", "destination-port": {"lower-port": 1, "upper-port": 9}},
    {"destination-ip-prefix": "2001:db8::/32"},
])
def test_inexpressible_acl_is_refused_not_approximated(rule: dict[str, Any]) -> None:
    acl = {"rule": [{"sequence-id": 1, "action": "deny", **rule}]}
    d = nd.derive(config(policies=policy(acl)), links={"tap-vm1"})
    assert d.state.policies == ()
    assert d.problems and d.problems[0].tag == "operation-not-supported"


def test_policy_without_attachment_is_prestaged() -> None:
    cfg = config(policies={"policy": [{"vni": 100, "mac": "02:00:00:00:09:09",
                                       "acl": {"default-action": "deny"}}]})
    d = nd.derive(cfg, links={"tap-vm1"})
    assert d.state.policies == () and not d.problems


def test_attachment_events() -> None:
    before = config()
    after = config(att={"state": "associated", "ip-address": ["198.19.1.2"]})
    [(name, content)] = nd.attachment_events(before, after)
    assert name == "attachment-changed"
    assert content["previous-state"] == "activated" and content["ip-address"] == ["198.19.1.2"]
    assert nd.attachment_events({}, before)[0][0] == "attachment-added"
    removed = nd.attachment_events(before, {"nve": {}})
    assert removed == [("attachment-removed", nd.attachment_info(
        before["nve"]["attachments"]["attachment"][0]))]
    assert nd.attachment_events(before, config()) == []


def test_bulk_commit_notification_is_valid_yang_and_parses_back() -> None:
    """A commit changing several attachments sends one attachments-changed, built without
    libyang (server.notify_batch): it must still be what the YANG module says, and the
    nDirector's parser must get every change back."""
    import libyang
    from lxml import etree

    from nvo3 import YANG_DIR
    from nvo3.netconf.server.engine import _build
    from nvo3.netconf.server.schema import Schema
    from nvo3.roles.ndirector import nve_client

    before = config()
    added = {"vni": 100, "mac": MAC2, "port": "tap-vm2", "state": "associated"}
    after = config(att={"state": "associated", "ip-address": ["198.19.1.2"]})
    after["nve"]["attachments"]["attachment"].append(added)
    events = nd.attachment_events(before, after)
    assert [n for n, _ in events] == ["attachment-changed", "attachment-added"]
    body = etree.Element("{urn:nvo3:yang:nvo3-nve}attachments-changed",
                         nsmap={None: "urn:nvo3:yang:nvo3-nve"})
    _build(body, "urn:nvo3:yang:nvo3-nve", {"change": [nd.batch_entry(n, c) for n, c in events]})
    schema = Schema([YANG_DIR], ["nvo3-nve"])
    node = schema.context.parse_op_mem("xml", etree.tostring(body).decode(),
                                       libyang.DataType.NOTIF_YANG)
    try:
        assert node.name() == "attachments-changed"
    finally:
        node.free()
    message = etree.fromstring(
        '<notification xmlns="urn:ietf:params:xml:ns:netconf:notification:1.0">'
        "<eventTime>2026-11-25T10:00:00Z</eventTime></notification>")
    message.append(body)
    parsed = nve_client.parse_notification(message)
    assert [(e.name, e.content["mac"], e.content.get("previous-state")) for e in parsed] == [
        ("attachment-changed", MAC1, "activated"), ("attachment-added", MAC2, None)]
    assert parsed[0].content["ip-address"] == ["198.19.1.2"] and parsed[0].content["vni"] == 100
